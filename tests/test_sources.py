"""The reader interface of poorinit/sources.py, run again for every trial format.

Each format must answer the same questions the same way for the same run:
the committed smdebug trial and its Recorder twin (tests/data/smdebug) hold
one training run, so their listings and activation tensors must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poorinit.sources import FORMATS, is_url, open_trial

DATA = Path(__file__).parent / "data" / "smdebug"


@pytest.fixture(params=["good", "good_poorinit"], ids=["smdebug", "poorinit"])
def trial(request):
    return open_trial(DATA / request.param)


def activation_inputs(trial, step: int) -> list[np.ndarray]:
    (step_file,) = trial.step_files(step)
    with trial.open(step_file) as reader:
        names = [name for name, collections in reader.tensor_names() if "activation_inputs" in collections]
        return [np.concatenate(list(reader.tensor(name).blocks())) for name in names]


def test_every_format_lists_the_run_alike(trial):
    assert trial.format_name in {f.name for f in FORMATS}
    assert trial.steps("train") == list(range(10))
    assert trial.workers == (0,)
    assert trial.finished
    (step_file,) = trial.step_files(4)
    assert (step_file.step, step_file.mode, step_file.worker) == (4, "train", 0)


def test_every_format_names_its_tensors_and_their_collections(trial):
    (step_file,) = trial.step_files(0)
    with trial.open(step_file) as reader:
        listed = dict(reader.tensor_names())
        infos = {info.name: info for info in reader.infos()}
    assert set(listed) == set(infos)
    found = {collection for collections in listed.values() for collection in collections}
    assert {"activation_inputs", "gradients", "losses", "weights"} <= found


def test_every_format_streams_the_same_activation_inputs():
    smdebug, twin = open_trial(DATA / "good"), open_trial(DATA / "good_poorinit")
    for step in (0, 9):
        ours, theirs = activation_inputs(smdebug, step), activation_inputs(twin, step)
        assert len(ours) == len(theirs) == 3
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("path, url", [("s3://bucket/trial", True), ("gs://b/p", True), ("file:///tmp/t", False),
                                       ("runs/trial", False), ("C://runs", False)])
def test_what_counts_as_a_url(path, url):
    assert is_url(path) is url


def test_remote_reads_pause_the_garbage_collector_and_restore_it():
    """h5py holds its lock while it waits on the store: no thread may collect an h5py object meanwhile (remote.py)."""
    import gc
    import io

    from poorinit.remote import _collector_paused, _Uncollected

    seen = []

    class Store(io.BytesIO):
        def readinto(self, buffer):
            seen.append(gc.isenabled())
            return super().readinto(buffer)

    assert gc.isenabled()
    handle = _Uncollected(Store(b"abcdef"))
    assert handle.readinto(bytearray(3)) == 3 and handle.seek(0) == 0  # the rest is the handle's own
    assert seen == [False] and gc.isenabled()
    with _collector_paused():
        with _collector_paused():  # nested, as two analysis threads' reads overlap
            pass
        assert not gc.isenabled()  # the outer read is still waiting
    assert gc.isenabled()
    gc.disable()
    try:
        with _collector_paused():
            pass
        assert not gc.isenabled()  # a program that runs without the collector keeps it off
    finally:
        gc.enable()

"""``--follow`` agrees with ``analyze``, and storage never written is never judged.

* A worker that writes nothing until the others are steps ahead: the steps
  judged on the others' files alone are judged again once its files come,
  so ``analyze --follow`` (a real process, polling) fires where ``analyze``
  of the finished trial fires.
* A loss dataset created with its storage allocated at once (compact layout,
  or early allocation) and never written reads back as its fill value:
  refused, like storage that was never allocated.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

from poorinit import TrialWriter
from poorinit.format import step_file_name

from .test_bad_input_partial import write_steps
from .test_errors_doc import expect_error, run


@contextmanager
def following(trial: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """``poorinit analyze --follow`` polling every 50 ms; killed if the test ends first."""
    process = subprocess.Popen(
        ["poorinit", "analyze", str(trial), "--follow", "--steps", "6", "--poll-interval", "0.05", "--timeout", "60",
         *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def finish(path: Path, *workers: int) -> None:
    for worker in workers:
        (path / f"FINISHED_{worker}").touch()


def test_follow_fires_when_a_late_worker_brings_an_overflow_to_steps_already_judged(tmp_path: Path) -> None:
    """Worker 0 writes steps 0-3 and is judged alone; worker 1 then writes steps 0-5, its step 0 overflowing."""
    trial = tmp_path / "trial"
    write_steps(trial, 0, range(4))
    with following(trial, "--format", "json") as follower:
        time.sleep(1.5)  # the follower judges steps 0-3 on worker 0's files (a slower machine only judges fewer)
        assert follower.poll() is None, "nothing can be concluded before step 5"
        write_steps(trial, 1, range(6), overflow_at=(0,))
        write_steps(trial, 0, [4, 5])
        finish(trial, 0, 1)
        stdout, stderr = follower.communicate(timeout=90)
    assert follower.returncode == 1, (stdout[-500:], stderr)
    assert run("analyze", trial, "--steps", "6", "--quiet").returncode == 1


def test_follow_and_analyze_agree_on_a_worker_that_comes_late_with_healthy_data(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    write_steps(trial, 0, range(3))
    with following(trial, "--quiet") as follower:
        time.sleep(1.0)
        write_steps(trial, 1, range(6))
        write_steps(trial, 0, range(3, 6))
        finish(trial, 0, 1)
        stdout, stderr = follower.communicate(timeout=90)
    analysed = run("analyze", trial, "--steps", "6", "--quiet")
    assert follower.returncode == analysed.returncode == 0, (stdout, stderr, analysed.stderr)


def write_unwritten_loss(trial: Path, layout: str, steps: int = 10) -> Path:
    """Plain h5py files whose loss dataset is created with ``layout`` storage and never written."""
    rng = np.random.default_rng(0)
    trial.mkdir(parents=True)
    for step in range(steps):
        with h5py.File(trial / step_file_name(step), "w") as f:
            f.attrs.update({"poorinit_format": 1, "step": step, "mode": "train", "worker": 0})
            tensors = f.create_group("tensors")
            for i in range(3):
                tensors.create_dataset(f"net.{i}.relu_input", data=rng.normal(0, 1, (16, 16))).attrs[
                    "collections"] = "activation_inputs"
            tensors.create_dataset("gradient/w", data=rng.normal(0, 0.05, (16, 16))).attrs["collections"] = "gradients"
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            if layout == "compact":
                dcpl.set_layout(h5py.h5d.COMPACT)
            else:
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                if layout == "early, fill 2.3":
                    dcpl.set_fill_value(np.array(2.3))
            space = h5py.h5s.create(h5py.h5s.SCALAR)
            loss = h5py.Dataset(h5py.h5d.create(tensors.id, b"loss", h5py.h5t.NATIVE_DOUBLE, space, dcpl=dcpl))
            loss.attrs["collections"] = "losses"
    return trial


@pytest.mark.parametrize("layout, fill", [("early", "0.0"), ("early, fill 2.3", "2.3")])
def test_a_loss_allocated_early_and_never_written_is_refused(tmp_path: Path, layout: str, fill: str) -> None:
    trial = write_unwritten_loss(tmp_path / "trial", layout)
    message = expect_error(run("analyze", trial), "tensor-fill-only", step_file_name(0), "'loss'")
    assert f"holds only its fill value {fill}" in message


def test_a_loss_of_exactly_zero_in_compact_storage_is_data(tmp_path: Path) -> None:
    """TrialWriter stores a loss in compact storage, always allocated with the dataset: a loss of
    0.0 written there is data (compact storage never written cannot be told apart: docs/format.md)."""
    with TrialWriter(tmp_path, fsync=False) as writer:
        rng = np.random.default_rng(0)
        for step in range(10):
            writer.write_step(step, activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (16, 16))
                                                       for i in range(3)},
                              gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))}, losses={"loss": float(step)})
    result = run("analyze", tmp_path, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    loss = next(c for c in json.loads(result.stdout)["criteria"] if c["check"] == "loss_decrease")
    assert loss["per_step"][0] == [0, 0.0]


def write_declared(path: Path, worker: int, steps: range | list[int], *, overflow_at: tuple[int, ...] = ()) -> None:
    """As write_steps, with the root attribute ``workers = 2``: the trial says two workers write it."""
    write_steps(path, worker, steps, overflow_at=overflow_at, root_attrs={"workers": 2})


def test_follow_waits_for_a_declared_worker_that_has_written_nothing(tmp_path: Path) -> None:
    """Worker 0 writes every step before worker 1 writes any: with ``workers = 2`` declared, --follow
    does not pass on worker 0 alone, and fires when worker 1's overflow comes, as analyze does."""
    trial = tmp_path / "trial"
    write_declared(trial, 0, range(6))
    with following(trial, "--quiet") as follower:
        time.sleep(1.5)
        assert follower.poll() is None, "every step is in for worker 0, but worker 1 has written nothing yet"
        write_declared(trial, 1, range(6), overflow_at=(2,))
        stdout, stderr = follower.communicate(timeout=90)
    assert follower.returncode == 1, (stdout, stderr)
    assert run("analyze", trial, "--steps", "6", "--quiet").returncode == 1


def test_analyze_says_when_a_declared_worker_wrote_nothing(tmp_path: Path) -> None:
    write_declared(tmp_path, 0, range(6))
    result = run("analyze", tmp_path, "--steps", "6", "--quiet")
    assert result.returncode == 0
    assert "judged on part of the data: worker 1 has no step file at steps 0, 1, 2, 3, 4 ..." in result.stderr
    assert run("analyze", tmp_path, "--steps", "6", "--quiet", "--strict").returncode == 1

"""``scan --trial-timeout``: one slow trial is reported as such, and the others go on.

The slow trial is really slow to read: its tensors are stored in chunks of 16
values, 40,000 chunks per step file, which HDF5 reads one by one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from poorinit.format import step_file_name
from poorinit.scan import TRIAL_TIMEOUT

from .conftest import write_synthetic_trial
from .test_errors_doc import documented, expect_error, run, template_regex


def write_slow_trial(path: Path, steps: int = 8) -> Path:
    """Step files of 2 x 320,000 values in chunks of 16: each takes a third of a second or more to read."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = path / step_file_name(0)
    with h5py.File(first, "w") as f:
        f.attrs.update({"poorinit_format": 1, "step": 0, "mode": "train", "worker": 0})
        tensors = f.create_group("tensors")
        for i in range(2):
            tensors.create_dataset(f"net.{i}.relu_input", data=rng.normal(0, 1, 320_000), chunks=(16,)).attrs[
                "collections"] = "activation_inputs"
        tensors.create_dataset("gradient/w", data=rng.normal(0, 0.05, (16, 16))).attrs["collections"] = "gradients"
        tensors.create_dataset("loss", data=2.0).attrs["collections"] = "losses"
    for step in range(1, steps):  # copies, renumbered: as slow to read, and cheap to make
        shutil.copyfile(first, path / step_file_name(step))
        with h5py.File(path / step_file_name(step), "r+") as f:
            f.attrs["step"] = step
    return path


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("timeout")
    write_slow_trial(root / "slow")
    write_synthetic_trial(root / "quick", layers=3, steps=6)
    return root


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_trial_slower_than_the_timeout_is_reported_and_the_others_are_judged(two_trials: Path, jobs: str) -> None:
    result = run("scan", two_trials, "--trial-timeout", "1", "--steps", "6", "--jobs", jobs, "--format", "jsonl")
    assert result.returncode == 2, result.stderr  # one trial could not be analysed, none fired
    by_trial = {Path(line["trial"]).name: line for line in map(json.loads, result.stdout.splitlines())}
    assert by_trial["quick"]["status"] == "passed"
    slow = by_trial["slow"]
    assert slow["status"] == "error"
    assert template_regex(documented()["scan-trial-timeout"]).fullmatch(slow["error"]), slow["error"]
    assert "per-trial timeout of 1 s" in slow["error"]


def test_the_default_is_documented_in_the_help() -> None:
    result = run("scan", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--trial-timeout SECONDS" in text and f"[default: {TRIAL_TIMEOUT}]" in text


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_the_timeout_must_be_a_positive_number(two_trials: Path, value: str) -> None:
    expect_error(run("scan", two_trials, "--trial-timeout", value), "usage", "--trial-timeout")


def test_a_timeout_of_nan_is_refused(two_trials: Path) -> None:
    expect_error(run("scan", two_trials, "--trial-timeout", "nan"), "setting-positive", "trial_timeout")


@pytest.mark.parametrize("value", ["inf", "1e300"])
def test_the_timeout_is_at_most_a_week(two_trials: Path, value: str) -> None:
    expect_error(run("scan", two_trials, "--trial-timeout", value), "setting-seconds", "trial_timeout")


def test_the_timeout_comes_from_the_environment_too(two_trials: Path) -> None:
    import os

    result = run("scan", two_trials, "--steps", "6", "--jobs", "1", "--format", "jsonl",
                 env={**os.environ, "POORINIT_TRIAL_TIMEOUT": "1"})
    assert '"status":"error"' in result.stdout and "per-trial timeout of 1 s" in result.stdout


def test_in_a_worker_thread_the_time_limit_interrupts_a_slow_trial_and_lets_a_quick_one_be(tmp_path: Path) -> None:
    """Dask runs trials in worker threads, which signals never reach: one watchdog thread per process bounds them."""
    import threading
    import time

    from poorinit.scan import TrialTimeout, _time_limit

    outcomes: list[str] = []

    def trials() -> None:
        for seconds in (0.01, 5.0, 0.01):  # quick, past the limit, quick again: the first limit must not leak
            try:
                with _time_limit(0.3):
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        pass
                outcomes.append("done")
            except TrialTimeout:
                outcomes.append("timed out")
        time.sleep(0.5)  # a disarmed limit never fires later
        outcomes.append("still here")

    worker = threading.Thread(target=trials)
    started = time.monotonic()
    worker.start()
    worker.join(10)
    assert outcomes == ["done", "timed out", "done", "still here"]
    assert time.monotonic() - started < 3

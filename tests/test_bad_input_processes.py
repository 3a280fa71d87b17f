"""Processes and signals: a scan ends cleanly however it is stopped, and one lost worker loses one trial.

Each test runs the installed ``poorinit scan --jobs 2`` in its own process
group (as a shell runs a foreground job) and stops it as a user or a CI
runner would: Ctrl-C to the whole group, SIGTERM to poorinit alone, SIGKILL
to one worker (as the out-of-memory killer does). What must hold: one line on
stderr, exit 130 / 143, no process of the group left, and a ``--output``
report that is either absent or valid so far.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from poorinit import TrialWriter
from poorinit.params import RuleParams
from poorinit.scan import TRIAL_TIMEOUT, scan_local

from .test_errors_doc import documented, expect_error, run, template_regex


def many_trials(root: Path, count: int, steps: int = 6, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for index in range(count):
        with TrialWriter(root / f"trial{index:03d}") as writer:
            for step in range(steps):
                writer.write_step(
                    step,
                    activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (size, size)) for i in range(3)},
                    gradients={"gradient/w": rng.normal(0, 0.05, (size, size))},
                    losses={"loss": 2.0 - 0.1 * step},
                )
    return root


@pytest.fixture(scope="module")
def forty_trials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return many_trials(tmp_path_factory.mktemp("scan"), 40)


def start_scan(root: Path, output: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["poorinit", "scan", str(root), "--jobs", "2", "--format", "jsonl", "--output", str(output), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def wait_for_lines(output: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Until the report holds ``count`` lines: the workers are running (not a timing assertion)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and output.read_text().count("\n") >= count:
            return
        time.sleep(0.05)
    pytest.fail("the scan never produced its first results")


def children_of(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def group_is_gone(pgid: int) -> bool:
    """No process of the scan's process group remains (zombies of ours reaped)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def assert_valid_so_far(output: Path) -> None:
    if output.exists():
        for line in output.read_text().splitlines():
            assert json.loads(line)["status"] in ("passed", "fired", "error")


@pytest.mark.parametrize("how, code", [("ctrl-c", 130), ("sigterm", 143)])
def test_a_scan_stopped_by_a_signal_exits_with_one_line_and_no_orphan(forty_trials, tmp_path, how, code):
    output = tmp_path / "report.jsonl"
    process = start_scan(forty_trials, output)
    wait_for_lines(output, 1, process)
    workers = children_of(process.pid)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # the terminal signals the whole foreground group
    else:
        os.kill(process.pid, signal.SIGTERM)  # a CI runner or service manager signals poorinit alone
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    error_id = "interrupted" if how == "ctrl-c" else "terminated"
    assert stderr.splitlines() == [f"poorinit: error: {documented()[error_id]}"], stderr
    assert group_is_gone(process.pid)
    import psutil

    assert not [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert_valid_so_far(output)


def test_a_killed_worker_fails_its_trial_and_the_scan_goes_on(forty_trials, tmp_path):
    output = tmp_path / "report.jsonl"
    process = start_scan(forty_trials, output)
    wait_for_lines(output, 1, process)
    workers = children_of(process.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    stdout, stderr = process.communicate(timeout=300)
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr, stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["trial"] for line in lines) == sorted(str(p) for p in forty_trials.iterdir())
    lost = [line for line in lines if line["status"] == "error"]
    assert len(lost) <= 1  # the trial the worker held, unless it was between batches
    for line in lost:
        assert template_regex(documented()["scan-worker-died"]).fullmatch(line["error"]), line["error"]
        assert "killed by signal 9" in line["error"]
    assert process.returncode == (2 if lost else 0)
    assert group_is_gone(process.pid)


def test_a_trial_past_the_timeout_is_reported_and_the_rest_go_on(tmp_path):
    """Through the Python API, where the timeout is a parameter (the CLI's default is TRIAL_TIMEOUT)."""
    slow = many_trials(tmp_path / "slow", 1, steps=40, size=512)
    quick = many_trials(tmp_path / "quick", 3)
    trials = [str(slow / "trial000"), *(str(p) for p in sorted(quick.iterdir()))]
    results = scan_local(trials, RuleParams.from_values(steps=40), jobs=2, timeout=0.01)
    by_trial = {r.trial: r for r in results}
    assert set(by_trial) == set(trials)
    assert by_trial[trials[0]].error is not None
    assert template_regex(documented()["scan-trial-timeout"]).fullmatch(by_trial[trials[0]].error)
    assert TRIAL_TIMEOUT >= 60  # a documented default generous enough for real trials


@pytest.mark.parametrize("address", ["notanaddress", "foo://bar", "tcp://[::1", "tcp://host:99999", "tcp://:8786"])
def test_a_malformed_scheduler_address_is_refused_before_connecting(forty_trials, address):
    result = run("scan", forty_trials, "--scheduler", address)
    expect_error(result, "scan-scheduler-address", address)

"""``analyze --follow``: a real second process writes the trial while poorinit reads it.

Each test starts a writer (TrialWriter in ``python -c``, sleeping between
steps) and the installed ``poorinit analyze --follow`` with a short poll
interval, and checks the exit code and what was judged. The in-process tests
at the end pin the judging rules on trials that stand still.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from poorinit import RuleParams, TrialWriter
from poorinit.follow import FollowError, follow

WRITER = r"""
import json, os, sys, time
import numpy as np
from poorinit import TrialWriter
from poorinit.format import step_file_name

path, plan = sys.argv[1], json.loads(sys.argv[2])
rng = np.random.default_rng(0)
decay = plan.get("decay", 1.0)          # std of layer i is decay**i: 1 healthy, 0.1 vanishing
gradient = plan.get("gradient", 0.05)
writer = TrialWriter(path)
for step in range(plan["steps"]):
    time.sleep(plan.get("pauses", {}).get(str(step), plan.get("pause", 0.02)))
    tensors = dict(
        activation_inputs={f"net.{i}.relu_input": rng.normal(0, decay**i, (32, 16)) for i in range(3)},
        gradients={f"gradient/net.{i}.weight": rng.normal(0, gradient, (16, 16)) for i in range(3)},
        losses={"loss": 2.0 - 0.1 * step},
    )
    if step == plan.get("in_place"):
        # A writer that writes the step file where it stands, slowly, instead of
        # renaming a finished file into place.
        import h5py
        with h5py.File(os.path.join(path, step_file_name(step)), "w") as f:
            f.attrs.update({"poorinit_format": 1, "step": step, "mode": "train", "worker": 0})
            for collection, group in tensors.items():
                for name, value in group.items():
                    f.create_dataset(f"tensors/{name}", data=np.asarray(value)).attrs["collections"] = [collection]
                    f.flush()
                    time.sleep(0.2)
    else:
        writer.write_step(step, **tensors)
    print(step, flush=True)
if plan.get("finish", True):
    writer.close()
time.sleep(plan.get("linger", 0))
"""


def start_writer(path, **plan):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), json.dumps(plan)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def follow_cli(path, *args):
    return subprocess.run(["poorinit", "analyze", "--follow", str(path), "--poll-interval", "0.05", "--format", "json",
                           *args], capture_output=True, text=True, timeout=60)


def finish(writer):
    if writer.poll() is None:
        writer.kill()
    writer.communicate(timeout=30)


def test_a_healthy_training_passes_once_every_step_is_in(tmp_path):
    writer = start_writer(tmp_path / "trial", steps=12, pause=0.05)
    try:
        result = follow_cli(tmp_path / "trial")
    finally:
        finish(writer)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["steps"] == list(range(10))
    assert {c["status"] for c in verdict["criteria"]} == {"passed", "not_applicable"}


def test_a_poor_start_fires_at_once_while_training_goes_on(tmp_path):
    writer = start_writer(tmp_path / "trial", steps=10, pause=0.4, decay=0.1, gradient=1e-5)
    try:
        result = follow_cli(tmp_path / "trial")
        still_training = writer.poll() is None  # the wrapper could stop the training job now
    finally:
        finish(writer)
    assert result.returncode == 1, result.stderr
    verdict = json.loads(result.stdout)
    assert still_training and len(verdict["steps"]) < 10
    statuses = {c["check"]: c["status"] for c in verdict["criteria"]}
    assert statuses == {"activation_variance": "fired", "gradient_spread": "fired", "loss_decrease": "not_applicable",
                        "saturation": "not_applicable", "initial_loss": "not_applicable"}
    assert any("followed live" in w for w in verdict["warnings"])


def test_a_slow_step_is_waited_for(tmp_path):
    writer = start_writer(tmp_path / "trial", steps=10, pauses={"6": 1.5})
    try:
        started = time.monotonic()
        result = follow_cli(tmp_path / "trial")
        waited = time.monotonic() - started
    finally:
        finish(writer)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == list(range(10)) and waited >= 1.5


def test_a_step_written_in_place_is_read_once_complete(tmp_path):
    writer = start_writer(tmp_path / "trial", steps=10, in_place=3)
    try:
        result = follow_cli(tmp_path / "trial")
    finally:
        finish(writer)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == list(range(10))


def test_a_training_that_stops_early_exits_2(tmp_path):
    writer = start_writer(tmp_path / "trial", steps=4, pause=0.1)
    try:
        result = follow_cli(tmp_path / "trial")
    finally:
        finish(writer)
    assert result.returncode == 2 and result.stdout == ""
    assert "marked finished after 4 of steps=10 steps" in result.stderr and result.stderr.count("\n") == 1


def test_a_training_that_stalls_runs_into_the_timeout(tmp_path):
    writer = start_writer(tmp_path / "trial", steps=3, finish=False, linger=5)  # alive, silent, never finished
    try:
        result = follow_cli(tmp_path / "trial", "--timeout", "1.5")
    finally:
        finish(writer)
    assert result.returncode == 2
    assert "timed out after 1.5 s with 3 of steps=10 steps analysed" in result.stderr


def test_waiting_for_a_trial_that_does_not_exist_yet_times_out(tmp_path):
    result = follow_cli(tmp_path / "not-yet", "--timeout", "0.3")
    assert result.returncode == 2 and "waiting for the first step file" in result.stderr


# In-process: the judging rules, on trials that stand still.


def write(path, steps, *, losses=None, workers=(0,), finished=False):
    rng = np.random.default_rng(1)
    for worker in workers:
        writer = TrialWriter(path, worker=worker)
        for step in steps:
            writer.write_step(
                step,
                activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (16, 8)) for i in range(2)},
                gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
                losses={"loss": (losses or {}).get(step, 2.0 - 0.1 * step)},
            )
        if finished:
            writer.close()
    return path


def test_the_loss_criterion_does_not_fire_on_a_window_that_later_steps_move(tmp_path):
    # Flat for six steps, then falling: over ten steps the loss decreases, so
    # firing on the first six (patience + 1) would contradict `analyze`.
    losses = {s: 1.0 if s < 6 else 0.1 for s in range(10)}
    trial = write(tmp_path / "trial", range(6), losses=losses)
    with pytest.raises(FollowError, match="timed out"):
        follow(trial, RuleParams(), timeout=0.3, poll_interval=0.05)
    write(trial, range(6, 10), losses=losses)
    assert not follow(trial, RuleParams(), timeout=5, poll_interval=0.05).fired


def test_a_step_waits_for_every_worker(tmp_path):
    trial = write(tmp_path / "trial", range(10), workers=(0,))
    write(trial, range(4), workers=(1,))
    with pytest.raises(FollowError, match="4 of steps=10"):
        follow(trial, RuleParams(), timeout=0.3, poll_interval=0.05)


def test_a_finished_trial_with_all_its_steps_gives_the_verdict_of_analyze(tmp_path):
    from poorinit import analyze

    trial = write(tmp_path / "trial", range(12), finished=True)
    assert follow(trial, RuleParams(), poll_interval=0.05) == analyze(trial)


def test_a_step_file_still_open_for_writing_is_retried_not_reported(tmp_path):
    import h5py

    from poorinit.follow import Follower
    from poorinit.format import step_file_name

    trial = write(tmp_path / "trial", range(3))
    follower = Follower(trial, RuleParams())
    with h5py.File(trial / step_file_name(3), "w") as f:
        f.attrs.update({"poorinit_format": 1, "step": 3, "mode": "train", "worker": 0})
        f.flush()
        assert follower.poll() is None and follower.analysed == 3  # step 3 cannot be opened yet
        f.create_dataset("tensors/loss", data=1.7).attrs["collections"] = ["losses"]
    assert follower.poll() is None and follower.analysed == 4

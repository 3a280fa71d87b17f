"""Data that is partly missing: never judged in silence, never passed by ``--follow`` too early.

A trial written by several workers can lack one worker's file at a step (a
crashed rank, an unfinished copy) or one worker's copy of a tensor. The
verdict on what is left says so (a warning naming worker and steps, and
``Verdict.partial`` for ``--strict``); ``scan`` counts a trial whose step
files are all unreadable; and ``--follow`` reads a late-arriving file of a
step it already judged, so that it agrees with ``analyze`` of the same files.
"""

from __future__ import annotations

import os

import numpy as np

from poorinit import TrialWriter, analyze
from poorinit.follow import Follower
from poorinit.format import step_file_name
from poorinit.params import RuleParams

from .test_errors_doc import run


def write_steps(path, worker, steps, *, overflow_at=(), root_attrs=None):
    """Step files of one worker, without its FINISHED marker: training is still running.

    ``overflow_at``: steps whose activation inputs reach 1e200; ``root_attrs``: e.g. ``{"workers": 2}``.
    """
    rng = np.random.default_rng(worker)
    writer = TrialWriter(path, worker=worker, fsync=False)
    for step in steps:
        scale = 1e200 if step in overflow_at else 1.0
        writer.write_step(
            step,
            activation_inputs={f"net.{i}.relu_input": rng.normal(0, scale, (16, 16)) for i in range(3)},
            gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
            losses={"loss": 2.0 - 0.1 * step},
            root_attrs=root_attrs,
        )


def test_a_step_missing_one_workers_file_is_judged_with_a_warning(tmp_path):
    write_steps(tmp_path, 0, range(6))
    write_steps(tmp_path, 1, [0, 1, 2, 4, 5])
    verdict = analyze(tmp_path, steps=6)
    assert verdict.partial
    assert any("worker 1 has no step file at steps 3" in w for w in verdict.warnings), verdict.warnings


def test_a_tensor_missing_from_one_worker_is_named(tmp_path):
    write_steps(tmp_path, 0, range(6))
    with TrialWriter(tmp_path, worker=1) as writer:
        rng = np.random.default_rng(3)
        for step in range(6):
            writer.write_step(
                step,
                activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (16, 16)) for i in range(2)},
                gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
                losses={"loss": 2.0},
            )
    verdict = analyze(tmp_path, steps=6)
    assert verdict.partial
    assert any("tensor net.2.relu_input at step 0 is missing from the file of worker 1" in w for w in verdict.warnings)


def test_complete_data_is_not_partial(tmp_path):
    write_steps(tmp_path, 0, range(6))
    write_steps(tmp_path, 1, range(6))
    verdict = analyze(tmp_path, steps=6)
    assert not verdict.partial and not any("part of the data" in w for w in verdict.warnings)


def test_scan_counts_a_trial_whose_step_files_were_never_fetched(tmp_path):
    """Unfetched git-annex files are broken symbolic links: the trial is an error, not skipped."""
    good = tmp_path / "good"
    write_steps(good, 0, range(6))
    annexed = tmp_path / "annexed"
    annexed.mkdir()
    for step in range(3):
        os.symlink(f".git/annex/objects/xx/SHA256E-s{step}", annexed / step_file_name(step))
    as_directories = tmp_path / "directories"
    (as_directories / step_file_name(0)).mkdir(parents=True)
    result = run("scan", tmp_path, "--jobs", "1", "--quiet")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "3 trials scanned: 0 fired, 2 could not be analysed, 1 passed" in result.stdout


def test_follow_reads_a_late_file_of_a_step_it_already_judged(tmp_path):
    """Worker 1's file for step 0 arrives last and holds an overflow: analyze fires, so must --follow."""
    params = RuleParams.from_values(steps=6)
    follower = Follower(tmp_path, params)
    write_steps(tmp_path, 0, [0])
    assert follower.poll() is None  # step 0 judged on worker 0 alone: worker 1 is not known yet
    write_steps(tmp_path, 0, range(1, 6))
    write_steps(tmp_path, 1, range(1, 6))
    # Every step is in, but step 0 lacks worker 1's file: no pass yet.
    assert follower.poll() is None
    write_steps(tmp_path, 1, [0], overflow_at={0})
    verdict = follower.poll()
    assert verdict is not None and verdict.fired
    assert analyze(tmp_path, steps=6).fired

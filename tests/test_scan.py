"""Batch scans: discovery below roots, parallel analysis, one row per trial, exit codes.

The CLI runs as the installed script in a real subprocess; the process pool is
real (spawned workers); symlink loops are real links on disk.
"""

import json
import os
import subprocess

import pytest

from poorinit import RuleParams
from poorinit.errors import PoorinitError
from poorinit.scan import ERROR, FIRED, PASSED, analyse_trial, discover, scan_local, worst_first

from .conftest import write_synthetic_trial


def run(*args, cwd=None, env=None):
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def healthy(path, **kwargs):
    return write_synthetic_trial(path, layers=3, steps=6, **kwargs)


def vanishing(path):
    return write_synthetic_trial(path, layers=3, steps=6, layer_scale=lambda i: 0.1**i, gradient_scale=1e-5,
                                 loss=lambda s: 0.693 + 0.01 * s)


def broken(path):
    path.mkdir(parents=True)
    (path / "000000000000_train_0.h5").write_text("not HDF5")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/{healthy, group/vanishing, group/broken}: one trial of each outcome."""
    root = tmp_path_factory.mktemp("scan") / "runs"
    healthy(root / "healthy")
    vanishing(root / "group" / "vanishing")
    broken(root / "group" / "broken")
    return root


def test_discovery_finds_nested_trials_and_keeps_the_spelling_of_the_root(runs):
    found = discover([runs])
    assert found.trials == [str(runs / "group" / "broken"), str(runs / "group" / "vanishing"), str(runs / "healthy")]
    assert found.unreadable == []


def test_discovery_does_not_descend_into_a_trial(tmp_path):
    outer = healthy(tmp_path / "outer", seed=1)
    healthy(outer / "checkpoints" / "inner")
    assert discover([tmp_path]).trials == [str(outer)]
    assert discover([outer]).trials == [str(outer)]


def test_discovery_survives_a_symlink_loop_and_never_leaves_the_root(tmp_path):
    root = tmp_path / "root"
    healthy(root / "a" / "trial")
    outside = healthy(tmp_path / "outside")
    os.symlink(root, root / "a" / "loop")           # back to the root: a loop
    os.symlink(root / "a", root / "alias")          # a second way to the same trial
    os.symlink(outside, root / "escape")            # a way out of the root
    found = discover([root])
    assert found.trials == [str(root / "a" / "trial")]


def test_a_root_that_is_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(PoorinitError, match="no such directory"):
        discover([tmp_path / "missing"])


def test_a_trial_that_cannot_be_read_becomes_a_result_not_an_exception(tmp_path):
    trial = broken(tmp_path / "broken")
    result = analyse_trial(os.path.abspath(trial), RuleParams(), shown="runs/broken")
    assert result.status == ERROR and result.exit_code == 2 and result.verdict is None
    assert result.error.startswith("runs/broken/000000000000_train_0.h5: is not a readable HDF5 file")


def test_a_process_pool_gives_the_results_of_one_process(runs):
    trials = discover([runs]).trials
    seen = []
    pooled = scan_local(trials, RuleParams(), jobs=2, on_result=seen.append)
    alone = scan_local(trials, RuleParams(), jobs=1)
    assert worst_first(pooled) == worst_first(alone) and sorted(seen, key=str) == sorted(pooled, key=str)
    assert [r.status for r in worst_first(alone)] == [FIRED, ERROR, PASSED]


@pytest.mark.parametrize("trials, code", [(["healthy"], 0), (["healthy", "broken"], 2),
                                          (["vanishing", "broken", "healthy"], 1)])
def test_exit_code_fired_outranks_unreadable_outranks_passed(tmp_path, trials, code):
    makers = {"healthy": healthy, "vanishing": vanishing, "broken": broken}
    for name in trials:
        makers[name](tmp_path / name)
    result = run("scan", tmp_path, "--jobs", "1", "--format", "json")
    document = json.loads(result.stdout)
    assert result.returncode == code == document["exit_code"]
    assert document["summary"]["trials"] == len(trials)
    # stderr: only the verdicts' warnings (these trials have 6 of steps=10 steps).
    assert all(line.startswith("poorinit: warning: ") for line in result.stderr.splitlines())


def test_scan_prints_a_table_worst_first_and_a_summary(runs):
    result = run("scan", runs, "--jobs", "2")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    order = [next(i for i, line in enumerate(lines) if name in line) for name in ("vanishing", "broken", "healthy")]
    assert order == sorted(order)
    assert "not a readable HDF5 file" in result.stdout
    assert lines[-1] == "FIRED: 3 trials scanned: 1 fired, 1 could not be analysed, 1 passed"
    # No progress bar when piped: stderr holds the verdicts' warnings (6 of steps=10 steps) and nothing else.
    assert all(line.startswith("poorinit: warning: ") and line.endswith("the trial has no more")
               for line in result.stderr.splitlines())


def test_quiet_prints_only_the_summary_line(runs):
    result = run("scan", runs, "--quiet")
    assert result.stdout.splitlines() == ["FIRED: 3 trials scanned: 1 fired, 1 could not be analysed, 1 passed"]


def test_jsonl_is_one_parsable_document_per_trial(runs):
    result = run("scan", runs, "--format", "jsonl")
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    by_trial = {d["trial"]: d for d in documents}
    assert sorted(by_trial) == discover([runs]).trials and len(documents) == 3
    assert by_trial[str(runs / "group" / "broken")]["schema"] == "poorinit.error"
    assert by_trial[str(runs / "group" / "vanishing")]["status"] == "fired"
    assert {d["exit_code"] for d in documents} == {0, 1, 2}


def test_rule_options_work_in_scan_as_in_analyze(tmp_path):
    healthy(tmp_path / "a")
    for option in (["--threshold", "1"], ["--distribution-range", "10"]):
        scanned = run("scan", tmp_path, *option, "--format", "json")
        analysed = run("analyze", tmp_path / "a", *option, "--format", "json")
        assert scanned.returncode == analysed.returncode == 1
        assert json.loads(scanned.stdout)["trials"][0] == json.loads(analysed.stdout)


def test_relative_roots_are_reported_as_typed(runs):
    result = run("scan", "runs", "--format", "jsonl", "--jobs", "2", cwd=runs.parent)
    assert sorted(json.loads(line)["trial"] for line in result.stdout.splitlines()) == [
        "runs/group/broken", "runs/group/vanishing", "runs/healthy"]


def test_no_trials_found_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("scan", tmp_path / "empty")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("poorinit: error: no trials found below") and result.stderr.count("\n") == 1
    missing = run("scan", tmp_path / "nope")
    assert missing.returncode == 2 and "nope: no such directory" in missing.stderr


def test_output_file_gets_the_report_and_the_terminal_the_table(runs, tmp_path):
    report = tmp_path / "scan.jsonl"
    result = run("scan", runs, "--format", "jsonl", "--output", report)
    assert result.returncode == 1
    assert len([json.loads(line) for line in report.read_text().splitlines()]) == 3
    assert "worst first" in result.stdout and "FIRED: 3 trials scanned" in result.stdout

"""Piped or redirected output never wraps or cuts a name.

A CI log is not a terminal: rich would fold a table at 80 columns (or at
``COLUMNS``, which it reads even for a pipe), cutting ``gradient/net.0.bias``
into ``gradient/net.0.bi`` / ``as``. Through the installed script, with
``COLUMNS`` unset and set narrow, every trial path and tensor name must stay
whole on one line, in the table, its title, the reasons and the summary.
"""

import os
import subprocess

import pytest

from .conftest import write_synthetic_trial

LONG = "a-directory-name-long-enough-to-pass-eighty-columns-on-its-own/and-deeper-still"


def run(*args, columns):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    root = tmp_path_factory.mktemp("width")
    write_synthetic_trial(root / LONG / "vanishing_trial_with_a_long_name", layers=3, steps=6,
                          layer_scale=lambda i: 0.1**i, gradient_scale=1e-5, loss=lambda s: 0.693)
    write_synthetic_trial(root / LONG / "healthy_trial_with_a_long_name", layers=3, steps=6)
    return root


@pytest.mark.parametrize("columns", [None, "40"], ids=["COLUMNS unset", "COLUMNS=40"])
def test_analyze_keeps_the_trial_path_and_tensor_names_whole(deep, columns):
    trial = deep / LONG / "vanishing_trial_with_a_long_name"
    result = run("analyze", trial, columns=columns)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"PoorWeightInitialization · {trial} · train")
    assert any("gradient/net.4.weight" in line or "gradient/net.0.weight" in line for line in lines)
    assert lines[-1].startswith(f"FIRED: poor initialisation in {trial} (")
    assert not any(line != line.rstrip() for line in lines if not line.startswith(("┃", "│")))


@pytest.mark.parametrize("columns", [None, "40"], ids=["COLUMNS unset", "COLUMNS=40"])
def test_scan_keeps_every_trial_path_whole_and_the_summary_on_one_line(deep, columns):
    result = run("scan", deep, "--jobs", "1", columns=columns)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    for name in ("vanishing_trial_with_a_long_name", "healthy_trial_with_a_long_name"):
        assert any(str(deep / LONG / name) in line for line in lines), result.stdout
    assert lines[0] == "PoorWeightInitialization · scan of 2 trials, worst first"
    assert lines[-1] == "FIRED: 2 trials scanned: 1 fired, 0 could not be analysed, 1 passed"


def test_a_report_file_is_as_wide_as_its_longest_name(deep, tmp_path):
    trial = deep / LONG / "healthy_trial_with_a_long_name"
    report = tmp_path / "report.txt"
    result = run("analyze", trial, "--output", report, columns="40")
    assert result.returncode == 0, result.stderr
    assert f"passed: {trial} looks well initialised" in report.read_text(encoding="utf-8")


@pytest.mark.parametrize("columns", [None, "40"], ids=["COLUMNS unset", "COLUMNS=40"])
def test_inspect_keeps_the_trial_path_whole(deep, columns):
    trial = deep / LONG / "healthy_trial_with_a_long_name"
    result = run("inspect", trial, columns=columns)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{trial} · finished · workers 0"

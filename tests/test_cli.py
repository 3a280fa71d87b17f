"""The command line, through the installed console script in a real subprocess.

Exit codes are the contract: 0 did not fire, 1 fired, 2 could not analyse or
misused; errors are one line on stderr; JSON goes to stdout alone.
"""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import poorinit
from poorinit.cli import cli


def run(*args, cwd=None):
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_healthy_trial_exits_0(healthy_trial):
    result = run("analyze", healthy_trial)
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stdout and result.stderr == ""


def test_poor_trial_exits_1_and_prints_the_table(vanishing_trial):
    result = run("analyze", vanishing_trial)
    assert result.returncode == 1
    for title in ("activation variance", "gradient spread", "loss decrease", "FIRED"):
        assert title in result.stdout


def test_missing_path_exits_2_with_one_line(tmp_path):
    result = run("analyze", tmp_path / "nope")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("poorinit: error: ") and "nope: no such trial directory" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "abc"], "threshold must be a number"),
        (["--steps", "2.5"], "steps must be a whole number"),
        (["--activation-inputs-regex", "("], "not a valid regular expression"),
        (["--thresh", "3"], "No such option"),
        (["--mode", "test"], "Invalid value for '--mode'"),
    ],
)
def test_misuse_exits_2_with_one_line(healthy_trial, args, message):
    result = run("analyze", healthy_trial, *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_rule_options_reach_the_rule(healthy_trial):
    assert run("analyze", healthy_trial, "--threshold", "1").returncode == 1
    assert run("analyze", healthy_trial, "--distribution-range", "10").returncode == 1


def test_json_is_the_only_thing_on_stdout(vanishing_trial):
    result = run("analyze", vanishing_trial, "--format", "json")
    document = json.loads(result.stdout)
    assert result.returncode == 1 == document["exit_code"]
    assert document["schema"] == "poorinit.verdict" and document["schema_version"] == 1
    fired = {c["check"] for c in document["criteria"] if c["status"] == "fired"}
    assert {"activation_variance", "gradient_spread"} <= fired


def test_debug_shows_the_traceback(tmp_path):
    result = run("analyze", tmp_path / "nope", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_version_and_module_entry_point():
    assert run("--version").stdout.strip() == f"poorinit {poorinit.__version__}"
    module = subprocess.run([sys.executable, "-m", "poorinit", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.strip() == f"poorinit {poorinit.__version__}"


def test_inspect_lists_steps_workers_and_tensors(healthy_trial):
    result = run("inspect", healthy_trial, "--format", "json")
    assert result.returncode == 0, result.stderr
    description = json.loads(result.stdout)
    train = description["modes"][0]
    assert description["finished"] is True and description["workers"] == [0]
    assert train["mode"] == "train" and train["steps"] == list(range(10))
    tensor = next(t for t in train["tensors"] if t["name"] == "net.0.relu_input")
    assert tensor == {"name": "net.0.relu_input", "shape": [64, 32], "dtype": "float32",
                      "collections": ["activation_inputs"]}
    assert "net.0.relu_input" in run("inspect", healthy_trial).stdout


def test_checks_lists_the_four_criteria():
    names = [line.split("\t")[0] for line in run("checks").stdout.splitlines()]
    assert names[:4] == ["activation_variance", "gradient_spread", "loss_decrease", "saturation"]


def test_in_process_runner_agrees(vanishing_trial):
    result = CliRunner().invoke(cli, ["analyze", str(vanishing_trial), "--format", "json"], standalone_mode=False)
    assert result.return_value == 1

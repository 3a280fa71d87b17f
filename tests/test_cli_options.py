"""The knobs a CI gate needs, each through the installed console script.

--select/--ignore, --strict, --exit-zero, --statistics, several reports in
one run, --append and $GITHUB_STEP_SUMMARY, warnings on stderr under --quiet,
--color with NO_COLOR/FORCE_COLOR, `checks NAME`, `config --format json` and
"did you mean" for misspelt names. Exit codes are the contract: 0 passed,
1 fired (or failed --strict), 2 could not analyse or misused.
"""

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

import poorinit

from .conftest import write_synthetic_trial

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(*args, cwd=None, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "GITHUB_STEP_SUMMARY")
               and not k.startswith("POORINIT_")}
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**environ, **env}, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("options") / "runs"
    write_synthetic_trial(root / "healthy")  # 10 steps: no warning; saturation not applicable (ReLU)
    write_synthetic_trial(root / "short", steps=6)  # passes with a warning: 6 of steps=10
    write_synthetic_trial(root / "vanishing", layer_scale=lambda i: 0.1**i, gradient_scale=1e-5,
                          loss=lambda s: 0.693)
    return root


def criteria(result):
    return [c["check"] for c in json.loads(result.stdout)["criteria"]]


# -- choosing criteria -----------------------------------------------------------------------------


def test_select_and_ignore_choose_the_criteria(runs):
    selected = run("analyze", runs / "vanishing", "--select", "loss_decrease,gradient-spread", "--format", "json")
    assert selected.returncode == 1 and criteria(selected) == ["gradient_spread", "loss_decrease"]
    ignored = run("analyze", runs / "vanishing", "--ignore", "activation_variance,gradient_spread,loss_decrease",
                  "--format", "json")
    # Only saturation and initial loss are left; neither can judge this ReLU trial without K: no verdict at all.
    assert ignored.returncode == 2 and "no criterion could be evaluated" in ignored.stderr
    scanned = run("scan", runs, "--ignore", "saturation", "--format", "json")
    assert {tuple(criteria_of["check"] for criteria_of in t["criteria"]) for t in json.loads(scanned.stdout)[
        "trials"]} == {("activation_variance", "gradient_spread", "loss_decrease", "initial_loss")}


def test_select_in_the_config_file_and_the_environment(runs, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.poorinit]\nselect = ["loss_decrease"]\n')
    from_file = run("analyze", runs / "vanishing", "--format", "json", cwd=tmp_path)
    assert criteria(from_file) == ["loss_decrease"]
    from_env = run("analyze", runs / "vanishing", "--format", "json", cwd=tmp_path, POORINIT_SELECT="gradient_spread")
    assert criteria(from_env) == ["gradient_spread"]
    shown = json.loads(run("config", "--format", "json", cwd=tmp_path).stdout)["settings"]["select"]
    assert shown["value"] == ["loss_decrease"] and shown["source"].endswith("[tool.poorinit]")


def test_an_unknown_criterion_is_an_error_with_a_suggestion(runs):
    result = run("analyze", runs / "healthy", "--ignore", "saturaton")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "poorinit: error: ignore: no criterion named 'saturaton'; did you mean 'saturation'? "
        "(known: activation_variance, gradient_spread, loss_decrease, saturation, initial_loss)")


# -- the gate's exit code --------------------------------------------------------------------------


def test_strict_fails_a_pass_that_did_not_look_at_everything(runs):
    assert run("analyze", runs / "healthy").returncode == 0
    strict = run("analyze", runs / "healthy", "--strict", "--quiet")
    assert strict.returncode == 1
    # Saturation is absent on a ReLU network (nothing to judge, no blind spot); the initial loss
    # could not look without the number of classes.
    assert strict.stderr.strip() == (f"poorinit: strict: {runs / 'healthy'}: passed with 1 of 5 criteria not "
                                     "applicable (initial loss); failing the gate (exit 1)")
    assert run("analyze", runs / "healthy", "--strict", "--num-classes", "4").returncode == 0
    warned = run("analyze", runs / "short", "--strict", "--num-classes", "4")
    assert warned.returncode == 1 and "passed with 1 warning" in warned.stderr


def test_strict_from_the_config_file(runs, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.poorinit]\nstrict = true\n")
    assert run("analyze", runs / "healthy", cwd=tmp_path).returncode == 1
    assert run("analyze", runs / "healthy", cwd=tmp_path, POORINIT_STRICT="0").returncode == 0


def test_exit_zero_reports_but_never_fails(runs, tmp_path):
    fired = run("analyze", runs / "vanishing", "--exit-zero", "--quiet")
    assert fired.returncode == 0 and fired.stdout.startswith("FIRED: poor initialisation")
    (runs.parent / "broken").mkdir(exist_ok=True)
    (runs.parent / "broken" / "000000000000_train_0.h5").write_text("not HDF5")
    # Could not analyse is still 2: --exit-zero silences findings, not failures to look.
    scanned = run("scan", runs / "vanishing", runs.parent / "broken", "--exit-zero", "--quiet")
    assert scanned.returncode == 2
    assert run("analyze", tmp_path / "missing", "--exit-zero").returncode == 2


def test_statistics_count_each_criterion_over_a_scan(runs):
    result = run("scan", runs, "--statistics")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    start = lines.index("statistics over 3 trials")
    rows = {cells[1]: cells[2:] for cells in (re.split(r"\s*│\s*", line.strip("│ ")) for line in lines[start:])
            if len(cells) == 5}
    assert rows["activation_variance"] == ["1", "2", "0"]  # fired, passed, n/a
    assert rows["saturation"] == ["0", "0", "3"]
    as_json = run("scan", runs, "--statistics", "--format", "json")
    json.loads(as_json.stdout)  # stdout stays one document: the statistics go to stderr
    assert "statistics over 3 trials" in as_json.stderr


# -- where reports go ------------------------------------------------------------------------------


def test_several_reports_in_one_run(runs, tmp_path):
    xml, md = tmp_path / "a.xml", tmp_path / "b.md"
    result = run("scan", runs, "--format", "junit", "--output", xml, "--format", "markdown", "--output", md,
                 "--format", "json")
    assert result.returncode == 1
    # The vanishing trial fires two criteria (its flat noisy loss does not rise beyond its noise).
    assert ET.parse(xml).getroot().get("failures") == "2"
    assert md.read_text().startswith("### poorinit scan: FIRED: 3 trials scanned")
    assert json.loads(result.stdout)["summary"]["fired"] == 1  # the one format without a file: stdout
    both_files = run("analyze", runs / "vanishing", "--format", "json", "--output", tmp_path / "v.json",
                     "--format", "jsonl", "--output", tmp_path / "v.jsonl")
    assert "PoorWeightInitialization" in both_files.stdout  # every report in a file: the terminal gets the table
    assert json.loads((tmp_path / "v.jsonl").read_text()) == json.loads((tmp_path / "v.json").read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output", "a", "--output", "b"], "2 --output but 1 --format"),
        (["--format", "json", "--format", "junit"], "only one report can go to stdout"),
        (["--format", "json", "--output", "a", "--format", "junit", "--output", "a"], "the same --output file"),
    ],
)
def test_reports_that_cannot_be_paired_are_misuse(runs, tmp_path, args, message):
    result = run("analyze", runs / "healthy", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_the_step_summary_is_appended_to_never_truncated(runs, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("# build\n\nearlier step's summary\n")
    for trial in ("healthy", "vanishing"):
        run("analyze", runs / trial, "--format", "markdown", "--output", summary, GITHUB_STEP_SUMMARY=str(summary))
    text = summary.read_text()
    assert text.startswith("# build\n\nearlier step's summary\n")
    assert text.count("### poorinit: ") == 2
    other = tmp_path / "report.md"
    for _ in range(2):
        run("analyze", runs / "healthy", "--format", "markdown", "--output", other, "--append")
    assert other.read_text().count("### poorinit: passed") == 2
    run("analyze", runs / "healthy", "--format", "markdown", "--output", other)
    assert other.read_text().count("### poorinit: passed") == 1  # without --append: replaced


def test_verdict_warnings_go_to_stderr_even_with_quiet(runs):
    result = run("analyze", runs / "short", "--quiet")
    assert result.returncode == 0 and result.stdout.startswith("passed: ") and len(result.stdout.splitlines()) == 1
    assert result.stderr == (f"poorinit: warning: {runs / 'short'}: analysed 6 of steps=10 steps: "
                             "the trial has no more\n")
    as_json = run("analyze", runs / "short", "--format", "json")
    assert json.loads(as_json.stdout)["warnings"] and "analysed 6 of steps=10" in as_json.stderr


@pytest.mark.parametrize(
    "args, env, coloured",
    [
        ([], {}, False),
        (["--color", "always"], {}, True),
        (["--color", "always"], {"NO_COLOR": "1"}, True),
        ([], {"FORCE_COLOR": "1"}, True),
        ([], {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
        (["--color", "never"], {"FORCE_COLOR": "1"}, False),
    ],
)
def test_color_option_and_the_environment(runs, args, env, coloured):
    result = run("analyze", runs / "vanishing", *args, **env)
    assert result.returncode == 1
    assert bool(ANSI.search(result.stdout)) is coloured
    assert "FIRED" in ANSI.sub("", result.stdout)


# -- explaining: checks NAME, config ---------------------------------------------------------------


def test_checks_name_explains_a_criterion_like_ruff_rule():
    result = run("checks", "gradient_spread")
    assert result.returncode == 0
    text = result.stdout
    for heading in ("What it measures:", "When it fires:", "What to do when it fires:"):
        assert heading in text
    assert "distribution_range (default 0.001; --distribution-range, POORINIT_DISTRIBUTION_RANGE)" in text
    assert "docs/rule.md#criterion-2-gradient-spread" in text
    document = json.loads(run("checks", "gradient-spread", "--format", "json").stdout)
    assert document["parameters"] == {"distribution_range": 0.001, "gradient_regex": None}
    listing = json.loads(run("checks", "--format", "json").stdout)
    assert [c["name"] for c in listing][:4] == ["activation_variance", "gradient_spread", "loss_decrease", "saturation"]


def test_checks_unknown_name_suggests_the_closest():
    result = run("checks", "gradient_sprad")
    assert result.returncode == 2 and "did you mean 'gradient_spread'?" in result.stderr


def test_config_format_json_and_the_old_spelling(tmp_path):
    as_json = json.loads(run("config", "--format", "json", "--threshold", "3", cwd=tmp_path).stdout)
    assert as_json["settings"]["threshold"] == {"value": 3.0, "source": "command line"}
    assert json.loads(run("config", "--json", cwd=tmp_path).stdout)["config_file"] is None
    assert run("config", cwd=tmp_path).stdout.splitlines()[2] == "[tool.poorinit]"


def test_misspelt_names_get_a_suggestion(runs, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.poorinit]\nthreshhold = 3\n")
    key = run("analyze", runs / "healthy", cwd=tmp_path)
    assert key.returncode == 2 and "unknown setting 'threshhold'; did you mean 'threshold'?" in key.stderr
    option = run("analyze", runs / "healthy", "--treshold", "3")
    assert option.returncode == 2 and "Did you mean '--threshold'?" in option.stderr
    command = run("analyse", runs / "healthy")
    assert command.returncode == 2 and "Did you mean 'analyze'?" in command.stderr
    env = run("analyze", runs / "healthy", POORINIT_TRESHOLD="3")
    assert env.returncode == 0
    assert env.stderr == ("poorinit: warning: environment variable POORINIT_TRESHOLD is not a poorinit setting; "
                          "did you mean 'POORINIT_THRESHOLD'?\n")


# -- the library -----------------------------------------------------------------------------------


def test_dir_lists_the_public_api_and_to_dict_gives_the_json_document(runs):
    assert dir(poorinit) == sorted(poorinit.__all__)
    assert {"analyze", "Verdict", "TrialWriter", "Trial", "Check"} <= set(dir(poorinit))
    verdict = poorinit.analyze(runs / "vanishing")
    printed = json.loads(run("analyze", runs / "vanishing", "--format", "json").stdout)
    assert verdict.to_dict() == printed

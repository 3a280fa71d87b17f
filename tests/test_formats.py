"""Every report format, parsed the way its consumer parses it, from the real CLI.

JUnit with an XML parser, JSON lines line by line, GitHub workflow commands
by their grammar, Markdown tables by their cells. Colour and the progress bar
are checked on a real pseudo-terminal.
"""

import json
import os
import pty
import re
import select
import subprocess
import xml.etree.ElementTree as ET

import pytest

from .conftest import write_synthetic_trial


def run(*args, cwd=None, env=None):
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats") / "runs"
    write_synthetic_trial(root / "healthy", layers=3, steps=6)
    write_synthetic_trial(root / "vanishing", layers=3, steps=6, layer_scale=lambda i: 0.1**i,
                          gradient_scale=1e-5, loss=lambda s: 0.693 + 0.01 * s)
    (root / "broken").mkdir()
    (root / "broken" / "000000000000_train_0.h5").write_text("not HDF5")
    return root


def test_junit_analyze_has_a_case_per_criterion_and_failures_carry_figure_and_limit(runs):
    result = run("analyze", runs / "vanishing", "--format", "junit")
    assert result.returncode == 1
    root = ET.fromstring(result.stdout)
    document = json.loads(run("analyze", runs / "vanishing", "--format", "json").stdout)
    fired = [c for c in document["criteria"] if c["status"] == "fired"]
    assert root.tag == "testsuites" and root.get("tests") == str(len(document["criteria"]))
    assert root.get("failures") == str(len(fired)) and len(fired) >= 2
    (suite,) = root.findall("testsuite")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {c["title"] for c in document["criteria"]}
    assert cases["activation saturation"].find("skipped") is not None  # not applicable: nothing to saturate
    # junit-10.xsd allows properties only on the suite: each criterion's figures are named after it.
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    for criterion in fired:
        case = cases[criterion["title"]]
        failure = case.find("failure")
        name = criterion["check"]
        assert float(properties[f"{name}.figure"]) == criterion["figure"]
        assert float(properties[f"{name}.limit"]) == criterion["limit"]
        assert properties[f"{name}.status"] == "fired"
        assert f"fires when {criterion['relation']}" in failure.get("message")
        # The reason, then what to change (issue 11): a CI log shows the remedy beside the failure.
        expected = criterion["reason"] + (f" Remedy: {criterion['remedy']}" if criterion["remedy"] else "")
        assert failure.text == expected


def test_junit_scan_has_a_suite_per_trial_and_an_error_for_the_unreadable_one(runs):
    result = run("scan", runs, "--format", "junit")
    root = ET.fromstring(result.stdout)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {str(runs / n) for n in ("healthy", "vanishing", "broken")}
    (error,) = suites[str(runs / "broken")].iter("error")
    assert "not a readable HDF5 file" in error.get("message")
    scanned = json.loads(run("scan", runs, "--format", "json").stdout)["trials"]
    criteria = [c for t in scanned for c in t.get("criteria", [])]
    assert root.get("errors") == "1" and root.get("tests") == str(len(criteria) + 1)
    assert root.get("failures") == str(sum(c["status"] == "fired" for c in criteria))
    assert not list(suites[str(runs / "healthy")].iter("failure"))


GITHUB_COMMAND = re.compile(r"^::(error|warning|notice) (?:file=([^,:]*),)?title=([^,:]*)::(.*)$")


def unescape(text):
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def test_github_annotations_follow_the_workflow_command_grammar(runs):
    result = run("scan", runs, "--format", "github")
    commands = [GITHUB_COMMAND.match(line) for line in result.stdout.splitlines()]
    assert all(commands), result.stdout
    kinds = [(m[1], unescape(m[3])) for m in commands]
    assert kinds.count(("error", "poorinit: trial not analysed")) == 1
    # One error per fired criterion, each naming the step file where it fired (or the trial directory).
    fired = [m for m in commands if m[1] == "error" and m[3].endswith("fired")]
    vanishing = json.loads(run("analyze", runs / "vanishing", "--format", "json").stdout)
    assert sorted(unescape(m[3]) for m in fired) == sorted(
        f"poorinit: {c['title']} fired" for c in vanishing["criteria"] if c["status"] == "fired")
    assert len(fired) >= 2
    assert all(unescape(m[2]).startswith(str(runs / "vanishing")) for m in fired)
    assert any(unescape(m[2]).endswith("_train_0.h5") for m in fired)
    remedies = {f"poorinit: {c['title']} fired": c["remedy"] for c in vanishing["criteria"] if c["status"] == "fired"}
    assert all(
        unescape(m[4]).endswith(f" Remedy: {remedies[unescape(m[3])]}") for m in fired if remedies[unescape(m[3])]
    )
    assert any(remedies.values())
    # Errors first, then warnings; no notice for a not-applicable criterion unless --verbose.
    assert [kind for kind, _ in kinds] == sorted((kind for kind, _ in kinds[:-1]), key=["error", "warning"].index) + [
        "notice"]
    assert kinds[-1] == ("notice", "poorinit scan")
    analyze = run("analyze", runs / "healthy", "--format", "github")
    commands = [GITHUB_COMMAND.match(line) for line in analyze.stdout.splitlines()]
    assert analyze.returncode == 0 and [m[1] for m in commands] == ["warning", "notice"]
    assert unescape(commands[0][2]) == str(runs / "healthy")
    assert "analysed 6 of steps=10 steps" in unescape(commands[0][4])
    verbose = run("analyze", runs / "healthy", "--format", "github", "--verbose")
    commands = [GITHUB_COMMAND.match(line) for line in verbose.stdout.splitlines()]
    healthy = json.loads(run("analyze", runs / "healthy", "--format", "json").stdout)
    not_applicable = [c for c in healthy["criteria"] if c["status"] == "not_applicable"]
    assert [m[1] for m in commands] == ["warning"] + ["notice"] * (len(not_applicable) + 1)
    notices = {unescape(m[3]): unescape(m[4]) for m in commands[1:-1]}
    assert set(notices) == {f"poorinit: {c['title']} not applicable" for c in not_applicable}
    assert "has no tanh, sigmoid" in notices["poorinit: activation saturation not applicable"]


def markdown_table(text):
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    assert set(cells[1]) == {"---"}
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def test_markdown_tables_for_analyze_and_scan(runs):
    analysed = markdown_table(run("analyze", runs / "vanishing", "--format", "markdown").stdout)
    document = json.loads(run("analyze", runs / "vanishing", "--format", "json").stdout)
    label = {"fired": "**FIRED**", "passed": "passed", "not_applicable": "n/a"}
    assert [row["status"] for row in analysed] == [label[c["status"]] for c in document["criteria"]]
    assert analysed[0]["criterion"] == "activation variance" and analysed[0]["limit"] == "> 10"
    scanned = markdown_table(run("scan", runs, "--format", "markdown").stdout)
    assert [row["status"] for row in scanned] == ["**FIRED**", "error", "passed"]  # worst first
    assert scanned[0]["trial"] == f"`{runs / 'vanishing'}`"


def test_json_scan_document(runs):
    document = json.loads(run("scan", runs, "--format", "json").stdout)
    assert document["schema"] == "poorinit.scan" and document["schema_version"] == 1
    assert document["summary"] == {"trials": 3, "fired": 1, "error": 1, "passed": 1}
    assert [t["status"] for t in document["trials"]] == ["fired", "error", "passed"]
    assert document["trials"][1]["schema"] == "poorinit.error"


def test_jsonl_of_analyze_is_one_line_of_the_json_document(runs):
    line = run("analyze", runs / "healthy", "--format", "jsonl").stdout
    assert line.count("\n") == 1
    assert json.loads(line) == json.loads(run("analyze", runs / "healthy", "--format", "json").stdout)


def test_output_writes_the_format_to_the_file_and_the_table_to_the_terminal(runs, tmp_path):
    report = tmp_path / "report.xml"
    result = run("analyze", runs / "vanishing", "--format", "junit", "--output", report)
    assert result.returncode == 1
    document = json.loads(run("analyze", runs / "vanishing", "--format", "json").stdout)
    fired = sum(c["status"] == "fired" for c in document["criteria"])
    assert ET.parse(report).getroot().get("failures") == str(fired) and fired >= 2
    assert "PoorWeightInitialization" in result.stdout and "FIRED: poor initialisation" in result.stdout


def test_quiet_prints_only_the_verdict_line(runs):
    result = run("analyze", runs / "vanishing", "--quiet")
    assert result.returncode == 1 and len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith("FIRED: poor initialisation in")


def test_no_report_file_when_the_trial_cannot_be_analysed(tmp_path):
    report = tmp_path / "report.xml"
    result = run("analyze", tmp_path / "missing", "--format", "junit", "--output", report)
    assert result.returncode == 2 and not report.exists() and result.stderr.count("\n") == 1


def test_an_unwritable_output_file_is_one_line_and_exit_2(runs, tmp_path):
    result = run("analyze", runs / "healthy", "--output", tmp_path / "no" / "such" / "dir.json")
    assert result.returncode == 2 and "cannot write the report" in result.stderr and "Traceback" not in result.stderr


def run_on_terminal(*args, env):
    """Run with stdout and stderr on one pseudo-terminal; return what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(["poorinit", *map(str, args)], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=60), shown.decode("utf-8", "replace")


COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;[0-9;]+)m")


def terminal_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS")}
    return {**env, "TERM": "xterm-256color", "COLUMNS": "100", **extra}


def test_colour_follows_the_terminal_and_no_color(runs):
    code, shown = run_on_terminal("analyze", runs / "vanishing", env=terminal_env())
    assert code == 1 and COLOUR.search(shown)
    code, shown = run_on_terminal("analyze", runs / "vanishing", env=terminal_env(NO_COLOR="1"))
    assert code == 1 and "FIRED" in shown and not COLOUR.search(shown)
    piped = run("analyze", runs / "vanishing")
    assert "\x1b[" not in piped.stdout


def test_the_progress_bar_shows_on_a_terminal_only(runs):
    code, shown = run_on_terminal("scan", runs, "--jobs", "1", env=terminal_env(NO_COLOR="1"))
    assert code == 1 and "scanning" in shown
    piped = run("scan", runs, "--jobs", "1")
    assert "scanning" not in piped.stdout + piped.stderr
    # stderr holds the verdicts' warnings (these trials have 6 of 10 steps), nothing else.
    assert all(line.startswith("poorinit: warning: ") for line in piped.stderr.splitlines())

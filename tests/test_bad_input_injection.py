"""Names from files reach CI logs and pull-request comments: none may inject anything.

A trial downloaded from a bucket or a pull request's artefact chooses its
directory name and its tensor names. These tests write such a trial with the
public writer and run the installed ``poorinit`` on it, once per report
format, judging each output with that medium's own reader: a GitHub runner
reads stdout line by line for ``::`` commands, JUnit XML must parse, a
Markdown table must render without HTML, a terminal must get no escape
sequence, stderr must stay one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from poorinit import TrialWriter
from poorinit.format import step_file_name

from .test_errors_doc import run

NEWLINE_COMMAND = "net.1\n::error title=pwned::injected\n::add-mask::secret"
OSC52 = "net.2\x1b]52;c;cHduZWQ=\x07\x1b[2J"
BACKTICKS = "net.3`` <img src=x onerror=alert(1)> ``"
BIDI = "net.4\u202egnp.exe"
HOSTILE_DIR = "trial\n::error::from-the-directory\x1b[2J"


def hostile_trial(root: Path, fire: bool) -> Path:
    """Activation inputs named to attack every medium; ``fire`` makes the deepest layer collapse."""
    path = root / HOSTILE_DIR
    rng = np.random.default_rng(0)
    names = [NEWLINE_COMMAND, OSC52, BACKTICKS, BIDI]
    with TrialWriter(path) as writer:
        for step in range(6):
            writer.write_step(
                step,
                activation_inputs={
                    f"{name}.relu_input": rng.normal(0, 1e-4 if fire and i == 3 else 1.0, (16, 16))
                    for i, name in enumerate(names)
                },
                gradients={f"gradient/{BACKTICKS}.weight": rng.normal(0, 0.05, (16, 16))},
                losses={"loss": 2.0 - 0.1 * step},
            )
    return path


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {"fired": hostile_trial(root / "a", fire=True), "passed": hostile_trial(root / "b", fire=False)}


def assert_no_injection_on_a_terminal(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, repr(text[:300])


def assert_only_our_workflow_commands(stdout: str) -> None:
    """A GitHub runner acts on every stdout line that starts with '::'; only poorinit's own may."""
    for line in stdout.splitlines():
        if line.startswith("::"):
            assert re.match(r"::(error|warning|notice) (file=[^,:]*,)?title=poorinit", line), line
        assert "::add-mask::" not in line or not line.startswith("::add-mask::"), line


@pytest.mark.parametrize("status", ["fired", "passed"])
def test_the_table_on_a_terminal(trials, status):
    result = run("analyze", trials[status])
    assert result.returncode == (1 if status == "fired" else 0), result.stderr
    assert_no_injection_on_a_terminal(result.stdout)
    assert_only_our_workflow_commands(result.stdout)
    assert "trial\\n::error::from-the-directory\\x1b[2J" in result.stdout.replace("\n", "")  # shown, escaped


@pytest.mark.parametrize("status", ["fired", "passed"])
def test_github_workflow_commands(trials, status):
    result = run("analyze", trials[status], "--format", "github")
    assert_no_injection_on_a_terminal(result.stdout)
    assert_only_our_workflow_commands(result.stdout)
    if status == "fired":
        assert any(line.startswith("::error ") for line in result.stdout.splitlines())


def test_junit_xml_parses_and_keeps_the_names(trials):
    result = run("analyze", trials["fired"], "--format", "junit")
    root = ET.fromstring(result.stdout)
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name", "").endswith("trial\\n::error::from-the-directory\\x1b[2J")
    assert "\\x1b" in result.stdout  # visible, not raw
    assert_no_injection_on_a_terminal(result.stdout)


def test_markdown_renders_no_html_and_one_row_per_criterion(trials):
    result = run("analyze", trials["fired"], "--format", "markdown")
    rendered = MarkdownIt("commonmark").enable("table").render(result.stdout)
    assert "<img" not in rendered and "onerror" not in rendered.replace("onerror=alert", "")
    rows = re.findall(r"<tr>", rendered.split("<tbody>")[1])
    criteria = json.loads(run("analyze", trials["fired"], "--format", "json").stdout)["criteria"]
    assert len(rows) == len(criteria)  # one row per criterion, none split by a name
    assert_no_injection_on_a_terminal(result.stdout)


def test_json_keeps_the_names_exactly(trials):
    result = run("analyze", trials["fired"], "--format", "json")
    document = json.loads(result.stdout)
    assert document["trial"].endswith(HOSTILE_DIR)
    tensors = {c["tensor"] for c in document["criteria"] if c["tensor"]}
    assert any(NEWLINE_COMMAND in t or OSC52 in t or BACKTICKS in t or BIDI in t for t in tensors)
    assert "\x1b" not in result.stdout  # JSON escapes controls itself


def test_scan_reports_of_a_hostile_directory(trials):
    root = trials["fired"].parent.parent
    for fmt in ("table", "github", "markdown", "junit", "jsonl"):
        result = run("scan", root, "--format", fmt, "--jobs", "1")
        assert result.returncode == 1, result.stderr
        assert_no_injection_on_a_terminal(result.stdout + result.stderr)
        assert_only_our_workflow_commands(result.stdout)
    junit = run("scan", root, "--format", "junit", "--jobs", "1").stdout
    assert len(ET.fromstring(junit).findall("testsuite")) == 2


def test_an_error_naming_a_hostile_directory_is_one_stderr_line(tmp_path):
    """The message of a trial that cannot be analysed names the directory, escaped."""
    trial = tmp_path / HOSTILE_DIR
    trial.mkdir()
    (trial / step_file_name(0)).write_bytes(b"not hdf5 at all")
    result = run("analyze", trial)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("poorinit: error: "), result.stderr
    assert "trial\\n::error::from-the-directory\\x1b[2J" in lines[0] and "no HDF5 signature" in lines[0]
    assert_no_injection_on_a_terminal(result.stderr)


def test_a_name_that_is_not_utf8_does_not_crash_any_format(tmp_path):
    """A directory name that is not UTF-8 decodes to lone surrogates; every format still writes."""
    raw = bytes(tmp_path) + b"/trial-\xff\xfe"
    writer_path = Path(raw.decode("utf-8", "surrogateescape"))
    with TrialWriter(writer_path) as writer:
        rng = np.random.default_rng(1)
        for step in range(6):
            writer.write_step(
                step,
                activation_inputs={f"l{i}.relu_input": rng.normal(0, 1.0, (16, 16)) for i in range(3)},
                gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
                losses={"loss": 2.0 - 0.1 * step},
            )
    for fmt in ("table", "json", "jsonl", "junit", "github", "markdown"):
        result = subprocess.run(["poorinit", "analyze", raw, "--format", fmt], capture_output=True, timeout=120)
        assert result.returncode == 0, (fmt, result.stderr)
        assert b"Traceback" not in result.stderr
        result.stdout.decode("utf-8")  # valid UTF-8 whatever the name
        assert b"\\udcff" in result.stdout or fmt in ("json", "jsonl")

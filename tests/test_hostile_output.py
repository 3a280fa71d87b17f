"""A report that cannot be written whole is not written at all.

A full disk, a missing directory or a device that refuses data gives one
line naming the file and the reason, and exit 2. What was in the file before
stays as it was: a report replacing a file is written beside it and renamed
over it when complete; a report appended (``--append``, $GITHUB_STEP_SUMMARY)
or streamed (JSON lines) is cut back to its last whole chunk.

The full disk is real: ``/dev/full``, and a tmpfs of 8 KiB mounted in a user
namespace (``unshare``), where the test runs when the system allows one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import write_synthetic_trial
from .test_errors_doc import expect_error, run


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_trial(tmp_path_factory.mktemp("output") / "healthy")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["json", "markdown", "junit", "github", "jsonl"])
def test_a_full_device_gives_one_line_naming_it(trial: Path, fmt: str) -> None:
    expect_error(run("analyze", str(trial), "--format", fmt, "--output", "/dev/full", "--quiet"),
                 "report-unwritable", "/dev/full", "No space left on device")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_step_summary_gives_one_line(trial: Path) -> None:
    result = run("analyze", str(trial), "--format", "markdown", "--output", "/dev/full", "--quiet",
                 env={**os.environ, "GITHUB_STEP_SUMMARY": "/dev/full"})
    expect_error(result, "report-unwritable", "/dev/full")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_scan_streaming_to_a_full_device_gives_one_line(trial: Path) -> None:
    expect_error(run("scan", str(trial.parent), "--format", "jsonl", "--output", "/dev/full", "--jobs", "1"),
                 "report-unwritable", "/dev/full")


def test_a_missing_directory_leaves_nothing_behind(trial: Path, tmp_path: Path) -> None:
    target = tmp_path / "absent" / "report.json"
    expect_error(run("analyze", str(trial), "--format", "json", "--output", str(target), "--quiet"),
                 "report-unwritable", target)
    assert not target.parent.exists()


def test_a_report_replaces_its_file_whole_and_keeps_its_permissions(trial: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    result = run("analyze", str(trial), "--format", "json", "--output", str(link), "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text())["schema"] == "poorinit.verdict"
    assert link.is_symlink(), "the link still points at the report"
    assert (target.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "report.json"], "no temporary file left"


# Runs inside a new user and mount namespace: mounts a tmpfs of 8 KiB on
# argv[1], runs each case there, prints what it found as JSON.
TINY_DISK = textwrap.dedent("""
    import json, os, subprocess, sys
    disk, trial, trials = sys.argv[1], sys.argv[2], sys.argv[3]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", disk], check=True)
    found = {}

    def case(name, argv, env=None):
        result = subprocess.run(["poorinit", *argv], capture_output=True, text=True,
                                env={**os.environ, **(env or {})})
        files = {n: open(os.path.join(disk, n), "rb").read().decode("latin-1") for n in os.listdir(disk)}
        found[name] = {"returncode": result.returncode, "stderr": result.stderr, "files": files}
        for n in files:
            os.unlink(os.path.join(disk, n))

    # A 4.8 KB JSON report over a small file on 8 KiB: one page fits beside the old file, then the disk is full.
    report = os.path.join(disk, "report.json")
    open(report, "w").write("old report")
    case("replace", ["analyze", trial, "--format", "json", "--output", report, "--quiet"])
    # A step summary holding 7,500 bytes takes both pages; the Markdown report (1.2 KB) does not fit after it.
    summary = os.path.join(disk, "summary.md")
    open(summary, "w").write("x" * 7500)
    case("append", ["analyze", trial, "--format", "markdown", "--output", summary, "--quiet"],
         {"GITHUB_STEP_SUMMARY": summary})
    # Three trials streamed as JSON lines of about 2.9 KB each: two fit on 8 KiB, the third does not.
    case("stream", ["scan", trials, "--jobs", "1", "--format", "jsonl", "--output", os.path.join(disk, "scan.jsonl")])
    print(json.dumps(found))
""")


@pytest.fixture(scope="module")
def tiny_disk(trial: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) to mount a tmpfs without privileges")
    disk = tmp_path_factory.mktemp("disk")
    trials = tmp_path_factory.mktemp("three")
    for name in ("a", "b", "c"):
        shutil.copytree(trial, trials / name)
    result = subprocess.run([unshare, "--user", "--map-root-user", "--mount", sys.executable, "-c", TINY_DISK,
                             str(disk), str(trial), str(trials)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and ("mount" in result.stderr or "unshare" in result.stderr):
        pytest.skip(f"this system allows no tmpfs in a user namespace: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_full_disk_keeps_the_old_report_and_leaves_no_temporary_file(tiny_disk: dict) -> None:
    found = tiny_disk["replace"]
    assert found["returncode"] == 2
    line = found["stderr"].strip()
    assert line.endswith("report.json: cannot write the report (No space left on device)"), line
    assert "\n" not in line and "internal error" not in line
    assert found["files"] == {"report.json": "old report"}


def test_a_full_disk_appends_nothing_to_a_step_summary(tiny_disk: dict) -> None:
    found = tiny_disk["append"]
    assert found["returncode"] == 2
    assert found["stderr"].strip().endswith("summary.md: cannot write the report (No space left on device)")
    assert found["files"] == {"summary.md": "x" * 7500}, "the summary holds what it held, not half a report"


def test_a_plot_is_written_whole_or_not_at_all(trial: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the 'plot' extra")
    full = tmp_path / "full.png"
    full.symlink_to("/dev/full")
    expect_error(run("plot", str(trial), "-o", str(full)), "plot-unwritable", full, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.png"], "no temporary file left"


def test_a_full_disk_keeps_the_json_lines_streamed_so_far_each_whole(tiny_disk: dict) -> None:
    found = tiny_disk["stream"]
    assert found["returncode"] == 2
    assert found["stderr"].strip().endswith("scan.jsonl: cannot write the report (No space left on device)")
    text = found["files"]["scan.jsonl"]
    lines = text.splitlines()
    assert text.endswith("\n") and 1 <= len(lines) < 3, text[-200:]
    assert all(json.loads(line)["status"] == "passed" for line in lines)

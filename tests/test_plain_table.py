"""The table drawn without rich into a pipe is rich's table, character for character.

`poorinit analyze` into a pipe or a file (no colour) prints the table without
importing rich (report/table.py plain_lines): rich costs more to import than a
small trial costs to analyse. These tests hold the two drawings equal, on real
verdicts and on names that a terminal draws wide, narrow or not at all.
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from poorinit import analyze
from poorinit.report import table

from .conftest import write_synthetic_trial

SAMPLES = sorted(p for p in (Path(__file__).parent.parent / "sample_trials").iterdir() if p.is_dir())
NAMES = ["层/权重.weight", "emoji😀/x", "tab\there", "[bold]x[/bold]", "a" * 300, ":smile: e\u0301", "\u200bzero",
         "new\nline", "\x1b[31mred"]


def variants(verdict):
    yield verdict
    first = verdict.criteria[0]
    for name in NAMES:
        criteria = [dataclasses.replace(first, tensor=name, reason=first.reason + name), *verdict.criteria[1:]]
        yield dataclasses.replace(verdict, criteria=criteria, trial=verdict.trial + name, warnings=[name, "w"])


@pytest.mark.parametrize("trial", SAMPLES, ids=[p.name for p in SAMPLES])
def test_plain_table_equals_richs(trial):
    for verdict in variants(analyze(trial)):
        for show_warnings in (True, False):
            assert table.plain_lines(verdict, show_warnings) == table._plain(table.renderable(verdict, show_warnings))
        assert table.plain_verdict_line(verdict) + "\n" == table._plain(table.verdict_line(verdict))


def test_a_diagnosis_is_left_to_rich():
    verdict = analyze(SAMPLES[0], explain=True)
    assert verdict.diagnosis is not None and table.plain_lines(verdict) is None


def test_a_piped_table_does_not_import_rich(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", steps=3)
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "poorinit", "analyze", str(trial)],
                            capture_output=True, text=True, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "criterion" in result.stdout and "┏" in result.stdout
    assert not {"rich", "rich.console"} & modules

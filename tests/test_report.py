"""Reports: every format has a renderer, and the JSON document is stable."""

import json
from pathlib import Path

import numpy as np
import pytest

from poorinit import TrialWriter, analyze
from poorinit.report import MODULES, Format, formatter, scan_formatter
from poorinit.report.json import document, number
from poorinit.scan import TrialResult

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_has_a_renderer(fmt, healthy_trial):
    assert formatter(fmt)(analyze(healthy_trial))


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_a_scan_with_an_unreadable_trial(fmt, healthy_trial):
    results = [TrialResult("runs/broken", error="runs/broken: holds no step files"),
               TrialResult(str(healthy_trial), verdict=analyze(healthy_trial))]
    text = scan_formatter(fmt)(results)
    assert "runs/broken" in text
    if fmt is not Format.GITHUB:  # annotations are for what needs attention: passed trials have none
        assert str(healthy_trial) in text


def test_every_format_is_registered_and_offered_by_the_cli():
    from poorinit.cli import FORMAT_NAMES
    from poorinit.config import FORMATS

    assert set(MODULES) == set(Format)
    assert set(FORMAT_NAMES) == set(FORMATS) == {f.value for f in Format}


def exact_trial(path):
    """Values chosen so that every figure is exact: the golden file cannot drift."""
    with TrialWriter(path) as w:
        for step in range(10):
            w.write_step(
                step,
                activation_inputs={"a.relu_input": np.array([-1.0, 1.0]), "b.relu_input": np.array([-4.0, 4.0])},
                gradients={"gradient/w": np.arange(101.0)},
                losses={"loss": 1.0},
            )
    return path


def test_json_matches_the_golden_document(tmp_path):
    produced = document(analyze(exact_trial(tmp_path / "trial")))
    produced["trial"] = "TRIAL"
    produced["poorinit_version"] = "VERSION"
    expected = json.loads((GOLDEN / "verdict.json").read_text())
    assert produced == expected


def test_non_finite_figures_become_strings():
    figures = [number(float("inf")), number(float("-inf")), number(float("nan")), number(1.5)]
    assert figures == ["inf", "-inf", "nan", 1.5]

"""Gradient spread: the 5th-95th percentile width of all gradient values of a step."""

import math

import numpy as np
import pytest

from poorinit.checks.base import Status
from poorinit.checks.gradients import MIN_VALUES, GradientSpreadCheck

from .helpers import judge

rng = np.random.default_rng(0)


def test_known_spread():
    values = np.arange(101.0) * 1e-5  # percentiles 5 and 95 are 5e-5 and 95e-5
    result = judge(GradientSpreadCheck, [{"g": values}])
    assert result.figure == pytest.approx(90e-5)
    assert result.status is Status.FIRED


def test_healthy_gradients_pass():
    result = judge(GradientSpreadCheck, [{"g1": rng.normal(0, 0.01, 1000), "g2": rng.normal(0, 0.1, 50)}])
    assert result.status is Status.PASSED


def test_all_zero_gradients_fire():
    result = judge(GradientSpreadCheck, [{"g": np.zeros(1000)}] * 3)
    assert result.status is Status.FIRED and result.figure == 0
    assert result.direction == "dead" and "100% of the gradient values are exactly zero" in result.reason


def test_identical_nonzero_gradients_are_called_symmetric():
    result = judge(GradientSpreadCheck, [{"g": np.full(1000, 0.25)}])
    assert result.status is Status.FIRED and result.direction == "symmetric"
    assert "every gradient value is the same" in result.reason


def test_mostly_zero_gradients_are_described_as_dead_units():
    # Issue 8, case 6: 96% of values exactly zero, the rest about 0.056.
    values = np.zeros(1000)
    values[:40] = 0.056
    result = judge(GradientSpreadCheck, [{"g": values}])
    assert result.status is Status.FIRED and "96% of the gradient values are exactly zero: dead units" in result.reason


def test_tensors_are_pooled_so_one_quiet_bias_does_not_fire():
    step = {"gradient/w": rng.normal(0, 0.05, 2000), "gradient/out.bias": np.array([1e-9, -1e-9])}
    result = judge(GradientSpreadCheck, [step])
    assert result.status is Status.PASSED
    assert result.tensor == "gradient/out.bias"  # still named as the quietest


def test_the_first_step_decides():
    steps = [{"g": rng.normal(0, 0.1, 500)}, {"g": rng.normal(0, 1e-6, 500)}]
    result = judge(GradientSpreadCheck, steps)
    assert result.status is Status.PASSED and result.step == 0 and "shown not judged" in result.reason
    assert judge(GradientSpreadCheck, steps[::-1]).status is Status.FIRED


def test_too_few_values_is_not_applicable():
    result = judge(GradientSpreadCheck, [{"g": np.zeros(MIN_VALUES - 1)}])
    assert result.status is Status.NOT_APPLICABLE


def test_exploded_gradients_fire():
    result = judge(GradientSpreadCheck, [{"g": np.array([np.nan] + [1.0] * 100)}])
    assert result.status is Status.FIRED and math.isnan(result.figure)


def test_distribution_range_sets_the_limit():
    step = {"g": rng.normal(0, 0.01, 1000)}
    assert judge(GradientSpreadCheck, [step], distribution_range=0.1).status is Status.FIRED

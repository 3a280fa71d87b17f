"""Loss decrease: the mean of the last `patience` losses against the `patience` before, in standard errors."""

import numpy as np
import pytest

from poorinit.checks.base import Status
from poorinit.checks.loss import LossDecreaseCheck

from .helpers import judge


def series(values):
    return [{"loss": np.float64(v)} for v in values]


def test_decreasing_loss_passes_with_the_relative_change():
    result = judge(LossDecreaseCheck, series([2.0] * 5 + [1.0] * 5))
    assert result.status is Status.PASSED
    assert "-50.0%" in result.reason


def test_a_loss_that_does_not_change_at_all_fires():
    result = judge(LossDecreaseCheck, series([0.693] * 10))
    assert result.status is Status.FIRED and result.direction == "dead"
    assert "does not change at all" in result.reason


def test_rising_loss_fires():
    result = judge(LossDecreaseCheck, series(range(10)))
    assert result.status is Status.FIRED and "rises beyond its batch noise" in result.reason


def test_a_flat_noisy_loss_passes_whichever_window_the_noise_favours():
    # Issue 8, case 5: the window means of a loss that has not moved yet differ by noise.
    rng = np.random.default_rng(5)
    fired = sum(judge(LossDecreaseCheck, series(1.386 + rng.normal(0, 0.03, 10))).fired for _ in range(200))
    assert fired <= 4  # pure noise: about 1% of draws pass 3 standard errors; the old rule fired on half
    noise_up = [1.38, 1.40, 1.37, 1.39, 1.38, 1.39, 1.41, 1.38, 1.40, 1.39]
    result = judge(LossDecreaseCheck, series(noise_up))
    assert result.status is Status.PASSED and "does not rise beyond its batch noise" in result.reason


def test_the_rise_is_measured_in_standard_errors():
    # Windows [1, 2, 1, 2, 1] and [2, 3, 2, 3, 2]: means 1.4 and 2.4, each window's variance 0.3.
    result = judge(LossDecreaseCheck, series([1, 2, 1, 2, 1, 2, 3, 2, 3, 2]))
    assert result.figure == pytest.approx(1.0 / np.sqrt(0.3 / 5 + 0.3 / 5))


def test_noise_does_not_hide_a_downward_trend():
    rng = np.random.default_rng(3)
    values = 2.0 - 0.05 * np.arange(10) + rng.normal(0, 0.05, 10)
    assert judge(LossDecreaseCheck, series(values)).status is Status.PASSED


def test_a_nan_loss_fires():
    result = judge(LossDecreaseCheck, series([1.0, 0.9, float("nan")]))
    assert result.status is Status.FIRED and result.step == 2


def test_fewer_than_patience_plus_one_losses_is_not_applicable():
    result = judge(LossDecreaseCheck, series([1.0, 0.9, 0.8]), patience=5)
    assert result.status is Status.NOT_APPLICABLE


def test_short_series_compares_with_all_earlier_steps():
    result = judge(LossDecreaseCheck, series([3.0, 1.0, 1.0]), patience=2)
    assert result.status is Status.PASSED and "steps 0-0" in result.reason


def test_workers_losses_are_averaged():
    steps = [{"loss": [np.float64(2.0 - 0.1 * s), np.float64(2.2 - 0.1 * s)]} for s in range(10)]
    result = judge(LossDecreaseCheck, steps)
    assert result.per_step[0] == (0, 2.1)


def test_any_loss_series_that_stalls_fires():
    steps = [{"loss": np.float64(2 - 0.1 * s), "aux_loss": np.float64(1.0 + 0.1 * s)} for s in range(10)]
    result = judge(LossDecreaseCheck, steps)
    assert result.status is Status.FIRED and result.tensor == "aux_loss"

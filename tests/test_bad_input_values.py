"""Values that overflow on the way to a figure are judged on purpose, never passed.

Finite values can still make a figure infinite or NaN: squares past about
1e154 overflow float64, a mean of 1e308s overflows its sum, and one overflow
merged with another is NaN. A NaN is never the largest ratio and never
">= 0", so a careless criterion reads it as "passed". Each test writes such
a trial with the public writer and runs the installed ``poorinit``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from poorinit import TrialWriter
from poorinit.checks.loss import finite_mean
from poorinit.stats import Moments, moments

from .test_errors_doc import run


def write(path, steps=6, *, activations=None, gradients=None, loss=None):
    rng = np.random.default_rng(0)
    with TrialWriter(path) as writer:
        for step in range(steps):
            writer.write_step(
                step,
                activation_inputs=activations(step, rng) if activations else {
                    f"net.{i}.relu_input": rng.normal(0, 1, (32, 32)) for i in range(3)
                },
                gradients=gradients(step, rng) if gradients else {"gradient/w": rng.normal(0, 0.05, (32, 32))},
                losses={"loss": loss(step) if loss else 2.0 - 0.1 * step},
            )
    return path


def criteria(result) -> dict:
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    # No numpy overflow warning leaking: stderr holds the verdict's own warnings and nothing else.
    own = [f"poorinit: warning: {document['trial']}: {w}" for w in document["warnings"]]
    assert result.stderr.splitlines() == own, result.stderr
    return {c["check"]: c for c in document["criteria"]}


def test_activations_whose_variance_overflows_fire(tmp_path):
    """float64 inputs reaching 1e200 at later steps: every variance is inf, every ratio would be NaN."""

    def exploding(step, rng):
        scale = 1.0 if step < 3 else 1e200
        return {f"net.{i}.relu_input": rng.normal(0, scale, (32, 32)) for i in range(3)}

    result = run("analyze", write(tmp_path / "t", activations=exploding), "--format", "json")
    assert result.returncode == 1
    variance = criteria(result)["activation_variance"]
    assert variance["status"] == "fired" and variance["step"] == 3
    assert "overflows float64" in variance["reason"] and variance["figure"] == "inf"


def test_a_flat_loss_of_1e308_does_not_decrease(tmp_path):
    result = run("analyze", write(tmp_path / "t", loss=lambda step: 1e308), "--format", "json")
    assert result.returncode == 1
    loss = criteria(result)["loss_decrease"]
    assert loss["status"] == "fired" and loss["figure"] == 0.0, loss


def test_a_loss_falling_from_1e308_to_minus_1e308_decreases_by_minus_inf(tmp_path):
    trial = write(tmp_path / "t", loss=lambda step: 1e308 if step < 3 else -1e308)
    result = run("analyze", trial, "--format", "json", "--patience", "3")
    loss = criteria(result)["loss_decrease"]
    # Deliberate either way: a fall of -inf passes; a figure that is not a number (the window
    # variance of 1e308s overflows) fires. A NaN never passes.
    assert (loss["status"], loss["figure"]) in {("passed", "-inf"), ("fired", "nan")}, loss


def test_gradients_whose_spread_overflows_fire(tmp_path):
    def huge(step, rng):
        return {"gradient/w": rng.choice([-1.7e308, 1.7e308], (32, 32))}

    result = run("analyze", write(tmp_path / "t", gradients=huge), "--format", "json")
    assert result.returncode == 1
    spread = criteria(result)["gradient_spread"]
    assert spread["status"] == "fired" and "overflows float64" in spread["reason"]


def test_overflowed_moments_stay_overflowed_when_merged():
    """inf - inf in the parallel-variance merge would turn every later merge into NaN."""
    big = Moments.of(np.array([1e200, -1e200]))
    assert big.overflowed and not big.nonfinite
    small = Moments.of(np.array([1.0, 2.0]))
    for merged in (big.merge(small), small.merge(big), big.merge(big), moments([np.array([1.0]), np.array([1e300])])):
        assert merged.overflowed
        assert not merged.variance <= 1e308  # inf, never a small number
    assert not small.overflowed and not Moments().overflowed


@pytest.mark.parametrize(
    "values, expected", [([1e308, 1e308], 1e308), ([1.0, 2.0, 3.0], 2.0), ([math.inf, 1.0], math.inf)]
)
def test_the_loss_mean_never_overflows(values, expected):
    assert finite_mean(values) == expected


@pytest.mark.parametrize(
    "values, error_id",
    [
        ({"steps": True}, "parameter-number"),
        ({"threshold": True}, "parameter-number"),
        ({"threshold": math.inf}, "parameter-finite"),
        ({"distribution_range": "inf"}, "parameter-finite"),
        ({"steps": 10**400}, "parameter-number"),
        ({"threshold": 10**400}, "parameter-number"),
        ({"gradient_regex": {"a": 1}}, "parameter-patterns"),
        ({"loss_regex": 3}, "parameter-patterns"),
        ({"activation_inputs_regex": ["ok", 3]}, "parameter-patterns"),
        ({"mode": ["train"]}, "parameter-mode"),
    ],
)
def test_odd_parameter_values_raise_parameter_error_from_the_python_api(values, error_id):
    """Not OverflowError, TypeError or AttributeError, and no silent acceptance: one documented message."""
    from poorinit import ParameterError
    from poorinit.params import RuleParams

    from .test_errors_doc import documented, template_regex

    with pytest.raises(ParameterError) as raised:
        RuleParams.from_values(**values)
    message = str(raised.value)
    assert template_regex(documented()[error_id]).fullmatch(message), message
    assert len(message) < 200


@pytest.mark.parametrize(
    "text, error_id",
    [
        ("steps = true", "parameter-number"),
        ("threshold = inf", "parameter-finite"),
        ('gradient_regex = {a = 1}', "parameter-patterns"),
        ("steps = " + "9" * 400, "parameter-number"),
    ],
)
def test_odd_config_values_are_one_typed_line(tmp_path, text, error_id):
    from .test_errors_doc import documented, expect_error, template_regex

    trial = write(tmp_path / "t")
    config = tmp_path / "poorinit.toml"
    config.write_text(f"[tool.poorinit]\n{text}\n")
    message = expect_error(run("analyze", trial, "--config", config), "setting-source")
    assert str(config) in message
    inner = message.rsplit(" (from ", 1)[0]
    assert template_regex(documented()[error_id]).fullmatch(inner), inner


def test_float32_inputs_holding_both_infinities_fire_without_a_numpy_warning(tmp_path):
    """inf + -inf is NaN inside the float64 sum of a float32 block: told apart on purpose, no warning leaks."""

    def diverged(step, rng):
        values = rng.normal(0, 1, (32, 32)).astype(np.float32)
        if step >= 2:
            values[0, :2] = [np.inf, -np.inf]
        return {f"net.{i}.relu_input": values for i in range(3)}

    result = run("analyze", write(tmp_path / "t", activations=diverged), "--format", "json")
    assert result.returncode == 1
    assert criteria(result)["activation_variance"]["status"] == "fired"

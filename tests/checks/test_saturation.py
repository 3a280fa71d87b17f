"""Activation saturation: the share of a bounded activation's inputs in its flat tails."""

import numpy as np

from poorinit.checks.base import Selector, Status
from poorinit.checks.saturation import BOUNDS, SaturationCheck

from .helpers import judge

rng = np.random.default_rng(0)


def test_known_share():
    step = {"net.1.tanh_input": np.array([0.0, 1.0, 2.0, -3.0])}  # 2 of 4 beyond 1.82
    result = judge(SaturationCheck, [step])
    assert result.figure == 0.5 and result.status is Status.PASSED


def test_large_start_saturates_tanh():
    result = judge(SaturationCheck, [{"net.1.tanh_input": rng.normal(0, 10, 1000)}])
    assert result.status is Status.FIRED and result.tensor == "net.1.tanh_input"
    assert "saturated" in result.reason


def test_xavier_scaled_inputs_pass():
    result = judge(SaturationCheck, [{"net.1.tanh_input": rng.normal(0, 0.6, 1000)}] * 3)
    assert result.status is Status.PASSED and result.figure < 0.01


def test_each_kind_has_its_own_bound():
    x = np.full(100, 3.0)
    assert judge(SaturationCheck, [{"a.sigmoid_input": x}]).status is Status.PASSED  # sigmoid bound 3.64
    assert judge(SaturationCheck, [{"a.tanh_input": x}]).status is Status.FIRED
    assert BOUNDS["hardtanh"] == 1.0


def test_non_finite_inputs_count_as_saturated():
    result = judge(SaturationCheck, [{"a.tanh_input": np.array([np.nan, np.inf, 0.0])}])
    assert result.status is Status.FIRED


def test_relu_inputs_are_not_its_business():
    selector = SaturationCheck(None).selector()  # type: ignore[arg-type]
    assert isinstance(selector, Selector)
    assert selector.matches("net.1.tanh_input", ["activation_inputs"])
    assert selector.matches("net.1.hardtanh_input", ())
    assert not selector.matches("net.1.relu_input", ["activation_inputs"])
    assert not selector.matches("net.1.tanhshrink_input", ["activation_inputs"])

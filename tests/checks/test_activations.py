"""Activation-input variance: the ratio of the largest to the smallest layer variance."""

import math

import numpy as np

from poorinit.checks.activations import ActivationVarianceCheck, depth_key
from poorinit.checks.base import Status

from .helpers import judge

rng = np.random.default_rng(0)


def layers(*stds):
    return {f"net.{i}.relu_input": rng.normal(0, s, 4096) for i, s in enumerate(stds)}


def test_known_ratio():
    step = {"a.relu_input": np.array([-1.0, 1.0]), "b.relu_input": np.array([-3.0, 3.0])}
    result = judge(ActivationVarianceCheck, [step])
    assert result.figure == 9.0
    assert result.status is Status.PASSED


def test_commensurate_variances_pass():
    result = judge(ActivationVarianceCheck, [layers(1, 1.2, 0.9, 1.1)] * 3)
    assert result.status is Status.PASSED
    assert result.figure < 2


def test_signal_shrinking_with_depth_fires_and_names_the_deepest_layer():
    result = judge(ActivationVarianceCheck, [layers(1, 0.1, 0.01, 0.001)])
    assert result.status is Status.FIRED
    assert result.figure > 1e5
    assert result.tensor == "net.3.relu_input"
    assert "shrinks with depth" in result.reason


def test_signal_growing_with_depth_is_called_too_large():
    result = judge(ActivationVarianceCheck, [layers(1, 10, 100)])
    assert "grows with depth" in result.reason


def test_threshold_is_exclusive():
    step = {"a.relu_input": np.array([-1.0, 1.0]), "b.relu_input": np.array([-3.0, 3.0])}
    assert judge(ActivationVarianceCheck, [step], threshold=9).status is Status.PASSED
    assert judge(ActivationVarianceCheck, [step], threshold=8.99).status is Status.FIRED


def test_worst_step_is_reported():
    result = judge(ActivationVarianceCheck, [layers(1, 1), layers(1, 100), layers(1, 1)])
    assert result.step == 1
    assert [s for s, _ in result.per_step] == [0, 1, 2]


def test_a_dead_layer_fires_with_an_infinite_ratio():
    step = layers(1, 1) | {"net.9.relu_input": np.zeros(100)}
    result = judge(ActivationVarianceCheck, [step])
    assert result.status is Status.FIRED and math.isinf(result.figure)
    assert result.tensor == "net.9.relu_input"


def test_all_zero_activations_fire():
    result = judge(ActivationVarianceCheck, [{"a.relu_input": np.zeros(10), "b.relu_input": np.zeros(10)}])
    assert result.status is Status.FIRED
    assert "constant" in result.reason


def test_overflowed_activations_fire():
    step = layers(1, 1) | {"net.5.relu_input": np.array([1.0, np.inf])}
    result = judge(ActivationVarianceCheck, [step])
    assert result.status is Status.FIRED and result.tensor == "net.5.relu_input"


def test_one_layer_is_not_applicable():
    result = judge(ActivationVarianceCheck, [layers(1)])
    assert result.status is Status.NOT_APPLICABLE
    assert "two activation-input layers" in result.reason


def test_single_element_tensors_have_no_variance_to_compare():
    result = judge(ActivationVarianceCheck, [{"a.relu_input": np.ones(1), "b.relu_input": np.ones(1)}])
    assert result.status is Status.NOT_APPLICABLE


def test_workers_are_pooled_into_the_global_batch():
    # Each worker alone is constant; together they vary: the global batch decides.
    step = {
        "a.relu_input": [np.full(50, -1.0), np.full(50, 1.0)],
        "b.relu_input": [np.full(50, -1.0), np.full(50, 1.0)],
    }
    result = judge(ActivationVarianceCheck, [step])
    assert result.status is Status.PASSED and result.figure == 1.0


def test_depth_order_is_natural():
    assert sorted(["net.10.x", "net.2.x"], key=depth_key) == ["net.2.x", "net.10.x"]

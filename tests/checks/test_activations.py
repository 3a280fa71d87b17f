"""Activation-input variance at the first step: the per-layer factor of the variance through depth."""

import math

import numpy as np
import pytest

from poorinit.checks.activations import ActivationVarianceCheck, depth_key
from poorinit.checks.base import Status

from .helpers import judge

rng = np.random.default_rng(0)


def layers(*stds):
    return {f"net.{i}.relu_input": rng.normal(0, s, 4096) for i, s in enumerate(stds)}


def test_known_ratio():
    step = {"a.relu_input": np.array([-1.0, 1.0]), "b.relu_input": np.array([-3.0, 3.0])}
    result = judge(ActivationVarianceCheck, [step])
    assert result.figure == pytest.approx(9.0)  # two layers: SageMaker's largest/smallest ratio
    assert result.status is Status.PASSED


def test_commensurate_variances_pass():
    result = judge(ActivationVarianceCheck, [layers(1, 1.2, 0.9, 1.1)] * 3)
    assert result.status is Status.PASSED
    assert result.figure < 2


def test_signal_shrinking_with_depth_fires_and_names_where_it_leaves_the_range():
    # std / 10 per layer: variance / 100 per layer.
    result = judge(ActivationVarianceCheck, [layers(1, 0.1, 0.01, 0.001)])
    assert result.status is Status.FIRED and result.direction == "collapse"
    assert 80 < result.figure < 120
    assert result.tensor == "net.1.relu_input"  # the first layer 10x below the ones before it
    assert "collapses with depth" in result.reason


def test_signal_growing_with_depth_is_called_too_large():
    result = judge(ActivationVarianceCheck, [layers(1, 10, 100)])
    assert result.direction == "explode" and "explodes with depth" in result.reason


def test_a_healthy_deep_networks_wobble_does_not_fire():
    # Layer variances that wander by up to 2x around a flat trend: 16 layers end to end
    # span more than the threshold, per layer they do not move.
    wobble = [1, 1.4, 0.8, 1.9, 0.7, 1.2, 2.0, 0.9, 0.6, 1.5, 1.0, 0.5, 1.3, 1.8, 0.7, 0.15]
    result = judge(ActivationVarianceCheck, [layers(*np.sqrt(wobble))])
    assert result.status is Status.PASSED and "largest/smallest 1" in result.reason


def test_inputs_after_a_normalisation_layer_are_left_out_of_the_ratio():
    step = {"blocks.0.relu_input": np.array([-1.0, 1.0]), "blocks.1.relu_input": np.array([-1.0, 1.0]),
            "act.relu_input": np.array([-0.01, 0.01])}
    attrs = {"blocks.0.relu_input": {"after": "BatchNorm1d"}, "blocks.1.relu_input": {"after": "BatchNorm1d"}}
    result = judge(ActivationVarianceCheck, [step], attrs=attrs)
    assert result.status is Status.NOT_APPLICABLE and "2 of the 3" in result.reason
    zeros = {name: np.zeros(4) for name in step}
    dead = judge(ActivationVarianceCheck, [zeros], attrs=attrs)
    assert dead.status is Status.FIRED and dead.direction == "dead" and "BatchNorm1d" in dead.reason


def test_forward_order_from_the_recorder_decides_the_direction():
    # By name 'act' sorts before 'blocks'; the recorder's order puts it last.
    step = {"blocks.0.relu_input": np.array([-1.0, 1.0]), "act.relu_input": np.array([-0.01, 0.01])}
    attrs = {"blocks.0.relu_input": {"order": 0}, "act.relu_input": {"order": 1}}
    result = judge(ActivationVarianceCheck, [step], attrs=attrs)
    assert result.direction == "collapse" and result.tensor == "act.relu_input"


def test_threshold_is_exclusive():
    step = {"a.relu_input": np.array([-1.0, 1.0]), "b.relu_input": np.array([-3.0, 3.0])}
    assert judge(ActivationVarianceCheck, [step], threshold=9).status is Status.PASSED
    assert judge(ActivationVarianceCheck, [step], threshold=8.99).status is Status.FIRED


def test_the_first_step_is_judged_and_later_ones_are_shown():
    # The optimiser's first updates rescale a healthy network's layers (issue 8, case 1).
    result = judge(ActivationVarianceCheck, [layers(1, 1), layers(1, 100), layers(1, 1)])
    assert result.status is Status.PASSED and result.step == 0
    assert [s for s, _ in result.per_step] == [0, 1, 2]
    assert "shown not judged" in result.reason


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

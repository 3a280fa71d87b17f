"""Activation saturation: the share of a bounded activation's inputs in its flat tails."""

import numpy as np
import pytest

from poorinit.checks.base import Selector, Status
from poorinit.checks.saturation import BOUNDS, SOFTMAX_BOUND, SaturationCheck, softmax_rows

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


# -- softmax: saturated by rows -------------------------------------------------


def test_the_softmax_bound_is_where_its_slope_falls_below_a_tenth_of_its_peak():
    # A row (p, 1 - p): the Jacobian's norm is 2 p (1 - p), 1/2 at its peak.
    slope = 2 * SOFTMAX_BOUND * (1 - SOFTMAX_BOUND)
    assert slope == pytest.approx(0.05)


def test_a_softmax_input_is_judged_by_the_share_of_one_hot_rows():
    rows = np.array([[0.0, 0.0, 0.0, 0.0],  # uniform
                     [9.0, 0.0, 0.0, 0.0],  # largest probability 0.9996: one-hot
                     [3.0, 0.0, 0.0, 0.0],  # 0.87: peaked, not saturated
                     [0.0, 20.0, 0.0, 1.0]])  # one-hot
    result = judge(SaturationCheck, [{"attn.softmax_input": rows}])
    assert result.figure == 0.5 and result.status is Status.PASSED
    fired = judge(SaturationCheck, [{"attn.softmax_input": rows * 10}])
    assert fired.status is Status.FIRED and "softmax is saturated" in fired.reason


class Blocks:
    """A tensor whose flat blocks end in the middle of rows, as a reader's may."""

    def __init__(self, values: np.ndarray, block: int) -> None:
        self.values, self.block, self.shape = values, block, values.shape
        self.name, self.worker, self.source, self.attrs = "a.softmax_input", 0, "<memory>", {}

    @property
    def size(self) -> int:
        return self.values.size

    def blocks(self):
        flat = self.values.reshape(-1)
        for start in range(0, flat.size, self.block):
            yield flat[start:start + self.block]


@pytest.mark.parametrize("block", [1, 3, 7, 8, 1000])
def test_rows_split_across_blocks_are_counted_whole(block):
    values = rng.normal(0, 6, (50, 8))
    assert softmax_rows(Blocks(values, block)) == softmax_rows(Blocks(values, values.size))
    largest = np.exp(values - values.max(1, keepdims=True))
    expected = int(np.count_nonzero(1 / largest.sum(1) > SOFTMAX_BOUND))
    assert softmax_rows(Blocks(values, block)) == (expected, 50)


def test_masked_positions_are_no_choice_and_a_row_with_one_choice_is_not_counted():
    causal = np.triu(np.full((6, 6), -np.inf), 1) + rng.normal(0, 0.3, (6, 6))
    assert softmax_rows(Blocks(causal, 36)) == (0, 5)  # the first row has one position only
    filled = np.where(np.isinf(causal), np.finfo(np.float32).min, causal)  # Hugging Face's mask fill
    assert softmax_rows(Blocks(filled, 36)) == (0, 5)


def test_a_softmax_row_holding_nan_or_inf_counts_as_saturated():
    rows = np.array([[0.0, np.nan], [np.inf, 0.0], [0.0, 0.0]])
    assert softmax_rows(Blocks(rows, 6)) == (2, 3)

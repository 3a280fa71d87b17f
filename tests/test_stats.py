"""Known answers for the statistics the criteria are built on."""

import math

import numpy as np
import pytest

from poorinit.stats import Moments, moments, percentile_spread


def test_variance_is_the_population_variance():
    assert Moments.of(np.array([1.0, 2.0, 3.0, 4.0])).variance == pytest.approx(1.25)


def test_moments_merged_block_by_block_equal_the_whole():
    values = np.random.default_rng(1).normal(3.0, 2.0, 10_001)
    merged = moments(np.array_split(values, 7))
    assert merged.count == values.size
    assert merged.mean == pytest.approx(values.mean())
    assert merged.variance == pytest.approx(values.var(), rel=1e-12)


def test_variance_in_float64_even_for_float16_input():
    values = np.full(100_000, 1000.0, dtype=np.float16)
    values[::2] += 1
    assert Moments.of(values).variance == pytest.approx(0.25)


def test_non_finite_values_are_counted_not_averaged():
    m = Moments.of(np.array([1.0, np.nan, 3.0, np.inf]))
    assert (m.count, m.nonfinite, m.mean) == (2, 2, 2.0)


def test_empty_sample_has_no_variance():
    assert math.isnan(moments([]).variance)


def test_percentile_spread_matches_numpy():
    values = np.random.default_rng(2).standard_t(3, 5_000)
    spread = percentile_spread(np.array_split(values, 3))
    assert spread.low == pytest.approx(np.percentile(values, 5))
    assert spread.high == pytest.approx(np.percentile(values, 95))
    assert spread.count == values.size


def test_percentile_spread_of_a_constant_is_zero():
    assert percentile_spread([np.zeros(100)]).width == 0.0


def test_percentile_spread_ignores_and_counts_non_finite():
    spread = percentile_spread([np.array([np.nan, 1.0, 2.0])])
    assert (spread.count, spread.nonfinite) == (2, 1)

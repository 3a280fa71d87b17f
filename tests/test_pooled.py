"""The gradients of a step read once on two threads (stats.pooled_spread) give
the one-thread figures, and a step of exactly the arena's size takes that path."""

import numpy as np
import pytest

from poorinit import parallel, stats
from poorinit.trial import ArrayTensor


def test_a_step_filling_the_arena_exactly_is_read_once_and_exactly(monkeypatch):
    rng = np.random.default_rng(3)
    count = 16
    size = stats.KEPT_BYTES // 4 // count  # float32 values: the arena, full
    tensors = [ArrayTensor(f"g{i}", (rng.standard_normal(size) * (i + 1)).astype(np.float32)) for i in range(count)]
    expected = stats.percentile_spread([t.values for t in tensors])

    def no_second_reading(*args, **kwargs):
        raise AssertionError("pooled_spread fell back to reading the sources again")

    monkeypatch.setattr(stats, "percentile_spread", no_second_reading)
    with parallel.using(2):
        assert stats.pools([t.size for t in tensors])
        pooled = stats.pooled_spread(tensors)
    assert (pooled.spread.low, pooled.spread.high, pooled.spread.count) == (expected.low, expected.high,
                                                                            expected.count)
    assert pooled.zeros == [int(np.count_nonzero(t.values == 0)) for t in tensors]


@pytest.mark.parametrize("bad", ["nan", "float64"])
def test_what_the_pooled_path_does_not_take_is_counted_again_exactly(bad):
    rng = np.random.default_rng(4)
    values = [rng.standard_normal(300_000).astype(np.float32) for _ in range(3)]
    if bad == "nan":
        values[1][7] = np.nan
    else:
        values[2] = values[2].astype(np.float64)
    tensors = [ArrayTensor(f"g{i}", v) for i, v in enumerate(values)]
    with parallel.using(2):
        pooled = stats.pooled_spread(tensors)
    expected = stats.percentile_spread(values)
    assert (pooled.spread.low, pooled.spread.high, pooled.spread.nonfinite) == (expected.low, expected.high,
                                                                                expected.nonfinite)


def _distributions():
    rng = np.random.default_rng(5)
    n = 400_000
    yield "normal", rng.standard_normal(n)
    yield "rounded: long runs of equal values", np.round(rng.standard_normal(n), 1)
    yield "one value", np.full(n, 0.25)
    yield "signed zeros and a few values", np.where(rng.random(n) < 0.5, -0.0, 0.0) + (rng.random(n) < 0.02)
    yield "heavy tails", rng.standard_cauchy(n) * 1e30
    yield "subnormals", rng.standard_normal(n) * 1e-40
    yield "two clusters far apart", np.concatenate([rng.normal(-1e6, 1, n // 2), rng.normal(1e6, 1, n // 2)])


# Where ties fill a bracket, the census answers instead (it splits tied bins without copying them).
TIES = {"rounded: long runs of equal values", "one value", "signed zeros and a few values"}


@pytest.mark.parametrize("name, values", list(_distributions()), ids=[name for name, _ in _distributions()])
def test_bracketed_order_statistics_are_the_sorted_values(name, values):
    values = values.astype(np.float32)
    blocks = [values[:100_000], values[100_000:350_000], values[350_000:]]
    ordered = np.sort(values)
    n = values.size
    ranks = sorted({0, n - 1, *stats._linear(n, 5)[:2], *stats._linear(n, 95)[:2], n // 2})
    found = stats._bracketed(blocks, ranks)
    if found is None:
        assert name in TIES, "a 5-sigma bracket missed (one chance in a million)"
    else:
        assert found == {rank: float(ordered[rank]) for rank in ranks}
    with parallel.using(2):
        pooled = stats.pooled_spread([ArrayTensor(f"g{i}", block) for i, block in enumerate(blocks)])
    assert (pooled.spread.low, pooled.spread.high) == tuple(np.percentile(values, [5, 95]))


def test_a_bracket_that_misses_its_rank_leaves_the_census_to_answer(monkeypatch):
    rng = np.random.default_rng(6)
    values = [rng.standard_normal(300_000).astype(np.float32) for _ in range(3)]
    # A sample of each block's first value, repeated: brackets of one value, which miss.
    monkeypatch.setattr(stats, "_spread", lambda count, size: np.zeros(count, dtype=np.intp))
    n = sum(v.size for v in values)
    assert stats._bracketed(values, list(stats._linear(n, 5)[:2])) is None
    with parallel.using(2):
        pooled = stats.pooled_spread([ArrayTensor(f"g{i}", v) for i, v in enumerate(values)])
    expected = np.percentile(np.concatenate(values).astype(np.float64), [5, 95])
    assert (pooled.spread.low, pooled.spread.high) == tuple(expected)


@pytest.mark.parametrize("miss", [False, True], ids=["brackets", "brackets missing: the census"])
def test_one_thread_percentiles_of_kept_values_take_either_route_exactly(monkeypatch, miss):
    rng = np.random.default_rng(7)
    blocks = [rng.standard_normal(200_000).astype(np.float32) * (i + 1) for i in range(3)]
    if miss:
        monkeypatch.setattr(stats, "_spread", lambda count, size: np.zeros(count, dtype=np.intp))
    with parallel.using(1):
        spread = stats.percentile_spread(blocks)
    assert (spread.low, spread.high) == tuple(np.percentile(np.concatenate(blocks), [5, 95]))

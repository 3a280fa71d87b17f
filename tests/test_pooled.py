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

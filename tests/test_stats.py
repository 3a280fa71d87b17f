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


# --- Exact percentiles in bounded memory (the streaming path) -----------------

import tracemalloc  # noqa: E402

import h5py  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from poorinit.stats import PARTITION_MAX, SCRATCH_MAX, percentiles  # noqa: E402
from poorinit.trial import BLOCK_ELEMENTS, DatasetTensor  # noqa: E402

rng = np.random.default_rng(7)
QS = (0, 5, 25, 50, 95, 100)


class Reiterable:
    """A source that counts how often it is read, as a trial would be."""

    def __init__(self, blocks):
        self.blocks = list(blocks)
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        yield from self.blocks


def assert_numpy_percentiles(values, blocks=7, qs=QS, budget=None):
    values = np.asarray(values)
    finite = values[np.isfinite(values)].astype(np.float64)
    kwargs = {} if budget is None else {"budget": budget}
    result = percentiles(Reiterable(np.array_split(values, blocks)), qs, **kwargs)
    expected = np.percentile(finite, qs) if finite.size else [math.nan] * len(qs)
    for got, want in zip(result.values, expected, strict=True):
        assert got == want or (math.isnan(got) and math.isnan(want)), (got, want, values.size, budget)
    assert (result.count, result.nonfinite) == (finite.size, values.size - finite.size)


@pytest.mark.parametrize("budget", [1, 2, 5, None])
def test_small_samples_equal_numpy_to_the_last_bit(budget):
    for n in range(1, 31):
        assert_numpy_percentiles(rng.normal(size=n), blocks=min(n, 4), budget=budget)
        assert_numpy_percentiles(rng.integers(-2, 3, n).astype(float), blocks=min(n, 3), budget=budget)  # ties
        assert_numpy_percentiles(np.full(n, 0.1), blocks=1, budget=budget)  # constant


@pytest.mark.parametrize("n", [PARTITION_MAX, PARTITION_MAX + 1, 300_000])
@pytest.mark.parametrize("budget", [1_000, None])
def test_large_samples_equal_numpy_on_every_path(n, budget):
    # n <= PARTITION_MAX and kept: one np.partition; larger and kept: brackets from a sample
    # (or the histogram over the kept blocks); budget 1,000: the source is read again.
    assert_numpy_percentiles(rng.standard_t(3, n).astype(np.float32), blocks=9, budget=budget)


@pytest.mark.parametrize(
    "values",
    [
        1.0 + rng.normal(0, 1e-13, 50_000),  # every value in one top-16-bit bin
        rng.integers(0, 4, 50_000).astype(float),  # four values, each 12,500 times
        np.concatenate([np.zeros(1000), -np.zeros(1000), rng.normal(size=100)]),  # -0.0 and +0.0
        np.concatenate([np.full(10, -1e307), np.full(10, 1e307), rng.normal(size=10)]),  # extremes
        np.array([5e-324, -5e-324, 0.0, 2.2e-308, -2.2e-308] * 30),  # subnormals
    ],
    ids=["one-bin", "ties", "signed-zeros", "extremes", "subnormals"],
)
@pytest.mark.parametrize("budget", [1, 100, None])
def test_crowded_bins_split_down_to_one_value(values, budget):
    assert_numpy_percentiles(values, budget=budget)


def test_non_finite_values_are_counted_and_excluded_when_streaming():
    values = rng.normal(size=400_000)
    values[::1000] = np.nan
    values[1::997] = np.inf
    values[2::991] = -np.inf
    assert_numpy_percentiles(values, budget=10_000)


def test_mixed_dtypes_pool_as_float64():
    blocks = [rng.normal(size=300).astype(np.float16), rng.normal(size=300).astype(np.float32), rng.normal(size=300)]
    result = percentiles(Reiterable(blocks), QS, budget=50)
    expected = np.percentile(np.concatenate([b.astype(np.float64) for b in blocks]), QS)
    assert list(result.values) == list(expected)


def test_no_finite_value_gives_nan():
    result = percentiles([np.array([np.nan, np.inf])], (5, 95))
    assert all(math.isnan(v) for v in result.values) and (result.count, result.nonfinite) == (0, 2)
    assert percentiles([], (5,)).count == 0


@settings(max_examples=150, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(1, 60),
                      elements=st.floats(-1e307, 1e307, allow_nan=False, allow_subnormal=True)),
    qs=st.lists(st.floats(0, 100), min_size=1, max_size=4),
    budget=st.integers(1, 80),
    blocks=st.integers(1, 5),
)
def test_any_sample_equals_numpy(values, qs, budget, blocks):
    assert_numpy_percentiles(values, blocks=min(blocks, values.size), qs=qs, budget=budget)


def test_data_within_the_budget_is_read_once():
    source = Reiterable(np.array_split(rng.normal(size=100_000), 10))
    percentile_spread(source)
    assert source.passes == 1


def test_data_over_the_budget_is_read_twice():
    source = Reiterable(np.array_split(rng.normal(size=100_000), 10))
    percentile_spread(source, budget=20_000)
    assert source.passes == 2


def test_each_split_of_a_crowded_bin_costs_one_pass_at_most_four():
    source = Reiterable(np.array_split(np.full(10_000, 3.0), 4))
    assert percentile_spread(source, budget=100).width == 0
    assert source.passes <= 1 + 3 + 1


def test_a_one_shot_iterator_is_kept_whole():
    values = rng.normal(size=50_000)
    spread = percentile_spread((block for block in np.array_split(values, 5)), budget=100)
    assert (spread.low, spread.high) == tuple(np.percentile(values, [5, 95]))


def test_streaming_memory_stays_within_the_budget():
    # 4M float32 values drawn block by block: concatenated as float64 they
    # would take 32 MiB; streamed with a 256K-value budget far less.
    def draw():
        generator = np.random.default_rng(3)
        for _ in range(32):
            yield generator.standard_normal(1 << 17, dtype=np.float32)

    class Drawn:
        def __iter__(self):
            return draw()

    expected = np.percentile(np.concatenate(list(draw())).astype(np.float64), [5, 95])
    tracemalloc.start()
    try:
        spread = percentile_spread(Drawn(), budget=1 << 18)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (spread.low, spread.high) == tuple(expected)
    assert peak < 12 * (1 << 20)


def test_percentiles_refuse_nonsense():
    with pytest.raises(ValueError, match="percentiles"):
        percentiles([np.zeros(3)], (101,))
    with pytest.raises(ValueError, match="budget"):
        percentiles([np.zeros(3)], (5,), budget=0)


# --- Moments with reused buffers ----------------------------------------------


def test_moments_leave_a_float64_input_untouched():
    values = rng.normal(size=1000)
    copy = values.copy()
    Moments.of(values)
    assert np.array_equal(values, copy)


def test_moments_agree_with_numpy_on_both_sides_of_the_scratch_limit():
    for n in (10, SCRATCH_MAX + 1):
        values = rng.normal(2.0, 3.0, n).astype(np.float32)
        m = Moments.of(values)
        assert m.mean == pytest.approx(values.mean(dtype=np.float64), rel=1e-12)
        assert m.variance == pytest.approx(values.var(dtype=np.float64), rel=1e-9)
        assert Moments.of(values[:3]).count == 3  # a later, smaller call is not confused by the buffer


# --- Datasets stream in bounded blocks, covering the tensor once, in order ----


def test_dataset_blocks_cover_the_tensor_once_in_c_order(tmp_path):
    wide = rng.normal(size=(3, BLOCK_ELEMENTS + BLOCK_ELEMENTS // 2)).astype(np.float32)
    tall = rng.normal(size=(5, 7, 9))
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("wide", data=wide, chunks=(1, 1 << 18), fletcher32=True)
        f.create_dataset("tall", data=tall)
        f.create_dataset("big_endian", data=tall.astype(">f4"), chunks=(2, 7, 9))
        f.create_dataset("scalar", data=np.float64(2.5))
    with h5py.File(tmp_path / "t.h5") as f:
        for name, expected in [("wide", wide), ("tall", tall), ("big_endian", tall.astype(np.float32)),
                               ("scalar", np.array([2.5]))]:
            blocks = list(DatasetTensor(f[name], name, 0, tmp_path / "t.h5").blocks())
            assert all(b.size <= BLOCK_ELEMENTS and b.dtype.isnative for b in blocks)
            assert np.array_equal(np.concatenate(blocks), expected.reshape(-1))


# --- float32 data is ranked on its own bit patterns ---------------------------


@pytest.mark.parametrize(
    "values",
    [
        np.float32(1.0) + rng.normal(0, 1e-6, 50_000).astype(np.float32),  # a few float32 values, many ties
        rng.integers(0, 4, 50_000).astype(np.float32),
        np.concatenate(
            [np.zeros(1000, np.float32), -np.zeros(1000, np.float32), rng.normal(size=100).astype(np.float32)]
        ),
        np.array([1e-45, -1e-45, 0.0, 1.2e-38, -1.2e-38] * 30, dtype=np.float32),  # float32 subnormals
        np.concatenate([np.full(10, -3e38, np.float32), np.full(10, 3e38, np.float32)]),  # sums overflow float32
        rng.normal(size=300_000).astype(np.float16),
    ],
    ids=["ties", "four-values", "signed-zeros", "subnormals", "near-limit", "float16"],
)
@pytest.mark.parametrize("budget", [1, 100, None])
def test_float32_samples_equal_numpy_to_the_last_bit(values, budget):
    assert_numpy_percentiles(values, budget=budget)


def test_a_float64_block_after_dropped_float32_blocks_counts_again():
    blocks = [rng.normal(size=1000).astype(np.float32) for _ in range(5)] + [rng.normal(size=1000)]
    source = Reiterable(blocks)
    result = percentiles(source, QS, budget=1500)
    assert list(result.values) == list(np.percentile(np.concatenate([b.astype(np.float64) for b in blocks]), QS))
    assert source.passes == 3  # float32 census, float64 census, gathering


def test_float32_moments_agree_with_numpy_in_float64():
    values = rng.normal(1e3, 1e-1, 3 * SCRATCH_MAX // 2).astype(np.float32)
    m = Moments.of(values)
    assert m.mean == pytest.approx(values.mean(dtype=np.float64), rel=1e-12)
    assert m.variance == pytest.approx(values.var(dtype=np.float64), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        st.tuples(st.sampled_from([np.float16, np.float32, np.float64]),
                  st.lists(st.floats(-6e4, 6e4, allow_nan=False, width=16), min_size=1, max_size=40)),
        min_size=1, max_size=5,
    ),
    budget=st.integers(1, 120),
)
def test_blocks_of_any_float_widths_pool_exactly(parts, budget):
    blocks = [np.array(values, dtype=dtype) for dtype, values in parts]
    result = percentiles(Reiterable(blocks), QS, budget=budget)
    expected = np.percentile(np.concatenate([b.astype(np.float64) for b in blocks]), QS)
    assert list(result.values) == list(expected)

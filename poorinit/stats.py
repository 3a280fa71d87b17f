"""Pure statistics over streamed blocks of values; no I/O, no printing.

All accumulation is in float64 whatever the stored dtype, so a float16
activation of a million elements has an exact enough variance. Non-finite
values are counted, never mixed into a figure: a NaN is evidence of an
overflow, not a number to average.

Percentiles are exact (equal to ``np.percentile`` of the finite values, the
default linear interpolation) in bounded memory. Data that fits
:data:`BUDGET_VALUES` is kept from the first pass and never read twice; larger
data is read again, as few times as the histogram below needs (twice, almost
always). The method, for ``n`` finite values:

1. Count the values per *bin* of the top 16 bits of their float64 bit pattern.
   Mapped to an unsigned key (flip every bit of a negative number, the sign
   bit of a positive one), bit patterns sort exactly as the values do, so a
   bin is an interval of values and the cumulative counts tell which bin holds
   the ``k``-th smallest value and how many values lie below it.
2. Keep only the values of the bins holding the order statistics numpy
   interpolates between (two per percentile), and select within them with
   ``np.partition``. A bin holding more than the budget is split by the next
   16 bits first (one more pass each time, four levels at most: a bin of all
   64 bits holds one value, however often it repeats).
"""

from __future__ import annotations

import math
import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# Finite values kept in memory between passes, and the most values gathered
# from one bin: 16M values (64 MiB of float32, 128 MiB of float64). Above it
# the source is read again.
BUDGET_VALUES = 1 << 24
# Up to this many values a plain np.partition beats building a histogram.
PARTITION_MAX = 1 << 18
# Blocks up to this size are converted in per-thread buffers reused from block
# to block: a fresh 8 MiB array per block costs more in page faults than the
# arithmetic done on it.
SCRATCH_MAX = 1 << 22

_BITS = 16
_BINS = 1 << _BITS
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
# Index of the most significant uint16 of a float64 viewed as uint16s.
_HIGH = 3 if sys.byteorder == "little" else 0
# The top 16 bits of a float64 as stored, for each top-16-bit key: negative
# values (keys below 0x8000) come most negative first.
_RAW_OF_KEY = np.concatenate([np.arange(_BINS - 1, _BINS // 2 - 1, -1), np.arange(_BINS // 2)]).astype(np.intp)

_local = threading.local()


def _scratch(name: str, size: int, dtype: type) -> np.ndarray:
    """A per-thread buffer of ``size`` elements, valid until the next call with ``name``."""
    if size > SCRATCH_MAX:
        return np.empty(size, dtype=dtype)
    buffers: dict[str, np.ndarray] = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.size < size:
        buffer = buffers[name] = np.empty(max(size, 1 << 16), dtype=dtype)
    return buffer[:size]


def _finite_view(values: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """The finite values as a flat float64 array, how many were not finite, and
    whether the array may be overwritten (it is then a scratch buffer, valid
    until the next call, or a private copy)."""
    array = np.asarray(values).reshape(-1)
    if array.dtype == np.float64 and array.flags.c_contiguous:
        x, owned = array, False
    else:
        x, owned = _scratch("float64", array.size, np.float64), True
        np.copyto(x, array, casting="same_kind")
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, or finite values summing past 1.8e308
        total = x.sum()
    if math.isfinite(total):  # a NaN or an infinity makes the sum non-finite
        return x, 0, owned
    finite = np.isfinite(x)
    kept = int(np.count_nonzero(finite))
    return x[finite], x.size - kept, True


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of the finite values (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    nonfinite: int = 0

    @property
    def variance(self) -> float:
        """Population variance (ddof=0) of the finite values; NaN when empty.

        Finite values can still have an infinite (or, once merged, NaN)
        variance: squares of values past about 1e154 overflow float64. Such a
        variance is not a figure to compare (a NaN ratio is never the largest)
        but evidence of an exploded signal: see :attr:`overflowed`.
        """
        return self.m2 / self.count if self.count else float("nan")

    @property
    def overflowed(self) -> bool:
        """Values were there, but their mean or variance does not fit float64."""
        return bool(self.count) and not (math.isfinite(self.mean) and math.isfinite(self.m2))

    def merge(self, other: Moments) -> Moments:
        """Exact merge of two disjoint samples (parallel-variance formula)."""
        if not other.count:
            return Moments(self.count, self.mean, self.m2, self.nonfinite + other.nonfinite)
        if not self.count:
            return Moments(other.count, other.mean, other.m2, self.nonfinite + other.nonfinite)
        count = self.count + other.count
        if self.overflowed or other.overflowed:  # inf - inf would make every later merge NaN
            return Moments(count, math.inf, math.inf, self.nonfinite + other.nonfinite)
        delta = other.mean - self.mean
        # Python floats overflow to inf without a warning; an inf is kept as overflowed.
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Moments(count, mean, m2, self.nonfinite + other.nonfinite)

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        x, nonfinite, owned = _finite_view(values)
        if not x.size:
            return cls(0, 0.0, 0.0, nonfinite)
        # Two passes over the block, squares summed pairwise. Not np.dot: a
        # threaded BLAS costs ten times more than it saves on vectors this size.
        # Values near the float64 limit give an infinite variance, not a warning.
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(x.sum()) / x.size
            centred = np.subtract(x, mean, out=x if owned else _scratch("centred", x.size, np.float64))
            m2 = float(np.square(centred, out=centred).sum())
        return cls(int(x.size), mean, m2, nonfinite)


def moments(blocks: Iterable[np.ndarray]) -> Moments:
    """Moments of all values in ``blocks``, accumulated block by block."""
    total = Moments()
    for block in blocks:
        total = total.merge(Moments.of(block))
    return total


@dataclass(frozen=True)
class Spread:
    """The ``low``-``high`` percentile spread of the finite values of a sample."""

    low: float
    high: float
    count: int
    nonfinite: int

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class Percentiles:
    """Exact percentiles of the finite values of a sample (NaN when there are none)."""

    values: tuple[float, ...]
    count: int
    nonfinite: int


def percentile_spread(
    source: Iterable[np.ndarray], low: float = 5.0, high: float = 95.0, *, budget: int = BUDGET_VALUES
) -> Spread:
    """The ``low`` and ``high`` percentiles of all blocks, exactly as ``np.percentile``.

    ``source`` should be re-iterable (a list, or an object whose ``__iter__``
    starts over) when it may hold more than ``budget`` values; a one-shot
    iterator is kept whole in memory instead.
    """
    result = percentiles(source, (low, high), budget=budget)
    return Spread(result.values[0], result.values[1], result.count, result.nonfinite)


def percentiles(
    source: Iterable[np.ndarray], percents: Sequence[float], *, budget: int = BUDGET_VALUES
) -> Percentiles:
    """Percentiles of the finite values of all blocks, equal to
    ``np.percentile(finite_values, percents)`` (method "linear").

    Memory: at most ``budget`` of the source's values are held between passes
    (its own blocks, not copies, so a source must not reuse a block's buffer)
    and at most ``budget`` float64 values are gathered at a time, beyond
    per-thread buffers of one block.
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1 value, not {budget}")
    for q in percents:
        if not 0 <= q <= 100:
            raise ValueError(f"percentiles must lie in [0, 100], not {q}")
    one_shot = iter(source) is source
    census = _Census(math.inf if one_shot else budget)
    for block in source:
        census.add(block)
    n, nonfinite = census.count, census.nonfinite
    if not n:
        return Percentiles(tuple(math.nan for _ in percents), 0, nonfinite)
    plans = [_linear(n, q) for q in percents]
    ranks = sorted({rank for previous, following, _ in plans for rank in (previous, following)})
    if census.kept is not None and n <= PARTITION_MAX:
        values = np.empty(n)
        filled = 0
        for block in census.kept:
            x = _finite_view(block)[0]
            values[filled : filled + x.size] = x
            filled += x.size
        values.partition(ranks)
        stats = {rank: float(values[rank]) for rank in ranks}
    else:
        blocks: Iterable[np.ndarray] = census.kept if census.kept is not None else source
        stats = _order_statistics(blocks, census.key_histogram(), ranks, budget)
    return Percentiles(tuple(_lerp(stats[p], stats[f], gamma) for p, f, gamma in plans), n, nonfinite)


def _linear(n: int, q: float) -> tuple[int, int, float]:
    """numpy's "linear" method: the two ranks to interpolate between and the weight.

    Mirrors numpy's arithmetic step for step (float64 throughout), so the
    result is the same float, not merely a close one.
    """
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        # numpy takes the last value twice, with the weight measured from index -1.
        return n - 1, n - 1, virtual + 1
    previous = math.floor(virtual)
    return previous, previous + 1, virtual - previous


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp``: from the nearer end, so that t=1 gives b exactly."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


class _Census:
    """The first pass: counts, a histogram of top-16-bit keys, and the blocks
    themselves (as given, not copied) while they fit the budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.count = 0
        self.nonfinite = 0
        self.kept: list[np.ndarray] | None = []
        self._kept_values = 0
        self._raw_histogram: np.ndarray | None = None

    def add(self, block: np.ndarray) -> None:
        array = np.asarray(block).reshape(-1)
        x, nonfinite, _ = _finite_view(array)
        self.count += x.size
        self.nonfinite += nonfinite
        if self.kept is None:
            self._histogram(x)
            return
        self.kept.append(array)
        self._kept_values += array.size
        if self._kept_values > self.budget:
            self._histogram(x)
            for kept in self.kept[:-1]:
                self._histogram(_finite_view(kept)[0])
            self.kept = None

    def _histogram(self, x: np.ndarray) -> None:
        index = _scratch("index", x.size, np.intp)
        np.copyto(index, _raw_prefixes(x))
        counts = np.bincount(index, minlength=_BINS)
        if self._raw_histogram is None:
            self._raw_histogram = counts
        else:
            self._raw_histogram += counts

    def key_histogram(self) -> np.ndarray:
        """Counts per top-16-bit key, in the order of the values."""
        if self._raw_histogram is None:
            for kept in self.kept or ():
                self._histogram(_finite_view(kept)[0])
        if self._raw_histogram is None:
            return np.zeros(_BINS, dtype=np.intp)
        return self._raw_histogram[_RAW_OF_KEY]


def _raw_prefixes(x: np.ndarray) -> np.ndarray:
    """The top 16 bits of each float64 as stored (a strided view, no copy)."""
    return x.view(np.uint16)[_HIGH::4]


def _keys(x: np.ndarray) -> np.ndarray:
    """Unsigned keys that sort as the float64 values do (-0.0 just below +0.0)."""
    bits = x.view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(_SIGN))


def _value_of_key(key: int) -> float:
    bits = key ^ _SIGN if key & _SIGN else ~key & _ALL
    return float(struct.unpack("=d", struct.pack("=Q", bits))[0])


@dataclass(frozen=True)
class _Bin:
    """The values whose key starts with ``prefix`` (``bits`` long); ``below``
    values of the sample sort before them."""

    prefix: int
    bits: int
    below: int
    count: int

    @property
    def raw_top(self) -> int:
        return int(_RAW_OF_KEY[self.prefix >> (self.bits - _BITS)])

    def members(self, x: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The values of ``x`` in this bin, given their raw top 16 bits."""
        inside = x[raw == self.raw_top]
        if self.bits > _BITS and inside.size:
            inside = inside[(_keys(inside) >> np.uint64(64 - self.bits)) == np.uint64(self.prefix)]
        return inside

    def split(self, histogram: np.ndarray, rank: int) -> _Bin:
        """The sub-bin (next 16 bits) holding the value of ``rank``."""
        cumulative = np.cumsum(histogram)
        sub = int(np.searchsorted(cumulative, rank - self.below, side="right"))
        below = self.below + int(cumulative[sub] - histogram[sub])
        return _Bin((self.prefix << _BITS) | sub, self.bits + _BITS, below, int(histogram[sub]))


def _finite_blocks(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The finite float64 values of each block; each valid until the next is asked for."""
    for block in blocks:
        yield _finite_view(block)[0]


def _order_statistics(
    blocks: Iterable[np.ndarray], key_histogram: np.ndarray, ranks: Sequence[int], budget: int
) -> dict[int, float]:
    """The values of the given ranks (0 = smallest finite value), from a histogram
    of top-16-bit keys and as few further passes over ``blocks`` as needed."""
    cumulative = np.cumsum(key_histogram)
    bins: dict[int, _Bin] = {}
    for rank in ranks:
        key = int(np.searchsorted(cumulative, rank, side="right"))
        bins[rank] = _Bin(key, _BITS, int(cumulative[key] - key_histogram[key]), int(key_histogram[key]))

    # Split bins too big to gather, 16 bits at a time, one pass per level.
    while True:
        crowded = sorted({b for b in bins.values() if b.count > budget and b.bits < 64}, key=lambda b: b.prefix)
        if not crowded:
            break
        histograms = {b: np.zeros(_BINS, dtype=np.intp) for b in crowded}
        for x in _finite_blocks(blocks):
            raw = _raw_prefixes(x)
            for b in crowded:
                inside = b.members(x, raw)
                if inside.size:
                    shift = np.uint64(64 - b.bits - _BITS)
                    sub = ((_keys(inside) >> shift) & np.uint64(_BINS - 1)).astype(np.intp)
                    histograms[b] += np.bincount(sub, minlength=_BINS)
        bins = {rank: b.split(histograms[b], rank) if b in histograms else b for rank, b in bins.items()}

    # A full 64-bit key is one value, however often it repeats.
    values = {rank: _value_of_key(b.prefix) for rank, b in bins.items() if b.bits == 64}
    wanted = sorted({b for b in bins.values() if b.bits < 64}, key=lambda b: b.prefix)
    # Gather as many bins per pass as the budget allows (one pass, almost always).
    while wanted:
        group: list[_Bin] = []
        size = 0
        while wanted and (not group or size + wanted[0].count <= budget):
            size += wanted[0].count
            group.append(wanted.pop(0))
        gathered: dict[_Bin, list[np.ndarray]] = {b: [] for b in group}
        tops = np.zeros(_BINS, dtype=bool)
        tops[[b.raw_top for b in group]] = True
        for x in _finite_blocks(blocks):
            raw = _raw_prefixes(x)
            chosen = np.take(tops, raw, out=_scratch("chosen", x.size, np.bool_))
            x, raw = x[chosen], raw[chosen]
            if x.size:
                for b in group:
                    gathered[b].append(b.members(x, raw))
        for b in group:
            members = np.concatenate(gathered[b])
            local = sorted(rank - b.below for rank, owner in bins.items() if owner == b)
            members.partition(local)
            for index in local:
                values[b.below + index] = float(members[index])
    return values

"""Pure statistics over streamed blocks of values; no I/O, no printing.

All accumulation is in float64 whatever the stored dtype, so a float16
activation of a million elements has an exact enough variance; float32 data
(what networks store) is converted to float64 once per block, for the centred
sum of squares, and its percentiles are found on float32 bit patterns without
any conversion. Non-finite
values are counted, never mixed into a figure: a NaN is evidence of an
overflow, not a number to average.

Percentiles are exact (equal to ``np.percentile`` of the finite values, the
default linear interpolation) in bounded memory. Data that fits
:data:`BUDGET_VALUES` is kept from the first pass and never read twice; larger
data is read again, as few times as the histogram below needs (twice, almost
always). The method, for ``n`` finite values:

1. Count the values per *bin* of the top 16 bits of their bit pattern (float32
   when every block holds float16 or float32 values, float64 otherwise).
   Mapped to an unsigned key (flip every bit of a negative number, the sign
   bit of a positive one), bit patterns sort exactly as the values do, so a
   bin is an interval of values and the cumulative counts tell which bin holds
   the ``k``-th smallest value and how many values lie below it.
2. Keep only the values of the bins holding the order statistics numpy
   interpolates between (two per percentile), and select within them with
   ``np.partition``. A bin holding more than the budget is split by the next
   16 bits first (one more pass each time, four levels at most: a bin of all
   64 bits, or 32 for float32, holds one value, however often it repeats).

When all values are already in memory (:func:`pooled_spread`, the gradients of
a step read on two threads), a cheaper route is tried first: a sample spread over
the values brackets each wanted rank between two values, and one pass of comparisons
counts the values below each bracket and keeps those inside it. The counts
prove whether each rank fell inside its bracket; when one did not (about once
in a million), the census above answers. Either way the figures are exact.
"""

from __future__ import annotations

import functools
import math
import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from .parallel import map_in_order, threads
from .records import record

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

# Values converted or indexed at a time: per-thread buffers of 256K values
# (2 MiB of float64) stay in cache and keep two threads' memory small.
SLICE = 1 << 18
# Bytes of kept blocks in the whole process: one step of 16M float32 gradient
# values. Kept blocks are copied into one arena, allocated once and reused
# step after step, so the blocks a reader yields can be recycled at once and
# no step pays again for fresh pages. The threads measuring steps at once take
# the arena in turn; a census that finds it taken reads its source again
# instead of holding more memory.
KEPT_BYTES = 64 << 20
# Bytes past KEPT_BYTES a region may take: pooled_spread gives each source 4
# bytes to spare, rounded to 16, so that a step of exactly KEPT_BYTES fits.
REGION_SLACK = 1 << 20


class _Arena:
    """The process-wide memory for kept blocks, held by one census at a time.

    Allocated in segments as it is first needed (a trial of kilobytes never
    allocates 64 MiB), then reused."""

    SEGMENT = 4 << 20  # a block of 1M float32 values

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._segments: list[np.ndarray] = []
        self._segment = self._used = self._before = 0

    def take(self) -> _Arena | None:
        """The arena, emptied, or None when another thread holds it."""
        if not self._lock.acquire(blocking=False):
            return None
        self._segment = self._used = self._before = 0
        return self

    def place(self, array: np.ndarray) -> np.ndarray | None:
        """A copy of ``array`` in the arena, in native byte order; None when full."""
        nbytes = array.nbytes
        start = -(-self._used // 16) * 16
        segment = self._segments[self._segment] if self._segment < len(self._segments) else None
        if segment is None or start + nbytes > segment.size:
            if segment is not None:  # on to the next segment
                self._before += segment.size
                self._segment += 1
            start = 0
            segment = self._segments[self._segment] if self._segment < len(self._segments) else None
            if segment is None or segment.size < nbytes:
                size = max(self.SEGMENT, nbytes)
                if self._before + size > self.capacity:
                    return None
                segment = np.empty(size, dtype=np.uint8)
                if self._segment < len(self._segments):
                    self._segments[self._segment] = segment
                else:
                    self._segments.append(segment)
        if self._before + start + nbytes > self.capacity:
            return None
        copy = segment[start : start + nbytes].view(array.dtype.newbyteorder("="))
        np.copyto(copy, array.reshape(-1))
        self._used = start + nbytes
        return copy

    def give_back(self) -> None:
        self._lock.release()

    def region(self, nbytes: int) -> np.ndarray | None:
        """``nbytes`` of contiguous memory (the first segment, grown once to the
        largest size asked), or None past the capacity (and the few bytes per
        source pooled_spread spaces its regions by); for the arena's holder."""
        if nbytes > self.capacity + REGION_SLACK:
            return None
        if not self._segments or self._segments[0].size < nbytes:
            fresh = np.empty(max(nbytes, self.SEGMENT), dtype=np.uint8)
            self._segments[:1] = [fresh]
        return self._segments[0][:nbytes]


KEPT = _Arena(KEPT_BYTES)

_BITS = 16
_BINS = 1 << _BITS
_LITTLE = sys.byteorder == "little"


@record
class _Width:
    """Bit patterns of one float width: float32 values are ranked on their own
    32-bit patterns, so their percentiles need no conversion to float64."""

    bits: int
    float: type
    uint: type
    pack: str  # struct codes of the float and of the unsigned integer

    @property
    def high(self) -> int:
        """Index of the most significant uint16 of a value viewed as uint16s."""
        return self.bits // 16 - 1 if _LITTLE else 0

    @property
    def sign(self) -> int:
        return 1 << (self.bits - 1)

    @property
    def all(self) -> int:
        return (1 << self.bits) - 1


_W32 = _Width(32, np.float32, np.uint32, "fI")
_W64 = _Width(64, np.float64, np.uint64, "dQ")
_NARROW = (np.dtype(np.float16), np.dtype(np.float32))


def _width_of(dtype: np.dtype) -> _Width:
    return _W32 if dtype in _NARROW else _W64

# The top 16 bits of a value as stored, for each top-16-bit key: negative
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


def _finite_view(values: np.ndarray, width: _Width = _W64) -> tuple[np.ndarray, int, bool]:
    """The finite values as a flat array of ``width``'s float type, how many
    were not finite, and whether the array may be overwritten (it is then a
    scratch buffer, valid until the next call, or a private copy)."""
    array = np.asarray(values).reshape(-1)
    if array.dtype == width.float and array.flags.c_contiguous:
        x, owned = array, False
    else:
        x, owned = _scratch(f"float{width.bits}", array.size, width.float), True
        np.copyto(x, array, casting="same_kind")
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, or finite values summing past the limit
        # float32 sums past 3.4e38 only send finite data down the slow path below.
        total = x.sum()
    if math.isfinite(total):  # a NaN or an infinity makes the sum non-finite
        return x, 0, owned
    finite = np.isfinite(x)
    kept = int(np.count_nonzero(finite))
    return x[finite], x.size - kept, True


@record
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
        array = np.asarray(values).reshape(-1)
        if array.dtype in _NARROW and array.size:
            moments = cls._of_narrow(array)
            if moments is not None:
                return moments
        x, nonfinite, owned = _finite_view(array)
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

    @classmethod
    def _of_narrow(cls, array: np.ndarray) -> Moments | None:
        """float16/32 values converted to float64 once: the sum is taken in
        float64 on the way (it cannot overflow, so it also tells whether every
        value is finite), the centred values land in a float64 buffer and are
        squared and summed there. None when some value is not finite."""
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: NaN, told by the test below
            total = float(np.add.reduce(array, dtype=np.float64))
        if not math.isfinite(total):
            return None
        mean = total / array.size
        m2 = 0.0
        # In slices, so the float64 buffer stays small (and in cache) per thread.
        with np.errstate(over="ignore"):
            for start in range(0, array.size, SLICE):
                part = array[start : start + SLICE]
                centred = np.subtract(part, mean, out=_scratch("centred", part.size, np.float64), dtype=np.float64)
                m2 += float(np.square(centred, out=centred).sum())
        return cls(int(array.size), mean, m2, 0)


def moments(blocks: Iterable[np.ndarray]) -> Moments:
    """Moments of all values in ``blocks``, accumulated block by block."""
    total = Moments()
    for block in blocks:
        total = total.merge(Moments.of(block))
    return total


@record
class Spread:
    """The ``low``-``high`` percentile spread of the finite values of a sample."""

    low: float
    high: float
    count: int
    nonfinite: int

    @property
    def width(self) -> float:
        return self.high - self.low


@record
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
    (copies in the process-wide arena of :data:`KEPT_BYTES`, so a source may
    reuse a block's buffer once the next block is asked for; a one-shot
    iterator's own blocks) and at most ``budget`` float64 values are gathered
    at a time, beyond per-thread buffers of one block.
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1 value, not {budget}")
    for q in percents:
        if not 0 <= q <= 100:
            raise ValueError(f"percentiles must lie in [0, 100], not {q}")
    one_shot = iter(source) is source
    census = _Census(math.inf if one_shot else budget)
    try:
        return _percentiles(source, percents, budget, census)
    finally:
        census.release()


def _percentiles(source: Iterable[np.ndarray], percents: Sequence[float], budget: int, census: _Census) -> Percentiles:
    for block in source:
        census.add(block)
    if census.widened and census.kept is None:
        # A float64 block came after float32 ones whose blocks were already
        # dropped: count again, every value on float64 bit patterns.
        wide = _Census(budget, _W64)
        try:
            return _percentiles(source, percents, budget, wide)
        finally:
            wide.release()
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
        kept = census.kept
        # Kept, finite, of one float type (comparisons with the bracket's ends are then exact).
        if kept is not None and not nonfinite and len({b.dtype for b in kept}) == 1 and \
                kept[0].dtype in (np.float32, np.float64):
            stats = _ranks_of_kept(kept, ranks, budget, _width_of(kept[0].dtype))
        else:
            blocks: Iterable[np.ndarray] = kept if kept is not None else source
            stats = _order_statistics(blocks, census.key_histogram(), ranks, budget, census.width)
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
    themselves (as given, not copied) while they fit the budget.

    The keys are float32 bit patterns while every block holds float16 or
    float32 values (no conversion at all), float64 ones from the first block
    that does not (``widened``: the histogram is then rebuilt from the kept
    blocks, or, when they were dropped, the caller counts again)."""

    def __init__(self, budget: float, width: _Width | None = None) -> None:
        self.budget = budget
        self.width = width
        self.widened = False
        self.count = 0
        self.nonfinite = 0
        self.kept: list[np.ndarray] | None = []
        self._kept_values = 0
        self._arena: _Arena | None = None
        self._raw_histogram: np.ndarray | None = None

    def add(self, block: np.ndarray) -> None:
        array = np.asarray(block).reshape(-1)
        width = _width_of(array.dtype)
        if self.width is None:
            self.width = width
        elif width.bits > self.width.bits:
            self.width, self.widened, self._raw_histogram = width, True, None
        if self.kept is not None and self._kept_values + array.size <= self.budget:
            self.keep(array)
        elif self.kept is not None:
            self.drop()
        # After keep() and drop(), which may reuse the scratch buffer x lives in.
        x, nonfinite, _ = _finite_view(array, self.width)
        self.count += x.size
        self.nonfinite += nonfinite
        if self.kept is None and not self.widened:
            self._histogram(x)

    def _histogram(self, x: np.ndarray) -> None:
        self._raw_histogram = _count_prefixes(x, self._raw_histogram)

    def release(self) -> None:
        """Give the arena back (the kept blocks in it are no longer valid)."""
        if self._arena is not None:
            self._arena = None
            KEPT.give_back()

    def keep(self, array: np.ndarray) -> None:
        """Keep a block for the next pass: a copy in the process-wide arena, or,
        for a one-shot source (budget unlimited), the block itself. Drops
        everything when the arena is held by another thread or full."""
        if self.budget == math.inf:
            self.kept.append(array)  # type: ignore[union-attr]
            self._kept_values += array.size
            return
        if self._arena is None and not self._kept_values:
            self._arena = KEPT.take()
        copy = None if self._arena is None else self._arena.place(array)
        if copy is None:
            self.drop()
            return
        self.kept.append(copy)  # type: ignore[union-attr]
        self._kept_values += array.size

    def drop(self) -> None:
        """Stop keeping blocks (the source is read again), and give the arena back."""
        if self.kept is not None and not self.widened and self.width is not None:
            for kept in self.kept:
                self._histogram(_finite_view(kept, self.width)[0])
        self.kept = None
        self.release()

    def key_histogram(self) -> np.ndarray:
        """Counts per top-16-bit key, in the order of the values."""
        if self._raw_histogram is None:
            for kept in self.kept or ():
                self._histogram(_finite_view(kept, self.width or _W64)[0])
        if self._raw_histogram is None:
            return np.zeros(_BINS, dtype=np.intp)
        return self._raw_histogram[_RAW_OF_KEY]


def _count_prefixes(x: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """``counts`` (or a new histogram) plus the count of ``x``'s values per raw top-16-bit prefix."""
    for start in range(0, x.size, SLICE):
        # bincount casts the strided prefixes itself, faster than a copy first.
        found = np.bincount(_raw_prefixes(x[start : start + SLICE]), minlength=_BINS)
        if counts is None:
            counts = found
        else:
            counts += found
    return counts if counts is not None else np.zeros(_BINS, dtype=np.intp)


def _raw_prefixes(x: np.ndarray) -> np.ndarray:
    """The top 16 bits of each value as stored (a strided view, no copy)."""
    width = _width_of(x.dtype)
    return x.view(np.uint16)[width.high :: width.bits // 16]


def _keys(x: np.ndarray) -> np.ndarray:
    """Unsigned keys that sort as the values do (-0.0 just below +0.0)."""
    width = _width_of(x.dtype)
    bits: np.ndarray = x.view(width.uint)
    negative = (bits >> width.uint(width.bits - 1)).astype(bool)
    return np.where(negative, ~bits, bits | width.uint(width.sign))


def _value_of_key(key: int, width: _Width) -> float:
    bits = key ^ width.sign if key & width.sign else ~key & width.all
    return float(struct.unpack("=" + width.pack[0], struct.pack("=" + width.pack[1], bits))[0])


@record
class _Bin:
    """The values whose key starts with ``prefix`` (``bits`` long, of keys
    ``width`` bits long); ``below`` values of the sample sort before them."""

    prefix: int
    bits: int
    below: int
    count: int
    width: int = 64

    @property
    def raw_top(self) -> int:
        return int(_RAW_OF_KEY[self.prefix >> (self.bits - _BITS)])

    def members(self, x: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The values of ``x`` in this bin, given their raw top 16 bits."""
        inside = x[raw == self.raw_top]
        if self.bits > _BITS and inside.size:
            uint = _width_of(x.dtype).uint
            inside = inside[(_keys(inside) >> uint(self.width - self.bits)) == uint(self.prefix)]
        return inside

    def split(self, histogram: np.ndarray, rank: int) -> _Bin:
        """The sub-bin (next 16 bits) holding the value of ``rank``."""
        cumulative = np.cumsum(histogram)
        sub = int(np.searchsorted(cumulative, rank - self.below, side="right"))
        below = self.below + int(cumulative[sub] - histogram[sub])
        return _Bin((self.prefix << _BITS) | sub, self.bits + _BITS, below, int(histogram[sub]), self.width)


def _halves(blocks: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The blocks in two runs of about as many values each (one run when one thread measures)."""
    if threads() < 2 or len(blocks) < 2:
        return [blocks]
    total, running = sum(b.size for b in blocks), 0
    for index, block in enumerate(blocks):
        running += block.size
        if 2 * running >= total:
            return [blocks[: index + 1], blocks[index + 1 :]]
    return [blocks]


def _gather(blocks: Iterable[np.ndarray], group: Sequence[_Bin], width: _Width) -> dict[_Bin, list[np.ndarray]]:
    """The values of ``blocks`` in each bin of ``group``."""
    gathered: dict[_Bin, list[np.ndarray]] = {b: [] for b in group}
    tops = np.zeros(_BINS, dtype=bool)
    tops[[b.raw_top for b in group]] = True
    for x in _finite_blocks(blocks, width):
        raw = _raw_prefixes(x)
        chosen = np.take(tops, raw, out=_scratch("chosen", x.size, np.bool_))
        x, raw = x[chosen], raw[chosen]
        if x.size:
            for b in group:
                gathered[b].append(b.members(x, raw))
    return gathered


def _finite_blocks(blocks: Iterable[np.ndarray], width: _Width) -> Iterator[np.ndarray]:
    """The finite values of each block as ``width``'s floats; each valid until the next is asked for."""
    for block in blocks:
        yield _finite_view(block, width)[0]


def _order_statistics(
    blocks: Iterable[np.ndarray], key_histogram: np.ndarray, ranks: Sequence[int], budget: int,
    width: _Width | None = None,
) -> dict[int, float]:
    """The values of the given ranks (0 = smallest finite value), from a histogram
    of top-16-bit keys and as few further passes over ``blocks`` as needed."""
    width = width or _W64
    cumulative = np.cumsum(key_histogram)
    bins: dict[int, _Bin] = {}
    for rank in ranks:
        key = int(np.searchsorted(cumulative, rank, side="right"))
        bins[rank] = _Bin(
            key, _BITS, int(cumulative[key] - key_histogram[key]), int(key_histogram[key]), width.bits
        )

    # Split bins too big to gather, 16 bits at a time, one pass per level.
    while True:
        crowded = sorted(
            {b for b in bins.values() if b.count > budget and b.bits < width.bits}, key=lambda b: b.prefix
        )
        if not crowded:
            break
        histograms = {b: np.zeros(_BINS, dtype=np.intp) for b in crowded}
        for x in _finite_blocks(blocks, width):
            raw = _raw_prefixes(x)
            for b in crowded:
                inside = b.members(x, raw)
                if inside.size:
                    shift = width.uint(width.bits - b.bits - _BITS)
                    sub = ((_keys(inside) >> shift) & width.uint(_BINS - 1)).astype(np.intp)
                    histograms[b] += np.bincount(sub, minlength=_BINS)
        bins = {rank: b.split(histograms[b], rank) if b in histograms else b for rank, b in bins.items()}

    # A full key is one value, however often it repeats.
    values = {rank: _value_of_key(b.prefix, width) for rank, b in bins.items() if b.bits == width.bits}
    wanted = sorted({b for b in bins.values() if b.bits < width.bits}, key=lambda b: b.prefix)
    # Gather as many bins per pass as the budget allows (one pass, almost always).
    while wanted:
        group: list[_Bin] = []
        size = 0
        while wanted and (not group or size + wanted[0].count <= budget):
            size += wanted[0].count
            group.append(wanted.pop(0))
        gathered: dict[_Bin, list[np.ndarray]] = {b: [] for b in group}
        # Blocks held in memory are gathered on the analysis's threads, half each.
        halves = _halves(blocks) if isinstance(blocks, list) else [blocks]
        for part in map_in_order(functools.partial(_gather, group=group, width=width), halves):
            for b in group:
                gathered[b].extend(part[b])
        for b in group:
            members = np.concatenate(gathered[b])
            local = sorted(rank - b.below for rank, owner in bins.items() if owner == b)
            members.partition(local)
            for index in local:
                values[b.below + index] = float(members[index])
    return values


def _ranks_of_kept(kept: list[np.ndarray], ranks: Sequence[int], budget: int, width: _Width) -> dict[int, float]:
    """The values of ``ranks`` among kept values (finite, all of ``width``'s float type):
    from sampled brackets, or, when one misses, from the census counted on the analysis's threads."""
    kept = [np.ascontiguousarray(block).reshape(-1) for block in kept]  # a one-shot source's blocks, as given
    found = _bracketed(kept, ranks)
    if found is None:
        histogram = np.zeros(_BINS, dtype=np.intp)
        for counted in map_in_order(_count_all_prefixes, _halves(kept)):
            histogram += counted
        found = _order_statistics(kept, histogram[_RAW_OF_KEY], ranks, budget, width)
    return found


# Values drawn from kept data to bracket its order statistics, and the
# bracket's half-width in standard deviations of a sample quantile's rank: a
# rank falls outside its bracket about once in 10^6 (then the census runs).
SAMPLE_VALUES = 1 << 16
BRACKET_SIGMAS = 5.0
# A bracket whose sample holds more than 1/INSIDE_MAX of the sampled values is
# made of ties (nominally a bracket holds under 1%): the census takes it.
INSIDE_MAX = 16


def _bracketed(kept: Sequence[np.ndarray], ranks: Sequence[int]) -> dict[int, float] | None:
    """The values of ``ranks`` (0 = smallest) among every value of ``kept``
    (finite, in memory), or None when a bracket misses its rank.

    The census counts every value into 65,536 bins and then gathers the bins
    holding the ranks: two passes of scattered writes and lookups. Here a
    sample of :data:`SAMPLE_VALUES` values, partitioned, gives for each rank
    two values ``a <= b`` that bracket it with near certainty, and one pass of
    comparisons (on the analysis's threads) counts the values below ``a`` and
    keeps those in ``[a, b]``; the ranks are then selected among the kept
    values with ``np.partition``. The counts prove the bracket: when a rank
    is not inside it the caller takes the census, so the result is exact
    either way; the sample only decides how fast it comes.
    """
    kept = [block.reshape(-1) for block in kept if block.size]
    n = sum(int(block.size) for block in kept)
    if not n or not ranks:
        return None
    sample = np.concatenate([block[_spread(-(-SAMPLE_VALUES * block.size // n), block.size)] for block in kept])
    size = sample.size
    bounds: list[tuple[int, int]] = []
    for rank in ranks:
        q = rank / max(n - 1, 1)
        middle = q * (size - 1)
        margin = BRACKET_SIGMAS * math.sqrt(size * q * (1 - q)) + 2 * BRACKET_SIGMAS
        bounds.append((math.floor(middle - margin), math.ceil(middle + margin)))
    sample.partition(sorted({index for pair in bounds for index in pair if 0 < index < size - 1}))
    brackets: list[tuple[float, float]] = []
    for first, last in bounds:
        a = float(sample[first]) if first > 0 else -math.inf
        b = float(sample[last]) if last < size - 1 else math.inf
        if brackets and a <= brackets[-1][1]:  # overlapping brackets are counted as one
            brackets[-1] = (brackets[-1][0], max(b, brackets[-1][1]))
        else:
            brackets.append((a, b))
    for a, b in brackets:
        # Ties can make a bracket hold far more than its sample ranks promise:
        # the census splits such bins without copying them, so it takes those.
        if a < b and np.count_nonzero((sample >= a) & (sample <= b)) * INSIDE_MAX > size:
            return None
    below = [0] * len(brackets)
    equal = [0] * len(brackets)  # values inside a bracket of one value, a == b: counted, not kept
    inside: list[list[np.ndarray]] = [[] for _ in brackets]
    for part in map_in_order(functools.partial(_count_brackets, brackets=brackets), _halves(list(kept))):
        for index, (count, ties, members) in enumerate(part):
            below[index] += count
            equal[index] += ties
            inside[index].extend(members)
    values: dict[int, float] = {}
    for (a, _), count, ties, members in zip(brackets, below, equal, inside, strict=True):
        if ties:
            values.update({rank: a for rank in ranks if count <= rank < count + ties})
            continue
        pool = np.concatenate(members) if members else np.empty(0, dtype=np.float32)
        local = [rank - count for rank in ranks if 0 <= rank - count < pool.size]
        if local:
            pool.partition(local)
            values.update({count + index: float(pool[index]) for index in local})
    return values if all(rank in values for rank in ranks) else None


_GOLDEN = (math.sqrt(5) - 1) / 2


def _spread(count: int, size: int) -> np.ndarray:
    """``count`` positions in ``range(size)``, spread over it without a period
    (a golden-ratio sequence): the same data always takes the same work.

    Not ``numpy.random``: importing it costs a few milliseconds at the first
    large step, and under a memory cap its shared object may fail to load in
    the middle of an analysis."""
    fractions = np.arange(1, count + 1, dtype=np.float64) * _GOLDEN
    fractions -= np.floor(fractions)
    return np.minimum((fractions * size).astype(np.intp), size - 1)


def _count_brackets(
    blocks: Sequence[np.ndarray], brackets: Sequence[tuple[float, float]]
) -> list[tuple[int, int, list[np.ndarray]]]:
    """Per bracket ``[a, b]``: how many values of ``blocks`` lie below ``a``, how
    many inside when ``a == b`` (all equal: not copied), and those inside otherwise."""
    below = [0] * len(brackets)
    ties = [0] * len(brackets)
    inside: list[list[np.ndarray]] = [[] for _ in brackets]
    for block in blocks:
        for start in range(0, block.size, SLICE):
            x = block[start : start + SLICE]
            lower = _scratch("lower", x.size, np.bool_)
            upper = _scratch("upper", x.size, np.bool_)
            for index, (a, b) in enumerate(brackets):
                np.less(x, a, out=lower)
                np.less_equal(x, b, out=upper)
                count = int(np.count_nonzero(lower))
                below[index] += count
                if a == b:
                    ties[index] += int(np.count_nonzero(upper)) - count
                    continue
                np.not_equal(upper, lower, out=upper)  # a <= x <= b (lower implies upper)
                members = x[upper]
                if members.size:
                    inside[index].append(members)
    return list(zip(below, ties, inside, strict=True))


def _count_all_prefixes(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """The top-16-bit histogram of every value of ``blocks`` (the census, for one thread's half)."""
    counts = np.zeros(_BINS, dtype=np.intp)
    for block in blocks:
        counts = _count_prefixes(block, counts)
    return counts


@record
class PooledSpread:
    """What one reading of several sources gives: the pooled spread, and per source its moments and zeros."""

    spread: Spread
    moments: list[list[Moments]]  # per source, per block: merged in order they give the serial figures
    zeros: list[int]


def pools(sizes: Sequence[int], budget: int = BUDGET_VALUES) -> bool:
    """Whether :func:`pooled_spread` reads sources of these sizes on threads, once."""
    return threads() > 1 and PARTITION_MAX < sum(sizes) <= budget


class _Source(Protocol):
    """What :func:`pooled_spread` reads: a size and blocks (a :class:`~poorinit.trial.Tensor`);
    optionally ``blocks_into(region)``, blocks read in place into the bytes given (None if it cannot)."""

    @property
    def size(self) -> int: ...

    def blocks(self) -> Iterator[np.ndarray]: ...


def pooled_spread(
    sources: Sequence[_Source], low: float = 5.0, high: float = 95.0, *, budget: int = BUDGET_VALUES
) -> PooledSpread:
    """The ``low``-``high`` percentile spread of every value of every source
    (exactly :func:`percentile_spread` of them all), with each source's
    :class:`Moments` and count of zeros, each source read once.

    The sources are read on the analysis's threads (poorinit.parallel), each
    into its own region of the process-wide arena: float32 values, all
    finite, fitting ``budget`` and the arena, are counted per top-16-bit
    prefix by the thread that read them and the order statistics are gathered
    from the arena, half each. Anything else (another dtype, a non-finite
    value, a sample past the budget or too small to pay for threads, the arena
    held) is counted by :func:`percentile_spread` over the sources again:
    the same figures, at the cost of a second reading.
    """
    sizes = [int(source.size) for source in sources]
    arena = KEPT.take() if pools(sizes, budget) else None
    try:
        # Each source's region holds its float32 values and 4 bytes to spare (a
        # source reading raw chunks into it lands the last chunk's checksum
        # there), rounded up to 16 bytes: two threads never write the same bytes.
        spans = [-(-(4 * size + 4) // 16) * 16 for size in sizes]
        region = None if arena is None else arena.region(sum(spans))
        views: list[np.ndarray | None] = [None] * len(sources)
        if region is not None:
            start = 0
            for index, span in enumerate(spans):
                views[index] = region[start : start + span]
                start += span
        firsts = map_in_order(lambda pair: _first_pass(*pair), list(zip(sources, views, strict=True)))
        kept_all = region is not None and all(first.kept is not None for first in firsts)
        if kept_all:
            kept = [first.kept for first in firsts if first.kept is not None and first.kept.size]
            n = sum(block.size for block in kept)
            plans = [_linear(n, q) for q in (low, high)]
            ranks = sorted({rank for previous, following, _ in plans for rank in (previous, following)})
            stats = _ranks_of_kept(kept, ranks, budget, _W32)
            figures = tuple(_lerp(stats[p], stats[f], gamma) for p, f, gamma in plans)
            spread = Spread(figures[0], figures[1], n, 0)
    finally:
        if arena is not None:
            arena.give_back()
    if not kept_all:
        spread = percentile_spread(_Again(sources), low, high, budget=budget)
    return PooledSpread(spread, [first.moments for first in firsts], [first.zeros for first in firsts])


@record(frozen=False)
class _FirstPass:
    """What the first pass over one source of pooled_spread found."""

    moments: list[Moments]  # per block
    zeros: int
    kept: np.ndarray | None  # the source's values in its arena region; None when not kept


def _first_pass(source: _Source, region: np.ndarray | None) -> _FirstPass:
    """One source read once: its block moments and zeros, and, while its
    values fit ``region`` (bytes), a copy of them there."""
    total: list[Moments] = []
    zeros, filled = 0, 0
    view = None if region is None else region[: region.size // 4 * 4].view(np.float32)
    into = getattr(source, "blocks_into", None)
    blocks = into(region) if into is not None and region is not None else None
    in_place = blocks is not None  # read straight into the region: nothing to copy
    for block in source.blocks() if blocks is None else blocks:
        array = np.asarray(block).reshape(-1)
        measured = Moments.of(array)
        total.append(measured)
        zeros += int(np.count_nonzero(array == 0))
        if view is None:
            continue
        if array.dtype != np.float32 or not array.dtype.isnative or measured.nonfinite or \
                filled + array.size > view.size:
            view = None  # counted again by percentile_spread
            continue
        kept = view[filled : filled + array.size]
        if not in_place:
            np.copyto(kept, array)
        filled += array.size
    return _FirstPass(total, zeros, None if view is None else view[:filled])


class _Again:
    """Every block of the sources, each time it is iterated (a re-readable source)."""

    def __init__(self, sources: Sequence[_Source]) -> None:
        self._sources = sources

    def __iter__(self) -> Iterator[np.ndarray]:
        for source in self._sources:
            yield from source.blocks()

"""Pure statistics over streamed blocks of values; no I/O, no printing.

All accumulation is in float64 whatever the stored dtype, so a float16
activation of a million elements has an exact enough variance. Non-finite
values are counted, never mixed into a figure: a NaN is evidence of an
overflow, not a number to average.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of the finite values (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    nonfinite: int = 0

    @property
    def variance(self) -> float:
        """Population variance (ddof=0) of the finite values; NaN when empty."""
        return self.m2 / self.count if self.count else float("nan")

    def merge(self, other: Moments) -> Moments:
        """Exact merge of two disjoint samples (parallel-variance formula)."""
        if not other.count:
            return Moments(self.count, self.mean, self.m2, self.nonfinite + other.nonfinite)
        if not self.count:
            return Moments(other.count, other.mean, other.m2, self.nonfinite + other.nonfinite)
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Moments(count, mean, m2, self.nonfinite + other.nonfinite)

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        finite = np.isfinite(values)
        nonfinite = int(values.size - np.count_nonzero(finite))
        if nonfinite:
            values = values[finite]
        if not values.size:
            return cls(0, 0.0, 0.0, nonfinite)
        mean = float(values.mean())
        centred = values - mean
        return cls(int(values.size), mean, float(np.dot(centred, centred)), nonfinite)


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


def percentile_spread(blocks: Iterable[np.ndarray], low: float = 5.0, high: float = 95.0) -> Spread:
    """Exact percentiles (numpy's default linear interpolation) over all blocks.

    The finite values are gathered and the two order statistics around each
    percentile are selected with ``np.partition`` (linear time, no full sort).
    """
    parts = [np.asarray(b, dtype=np.float64).reshape(-1) for b in blocks]
    values = np.concatenate(parts) if parts else np.empty(0)
    finite = np.isfinite(values)
    nonfinite = int(values.size - np.count_nonzero(finite))
    if nonfinite:
        values = values[finite]
    if not values.size:
        return Spread(float("nan"), float("nan"), 0, nonfinite)
    lo, hi = np.percentile(values, [low, high])
    return Spread(float(lo), float(hi), int(values.size), nonfinite)

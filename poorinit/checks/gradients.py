"""Criterion 2: do gradients spread wide enough to learn from?

Vanishing gradients (too small a start, saturated activations) and dead ones
(all-zero weights) squeeze the distribution of gradient values to a point. The
criterion pools every selected gradient value of a step, across tensors and
workers, and measures the distance between its 5th and 95th percentiles.
Pooling is deliberate: one tensor may legitimately be near zero (the output
bias of a balanced classifier is), the gradient signal as a whole may not.

The spread is judged at the first analysed step, the start's own gradients
(docs/rule.md); later steps are shown. When most values are exactly zero the
reason says so: that is dead units (a ReLU whose input is never positive
passes no gradient) or weights no signal reaches, not "one value".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .. import format as fmt
from ..records import record
from ..stats import Moments, Spread, percentile_spread, pooled_spread, pools
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status

# Below this many pooled values a 5th percentile is not a statistic.
MIN_VALUES = 20


@record
class GradientMeasure:
    """One step's pooled gradient spread and the quietest gradient tensor."""

    spread: Spread
    quietest: str  # the tensor with the smallest standard deviation
    quietest_std: float
    nonfinite_in: str | None
    zeros: int = 0  # values exactly 0.0


class GradientSpreadCheck(Check):
    name = "gradient_spread"
    title = "gradient spread"
    description = "5th-95th percentile spread of all gradient values at the first step"
    fires_early = True  # the first step decides; a non-finite gradient later fires too

    def selector(self) -> Selector:
        return Selector(fmt.GRADIENTS, self.params.gradient_regex)

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> GradientMeasure:
        every = [tensor for per_worker in tensors.values() for tensor in per_worker]
        if pools([tensor.size for tensor in every]):
            # On the analysis's threads, each tensor read once (poorinit/stats.py, pooled_spread).
            read = pooled_spread(every)
            spread, zeros, per_block = read.spread, sum(read.zeros), iter(read.moments)
            per_tensor: dict[str, Moments] = {}
            for name, per_worker in tensors.items():
                total = Moments()
                for _ in per_worker:
                    for block in next(per_block):
                        total = total.merge(block)
                per_tensor[name] = total
        else:
            pooled = _Pooled(tensors)
            spread = percentile_spread(pooled)
            per_tensor, zeros = pooled.moments or {}, pooled.zeros
        quietest = min(per_tensor, key=lambda n: per_tensor[n].variance if per_tensor[n].count else math.inf)
        nonfinite_in = next((n for n, m in per_tensor.items() if m.nonfinite), None)
        variance = per_tensor[quietest].variance
        std = math.sqrt(variance) if variance >= 0 else math.nan  # NaN (no values, or overflowed) stays NaN
        return GradientMeasure(spread, quietest, std, nonfinite_in, zeros)

    def judge(self, measures: Mapping[int, GradientMeasure]) -> CriterionResult:
        limit = self.params.distribution_range
        for step, m in sorted(measures.items()):
            if m.spread.nonfinite:
                return self.result(
                    Status.FIRED,
                    f"{m.spread.nonfinite} non-finite gradient values at step {step}: gradients exploded",
                    figure=math.nan, limit=limit, relation="<", step=step, tensor=m.nonfinite_in,
                    direction="explode",
                )
        usable = {s: m for s, m in sorted(measures.items()) if m.spread.count >= MIN_VALUES}
        if not usable:
            most = max(m.spread.count for m in measures.values())
            return self.result(
                Status.NOT_APPLICABLE,
                f"needs at least {MIN_VALUES} gradient values at a step for percentiles; found {most}",
                limit=limit, relation="<",
            )
        per_step = tuple((s, m.spread.width) for s, m in usable.items())
        for s, width in per_step:
            if not math.isfinite(width):
                # Finite percentiles whose distance overflows float64 (or is NaN):
                # no spread to compare, and gradients that size have exploded.
                return self.result(
                    Status.FIRED,
                    f"the 5th-95th percentile spread of the gradients overflows float64 at step {s}: "
                    "gradients exploded",
                    figure=math.inf, limit=limit, relation="<", step=s, tensor=usable[s].quietest, per_step=per_step,
                    direction="explode",
                )
        step = min(usable)
        m = usable[step]
        width = m.spread.width
        later = f"; later steps, shown not judged: down to {min(w for _, w in per_step[1:]):.3g}" \
            if len(per_step) > 1 else ""
        if width < limit:
            share = m.zeros / m.spread.count if m.spread.count else 0.0
            if share >= 0.5:
                detail, direction = (
                    f"{share:.0%} of the gradient values are exactly zero: dead units (ReLUs whose input is never "
                    "positive pass no gradient) or all-zero weights", "dead")
            elif width == 0:
                detail, direction = "every gradient value is the same", "symmetric"
            else:
                detail, direction = "gradients vanish (too small an initialisation, or saturated units?)", "collapse"
            return self.result(
                Status.FIRED,
                f"{detail}: 5th-95th percentile spread {width:.3g} at step {step} "
                f"(quietest tensor {m.quietest}, std {m.quietest_std:.3g})",
                figure=width, limit=limit, relation="<", step=step, tensor=m.quietest, per_step=per_step,
                direction=direction,
            )
        return self.result(
            Status.PASSED,
            f"5th-95th percentile spread {width:.3g} at step {step}{later}",
            figure=width, limit=limit, relation="<", step=step, tensor=m.quietest, per_step=per_step,
        )


class _Pooled:
    """Every selected gradient value of a step, re-readable block by block.

    The percentiles read it once when it fits their memory budget and twice
    when it does not; the first reading also takes each tensor's moments, which
    only name the quietest tensor, so they cost no read of their own.
    """

    def __init__(self, tensors: Mapping[str, Sequence[Tensor]]) -> None:
        self._tensors = tensors
        self.moments: dict[str, Moments] | None = None
        self.zeros = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        first = self.moments is None
        per_tensor: dict[str, Moments] = {}
        for name, per_worker in self._tensors.items():
            total = Moments()
            for tensor in per_worker:
                for block in tensor.blocks():
                    if first:
                        total = total.merge(Moments.of(block))
                        self.zeros += int(np.count_nonzero(block == 0))
                    yield block
            per_tensor[name] = total
        if first:
            self.moments = per_tensor

"""Criterion 1: do activation inputs keep commensurate variances across layers at the start?

A good initialisation keeps the variance of each layer's pre-activation about
the same through depth (Glorot & Bengio; He et al.). Too small a start makes it
shrink layer after layer, too large makes it grow; either way the ratio of the
largest to the smallest layer variance leaves the range a healthy network
stays in.

Two things decided from measurements (docs/rule.md):
- the ratio is judged at the first analysed step, where the weights are the
  initialisation; the optimiser's first updates legitimately rescale the last
  layers of a healthy deep network, so later steps are shown, not judged;
- an activation input that comes straight out of a normalisation layer
  (the ``after`` attribute: BatchNorm, LayerNorm, GroupNorm, RMSNorm, ...)
  has the variance the norm gives it, whatever the start, so it is left out
  of the ratio; it still fires when it is constant (the norm had nothing to
  normalise: all-zero weights) or far below the norm's unit variance (the
  signal entering the norm was below its epsilon, beyond repair).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from .. import format as fmt
from ..parallel import map_in_order
from ..records import record
from ..stats import Moments, moments
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status

# Class names (the ``after`` attribute) whose output variance is set by the layer itself.
NORMALISATIONS = re.compile(r"(BatchNorm|SyncBatchNorm|LayerNorm|GroupNorm|RMSNorm|InstanceNorm|LazyBatchNorm)")


def depth_key(name: str) -> list[object]:
    """Natural order of layer names, so 'net.10' comes after 'net.2'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@record
class Layer:
    """One activation input at one step: its moments and the recorder's metadata."""

    moments: Moments
    attrs: Mapping[str, Any] = field(default_factory=dict)

    # Read like Moments, so views over the measures (the diagnosis) need not know the difference.
    @property
    def variance(self) -> float:
        return self.moments.variance

    @property
    def count(self) -> int:
        return self.moments.count

    @property
    def nonfinite(self) -> int:
        return self.moments.nonfinite

    @property
    def after_norm(self) -> str | None:
        after = self.attrs.get("after")
        return after if isinstance(after, str) and NORMALISATIONS.match(after) else None

    @property
    def order(self) -> float:
        order = self.attrs.get("order")
        return float(order) if isinstance(order, (int, float)) and not isinstance(order, bool) else math.inf


def forward_order(layers: Mapping[str, Layer]) -> list[str]:
    """Names in the order of the forward pass when the recorder wrote it, else natural name order."""
    return sorted(layers, key=lambda n: (layers[n].order, depth_key(n)))


class ActivationVarianceCheck(Check):
    name = "activation_variance"
    title = "activation variance"
    description = "per-layer factor of the activation-input variance through depth at the first step"
    fires_early = True  # the first step decides; a non-finite value later fires too

    def selector(self) -> Selector:
        return Selector(fmt.ACTIVATION_INPUTS, self.params.activation_inputs_regex)

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, Layer]:
        # Workers see different slices of one global batch: pooling their
        # moments exactly gives the variance of the global batch.
        # Each tensor's moments on the analysis's threads, merged in order: the serial figures.
        every = [tensor for per_worker in tensors.values() for tensor in per_worker]
        measured = iter(map_in_order(lambda tensor: moments(tensor.blocks()), every))
        layers = {}
        for name, per_worker in tensors.items():
            total = Moments()
            for _ in per_worker:
                total = total.merge(next(measured))
            layers[name] = Layer(total, dict(getattr(per_worker[0], "attrs", {}) or {}))
        return layers

    def judge(self, measures: Mapping[int, dict[str, Layer]]) -> CriterionResult:
        threshold = self.params.threshold
        for step, layers in sorted(measures.items()):
            for name in forward_order(layers):
                if layers[name].moments.nonfinite:
                    return self.result(
                        Status.FIRED,
                        f"{layers[name].moments.nonfinite} non-finite values in {name} at step {step}: the forward "
                        "signal overflowed (too large an initialisation?)",
                        figure=math.inf, limit=threshold, relation=">", step=step, tensor=name, direction="explode",
                    )
                if layers[name].moments.overflowed:
                    # Finite values whose variance does not fit float64 (|x| past
                    # about 1e154): the ratio would be inf/inf = NaN, never the worst.
                    return self.result(
                        Status.FIRED,
                        f"the variance of {name} overflows float64 at step {step}: the forward signal exploded "
                        "(too large an initialisation?)",
                        figure=math.inf, limit=threshold, relation=">", step=step, tensor=name, direction="explode",
                    )
        per_step = [(step, ratio) for step in sorted(measures) if (ratio := _ratio(measures[step])) is not None]
        start = min(measures)
        layers = {n: m for n, m in measures[start].items() if m.moments.count >= 2}
        normalised = {n: m for n, m in layers.items() if m.after_norm}
        free = {n: m for n, m in layers.items() if not m.after_norm}
        later = f"; later steps, shown not judged: up to {max(r for _, r in per_step[1:]):.3g}" \
            if len(per_step) > 1 else ""
        # A normalised input tells nothing of the start's scale, unless the norm had nothing to work with.
        for name in forward_order(normalised):
            variance = normalised[name].moments.variance
            if variance * threshold < 1.0:
                dead = variance == 0
                what = "is constant" if dead else f"has variance {variance:.3g}, far below the unit variance"
                return self.result(
                    Status.FIRED,
                    f"{name} comes out of a {normalised[name].after_norm} and {what} at step {start}: the signal "
                    "entering the norm " + ("is constant (all-zero weights?)" if dead else
                                            "is below its epsilon (too small an initialisation?)"),
                    figure=math.inf if dead else 1.0 / variance, limit=threshold, relation=">", step=start,
                    tensor=name, per_step=tuple(per_step), direction="dead" if dead else "collapse",
                )
        if len(free) < 2:
            found = ", ".join(sorted({n for m in measures.values() for n in m})) or "none"
            if normalised:
                reason = (
                    f"{len(normalised)} of the {len(layers)} activation inputs at step {start} come straight out of "
                    "a normalisation layer, which sets their variance (none is constant); the ratio needs two "
                    f"that do not ({found})"
                )
            else:
                reason = (
                    f"needs at least two activation-input layers with 2+ values at the first step ({start}); "
                    f"found {len(layers)} ({found})"
                )
            return self.result(Status.NOT_APPLICABLE, reason, limit=threshold, relation=">",
                               per_step=tuple(per_step))
        order = forward_order(free)
        variances = {n: free[n].moments.variance for n in order}
        largest = max(order, key=lambda n: variances[n])
        smallest = min(order, key=lambda n: variances[n])
        ratio = _rate([variances[n] for n in order])
        left_out = f" ({len(normalised)} inputs after a normalisation layer left out)" if normalised else ""
        spread = (f"per-layer factor {ratio:.3g} on the trend through {len(order)} layers "
                  f"(largest/smallest {_span(variances[largest], variances[smallest])})")
        if ratio <= threshold:
            return self.result(
                Status.PASSED, f"layer variances at step {start}: {spread}{left_out}{later}",
                figure=ratio, limit=threshold, relation=">", step=start, tensor=largest, per_step=tuple(per_step),
            )
        reason, culprit, direction = _diagnose(order, variances, threshold, start)
        return self.result(
            Status.FIRED, f"{reason}; {spread}{left_out}", figure=ratio, limit=threshold, relation=">", step=start,
            tensor=culprit, per_step=tuple(per_step), direction=direction,
        )


def _span(vmax: float, vmin: float) -> str:
    return "inf" if vmin == 0 else f"{vmax / vmin:.3g}"


def _rate(variances: Sequence[float]) -> float:
    """How many times the variance changes from one layer to the next, on the fitted trend.

    exp(|slope|) of the least-squares line through log-variance against forward
    position. With two layers this is SageMaker's largest/smallest ratio; with
    more it is that ratio per layer, which a healthy deep network's
    finite-width wobble (a 16-layer He MLP of width 32: 13.5 end to end, 1.19
    per layer) does not move, and a start that scales every layer does.
    """
    if min(variances) == 0:
        return math.inf
    if len(variances) == 2:  # exactly, without a round trip through logarithms
        return max(variances) / min(variances)
    logs = [math.log(v) for v in variances]
    n = len(logs)
    mean_x, mean_y = (n - 1) / 2, sum(logs) / n
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(logs)) / sum((i - mean_x) ** 2 for i in range(n))
    return math.exp(abs(slope))


def _ratio(layers: Mapping[str, Layer]) -> float | None:
    usable = {n: m for n, m in layers.items() if m.moments.count >= 2 and not m.after_norm}
    if len(usable) < 2:
        return None
    return _rate([usable[n].moments.variance for n in forward_order(usable)])


def _diagnose(order: Sequence[str], variances: Mapping[str, float], threshold: float,
              step: int) -> tuple[str, str, str]:
    """Which way the signal goes through the forward order, and the layer where it leaves the range.

    The direction is that of the trend of log-variance with depth (a least-squares
    slope), not of where the extremes happen to sit, so a tiny start reads as a
    collapse even when one early layer is the smallest.
    """
    first = order[0]
    if variances[max(order, key=lambda n: variances[n])] == 0:
        return (f"every activation input is constant at step {step}: no signal flows (all-zero weights?)",
                first, "dead")
    zero = [n for n in order if variances[n] == 0]
    if zero:
        return (f"{zero[0]} is constant at step {step}: the signal dies there (dead units or all-zero weights)",
                zero[0], "dead")
    logs = [math.log(variances[n]) for n in order]
    mean_x = (len(logs) - 1) / 2
    mean_y = sum(logs) / len(logs)
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(logs))
    collapse = slope < 0
    # The first layer whose variance is `threshold` times below (or above) the largest
    # (smallest) of the layers before it: where the signal leaves the healthy range.
    culprit = order[-1]
    extreme = variances[first]
    for name in order[1:]:
        v = variances[name]
        if (collapse and v * threshold < extreme) or (not collapse and v > extreme * threshold):
            culprit = name
            break
        extreme = max(extreme, v) if collapse else min(extreme, v)
    last = order[-1]
    if collapse:
        trend = "collapses with depth (too small an initialisation?)"
    else:
        trend = "explodes with depth (too large an initialisation?)"
    return (
        f"the signal {trend}: variance {variances[first]:.3g} in {first} (first), {variances[last]:.3g} in {last} "
        f"(last); it leaves the {threshold:g}x range at {culprit} ({variances[culprit]:.3g}) at step {step}",
        culprit, "collapse" if collapse else "explode",
    )

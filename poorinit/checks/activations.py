"""Criterion 1: do activation inputs keep commensurate variances across layers?

A good initialisation keeps the variance of each layer's pre-activation about
the same through depth (Glorot & Bengio; He et al.). Too small a start makes it
shrink layer after layer, too large makes it grow; either way the ratio of the
largest to the smallest layer variance at one step leaves the range a healthy
network stays in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from .. import format as fmt
from ..stats import Moments, moments
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status


def depth_key(name: str) -> list[object]:
    """Natural order of layer names, so 'net.10' comes after 'net.2'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class ActivationVarianceCheck(Check):
    name = "activation_variance"
    title = "activation variance"
    description = "ratio of the largest to the smallest activation-input variance across layers at a step"
    fires_early = True  # the worst step so far can only get worse

    def selector(self) -> Selector:
        return Selector(fmt.ACTIVATION_INPUTS, self.params.activation_inputs_regex)

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, Moments]:
        # Workers see different slices of one global batch: pooling their
        # moments exactly gives the variance of the global batch.
        layers = {}
        for name, per_worker in tensors.items():
            total = Moments()
            for tensor in per_worker:
                total = total.merge(moments(tensor.blocks()))
            layers[name] = total
        return layers

    def judge(self, measures: Mapping[int, dict[str, Moments]]) -> CriterionResult:
        threshold = self.params.threshold
        for step, layers in sorted(measures.items()):
            for name, m in sorted(layers.items(), key=lambda item: depth_key(item[0])):
                if m.nonfinite:
                    return self.result(
                        Status.FIRED,
                        f"{m.nonfinite} non-finite values at step {step}: the forward signal overflowed "
                        "(too large an initialisation?)",
                        figure=math.inf, limit=threshold, relation=">", step=step, tensor=name,
                    )
                if m.overflowed:
                    # Finite values whose variance does not fit float64 (|x| past
                    # about 1e154): the ratio would be inf/inf = NaN, never the worst.
                    return self.result(
                        Status.FIRED,
                        f"the variance of {name} overflows float64 at step {step}: the forward signal exploded "
                        "(too large an initialisation?)",
                        figure=math.inf, limit=threshold, relation=">", step=step, tensor=name,
                    )
        per_step: list[tuple[int, float]] = []
        worst: tuple[float, int, str, str, float, float] | None = None
        most_layers = 0
        for step, layers in sorted(measures.items()):
            usable = {n: m.variance for n, m in layers.items() if m.count >= 2}
            most_layers = max(most_layers, len(usable))
            if len(usable) < 2:
                continue
            largest = max(usable, key=lambda n: usable[n])
            smallest = min(usable, key=lambda n: usable[n])
            vmax, vmin = usable[largest], usable[smallest]
            ratio = math.inf if vmin == 0 else vmax / vmin
            per_step.append((step, ratio))
            # "not <=" so that a NaN ratio, should one ever arise, counts as the worst, not the best.
            if worst is None or not ratio <= worst[0]:
                worst = (ratio, step, largest, smallest, vmax, vmin)
        if worst is None:
            found = ", ".join(sorted({n for layers in measures.values() for n in layers})) or "none"
            return self.result(
                Status.NOT_APPLICABLE,
                f"needs at least two activation-input layers with 2+ values at a step; found {most_layers} ({found})",
                limit=threshold, relation=">",
            )
        ratio, step, largest, smallest, vmax, vmin = worst
        steps = f"steps {per_step[0][0]}-{per_step[-1][0]}" if len(per_step) > 1 else f"step {step}"
        if ratio <= threshold:
            return self.result(
                Status.PASSED,
                f"layer variances stay within {ratio:.3g}x of each other over {steps}",
                figure=ratio, limit=threshold, relation=">", step=step, tensor=largest,
                per_step=tuple(per_step),
            )
        if vmax == 0:
            culprit = smallest
            reason = f"every activation input is constant at step {step}: no signal flows (all-zero weights?)"
        elif vmin == 0:
            reason, culprit = f"{smallest} is constant at step {step}: the signal dies there", smallest
        else:
            shrinks = depth_key(smallest) > depth_key(largest)
            trend = "shrinks with depth (too small an initialisation?)" if shrinks else \
                "grows with depth (too large an initialisation?)"
            reason = (
                f"variance {trend}: {vmax:.3g} in {largest}, {vmin:.3g} in {smallest} at step {step}"
            )
            # The culprit is the layer farther (in log scale) from the middle of the pack.
            logs = sorted(math.log(v.variance) for v in measures[step].values() if v.count >= 2 and v.variance > 0)
            middle = logs[len(logs) // 2]
            culprit = smallest if middle - math.log(vmin) > math.log(vmax) - middle else largest
        return self.result(
            Status.FIRED, reason, figure=ratio, limit=threshold, relation=">", step=step, tensor=culprit,
            per_step=tuple(per_step),
        )

"""Criterion 5 (poorinit's addition): does the first loss start near chance?

A K-class classifier whose outputs carry no information yet predicts every
class with probability 1/K, and its cross-entropy is ln K: that is where a
good initialisation starts (the seed course calls a start far above chance a
warning start). Weights that are too large make the logits large and
confidently wrong, so the first loss is many times ln K, even when every other
criterion is blind to it: behind LayerNorm the activation variances are equal,
and the gradients are large. The figure is the first analysed loss divided by
ln K; docs/rule.md gives the figures that set the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .. import format as fmt
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status
from .loss import read_losses

# Fires above this many times chance. The healthy starts of the labelled set's
# development half begin at most 2.79 times ln K (docs/rule.md, docs/accuracy.md).
LIMIT = 3.0


class InitialLossCheck(Check):
    name = "initial_loss"
    title = "initial loss"
    description = "first analysed loss against chance, ln K for K-class cross-entropy"
    fires_early = True  # the first step decides; later steps cannot undo it

    def selector(self) -> Selector:
        return Selector(fmt.LOSSES, self.params.loss_regex)

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, float]:
        return read_losses(tensors)

    def classes(self) -> tuple[int | None, str]:
        """K and where it came from; None with the reason when it is not known."""
        if self.params.num_classes is not None:
            return self.params.num_classes, "num_classes parameter"
        raw = self.trial_attrs.get("num_classes")
        if raw is None:
            return None, (
                "needs the number of classes K of a cross-entropy loss: pass --num-classes K (parameter "
                "num_classes) or record the trial with poorinit.torch.Recorder, which writes it"
            )
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != int(raw) or raw < 2:
            return None, f"the trial's num_classes attribute is {raw!r}, not a whole number >= 2; pass --num-classes K"
        return int(raw), "trial's num_classes attribute"

    def judge(self, measures: Mapping[int, dict[str, float]]) -> CriterionResult:
        classes, source = self.classes()
        if classes is None:
            return self.result(Status.NOT_APPLICABLE, source, limit=LIMIT, relation=">")
        chance = math.log(classes)
        step = min(measures)
        losses = measures[step]
        # Several loss tensors: the one farthest above chance speaks (select one with loss_regex).
        name = max(losses, key=lambda n: losses[n] if math.isfinite(losses[n]) else math.inf)
        value = losses[name]
        per_step = tuple((s, m[name] / chance) for s, m in sorted(measures.items()) if name in m)
        if not math.isfinite(value):
            return self.result(
                Status.FIRED, f"the first loss is {value} at step {step}: the start overflowed",
                figure=math.inf, limit=LIMIT, relation=">", step=step, tensor=name, per_step=per_step,
                direction="explode",
            )
        figure = value / chance
        where = (f"{name} at step {step} is {value:.4g}, {figure:.3g} x chance "
                 f"(ln {classes} = {chance:.3g}, K from the {source})")
        if figure > LIMIT:
            return self.result(
                Status.FIRED,
                f"{where}: the start is confidently wrong, its outputs are far too large "
                "(too large an initialisation, or the output layer's scale)",
                figure=figure, limit=LIMIT, relation=">", step=step, tensor=name, per_step=per_step,
                direction="explode",
            )
        return self.result(Status.PASSED, where, figure=figure, limit=LIMIT, relation=">", step=step, tensor=name,
                           per_step=per_step)

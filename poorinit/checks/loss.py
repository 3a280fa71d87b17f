"""Criterion 3: does the loss go down over the first steps?

A mini-batch loss is noisy, so "decreasing" is judged on window means, not on
step-to-step differences: the mean loss of the last ``patience`` analysed
steps must be lower than the mean of the ``patience`` steps before them (or of
all earlier steps, when fewer were analysed). A start that cannot learn (all
zeros, saturated units) leaves the loss flat; one that explodes makes it rise
or turn non-finite. See docs/rule.md for why this reading of "patience".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .. import format as fmt
from ..errors import TensorError
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status


def finite_mean(values: Sequence[float]) -> float:
    """The mean of finite values, never overflowing: each is divided before summing.

    ``np.mean([1e308, 1e308])`` sums first and gives inf (and a warning); a
    loss that large is a number to judge, not a divergence.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(values))
    if math.isfinite(mean) or not all(math.isfinite(v) for v in values):
        return mean
    count = len(values)
    return float(sum(value / count for value in values))


class LossDecreaseCheck(Check):
    name = "loss_decrease"
    title = "loss decrease"
    description = "relative change of the mean loss between the first and the last `patience` steps"

    def selector(self) -> Selector:
        return Selector(fmt.LOSSES, self.params.loss_regex)

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, float]:
        # Each worker's loss is the mean over its share of the batch; with equal
        # shares their mean is the loss of the global batch.
        losses = {}
        for name, per_worker in tensors.items():
            values = []
            for tensor in per_worker:
                # The size is known from metadata: never read a huge "loss" to find it is not one value.
                if tensor.size != 1:
                    raise TensorError(tensor.source, name, f"a loss holds one value, this holds shape {tensor.shape}")
                data = np.concatenate([b.reshape(-1) for b in tensor.blocks()])
                values.append(float(data[0]))
            losses[name] = finite_mean(values)
        return losses

    def judge(self, measures: Mapping[int, dict[str, float]]) -> CriterionResult:
        names = sorted({n for losses in measures.values() for n in losses})
        verdicts = [self._judge_series(name, [(s, m[name]) for s, m in sorted(measures.items()) if name in m])
                    for name in names]
        # Several loss tensors are judged one by one: the first that fires
        # decides, else the one closest to firing is shown.
        fired = [v for v in verdicts if v.status is Status.FIRED]
        passed = [v for v in verdicts if v.status is Status.PASSED]
        if fired:
            return fired[0]
        if passed:
            return max(passed, key=lambda v: v.figure if v.figure is not None else -math.inf)
        return verdicts[0]

    def _judge_series(self, name: str, series: list[tuple[int, float]]) -> CriterionResult:
        patience = self.params.patience
        per_step = tuple(series)
        for step, value in series:
            if not math.isfinite(value):
                return self.result(
                    Status.FIRED, f"the loss is {value} at step {step}: training diverged",
                    figure=math.inf, limit=0.0, relation=">=", step=step, tensor=name, per_step=per_step,
                )
        if len(series) < patience + 1:
            return self.result(
                Status.NOT_APPLICABLE,
                f"needs patience + 1 = {patience + 1} loss values; found {len(series)} ({name})",
                limit=0.0, relation=">=", tensor=name, per_step=per_step,
            )
        late = series[-patience:]
        early = series[max(0, len(series) - 2 * patience) : -patience]
        early_mean = finite_mean([v for _, v in early])
        late_mean = finite_mean([v for _, v in late])
        # Finite means can still be too far apart for float64 (1e308 vs -1e308):
        # the change is then +-inf, a rise or a fall, never NaN.
        change = (late_mean - early_mean) / abs(early_mean) if early_mean else late_mean - early_mean
        windows = (
            f"mean {late_mean:.4g} over steps {late[0][0]}-{late[-1][0]} vs "
            f"{early_mean:.4g} over steps {early[0][0]}-{early[-1][0]}"
        )
        # "not <" so that a figure that is not a number can never read as a decrease.
        status = Status.FIRED if not change < 0 else Status.PASSED
        verb = "is not decreasing" if not change < 0 else "decreases"
        return self.result(
            status, f"the loss {verb}: {windows}",
            figure=change, limit=0.0, relation=">=", step=late[-1][0], tensor=name, per_step=per_step,
        )

"""Criterion 3: does the loss go down over the first steps?

A mini-batch loss is noisy, so it is judged on window means, not on
step-to-step differences: the mean loss of the last ``patience`` analysed
steps against the mean of the ``patience`` steps before them (or of all
earlier steps, when fewer were analysed), in units of the standard error the
batch noise gives that difference. It fires when the loss turns non-finite,
rises well beyond its noise, or does not change at all (no update moves the
output). A healthy start whose loss has not yet moved beyond its noise within
ten steps (a default init under Adam at lr 1e-3) passes: the window means then
differ by noise alone, and firing on them was a coin toss (issue 8, case 5).
See docs/rule.md for the figures.
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


def read_losses(tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, float]:
    """Each selected loss tensor's value at one step, averaged over workers.

    Each worker's loss is the mean over its share of the batch; with equal
    shares their mean is the loss of the global batch.
    """
    losses = {}
    for name, per_worker in tensors.items():
        values = []
        for tensor in per_worker:
            # The size is known from metadata: never read a huge "loss" to find it is not one value.
            if tensor.size != 1:
                raise TensorError(tensor.source, name, f"a loss holds one value, this holds shape {tensor.shape}")
            data = np.concatenate([b.reshape(-1) for b in tensor.blocks()])
            refuse_fill_only = getattr(tensor, "refuse_fill_only", None)  # a dataset created, never written
            if refuse_fill_only is not None:
                refuse_fill_only(data)
            values.append(float(data[0]))
        losses[name] = finite_mean(values)
    return losses


# Fires when the later window's mean is more than RISE standard errors above the
# earlier one's (docs/rule.md: healthy runs of the labelled set stay below 1).
RISE = 3.0
# A loss whose values differ by at most this share of their level has not moved at all.
FLAT = 1e-6


class LossDecreaseCheck(Check):
    name = "loss_decrease"
    title = "loss decrease"
    description = "rise of the mean loss between the first and the last `patience` steps, in standard errors"

    def selector(self) -> Selector:
        return Selector(fmt.LOSSES, self.params.loss_regex)

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, float]:
        return read_losses(tensors)

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
                    figure=math.inf, limit=RISE, relation=">", step=step, tensor=name, per_step=per_step,
                    direction="explode",
                )
        if len(series) < patience + 1:
            return self.result(
                Status.NOT_APPLICABLE,
                f"needs patience + 1 = {patience + 1} loss values; found {len(series)} ({name})",
                limit=RISE, relation=">", tensor=name, per_step=per_step,
            )
        values = np.array([v for _, v in series])
        late = series[-patience:]
        early = series[max(0, len(series) - 2 * patience) : -patience]
        early_values, late_values = values[-len(late) - len(early) : -len(late)], values[-len(late) :]
        early_mean, late_mean = finite_mean(list(early_values)), finite_mean(list(late_values))
        windows = (
            f"mean {late_mean:.4g} over steps {late[0][0]}-{late[-1][0]} vs "
            f"{early_mean:.4g} over steps {early[0][0]}-{early[-1][0]}"
        )
        level = abs(finite_mean(list(values)))
        with np.errstate(over="ignore", invalid="ignore"):
            moved = float(values.max()) - float(values.min())
        if moved <= FLAT * max(level, 1e-12):
            return self.result(
                Status.FIRED,
                f"the loss does not change at all: {level:.6g} at every one of steps {series[0][0]}-"
                f"{series[-1][0]}; no update moves the output (all-zero or dead weights?)",
                figure=0.0, limit=RISE, relation=">", step=late[-1][0], tensor=name, per_step=per_step,
                direction="dead",
            )
        # The change in units of its standard error: mini-batch noise alone moves the
        # window means, so only a rise well beyond it says the loss goes the wrong way.
        with np.errstate(over="ignore", invalid="ignore"):
            noise = math.sqrt(_var(early_values) / len(early_values) + _var(late_values) / len(late_values))
            change = late_mean - early_mean
        if noise == 0:  # noqa: SIM108  (a nested ternary would hide the zero-noise case)
            score = 0.0 if change == 0 else math.copysign(math.inf, change)
        else:
            score = change / noise
        relative = change / abs(early_mean) if early_mean else change
        # "not <=" so that a figure that is not a number (inf - inf) never reads as a pass.
        if not score <= RISE:
            return self.result(
                Status.FIRED,
                f"the loss rises beyond its batch noise ({relative:+.1%}, {score:.2g} standard errors): {windows}",
                figure=score, limit=RISE, relation=">", step=late[-1][0], tensor=name, per_step=per_step,
                direction="explode",
            )
        verb = "decreases" if change < 0 else "does not rise beyond its batch noise"
        return self.result(
            Status.PASSED, f"the loss {verb} ({relative:+.1%}, {score:.2g} standard errors): {windows}",
            figure=score, limit=RISE, relation=">", step=late[-1][0], tensor=name, per_step=per_step,
        )


def _var(values: np.ndarray) -> float:
    """Sample variance; a window of one value borrows no noise estimate (0)."""
    return float(values.var(ddof=1)) if values.size > 1 else 0.0

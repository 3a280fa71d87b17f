"""Criterion 4 (poorinit's addition): are bounded activations saturated from the start?

Too large a start drives tanh and sigmoid units into their flat tails, where
the derivative is nearly zero (the seed texts: "too large explodes or
saturates"). Variance ratios cannot see it: a network saturated at every layer
keeps its pre-activation variance flat across depth, and the gradients of its
last layers stay large. What does show it is the share of a layer's inputs
that lie where the activation's slope has fallen below a tenth of its peak.

A softmax (attention's, or an output head's) saturates by rows: a row whose
largest probability nears 1 is one-hot, and its Jacobian ``diag(p) - p pᵀ``
passes almost no gradient. Its slope is at most 1/2 (two positions sharing
the weight equally); it falls below a tenth of that once the largest
probability passes ``SOFTMAX_BOUND`` (``2 p (1 - p) < 0.05``), so a softmax
input's share is the share of its rows past that bound. This is what a large
start does to a transformer whose other layers are all normalised: the
query and key projections multiply the logits by the square of the weights'
scale, and every head starts frozen on one position (docs/rule.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from .. import format as fmt
from ..records import record
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status

# |input| beyond which the slope is under a tenth of its maximum:
# tanh' = 1 - tanh^2 < 0.1 past 1.82; sigmoid' < 0.025 past 3.64; softsign'
# < 0.1 past 2.16; hardtanh and hardsigmoid are flat past 1 and 3.
BOUNDS = {"tanh": 1.82, "sigmoid": 3.64, "softsign": 2.16, "hardtanh": 1.0, "hardsigmoid": 3.0}
KIND = re.compile(r"(hardtanh|hardsigmoid|tanh|sigmoid|softsign|softmax)_input$")
PATTERN = r".*(?:hardtanh|hardsigmoid|tanh|sigmoid|softsign|softmax)_input$"
# The largest probability past which a softmax row's slope is under a tenth of its peak of 1/2.
SOFTMAX_BOUND = (1 + math.sqrt(1 - 0.1)) / 2  # 0.9743
# A softmax input at or below this is a mask's fill, not a logit (float16's lowest value).
MASKED = -65504.0

# A layer with more than this share of saturated inputs has lost most of its gradient.
SATURATED_SHARE = 0.5


@record
class Share:
    """Saturated values of one activation input at one step, of all its values."""

    saturated: int
    total: int

    @property
    def fraction(self) -> float:
        return self.saturated / self.total if self.total else 0.0


class SaturationCheck(Check):
    name = "saturation"
    title = "activation saturation"
    description = "largest share of a bounded activation's inputs (tanh, sigmoid, ...) in its flat tails"
    fires_early = True  # the worst step so far can only get worse
    optional_subject = True  # a ReLU network has nothing to saturate

    def selector(self) -> Selector:
        return Selector(fmt.ACTIVATION_INPUTS, (PATTERN,),
                        label="tanh, sigmoid, softmax or other bounded activation inputs")

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, Share]:
        shares = {}
        for name, per_worker in tensors.items():
            kind = _kind(name)
            saturated = total = 0
            for tensor in per_worker:
                counted = softmax_rows(tensor) if kind == "softmax" else _elements(tensor, BOUNDS[kind])
                saturated += counted[0]
                total += counted[1]
            shares[name] = Share(saturated, total)
        return shares

    def judge(self, measures: Mapping[int, dict[str, Share]]) -> CriterionResult:
        per_step = []
        worst: tuple[float, int, str] | None = None
        for step, shares in sorted(measures.items()):
            usable = {n: s for n, s in shares.items() if s.total}
            if not usable:
                continue
            name = max(usable, key=lambda n: usable[n].fraction)
            fraction = usable[name].fraction
            per_step.append((step, fraction))
            if worst is None or fraction > worst[0]:
                worst = (fraction, step, name)
        if worst is None:
            return self.result(Status.NOT_APPLICABLE, "the bounded-activation inputs hold no values",
                               limit=SATURATED_SHARE, relation=">")
        fraction, step, name = worst
        if fraction > SATURATED_SHARE:
            what = (
                f"{fraction:.0%} of the rows of {name} put more than {SOFTMAX_BOUND:.1%} of their weight on one "
                f"position at step {step}: the softmax is saturated, its rows one-hot (too large an "
                "initialisation of the layers before it, e.g. attention's query and key projections?)"
                if _kind(name) == "softmax"
                else f"{fraction:.0%} of the inputs of {name} lie in the activation's flat tails at step {step}: "
                "its units are saturated (too large an initialisation?)"
            )
            return self.result(
                Status.FIRED,
                what,
                figure=fraction, limit=SATURATED_SHARE, relation=">", step=step, tensor=name,
                per_step=tuple(per_step),
            )
        return self.result(
            Status.PASSED, f"at most {fraction:.1%} of a layer's inputs are saturated",
            figure=fraction, limit=SATURATED_SHARE, relation=">", step=step, tensor=name, per_step=tuple(per_step),
        )


def _kind(name: str) -> str:
    match = KIND.search(name)
    return match.group(1) if match else "tanh"


def _elements(tensor: Tensor, bound: float) -> tuple[int, int]:
    """(inputs past ``bound`` in absolute value, inputs); NaN and Inf count as saturated: they are past every bound."""
    saturated = total = 0
    for block in tensor.blocks():
        saturated += int(np.count_nonzero(~(np.abs(block) <= bound)))
        total += block.size
    return saturated, total


def softmax_rows(tensor: Tensor) -> tuple[int, int]:
    """(rows whose largest probability exceeds SOFTMAX_BOUND, rows) of a softmax input, axis last.

    Blocks are flat and need not end on a row boundary, so a partial row is
    carried into the next block. A row holding NaN or +Inf counts as
    saturated. Masked positions (-Inf, or a fill at or below ``MASKED``, as
    Hugging Face's ``finfo.min``) are no choice, and a row with fewer than two
    unmasked positions (the first row of causal attention) cannot saturate,
    so it is not counted.
    """
    width = tensor.shape[-1] if tensor.shape else 0
    if width < 2:
        return 0, 0
    saturated = rows = 0
    carry = np.empty(0)
    for block in tensor.blocks():
        values = np.concatenate([carry, block]) if carry.size else block
        whole = values.size - values.size % width
        carry = values[whole:]
        if not whole:
            continue
        logits = values[:whole].reshape(-1, width).astype(np.float64, copy=False)
        broken = ~np.isfinite(logits) & ~(logits == -np.inf)  # NaN or +Inf
        broken_row = broken.any(axis=1)
        choices = np.count_nonzero(logits > MASKED, axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            shifted = logits - logits.max(axis=1, keepdims=True)
            largest = 1.0 / np.exp(shifted).sum(axis=1)
        counted = broken_row | (choices >= 2)
        saturated += int(np.count_nonzero(counted & (broken_row | ~(largest <= SOFTMAX_BOUND))))
        rows += int(np.count_nonzero(counted))
    return saturated, rows

"""Criterion 4 (poorinit's addition): are bounded activations saturated from the start?

Too large a start drives tanh and sigmoid units into their flat tails, where
the derivative is nearly zero (the seed texts: "too large explodes or
saturates"). Variance ratios cannot see it: a network saturated at every layer
keeps its pre-activation variance flat across depth, and the gradients of its
last layers stay large. What does show it is the share of a layer's inputs
that lie where the activation's slope has fallen below a tenth of its peak.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import format as fmt
from ..trial import Tensor
from .base import Check, CriterionResult, Selector, Status

# |input| beyond which the slope is under a tenth of its maximum:
# tanh' = 1 - tanh^2 < 0.1 past 1.82; sigmoid' < 0.025 past 3.64; softsign'
# < 0.1 past 2.16; hardtanh and hardsigmoid are flat past 1 and 3.
BOUNDS = {"tanh": 1.82, "sigmoid": 3.64, "softsign": 2.16, "hardtanh": 1.0, "hardsigmoid": 3.0}
KIND = re.compile(r"(hardtanh|hardsigmoid|tanh|sigmoid|softsign)_input$")
PATTERN = r".*(?:hardtanh|hardsigmoid|tanh|sigmoid|softsign)_input$"

# A layer with more than this share of saturated inputs has lost most of its gradient.
SATURATED_SHARE = 0.5


@dataclass(frozen=True)
class Share:
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
        return Selector(fmt.ACTIVATION_INPUTS, (PATTERN,), label="tanh, sigmoid or other bounded activation inputs")

    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> dict[str, Share]:
        shares = {}
        for name, per_worker in tensors.items():
            match = KIND.search(name)
            bound = BOUNDS[match.group(1)] if match else 1.0
            saturated = total = 0
            for tensor in per_worker:
                for block in tensor.blocks():
                    # NaN and Inf count as saturated: they are past every bound.
                    saturated += int(np.count_nonzero(~(np.abs(block) <= bound)))
                    total += block.size
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
            return self.result(
                Status.FIRED,
                f"{fraction:.0%} of the inputs of {name} lie in the activation's flat tails at step {step}: "
                "its units are saturated (too large an initialisation?)",
                figure=fraction, limit=SATURATED_SHARE, relation=">", step=step, tensor=name,
                per_step=tuple(per_step),
            )
        return self.result(
            Status.PASSED, f"at most {fraction:.1%} of a layer's inputs are saturated",
            figure=fraction, limit=SATURATED_SHARE, relation=">", step=step, tensor=name, per_step=tuple(per_step),
        )

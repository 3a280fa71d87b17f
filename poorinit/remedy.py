"""One concrete remedy per fired criterion, chosen from what the trial shows.

Two facts pick the remedy (the table and its sources are in docs/rule.md,
"Remedies"):

* the activation kind of the layer the criterion blames, because the right
  variance-preserving scale depends on the nonlinearity: He et al. (2015) for
  ReLU and its leaky variants, Glorot and Bengio (2010) for tanh and sigmoid,
  ``nonlinearity="linear"`` (LeCun's 1/fan_in) plus the architecture's own
  scheme for smooth ReLU-like units (GELU, SiLU) in transformers;
* the direction of the failure: the signal collapses (too small a start),
  explodes (too large), the units are identical (a zero or constant start
  never breaks symmetry), or the bounded units saturate.

The checks are left alone: this module maps (criterion, kind, direction) to a
sentence, so a new criterion needs one entry here rather than an edit in every
check. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

COLLAPSE = "collapse"
EXPLODE = "explode"
SYMMETRIC = "symmetric"
SATURATED = "saturated"
DEAD = "dead"
DIRECTIONS = (COLLAPSE, EXPLODE, SYMMETRIC, SATURATED, DEAD)

RELU_KINDS = frozenset({"relu", "relu6", "prelu", "rrelu"})
LEAKY_KINDS = frozenset({"leaky_relu"})
BOUNDED_KINDS = frozenset({"tanh", "sigmoid", "hardtanh", "hardsigmoid", "softsign"})
SMOOTH_KINDS = frozenset({"gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "hardswish"})

_KIND_COMPONENT = re.compile(r"^(?P<kind>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*)_input$")


def kind_from_name(name: str) -> str | None:
    """The activation kind in ``<path>.<kind>_input`` (or ``...<kind>_input.<n>``).

    The last dotted component ending in ``_input`` names the kind; a trailing
    call number (``.1``, ``.2``) written for repeated functional calls is
    skipped. None when the name follows no such pattern.
    """
    for component in reversed(name.split(".")):
        match = _KIND_COMPONENT.match(component)
        if match:
            return match.group("kind").lower()
    return None


def family(kind: str | None) -> str:
    """Which initialiser family a kind calls for: relu, leaky, bounded, smooth, or linear (unknown)."""
    if kind in RELU_KINDS:
        return "relu"
    if kind in LEAKY_KINDS:
        return "leaky"
    if kind in BOUNDED_KINDS:
        return "bounded"
    if kind in SMOOTH_KINDS:
        return "smooth"
    return "unknown"


@dataclass(frozen=True)
class Evidence:
    """What the trial shows about one fired criterion, as far as it is known."""

    kind: str | None = None  # activation kind of the blamed layer
    direction: str | None = None  # one of DIRECTIONS
    layer: str | None = None  # the blamed activation input
    weight: str | None = None  # the weight feeding it, when known
    negative_slope: float | None = None  # leaky_relu's slope, when recorded


def initialiser(kind: str | None, negative_slope: float | None = None) -> str:
    """The PyTorch call that gives a weight the variance-preserving scale for ``kind``."""
    fam = family(kind)
    if fam == "relu":
        return 'nn.init.kaiming_normal_(w, nonlinearity="relu")'
    if fam == "leaky":
        slope = 0.01 if negative_slope is None else negative_slope
        return f'nn.init.kaiming_normal_(w, a={slope:g}, nonlinearity="leaky_relu")'
    if fam == "bounded":
        if kind == "sigmoid" or kind == "hardsigmoid":
            return "nn.init.xavier_normal_(w)"
        return 'nn.init.xavier_normal_(w, gain=nn.init.calculate_gain("tanh"))'
    if fam == "smooth":
        return (
            'nn.init.kaiming_normal_(w, nonlinearity="linear") (std 1/sqrt(fan_in)), or the architecture\'s '
            "own scheme (e.g. normal_(w, std=0.02) for GPT/BERT-style transformers)"
        )
    return 'nn.init.kaiming_normal_(w, nonlinearity="relu")'


def _source(kind: str | None) -> str:
    fam = family(kind)
    if fam in ("relu", "leaky"):
        return "He et al. 2015"
    if fam == "bounded":
        return "Glorot and Bengio 2010"
    return "LeCun's fan-in scaling"


def _target(evidence: Evidence) -> str:
    layers = f"{evidence.kind} layers" if evidence.kind else "activations"
    first = f", starting with {evidence.weight}" if evidence.weight else ""
    return f"the Linear/Conv weights feeding the {layers}{first}"


def remedy(check: str, evidence: Evidence, *, diverged: bool = False) -> str | None:
    """The remedy sentence for a fired criterion, or None for a criterion not in the table."""
    kind, direction = evidence.kind, evidence.direction
    init = initialiser(kind, evidence.negative_slope)
    source = _source(kind)
    if check == "initial_loss":
        return (
            "scale the output layer down so the first logits are near uniform and the loss starts at ln K: "
            "nn.init.zeros_(head.bias) and nn.init.normal_(head.weight, std=0.01) (or zeros_), "
            "keeping the hidden layers' initialisation"
        )
    if check == "loss_decrease" and direction is None:
        if diverged:
            return (
                "the loss diverged: scale the initialisation down with "
                f"{init} on {_target(evidence)} ({source}), then lower the learning rate if it persists"
            )
        return (
            "the loss is flat while the activations and gradients look healthy: the initialisation is not "
            "the evidence here; lower the learning rate (10x) or check the optimiser and the labels first"
        )
    if check not in ("activation_variance", "gradient_spread", "saturation", "loss_decrease"):
        return None
    if direction == SYMMETRIC:
        return (
            "break the symmetry: the units start identical (a zero or constant initialisation), so their "
            f"gradients stay identical; draw random weights with {init} on {_target(evidence)} ({source}), "
            "keep only the biases at zero"
        )
    if direction == SATURATED:
        if kind == "softmax":
            return (
                "the softmax rows start one-hot: its logits are too large (in attention, q·k scales with the "
                "square of the query and key projections' scale); initialise the projections before it with "
                "nn.init.xavier_uniform_(w) (nn.MultiheadAttention's own) or nn.init.normal_(w, std=0.02) "
                "(GPT-2/BERT), and keep the 1/sqrt(head_dim) scaling of the logits"
            )
        if family(kind) == "bounded":
            return (
                f"the {kind} units start in their flat tails (too large an initialisation): use {init} "
                f"on {_target(evidence)} (Glorot and Bengio 2010), and standardise the inputs to unit variance"
            )
        return f"the units saturate: scale the initialisation down with {init} on {_target(evidence)} ({source})"
    if direction == DEAD:
        return (
            f"most ReLU units never activate: use {init} on {_target(evidence)} ({source}) with zero biases, "
            'or switch to LeakyReLU with kaiming_normal_(w, a=0.01, nonlinearity="leaky_relu")'
        )
    if direction == EXPLODE:
        return (
            f"the signal grows with depth (too large an initialisation): scale the weights down with {init} "
            f"on {_target(evidence)} ({source})"
        )
    # COLLAPSE, or a vanishing gradient with no other evidence: too small a start.
    return (
        f"the signal shrinks with depth (too small an initialisation): scale the weights up with {init} "
        f"on {_target(evidence)} ({source})"
    )


def majority_kind(kinds: Sequence[str | None]) -> str | None:
    """The most common known kind (ties: the first in forward order), None if none is known."""
    known = [k for k in kinds if k]
    if not known:
        return None
    return max(dict.fromkeys(known), key=known.count)


def variance_direction(layers: Mapping[str, float]) -> str | None:
    """Collapse or explode for the activation-variance criterion, from the fired step's variances.

    All layers constant (variance 0 everywhere) means nothing flows at all: a
    symmetric start. A non-finite variance is an overflow: explode. Otherwise,
    as the criterion itself reads it, the trend with depth (natural name
    order): the smallest variance deeper than the largest is a collapse, the
    other way round an explosion.
    """
    from .checks.activations import depth_key

    values = {n: v for n, v in layers.items() if not math.isnan(v)}
    if not values:
        return None
    if all(v == 0 for v in values.values()):
        return SYMMETRIC
    if any(not math.isfinite(v) for v in values.values()):
        return EXPLODE
    largest = max(values, key=lambda n: values[n])
    smallest = min(values, key=lambda n: values[n])
    return COLLAPSE if depth_key(smallest) > depth_key(largest) else EXPLODE

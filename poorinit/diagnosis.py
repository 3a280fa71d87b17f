"""The per-layer diagnosis: which layer, why, and what to change.

A verdict says "poor start"; the diagnosis redoes what the seed course's
signal probe does by hand, from the saved trial: one row per activation layer
in forward order with the std of its input, the variance ratio to the previous
layer, the zero and dead-unit shares, the saturated share, the gradient std of
the weight feeding it, and that weight's std against the He and Glorot scales
for its shape. It is a view over the same pass over the files as the verdict:
:class:`DiagnosisMeasurer` is fed by :class:`~poorinit.analysis.Analysis`
with the readers it already has open at the first analysed step, and the
per-step figures for plots come from the checks' own measures.

Measures here are pure functions over :class:`~poorinit.trial.Tensor` values
(streamed block by block), tested with arrays of known answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import format as fmt
from .checks.activations import depth_key
from .checks.base import CriterionResult, Selector
from .checks.saturation import BOUNDS, SATURATED_SHARE, softmax_rows
from .params import RuleParams
from .remedy import (
    COLLAPSE,
    DEAD,
    EXPLODE,
    RELU_KINDS,
    SATURATED,
    SYMMETRIC,
    Evidence,
    kind_from_name,
    majority_kind,
    remedy,
    variance_direction,
)
from .stats import Moments

# A ReLU layer with more than this share of dead units is marked "dead".
DEAD_SHARE = 0.5
# Weights larger than this many values are not loaded whole to look for
# identical units (the std and the He/Glorot ratios are still streamed).
SYMMETRY_MAX_VALUES = 1 << 24
# Module classes whose weight is a Linear/ConvNd weight (fan as PyTorch computes it).
WEIGHT_MODULES = frozenset(
    {"Linear", "Bilinear", "LazyLinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
     "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "LazyConv3d", "NonDynamicallyQuantizableLinear"}
)
_ACTIVATION_NAME = r".*_input(?:\.\d+)?$"
_WEIGHT_NAME = r"(?!gradient/).*weight$"
_GRADIENT_NAME = r"gradient/.*weight$"


def attrs_of(tensor: Any) -> Mapping[str, Any]:
    """A tensor's metadata attributes (COORD contract 2), empty for readers without them."""
    attrs = getattr(tensor, "attrs", None)
    return attrs if isinstance(attrs, Mapping) else {}


# ---------------------------------------------------------------- pure measures


def fans(shape: Sequence[int]) -> tuple[int, int] | None:
    """``(fan_in, fan_out)`` as ``torch.nn.init._calculate_fan_in_and_fan_out`` computes them.

    Linear ``(out, in)``: ``(in, out)``. ConvNd ``(out, in/groups, *kernel)``:
    ``(in/groups * prod(kernel), out * prod(kernel))``. PyTorch refuses fewer
    than two dimensions; so do we (None).
    """
    if len(shape) < 2:
        return None
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def he_std(fan_in: int) -> float:
    """He et al. (2015): std sqrt(2 / fan_in) keeps a ReLU layer's variance."""
    return math.sqrt(2.0 / fan_in)


def glorot_std(fan_in: int, fan_out: int) -> float:
    """Glorot and Bengio (2010): std sqrt(2 / (fan_in + fan_out))."""
    return math.sqrt(2.0 / (fan_in + fan_out))


@dataclass(frozen=True)
class ActivationFigures:
    """One activation input at one step, pooled over workers."""

    moments: Moments
    zeros: int
    values: int
    units: int  # positions after the leading (batch) axis
    dead_units: int  # units <= 0 for every sample of the batch
    saturated: int  # values past the kind's flat-tail bound (NaN and Inf included); softmax: one-hot rows
    rows: int = 0  # softmax only: the rows the saturated count is out of

    @property
    def std(self) -> float:
        return math.sqrt(self.moments.variance) if self.moments.count else math.nan

    @property
    def zero_share(self) -> float:
        return self.zeros / self.values if self.values else math.nan

    @property
    def dead_share(self) -> float:
        return self.dead_units / self.units if self.units else math.nan

    @property
    def saturated_share(self) -> float:
        out_of = self.rows if self.kind_is_rows else self.values
        return self.saturated / out_of if out_of else math.nan

    @property
    def kind_is_rows(self) -> bool:
        return self.rows > 0


def measure_activation(tensors: Sequence[Any], kind: str | None) -> ActivationFigures:
    """Streams the blocks of one activation input (one tensor per worker).

    A unit is a position after the leading axis, which is the batch (a
    feature of a Linear layer, a channel-and-pixel of a convolution). A unit
    is dead when its input is <= 0 for every sample of every worker: ReLU
    passes nothing there and its gradient is zero (at 0 too, in PyTorch).
    """
    total = Moments()
    zeros = values = saturated = 0
    units = 0
    alive: np.ndarray | None = None
    bound = BOUNDS.get(kind or "")
    for tensor in tensors:
        shape = tuple(tensor.shape)
        per_sample = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if alive is None:
            units, alive = per_sample, np.zeros(per_sample, dtype=bool)
        elif per_sample != units:
            alive = None  # workers disagree on the unit layout: no dead-unit figure
            units = 0
        offset = 0
        for block in tensor.blocks():
            block = np.asarray(block)
            total = total.merge(Moments.of(block))
            zeros += int(np.count_nonzero(block == 0))
            values += block.size
            if bound is not None:
                saturated += int(np.count_nonzero(~(np.abs(block) <= bound)))
            if alive is not None and units:
                positive = np.flatnonzero(block > 0)
                if positive.size:
                    alive[(offset + positive) % units] = True
            offset += block.size
    dead = int(units - np.count_nonzero(alive)) if alive is not None and units and values else 0
    rows = 0
    if kind == "softmax":  # saturated by rows, as the saturation criterion counts them
        for tensor in tensors:
            one_hot, counted = softmax_rows(tensor)
            saturated, rows = saturated + one_hot, rows + counted
    return ActivationFigures(total, zeros, values, units if alive is not None else 0, dead, saturated, rows)


@dataclass(frozen=True)
class WeightFigures:
    """A weight (and its gradient) at one step, against the scales its shape calls for."""

    name: str
    shape: tuple[int, ...]
    std: float
    fan_in: int | None = None
    fan_out: int | None = None
    gradient_std: float | None = None
    units: int | None = None  # rows (output units) of the weight matrix
    identical_units: int | None = None  # rows equal to the first row
    note: str = ""

    @property
    def he_ratio(self) -> float | None:
        return None if self.fan_in is None else self.std / he_std(self.fan_in)

    @property
    def glorot_ratio(self) -> float | None:
        if self.fan_in is None or self.fan_out is None:
            return None
        return self.std / glorot_std(self.fan_in, self.fan_out)

    @property
    def symmetric(self) -> bool:
        return bool(self.units and self.units > 1 and self.identical_units == self.units)

    @property
    def module(self) -> str:
        return self.name[: -len(".weight")] if self.name.endswith(".weight") else self.name


def identical_rows(matrix: np.ndarray) -> int:
    """How many rows of ``matrix`` (units x inputs) equal its first row exactly."""
    if matrix.shape[0] == 0:
        return 0
    return int(np.count_nonzero(np.all(matrix == matrix[:1], axis=1)))


def measure_weight(name: str, tensor: Any, gradients: Sequence[Any] = ()) -> WeightFigures:
    """Std of the weight, fans from its shape, identical units, std of its gradient."""
    shape = tuple(tensor.shape)
    weight_moments = Moments()
    for block in tensor.blocks():
        weight_moments = weight_moments.merge(Moments.of(block))
    std = math.sqrt(weight_moments.variance) if weight_moments.count else math.nan
    gradient_std = None
    if gradients:
        g = Moments()
        for gradient in gradients:
            for block in gradient.blocks():
                g = g.merge(Moments.of(block))
        gradient_std = math.sqrt(g.variance) if g.count else None
    fan = fans(shape)
    if fan is None:
        return WeightFigures(name, shape, std, gradient_std=gradient_std,
                             note="recorded as a flat sample: no shape, so no fan (record with parameter_stride=1)")
    units = identical = None
    if tensor.size <= SYMMETRY_MAX_VALUES and shape[0] > 0:
        values = np.concatenate([np.asarray(b).reshape(-1) for b in tensor.blocks()])
        units = shape[0]
        identical = identical_rows(values.reshape(shape[0], -1))
    return WeightFigures(name, shape, std, fan[0], fan[1], gradient_std, units, identical)


# ---------------------------------------------------------------- the first step's measure


@dataclass(frozen=True)
class LayerMeasure:
    name: str
    kind: str | None
    order: int | None
    attrs: Mapping[str, Any]
    figures: ActivationFigures


@dataclass(frozen=True)
class StepMeasure:
    """What the diagnosis read at the first analysed step."""

    step: int
    layers: tuple[LayerMeasure, ...]
    weights: Mapping[str, WeightFigures]
    weight_attrs: Mapping[str, Mapping[str, Any]]


class DiagnosisMeasurer:
    """Reads, at one step, what the verdict's checks do not: whole weights,
    per-unit activations, each weight's own gradient.

    Fed by :class:`~poorinit.analysis.Analysis` with the step files it has open,
    so nothing is opened twice.
    """

    def __init__(self, params: RuleParams) -> None:
        self.params = params
        from .checks.saturation import PATTERN

        self.activations = Selector(fmt.ACTIVATION_INPUTS,
                                    (*params.activation_inputs_regex, PATTERN, _ACTIVATION_NAME))
        self.weights = Selector(fmt.WEIGHTS, (_WEIGHT_NAME,))
        self.gradients = Selector(fmt.GRADIENTS, (_GRADIENT_NAME,))
        self.measure: StepMeasure | None = None
        # Per step, the variance of every activation input (plots: one line per step).
        self.variances: dict[int, dict[str, float]] = {}

    def take_variances(self, step: int, listings: Iterable[tuple[Any, Sequence[tuple[str, Sequence[str]]]]],
                       known: Mapping[str, Moments]) -> None:
        """Each activation input's variance at ``step``: the activation-variance
        check's figure where it measured the layer, else measured here (a tanh
        layer outside the rule's ``.*relu_input`` regex)."""
        pooled: dict[str, Moments] = {}
        for reader, names in listings:
            for name, collections in names:
                if name in known or not self.activations.matches(name, collections):
                    continue
                total = pooled.get(name, Moments())
                for block in reader.tensor(name).blocks():
                    total = total.merge(Moments.of(block))
                pooled[name] = total
        merged = {**pooled, **known}
        self.variances[step] = {name: m.variance for name, m in merged.items() if m.count}

    def take(self, step: int, listings: Iterable[tuple[Any, Sequence[tuple[str, Sequence[str]]]]]) -> None:
        """Measure ``step`` from open readers and their ``tensor_names()`` listings."""
        activations: dict[str, list[Any]] = {}
        weights: dict[str, Any] = {}
        gradients: dict[str, list[Any]] = {}
        for reader, names in listings:
            for name, collections in names:
                if self.activations.matches(name, collections):
                    activations.setdefault(name, []).append(reader.tensor(name))
                elif self.gradients.matches(name, collections):
                    gradients.setdefault(name[len("gradient/"):] if name.startswith("gradient/") else name,
                                         []).append(reader.tensor(name))
                elif self.weights.matches(name, collections) and name not in weights:
                    weights[name] = reader.tensor(name)  # workers hold the same weights: the first suffices
        layers = []
        for name, per_worker in activations.items():
            attrs = attrs_of(per_worker[0])
            kind = attrs.get("activation") if isinstance(attrs.get("activation"), str) else kind_from_name(name)
            order = attrs.get("order")
            order = order if isinstance(order, int) and not isinstance(order, bool) else None
            layers.append(LayerMeasure(name, kind, order, dict(attrs), measure_activation(per_worker, kind)))
        measured = {name: measure_weight(name, tensor, gradients.get(name, ())) for name, tensor in weights.items()}
        weight_attrs = {name: dict(attrs_of(tensor)) for name, tensor in weights.items()}
        self.measure = StepMeasure(step, tuple(layers), measured, weight_attrs)


# ---------------------------------------------------------------- rows, marks, the diagnosis


@dataclass(frozen=True)
class LayerRow:
    """One row of the diagnosis table."""

    name: str
    kind: str | None
    std: float
    variance_ratio: float | None  # variance / the previous layer's ("x prev")
    zero_share: float
    dead_share: float | None  # ReLU family only
    saturated_share: float | None  # bounded kinds only
    weight: WeightFigures | None
    mark: str = ""  # one of remedy.DIRECTIONS, or ""
    note: str = ""
    negative_slope: float | None = None  # leaky_relu's, when the recorder wrote it


@dataclass(frozen=True)
class Diagnosis:
    """The per-layer view of a trial; ``rows`` in forward order (``ordered_by`` says how it was known)."""

    step: int | None
    ordered_by: str
    rows: tuple[LayerRow, ...]
    findings: tuple[str, ...]
    # Per analysed step, each layer's activation-input variance and saturated
    # share, from the checks' own measures (for plots).
    variances: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = field(default=())
    saturation: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = field(default=())

    @property
    def marked(self) -> tuple[LayerRow, ...]:
        return tuple(r for r in self.rows if r.mark)


def module_path(name: str) -> str:
    """The module path of an activation input or weight: ``net.1.relu_input`` -> ``net.1``."""
    parts = name.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].endswith("_input"):
            return ".".join(parts[:index])
    return name[: -len(".weight")] if name.endswith(".weight") else name


def feeding_weights(layers: Sequence[LayerMeasure], weights: Mapping[str, WeightFigures],
                    weight_attrs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Which weight feeds each activation input (name -> weight name); ``layers`` in forward order.

    The weight candidates are Linear/ConvNd weights: those whose ``module``
    attribute names such a class, else any weight of two or more dimensions
    (norm layers have 1-D weights); when no weight has a shape (a flat sample)
    every ``*.weight`` is a candidate. Two rules, in this order:

    1. Functional calls: activation inputs whose ``module`` attribute names
       a calling module ``P`` that owns candidates (``P.fc1.weight``, or any
       for the root ``""``) take them in turn: the first call in forward
       order the first candidate in natural name order, and so on
       (``F.relu(self.fc1(x))`` then ``F.relu(self.fc2(...))`` -> fc1, fc2).
    2. Otherwise the activation input ``P.relu_input`` takes the candidate
       whose module path sorts last, in natural order (``net.10`` after
       ``net.2``), before ``P``: in a ``Sequential`` the Linear or Conv just
       before the activation (``net.1.relu_input`` -> ``net.0.weight``),
       skipping a norm layer between them.

    Both are heuristics, documented in docs/rule.md; they can be wrong for
    modules named out of forward order.
    """

    def is_candidate(name: str, figures: WeightFigures) -> bool:
        module = weight_attrs.get(name, {}).get("module")
        if isinstance(module, str):
            return module in WEIGHT_MODULES
        return len(figures.shape) >= 2

    candidates = [n for n, f in weights.items() if is_candidate(n, f)]
    if not candidates:
        candidates = [n for n in weights if n.endswith("weight")]
    keyed = sorted(candidates, key=lambda n: depth_key(module_path(n)))
    chosen: dict[str, str] = {}
    taken: dict[str, int] = {}
    for layer in layers:
        caller = layer.attrs.get("module")
        if isinstance(caller, str):
            owned = [n for n in keyed if not caller or n.startswith(caller + ".")]
            index = taken.get(caller, 0)
            if index < len(owned):  # a module hook's own path (an nn.ReLU) owns no weight: rule 2
                chosen[layer.name] = owned[index]
                taken[caller] = index + 1
                continue
        key = depth_key(module_path(layer.name))
        before = [n for n in keyed if _less(depth_key(module_path(n)), key)]
        if before:
            chosen[layer.name] = before[-1]
    return chosen


def _less(a: list[object], b: list[object]) -> bool:
    try:
        return a < b  # type: ignore[operator]
    except TypeError:
        return str(a) < str(b)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ordered(layers: Sequence[LayerMeasure]) -> tuple[list[LayerMeasure], str]:
    if layers and all(layer.order is not None for layer in layers):
        return sorted(layers, key=lambda layer: (layer.order, depth_key(layer.name))), "order attribute"
    return sorted(layers, key=lambda layer: depth_key(layer.name)), "name"


def _mark(rows: list[LayerRow], threshold: float) -> list[LayerRow]:
    """Mark where the signal fails, with the direction.

    Saturated: a bounded layer with more than half its inputs in the flat
    tails (the saturation criterion's limit). Dead: a ReLU layer with more
    than half its units dead. Collapse/explode: the first layer whose
    variance is ``threshold`` (the rule's ratio) times below the largest, or
    above the smallest, variance of the layers before it. A weight whose
    units are all identical marks its layer symmetric, which wins: it is
    the cause, the rest follows from it.
    """
    marked = []
    seen: list[float] = []
    collapse_or_explode_marked = False
    for row in rows:
        mark = ""
        variance = row.std * row.std if math.isfinite(row.std) else row.std
        if row.weight is not None and row.weight.symmetric:
            mark = SYMMETRIC
        elif row.saturated_share is not None and row.saturated_share > SATURATED_SHARE:
            mark = SATURATED
        elif row.kind == "softmax":
            pass  # a side branch: no part of the variance chain (see build)
        elif not collapse_or_explode_marked and seen and not math.isnan(variance):
            largest, smallest = max(seen), min(seen)
            if not math.isfinite(variance) or (smallest > 0 and variance > smallest * threshold):
                mark = EXPLODE
            elif largest > 0 and variance * threshold < largest:
                mark = COLLAPSE
            collapse_or_explode_marked = bool(mark)
        if not mark and row.dead_share is not None and row.dead_share > DEAD_SHARE:
            mark = DEAD
        if row.kind != "softmax" and not math.isnan(variance):
            seen.append(variance)
        marked.append(row if not mark else LayerRow(**{**row.__dict__, "mark": mark}))
    return marked


def symmetric_findings(rows: Sequence[LayerRow], weights: Mapping[str, WeightFigures]) -> list[str]:
    found = []
    shown: set[str] = set()
    for row in rows:
        w = row.weight
        if w is not None and w.symmetric and w.name not in shown:
            shown.add(w.name)
            found.append(f"symmetric: all {w.units} units of {w.module} are identical")
    for name, w in sorted(weights.items(), key=lambda item: depth_key(item[0])):
        if w.symmetric and name not in shown:
            shown.add(name)
            found.append(f"symmetric: all {w.units} units of {w.module} are identical")
    return found


def build(
    measure: StepMeasure | None,
    params: RuleParams,
    variances: Mapping[int, Mapping[str, float]] | None = None,
    saturation: Mapping[int, Mapping[str, float]] | None = None,
) -> Diagnosis:
    """Rows in forward order from the first step's measure; per-step series for plots."""
    per_step_var = tuple(
        (step, tuple(sorted(layers.items(), key=lambda item: depth_key(item[0]))))
        for step, layers in sorted((variances or {}).items())
    )
    per_step_sat = tuple(
        (step, tuple(sorted(layers.items(), key=lambda item: depth_key(item[0]))))
        for step, layers in sorted((saturation or {}).items())
    )
    if measure is None:
        return Diagnosis(None, "name", (), (), per_step_var, per_step_sat)
    layers, ordered_by = _ordered(measure.layers)
    # A softmax takes no weight of its caller in turn: the weights feed the activations of the chain.
    feeding = feeding_weights([layer for layer in layers if layer.kind != "softmax"], measure.weights,
                              measure.weight_attrs)
    rows: list[LayerRow] = []
    previous: float | None = None
    for layer in layers:
        f = layer.figures
        variance = f.moments.variance if f.moments.count else math.nan
        ratio = None
        # A softmax input (attention logits) is a side branch, not a step of the
        # signal's depth: it neither has nor sets an "x prev".
        in_chain = layer.kind != "softmax"
        if in_chain and previous is not None and not math.isnan(variance):
            ratio = math.inf if previous == 0 and variance > 0 else (math.nan if previous == 0 else variance / previous)
        notes = []
        after = layer.attrs.get("after")
        if isinstance(after, str) and after:
            notes.append(f"after {after}")
        if f.moments.nonfinite:
            notes.append(f"{f.moments.nonfinite} non-finite values")
        rows.append(LayerRow(
            name=layer.name,
            kind=layer.kind,
            std=f.std,
            variance_ratio=ratio,
            zero_share=f.zero_share,
            dead_share=f.dead_share if layer.kind in RELU_KINDS and f.units else None,
            saturated_share=f.saturated_share if (layer.kind or "") in BOUNDS or layer.kind == "softmax" else None,
            weight=measure.weights.get(feeding[layer.name]) if layer.name in feeding and in_chain else None,
            note="; ".join(notes),
            negative_slope=_float(layer.attrs.get("negative_slope")),
        ))
        if in_chain and not math.isnan(variance):
            previous = variance
    rows = _mark(rows, params.threshold)
    findings = symmetric_findings(rows, measure.weights)
    return Diagnosis(measure.step, ordered_by, tuple(rows), tuple(findings), per_step_var, per_step_sat)


DIRECTION_WORDS = {
    COLLAPSE: "collapses here",
    EXPLODE: "explodes here",
    SATURATED: "saturated",
    SYMMETRIC: "symmetric",
    DEAD: "dead units",
}


def describe_mark(row: LayerRow) -> str:
    return DIRECTION_WORDS.get(row.mark, row.mark)


# ---------------------------------------------------------------- remedies for the fired criteria


def _row(name: str | None, diagnosis: Diagnosis | None) -> LayerRow | None:
    if diagnosis is None or name is None:
        return None
    return next((row for row in diagnosis.rows if row.name == name), None)


def _evidence(direction: str | None, layer: str | None, diagnosis: Diagnosis | None,
              majority: str | None) -> Evidence:
    """The blamed layer's kind (else the trial's most common kind) and the weight feeding it."""
    # The row marked with the failure is where it shows first; else the blamed
    # layer; else, with no layer blamed, the first row.
    row = None
    if diagnosis is not None:
        row = next((r for r in diagnosis.rows if r.mark == direction and direction), None) or \
            _row(layer, diagnosis) or (None if layer else next(iter(diagnosis.rows), None))
    kind = row.kind if row is not None else (kind_from_name(layer) if layer else None)
    weight = row.weight.name if row is not None and row.weight is not None else None
    slope = row.negative_slope if row is not None else None
    return Evidence(kind or majority, direction, layer, weight, slope)


def with_remedies(
    results: Sequence[CriterionResult],
    diagnosis: Diagnosis | None,
    variances: Mapping[int, Mapping[str, float]],
    kinds: Sequence[str | None],
) -> list[CriterionResult]:
    """Each fired criterion with its remedy (poorinit/remedy.py), chosen from the trial's evidence.

    ``variances`` are the activation-variance check's per-step layer variances
    (free: the check measured them), ``kinds`` the activation kinds of every
    layer seen, ``diagnosis`` the per-layer view when it was asked for: a
    symmetric weight it found decides the direction over the variances.
    """
    fired = {c.check: c for c in results if c.fired}
    symmetric = diagnosis is not None and any(r.mark == SYMMETRIC for r in diagnosis.rows)
    majority = majority_kind(list(kinds))

    def variance_evidence() -> str:
        c = fired["activation_variance"]
        if symmetric:
            return SYMMETRIC
        layers = variances.get(c.step, {}) if c.step is not None else {}
        return variance_direction(layers) or COLLAPSE

    primary: str | None = None
    if "activation_variance" in fired:
        primary = variance_evidence()
    elif symmetric:
        primary = SYMMETRIC
    elif "saturation" in fired:
        primary = SATURATED
    elif diagnosis is not None and any(r.mark == DEAD for r in diagnosis.rows):
        primary = DEAD
    out = []
    for c in results:
        if not c.fired:
            out.append(c)
            continue
        if c.check == "activation_variance":
            text = remedy(c.check, _evidence(variance_evidence(), c.tensor, diagnosis, majority))
        elif c.check == "saturation":
            text = remedy(c.check, _evidence(SATURATED, c.tensor, diagnosis, majority))
        elif c.check == "gradient_spread":
            nonfinite = c.figure is not None and math.isnan(c.figure)
            direction = EXPLODE if nonfinite else (primary or COLLAPSE)
            text = remedy(c.check, _evidence(direction, None, diagnosis, majority))
        elif c.check == "loss_decrease":
            diverged = c.figure is not None and math.isinf(c.figure)
            text = remedy(c.check, _evidence(primary, None, diagnosis, majority), diverged=diverged)
        else:
            text = remedy(c.check, _evidence(primary, None, diagnosis, majority))
        out.append(replace(c, remedy=text) if text else c)
    return out

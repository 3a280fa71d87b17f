"""The pre-flight check: the rule and the diagnosis on a model's current initialisation.

``preflight(model, batch, loss_fn)`` runs one forward and one backward pass,
records them with the same capture code as :class:`~poorinit.torch.Recorder`
(module hooks and functional activations) into memory instead of a trial
directory, and judges that one step with the same checks and the same
diagnosis as ``poorinit analyze --explain``. A unit test can then assert that
a model starts well, in milliseconds, before any training:

    >>> verdict = preflight(model, (x, y), nn.CrossEntropyLoss())   # doctest: +SKIP
    >>> assert verdict.passed, summary(verdict)

Nothing of the model changes: no optimiser step is taken; the parameters'
values and gradients, the buffers (BatchNorm's running statistics), every
module's train/eval mode and the global random state are put back as they
were. The pass itself runs in train mode, as the first training step would.

With one step the loss criterion cannot judge a decrease (it needs
``patience + 1`` losses): it is "not applicable" and says so; the other
criteria judge the step as they would judge the first step of a trial.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import format as fmt
from ..analysis import Analysis
from ..params import RuleParams
from ..rule import Verdict
from ..trial import ArrayTensor
from .recorder import Recorder

__all__ = ["preflight", "summary"]

_STEP = 0
_SOURCE = "<preflight>"
_ATTRS = "attrs" in {f.name for f in fields(ArrayTensor)}


class _MemoryReader:
    """One in-memory step, read the way :class:`~poorinit.trial.StepReader` is."""

    def __init__(self, tensors: Mapping[str, tuple[np.ndarray, tuple[str, ...], Mapping[str, Any]]],
                 attrs: Mapping[str, Any]) -> None:
        self._tensors = tensors
        self.attrs = dict(attrs)

    def tensor_names(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(name, collections) for name, (_, collections, _) in self._tensors.items()]

    def tensor(self, name: str) -> ArrayTensor:
        values, _, attrs = self._tensors[name]
        if _ATTRS:
            return ArrayTensor(name, values, source=_SOURCE, attrs=dict(attrs))  # type: ignore[call-arg]
        return ArrayTensor(name, values, source=_SOURCE)

    def close(self) -> None:
        pass


class _MemoryWriter:
    """Takes what the recorder would write to a step file and keeps it in memory."""

    def __init__(self) -> None:
        self.steps: dict[int, _MemoryReader] = {}

    def write_step(
        self,
        step: int,
        *,
        activation_inputs: Mapping[str, Any] | None = None,
        gradients: Mapping[str, Any] | None = None,
        weights: Mapping[str, Any] | None = None,
        losses: Mapping[str, Any] | None = None,
        tensors: Mapping[str, tuple[Any, Sequence[str]]] | None = None,
        attrs: Mapping[str, Mapping[str, Any]] | None = None,
        root_attrs: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> str:
        entries: dict[str, tuple[np.ndarray, tuple[str, ...], Mapping[str, Any]]] = {}
        groups = {fmt.ACTIVATION_INPUTS: activation_inputs, fmt.GRADIENTS: gradients, fmt.WEIGHTS: weights,
                  fmt.LOSSES: losses}
        for collection, group in groups.items():
            for name, value in (group or {}).items():
                array = np.asarray(value, dtype=None if isinstance(value, np.ndarray) else np.float64)
                entries[name] = (array.reshape(1) if collection == fmt.LOSSES else array, (collection,), {})
        for name, (value, collections) in (tensors or {}).items():
            entries[name] = (np.asarray(value), tuple(collections), {})
        for name, values in (attrs or {}).items():
            if name in entries:
                array, collections = entries[name][:2]
                entries[name] = (array, collections, dict(values))
        self.steps[step] = _MemoryReader(entries, root_attrs or {})
        return _SOURCE

    def close(self) -> None:
        pass


class _MemoryTrial:
    """The one recorded step, as :class:`~poorinit.analysis.Analysis` reads a trial
    (the :class:`~poorinit.sources.TrialReader` interface): one worker, one mode."""

    format_name = "poorinit (in memory)"

    def __init__(self, writer: _MemoryWriter, name: str, mode: str) -> None:
        self._writer = writer
        self._mode = mode
        self.path = name

    @property
    def modes(self) -> tuple[str, ...]:
        return (self._mode,)

    @property
    def workers(self) -> tuple[int, ...]:
        return (0,)

    @property
    def finished(self) -> bool:
        return True

    def mode_workers(self, mode: str) -> tuple[int, ...]:
        return (0,) if mode == self._mode else ()

    def steps(self, mode: str = "train") -> list[int]:
        return sorted(self._writer.steps) if mode == self._mode else []

    def step_files(self, step: int, mode: str = "train") -> list[fmt.StepFile]:
        if mode != self._mode or step not in self._writer.steps:
            return []
        return [fmt.StepFile(step, mode, 0, Path(_SOURCE))]

    def open(self, step_file: fmt.StepFile) -> _MemoryReader:
        return self._writer.steps[step_file.step]


class _Saved:
    """What the pass may change, taken before it and put back after it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes = {module: module.training for module in model.modules()}
        self.grads = {p: p.grad for p in model.parameters()}
        self.values = {p: p.detach().clone() for p in model.parameters()}
        self.buffers = {b: b.detach().clone() for b in model.buffers()}
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self) -> None:
        with torch.no_grad():
            for p, value in self.values.items():
                if not torch.equal(p, value):  # nothing should have changed; a hook might have
                    p.copy_(value)
            for b, value in self.buffers.items():
                b.copy_(value)
        for p, grad in self.grads.items():
            p.grad = grad
        for module, training in self.modes.items():
            module.training = training
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


def _split(batch: Any) -> tuple[Any, Any, bool]:
    """``x`` or ``(x, y)``: the model's input, the loss's target, whether there is a target."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1], True
    return batch, None, False


def preflight(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable[..., torch.Tensor],
    *,
    name: str = "preflight",
    **params: Any,
) -> Verdict:
    """Judge ``model``'s current initialisation on one batch; nothing of the model changes.

    ``batch`` is the model's input ``x`` (then ``loss_fn(model(x))``) or a pair
    ``(x, y)`` (then ``loss_fn(model(x), y)``). ``params`` are the rule's
    parameters, as for :func:`poorinit.analyze` (``steps`` is 1: there is one
    pass). Returns the :class:`~poorinit.rule.Verdict`, with the per-layer
    diagnosis in ``verdict.diagnosis`` and a remedy on each fired criterion;
    ``verdict.passed`` is what a unit test asserts. Raises
    :class:`~poorinit.errors.NothingToAnalyseError` when no criterion could
    look (e.g. the model has no activation and no gradient).
    """
    rule_params = RuleParams.from_values(**{"steps": 1, **params})
    inputs, target, has_target = _split(batch)
    writer = _MemoryWriter()
    saved = _Saved(model)
    try:
        for parameter in model.parameters():
            parameter.grad = None  # the pass's gradients alone, not ones left from before
        model.train()
        # The recorder is made on a scratch directory that is deleted at once:
        # its writer is replaced by memory before any step, so nothing is written
        # (background=False: the step goes to that writer, not to a writer thread).
        with tempfile.TemporaryDirectory(prefix="poorinit-preflight-") as scratch:
            recorder = Recorder(model, scratch, steps=1, background=False)
        recorder.writer = writer  # type: ignore[assignment]
        with recorder.step():
            output = model(inputs)
            loss = loss_fn(output, target) if has_target else loss_fn(output)
            loss.backward()
            recorder.loss(loss)
    finally:
        saved.restore()
    analysis = Analysis(_MemoryTrial(writer, name, rule_params.mode), rule_params, explain=True)  # type: ignore[arg-type]
    analysis.add_step(_STEP)
    return analysis.verdict()


def summary(verdict: Verdict) -> str:
    """The criteria with reasons and remedies, and the marked layers: an assert message for a unit test."""
    lines = [f"preflight {verdict.status}: {verdict.trial}"]
    for c in verdict.criteria:
        lines.append(f"- {c.title}: {c.status.value}: {c.reason}")
        if c.remedy:
            lines.append(f"  remedy: {c.remedy}")
    if verdict.diagnosis is not None:
        lines += [f"- {row.name}: {row.mark}" for row in verdict.diagnosis.marked]
        lines += [f"- {finding}" for finding in verdict.diagnosis.findings]
    return "\n".join(lines)

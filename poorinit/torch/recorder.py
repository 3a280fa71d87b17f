"""The recorder: opens recorded steps, gathers tensors, writes step files.

The rule reads the first steps of training only, so the recorder is built to
cost nothing afterwards: hooks exist only while a recorded step is open, and
a step that is not recorded is a counter increment. See docs/recording.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import format as fmt
from ..errors import PoorinitError
from ..writer import TrialWriter
from .modules import activation_kind

__all__ = ["Recorder", "RecordingError"]

# h5py stores these as they are; any other floating dtype (bfloat16, float8)
# is widened to float32, which holds all of their values exactly.
_STORABLE = (torch.float16, torch.float32, torch.float64)


class RecordingError(PoorinitError):
    """The training loop did not give the recorder what a step needs."""


def _host_copy(tensor: torch.Tensor, what: str, stride: int | None = None) -> torch.Tensor:
    """A contiguous CPU copy in a dtype the format stores (every ``stride``-th value, flattened).

    Always a copy: an in-place activation overwrites its input right after the
    hook, and the optimiser updates weights in place.
    """
    tensor = tensor.detach()
    if tensor.layout != torch.strided:  # sparse gradients (nn.Embedding(sparse=True))
        tensor = tensor.to_dense()
    if not tensor.is_floating_point():
        raise RecordingError(f"{what} has dtype {tensor.dtype}; only floating-point tensors can be recorded")
    if stride is not None:
        tensor = tensor.reshape(-1)[::stride]
    dtype = tensor.dtype if tensor.dtype in _STORABLE else torch.float32
    return tensor.to(device="cpu", dtype=dtype, copy=True, memory_format=torch.contiguous_format)


def _step_numbers(steps: int | Iterable[int]) -> frozenset[int]:
    numbers = range(steps) if isinstance(steps, int) else steps
    chosen = frozenset(numbers)
    if any(not isinstance(n, int) or n < 0 for n in chosen):
        raise ValueError(f"steps must be a count or step numbers >= 0, not {steps!r}")
    return chosen


class _Step:
    """What one recorded step gathers before it is written."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.activations: dict[str, list[torch.Tensor]] = {}
        self.weights: dict[str, torch.Tensor] = {}
        self.losses: dict[str, float] = {}


class Recorder:
    """Records the tensors the PoorWeightInitialization rule reads.

    >>> with Recorder(model, "runs/trial") as rec:           # doctest: +SKIP
    ...     for x, y in batches:
    ...         with rec.step():
    ...             loss = loss_fn(model(x), y)
    ...             opt.zero_grad(); loss.backward()
    ...             rec.loss(loss)
    ...             opt.step()

    For each recorded step (``steps``: a count N for steps 0..N-1, or step
    numbers) it writes the input of every activation module, every parameter's
    value as the step's forward saw it and its gradient after backward, and the
    loss. ``activation_rows`` keeps only the first rows (samples) of each
    activation input and ``parameter_stride`` every k-th value of each weight
    and gradient, for small trials; the rule's figures then become estimates.
    """

    def __init__(
        self,
        model: nn.Module,
        path: str | os.PathLike[str],
        *,
        steps: int | Iterable[int] = 10,
        mode: str = "train",
        worker: int = 0,
        activation_rows: int | None = None,
        parameter_stride: int = 1,
    ) -> None:
        if activation_rows is not None and activation_rows < 1:
            raise ValueError(f"activation_rows must be >= 1 or None, not {activation_rows}")
        if parameter_stride < 1:
            raise ValueError(f"parameter_stride must be >= 1, not {parameter_stride}")
        self.model = model
        self.steps = _step_numbers(steps)
        self.activation_rows = activation_rows
        self.parameter_stride = parameter_stride
        existing = Path(path)
        if existing.is_dir() and any(fmt.parse_step_file_name(p) for p in existing.iterdir()):
            raise FileExistsError(
                f"{existing} already holds step files; delete it or record into another directory, "
                "so that two runs are never mixed in one trial"
            )
        self.writer = TrialWriter(path, mode=mode, worker=worker)
        self._next = 0
        self._open = False
        self._current: _Step | None = None
        self._written: set[int] = set()

    @property
    def recording(self) -> bool:
        """Whether a recorded step is open (to skip extra work on other steps)."""
        return self._current is not None

    @contextmanager
    def step(self, number: int | None = None) -> Iterator[None]:
        """One training step: forward, backward, ``rec.loss``, optimiser step.

        Steps count from 0, or from the last ``number`` given plus one. On a
        step that is not recorded this does nothing else. A recorded step is
        written when the block ends normally; an exception discards it.
        """
        if self._open:
            raise RecordingError("rec.step() blocks cannot be nested")
        number = self._next if number is None else number
        if number < 0:
            raise ValueError(f"step numbers are >= 0, not {number}")
        self._next = number + 1
        if number not in self.steps:
            self._open = True
            try:
                yield
            finally:
                self._open = False
            return
        if number in self._written:
            raise RecordingError(f"step {number} was already recorded; step numbers must not repeat")
        current = _Step(number)
        current.weights = {
            name: self._parameter_copy(param, f"parameter {name!r}") for name, param in self.model.named_parameters()
        }
        # Looked up at each recorded step, so modules added after the recorder was made count.
        handles = [
            module.register_forward_pre_hook(self._hook(name, kind), with_kwargs=True)
            for name, module in self.model.named_modules()
            if (kind := activation_kind(module)) is not None
        ]
        self._open, self._current = True, current
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._open, self._current = False, None
        self._write(current)

    def loss(self, value: torch.Tensor | float, name: str = "loss") -> None:
        """Record the step's loss (a one-element tensor or a number)."""
        current = self._require_step("rec.loss()")
        if current is None:
            return
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise RecordingError(f"loss {name!r} must hold one value, not shape {tuple(value.shape)}")
            value = value.detach().float().item()
        current.losses[name] = float(value)

    def activation_input(self, path: str, tensor: torch.Tensor, kind: str = "relu") -> None:
        """Record the input of a functional activation, e.g. before ``F.relu(x)``.

        Saved as ``<path>.<kind>_input``, the name a module at ``path`` gets,
        so ``rec.activation_input("block1.act", x)`` reads like an ``nn.ReLU``
        registered as ``block1.act``.
        """
        current = self._require_step("rec.activation_input()")
        if current is not None:
            self._add_activation(current, f"{path}.{kind}_input" if path else f"{kind}_input", tensor)

    def close(self) -> None:
        """Mark this worker's part of the trial finished (the ``FINISHED_<worker>`` file)."""
        if self._open:
            raise RecordingError("close() inside a rec.step() block")
        self.writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A crashed run stays unfinished, so no reader mistakes it for a whole one.
        if exc_type is None:
            self.close()

    def _require_step(self, call: str) -> _Step | None:
        if not self._open:
            raise RecordingError(f"{call} must be called inside a rec.step() block")
        return self._current

    def _hook(self, name: str, kind: str) -> Any:
        tensor_name = f"{name}.{kind}_input" if name else f"{kind}_input"

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self._current is not None:
                value = args[0] if args else next(iter(kwargs.values()))
                self._add_activation(self._current, tensor_name, value)

        return hook

    def _add_activation(self, current: _Step, name: str, tensor: torch.Tensor) -> None:
        if self.activation_rows is not None and tensor.dim() > 0:
            tensor = tensor[: self.activation_rows]
        current.activations.setdefault(name, []).append(_host_copy(tensor, f"activation input {name!r}"))

    def _parameter_copy(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        # Shapes are kept unless values are dropped, when only a flat sample makes sense.
        return _host_copy(tensor, what, self.parameter_stride if self.parameter_stride > 1 else None)

    def _write(self, current: _Step) -> None:
        step = current.number
        if not current.losses:
            raise RecordingError(f"step {step}: no loss was recorded; call rec.loss(loss) inside rec.step()")
        gradients = {
            f"gradient/{name}": self._parameter_copy(param.grad, f"gradient of {name!r}").numpy()
            for name, param in self.model.named_parameters()
            if param.grad is not None
        }
        if not gradients:
            raise RecordingError(
                f"step {step}: no parameter has a gradient; call loss.backward() inside rec.step(), "
                "and zero the gradients before backward, not after"
            )
        self.writer.write_step(
            step,
            activation_inputs=_activation_arrays(current.activations),
            gradients=gradients,
            weights={name: tensor.numpy() for name, tensor in current.weights.items()},
            losses=current.losses,
        )
        self._written.add(step)


def _activation_arrays(calls: dict[str, list[torch.Tensor]]) -> dict[str, np.ndarray]:
    """One tensor per call: a module called k > 1 times in a step gets the
    names ``<path>.call0.<kind>_input`` ... ``call<k-1>``.

    Calls are kept apart, not concatenated, because a module reused at several
    depths (``self.act`` after every layer) is several layers to the rule.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, tensors in calls.items():
        if len(tensors) == 1:
            arrays[name] = tensors[0].numpy()
            continue
        path, _, leaf = name.rpartition(".")
        for index, tensor in enumerate(tensors):
            arrays[f"{path}.call{index}.{leaf}" if path else f"call{index}.{leaf}"] = tensor.numpy()
    return arrays

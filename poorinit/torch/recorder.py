"""The recorder: opens recorded steps, gathers tensors, writes step files.

The rule reads the first steps of training only, so the recorder is built to
cost nothing afterwards: hooks exist only while a recorded step is open, and
a step that is not recorded is a counter increment. See docs/recording.md.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import format as fmt
from ..errors import PoorinitError
from ..writer import TrialWriter
from .attention import DeferredLogits
from .background import BackgroundWriter
from .functional import FunctionalCapture, negative_slope
from .modules import ModuleTracker, activation_kind, activation_slope

__all__ = ["Recorder", "RecordingError", "RecordingWarning"]

# h5py stores these as they are; any other floating dtype (bfloat16, float8)
# is widened to float32, which holds all of their values exactly.
_STORABLE = (torch.float16, torch.float32, torch.float64)


class RecordingError(PoorinitError):
    """The training loop did not give the recorder what a step needs."""


class RecordingWarning(UserWarning):
    """The trial is written, but the rule will see less than the model has (e.g. no activation input)."""


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


def _host_copies(tensors: list[tuple[str, torch.Tensor]], what: str) -> list[tuple[str, np.ndarray]]:
    """Host copies of many tensors (a step's gradients), as _host_copy makes them, but one copy per
    device and dtype: one kernel instead of one call per tensor (a transformer has dozens of small
    ones), and on a GPU one transfer and one synchronisation. Each array is a view of its group's."""
    groups: dict[tuple[torch.device, torch.dtype], list[tuple[str, torch.Tensor]]] = {}
    copies: dict[str, np.ndarray] = {}
    for name, tensor in tensors:
        tensor = tensor.detach()
        if tensor.layout != torch.strided or not tensor.is_floating_point():  # sparse, or refused
            copies[name] = _host_copy(tensor, f"{what} {name!r}").numpy()
        else:
            groups.setdefault((tensor.device, tensor.dtype), []).append((name, tensor))
    for members in groups.values():
        if len(members) == 1:
            (name, tensor), = members
            copies[name] = _host_copy(tensor, f"{what} {name!r}").numpy()
            continue
        flat = torch.cat([tensor.reshape(-1) for _, tensor in members])  # a new tensor: the copy
        if flat.device.type != "cpu" or flat.dtype not in _STORABLE:
            flat = flat.to(device="cpu", dtype=flat.dtype if flat.dtype in _STORABLE else torch.float32)
        values, offset = flat.numpy(), 0
        for name, tensor in members:
            count = tensor.numel()
            copies[name] = values[offset : offset + count].reshape(tensor.shape)
            offset += count
    return [(name, copies[name]) for name, _ in tensors]


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The model's output tensor, or the first of a tuple, list or mapping (a Hugging Face output)."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return next((value for value in values if isinstance(value, torch.Tensor)), None)


def _named_parameters(modules: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Parameter]]:
    """``model.named_parameters()`` from the model's ``named_modules()``, walked once already."""
    seen: set[int] = set()
    found = []
    for prefix, module in modules:
        for name, param in module._parameters.items():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                found.append((f"{prefix}.{name}" if prefix else name, param))
    return found


def _step_numbers(steps: int | Iterable[int]) -> frozenset[int]:
    numbers = range(steps) if isinstance(steps, int) else steps
    chosen = frozenset(numbers)
    if any(not isinstance(n, int) or n < 0 for n in chosen):
        raise ValueError(f"steps must be a count or step numbers >= 0, not {steps!r}")
    return chosen



class _Later:
    """Attention logits the writer thread forms (attention.DeferredLogits), as the array it writes."""

    def __init__(self, logits: DeferredLogits, rows: int | None, what: str) -> None:
        self.logits, self.rows, self.what = logits, rows, what

    def __call__(self) -> np.ndarray | None:
        tensor = self.logits(self.rows)
        return None if tensor is None else _host_copy(tensor, self.what).numpy()


def _formed(groups: dict[str, Any]) -> dict[str, Any]:
    """``groups`` with the activation inputs left to this thread formed: attention logits
    (_Later) are computed here, off the training thread; one that cannot be
    formed is left out, with its attributes, and said (never silently: the rule then
    judges that layer's softmax by nothing)."""
    inputs = groups.get("activation_inputs") or {}
    if not any(callable(value) for value in inputs.values()):
        return groups
    arrays, attrs = {}, dict(groups.get("attrs") or {})
    for name, value in inputs.items():
        if callable(value):
            value = value()
            if value is None:
                attrs.pop(name, None)
                warnings.warn(f"{name}: the attention logits could not be formed, so the step file leaves them "
                              "out and the rule cannot judge that softmax", RecordingWarning, stacklevel=2)  # fmt: skip
                continue
        arrays[name] = value
    return {**groups, "activation_inputs": arrays, "attrs": attrs}


@dataclass
class _Captured:
    """One activation input of a step, with what the recorder knows about it."""

    tensor: torch.Tensor | _Later
    attrs: dict[str, Any]


@dataclass
class _Step:
    """What one recorded step gathers before it is written."""

    number: int
    # Base name -> one capture per call, in call order (several for a reused module).
    activations: dict[str, list[_Captured]] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    class_counts: set[int] = field(default_factory=set)
    calls: int = 0  # activation inputs so far: the next one's ``order``
    parameters: list[tuple[str, nn.Parameter]] = field(default_factory=list)  # as named_parameters() gives them
    # Tensors recorded by hand with rec.activation_input, so that the
    # functional call that follows does not record them a second time.
    by_hand: dict[int, weakref.ref[torch.Tensor]] = field(default_factory=dict)


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
    numbers) it writes the input of every activation (modules through hooks,
    functions such as ``F.relu`` through a ``TorchFunctionMode``), every
    parameter's gradient after backward, and the loss; each parameter's
    value once, at the first recorded step, as that step's forward saw it.
    Files are written on background threads (``background=False`` writes
    each in its step), optionally compressed
    (``compression="gzip"`` or ``"lzf"``). ``activation_rows`` keeps only the first rows
    (samples) of each activation input and ``parameter_stride`` every k-th
    value of each weight and gradient, for small trials; the rule's figures
    then become estimates. ``num_classes`` states K for the initial-loss
    criterion when the recorder cannot see it (see docs/recording.md).
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
        num_classes: int | None = None,
        compression: str | None = None,
        background: bool = True,
    ) -> None:
        if activation_rows is not None and activation_rows < 1:
            raise ValueError(f"activation_rows must be >= 1 or None, not {activation_rows}")
        if parameter_stride < 1:
            raise ValueError(f"parameter_stride must be >= 1, not {parameter_stride}")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
        ):
            raise ValueError(f"num_classes must be an integer >= 2 or None, not {num_classes!r}")
        self.model = model
        self.steps = _step_numbers(steps)
        self.activation_rows = activation_rows
        self.parameter_stride = parameter_stride
        self.num_classes = num_classes
        existing = Path(path)
        # This worker's files only: under data-parallel training every rank
        # records into the same directory, and a fast rank may have written
        # its first step before a slow one gets here.
        written = map(fmt.parse_step_file_name, existing.iterdir()) if existing.is_dir() else iter(())
        if any(parsed is not None and parsed.worker == worker for parsed in written):
            raise FileExistsError(
                f"{existing} already holds step files of worker {worker}; delete it or record into another "
                "directory, so that two runs are never mixed in one trial"
            )
        # No flush to disk (fsync) per file: the rename still shows a reader
        # complete files only, a crash's damage is caught by the checksums on
        # reading, and each flush cost a small model's training loop about a
        # step, though on another thread (docs/recording.md, Durability).
        self.writer = TrialWriter(path, mode=mode, worker=worker, compression=compression, fsync=False)
        # On by default: the file (encoding, checksums, attention logits) is
        # written on a thread, so a recorded step costs the loop its copies only.
        self._background = BackgroundWriter(self.writer, prepare=_formed) if background else None
        self._next = 0
        self._open = False
        self._current: _Step | None = None
        self._written: set[int] = set()
        self._incomplete = False  # a background write failed: close() must not mark the trial finished
        self._weights_written: set[str] = set()  # parameter names whose values are in a step file
        self._tracker: ModuleTracker | None = None
        self._tracker_made = False  # by this step's _begin: its hooks did not run in a forward already under way
        self._handles: list[Any] = []
        self._hooked: list[tuple[str, int]] = []  # the modules hooked: (path, id)
        self._capture: FunctionalCapture | None = None
        self._mode_entered = False
        self._warned: set[str] = set()
        # Set by the hook: there a step spans the whole loop between two
        # optimiser steps, and a forward under no_grad (validation) is no part of it.
        self._grad_only = False
        self._mode_per_forward = False
        self._mode_paused = False  # rec.loss() left the mode; a forward of the model enters it again
        self._paused_under = 0  # the mode stack's depth when it did
        self._loss_seen = False  # a recorded step was written: its class count holds for the steps after it
        self._class_counts: set[int] = set()  # ... which are these
        self._in_forward = 0  # forwards of the model under way, while hooks are on it

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
        self._begin(number)
        try:
            yield
        except BaseException:
            self._end(write=False)
            raise
        self._end(write=True)

    def loss(self, value: torch.Tensor | float, name: str = "loss") -> None:
        """Record the step's loss (a one-element tensor or a number)."""
        current = self._require_step("rec.loss()")
        if current is None:
            return
        self._pause_capture()
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise RecordingError(f"loss {name!r} must hold one value, not shape {tuple(value.shape)}")
            value = value.detach().float().item()
        current.losses[name] = float(value)

    def activation_input(self, path: str, tensor: torch.Tensor, kind: str = "relu") -> None:
        """Record the input of an activation by hand, e.g. before a custom activation.

        Saved as ``<path>.<kind>_input``, the name a module at ``path`` gets,
        so ``rec.activation_input("block1.act", x)`` reads like an ``nn.ReLU``
        registered as ``block1.act``. A function the recorder knows (``F.relu``)
        then called on this very tensor is not recorded a second time.
        """
        current = self._require_step("rec.activation_input()")
        if current is not None:
            current.by_hand[id(tensor)] = weakref.ref(tensor)
            self._add_activation(current, path, kind, tensor, {})

    def flush(self) -> None:
        """Wait until every recorded step is on disk; raise what failed on the writer thread."""
        self._drain(restart=True)

    def _drain(self, *, restart: bool) -> None:
        if self._background is not None:
            background, self._background = self._background, None
            try:
                background.join()
            finally:
                self._incomplete = self._incomplete or background.broken
                if restart:
                    self._background = BackgroundWriter(self.writer, prepare=_formed)

    def close(self) -> None:
        """Write what is queued, then mark this worker's part of the trial finished (``FINISHED_<worker>``)."""
        if self._open:
            raise RecordingError("close() inside a rec.step() block")
        self._unhook()
        self._drain(restart=False)
        if self._incomplete:
            # The error was raised already (at a step, or by the drain above);
            # a trial with a step missing must not look complete to --follow.
            raise RecordingError(
                f"{self.writer.path}: a recorded step could not be written, so the trial is incomplete "
                "and is not marked finished"
            )
        self.writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A crashed run stays unfinished, so no reader mistakes it for a whole one;
        # the steps recorded before the crash are still written.
        if exc_type is None:
            self.close()
        else:
            self._unhook()
            with suppress(Exception):  # the training loop's exception is the one to see
                self._drain(restart=False)

    # -- opening and closing a step (rec.step() and the hook both use these) --

    def _begin(self, number: int | None) -> None:
        if self._open:
            raise RecordingError("rec.step() blocks cannot be nested")
        number = self._next if number is None else number
        if number < 0:
            raise ValueError(f"step numbers are >= 0, not {number}")
        self._next = number + 1
        if number not in self.steps:
            self._unhook()  # a step not recorded runs as without the recorder
            self._open = True
            return
        if number in self._written:
            raise RecordingError(f"step {number} was already recorded; step numbers must not repeat")
        current = _Step(number)
        modules = list(self.model.named_modules())  # walked once per recorded step
        current.parameters = _named_parameters(modules)
        # Each parameter's values are written once, at the first recorded step
        # where it has values: only --explain reads weights, at the first
        # analysed step, and copying and writing every weight at every step
        # cost more than the rest of the step file (docs/recording.md, Overhead).
        current.weights = {
            name: self._parameter_copy(param, f"parameter {name!r}")
            for name, param in current.parameters
            # A lazy module's parameter has no values before its first forward.
            if name not in self._weights_written and not isinstance(param, nn.parameter.UninitializedParameter)
        }
        # Hooks are made at a recorded step, so modules added after the
        # recorder was made count, and kept while the next step is recorded
        # too and the model has the same modules (making them cost 0.07-0.18
        # ms a step, docs/performance.md): the model is walked at each
        # recorded step, and a new or replaced module means new hooks. They are
        # removed at the first step not recorded, after the last recorded one
        # and at close(), so that steps after the recording run exactly as
        # without the recorder.
        layout = [(name, id(module)) for name, module in modules]
        self._tracker_made = self._tracker is None or layout != self._hooked
        if self._tracker_made:
            self._unhook()
            self._hooked = layout
            self._tracker = ModuleTracker(modules)
            self._handles = [
                module.register_forward_pre_hook(self._module_hook(name, kind), with_kwargs=True)
                for name, module in modules
                if (kind := activation_kind(module)) is not None
            ]
            self._handles.append(self.model.register_forward_pre_hook(self._before_forward))
            self._handles.append(self.model.register_forward_hook(self._after_forward, always_call=True))
        assert self._tracker is not None
        self._tracker.active = True
        self._capture = FunctionalCapture(self._on_function, current.class_counts.add)
        # rec.step() holds the mode from the block's start until rec.loss(), so
        # that a loss computed outside the model is seen too (see "the function
        # mode's span" below), at its first recorded step; at later ones, the
        # model's forwards only. The hook enters it around each forward
        # of the model always, because its step boundaries are callbacks that
        # may run on another thread (the end of a backward pass).
        self._mode_paused = self._loss_seen and not self._mode_per_forward
        self._mode_entered = not self._mode_per_forward and not self._mode_paused
        if self._mode_entered:
            self._capture.__enter__()
        self._warn_about_fused_kernels(modules)
        self._open, self._current = True, current

    def _end(self, *, write: bool) -> None:
        current = self._current
        self._open, self._current = False, None
        if current is None:
            return
        try:
            if self._capture is not None and self._mode_entered:
                self._capture.__exit__(None, None, None)
        finally:
            self._mode_entered = self._mode_paused = False
            self._capture = None
            if self._tracker is not None:
                self._tracker.active = False
            if self._background is not None:
                self._background.idle.set()
            if self._next not in self.steps:
                self._unhook()
        if write:
            self._write(current)

    def _unhook(self) -> None:
        """Remove every hook the recorder made on the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._tracker is not None:
            self._tracker.remove()
            self._tracker = None
        self._hooked = []
        self._in_forward = 0
        if self._background is not None:
            self._background.idle.set()

    # -- the function mode's span --
    #
    # rec.step() holds the mode from the step's start, so that a loss computed
    # outside the model is seen (its class count is K), but not past rec.loss():
    # there the loss is known, and every torch call after it (the optimiser's
    # step reads each parameter's .grad through the mode: 45 of an MLP step's 91
    # intercepted calls, 145 of a transformer's 258) would pay the mode's cost for
    # nothing, since functions outside the model's forward record nothing. A
    # forward of the model after rec.loss() (gradient accumulation) enters it again.

    # The loss is looked for at the first recorded step only: the same loop
    # computes the same loss at every step, and its class count is written in
    # every step file. After it, the mode spans each forward of the model (the
    # model's pre-hook enters it, its forward hook leaves it), and the loss, the
    # zeroing of the gradients and the backward pass run outside it.

    # The background writer waits from the start of a forward of the model
    # until the backward pass reaches the model's output (or the step ends; at
    # most BackgroundWriter's FORWARD_WAIT), so that its Python work, which
    # needs the GIL, falls in the backward pass, which runs without it: a
    # small model's forward, its loss and the zeroing of the gradients are
    # mostly Python too, and they took turns on the GIL with the writer.

    def _before_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._in_forward += 1
        if self._in_forward > 1:
            return  # the model calling itself: the outermost forward decides
        if self._background is not None:
            self._background.idle.clear()
        if not self._mode_per_forward:
            self._resume_capture(module, args)

    def _after_forward(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._in_forward = max(0, self._in_forward - 1)
        if self._in_forward > 0:
            return
        if self._background is not None:
            first = _first_tensor(output)
            if first is not None and first.requires_grad and torch.is_grad_enabled():
                first.register_hook(self._backward_reached)
            else:
                self._background.idle.set()
        if self._loss_seen and not self._mode_per_forward:
            self._pause_capture()  # after the first recorded step, the mode spans the forwards only

    def _backward_reached(self, grad: torch.Tensor) -> None:
        if self._background is not None and self._in_forward == 0:
            self._background.idle.set()

    def _pause_capture(self) -> None:
        capture = self._capture
        if capture is None or not self._mode_entered:
            return
        # Only when the mode is the innermost one: popping it from under a mode
        # the training loop entered since would pop the loop's instead.
        if _innermost_function_mode() is capture:
            capture.__exit__(None, None, None)
            self._mode_entered, self._mode_paused = False, True
            self._paused_under = _function_mode_depth()

    def _resume_capture(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        capture = self._capture
        if capture is None or not self._mode_paused:
            return
        if not self._loss_seen and _function_mode_depth() != self._paused_under:
            # The loop entered a mode of its own since rec.loss(): ours pushed
            # above it would be popped by that mode's exit. (After the first
            # step ours is left at the end of this very forward, so it nests.)
            self._warn_once(
                "mode-resume",
                "a forward of the model after rec.loss() ran inside a TorchFunctionMode entered after "
                "rec.loss(), so the recorder could not see its functional activations (F.relu and the "
                "like); call rec.loss() last in the step, after every forward (see docs/recording.md)",
            )
            return
        capture.__enter__()
        self._mode_entered, self._mode_paused = True, False

    def _require_step(self, call: str) -> _Step | None:
        if not self._open:
            raise RecordingError(f"{call} must be called inside a rec.step() block")
        return self._current

    # -- gathering --

    def _module_hook(self, name: str, kind: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            current = self._current
            if current is not None:
                value = args[0] if args else next(iter(kwargs.values()))
                slope = activation_slope(module)
                self._add_activation(current, name, kind, value, {} if slope is None else {"negative_slope": slope})

        return hook

    def _on_function(
        self, kind: str, value: torch.Tensor | DeferredLogits, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        current, tracker = self._current, self._tracker
        if current is None or tracker is None:
            return
        running = tracker.current
        # Outside the model's forward (the loss, the backward pass, an
        # accuracy probe of another model) a function is no layer of it; and
        # inside an activation module its hook has recorded the input already.
        if running is None or activation_kind(running[1]) is not None:
            return
        marked = current.by_hand.get(id(value))
        if marked is not None and marked() is value:
            return
        extra = {"negative_slope": negative_slope(args, kwargs)} if kind == "leaky_relu" else {}
        self._add_activation(current, running[0], kind, value, extra)

    def _add_activation(
        self, current: _Step, path: str, kind: str, tensor: torch.Tensor | DeferredLogits, extra: dict[str, Any]
    ) -> None:
        if self._grad_only and not torch.is_grad_enabled():
            return
        name = f"{path}.{kind}_input" if path else f"{kind}_input"
        attrs: dict[str, Any] = {"activation": kind, "order": current.calls, "module": path}
        deferred = isinstance(tensor, DeferredLogits)
        after = self._tracker.producer(tensor) if self._tracker is not None and not deferred else None
        if after is not None:
            attrs["after"] = after
        attrs.update(extra)
        current.calls += 1
        what = f"activation input {name!r}"
        copy: torch.Tensor | _Later
        if isinstance(tensor, DeferredLogits):
            copy = _Later(tensor, self.activation_rows, what)
        else:
            if self.activation_rows is not None and tensor.dim() > 0:
                tensor = tensor[: self.activation_rows]
            copy = _host_copy(tensor, what)
        current.activations.setdefault(name, []).append(_Captured(copy, attrs))

    def _parameter_copy(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        # Shapes are kept unless values are dropped, when only a flat sample makes sense.
        return _host_copy(tensor, what, self.parameter_stride if self.parameter_stride > 1 else None)

    # -- warnings --

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RecordingWarning, stacklevel=4)

    def _warn_about_fused_kernels(self, modules: list[tuple[str, nn.Module]]) -> None:
        if "fused" in self._warned:
            return
        fused = [f"{name} ({type(module).__name__})" for name, module in modules if isinstance(module, nn.RNNBase)]
        if fused:
            self._warn_once(
                "fused",
                f"the gates of {', '.join(fused[:3])}{' and others' if len(fused) > 3 else ''} run inside "
                "PyTorch's fused recurrent kernel, so their inputs are not recorded: the rule judges "
                "these layers by their gradients only (see docs/recording.md)",
            )

    # -- writing --

    def _write(self, current: _Step) -> None:
        step = current.number
        if not current.losses:
            raise RecordingError(f"step {step}: no loss was recorded; call rec.loss(loss) inside rec.step()")
        owners = _parameter_owners(self.model) if current.weights else {}
        with_gradients = [(name, param.grad) for name, param in current.parameters if param.grad is not None]
        if self.parameter_stride > 1:
            gradients = {
                f"gradient/{name}": self._parameter_copy(grad, f"gradient of {name!r}").numpy()
                for name, grad in with_gradients
            }
        else:
            gradients = {f"gradient/{name}": copy for name, copy in _host_copies(with_gradients, "gradient of")}
        if not gradients:
            raise RecordingError(
                f"step {step}: no parameter has a gradient; call loss.backward() inside rec.step(), "
                "and zero the gradients before backward, not after"
            )
        activations, activation_attrs = _activation_arrays(current.activations)
        attrs: dict[str, dict[str, Any]] = dict(activation_attrs)
        # A parameter's owner is written with its values, once: at later steps
        # the gradient's own copy of it would say nothing new.
        for name in current.weights:
            if name in owners:
                attrs[name] = {"module": owners[name]}
                if f"gradient/{name}" in gradients:
                    attrs[f"gradient/{name}"] = {"module": owners[name]}
        root: dict[str, Any] = {}
        counts = current.class_counts or self._class_counts
        if not self._loss_seen:
            self._loss_seen, self._class_counts = True, set(counts)
        classes = self.num_classes
        if classes is None and len(counts) == 1:
            (classes,) = counts
        if classes is not None and classes >= 2:
            root["num_classes"] = classes
        workers = _world_size()
        if workers is not None:
            root["workers"] = workers
        groups = {
            "activation_inputs": activations,
            "gradients": gradients,
            "weights": {name: tensor.numpy() for name, tensor in current.weights.items()},
            "losses": current.losses,
            "attrs": attrs,
            "root_attrs": root,
        }
        if self._background is not None:
            self._background.write_step(step, **groups)  # the logits are formed on its thread
        else:
            self.writer.write_step(step, **_formed(groups))
        self._written.add(step)
        self._weights_written.update(current.weights)
        if not activations:
            self._warn_once(
                "no-activations",
                f"step {step}: no activation input was recorded: the model ran no activation module or "
                "function the recorder knows inside the step, so the rule cannot judge the activations "
                "(see docs/recording.md, 'Functional activations')",
            )


def _innermost_function_mode() -> Any:
    from torch.overrides import _get_current_function_mode

    return _get_current_function_mode()


def _function_mode_depth() -> int:
    from torch.overrides import _len_torch_function_stack

    return int(_len_torch_function_stack())


def _world_size() -> int | None:
    """The number of data-parallel workers when torch.distributed runs, else None.

    Written as the trial's ``workers`` attribute (docs/format.md), so that a
    worker that has written nothing yet is known to exist: ``analyze`` says
    the verdict rests on part of the data, and ``--follow`` waits for it.
    """
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return int(distributed.get_world_size())
    return None


def _parameter_owners(model: nn.Module) -> dict[str, str]:
    """Parameter name (as named_parameters gives it) -> class name of the module that owns it."""
    owners: dict[str, str] = {}
    for path, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            owners.setdefault(f"{path}.{name}" if path else name, type(module).__name__)
    return owners


def _array(captured: _Captured) -> np.ndarray | _Later:
    tensor = captured.tensor
    return tensor if isinstance(tensor, _Later) else tensor.numpy()


def _activation_arrays(
    calls: dict[str, list[_Captured]],
) -> tuple[dict[str, np.ndarray | _Later], dict[str, dict[str, Any]]]:
    """One tensor per call, with its attributes: a module (or a module's
    functional activation of one kind) called k > 1 times in a step gets the
    names ``<path>.call0.<kind>_input`` ... ``call<k-1>``.

    Calls are kept apart, not concatenated, because a module reused at several
    depths (``self.act`` after every layer) is several layers to the rule.
    """
    arrays: dict[str, np.ndarray | _Later] = {}
    attrs: dict[str, dict[str, Any]] = {}
    for name, captured in calls.items():
        if len(captured) == 1:
            arrays[name], attrs[name] = _array(captured[0]), captured[0].attrs
            continue
        path, _, leaf = name.rpartition(".")
        for index, capture in enumerate(captured):
            numbered = f"{path}.call{index}.{leaf}" if path else f"call{index}.{leaf}"
            arrays[numbered], attrs[numbered] = _array(capture), capture.attrs
    return arrays, attrs

"""Recording without changing the training loop: ``poorinit.torch.hook(model, path)``.

SageMaker Debugger users register a hook in two lines and leave the loop as
it is; this is the same for poorinit. Steps are told apart by the optimiser
(its step pre-hook closes a step, its post-hook opens the next) or by backward
passes (the end of each backward closes a step); the loss is taken from the
output of ``loss_fn`` or of the model (``output.loss``, as Hugging Face models
return it), or handed over with ``hook.loss(value)``.

Between two boundaries every forward pass that runs with autograd on belongs
to the step; forwards under ``torch.no_grad()`` (a validation pass) do not.
Once the last requested step is written, every hook is removed and the trial
is marked finished. See docs/recording.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

from .functional import class_count
from .recorder import Recorder

__all__ = ["COUNTS", "Hook", "hook"]

# How steps are counted: by optimiser steps (the default), by backward passes,
# or by a training framework's callbacks (begin_step / end_step).
COUNTS = ("optimizer", "backward", "callback")


def hook(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    loss_fn: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    count: str = "optimizer",
    steps: int | Iterable[int] = 10,
    **options: Any,
) -> Hook:
    """Start recording ``model`` into ``path`` without touching the training loop.

    >>> hook = poorinit.torch.hook(model, "runs/trial", loss_fn=criterion)   # doctest: +SKIP
    >>> train(model)   # unchanged; steps 0-9 are recorded, then the hooks go away

    ``count="optimizer"`` ends a step at each ``optimizer.step()`` (of
    ``optimizer``, or of any optimiser holding the model's parameters when none
    is given): gradient accumulation is one step. ``count="backward"`` ends a
    step after each backward pass through the captured loss, for loops that
    step no optimiser. Other ``options`` are the :class:`Recorder`'s.
    """
    return Hook(model, path, loss_fn=loss_fn, optimizer=optimizer, count=count, steps=steps, **options)


class Hook:
    """The recorder, driven by optimiser or backward events instead of ``with rec.step()``."""

    def __init__(
        self,
        model: nn.Module,
        path: str | os.PathLike[str],
        *,
        loss_fn: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        count: str = "optimizer",
        steps: int | Iterable[int] = 10,
        **options: Any,
    ) -> None:
        if count not in COUNTS:
            raise ValueError(f"count must be one of {', '.join(COUNTS)}, not {count!r}")
        if loss_fn is not None and not isinstance(loss_fn, nn.Module):
            raise TypeError(
                "loss_fn must be an nn.Module (nn.CrossEntropyLoss(), ...), whose output a hook can see; "
                "for a loss computed by a function, call hook.loss(loss) after computing it"
            )
        self.recorder = Recorder(model, path, steps=steps, **options)
        self.recorder._grad_only = True  # a forward under no_grad (validation) is no part of a step
        # Boundaries met in hooks (the end of a backward may run on another
        # thread) keep the function mode to each forward of the model; a
        # framework's callbacks run on the training thread and hold it for the step.
        self.recorder._mode_per_forward = count != "callback"
        self.count = count
        self.model = model
        self._optimizer = optimizer
        self._parameters = {id(p) for p in model.parameters()}
        self._last = max(self.recorder.steps) if self.recorder.steps else -1
        self._losses: list[float] = []
        self._taken: dict[int, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._done = False
        if loss_fn is not None:
            self._handles.append(loss_fn.register_forward_hook(self._loss_output))
        self._handles.append(model.register_forward_pre_hook(self._model_input))
        self._handles.append(model.register_forward_hook(self._model_output, always_call=True))
        self._in_forward = False
        if count == "optimizer":
            if optimizer is not None:
                self._handles.append(optimizer.register_step_pre_hook(self._before_update))
            else:
                self._handles.append(register_optimizer_step_pre_hook(self._before_update))

    # -- the public side --

    @property
    def done(self) -> bool:
        """Whether every requested step has been recorded (the hooks are gone)."""
        return self._done

    def loss(self, value: torch.Tensor | float, name: str = "loss") -> None:
        """Hand over the step's loss when neither ``loss_fn`` nor the model's output carries it."""
        if not self._done:
            self.recorder.loss(value, name)

    def close(self) -> None:
        """Stop recording and mark the trial finished; a step in progress is discarded."""
        if not self._done:
            self._finish()

    def __enter__(self) -> Hook:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # a crashed run stays unfinished, but no hook stays behind
            self._remove()

    # -- a step opens at the model's first forward with autograd on, ends at the boundary --

    def begin_step(self) -> None:
        """Open a step now (``count="callback"``: at the start of a framework's training step)."""
        if not self._done and not self.recorder._open:
            self._losses = []
            self.recorder._begin(None)

    def end_step(self) -> None:
        """Close the open step (``count="callback"``: before the optimiser's update)."""
        self._end()

    def add_loss(self, value: torch.Tensor) -> None:
        """One forward's loss (several in a step under gradient accumulation: their mean is written)."""
        self._take_loss(value)

    def _model_input(self, module: nn.Module, args: Any) -> None:
        if self._done or not torch.is_grad_enabled() or self.count == "callback":
            return
        if not self.recorder._open:
            # Opened here, not at the previous boundary: the weights are copied
            # as this forward uses them, after the optimiser's update.
            self._losses = []
            self.recorder._begin(None)
            tracker = self.recorder._tracker
            if tracker is not None and self.recorder._tracker_made:
                # Its hooks were added while this very call runs its pre-hooks,
                # so the model's own would not run this time: push it by hand.
                # (Hooks kept from the step before run after this one, and push it.)
                tracker.stack.append(("", module))
        capture = self.recorder._capture
        if self.recorder.recording and capture is not None and not self._in_forward:
            # The function mode lives for one forward, on the forward's thread.
            capture.__enter__()
            self._in_forward = True

    def _end(self) -> None:
        """Close the open step: write it if it is recorded, finish after the last one."""
        self._taken.clear()
        if self._done or not self.recorder._open:
            return  # a boundary without a forward since the last one: nothing to close
        number = self.recorder._next - 1
        current = self.recorder._current
        if current is not None and self._losses and "loss" not in current.losses:
            # Several forwards in one step (gradient accumulation): their mean.
            current.losses["loss"] = sum(self._losses) / len(self._losses)
        self.recorder._end(write=True)
        if number >= self._last:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        self._remove()
        self.recorder.close()

    def _remove(self) -> None:
        if self._in_forward and self.recorder._capture is not None:
            self.recorder._capture.__exit__(None, None, None)
            self._in_forward = False
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self.recorder._open:
            self.recorder._end(write=False)
        self.recorder._unhook()

    def _ours(self, optimizer: torch.optim.Optimizer) -> bool:
        if self._optimizer is not None:
            return optimizer is self._optimizer
        return any(id(p) in self._parameters for group in optimizer.param_groups for p in group["params"])

    def _before_update(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # Before the update: the gradients are complete and not yet used.
        if self._ours(optimizer):
            self._end()

    def _take_loss(self, value: Any) -> None:
        if self._done or not torch.is_grad_enabled() or not isinstance(value, torch.Tensor) or value.numel() != 1:
            return
        if self.recorder.recording and self._taken.get(id(value)) is not value:
            self._taken[id(value)] = value  # the same tensor from loss_fn and the model's output counts once
            self._losses.append(float(value.detach().float().item()))
        if self.count == "backward" and value.requires_grad:
            value.register_hook(self._after_backward_of_loss)

    def _loss_output(self, module: nn.Module, args: Any, output: Any) -> None:
        current = self.recorder._current
        if current is not None and isinstance(module, (nn.CrossEntropyLoss, nn.NLLLoss)) and args:
            classes = class_count(args, {})
            if classes is not None:
                current.class_counts.add(classes)
        self._take_loss(output)

    def _model_output(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._in_forward:
            self._in_forward = False
            capture = self.recorder._capture
            if capture is not None:
                capture.__exit__(None, None, None)
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, Mapping):
            loss = output.get("loss")
        if loss is not None:
            self._take_loss(loss)

    def _after_backward_of_loss(self, grad: torch.Tensor) -> None:
        # The loss's gradient comes first in the backward pass; the step ends
        # once the whole pass has run and every gradient is accumulated.
        torch.autograd.Variable._execution_engine.queue_callback(self._end)

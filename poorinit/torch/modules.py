"""Module hooks: which modules are activations, which module is running, which produced a tensor.

The kind names the tensor (``<module path>.<kind>_input``), so it is part of
the trial format's conventions: see docs/recording.md.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["ACTIVATION_KINDS", "ModuleTracker", "activation_kind"]

# Module class -> the kind in ``<module path>.<kind>_input``. The kinds are
# torch.nn.functional's names, so SageMaker's default regex ``.*relu_input``
# keeps its meaning: it selects the inputs of ReLU, and of its variants whose
# name ends in "relu" (leaky_relu, prelu, rrelu), but not relu6.
ACTIVATION_KINDS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.RReLU: "rrelu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Mish: "mish",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Hardtanh: "hardtanh",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Softplus: "softplus",
    nn.Softsign: "softsign",
    nn.LogSigmoid: "logsigmoid",
    nn.Tanhshrink: "tanhshrink",
}


# Activation modules of other libraries, by class name (no import of them needed).
# Their forward computes an approximation from torch.tanh or torch.sigmoid
# (GPT-2's GELU is 0.5 x (1 + tanh(...))): named here, their input is recorded
# as what the layer is, a GELU, and the tanh inside is not mistaken for a
# bounded activation the saturation criterion would judge.
NAMED_KINDS: dict[str, str] = {
    # Hugging Face transformers (transformers/activations.py)
    "GELUActivation": "gelu", "NewGELUActivation": "gelu", "FastGELUActivation": "gelu",
    "QuickGELUActivation": "gelu", "AccurateGELUActivation": "gelu", "GELUTanh": "gelu",
    "PytorchGELUTanh": "gelu", "ClippedGELUActivation": "gelu", "SiLUActivation": "silu",
    "MishActivation": "mish",
    # timm (timm/layers/activations.py)
    "QuickGELU": "gelu", "Swish": "silu", "HardSwish": "hardswish", "HardMish": "mish",
}


def activation_kind(module: nn.Module) -> str | None:
    """The kind of an activation module (subclasses included), None for others."""
    cls = type(module)
    try:
        return _KIND_OF_CLASS[cls]
    except KeyError:
        pass
    kind = None
    for base in cls.__mro__:
        kind = ACTIVATION_KINDS.get(base) or NAMED_KINDS.get(base.__name__)
        if kind is not None:
            break
    _KIND_OF_CLASS[cls] = kind
    return kind


# Class -> kind, as activation_kind found it: asked for every module at every
# recorded step, and for every activation call. Held weakly: a class made at run
# time (a model built in a loop) is not kept alive by it.
_KIND_OF_CLASS: weakref.WeakKeyDictionary[type, str | None] = weakref.WeakKeyDictionary()


def activation_slope(module: nn.Module) -> float | None:
    """The negative slope of a leaky ReLU module (the rule may read it), None for others."""
    slope = getattr(module, "negative_slope", None) if isinstance(module, nn.LeakyReLU) else None
    return float(slope) if slope is not None else None


class ModuleTracker:
    """While a recorded step runs: the stack of modules running, and who produced which tensor.

    A forward-pre-hook pushes a module's path and a forward hook pops it, so a
    functional activation knows which module called it (the innermost one on
    the stack). The forward hook also notes each output tensor's producer by
    identity (held weakly), so an activation input can say what it comes
    after: ``after="BatchNorm1d"`` tells the rule a normalisation layer set its
    scale. The innermost producer wins: ``nn.Sequential`` returns its last
    child's output, which is that child's, not the container's.
    """

    def __init__(self, modules: Iterable[tuple[str, nn.Module]]) -> None:
        """``modules``: the model's ``named_modules()``."""
        self.stack: list[tuple[str, nn.Module]] = []
        self._produced: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        # Off between recorded steps, when the recorder keeps the hooks for the next one.
        self._active = True
        self._handles: list[RemovableHandle] = []
        for path, module in modules:
            self._handles.append(module.register_forward_pre_hook(self._enter(path)))
            # always_call: the stack stays right when a forward raises and the
            # training script catches it (a skipped batch, say).
            self._handles.append(module.register_forward_hook(self._leave(path), always_call=True))

    @property
    def active(self) -> bool:
        """Whether a recorded step runs: the hooks do nothing otherwise."""
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        self._active = value
        self.stack.clear()  # a step starts, or ends, outside any forward
        self._produced.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.stack.clear()
        self._produced.clear()

    @property
    def current(self) -> tuple[str, nn.Module] | None:
        """The innermost running module (path, module), None outside the model's forward."""
        return self.stack[-1] if self.stack else None

    def producer(self, tensor: Any) -> str | None:
        """Class name of the module whose output ``tensor`` is, None when no module made it."""
        entry = self._produced.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def _enter(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self.active:
                self.stack.append((path, module))

        return hook

    def _leave(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self.active:
                return
            # Pop down to this module: a forward that raised inside a child
            # (caught within this forward) left the child on the stack.
            while self.stack:
                top_path, top = self.stack.pop()
                if top is module and top_path == path:
                    break
            name = type(module).__name__
            for tensor in output if isinstance(output, (tuple, list)) else (output,):
                if isinstance(tensor, torch.Tensor):
                    entry = self._produced.get(id(tensor))
                    if entry is None or entry[0]() is not tensor:
                        self._produced[id(tensor)] = (weakref.ref(tensor), name)

        return hook

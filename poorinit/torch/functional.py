"""Functional activations (``F.relu(x)``, ``torch.tanh(x)``, ``x.relu_()``) seen without changing the model.

No module hook sees a function call, so while a recorded step runs the
recorder enters a :class:`torch.overrides.TorchFunctionMode`: every torch
function called from Python passes through it. The mode looks each one up in
:data:`ACTIVATION_FUNCTIONS`, hands the input of an activation to the
recorder (which copies it *before* the call, so an in-place variant cannot
overwrite it first) and calls the function unchanged. It also notes the class
count of a cross-entropy or NLL loss, the ``num_classes`` of the trial.

What it cannot see: activations computed inside a fused C++ kernel (the gates
of ``nn.LSTM`` and ``nn.GRU``, ``torch._transformer_encoder_layer_fwd``), and
calls made in another thread. Softmax calls and attention functions are seen
too: their logits are the softmax's input (see attention.py).
See docs/recording.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .attention import (
    ATTENTION_FUNCTIONS,
    SOFTMAX_FUNCTIONS,
    DeferredLogits,
    attention_logits,
    call_argument,
    softmax_logits,
)

__all__ = ["ACTIVATION_FUNCTIONS", "LOSS_FUNCTIONS", "FunctionalCapture"]


def _activation_functions() -> dict[Any, str]:
    """Function object -> kind, for every spelling of an activation torch routes through the mode.

    ``F.relu`` (a Python function) and ``torch.relu`` (the builtin it calls)
    are both listed: the mode sees the outermost call only, because it is
    switched off while the function it intercepted runs.
    """
    kinds: dict[str, list[Any]] = {
        "relu": [F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_],
        "leaky_relu": [F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu],
        "gelu": [F.gelu],
        "silu": [F.silu, torch._C._nn.silu, torch._C._nn.silu_],
        "tanh": [torch.tanh, torch.tanh_, torch.Tensor.tanh, torch.Tensor.tanh_],
        "sigmoid": [torch.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid, torch.Tensor.sigmoid_],
        "softplus": [F.softplus],
        "elu": [F.elu, F.elu_, torch._C._nn.elu],
        "relu6": [F.relu6],
        "selu": [F.selu, torch.selu, torch.selu_],
        "celu": [F.celu, torch.celu, torch.celu_],
        "mish": [F.mish],
        "hardtanh": [F.hardtanh, F.hardtanh_],
        "hardswish": [F.hardswish],
        "hardsigmoid": [F.hardsigmoid],
        "softsign": [F.softsign],
        "logsigmoid": [F.logsigmoid],
    }
    table: dict[Any, str] = {}
    for kind, functions in kinds.items():
        for function in functions:
            table.setdefault(function, kind)
    return table


ACTIVATION_FUNCTIONS: Mapping[Any, str] = _activation_functions()

# Losses whose input's class dimension is the number of classes K.
LOSS_FUNCTIONS = frozenset({F.cross_entropy, F.nll_loss})


def negative_slope(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> float:
    """The slope of a leaky_relu call, as F.leaky_relu reads its arguments (default 0.01)."""
    return float(call_argument(args, kwargs, 1, "negative_slope", 0.01))


def class_count(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    """K of a cross-entropy / NLL call: the class dimension of its input (dim 1, or 0 unbatched)."""
    logits = call_argument(args, kwargs, 0, "input", None)
    if not isinstance(logits, torch.Tensor) or logits.dim() == 0:
        return None
    return int(logits.shape[1] if logits.dim() >= 2 else logits.shape[0])


def _key_count(logits: torch.Tensor | DeferredLogits) -> int:
    """The length of the softmax: a softmax over one value is no activation worth judging."""
    return logits.keys if isinstance(logits, DeferredLogits) else int(logits.shape[-1])


class FunctionalCapture(TorchFunctionMode):
    """Calls ``on_activation(kind, input, args, kwargs)`` before each activation function runs,
    and ``on_loss(K)`` when a cross-entropy or NLL loss is computed; everything runs unchanged.
    """

    def __init__(
        self,
        on_activation: Callable[[str, torch.Tensor | DeferredLogits, tuple[Any, ...], Mapping[str, Any]], None],
        on_loss: Callable[[int], None],
    ) -> None:
        super().__init__()
        self._on_activation = on_activation
        self._on_loss = on_loss

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        try:
            kind = ACTIVATION_FUNCTIONS.get(func)
            softmax, attention, loss = func in SOFTMAX_FUNCTIONS, func in ATTENTION_FUNCTIONS, func in LOSS_FUNCTIONS
        except TypeError:  # an unhashable callable: never one of ours
            kind, softmax, attention, loss = None, False, False, False
        if kind is not None:
            value = call_argument(args, kwargs, 0, "input", None)
            if isinstance(value, torch.Tensor):
                self._on_activation(kind, value, args, kwargs)
        elif softmax or attention:
            # Recorded as the softmax's input with its axis last (see attention.py);
            # computed before the call, as every other input is.
            logits = softmax_logits(args, kwargs) if softmax else attention_logits(func, args, kwargs)
            if logits is not None and _key_count(logits) >= 2:
                self._on_activation("softmax", logits, args, kwargs)
        elif loss:
            classes = class_count(args, kwargs)
            if classes is not None:
                self._on_loss(classes)
        return func(*args, **kwargs)

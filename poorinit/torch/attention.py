"""The input of a softmax, including the ones attention computes where no hook can see them.

A softmax is an activation too, applied row by row: too large a start makes
its rows one-hot, and a one-hot row passes almost no gradient (its Jacobian
``diag(p) - p pᵀ`` vanishes). In attention this is the usual failure of a
large initialisation: the query and key projections scale the logits by the
square of the weights' scale, so a transformer whose every other layer is
normalised can still start with every attention head frozen on one position.

Three ways a softmax runs in PyTorch, and what is recorded for each:

- ``torch.softmax`` / ``F.softmax`` / ``x.softmax(dim)`` (hand-written
  attention, Hugging Face's eager attention, output heads): the input itself,
  with the softmax axis moved last;
- ``F.scaled_dot_product_attention`` (the fused kernel most code calls now):
  the logits it would compute, ``q kᵀ · scale``;
- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, so
  ``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer``): the
  logits of every head, from the layer's own projection weights.

Masks are not applied: the logits' scale, not which positions are allowed,
is what the initialisation sets. Every tensor is stored with shape
``(..., rows, keys)``: one softmax row per last-axis vector.

Attention over long sequences has ``batch x heads x queries x keys`` logits:
billions at a sequence length of a few thousand. A recorded step keeps at
most ``MAX_LOGITS`` of them per call, from evenly spaced query rows (then the
first batch elements): the saturation criterion is a share of rows, which a
sample of rows estimates. A failure to compute the logits (an input layout
this module does not know) records nothing for that call; it never breaks
the training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "SOFTMAX_FUNCTIONS", "ATTENTION_FUNCTIONS", "MAX_LOGITS", "DeferredLogits", "attention_logits", "call_argument",
    "softmax_logits",
]

# At most this many logits (16 MiB of float32) are kept per softmax or attention call.
MAX_LOGITS = 1 << 22

SOFTMAX_FUNCTIONS = frozenset({F.softmax, torch.softmax, torch.Tensor.softmax})
ATTENTION_FUNCTIONS = frozenset({F.scaled_dot_product_attention, F.multi_head_attention_forward})


def call_argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    """Argument ``index`` of a call as the function reads it: positional, else by ``name``, else ``default``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def softmax_logits(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """The input of a softmax call with its softmax axis last (``None`` if there is no tensor input)."""
    value = call_argument(args, kwargs, 0, "input", None)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dim() == 0:
        return None
    dim = call_argument(args, kwargs, 1, "dim", None)
    if dim is None:  # F.softmax's legacy implicit dimension
        dim = 0 if value.dim() in (0, 1, 3) else 1
    logits = value.detach().movedim(int(dim), -1)
    if logits.numel() > MAX_LOGITS:
        rows = logits.reshape(-1, logits.shape[-1])
        logits = rows[:: -(-rows.numel() // MAX_LOGITS)]
    return logits


class DeferredLogits:
    """An attention call's logits, to be computed on the writer thread from copies of their operands.

    Forming them costs matrix products (the query and key projections of
    ``nn.MultiheadAttention``, then ``q kᵀ``) about half as large as the call's
    own. The training thread copies the operands (before the optimiser changes the
    weights) and goes on; the background writer computes the products, which
    release the GIL, on the other core. Calling it gives the logits, their
    first ``rows`` batch elements when given, or None if they cannot be formed.
    """

    __slots__ = ("_compute", "keys")

    def __init__(self, compute: Callable[[], torch.Tensor], keys: int) -> None:
        self._compute = compute
        self.keys = keys  # the softmax's length: the last axis of the logits

    def __call__(self, rows: int | None = None) -> torch.Tensor | None:
        try:
            with torch.no_grad():
                logits = self._compute()
        except (RuntimeError, ValueError, TypeError, IndexError):
            return None  # a layout not known here: the call is not recorded
        return logits if rows is None or logits.dim() == 0 else logits[:rows]  # as the recorder cuts any input


def attention_logits(
    func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> torch.Tensor | DeferredLogits | None:
    """The logits an attention function feeds its softmax, ``(batch, heads, queries, keys)``: deferred
    (:class:`DeferredLogits`) when the operands are on the CPU, computed now on any other device."""
    try:
        with torch.no_grad():
            sdpa = func is F.scaled_dot_product_attention
            found = _sdpa_logits(args, kwargs) if sdpa else _mha_logits(args, kwargs)
            if found is None:
                return None
            compute, keys, device = found
            return DeferredLogits(compute, keys) if device.type == "cpu" else compute()
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None  # a layout not known here: the call runs unrecorded, training goes on


def _kept(tensor: torch.Tensor, later: bool) -> torch.Tensor:
    """An operand as it is now: a copy when the logits are formed later (weights change in place)."""
    return tensor.detach().clone() if later else tensor.detach()


def _sampled(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Query rows (and then leading batch elements) cut so the logits stay within MAX_LOGITS."""
    keys = key.shape[-2]
    total = query[..., 0].numel() * keys
    if total <= MAX_LOGITS:
        return query, key
    query = query[..., :: -(-total // MAX_LOGITS), :]
    total = query[..., 0].numel() * keys
    if total > MAX_LOGITS and query.dim() > 2:
        keep = max(1, MAX_LOGITS // (total // query.shape[0]))
        query, key = query[:keep], key[:keep]
    return query, key


_Found = tuple[Callable[[], torch.Tensor], int, torch.device]


def _sdpa_logits(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Found | None:
    query = call_argument(args, kwargs, 0, "query", None)
    key = call_argument(args, kwargs, 1, "key", None)
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor) or query.dim() < 2:
        return None
    scale = call_argument(args, kwargs, 6, "scale", None)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    groups = 1
    if query.dim() >= 3 and key.dim() >= 3 and key.shape[-3] != query.shape[-3] and key.shape[-3] > 0:
        # Grouped-query attention: each key head serves several query heads.
        groups = query.shape[-3] // key.shape[-3]
        if groups * key.shape[-3] != query.shape[-3]:
            return None
    if query.shape[-1] != key.shape[-1]:
        return None
    query, key = _sampled(query, key)
    later = query.device.type == "cpu"
    query, key = _kept(query, later), _kept(key, later)

    def compute() -> torch.Tensor:
        keys = key if groups == 1 else key.repeat_interleave(groups, dim=-3)
        return (query @ keys.transpose(-2, -1)) * scale

    return compute, key.shape[-2], query.device


def _mha_logits(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Found | None:
    query = call_argument(args, kwargs, 0, "query", None)
    key = call_argument(args, kwargs, 1, "key", None)
    heads = call_argument(args, kwargs, 4, "num_heads", None)
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor) or not isinstance(heads, int):
        return None
    in_weight = call_argument(args, kwargs, 5, "in_proj_weight", None)
    in_bias = call_argument(args, kwargs, 6, "in_proj_bias", None)
    separate = bool(kwargs.get("use_separate_proj_weight", False))
    embed = query.shape[-1]
    if separate:
        w_q, w_k = kwargs.get("q_proj_weight"), kwargs.get("k_proj_weight")
    elif isinstance(in_weight, torch.Tensor):
        w_q, w_k, _ = in_weight.chunk(3)
    else:
        return None
    if not isinstance(w_q, torch.Tensor) or not isinstance(w_k, torch.Tensor) or heads < 1 or embed % heads:
        return None
    b_q = b_k = None
    if isinstance(in_bias, torch.Tensor):
        b_q, b_k, _ = in_bias.chunk(3)
    later = query.device.type == "cpu"
    same = key is query  # self-attention: one copy
    query = _kept(query, later)
    key = query if same else _kept(key, later)
    w_q, w_k = _kept(w_q, later), _kept(w_k, later)
    b_q = None if b_q is None else _kept(b_q, later)
    b_k = None if b_k is None else _kept(b_k, later)
    head_dim = embed // heads

    def compute() -> torch.Tensor:
        unbatched = query.dim() == 2  # (L, E)
        queries, keys = (query.unsqueeze(1), key.unsqueeze(1)) if unbatched else (query, key)
        q = F.linear(queries, w_q, b_q)  # (L, N, E)
        k = F.linear(keys, w_k, b_k)  # (S, N, E)
        length, batch = q.shape[0], q.shape[1]
        q = q.reshape(length, batch, heads, head_dim).permute(1, 2, 0, 3)  # (N, H, L, d)
        k = k.reshape(k.shape[0], batch, heads, head_dim).permute(1, 2, 0, 3)  # (N, H, S, d)
        q, k = _sampled(q, k)
        return (q @ k.transpose(-2, -1)) / math.sqrt(head_dim)

    return compute, key.shape[0], query.device

"""Which modules are activations, and what kind each is.

The kind names the tensor (``<module path>.<kind>_input``), so it is part of
the trial format's conventions: see docs/recording.md.
"""

from __future__ import annotations

from torch import nn

__all__ = ["ACTIVATION_KINDS", "activation_kind"]

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


def activation_kind(module: nn.Module) -> str | None:
    """The kind of an activation module (subclasses included), None for others."""
    for cls in type(module).__mro__:
        kind = ACTIVATION_KINDS.get(cls)
        if kind is not None:
            return kind
    return None

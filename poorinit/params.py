"""The rule's parameters: SageMaker's names and defaults, validated once.

``activation_inputs_regex``, ``threshold``, ``distribution_range``,
``patience`` and ``steps`` keep the names and defaults of SageMaker Debugger's
PoorWeightInitialization rule; ``gradient_regex``, ``loss_regex``, ``mode``
and ``num_classes`` are poorinit's additions (default: the ``gradients`` and
``losses`` collections of the train mode; K from the trial's ``num_classes``
attribute when the recorder wrote one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from . import format as fmt
from .errors import ParameterError
from .records import record

# SageMaker's default is ".*relu_input"; poorinit's also takes the inputs of the other unbounded,
# ReLU-like activations (GELU, SiLU, ELU, ...), which today's networks use: see docs/rule.md.
DEFAULT_ACTIVATION_INPUTS_REGEX = ".*(relu|relu6|gelu|silu|elu|selu|celu|softplus|mish|hardswish)_input"


def parse_patterns(value: str | Sequence[str] | None, parameter: str) -> tuple[str, ...]:
    """SageMaker's convention: a list of regexes, or one comma-separated string.

    Each pattern is compiled here so that a bad one is reported before any file
    is opened, naming the parameter it came from.
    """
    if value is None:
        return ()
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(item, str) for item in value):
        # A dict would pass as its keys, a number would crash: both are mistakes in a config file.
        raise ParameterError(f"{parameter} must be a regex or a list of regexes, not {_shown(value)}")
    items = value.split(",") if isinstance(value, str) else list(value)
    patterns = tuple(p.strip() for p in items if p and p.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ParameterError(f"{parameter}: {pattern!r} is not a valid regular expression ({error})") from None
    return patterns


def _shown(value: Any) -> str:
    """A value for a one-line message: its repr, cut (a 400-digit integer stays readable)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"


def _number(value: Any, parameter: str) -> float:
    # true/false in a config file are not numbers, though Python counts them as 1 and 0.
    if isinstance(value, bool):
        raise ParameterError(f"{parameter} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"{parameter} must be a number, not {_shown(value)}") from None
    if math.isnan(number):
        raise ParameterError(f"{parameter} must be a number, not NaN")
    if math.isinf(number):
        # As given: "--steps 999...9" (400 digits) is shown as typed, not as the float it overflows to.
        raise ParameterError(f"{parameter} must be a finite number, not {_shown(value)}")
    return number


# The largest count a whole-number parameter takes (steps, patience, classes): HDF5's and
# numpy's 32-bit signed integers hold it, and no training run needs more.
LARGEST_WHOLE = 2**31 - 1


def _whole(value: Any, parameter: str, minimum: int) -> int:
    number = _number(value, parameter)
    if not number.is_integer() or number < minimum:
        raise ParameterError(f"{parameter} must be a whole number >= {minimum}, not {_shown(value)}")
    if number > LARGEST_WHOLE:
        raise ParameterError(f"{parameter} must be at most {LARGEST_WHOLE}, not {_shown(value)}")
    return int(number)


@record
class RuleParams:
    """Validated parameters. Build with :meth:`from_values` to accept strings."""

    activation_inputs_regex: tuple[str, ...] = (DEFAULT_ACTIVATION_INPUTS_REGEX,)
    threshold: float = 10.0
    distribution_range: float = 0.001
    patience: int = 5
    steps: int = 10
    gradient_regex: tuple[str, ...] = ()
    loss_regex: tuple[str, ...] = ()
    mode: str = "train"
    num_classes: int | None = None

    @classmethod
    def from_values(
        cls,
        *,
        activation_inputs_regex: str | Sequence[str] | None = DEFAULT_ACTIVATION_INPUTS_REGEX,
        threshold: Any = 10.0,
        distribution_range: Any = 0.001,
        patience: Any = 5,
        steps: Any = 10,
        gradient_regex: str | Sequence[str] | None = None,
        loss_regex: str | Sequence[str] | None = None,
        mode: str = "train",
        num_classes: Any = None,
    ) -> RuleParams:
        threshold = _number(threshold, "threshold")
        if threshold < 1:
            raise ParameterError(f"threshold must be >= 1 (a ratio of largest to smallest variance), not {threshold}")
        distribution_range = _number(distribution_range, "distribution_range")
        if distribution_range < 0:
            raise ParameterError(f"distribution_range must be >= 0, not {distribution_range}")
        if not isinstance(mode, str) or mode not in fmt.MODES:
            raise ParameterError(f"mode must be one of {', '.join(fmt.MODES)}, not {_shown(mode)}")
        return cls(
            activation_inputs_regex=parse_patterns(activation_inputs_regex, "activation_inputs_regex"),
            threshold=threshold,
            distribution_range=distribution_range,
            patience=_whole(patience, "patience", 1),
            steps=_whole(steps, "steps", 1),
            gradient_regex=parse_patterns(gradient_regex, "gradient_regex"),
            loss_regex=parse_patterns(loss_regex, "loss_regex"),
            mode=mode,
            num_classes=None if num_classes is None else _whole(num_classes, "num_classes", 2),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, regexes as lists (what the report shows and records)."""
        data = asdict(self)
        for key in ("activation_inputs_regex", "gradient_regex", "loss_regex"):
            data[key] = list(data[key])
        return data

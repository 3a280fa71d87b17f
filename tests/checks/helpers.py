"""Feed a check in-memory tensors, step by step, as the engine would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from poorinit import ArrayTensor, CriterionResult, RuleParams
from poorinit.checks.base import Check


def judge(check_class: type[Check], steps: Sequence[Mapping[str, object]], **params: object) -> CriterionResult:
    """``steps[i]`` maps tensor name -> array (one worker) or list of arrays (workers)."""
    check = check_class(RuleParams.from_values(**params))
    measures = {}
    for step, tensors in enumerate(steps):
        chosen = {
            name: [ArrayTensor(name, np.asarray(v), worker=w) for w, v in enumerate(value)]
            if isinstance(value, list)
            else [ArrayTensor(name, np.asarray(value))]
            for name, value in tensors.items()
        }
        if chosen:
            measures[step] = check.measure(step, chosen)
    return check.judge(measures)

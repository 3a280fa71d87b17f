"""Feed a check in-memory tensors, step by step, as the engine would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from poorinit import ArrayTensor, CriterionResult, RuleParams
from poorinit.checks.base import Check


def judge(
    check_class: type[Check],
    steps: Sequence[Mapping[str, object]],
    attrs: Mapping[str, Mapping[str, object]] | None = None,
    trial_attrs: Mapping[str, object] | None = None,
    **params: object,
) -> CriterionResult:
    """``steps[i]`` maps tensor name -> array (one worker) or list of arrays (workers).

    ``attrs`` gives a tensor's metadata by name (docs/format.md), ``trial_attrs``
    the trial's root attributes (``num_classes``).
    """
    check = check_class(RuleParams.from_values(**params))
    check.trial_attrs = dict(trial_attrs or {})
    attrs = attrs or {}
    measures = {}
    for step, tensors in enumerate(steps):
        chosen = {
            name: [ArrayTensor(name, np.asarray(v), worker=w, attrs=dict(attrs.get(name, {})))
                   for w, v in enumerate(value)]
            if isinstance(value, list)
            else [ArrayTensor(name, np.asarray(value), attrs=dict(attrs.get(name, {})))]
            for name, value in tensors.items()
        }
        if chosen:
            measures[step] = check.measure(step, chosen)
    return check.judge(measures)

"""The JSON report, schema ``poorinit.verdict`` version 1 (docs/json.md).

JSON has no infinity or NaN, and a variance ratio can be infinite: such
figures are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .. import __version__
from ..checks.base import CriterionResult
from ..rule import Verdict

SCHEMA = "poorinit.verdict"
SCHEMA_VERSION = 1


def number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def criterion_document(c: CriterionResult) -> dict[str, Any]:
    return {
        "check": c.check,
        "title": c.title,
        "status": c.status.value,
        "figure": number(c.figure),
        "limit": number(c.limit),
        "relation": c.relation,
        "step": c.step,
        "tensor": c.tensor,
        "reason": c.reason,
        "per_step": [[step, number(value)] for step, value in c.per_step],
    }


def document(verdict: Verdict) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "poorinit_version": __version__,
        "trial": verdict.trial,
        "status": verdict.status,
        "fired": verdict.fired,
        "exit_code": verdict.exit_code,
        "mode": verdict.params.mode,
        "steps": list(verdict.steps),
        "parameters": verdict.params.as_dict(),
        "warnings": list(verdict.warnings),
        "criteria": [criterion_document(c) for c in verdict.criteria],
    }


def render(verdict: Verdict) -> str:
    return json.dumps(document(verdict), indent=2, ensure_ascii=False) + "\n"

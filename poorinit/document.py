"""The JSON documents of poorinit's reports (docs/cli.md), as plain dicts.

* ``poorinit.verdict`` version 1: one analysed trial (``analyze --format json``,
  :meth:`Verdict.to_dict`).
* ``poorinit.error`` version 1: a trial a scan could not analyse.
* ``poorinit.scan`` version 1: a whole scan, a summary and one of the two
  above per trial, worst first.

JSON has no infinity or NaN, and a variance ratio can be infinite: such
figures are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``.

Kept below the reports (beside the rule) so that ``Verdict.to_dict`` gives
the same document without the library depending on its command line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .checks.base import CriterionResult

if TYPE_CHECKING:
    from .rule import Verdict
    from .scan import TrialResult

SCHEMA = "poorinit.verdict"
SCHEMA_VERSION = 1
ERROR_SCHEMA = "poorinit.error"
ERROR_SCHEMA_VERSION = 1
SCAN_SCHEMA = "poorinit.scan"
SCAN_SCHEMA_VERSION = 1


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
        "remedy": c.remedy,
        "direction": c.direction,
        "absent": c.absent,
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
        "diagnosis": None if verdict.diagnosis is None else _diagnosis_document(verdict.diagnosis),
    }


def _diagnosis_document(diagnosis: Any) -> dict[str, Any]:
    from .report.diagnosis import document as diagnosis_document

    return diagnosis_document(diagnosis)


def error_document(trial: str, error: str) -> dict[str, Any]:
    return {
        "schema": ERROR_SCHEMA,
        "schema_version": ERROR_SCHEMA_VERSION,
        "poorinit_version": __version__,
        "trial": trial,
        "status": "error",
        "exit_code": 2,
        "error": error,
    }


def result_document(result: TrialResult) -> dict[str, Any]:
    """A scanned trial: its verdict document, or an error document."""
    if result.verdict is not None:
        return document(result.verdict)
    return error_document(result.trial, result.error or "")


def scan_document(results: Sequence[TrialResult]) -> dict[str, Any]:
    from .scan import counts, scan_exit_code

    return {
        "schema": SCAN_SCHEMA,
        "schema_version": SCAN_SCHEMA_VERSION,
        "poorinit_version": __version__,
        "exit_code": scan_exit_code(results),
        "summary": counts(results),
        "trials": [result_document(r) for r in results],
    }

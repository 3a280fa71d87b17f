"""JSON lines: one compact JSON document per line, for shell pipelines.

``scan --format jsonl`` writes each trial's line as soon as it is analysed, so
``poorinit scan runs/ --format jsonl | jq ...`` sees results while the scan
runs (in the order trials finish). A line is the trial's ``poorinit.verdict``
document, or a ``poorinit.error`` document when it could not be analysed;
both have ``trial``, ``status`` and ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import escape
from .json import document, result_document

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


def _line(data: dict[str, Any]) -> str:
    return escape.json_dumps(data, separators=(",", ":")) + "\n"


def line(result: TrialResult) -> str:
    """One scanned trial as one line."""
    return _line(result_document(result))


def render(verdict: Verdict) -> str:
    return _line(document(verdict))


def render_scan(results: Sequence[TrialResult]) -> str:
    return "".join(line(r) for r in results)

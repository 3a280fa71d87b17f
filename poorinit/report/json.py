"""The JSON reports: the documents of :mod:`poorinit.document`, serialised.

JSON has no infinity or NaN: such figures are the strings ``"inf"``,
``"-inf"`` and ``"nan"`` (see :func:`poorinit.document.number`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..document import (  # noqa: F401 (re-exported: the documents' home used to be here)
    ERROR_SCHEMA,
    ERROR_SCHEMA_VERSION,
    SCAN_SCHEMA,
    SCAN_SCHEMA_VERSION,
    SCHEMA,
    SCHEMA_VERSION,
    criterion_document,
    document,
    error_document,
    number,
    result_document,
    scan_document,
)

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


def render(verdict: Verdict) -> str:
    return escape.json_dumps(document(verdict), indent=2) + "\n"


def render_scan(results: Sequence[TrialResult]) -> str:
    return escape.json_dumps(scan_document(results), indent=2) + "\n"

"""GitHub Actions workflow commands: annotations on the run's summary page.

A fired criterion and a trial that could not be analysed are ``::error``, a
verdict warning is ``::warning``, a criterion that is not applicable is
``::notice``; a last ``::notice`` gives the verdict. Values are escaped by
poorinit/escape.py: controls made visible (a name with a newline cannot start
a command line of its own), then ``%`` (and ``:`` and ``,`` in properties).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..checks.base import Status
from .junit import failure_message
from .table import verdict_line

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


escape_data = escape.github_data
escape_property = escape.github_property


def command(kind: str, title: str, message: str) -> str:
    return f"::{kind} title={escape_property(title)}::{escape_data(message)}\n"


def _verdict_lines(verdict: Verdict) -> list[str]:
    lines = []
    for c in verdict.criteria:
        if c.status is Status.FIRED:
            message = f"{verdict.trial}: {failure_message(c)}: {c.reason}"
            lines.append(command("error", f"poorinit: {c.title} fired", message))
        elif c.status is Status.NOT_APPLICABLE:
            lines.append(command("notice", f"poorinit: {c.title} not applicable", f"{verdict.trial}: {c.reason}"))
    lines += [command("warning", "poorinit: warning", f"{verdict.trial}: {w}") for w in verdict.warnings]
    return lines


def render(verdict: Verdict) -> str:
    return "".join(_verdict_lines(verdict)) + command("notice", "poorinit", verdict_line(verdict).plain)


def render_scan(results: Sequence[TrialResult]) -> str:
    from ..scan import summary_line

    lines = []
    for r in results:
        if r.verdict is not None:
            lines += _verdict_lines(r.verdict)
        else:
            lines.append(command("error", "poorinit: trial not analysed", r.error or r.trial))
    return "".join(lines) + command("notice", "poorinit scan", summary_line(results))

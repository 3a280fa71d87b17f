"""GitHub Actions workflow commands: annotations on the run's summary page.

One ``::error`` per fired criterion, with ``file=`` (the step file where it
fired when the step is known and the file is there, else the trial directory)
and ``title=``; one ``::error`` per trial that could not be analysed; one
``::warning`` per verdict warning. A criterion that is not applicable is a
``::notice`` only with ``--verbose``: GitHub shows at most 10 annotations of
each kind per step, so a long scan must not bury its failures under notices.
Errors come first, then warnings, then notices; a last ``::notice`` gives the
verdict (or the scan's summary line).

Values are escaped by poorinit/escape.py: controls made visible (a name with
a newline cannot start a command line of its own), then ``%`` (and ``:`` and
``,`` in properties), as the runner expects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..checks.base import CriterionResult, Status
from ..format import step_file_name
from .junit import failure_message
from .table import verdict_line

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


escape_data = escape.github_data
escape_property = escape.github_property


def command(kind: str, title: str, message: str, file: str | None = None) -> str:
    properties = [] if file is None else [f"file={escape_property(file)}"]
    properties.append(f"title={escape_property(title)}")
    return f"::{kind} {','.join(properties)}::{escape_data(message)}\n"


def culprit_file(verdict: Verdict, c: CriterionResult) -> str:
    """The step file of worker 0 at the criterion's step when it exists, else the trial directory."""
    if c.step is not None:
        try:
            path = os.path.join(verdict.trial, step_file_name(c.step, verdict.params.mode))
        except ValueError:
            return verdict.trial
        if os.path.isfile(path):
            return path
    return verdict.trial


def _verdict_lines(verdict: Verdict, verbose: bool) -> tuple[list[str], list[str], list[str]]:
    errors, warnings, notices = [], [], []
    for c in verdict.criteria:
        if c.status is Status.FIRED:
            message = f"{verdict.trial}: {failure_message(c)}: {c.reason}"
            if c.remedy:
                message += f" Remedy: {c.remedy}"
            errors.append(command("error", f"poorinit: {c.title} fired", message, culprit_file(verdict, c)))
        elif c.status is Status.NOT_APPLICABLE and verbose:
            notices.append(command("notice", f"poorinit: {c.title} not applicable", f"{verdict.trial}: {c.reason}",
                                   verdict.trial))
    warnings += [command("warning", "poorinit: warning", f"{verdict.trial}: {w}", verdict.trial)
                 for w in verdict.warnings]
    return errors, warnings, notices


def render(verdict: Verdict, verbose: bool = False) -> str:
    errors, warnings, notices = _verdict_lines(verdict, verbose)
    return "".join(errors + warnings + notices) + command("notice", "poorinit", verdict_line(verdict).plain)


def render_scan(results: Sequence[TrialResult], verbose: bool = False) -> str:
    from ..scan import summary_line

    errors, warnings, notices = [], [], []
    for r in results:
        if r.verdict is not None:
            e, w, n = _verdict_lines(r.verdict, verbose)
            errors += e
            warnings += w
            notices += n
        else:
            errors.append(command("error", "poorinit: trial not analysed", r.error or r.trial, r.trial))
    return "".join(errors + warnings + notices) + command("notice", "poorinit scan", summary_line(results))

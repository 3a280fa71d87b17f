"""Markdown for a pull-request comment (or ``$GITHUB_STEP_SUMMARY``).

A heading with the verdict, then a table: the criteria of one trial, or one
row per trial of a scan, worst first. Cell text goes through
poorinit/escape.py, so that no name can break the table, close a code span
or render as HTML in a pull-request comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..checks.base import Status
from .table import LABELS, figure, limit, verdict_line

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


cell = escape.markdown
code = escape.markdown_code


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _status(status: Status) -> str:
    return f"**{LABELS[status]}**" if status is Status.FIRED else LABELS[status]


def render(verdict: Verdict) -> str:
    head = "FIRED" if verdict.fired else "passed"
    lines = [f"### poorinit: {head} · {code(verdict.trial)}", ""]
    rows = [
        [cell(c.title), _status(c.status), figure(c.figure), cell(limit(c)), "-" if c.step is None else str(c.step),
         code(c.tensor) if c.tensor else "-"]
        for c in verdict.criteria
    ]
    lines += _table(["criterion", "status", "figure", "limit", "step", "tensor"], rows)
    lines.append("")
    for c in verdict.criteria:
        lines.append(f"- **{cell(c.title)}**: {cell(c.reason)}")
        if c.remedy:
            lines.append(f"  - remedy: {cell(c.remedy)}")
    if verdict.diagnosis is not None:
        from .diagnosis import markdown as diagnosis_markdown

        lines += ["", *diagnosis_markdown(verdict.diagnosis)]
    lines += [f"- warning: {cell(w)}" for w in verdict.warnings]
    lines += ["", cell(verdict_line(verdict).plain)]
    return "\n".join(lines) + "\n"


def render_scan(results: Sequence[TrialResult]) -> str:
    from ..scan import summary_line

    lines = [f"### poorinit scan: {cell(summary_line(results))}", ""]
    rows = []
    for r in results:
        if r.verdict is None:
            rows.append([code(r.trial), "error", cell(r.error or "")])
            continue
        fired = [c for c in r.verdict.criteria if c.fired]
        detail = "; ".join(f"{cell(c.title)}: {figure(c.figure)} ({cell(limit(c))})" for c in fired)
        rows.append([code(r.trial), "**FIRED**" if fired else "passed", detail or "-"])
    lines += _table(["trial", "status", "criteria fired / error"], rows)
    return "\n".join(lines) + "\n"

"""The terminal report: a rich table of the criteria and one verdict line."""

from __future__ import annotations

import io
import math

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..checks.base import CriterionResult, Status
from ..rule import Verdict

STYLES = {Status.FIRED: "bold red", Status.PASSED: "green", Status.NOT_APPLICABLE: "yellow"}
LABELS = {Status.FIRED: "FIRED", Status.PASSED: "passed", Status.NOT_APPLICABLE: "n/a"}


def figure(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def limit(c: CriterionResult) -> str:
    return "-" if c.limit is None else f"{c.relation} {figure(c.limit)}".strip()


def verdict_line(verdict: Verdict) -> Text:
    evaluated = [c for c in verdict.criteria if c.status is not Status.NOT_APPLICABLE]
    fired = [c.title for c in verdict.criteria if c.fired]
    if fired:
        return Text.assemble(
            ("FIRED", "bold red"),
            f": poor initialisation in {verdict.trial} ({', '.join(fired)}; "
            f"{len(fired)} of {len(evaluated)} evaluated criteria fired)",
        )
    return Text.assemble(
        ("passed", "bold green"),
        f": {verdict.trial} looks well initialised ({len(evaluated)} of {len(verdict.criteria)} criteria evaluated)",
    )


def renderable(verdict: Verdict) -> Group:
    span = f"steps {verdict.steps[0]}-{verdict.steps[-1]}" if verdict.steps else "no steps"
    table = Table(title=f"PoorWeightInitialization · {verdict.trial} · {verdict.params.mode} {span}",
                  title_justify="left")
    for column in ("criterion", "status", "figure", "limit", "step", "tensor"):
        table.add_column(column, overflow="fold", no_wrap=column != "tensor")
    for c in verdict.criteria:
        table.add_row(
            c.title,
            Text(LABELS[c.status], style=STYLES[c.status]),
            figure(c.figure),
            limit(c),
            "-" if c.step is None else str(c.step),
            c.tensor or "-",
        )
    parts: list[Table | Text] = [table]
    # The reasons are sentences: under the table they read as prose, inside it
    # they would wrap into a narrow column.
    parts += [Text.assemble((f"{c.title}: ", STYLES[c.status]), c.reason) for c in verdict.criteria]
    parts += [Text(f"warning: {w}", style="yellow") for w in verdict.warnings]
    parts.append(verdict_line(verdict))
    return Group(*parts)


def render_text(verdict: Verdict) -> str:
    """The table without colour, for files and for tests."""
    buffer = io.StringIO()
    Console(file=buffer, width=120, no_color=True, highlight=False).print(renderable(verdict))
    return buffer.getvalue()

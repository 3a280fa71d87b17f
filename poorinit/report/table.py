"""The terminal report: a rich table of the criteria and one verdict line.

For a scan: one row per trial, worst first, and one summary line.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..checks.base import CriterionResult, Status
from ..rule import Verdict

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from ..scan import TrialResult

STYLES = {Status.FIRED: "bold red", Status.PASSED: "green", Status.NOT_APPLICABLE: "yellow"}
LABELS = {Status.FIRED: "FIRED", Status.PASSED: "passed", Status.NOT_APPLICABLE: "n/a"}


def figure(value: float | None, digits: int = 4) -> str:
    """A figure as reports print it: '-' for none, nan/inf spelt out, else ``digits`` significant digits."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def limit(c: CriterionResult) -> str:
    return "-" if c.limit is None else f"{c.relation} {figure(c.limit)}".strip()


def verdict_line(verdict: Verdict) -> Text:
    # rich is imported here, not at the top: the other reports use this module's
    # helpers, and a JSON report must not pay for rich.
    from rich.text import Text

    evaluated = [c for c in verdict.criteria if c.status is not Status.NOT_APPLICABLE]
    fired = [c.title for c in verdict.criteria if c.fired]
    if fired:
        return Text.assemble(
            ("FIRED", "bold red"),
            f": poor initialisation in {escape.terminal(verdict.trial)} ({', '.join(fired)}; "
            f"{len(fired)} of {len(evaluated)} evaluated criteria fired)",
        )
    return Text.assemble(
        ("passed", "bold green"),
        f": {escape.terminal(verdict.trial)} looks well initialised "
        f"({len(evaluated)} of {len(verdict.criteria)} criteria evaluated)",
    )


# The titles are lines of their own, not table titles: rich wraps a table's
# title to the table's width, which would cut a long trial path in two even
# where nothing else is wrapped (docs/cli.md, "Output").


def renderable(verdict: Verdict, show_warnings: bool = True) -> Group:
    """The table, the reasons, the warnings (unless the caller prints them on stderr) and the verdict line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    span = f"steps {verdict.steps[0]}-{verdict.steps[-1]}" if verdict.steps else "no steps"
    title = escape.rich_text(f"PoorWeightInitialization · {verdict.trial} · {verdict.params.mode} {span}",
                             style="italic")
    table = Table()
    for column in ("criterion", "status", "figure", "limit", "step", "tensor"):
        table.add_column(column, overflow="fold", no_wrap=column != "tensor")
    for c in verdict.criteria:
        table.add_row(
            escape.rich_text(c.title),
            Text(LABELS[c.status], style=STYLES[c.status]),
            figure(c.figure),
            limit(c),
            "-" if c.step is None else str(c.step),
            escape.rich_text(c.tensor or "-"),
        )
    parts: list[Table | Text] = [title, table]
    # The reasons are sentences: under the table they read as prose, inside it
    # they would wrap into a narrow column.
    shown: dict[str, str] = {}
    for c in verdict.criteria:
        parts.append(Text.assemble((f"{escape.terminal(c.title)}: ", STYLES[c.status]), escape.terminal(c.reason)))
        if c.remedy:
            # The same remedy for several criteria is spelled out once.
            same = shown.setdefault(c.remedy, c.title)
            parts.append(Text.assemble(("  remedy: ", "bold"),
                                       escape.terminal(c.remedy if same == c.title else f"as for {same}")))
    if verdict.diagnosis is not None:
        from .diagnosis import renderable as diagnosis_renderable

        parts.append(diagnosis_renderable(verdict.diagnosis))
    if show_warnings:
        parts += [escape.rich_text(f"warning: {w}", style="yellow") for w in verdict.warnings]
    parts.append(verdict_line(verdict))
    return Group(*parts)


def _cells(text: str) -> int:
    """Terminal cells ``text`` takes, as rich counts them (a wide character takes two)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _boxed(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a rich ``Table()`` (heavy head box, one space of padding)
    of plain cells, at unbounded width: what rich draws into a pipe."""
    widths = [max(_cells(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(left: str, middle: str, right: str, fill: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + right

    def cells(edge: str, row: Sequence[str]) -> str:
        return edge + edge.join(f" {text}{' ' * (w - _cells(text))} " for text, w in zip(row, widths, strict=True)) \
            + edge

    return [line("┏", "┳", "┓", "━"), cells("┃", header), line("┡", "╇", "┩", "━"),
            *(cells("│", row) for row in rows), line("└", "┴", "┘", "─")]


def plain_lines(verdict: Verdict, show_warnings: bool = True) -> str | None:
    """What :func:`renderable` prints on a console that is neither a terminal
    nor coloured (a pipe, a file, a CI log), drawn without rich, which costs
    more to import than a small trial costs to analyse. None when only rich
    can draw it (the --explain diagnosis). tests/test_report.py holds the two
    to the same output."""
    if verdict.diagnosis is not None:
        return None
    span = f"steps {verdict.steps[0]}-{verdict.steps[-1]}" if verdict.steps else "no steps"
    lines = [escape.terminal(f"PoorWeightInitialization · {verdict.trial} · {verdict.params.mode} {span}")]
    rows = [(escape.terminal(c.title), LABELS[c.status], figure(c.figure), limit(c),
             "-" if c.step is None else str(c.step), escape.terminal(c.tensor or "-")) for c in verdict.criteria]
    lines += _boxed(("criterion", "status", "figure", "limit", "step", "tensor"), rows)
    shown: dict[str, str] = {}
    for c in verdict.criteria:
        lines.append(f"{escape.terminal(c.title)}: {escape.terminal(c.reason)}")
        if c.remedy:
            same = shown.setdefault(c.remedy, c.title)
            lines.append(f"  remedy: {escape.terminal(c.remedy if same == c.title else f'as for {same}')}")
    if show_warnings:
        lines += [escape.terminal(f"warning: {w}") for w in verdict.warnings]
    lines.append(plain_verdict_line(verdict))
    return "\n".join(lines) + "\n"


def plain_verdict_line(verdict: Verdict) -> str:
    """:func:`verdict_line` without colour, drawn without rich."""
    evaluated = [c for c in verdict.criteria if c.status is not Status.NOT_APPLICABLE]
    fired = [c.title for c in verdict.criteria if c.fired]
    if fired:
        return (f"FIRED: poor initialisation in {escape.terminal(verdict.trial)} ({', '.join(fired)}; "
                f"{len(fired)} of {len(evaluated)} evaluated criteria fired)")
    return (f"passed: {escape.terminal(verdict.trial)} looks well initialised ({len(evaluated)} of "
            f"{len(verdict.criteria)} criteria evaluated)")


SCAN_STYLES = {"fired": "bold red", "passed": "green", "error": "yellow"}
SCAN_LABELS = {"fired": "FIRED", "passed": "passed", "error": "error"}


def scan_line(results: Sequence[TrialResult]) -> Text:
    """The scan's summary line (all that ``--quiet`` prints)."""
    from rich.text import Text

    from ..scan import summary_line

    head, rest = summary_line(results).split(":", 1)
    style = {"FIRED": "bold red", "ERROR": "bold yellow"}.get(head, "bold green")
    return Text.assemble((head, style), f":{rest}")


def _detail(result: TrialResult) -> str:
    if result.verdict is None:
        return escape.terminal(result.error or "")
    fired = [c.title for c in result.verdict.criteria if c.fired]
    if fired:
        return escape.terminal(", ".join(fired))
    evaluated = sum(c.status is not Status.NOT_APPLICABLE for c in result.verdict.criteria)
    return f"{evaluated} of {len(result.verdict.criteria)} criteria evaluated"


def scan_renderable(results: Sequence[TrialResult]) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(f"PoorWeightInitialization · scan of {len(results)} trials, worst first", style="italic")
    table = Table()
    table.add_column("trial", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("criteria fired / error", overflow="fold")
    table.add_column("steps", no_wrap=True)
    for r in results:
        steps = "-"
        if r.verdict is not None and r.verdict.steps:
            steps = f"{r.verdict.steps[0]}-{r.verdict.steps[-1]}"
        table.add_row(escape.rich_text(r.trial), Text(SCAN_LABELS[r.status], style=SCAN_STYLES[r.status]),
                      escape.rich_text(_detail(r)), steps)
    return Group(title, table, scan_line(results))


def _plain(renderable: Group) -> str:
    """Without colour and without a width limit: a file names every tensor and trial whole."""
    from .console import make_console

    buffer = io.StringIO()
    make_console(file=buffer, color="never").print(renderable)
    return buffer.getvalue()


def render_text(verdict: Verdict) -> str:
    """The table without colour, for files and for tests."""
    return _plain(renderable(verdict))


render = render_text


def render_scan(results: Sequence[TrialResult]) -> str:
    return _plain(scan_renderable(results))

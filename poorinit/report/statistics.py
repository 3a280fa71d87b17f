"""``--statistics``: how often each criterion fired, passed or could not look.

Over a scan this says which criterion carries the gate ("loss decrease fired in
40 of 200 trials, not applicable in 3"), as ``ruff --statistics`` counts
violations per rule. Trials that could not be analysed are counted on their
own line: they have no criteria, and must not vanish from the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..checks.base import Status

if TYPE_CHECKING:
    from ..scan import TrialResult


@dataclass(frozen=True)
class CriterionCounts:
    check: str
    title: str
    fired: int = 0
    passed: int = 0
    not_applicable: int = 0


def counts(results: Sequence[TrialResult]) -> tuple[list[CriterionCounts], int]:
    """Per criterion (in the order first met), and the number of trials not analysed."""
    found: dict[str, list[int]] = {}
    titles: dict[str, str] = {}
    errors = 0
    for r in results:
        if r.verdict is None:
            errors += 1
            continue
        for c in r.verdict.criteria:
            row = found.setdefault(c.check, [0, 0, 0])
            titles[c.check] = c.title
            row[{Status.FIRED: 0, Status.PASSED: 1, Status.NOT_APPLICABLE: 2}[c.status]] += 1
    return [CriterionCounts(check, titles[check], *row) for check, row in found.items()], errors


def renderable(results: Sequence[TrialResult]) -> Group:
    rows, errors = counts(results)
    table = Table()
    for column in ("criterion", "name", "fired", "passed", "n/a"):
        table.add_column(column, justify="right" if column in ("fired", "passed", "n/a") else "left", no_wrap=True)
    for row in rows:
        table.add_row(row.title, row.check, str(row.fired), str(row.passed), str(row.not_applicable))
    word = "trial" if len(results) == 1 else "trials"
    parts: list[Table | Text] = [Text(f"statistics over {len(results)} {word}", style="italic"), table]
    if errors:
        parts.append(Text(f"{errors} {'trial' if errors == 1 else 'trials'} could not be analysed (no criteria)",
                          style="yellow"))
    return Group(*parts)

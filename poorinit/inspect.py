"""What a trial holds: steps, modes, workers and the tensors of a step.

Lists from names, and opens only the first step file of each mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import escape
from .trial import TensorInfo, Trial


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    steps: list[int]
    first_step_file: str
    tensors: list[TensorInfo]


@dataclass(frozen=True)
class Description:
    trial: str
    finished: bool
    workers: list[int]
    modes: list[ModeSummary]


def describe(path: str) -> Description:
    trial = Trial(path)
    modes = []
    for mode in trial.modes:
        steps = trial.steps(mode)
        first = trial.step_files(steps[0], mode)[0]
        with trial.open(first) as reader:
            tensors = reader.infos()
        modes.append(ModeSummary(mode, steps, first.path.name, tensors))
    return Description(str(trial.path), trial.finished, list(trial.workers), modes)


def _steps(steps: list[int]) -> str:
    if len(steps) > 1 and steps[-1] - steps[0] + 1 == len(steps):
        return f"{steps[0]}-{steps[-1]} ({len(steps)} steps)"
    shown = ", ".join(map(str, steps[:10]))
    return shown + (f", ... ({len(steps)} steps)" if len(steps) > 10 else "")


def render_json(description: Description) -> str:
    return escape.json_dumps(asdict(description), indent=2) + "\n"


def render_table(description: Description) -> None:
    from rich.table import Table
    from rich.text import Text

    from .report.console import make_console

    console = make_console()
    state = "finished" if description.finished else "not marked finished"
    console.print(Text.assemble((escape.terminal(description.trial), "bold"),
                                f" · {state} · workers {', '.join(map(str, description.workers))}"))
    for summary in description.modes:
        console.print(escape.rich_text(f"{summary.mode}: steps {_steps(summary.steps)} · tensors of "
                                       f"{summary.first_step_file}", style="italic"))
        table = Table()
        for column in ("tensor", "shape", "dtype", "collections"):
            table.add_column(column, overflow="fold")
        for t in summary.tensors:
            table.add_row(escape.rich_text(t.name), "x".join(map(str, t.shape)) or "scalar", t.dtype,
                          escape.rich_text(", ".join(t.collections) or "-"))
        console.print(table)

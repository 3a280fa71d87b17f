"""What a trial holds: steps, modes, workers and the tensors of a step.

Lists from names, and opens only the first step file of each mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import escape
from .sources import open_trial
from .trial import TensorInfo


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
    format: str = "poorinit"
    # SageMaker Debugger trials: the hook's collections, and its worker names by poorinit's number.
    collections: list[str] = field(default_factory=list)
    worker_names: dict[int, str] = field(default_factory=dict)


def describe(path: str) -> Description:
    trial = open_trial(path)
    modes = []
    for mode in trial.modes:
        steps = trial.steps(mode)
        first = trial.step_files(steps[0], mode)[0]
        with trial.open(first) as reader:
            tensors = reader.infos()
        modes.append(ModeSummary(mode, steps, first.path.name, tensors))
    collections = list(getattr(trial, "collection_names", ()))
    worker_names = getattr(trial, "worker_name", None)
    names = {worker: worker_names(worker) for worker in trial.workers} if worker_names is not None else {}
    return Description(str(trial.path), trial.finished, list(trial.workers), modes, trial.format_name, collections,
                       names)


def _steps(steps: list[int]) -> str:
    if len(steps) > 1 and steps[-1] - steps[0] + 1 == len(steps):
        return f"{steps[0]}-{steps[-1]} ({len(steps)} steps)"
    shown = ", ".join(map(str, steps[:10]))
    return shown + (f", ... ({len(steps)} steps)" if len(steps) > 10 else "")


def render_json(description: Description) -> str:
    return escape.json_dumps(asdict(description), indent=2) + "\n"


def render_table(description: Description, color: str = "auto") -> None:
    from rich.table import Table
    from rich.text import Text

    from .report.console import make_console

    console = make_console(color=color)
    state = "finished" if description.finished else "not marked finished"
    workers = ", ".join(
        f"{worker} ({description.worker_names[worker]})" if worker in description.worker_names else str(worker)
        for worker in description.workers
    )
    kind = "" if description.format == "poorinit" else " · SageMaker Debugger trial"
    console.print(Text.assemble((escape.terminal(description.trial), "bold"), f"{kind} · {state} · workers {workers}"))
    if description.collections:
        console.print(escape.rich_text(f"collections: {', '.join(description.collections)}"))
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

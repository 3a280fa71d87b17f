"""The per-layer diagnosis in every medium: cells, a rich table, Markdown, JSON.

One list of columns (:data:`COLUMNS`) and one cell formatter serve the
terminal table, the Markdown table of ``--format markdown`` and
docs/accuracy.md, so the three never disagree. JSON keeps the raw numbers.

Layer and weight names, activation kinds and the notes that quote them come
from the step files: :func:`cells` and :func:`notes` give them as they are,
and each renderer escapes every one for its medium with poorinit/escape.py
(:func:`~poorinit.escape.terminal`, :func:`~poorinit.escape.markdown`,
:func:`~poorinit.escape.json_dumps` through the JSON report,
:func:`~poorinit.escape.html` in the plot's page).
"""

from __future__ import annotations

import math
from typing import Any

from .. import escape
from ..diagnosis import Diagnosis, LayerRow, describe_mark
from .table import figure

COLUMNS = ("layer", "kind", "std", "x prev", "zero %", "dead %", "saturated %", "gradient std", "weight",
           "weight std", "vs He", "vs Glorot", "mark")


def _g(value: float | None) -> str:
    """Three significant digits: the diagnosis table has thirteen columns to fit."""
    return figure(value, 3)


def _percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{_g(value)}x"


def cells(row: LayerRow) -> list[str]:
    """The row's cells as plain text, in :data:`COLUMNS` order."""
    w = row.weight
    shape = "x".join(str(n) for n in w.shape) if w is not None else ""
    mark = describe_mark(row) if row.mark else ""
    if row.note:
        mark = f"{mark} ({row.note})" if mark else f"({row.note})"
    return [
        row.name,
        row.kind or "?",
        _g(row.std),
        _g(row.variance_ratio),
        _percent(row.zero_share),
        _percent(row.dead_share),
        _percent(row.saturated_share),
        _g(w.gradient_std) if w is not None else "-",
        f"{w.name} [{shape}]" if w is not None else "-",
        _g(w.std) if w is not None else "-",
        _ratio(w.he_ratio) if w is not None else "-",
        _ratio(w.glorot_ratio) if w is not None else "-",
        mark,
    ]


def heading(diagnosis: Diagnosis) -> str:
    step = "no step" if diagnosis.step is None else f"step {diagnosis.step}"
    order = "forward order (recorded)" if diagnosis.ordered_by == "order attribute" else "name order"
    return f"per-layer diagnosis at {step}, layers in {order}"


def notes(diagnosis: Diagnosis) -> list[str]:
    """Sentences under the table: identical units, weights with no shape."""
    lines = list(diagnosis.findings)
    flat = sorted({r.weight.name for r in diagnosis.rows if r.weight is not None and r.weight.note})
    if flat:
        lines.append(
            f"no He/Glorot figure for {', '.join(flat[:3])}{' ...' if len(flat) > 3 else ''}: the weight was recorded "
            "as a flat sample (parameter_stride > 1), so its shape, hence its fan, is unknown"
        )
    if not diagnosis.rows:
        lines.append("no activation input was found at the first analysed step: nothing to diagnose per layer")
    return lines


TERMINAL_COLUMNS = ("layer", "std", "x prev", "0/dead%", "sat%", "grad std", "weight std")


def renderable(diagnosis: Diagnosis) -> Any:
    """A rich Group: the heading, a compact table that fits 80 columns, the notes.

    The terminal folds the thirteen columns of the Markdown table into seven:
    the kind, the feeding weight and the mark go under the layer's name, the
    He and Glorot ratios under the weight's std.
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    # The heading is a line of its own: a table title would wrap to the table's width.
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for column in TERMINAL_COLUMNS:
        if column == "layer":
            table.add_column(column, overflow="fold", min_width=20)
        else:
            table.add_column(column, justify="right", overflow="fold")
    for row in diagnosis.rows:
        # Every cell escaped for the terminal: a name from a file may hold newlines and escape sequences.
        c = {column: escape.terminal(value) for column, value in zip(COLUMNS, cells(row), strict=True)}
        layer = Text(f"{c['layer']} ({c['kind']})")
        if row.weight is not None:
            layer.append(f"\n<- {c['weight']}", style="dim")
        if c["mark"]:
            layer.append(f"\n{c['mark']}", style="bold red" if row.mark else "yellow")
        weight = "-" if row.weight is None else f"{c['weight std']}\nHe {c['vs He']}\nGl {c['vs Glorot']}"
        zero = _g(100 * row.zero_share)
        share = zero if row.dead_share is None else f"{zero}/{_g(100 * row.dead_share)}"
        saturated = "-" if row.saturated_share is None else _g(100 * row.saturated_share)
        table.add_row(layer, c["std"], c["x prev"], share, saturated, c["gradient std"], weight)
    parts: list[Any] = [Text(heading(diagnosis), style="italic"), table]
    parts += [escape.rich_text(line, style="bold red" if line.startswith("symmetric") else "")
              for line in notes(diagnosis)]
    return Group(*parts)


def markdown(diagnosis: Diagnosis) -> list[str]:
    """Markdown lines: a heading line, the table, the notes (cells escaped)."""
    from .markdown import cell

    lines = [f"**{cell(heading(diagnosis))}**", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("| " + " | ".join("---" for _ in COLUMNS) + " |")
    for row in diagnosis.rows:
        values = [cell(v) for v in cells(row)]
        if row.mark:
            values[-1] = f"**{values[-1]}**"
        lines.append("| " + " | ".join(values) + " |")
    lines += [""] + [f"- {cell(line)}" for line in notes(diagnosis)]
    return lines


def _number(value: float | None) -> float | str | None:
    from .json import number

    return number(value)


def document(diagnosis: Diagnosis) -> dict[str, Any]:
    """The ``diagnosis`` member of the JSON verdict (docs/cli.md)."""

    def weight(row: LayerRow) -> dict[str, Any] | None:
        w = row.weight
        if w is None:
            return None
        return {
            "name": w.name,
            "shape": list(w.shape),
            "std": _number(w.std),
            "fan_in": w.fan_in,
            "fan_out": w.fan_out,
            "he_std": _number(None if w.fan_in is None else (2.0 / w.fan_in) ** 0.5),
            "glorot_std": _number(None if w.fan_in is None or w.fan_out is None
                                  else (2.0 / (w.fan_in + w.fan_out)) ** 0.5),
            "he_ratio": _number(w.he_ratio),
            "glorot_ratio": _number(w.glorot_ratio),
            "gradient_std": _number(w.gradient_std),
            "units": w.units,
            "identical_units": w.identical_units,
            "symmetric": w.symmetric,
            "note": w.note,
        }

    return {
        "step": diagnosis.step,
        "ordered_by": diagnosis.ordered_by,
        "layers": [
            {
                "name": row.name,
                "kind": row.kind,
                "std": _number(row.std),
                "variance_ratio": _number(row.variance_ratio),
                "zero_share": _number(row.zero_share),
                "dead_share": _number(row.dead_share),
                "saturated_share": _number(row.saturated_share),
                "weight": weight(row),
                "mark": row.mark or None,
                "note": row.note,
            }
            for row in diagnosis.rows
        ],
        "findings": list(diagnosis.findings),
    }

"""``poorinit plot``: the verdict's evidence as a picture (the optional extra ``plot``).

Four panels, each drawn from figures the analysis already holds (no second
pass over the files):

1. activation variance per layer, in forward order, on a log axis: one line
   per analysed step, the first emphasised (where the signal dies or grows);
2. the gradient spread per step against ``distribution_range``;
3. the loss per step, with the two ``patience`` windows the loss criterion
   compares;
4. per layer at the first analysed step, the share of units that pass no
   gradient: saturated inputs of tanh/sigmoid layers, dead units of ReLU layers,
   against the saturation criterion's limit.

A panel whose criterion could not look says so in the panel, never a blank.
matplotlib is imported only here, with the Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import escape
from .checks.base import CriterionResult
from .checks.saturation import SATURATED_SHARE
from .errors import PoorinitError

if TYPE_CHECKING:
    from .rule import Verdict

SUFFIXES = (".png", ".svg", ".html")
# 12 x 8 inches at 100 dpi: a 1200 x 800 PNG, readable in a pull-request comment.
SIZE_INCHES = (12.0, 8.0)
DPI = 100
PANELS = ("activation variance", "gradient spread", "loss", "units without gradient")
DATA = "data"  # the gid of every artist that draws figures (not limits or notes)


class PlotExtraMissing(PoorinitError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotExtraMissing(
            "poorinit plot needs matplotlib, which is not installed: pip install 'poorinit[plot]'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _criterion(verdict: Verdict, check: str) -> CriterionResult | None:
    return next((c for c in verdict.criteria if c.check == check), None)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=9, color="0.3")


def _positive_floor(values: Sequence[float]) -> float:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return min(positive) / 10 if positive else 1e-12


def _variance_panel(ax: Any, verdict: Verdict) -> None:
    diagnosis = verdict.diagnosis
    ax.set_title("activation variance per layer (forward order)", fontsize=10)
    series = list(diagnosis.variances) if diagnosis is not None else []
    order = [r.name for r in diagnosis.rows] if diagnosis is not None and diagnosis.rows else []
    names = order or sorted({n for _, layers in series for n, _ in layers})
    if not series or not names:
        _note(ax, "no activation inputs were found in the analysed steps")
        return
    every = [v for _, layers in series for _, v in layers]
    floor = _positive_floor(every)
    marks = {r.name: r.mark for r in diagnosis.rows} if diagnosis is not None else {}
    clipped = False
    for index, (step, layers) in enumerate(series):
        values = dict(layers)
        ys = [values.get(n, math.nan) for n in names]
        first = index == 0
        style = {"lw": 2.2 if first else 0.8, "color": "C3" if first else "0.6", "alpha": 1.0 if first else 0.6,
                 "zorder": 3 if first else 2}
        ax.plot(range(len(names)), [y if y > 0 else math.nan for y in ys], marker="o" if first else None,
                label=f"step {step}" if first else ("later steps" if index == 1 else None), gid=DATA, **style)
        zeros = [x for x, y in enumerate(ys) if y == 0]
        if zeros:
            clipped = True
            ax.plot(zeros, [floor] * len(zeros), ls="none", marker="v", ms=8 if first else 4, color=style["color"],
                    zorder=style["zorder"], gid=DATA)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("variance of the input")
    if clipped:
        ax.text(0.02, 0.03, "v = variance 0 (constant input), drawn at the axis floor", transform=ax.transAxes,
                fontsize=8, color="C3")
    for x, name in enumerate(names):
        if marks.get(name):
            ax.axvline(x, color="C3", ls=":", lw=1, gid="limit")
            ax.text(x, 0.97, f" {marks[name]}", transform=ax.get_xaxis_transform(), rotation=90, va="top",
                    ha="left", fontsize=8, color="C3")
    ax.legend(fontsize=8, loc="best")


def _gradient_panel(ax: Any, verdict: Verdict) -> None:
    c = _criterion(verdict, "gradient_spread")
    ax.set_title("gradient spread (5th-95th percentile) per step", fontsize=10)
    if c is None or not c.per_step:
        _note(ax, f"not evaluated: {c.reason}" if c is not None else "the gradient-spread criterion is not run")
        return
    steps = [s for s, _ in c.per_step]
    widths = [w for _, w in c.per_step]
    floor = _positive_floor([*widths, verdict.params.distribution_range])
    ax.plot(steps, [w if w > 0 else math.nan for w in widths], marker="o", color="C0", label="spread", gid=DATA)
    zeros = [s for s, w in zip(steps, widths, strict=True) if w == 0]
    if zeros:
        ax.plot(zeros, [floor] * len(zeros), ls="none", marker="v", ms=8, color="C0", gid=DATA,
                label="spread 0 (every gradient equal), at the axis floor")
    ax.axhline(verdict.params.distribution_range, color="C3", ls="--", lw=1,
               label=f"distribution_range = {verdict.params.distribution_range:g}", gid="limit")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=8, loc="best")


def _loss_panel(ax: Any, verdict: Verdict) -> None:
    c = _criterion(verdict, "loss_decrease")
    ax.set_title("loss per step, with the patience windows compared", fontsize=10)
    if c is None or not c.per_step:
        _note(ax, f"not evaluated: {c.reason}" if c is not None else "the loss criterion is not run")
        return
    steps = [s for s, _ in c.per_step]
    losses = [v if math.isfinite(v) else math.nan for _, v in c.per_step]
    ax.plot(steps, losses, marker="o", color="C2", label=c.tensor or "loss", gid=DATA)
    patience = verdict.params.patience
    if len(steps) >= patience + 1:
        late = steps[-patience:]
        early = steps[max(0, len(steps) - 2 * patience): -patience]
        ax.axvspan(early[0] - 0.4, early[-1] + 0.4, color="C0", alpha=0.1, label="earlier window", gid="limit")
        ax.axvspan(late[0] - 0.4, late[-1] + 0.4, color="C1", alpha=0.15, label=f"last {patience} steps",
                   gid="limit")
    ax.set_xlabel("step")
    ax.legend(fontsize=8, loc="best")


def _units_panel(ax: Any, verdict: Verdict) -> None:
    diagnosis = verdict.diagnosis
    step = diagnosis.step if diagnosis is not None else None
    ax.set_title(f"units passing no gradient at step {step}: saturated or dead", fontsize=10)
    rows = [r for r in (diagnosis.rows if diagnosis is not None else ())
            if r.saturated_share is not None or r.dead_share is not None]
    if not rows:
        _note(ax, "no tanh/sigmoid or ReLU layer was found: no saturated or dead share to show")
        return
    shares = [r.saturated_share if r.saturated_share is not None else r.dead_share for r in rows]
    colors = ["C1" if r.saturated_share is not None else "C4" for r in rows]
    bars = ax.bar(range(len(rows)), [100 * (s or 0.0) for s in shares], color=colors, gid=DATA)
    for bar in bars:
        bar.set_gid(DATA)
    ax.axhline(100 * SATURATED_SHARE, color="C3", ls="--", lw=1, label="saturation limit (50%)", gid="limit")
    ax.set_ylim(0, 105)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r.name} ({'sat.' if r.saturated_share is not None else 'dead'})" for r in rows],
                       rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("% of units")
    ax.legend(fontsize=8, loc="best")


def figure(verdict: Verdict) -> Any:
    """The four-panel matplotlib Figure of a verdict made with ``explain=True``."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=SIZE_INCHES, dpi=DPI)
    for draw, ax in zip((_variance_panel, _gradient_panel, _loss_panel, _units_panel), axes.flat, strict=True):
        draw(ax, verdict)
    status = "FIRED" if verdict.fired else "passed"
    fired = ", ".join(c.title for c in verdict.criteria if c.fired) or "no criterion fired"
    fig.suptitle(f"poorinit: {status} · {verdict.trial} ({fired})", fontsize=11,
                 color="C3" if verdict.fired else "C2")
    fig.tight_layout()
    return fig


def empty_panels(fig: Any) -> list[str]:
    """The panels that draw no figure at all (only limits or a note): what the plot test forbids."""
    empty = []
    for name, ax in zip(PANELS, fig.axes, strict=False):
        # A line counts when it has a finite point; a bar counts even at height 0 (0% is a figure).
        lines = [a for a in ax.lines if a.get_gid() == DATA]
        bars = [a for a in ax.patches if a.get_gid() == DATA]
        finite = any(math.isfinite(float(y)) for line in lines for y in line.get_ydata())
        if not finite and not bars:
            empty.append(name)
    return empty


def _bytes(fig: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def _html(verdict: Verdict, svg: bytes) -> str:
    from .report.diagnosis import COLUMNS, cells, notes

    rows = ""
    if verdict.diagnosis is not None:
        rows = "".join(
            "<tr>" + "".join(f"<td>{escape.html(v)}</td>" for v in cells(r)) + "</tr>\n" for r in verdict.diagnosis.rows
        )
    criteria = "".join(
        f"<li><b>{escape.html(c.title)}</b> ({escape.html(c.status.value)}): {escape.html(c.reason)}"
        + (f"<br>remedy: {escape.html(c.remedy)}" if c.remedy else "")
        + "</li>\n"
        for c in verdict.criteria
    )
    findings = "".join(f"<li>{escape.html(n)}</li>" for n in (notes(verdict.diagnosis) if verdict.diagnosis else []))
    head = "".join(f"<th>{escape.html(c)}</th>" for c in COLUMNS)
    status = "FIRED" if verdict.fired else "passed"
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>poorinit: {escape.html(verdict.trial)}</title>"
        "<style>body{font-family:sans-serif} td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
        "table{border-collapse:collapse}</style></head><body>\n"
        f"<h2>poorinit: {status} · {escape.html(verdict.trial)}</h2>\n<ul>\n{criteria}</ul>\n"
        + svg.decode("utf-8").split("?>", 1)[-1]
        + f"\n<table><tr>{head}</tr>\n{rows}</table>\n<ul>{findings}</ul>\n</body></html>\n"
    )


def render(verdict: Verdict, output: str | Path) -> bytes:
    """The file's content for ``output``'s suffix (.png, .svg or .html)."""
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIXES:
        raise PoorinitError(f"{output}: the plot is written as .png, .svg or .html, not {suffix or 'no suffix'!r}")
    plt = _pyplot()
    fig = figure(verdict)
    try:
        if suffix == ".png":
            return _bytes(fig, "png")
        svg = _bytes(fig, "svg")
        return svg if suffix == ".svg" else _html(verdict, svg).encode("utf-8")
    finally:
        plt.close(fig)


def markdown(verdict: Verdict, image: str, png: bytes | None = None) -> str:
    """The Markdown report with the plot: linked by path, or embedded as a data URI when ``png`` is given."""
    from .report.markdown import render as render_markdown

    target = f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" if png is not None else image
    from .report.markdown import cell

    return render_markdown(verdict) + f"\n![poorinit plot of {cell(verdict.trial)}]({target.replace(' ', '%20')})\n"


__all__ = ["PANELS", "SUFFIXES", "empty_panels", "figure", "markdown", "render"]

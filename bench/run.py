"""poorinit's performance benchmark: prints the table of docs/performance.md.

    python bench/run.py             # the full benchmark (~4 GB of temporary files, ~10 minutes)
    python bench/run.py --smoke     # everything tiny, one run each: checks the benchmark still works
    python bench/run.py --only analyse,startup

Each figure compares two commands run side by side in this one invocation
(medians of alternated runs, fresh processes), never an absolute time against
a fixed mark: these machines are shared and noisy. Trials are built in a
temporary directory and removed at the end. Besides timing, every case
checks that poorinit's figures equal the floor's; a mismatch exits 1.
Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import trials  # noqa: E402
from timing import PYTHON, Pair, poorinit_script, run, side_by_side  # noqa: E402

FLOOR = str(HERE / "floor.py")
MiB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    runs: int
    analyse: tuple[int, int, int]  # steps, layers, elements per tensor
    length_first: tuple[int, int, int]
    length_total: int
    startup_runs: int
    big_elements: int
    big_runs: int
    scan_trials: int
    scan_runs: int


FULL = Sizes(
    runs=5, analyse=(10, 16, 1 << 20), length_first=(10, 16, 1 << 16), length_total=10_000,
    startup_runs=21, big_elements=1 << 28, big_runs=3, scan_trials=2_000, scan_runs=3,
)
SMOKE = Sizes(
    runs=1, analyse=(3, 4, 4096), length_first=(10, 4, 1024), length_total=100,
    startup_runs=3, big_elements=1 << 20, big_runs=1, scan_trials=20, scan_runs=1,
)


@dataclass
class Row:
    figure: str
    compared: str
    measured: str
    target: str
    met: bool | None  # None: not measured


@dataclass
class Context:
    sizes: Sizes
    tmp: Path
    script: str
    rows: list[Row]
    mismatches: list[str]

    def poorinit(self, *args: str) -> list[str]:
        return [self.script, *args]


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def criterion(document: dict, check: str) -> dict:
    return next(c for c in document["criteria"] if c["check"] == check)


def compare_figures(ctx: Context, label: str, verdict_json: str, floor_json: str) -> str:
    """poorinit's per-step figures against the floor's: gradient spreads must be
    equal to the last bit, variance ratios equal to rounding (1e-9)."""
    document, floor = json.loads(verdict_json), json.loads(floor_json)
    spreads = dict(criterion(document, "gradient_spread")["per_step"])
    checked = 0
    for step, figures in floor.items():
        if "gradient_width" in figures:
            checked += 1
            if spreads.get(int(step)) != figures["gradient_width"]:
                ctx.mismatches.append(f"{label}: step {step} gradient spread {spreads.get(int(step))!r} "
                                      f"!= floor {figures['gradient_width']!r}")
    ratios = dict(criterion(document, "activation_variance")["per_step"])
    for step, figures in floor.items():
        if "activation_ratio" in figures:
            checked += 1
            ours = ratios.get(int(step))
            if ours is None or not math.isclose(ours, figures["activation_ratio"], rel_tol=1e-9):
                ctx.mismatches.append(f"{label}: step {step} variance ratio {ours!r} "
                                      f"!= floor {figures['activation_ratio']!r}")
    if any(m.startswith(label) for m in ctx.mismatches):
        return "MISMATCH"
    return f"{checked} figure{'' if checked == 1 else 's'} equal to the floor's"


def verdict_json(ctx: Context, trial: Path) -> str:
    """The JSON report, from a run of its own: the timed runs print the default table."""
    return run(ctx.poorinit("analyze", str(trial), "--format", "json"), ok=(0, 1)).stdout


def case_analyse(ctx: Context) -> None:
    steps, layers, elements = ctx.sizes.analyse
    progress(f"analyse: writing {steps} steps x {layers} layers x {elements:,} elements")
    trial = trials.layered_trial(ctx.tmp / "analyse", steps=steps, layers=layers, elements=elements)
    pair = side_by_side(ctx.poorinit("analyze", str(trial)), [PYTHON, FLOOR, str(trial)], ctx.sizes.runs, ok=(0, 1))
    exact = compare_figures(ctx, "analyse", verdict_json(ctx, trial), pair.b[-1].stdout)
    ctx.rows.append(Row(
        "analyse vs floor",
        f"`poorinit analyze` {seconds(pair.a_seconds)} vs h5py+numpy {seconds(pair.b_seconds)} "
        f"({steps} steps x {layers} layers x {elements:,}-element activation inputs + gradients; {exact})",
        f"{pair.ratio:.2f}x", "<= 1.2x", pair.ratio <= 1.2,
    ))


def case_length(ctx: Context) -> None:
    steps, layers, elements = ctx.sizes.length_first
    total = ctx.sizes.length_total
    progress(f"trial length: writing {steps} steps x {layers} layers x {elements:,} elements, then {total:,} steps")
    short = trials.layered_trial(ctx.tmp / "short", steps=steps, layers=layers, elements=elements)
    long = trials.extend_trial(short, ctx.tmp / "long", total_steps=total)
    pair = side_by_side(ctx.poorinit("analyze", str(long)), ctx.poorinit("analyze", str(short)), ctx.sizes.runs,
                        ok=(0, 1), ok_b=(0, 1))
    same = json.loads(verdict_json(ctx, long))["criteria"] == json.loads(verdict_json(ctx, short))["criteria"]
    if not same:
        ctx.mismatches.append("trial length: the verdicts on the long and the short trial differ")
    ctx.rows.append(Row(
        "trial length",
        f"first {steps} steps ({layers} layers x {elements:,} elements) in {total:,} step files "
        f"{seconds(pair.a_seconds)} vs in {steps} {seconds(pair.b_seconds)}"
        f"{'' if same else '; MISMATCH'}",
        f"{pair.ratio:.2f}x", "<= 1.1x", pair.ratio <= 1.1,
    ))


def heavy_imports(command: list[str]) -> list[str]:
    """Which of numpy, h5py, rich a command imports (python -X importtime)."""
    result = run([PYTHON, "-X", "importtime", *command])
    loaded = {m[1] for m in re.finditer(r"\|\s*(\w+)\s*$", result.stderr, re.M)}
    return sorted(loaded & {"numpy", "h5py", "rich"})


def case_startup(ctx: Context) -> None:
    progress("start-up: poorinit --version vs python -c pass")
    pair = side_by_side([ctx.script, "--version"], [PYTHON, "-c", "pass"], ctx.sizes.startup_runs)
    heavy = heavy_imports([ctx.script, "--version"])
    ctx.rows.append(Row(
        "start-up",
        f"`poorinit --version` {pair.a_seconds * 1000:.0f} ms vs `python -c pass` {pair.b_seconds * 1000:.0f} ms "
        f"(imports {', '.join(heavy) if heavy else 'none of numpy, h5py, rich'})",
        f"{pair.ratio:.2f}x", "<= 3x", pair.ratio <= 3,
    ))


def case_big(ctx: Context) -> None:
    elements = ctx.sizes.big_elements
    progress(f"big tensor: writing one float32 gradient of {elements:,} elements ({elements * 4 / MiB:,.0f} MiB)")
    big = trials.big_gradient_trial(ctx.tmp / "big", elements=elements)
    tiny = trials.big_gradient_trial(ctx.tmp / "tiny", elements=1000)
    analyse = ctx.poorinit("analyze", str(big))
    baseline = statistics.median(
        run(ctx.poorinit("analyze", str(tiny)), ok=(0, 1)).peak_rss_mib for _ in range(3)
    )
    bare = statistics.median(run([PYTHON, "-c", "pass"]).peak_rss_mib for _ in range(3))
    # No warm-up: the file was just written, it is in the page cache, and the
    # floor takes half a minute a run.
    pair: Pair = side_by_side(analyse, [PYTHON, FLOOR, str(big)], ctx.sizes.big_runs, ok=(0, 1), warmup=False)
    peak = max(r.peak_rss_mib for r in pair.a)
    floor_peak = max(r.peak_rss_mib for r in pair.b)
    exact = compare_figures(ctx, "big tensor", verdict_json(ctx, big), pair.b[-1].stdout)
    above = peak - baseline
    ctx.rows.append(Row(
        "big tensor: memory",
        f"peak RSS {peak:,.0f} MiB for a {elements * 4 / MiB:,.0f} MiB float32 gradient ({elements:,} elements): "
        f"{above:,.0f} MiB above the same command on a 1,000-element trial ({baseline:,.0f} MiB), "
        f"{peak - bare:,.0f} MiB above `python -c pass` ({bare:,.0f} MiB); the floor peaks at {floor_peak:,.0f} MiB",
        f"+{above:,.0f} MiB", "<= +400 MiB", above <= 400,
    ))
    ctx.rows.append(Row(
        "big tensor: time",
        f"`poorinit analyze` {seconds(pair.a_seconds)} vs h5py+numpy {seconds(pair.b_seconds)} ({exact})",
        f"{pair.ratio:.2f}x", "<= 1.5x", pair.ratio <= 1.5,
    ))


def case_scan(ctx: Context) -> None:
    if run(ctx.poorinit("scan", "--help"), ok=(0, 1, 2)).returncode != 0:
        ctx.rows.append(Row("scan", "scan: not available yet", "-", ">= 1.7x", None))
        return
    count = ctx.sizes.scan_trials
    progress(f"scan: writing {count:,} small trials")
    root = trials.many_trials(ctx.tmp / "scan", count=count)
    pair = side_by_side(ctx.poorinit("scan", str(root), "--jobs", "1", "--quiet"),
                        ctx.poorinit("scan", str(root), "--jobs", "2", "--quiet"), ctx.sizes.scan_runs,
                        ok=(0, 1), ok_b=(0, 1), warmup=False)
    speedup = pair.ratio
    ctx.rows.append(Row(
        "scan",
        f"{count:,} small trials: `--jobs 2` {seconds(pair.b_seconds)} ({count / pair.b_seconds:,.0f} trials/s) "
        f"vs `--jobs 1` {seconds(pair.a_seconds)} ({count / pair.a_seconds:,.0f} trials/s)",
        f"{speedup:.2f}x", ">= 1.7x", speedup >= 1.7,
    ))


CASES: dict[str, Callable[[Context], None]] = {
    "analyse": case_analyse,
    "length": case_length,
    "startup": case_startup,
    "big": case_big,
    "scan": case_scan,
}


def machine() -> str:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    import h5py
    import numpy

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = first("/proc/meminfo", "MemTotal")
    if memory.endswith(" kB"):
        memory = f"{int(memory[:-3]) / (1 << 20):.1f} GiB"
    return (
        f"{cpus} CPUs ({first('/proc/cpuinfo', 'model name')}), {memory} RAM, Linux {platform.release()}; "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, h5py {h5py.__version__} "
        f"(HDF5 {h5py.version.hdf5_version})"
    )


def render(ctx: Context, smoke: bool, elapsed: float) -> str:
    lines = [
        f"poorinit benchmark{' (smoke: tiny inputs, one run each; the figures mean nothing)' if smoke else ''}",
        f"machine: {machine()}",
        f"runs: medians of {ctx.sizes.runs} alternated runs per side "
        f"({ctx.sizes.startup_runs} for start-up, {ctx.sizes.big_runs} for the big tensor, "
        f"{ctx.sizes.scan_runs} for scan), after one warm-up run each; {elapsed:.0f} s in all",
        "",
        "| figure | what is compared | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for row in ctx.rows:
        met = "n/a" if row.met is None else "yes" if row.met else "**no**"
        lines.append(f"| {row.figure} | {row.compared} | {row.measured} | {row.target} | {met} |")
    if ctx.mismatches:
        lines += ["", "MISMATCHES (poorinit's figures differ from the floor's):", *(f"- {m}" for m in ctx.mismatches)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="poorinit's performance benchmark (docs/performance.md).")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run each (CI)")
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases of {', '.join(CASES)}")
    parser.add_argument("--runs", type=int, help="runs per side (default: 5, 1 with --smoke)")
    parser.add_argument("--tmp", help="where to build the trials (default: the system's temporary directory)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    sizes = SMOKE if args.smoke else FULL
    if args.runs:
        sizes = Sizes(**{**sizes.__dict__, "runs": args.runs, "big_runs": args.runs, "scan_runs": args.runs})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poorinit-bench-", dir=args.tmp) as tmp:
        ctx = Context(sizes, Path(tmp), poorinit_script(), [], [])
        # Run in the temporary directory, so no pyproject.toml [tool.poorinit] of ours applies.
        home = os.getcwd()
        os.chdir(tmp)
        try:
            for name in chosen:
                CASES[name](ctx)
        finally:
            os.chdir(home)
    print(render(ctx, args.smoke, time.perf_counter() - started), end="")
    return 1 if ctx.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

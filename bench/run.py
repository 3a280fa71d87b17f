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
from timing import PYTHON, Pair, interleaved, median_seconds, poorinit_script, run, side_by_side  # noqa: E402

FLOOR = str(HERE / "floor.py")
PHYSICAL = str(HERE / "physical.py")
MiB = 1 << 20
# poorinit as it was when issue 13 was filed (0.1.0 with the work of issues
# 1-7): the scan row compares today's trials per second with its own, measured
# in the same run. Override with --baseline.
BASELINE_REVISION = "c255a5916edcb4b2b5e574762c94629da10d9b5e"


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
    small_runs: int


FULL = Sizes(
    runs=5, analyse=(10, 16, 1 << 20), length_first=(10, 16, 1 << 16), length_total=10_000,
    startup_runs=21, big_elements=1 << 28, big_runs=3, scan_trials=2_000, scan_runs=3, small_runs=21,
)
SMOKE = Sizes(
    runs=1, analyse=(3, 4, 4096), length_first=(10, 4, 1024), length_total=100,
    startup_runs=3, big_elements=1 << 20, big_runs=1, scan_trials=20, scan_runs=1, small_runs=3,
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
    baseline: str | None = None  # revision to compare scan with
    smoke: bool = False

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
    runs = interleaved(
        {
            "poorinit": ctx.poorinit("analyze", str(trial)),
            "physical": [PYTHON, PHYSICAL, str(trial)],
            "floor": [PYTHON, FLOOR, str(trial)],
        },
        ctx.sizes.runs, ok=(0, 1),
    )
    ours, physical, floor = (median_seconds(runs[name]) for name in ("poorinit", "physical", "floor"))
    exact = compare_figures(ctx, "analyse", verdict_json(ctx, trial), runs["floor"][-1].stdout)
    size = f"{steps} steps x {layers} layers x {elements:,}-element activation inputs + gradients"
    ctx.rows.append(Row(
        "analyse vs physical floor",
        f"`poorinit analyze` {seconds(ours)} vs reading the same bytes into preallocated buffers plus one "
        f"`np.var` pass (bench/physical.py) {seconds(physical)} ({size}; {exact})",
        f"{ours / physical:.2f}x", "<= 1.2x", ours / physical <= 1.2,
    ))
    ctx.rows.append(Row(
        "analyse vs floor",
        f"`poorinit analyze` {seconds(ours)} vs h5py+numpy with `np.percentile` (bench/floor.py) {seconds(floor)}",
        f"{ours / floor:.2f}x", "<= 0.25x", ours / floor <= 0.25,
    ))
    peak = max(r.peak_rss_mib for r in runs["poorinit"])
    ctx.rows.append(Row(
        "peak memory",
        f"peak RSS of `poorinit analyze` on the trial above ({steps * layers * elements * 8 / MiB:,.1f} MiB of "
        f"float32 tensors read); bench/physical.py peaks at {max(r.peak_rss_mib for r in runs['physical']):,.0f} MiB, "
        f"bench/floor.py at {max(r.peak_rss_mib for r in runs['floor']):,.0f} MiB",
        f"{peak:,.0f} MiB", "<= 160 MiB", peak <= 160,
    ))


def case_small(ctx: Context) -> None:
    progress("small trials: poorinit analyze on a 10-step trial of kilobytes vs python -c 'import numpy, h5py'")
    trial = trials.layered_trial(ctx.tmp / "small", steps=10, layers=3, elements=256)
    runs = interleaved(
        {"poorinit": ctx.poorinit("analyze", str(trial)), "imports": [PYTHON, "-c", "import numpy, h5py"]},
        ctx.sizes.small_runs, ok=(0, 1),
    )
    ours, imports = median_seconds(runs["poorinit"]), median_seconds(runs["imports"])
    heavy = heavy_imports(ctx.poorinit("analyze", str(trial)), {"rich", "click", "importlib.metadata"})
    ctx.rows.append(Row(
        "small trials",
        f"`poorinit analyze` on 10 steps x 3 layers x 256 values {ours * 1000:.0f} ms vs "
        f"`python -c \"import numpy, h5py\"` {imports * 1000:.0f} ms "
        f"(of rich, click and importlib.metadata it imports {', '.join(heavy) if heavy else 'none'})",
        f"{ours / imports:.2f}x", "<= 1.5x", ours / imports <= 1.5,
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


def heavy_imports(command: list[str], watched: set[str] | None = None) -> list[str]:
    """Which of ``watched`` (numpy, h5py, rich) modules a command imports (python -X importtime)."""
    watched = {"numpy", "h5py", "rich"} if watched is None else watched
    result = run([PYTHON, "-X", "importtime", *command], ok=(0, 1))
    loaded = {m[1] for m in re.finditer(r"\|\s*([\w.]+)\s*$", result.stderr, re.M)}
    return sorted(loaded & watched)


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


def baseline_command(ctx: Context) -> tuple[list[str] | None, str]:
    """The baseline revision's poorinit as a command (its package extracted with
    git archive, run with this interpreter), or None and the reason."""
    import subprocess

    revision = ctx.baseline or BASELINE_REVISION
    target = ctx.tmp / "baseline"
    target.mkdir(exist_ok=True)
    try:
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", revision, "poorinit"],
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return None, (f"the baseline revision {revision[:12]} could not be extracted "
                      f"({detail.decode().strip() or error})")
    return ["env", f"PYTHONPATH={target}", PYTHON, "-m", "poorinit"], revision[:12]


def case_scan(ctx: Context) -> None:
    if run(ctx.poorinit("scan", "--help"), ok=(0, 1, 2)).returncode != 0:
        ctx.rows.append(Row("scan", "scan: not available yet", "-", ">= 1.7x", None))
        return
    count = ctx.sizes.scan_trials
    progress(f"scan: writing {count:,} small trials")
    root = trials.many_trials(ctx.tmp / "scan", count=count)
    commands = {
        "jobs1": ctx.poorinit("scan", str(root), "--jobs", "1", "--quiet"),
        "jobs2": ctx.poorinit("scan", str(root), "--jobs", "2", "--quiet"),
    }
    baseline, revision = baseline_command(ctx)
    if baseline is not None:
        commands["baseline"] = [*baseline, "scan", str(root), "--jobs", "2", "--quiet"]
    cluster = None
    try:
        try:
            import distributed
        except ImportError:
            distributed = None
        if distributed is not None:
            import logging

            logging.getLogger("distributed").setLevel(logging.ERROR)
            progress("scan: starting a 2-worker LocalCluster")
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address=None)
            commands["dask"] = ctx.poorinit("scan", str(root), "--scheduler", cluster.scheduler_address, "--quiet")
        runs = interleaved(commands, ctx.sizes.scan_runs, ok=(0, 1), warmup=False)
    finally:
        if cluster is not None:
            cluster.close()
    times = {name: median_seconds(r) for name, r in runs.items()}

    def rate(name: str) -> str:
        return f"{seconds(times[name])} ({count / times[name]:,.0f} trials/s)"

    speedup = times["jobs1"] / times["jobs2"]
    ctx.rows.append(Row(
        "scan", f"{count:,} small trials: `--jobs 2` {rate('jobs2')} vs `--jobs 1` {rate('jobs1')}",
        f"{speedup:.2f}x", ">= 1.7x", speedup >= 1.7,
    ))
    if "baseline" in times:
        gain = times["baseline"] / times["jobs2"]
        ctx.rows.append(Row(
            "scan vs issue 13's start",
            f"`--jobs 2` {rate('jobs2')} vs the same with poorinit {revision} {rate('baseline')}",
            f"{gain:.2f}x", ">= 2x", gain >= 2,
        ))
    else:
        ctx.rows.append(Row("scan vs issue 13's start", f"not measured: {revision}", "-", ">= 2x", None))
    if "dask" in times:
        share = times["jobs2"] / times["dask"]
        ctx.rows.append(Row(
            "scan on Dask",
            f"`--scheduler` on a 2-worker LocalCluster {rate('dask')} vs `--jobs 2` {rate('jobs2')} (trials/s ratio)",
            f"{share:.2f}x", ">= 0.9x", share >= 0.9,
        ))
    else:
        ctx.rows.append(Row("scan on Dask", "not measured: dask.distributed is not installed "
                            "(pip install 'poorinit[dask]')", "-", ">= 0.9x", None))


def case_recording(ctx: Context) -> None:
    """The recorder's rows come from bench/recording.py (issue 13's recording
    and trial-size targets), which provides ``rows(smoke, tmp)`` returning
    ``(figure, compared, measured, target, met)`` tuples."""
    try:
        import recording  # type: ignore[import-not-found]
    except ImportError:
        reason = "not yet measured: bench/recording.py (the recorder's benchmark) is not in this tree"
        ctx.rows.append(Row("recording", reason, "-", "<= 1.3x", None))
        ctx.rows.append(Row("trial size", reason, "-", "compression's read cost in the table", None))
        return
    progress("recording: bench/recording.py")
    found = recording.rows(ctx.smoke, ctx.tmp / "recording", runs=ctx.sizes.runs)
    for figure, compared, measured, target, met in found:
        ctx.rows.append(Row(figure, compared, measured, target, met))


CASES: dict[str, Callable[[Context], None]] = {
    "analyse": case_analyse,
    "small": case_small,
    "length": case_length,
    "startup": case_startup,
    "big": case_big,
    "scan": case_scan,
    "recording": case_recording,
}


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: on a shared machine, how loaded it was."""
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


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


# Why a row falls short where it has, as measured (the figures behind each are in
# docs/performance.md); a recording row's reason quotes the same run's rows for its model.
_SECOND_CORE = (
    "poorinit measures the tensors on both cores and the floor on one, so the ratio rests on the second core being "
    "free; with the analysis unchanged it read {spread} in the other full runs of issue 13's fourth round, and "
    "0.34-0.39x the old floor at load 2.7-2.9 in its third."
)
WHY_SHORT = {
    "analyse vs physical floor": _SECOND_CORE.format(spread="0.77-0.85x"),
    "analyse vs floor": _SECOND_CORE.format(spread="0.22-0.23x"),
    "scan": (
        "Two worker processes against one in-process scan: each worker pays Python's, numpy's and poorinit's "
        "imports (about 0.3 s) before its first trial, which no longer vanishes beside the trials (about 2.5 ms "
        "each since step files are read without HDF5); the idle LocalCluster beside it takes a tenth of a core."
    ),
    "scan vs issue 13's start": (
        "Read without HDF5 a scan trial costs about 2.5 ms in one process (7.9 ms before): the rest is the "
        "statistics and the scan's own dispatch; the row rests on the second core being free."
    ),
    "scan on Dask": (
        "A Dask worker costs more per trial than a --jobs worker (its event loop, its statistical profiler, "
        "serialising each batch's results), and this row swings most with load (0.75-1.34x across runs)."
    ),
    "small trials": (
        "Importing numpy and h5py is the reference; poorinit's own imports and reading ten step files are the rest; "
        "wall time adds load."
    ),
    "trial length": "Listing 10,000 names (a scandir and a parse per name) is the difference; load makes it grow.",
}


def _model(row: Row) -> str:
    """The model a recording row measures: its comparison's text up to the batch size."""
    return row.compared.split(", batch")[0]


def gap_name(row: Row) -> str:
    """The row's figure, with the model for a recording row (three share the figure)."""
    return f"{row.figure}, {_model(row)}" if row.figure == "recording" else row.figure


def why_short(rows: list[Row], index: int) -> str:
    row = rows[index]
    if row.figure == "recording":
        model = _model(row)
        parts = {r.figure: r.measured for r in rows[index + 1 :] if r.compared.startswith(model)}
        training = parts.get("recording: the training thread's part", "?")
        writer = parts.get("recording: the writer's part", "?")
        second = next((r.measured for r in rows if r.figure == "recording: the second core"), "?")
        return (
            f"The recorder's own work on the training thread, no file written, is {training}; the writer thread's "
            f"CPU (the writer's part: {writer}) runs beside it on the second core, where on this machine any work "
            f"slows the training thread (the second core: {second}), and shares the GIL with it; at the end "
            "close() waits for the last file."
        )
    return WHY_SHORT.get(row.figure, "No reason recorded here: see docs/performance.md.")


def render(ctx: Context, smoke: bool, elapsed: float, load_before: str) -> str:
    lines = [
        f"poorinit benchmark{' (smoke: tiny inputs, one run each; the figures mean nothing)' if smoke else ''}",
        f"machine: {machine()}",
        f"runs: medians of {ctx.sizes.runs} alternated runs per side "
        f"({ctx.sizes.startup_runs} for start-up and small trials, {ctx.sizes.big_runs} for the big tensor, "
        f"{ctx.sizes.scan_runs} for scan), after one warm-up run each (none for scan); {elapsed:.0f} s in all; "
        f"load average before the run {load_before}",
        "",
        "| figure | what is compared | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for row in ctx.rows:
        met = "n/a" if row.met is None else "yes" if row.met else "**no**"
        lines.append(f"| {row.figure} | {row.compared} | {row.measured} | {row.target} | {met} |")
    gaps = [f"- {gap_name(row)}: {row.measured} against {row.target}. {why_short(ctx.rows, index)}"
            for index, row in enumerate(ctx.rows) if row.met is False]  # fmt: skip
    if gaps and not smoke:
        lines += ["", "Rows not met, and why (docs/performance.md, \"What the figures say, and the gaps\"):", *gaps]
    if ctx.mismatches:
        lines += ["", "MISMATCHES (poorinit's figures differ from the floor's):", *(f"- {m}" for m in ctx.mismatches)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="poorinit's performance benchmark (docs/performance.md).")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run each (CI)")
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases of {', '.join(CASES)}")
    parser.add_argument("--runs", type=int, help="runs per side (default: 5, 1 with --smoke)")
    parser.add_argument("--tmp", help="where to build the trials (default: the system's temporary directory)")
    parser.add_argument("--scan-trials", type=int, help="trials the scan cases walk (default: 2,000, 20 with --smoke)")
    parser.add_argument("--baseline", help=f"git revision the scan is compared with (default {BASELINE_REVISION[:12]})")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    sizes = SMOKE if args.smoke else FULL
    if args.runs:
        sizes = Sizes(**{**sizes.__dict__, "runs": args.runs, "big_runs": args.runs, "scan_runs": args.runs})
    if args.scan_trials:
        sizes = Sizes(**{**sizes.__dict__, "scan_trials": args.scan_trials})
    # Installed packages have their bytecode cached; a sandbox that forbids
    # writing it would make every run compile poorinit again, a cost no user pays.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    load_before = load_average()
    if args.tmp is not None:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="poorinit-bench-", dir=args.tmp) as tmp:
        ctx = Context(sizes, Path(tmp), poorinit_script(), [], [], args.baseline, args.smoke)
        # Run in the temporary directory, so no pyproject.toml [tool.poorinit] of ours applies.
        home = os.getcwd()
        os.chdir(tmp)
        try:
            for name in chosen:
                CASES[name](ctx)
        finally:
            os.chdir(home)
    print(render(ctx, args.smoke, time.perf_counter() - started, load_before), end="")
    return 1 if ctx.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

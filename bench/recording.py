"""What recording costs a training loop, and what compression costs a reader (issue 13, recording rows).

    python bench/recording.py            # batch 64, 5 alternated runs of 10 steps per side
    python bench/recording.py --smoke    # tiny: checks the benchmark still works

For a small CNN, a 2-layer transformer encoder and an MLP (batch 64, SGD), it
times training steps with and without a Recorder (files written on the
background threads, and written in the step for comparison), as medians of
alternated runs in this one process; the Recorder is made, and its files
closed, inside the measured time. A third row per model says what the writer takes
to write one recorded step file (its tensors written again with TrialWriter,
CPU time of the writing thread): by poorinit's own writer (h5write), and by
HDF5 for comparison; against the unrecorded step, and a fourth
what the recorder itself takes on the training thread (recorded steps whose
files are not written, CPU time of that thread against an unrecorded step's).
One row says what any work on the other core costs the training thread on
this machine (an unrecorded step with another process busy there). Then it records the same steps plain,
gzip- and lzf-compressed, and compares the trials' sizes and how long
``poorinit.analyze`` takes to read each. Rows follow bench/run.py's table;
bench/run.py can call :func:`rows` and add them to its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

import poorinit
from poorinit.torch import Recorder

Row = tuple[str, str, str, str, bool | None]  # figure, what is compared, measured, target, met


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )  # fmt: skip


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(32, 64)
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def mlp() -> nn.Module:
    widths = (128, 256, 256, 256)
    layers = (m for a, b in zip(widths, widths[1:], strict=False) for m in (nn.Linear(a, b), nn.ReLU()))
    return nn.Sequential(*layers, nn.Linear(256, 10))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "small CNN (32x32x3)": (small_cnn, (3, 32, 32)),
    "2-layer transformer (seq 16, width 64)": (Transformer, (16, 32)),
    "MLP 3x256": (mlp, (128,)),
}


def train(
    model: nn.Module,
    shape: tuple[int, ...],
    batch: int,
    steps: int,
    recorder: Callable[[], Recorder] | None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds for ``steps`` training steps (recorded ones when a recorder is given), files closed included.

    ``recorder`` makes the Recorder: it is made inside the measured time, so
    whatever it starts (its writer threads) is paid for in the figure.
    ``clock`` is wall time unless told (``time.thread_time``: this thread's CPU time).
    """
    generator = torch.Generator().manual_seed(0)
    data = [(torch.randn(batch, *shape, generator=generator), torch.randint(0, 10, (batch,))) for _ in range(steps)]
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    started = clock()
    rec = recorder() if recorder is not None else None
    for x, y in data:
        if rec is None:
            loss = loss_fn(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            continue
        with rec.step():
            loss = loss_fn(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            rec.loss(loss)
            optimiser.step()
    if rec is not None:
        rec.close()  # waits for the writer threads: their work is counted
    return clock() - started


class _Discarding:
    """Takes a recorded step as the background writer does, and drops it: no file, no attention logits
    formed (the writer thread's work); what is left is the recorder's work on the training thread."""

    broken = False

    def __init__(self) -> None:
        import threading

        self.idle = threading.Event()  # the recorder's gate for the writer: nobody waits on it here

    def write_step(self, step: int, **groups: object) -> None:
        pass

    def join(self) -> None:
        pass


def discarding_recorder(model: nn.Module, path: Path, steps: int) -> Recorder:
    """A Recorder whose steps are gathered (hooks, function mode, copies) and then dropped unwritten."""
    rec = Recorder(model, path, steps=steps, background=False)
    rec._background = _Discarding()  # type: ignore[assignment]
    return rec


def training_thread_row(
    label: str, make: Callable[[], nn.Module], shape: tuple[int, ...], batch: int, steps: int, runs: int, scratch: Path
) -> Row:
    """The recorder's own work on the training thread: CPU time of recorded steps whose files are not written."""
    torch.manual_seed(0)
    model = make()
    train(model, shape, batch, 1, None)  # warm-up
    plain, gathered = [], []
    for run in range(max(runs, 3)):  # alternated
        plain.append(train(model, shape, batch, steps, None, clock=time.thread_time))
        recorder = partial(discarding_recorder, model, scratch / f"discarded{run}", steps)
        gathered.append(train(model, shape, batch, steps, recorder, clock=time.thread_time))
    return _per_step_row(
        "recording: the training thread's part",
        f"{label}: a recorded step with its file not written (hooks, function mode, copies), CPU time of the "
        "training thread, vs an unrecorded step's",
        gathered, plain, steps, "n/a (what the recorder itself takes from the loop)",
    )  # fmt: skip


def _per_step_row(figure: str, compared: str, runs: list[float], base: list[float], steps: int, target: str) -> Row:
    """A row of two sides' medians per step, and their ratio: for comparison, no target to meet."""
    measured, reference = statistics.median(runs) / steps, statistics.median(base) / steps
    return (figure, compared, f"{measured * 1e3:.1f} ms vs {reference * 1e3:.1f} ms ({measured / reference:.2f}x)",
            target, None)  # fmt: skip


def writer_row(label: str, trial: Path, step: int, base: float, scratch: Path, runs: int) -> Row:
    """What HDF5 costs to write one recorded step file: its tensors written again by TrialWriter.

    The file of a step after the first (no weights) is read back, datasets and
    attributes alike, and written again ``runs`` times without fsync; the CPU
    time of the writing thread is what it takes from a GIL-bound training loop.
    """
    import h5py
    import numpy as np

    from poorinit import format as fmt
    from poorinit.writer import TrialWriter

    tensors: dict[str, tuple[np.ndarray, list[str]]] = {}
    attrs: dict[str, dict[str, object]] = {}

    def plain(value: object) -> object:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray):
            return value.tolist()
        return value.item() if isinstance(value, np.generic) else value

    (path,) = trial.glob(f"*{step}_train_0.h5")
    with h5py.File(path, "r") as f:
        root = {k: plain(v) for k, v in f.attrs.items() if k not in fmt.REQUIRED_ATTRS}

        def take(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset):
                extra = {k: plain(v) for k, v in item.attrs.items() if k != fmt.COLLECTIONS_ATTR}
                tensors[name] = (item[()], str(plain(item.attrs[fmt.COLLECTIONS_ATTR])).split(","))
                if extra:
                    attrs[name] = extra

        f[fmt.TENSOR_GROUP].visititems(take)
    count = len(tensors) + sum(len(a) for a in attrs.values()) + len(root) + len(fmt.REQUIRED_ATTRS)
    size = sum(array.nbytes for array, _ in tensors.values())
    def cpu_time(writer: TrialWriter) -> float:
        started = time.thread_time()
        writer.write_step(step, tensors=tensors, attrs=attrs, root_attrs=root)
        return time.thread_time() - started

    from poorinit import h5write

    def through_hdf5(*args: object) -> None:
        raise h5write.Unwritable("the benchmark's HDF5 side")

    # The recorder's writer (poorinit/h5write.py) against HDF5 writing the same file (as it did before issue 13's
    # fifth round, and still does for compressed trials), alternated, after one unmeasured file each.
    ours = TrialWriter(scratch / f"{path.stem}-ours", fsync=False)
    theirs = TrialWriter(scratch / f"{path.stem}-hdf5", fsync=False)
    own, by_hdf5 = [], []
    for _ in range(max(runs, 3) + 1):
        own.append(cpu_time(ours))
        original, h5write.write_step_file = h5write.write_step_file, through_hdf5  # type: ignore[assignment]
        try:
            by_hdf5.append(cpu_time(theirs))
        finally:
            h5write.write_step_file = original  # type: ignore[assignment]
    written, hdf5 = statistics.median(own[1:]), statistics.median(by_hdf5[1:])
    return (
        "recording: the writer's part",
        f"{label}: writing one recorded step file (step {step}: {len(tensors)} datasets, {count} attributes "
        f"with the tensors' collections, {size / 2**20:.2f} MiB), no fsync, CPU time of the writing thread: "
        "poorinit's own writer (h5write) and HDF5 writing the same file, vs an unrecorded step",
        f"{written * 1e3:.1f} ms and {hdf5 * 1e3:.1f} ms vs {base * 1e3:.1f} ms "
        f"({written / base:.2f}x and {hdf5 / base:.1f}x)",
        "n/a (what the writer threads take from the loop)",
        None,
    )


# Busy on the other core for at most a minute, in a process of its own (no GIL shared): memory copies.
_BUSY = (
    "import time\nimport numpy as np\na = np.ones(1 << 24, np.uint8)\nb = np.empty_like(a)\n"
    "end = time.monotonic() + 60\nwhile time.monotonic() < end:\n    np.copyto(b, a)\n"
)


def second_core_row(label: str, make: Callable[[], nn.Module], shape: tuple[int, ...], batch: int, steps: int,
                    runs: int) -> Row:  # fmt: skip
    """What any work on the machine's other core costs the training thread: an unrecorded step with
    another process busy there, against one with that core idle. The writer thread's work lands there."""
    import subprocess

    torch.manual_seed(0)
    model = make()
    train(model, shape, batch, 1, None)  # warm-up
    idle, busy = [], []
    for _ in range(max(runs, 3)):  # alternated
        idle.append(train(model, shape, batch, steps, None))
        process = subprocess.Popen([sys.executable, "-c", _BUSY])
        try:
            time.sleep(0.2)  # under way
            busy.append(train(model, shape, batch, steps, None))
        finally:
            process.kill()
            process.wait()
    return _per_step_row(
        "recording: the second core",
        f"{label}: an unrecorded step with another process copying memory on the other core, vs with that core "
        "idle (what the writer thread's work costs the training thread on this machine)",
        busy, idle, steps, "n/a (the machine)",
    )  # fmt: skip


def size_of(trial: Path) -> int:
    return sum(f.stat().st_size for f in trial.rglob("*") if f.is_file())


# Issue 13's target: a recorded step costs at most 1.3x an unrecorded one (wall time).
TARGET = 1.3


def rows(smoke: bool = False, tmp: str | os.PathLike[str] | None = None, *, runs: int = 5) -> list[Row]:
    """The recording rows; bench/run.py calls ``rows(smoke, tmp)`` and adds them to its table."""
    batch, steps = (8, 2) if smoke else (64, 10)
    runs = 1 if smoke else runs
    made = tmp is not None and not Path(tmp).exists()
    if tmp is not None:
        Path(tmp).mkdir(parents=True, exist_ok=True)
    # One torch thread, from bench/run.py too: a shared machine's runs compare, and the
    # second core is left to the recorder's writer threads, as issue 13's target assumes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _rows(smoke, tmp, runs, batch, steps)
    finally:
        torch.set_num_threads(threads)
        if made:
            Path(tmp).rmdir()  # type: ignore[arg-type]


def _rows(smoke: bool, tmp: str | os.PathLike[str] | None, runs: int, batch: int, steps: int) -> list[Row]:
    found: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="poorinit-bench-recording-", dir=tmp) as directory:
        root = Path(directory)
        counter = 0

        def fresh() -> Path:
            nonlocal counter
            counter += 1
            return root / f"t{counter}"

        for label, (make, shape) in MODELS.items():
            torch.manual_seed(0)
            model = make()
            train(model, shape, batch, 1, None)  # warm-up
            plain, background, inline = [], [], []
            for _ in range(runs):  # alternated, so that load on the machine hits all sides alike
                plain.append(train(model, shape, batch, steps, None))
                background.append(train(model, shape, batch, steps, partial(Recorder, model, fresh(), steps=steps)))
                inline.append(
                    train(model, shape, batch, steps, partial(Recorder, model, fresh(), steps=steps, background=False))
                )
            base = statistics.median(plain) / steps
            last = root / f"t{counter - 1}"  # the last background-written trial
            for name, times in (("background writer", background), ("written in the step", inline)):
                per_step = statistics.median(times) / steps
                ratio = per_step / base
                found.append((
                    "recording",
                    f"{label}, batch {batch}: a recorded step ({name}, the final wait for the writer included) "
                    "vs an unrecorded one",
                    f"{per_step * 1e3:.1f} ms vs {base * 1e3:.1f} ms ({ratio:.2f}x)",
                    f"<= {TARGET}x" if name == "background writer" else "n/a (for comparison)",
                    (ratio <= TARGET) if name == "background writer" and not smoke else None,
                ))  # fmt: skip
            found.append(writer_row(label, last, min(1, steps - 1), base, root / "rewritten", runs))
            found.append(training_thread_row(label, make, shape, batch, steps, runs, root))

        label = "2-layer transformer (seq 16, width 64)"
        found.append(second_core_row(label, *MODELS[label], batch, steps, runs))

        # Size and read cost of compression, on the MLP's trial (weights at the first step, gradients at every step).
        make, shape = MODELS["MLP 3x256"]
        trials: dict[str | None, Path] = {}
        for compression in (None, "gzip", "lzf"):
            torch.manual_seed(0)
            model = make()
            trials[compression] = fresh()
            recorder = partial(Recorder, model, trials[compression], steps=steps, compression=compression)
            train(model, shape, batch, steps, recorder)
        reads: dict[str | None, list[float]] = {c: [] for c in trials}
        for _ in range(max(runs, 3)):
            for compression, trial in trials.items():
                started = time.perf_counter()
                poorinit.analyze(trial, steps=steps)
                reads[compression].append(time.perf_counter() - started)
        plain_size, plain_read = size_of(trials[None]), statistics.median(reads[None])
        for compression in ("gzip", "lzf"):
            size, read = size_of(trials[compression]), statistics.median(reads[compression])
            found.append((
                "trial size",
                f"MLP trial ({steps} steps) {compression}-compressed vs plain",
                f"{size / 2**20:.2f} MiB vs {plain_size / 2**20:.2f} MiB ({size / plain_size:.2f}x)",
                "opt-in compression, size in the table",
                None,
            ))  # fmt: skip
            found.append((
                "trial size",
                f"read cost: `poorinit.analyze` of the {compression} trial vs the plain one",
                f"{read * 1e3:.0f} ms vs {plain_read * 1e3:.0f} ms ({read / plain_read:.2f}x)",
                "read cost in the table",
                None,
            ))  # fmt: skip
    return found


def render(found: list[Row]) -> str:
    lines = ["| figure | what is compared | measured | target | met |", "|---|---|---|---|---|"]
    for figure, compared, measured, target, met in found:
        shown = "n/a" if met is None else "yes" if met else "**no**"
        lines.append(f"| {figure} | {compared} | {measured} | {target} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What recording costs (issue 13).")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run each")
    parser.add_argument("--runs", type=int, default=5, help="alternated runs per side (default 5)")
    parser.add_argument("--tmp", help="where to write the trials (default: the system's temporary directory)")
    args = parser.parse_args(argv)
    print(render(rows(smoke=args.smoke, runs=args.runs, tmp=args.tmp)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

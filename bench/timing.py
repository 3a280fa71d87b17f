"""Running commands as the user would, and measuring them side by side.

Every figure is a ratio of two medians whose runs alternate (A, B, A, B, ...),
so that a neighbour's load on a shared machine falls on both sides alike.
Each run is a fresh process; its wall time and peak resident set come from
``os.wait4`` (the kernel's own account of that one child) in a tiny launcher.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


# Starts the measured command and reports its wall time, peak RSS and exit code.
# A child's peak RSS (ru_maxrss) counts the memory of the process it was forked
# from, so the command is started from this bare interpreter (python -S, a few
# MiB), not from the benchmark, which holds numpy and h5py.
LAUNCHER = """
import os, sys, time
report, command = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{elapsed!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run(command: Sequence[str], *, ok: Sequence[int] = (0,)) -> Run:
    """Run ``command`` to completion; raise when its exit code is not in ``ok``."""
    with tempfile.TemporaryDirectory(prefix="run-") as tmp:
        report = Path(tmp) / "report"
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            subprocess.run(
                [sys.executable, "-S", "-c", LAUNCHER, str(report), *command],
                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, check=True,
            )
        elapsed, maxrss_kib, returncode = report.read_text().split()
        result = Run(float(elapsed), int(maxrss_kib) / 1024, int(returncode), out.read_text(), err.read_text())
    if result.returncode not in ok:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return result


@dataclass(frozen=True)
class Pair:
    """Runs of two commands, alternated."""

    a: list[Run]
    b: list[Run]

    @property
    def a_seconds(self) -> float:
        return statistics.median(r.seconds for r in self.a)

    @property
    def b_seconds(self) -> float:
        return statistics.median(r.seconds for r in self.b)

    @property
    def ratio(self) -> float:
        """Median time of A over median time of B."""
        return self.a_seconds / self.b_seconds


def side_by_side(
    a: Sequence[str], b: Sequence[str], runs: int, *, ok: Sequence[int] = (0,), ok_b: Sequence[int] = (0,),
    warmup: bool = True,
) -> Pair:
    """``runs`` alternated runs of each command (exit codes ``ok`` for A,
    ``ok_b`` for B), after one unmeasured run of each, so that both find the
    files in the page cache."""
    if warmup:
        run(a, ok=ok)
        run(b, ok=ok_b)
    pair = Pair([], [])
    for index in range(runs):
        # Alternate which goes first, so neither always runs on a warmer machine.
        if index % 2 == 0:
            pair.a.append(run(a, ok=ok))
            pair.b.append(run(b, ok=ok_b))
        else:
            pair.b.append(run(b, ok=ok_b))
            pair.a.append(run(a, ok=ok))
    return pair


def interleaved(
    commands: dict[str, Sequence[str]], runs: int, *, ok: Sequence[int] = (0,), warmup: bool = True
) -> dict[str, list[Run]]:
    """``runs`` runs of each command, interleaved (the order rotates from one
    round to the next, so that none always runs first), after one unmeasured
    run of each."""
    names = list(commands)
    if warmup:
        for name in names:
            run(commands[name], ok=ok)
    results: dict[str, list[Run]] = {name: [] for name in names}
    for index in range(runs):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(run(commands[name], ok=ok))
    return results


def median_seconds(runs: Sequence[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def poorinit_script() -> str:
    """The installed console script itself, not a shell shim in front of it
    (pyenv's adds a bash process to every call)."""
    candidate = Path(sysconfig.get_path("scripts")) / ("poorinit.exe" if os.name == "nt" else "poorinit")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("poorinit")
    if found is None:
        raise RuntimeError("the poorinit command is not installed (pip install -e .)")
    return found


PYTHON = sys.executable

"""Scanning many trials: find them below roots, analyse them in parallel.

Discovery lists names only. A trial is a directory holding at least one entry
named like a step file (whatever it is: a broken link is the trial's error to
report, not a reason to skip it); the walk never descends into a trial (its subdirectories belong to it),
never follows a symbolic link out of the root it started from, and never
enters a directory twice, so a link loop ends the walk instead of looping.

Analysis goes through :func:`analyse_trial`, which returns a
:class:`TrialResult` holding a verdict or an error and never raises: one
damaged trial is one row of the report, not the end of the scan. The same
function runs in-process (``--jobs 1``), in a process pool (``--jobs N``; h5py
holds the GIL, so threads would not scale) or on a Dask cluster
(``--scheduler``), so the three give identical results.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from . import format as fmt
from .errors import PoorinitError

if TYPE_CHECKING:
    from .checks.base import Check
    from .params import RuleParams
    from .rule import Verdict

FIRED, PASSED, ERROR = "fired", "passed", "error"


@dataclass(frozen=True)
class TrialResult:
    """What became of one trial: a verdict, or the reason there is none."""

    trial: str
    verdict: Verdict | None = None
    error: str | None = None
    # When the analysis started (seconds since the epoch) and how long it took:
    # JUnit's timestamp and time. None when not measured; not part of equality,
    # so two scans of the same trials compare equal.
    started: float | None = field(default=None, compare=False)
    seconds: float | None = field(default=None, compare=False)

    @property
    def status(self) -> str:
        if self.verdict is None:
            return ERROR
        return FIRED if self.verdict.fired else PASSED

    @property
    def exit_code(self) -> int:
        return {FIRED: 1, PASSED: 0, ERROR: 2}[self.status]


@dataclass(frozen=True)
class Discovery:
    """The trials found below the roots, and the directories that could not be listed."""

    trials: list[str]
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _holds_step_files(entries: Sequence[os.DirEntry[str]]) -> bool:
    """Whether the directory is a trial: any entry *named* like a step file counts.

    Whatever the entry is (an unfetched git-annex or DVC link, a directory, a
    pipe) it is the trial's to report: skipping it would let a trial whose
    data was never fetched vanish from the scan, and the scan pass without it.
    """
    return any(fmt.STEP_FILE_RE.match(e.name) for e in entries)


def _is_smdebug_trial(directory: str, entries: Sequence[os.DirEntry[str]]) -> bool:
    """A SageMaker Debugger trial (events/ or index/ holding step directories; poorinit.smdebug)."""
    if not any(e.name in ("events", "index") for e in entries):
        return False
    from .smdebug.layout import looks_like_smdebug
    from .store import LocalStore

    return looks_like_smdebug(LocalStore(), directory)


def _absolute(shown: str) -> str:
    """Where a worker reads a trial: an absolute path, or the URL as it is."""
    from .sources import is_url

    return shown if is_url(shown) else os.path.abspath(shown)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def discover(roots: Iterable[str | os.PathLike[str]]) -> Discovery:
    """Every trial at or below ``roots``, sorted, each once.

    Paths keep the spelling of the root they were found under, so a report
    names ``runs/a`` when the user typed ``runs``. A root that is not a
    directory raises :class:`PoorinitError`; a directory below it that cannot
    be listed is recorded in ``unreadable`` and skipped.
    """
    trials: list[str] = []
    unreadable: list[tuple[str, str]] = []
    visited: set[tuple[int, int]] = set()
    for root in map(str, roots):
        from .sources import is_url

        if is_url(root):  # an object store: one recursive listing (poorinit.remote)
            from .remote import discover as discover_remote

            trials.extend(discover_remote(root))
            continue
        if not os.path.isdir(root):
            problem = "no such directory" if not os.path.exists(root) else "is a file, not a directory of trials"
            raise PoorinitError(f"{root}: {problem}")
        real_root = os.path.realpath(root)
        stack = [root]
        while stack:
            directory = stack.pop()
            try:
                info = os.stat(directory)
                identity = (info.st_dev, info.st_ino)
                if identity in visited:
                    continue
                visited.add(identity)
                with os.scandir(directory) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as error:
                unreadable.append((directory, error.strerror or str(error)))
                continue
            if _holds_step_files(entries) or _is_smdebug_trial(directory, entries):
                trials.append(directory)
                continue
            for entry in reversed(entries):
                try:
                    if not entry.is_dir():
                        continue
                    if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_root):
                        continue
                except OSError:
                    continue
                stack.append(entry.path)
    return Discovery(sorted(trials), unreadable)


def analyse_trial(
    path: str, params: RuleParams, shown: str | None = None, checks: Sequence[type[Check]] | None = None
) -> TrialResult:
    """Analyse one trial; never raises (a worker must hand every outcome back).

    ``path`` is where the worker reads the trial (absolute, for a cluster whose
    workers run elsewhere); ``shown`` is how the report names it, and replaces
    ``path`` in the verdict and in error messages.
    """
    from .analysis import evaluate
    from .sources import open_trial

    shown = path if shown is None else shown
    started, clock = time.time(), time.perf_counter()
    try:
        verdict = evaluate(open_trial(path), params, checks)
    except PoorinitError as error:
        return TrialResult(shown, error=" ".join(str(error).replace(path, shown).split()), started=started,
                           seconds=time.perf_counter() - clock)
    except Exception as error:  # one trial must not end the scan, whatever happened
        return TrialResult(shown, error=f"internal error: {type(error).__name__}: {error}".replace(path, shown),
                           started=started, seconds=time.perf_counter() - clock)
    return TrialResult(shown, verdict=replace(verdict, trial=shown), started=started,
                       seconds=time.perf_counter() - clock)


OnResult = Callable[[TrialResult], None]

# Trials per worker task at most (see scan_local).
BATCH_MAX = 16


def scan_local(
    trials: Sequence[str], params: RuleParams, jobs: int, on_result: OnResult | None = None,
    checks: Sequence[type[Check]] | None = None,
) -> list[TrialResult]:
    """Analyse ``trials`` here: in-process for one job, else in a pool of ``jobs`` processes."""
    results = []
    if jobs <= 1 or len(trials) <= 1:
        for shown in trials:
            result = analyse_trial(_absolute(shown), params, shown, checks)
            results.append(result)
            if on_result:
                on_result(result)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may run a progress thread, and forking a
    # threaded process can deadlock; spawn behaves the same on every platform.
    context = multiprocessing.get_context("spawn")
    # Trials go to the workers in batches: one future (and one pickled round
    # trip) per small trial costs more than analysing it. Batches stay small
    # enough that every worker keeps busy to the end and progress moves.
    size = max(1, min(BATCH_MAX, len(trials) // (jobs * 8)))
    batches = [trials[i : i + size] for i in range(0, len(trials), size)]
    with ProcessPoolExecutor(max_workers=min(jobs, len(batches)), mp_context=context) as pool:
        # Absolute paths are made here, where the user's working directory is.
        futures = [
            pool.submit(analyse_batch, [(_absolute(shown), shown) for shown in batch], params, checks)
            for batch in batches
        ]
        try:
            for future in as_completed(futures):
                for result in future.result():
                    results.append(result)
                    if on_result:
                        on_result(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results


def analyse_batch(
    trials: Sequence[tuple[str, str]], params: RuleParams, checks: Sequence[type[Check]] | None = None
) -> list[TrialResult]:
    """``analyse_trial`` over (path, shown) pairs, in one worker task."""
    return [analyse_trial(path, params, shown, checks) for path, shown in trials]


def scan_dask(
    trials: Sequence[str], params: RuleParams, address: str, on_result: OnResult | None = None,
    checks: Sequence[type[Check]] | None = None,
) -> list[TrialResult]:
    """Analyse ``trials`` on the Dask cluster whose scheduler listens at ``address``.

    The workers read the trials by absolute path, so they must see the same
    file system (shared storage) as this machine.
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise PoorinitError(
            "--scheduler needs Dask's distributed scheduler: pip install 'poorinit[dask]'"
        ) from None
    import logging

    # The client logs connection chatter on stderr; our stderr is for one-line errors.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    try:
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise PoorinitError(f"cannot reach the Dask scheduler at {address} ({error})") from None
    results = []
    try:
        # Absolute paths are made here: a worker's working directory is its own.
        futures = {
            client.submit(analyse_trial, _absolute(shown), params, shown, checks, pure=False): shown
            for shown in trials
        }
        for future in as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except Exception as error:  # the worker died, or could not import poorinit
                result = TrialResult(futures[future], error=f"the Dask worker failed: {type(error).__name__}: {error}")
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        client.close()
    return results


def order_key(result: TrialResult) -> tuple[int, int, str]:
    """Worst first: fired (most criteria fired first), then unanalysable, then passed."""
    if result.status == FIRED:
        assert result.verdict is not None
        return (0, -sum(c.fired for c in result.verdict.criteria), result.trial)
    return (1 if result.status == ERROR else 2, 0, result.trial)


def worst_first(results: Iterable[TrialResult]) -> list[TrialResult]:
    return sorted(results, key=order_key)


def counts(results: Sequence[TrialResult]) -> dict[str, int]:
    found = {FIRED: 0, ERROR: 0, PASSED: 0}
    for result in results:
        found[result.status] += 1
    return {"trials": len(results), **found}


def scan_exit_code(results: Sequence[TrialResult]) -> int:
    """1 if any trial fired, else 2 if any could not be analysed, else 0.

    A fired trial outranks an unreadable one: the gate has found what it is
    for, and the unreadable rows are in the same report.
    """
    statuses = {r.status for r in results}
    if FIRED in statuses:
        return 1
    if ERROR in statuses or not results:
        return 2
    return 0


def summary_line(results: Sequence[TrialResult]) -> str:
    """One line for the end of a report and for ``--quiet``."""
    n = counts(results)
    parts = [f"{n[FIRED]} fired", f"{n[ERROR]} could not be analysed", f"{n[PASSED]} passed"]
    word = "trial" if n["trials"] == 1 else "trials"
    head = {1: "FIRED", 2: "ERROR", 0: "passed"}[scan_exit_code(results)]
    return f"{head}: {n['trials']} {word} scanned: {', '.join(parts)}"

"""Scanning many trials: find them below roots, analyse them in parallel.

Discovery lists names only. A trial is a directory holding at least one entry
named like a step file (whatever it is: a broken link is the trial's error to
report, not a reason to skip it); the walk never descends into a trial (its subdirectories belong to it),
never follows a symbolic link out of the root it started from, and never
enters a directory twice, so a link loop ends the walk instead of looping.

Analysis goes through :func:`analyse_trial`, which returns a
:class:`TrialResult` holding a verdict or an error and never raises: one
damaged trial is one row of the report, not the end of the scan. The same
function runs in-process (``--jobs 1``), in worker processes (``--jobs N``;
h5py holds the GIL, so threads would not scale) or on a Dask cluster
(``--scheduler``), so the three give identical results.

Every trial has a timeout (:data:`TRIAL_TIMEOUT`). The worker processes are
poorinit's own rather than a ``ProcessPoolExecutor``, so that one worker lost
(killed by the out-of-memory killer, or stuck past its trial's timeout) costs
the trial it held, reported as such, and not the scan; and so that Ctrl-C or
SIGTERM stop every worker before poorinit exits (no orphan, no tracebacks).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any

from . import format as fmt
from .errors import PoorinitError, memory_exhausted
from .records import record

if TYPE_CHECKING:
    from .checks.base import Check
    from .params import RuleParams
    from .rule import Verdict

FIRED, PASSED, ERROR = "fired", "passed", "error"


@record
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


@record
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


# Seconds one trial may take before it is reported as timed out and the rest
# go on (docs/errors.md, scan-trial-timeout); ``scan --trial-timeout`` (the
# setting trial_timeout, poorinit/config.py, whose default this is). Budgets
# bound what one step file costs (docs/format.md); this bounds what a trial of
# many steps, a slow file system or a stuck read can cost a CI job.
TRIAL_TIMEOUT = 600.0
# A worker that does not answer this long after its trial's timeout (stuck in
# C code that no signal interrupts) is killed.
KILL_GRACE = 10.0
# Seconds to wait for a Dask scheduler to answer before giving up.
CONNECT_TIMEOUT = 10.0


OnResult = Callable[[TrialResult], None]

# Trials per worker task at most (see scan_local).
BATCH_MAX = 16



class TrialTimeout(Exception):  # noqa: N818 (raised by the alarm, caught in analyse_trial)
    """The trial took longer than its timeout."""


class Terminated(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt)
    """SIGTERM arrived: stop, clean up (no orphan worker), exit 143."""


def _alarm(signum: int, frame: object) -> None:
    raise TrialTimeout


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in this thread after ``seconds``: by SIGALRM in the main thread, else by a timer.

    Either interrupts Python code and the reads between blocks; a single
    call into C that never returns is the worker killer's job (scan_local).
    """
    if seconds is None:
        yield
        return
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        with _thread_time_limit(seconds):
            yield
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _thread_time_limit(seconds: float) -> Iterator[None]:
    """Raise TrialTimeout in this (not main) thread after ``seconds``: a Dask worker's thread.

    The watchdog thread sets the exception asynchronously (the interpreter raises it
    at this thread's next bytecode), since signals reach the main thread only.
    """
    watchdog = _watchdog()
    token = watchdog.arm(seconds)
    try:
        yield
    finally:
        watchdog.disarm(token)


class _Watchdog:
    """One thread per process that raises TrialTimeout in threads past their deadline.

    A timer thread per trial cost a thread's start and join, about 0.3 ms, at
    every small trial a Dask worker analyses; arming and disarming this one is
    a lock and a dict. Its lock also keeps the exception from arriving once
    the thread has left the guarded block.
    """

    def __init__(self) -> None:
        self._deadlines: dict[int, tuple[float, int]] = {}  # thread -> (deadline, token)
        self._tokens = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._watch, name="poorinit-trial-timeout", daemon=True).start()

    def arm(self, seconds: float) -> tuple[int, int]:
        with self._changed:
            self._tokens += 1
            token = (threading.get_ident(), self._tokens)
            self._deadlines[token[0]] = (time.monotonic() + seconds, token[1])
            self._changed.notify()
        return token

    def disarm(self, token: tuple[int, int]) -> None:
        with self._changed:
            if self._deadlines.get(token[0], (0.0, -1))[1] == token[1]:
                del self._deadlines[token[0]]

    def _watch(self) -> None:
        import ctypes

        with self._changed:
            while True:
                now = time.monotonic()
                for thread, (deadline, _) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[thread]
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                                                   ctypes.py_object(TrialTimeout))  # fmt: skip
                soonest = min((deadline for deadline, _ in self._deadlines.values()), default=None)
                self._changed.wait(None if soonest is None else max(0.0, soonest - now))


_watchdog = functools.cache(_Watchdog)
if hasattr(os, "register_at_fork"):  # a forked child has the object but not its thread: it makes its own
    os.register_at_fork(after_in_child=_watchdog.cache_clear)


def analyse_trial(
    path: str, params: RuleParams, shown: str | None = None, checks: Sequence[type[Check]] | None = None,
    timeout: float | None = None,
) -> TrialResult:
    """Analyse one trial; never raises (a worker must hand every outcome back).

    ``path`` is where the worker reads the trial (absolute, for a cluster whose
    workers run elsewhere); ``shown`` is how the report names it, and replaces
    ``path`` in the verdict and in error messages. After ``timeout`` seconds
    the trial is reported as timed out.
    """
    from .analysis import evaluate
    from .sources import open_trial

    shown = path if shown is None else shown
    _warm_up()  # the first trial's timeout is not spent importing what every trial needs
    started, clock = time.time(), time.perf_counter()

    def failed(error: str) -> TrialResult:
        return TrialResult(shown, error=error, started=started, seconds=time.perf_counter() - clock)

    try:
        with _time_limit(timeout):
            verdict = evaluate(open_trial(path), params, checks)
    except TrialTimeout:
        return failed(_timed_out(shown, timeout or 0.0))
    except PoorinitError as error:
        return failed(" ".join(str(error).replace(path, shown).split()))
    except Exception as error:  # one trial must not end the scan, whatever happened
        if memory_exhausted(error) is not None:
            return failed(f"{shown}: ran out of memory while analysing it; analyse it alone, with more memory, "
                          "or with fewer --steps")
        return failed(f"internal error: {type(error).__name__}: {error}".replace(path, shown))
    return TrialResult(shown, verdict=replace(verdict, trial=shown), started=started,
                       seconds=time.perf_counter() - clock)


@functools.cache
def _warm_up() -> None:
    """Import numpy and load the criteria (entry points) once per process, outside any trial's timeout.

    Not h5py: step files in poorinit's own layout are read without it (h5direct.py); a trial that
    needs it imports it (about 30 ms) within its own timeout."""
    from .checks.registry import load_checks

    with suppress(Exception):  # a failure here is met again, and reported, inside the trial
        import numpy  # noqa: F401

        load_checks()


def _timed_out(shown: str, timeout: float) -> str:
    return (f"{shown}: not analysed within the per-trial timeout of {timeout:g} s; the other trials go on "
            "(raise --trial-timeout, or analyse it alone with poorinit analyze)")


def _worker_died(shown: str, exitcode: int | None) -> str:
    how = (f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0
           else f"exited with code {exitcode}")
    hint = " (SIGKILL: out of memory?)" if exitcode == -signal.SIGKILL else ""
    return f"{shown}: the worker process analysing it {how}{hint}; the other trials go on"


def scan_local(
    trials: Sequence[str], params: RuleParams, jobs: int, on_result: OnResult | None = None,
    checks: Sequence[type[Check]] | None = None, timeout: float | None = TRIAL_TIMEOUT,
) -> list[TrialResult]:
    """Analyse ``trials`` here: in-process for one job, else in ``jobs`` worker processes.

    Each trial gets ``timeout`` seconds. A worker that dies (the OOM killer)
    or hangs past the timeout is killed and replaced: the trial it held is
    reported as failed, the rest of its batch goes to another worker.
    Ctrl-C or SIGTERM kill every worker before the exception propagates, so
    no process outlives the scan.
    """
    results: list[TrialResult] = []
    if jobs <= 1 or len(trials) <= 1:
        _warm_up()  # here, not in the first trial: the stack is shallower (poorinit.cli._numerics says why)
        for shown in trials:
            result = analyse_trial(_absolute(shown), params, shown, checks, timeout)
            results.append(result)
            if on_result:
                on_result(result)
        return results
    # Trials go to the workers in batches: one round trip per small trial costs
    # more than analysing it. Batches stay small enough that every worker keeps
    # busy to the end and progress moves. Absolute paths are made here, where
    # the user's working directory is.
    size = max(1, min(BATCH_MAX, len(trials) // (jobs * 8)))
    pairs = [(_absolute(shown), shown) for shown in trials]
    batches = deque(pairs[i : i + size] for i in range(0, len(pairs), size))

    def deliver(result: TrialResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    with _Pool(min(jobs, len(batches)), params, checks, timeout) as pool:
        pool.run(batches, deliver)
    return results


class _Worker:
    """One spawned worker process and the batch it holds."""

    def __init__(self, context: Any, params: RuleParams, checks: Sequence[type[Check]] | None,
                 timeout: float | None) -> None:
        task_reader, self._tasks = context.Pipe(duplex=False)
        self.results, result_writer = context.Pipe(duplex=False)
        self.process = context.Process(target=_worker_main,
                                       args=(task_reader, result_writer, params, checks, timeout), daemon=True)
        self.process.start()
        task_reader.close()  # the child's ends
        result_writer.close()
        self.batch: list[tuple[str, str]] = []
        self.started = 0.0

    def give(self, batch: list[tuple[str, str]]) -> bool:
        """Hand over a batch; False if the worker is already gone (killed while idle)."""
        self.batch = list(batch)
        self.started = time.monotonic()
        try:
            self._tasks.send(batch)
        except OSError:
            return False
        return True

    def stop(self, kill: bool = False) -> None:
        with suppress(OSError):
            self._tasks.close()  # an idle worker ends at this EOF
        if kill and self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        with suppress(OSError):
            self.results.close()


def _worker_main(tasks: Any, results: Any, params: RuleParams, checks: Sequence[type[Check]] | None,
                 timeout: float | None) -> None:
    """A scan worker: analyse each batch received, answer one result per trial; end at EOF."""
    # Ctrl-C reaches the whole process group: the parent handles it and stops
    # the workers, which must not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _warm_up()  # before the first batch, where the stack is shallowest (poorinit.cli._numerics says why)
    while True:
        try:
            batch = tasks.recv()
        except (EOFError, OSError):
            return
        for path, shown in batch:
            try:
                results.send(analyse_trial(path, params, shown, checks, timeout))
            except (BrokenPipeError, OSError):
                return


class _Pool:
    """Worker processes fed batches; results come back one trial at a time."""

    def __init__(self, jobs: int, params: RuleParams, checks: Sequence[type[Check]] | None,
                 timeout: float | None) -> None:
        import multiprocessing

        # spawn, not fork: the parent may run a progress thread, and forking a
        # threaded process can deadlock; spawn behaves the same on every platform.
        self._context = multiprocessing.get_context("spawn")
        self._params = params
        self._checks = checks
        self._timeout = timeout
        self._jobs = jobs
        self._workers: list[_Worker] = []

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        # Always: after an interrupt every worker is stopped before the scan ends.
        interrupted = exc[0] is not None
        for worker in self._workers:
            worker.stop(kill=interrupted)
        self._workers.clear()

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, self._params, self._checks, self._timeout)
        self._workers.append(worker)
        return worker

    def run(self, batches: deque[list[tuple[str, str]]], deliver: Callable[[TrialResult], None]) -> None:
        from multiprocessing.connection import wait

        idle = [self._spawn() for _ in range(self._jobs)]
        busy: list[_Worker] = []
        while batches or busy:
            while idle and batches:
                worker = idle.pop()
                batch = batches.popleft()
                if not worker.give(batch):  # it died while idle: nothing was lost, replace it
                    batches.appendleft(batch)
                    self._workers.remove(worker)
                    worker.stop(kill=True)
                    idle.append(self._spawn())
                    continue
                busy.append(worker)
            deadline = None
            if self._timeout is not None:
                deadline = min(w.started for w in busy) + self._timeout + KILL_GRACE
            ready = wait([w.results for w in busy] + [w.process.sentinel for w in busy],
                         timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            for worker in list(busy):
                lost = None
                if worker.results in ready or worker.process.sentinel in ready:
                    try:
                        while worker.results.poll():
                            result = worker.results.recv()
                            worker.batch.pop(0)
                            worker.started = time.monotonic()
                            deliver(result)
                    except (EOFError, OSError):
                        pass
                    if not worker.batch:
                        busy.remove(worker)
                        idle.append(worker)
                        continue
                    if not worker.process.is_alive():
                        lost = _worker_died(worker.batch[0][1], worker.process.exitcode)
                elif self._timeout is not None and time.monotonic() - worker.started > self._timeout + KILL_GRACE:
                    lost = _timed_out(worker.batch[0][1], self._timeout)
                if lost is None:
                    continue
                # The worker is dead or stuck: the trial it held failed, the rest of its batch goes on.
                held, rest = worker.batch[0], worker.batch[1:]
                busy.remove(worker)
                self._workers.remove(worker)
                worker.stop(kill=True)
                deliver(TrialResult(held[1], error=lost))
                if rest:
                    batches.appendleft(rest)
                idle.append(self._spawn())


# Schemes a scan can reach a Dask scheduler over (inproc:// only works inside one process).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_scheduler_address(address: str) -> None:
    """Refuse a malformed scheduler address before any connection is tried.

    Dask would otherwise retry for its own 30-60 s and print a traceback from
    ``Client.__del__``.
    """
    scheme, _, location = address.partition("://") if "://" in address else ("tcp", "", address)
    problem = None
    if scheme not in SCHEDULER_SCHEMES:
        problem = f"unknown scheme {scheme!r} (use {', '.join(s + '://' for s in SCHEDULER_SCHEMES)})"
    else:
        host, port = location, ""
        if location.startswith("["):
            closing = location.find("]")
            host, port = (location, "") if closing < 0 else (location[: closing + 1], location[closing + 1 :])
            if closing < 0:
                problem = "an IPv6 address without its closing ']'"
            port = port[1:] if port.startswith(":") else ("" if not port else "?")
        elif ":" in location:
            host, port = location.rsplit(":", 1)
        if problem is None and (not host or "/" in host or " " in host):
            problem = "no host name"
        elif problem is None and not (port.isdigit() and 0 < int(port) < 65536):
            problem = "no port number (1-65535)" if not port else f"port {port!r} is not a number from 1 to 65535"
    if problem is not None:
        raise PoorinitError(
            f"--scheduler {address!r} is not a Dask scheduler address: {problem}; pass it as tcp://HOST:PORT "
            "(the address the scheduler prints when it starts)"
        )


def analyse_batch(
    trials: Sequence[tuple[str, str]], params: RuleParams, checks: Sequence[type[Check]] | None = None,
    timeout: float | None = None,
) -> list[TrialResult]:
    """``analyse_trial`` over (path, shown) pairs, in one Dask task, each within ``timeout`` seconds."""
    return [analyse_trial(path, params, shown, checks, timeout) for path, shown in trials]


def scan_dask(
    trials: Sequence[str], params: RuleParams, address: str, on_result: OnResult | None = None,
    checks: Sequence[type[Check]] | None = None, timeout: float | None = TRIAL_TIMEOUT,
) -> list[TrialResult]:
    """Analyse ``trials`` on the Dask cluster whose scheduler listens at ``address``.

    The workers read the trials by absolute path, so they must see the same
    file system (shared storage) as this machine. The address is checked
    first, and the scheduler must answer within :data:`CONNECT_TIMEOUT`.
    """
    check_scheduler_address(address)
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
        client = Client(address, set_as_default=False, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise PoorinitError(
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:g} s ({error})"
        ) from None
    results = []
    try:
        # Batches, as scan_local sends them: one task per small trial costs the
        # scheduler more than the trial costs the worker.
        workers = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()) or 1
        size = max(1, min(BATCH_MAX, len(trials) // (workers * 8)))
        batches = [trials[i : i + size] for i in range(0, len(trials), size)]
        # Absolute paths are made here: a worker's working directory is its own.
        futures = {
            client.submit(analyse_batch, [(_absolute(shown), shown) for shown in batch], params, checks, timeout,
                          pure=False): batch
            for batch in batches
        }
        for future in as_completed(futures, loop=client.loop):
            try:
                batch_results = future.result()
            except Exception as error:  # the worker died, or could not import poorinit
                failure = f"the Dask worker failed: {type(error).__name__}: {error}"
                batch_results = [TrialResult(shown, error=failure) for shown in futures[future]]
            for result in batch_results:
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

"""Following a live trial: judge each criterion as soon as its steps are there.

SageMaker Debugger runs its rules beside the training job; ``poorinit analyze
--follow`` does the same by polling the trial directory (names only) and
feeding each new step to an :class:`~poorinit.analysis.Analysis`.

When a criterion has concluded:

* A criterion whose firing at one step stands whatever later steps show
  (activation variance and gradient spread judge every step on its own and
  fire on the worst) concludes *fired* at the first step that fires it: the
  rule fires at once, so a wrapper can stop the training.
* Every other conclusion (passed, not applicable, and the loss criterion's
  firing, which compares windows that later steps move) waits for the full
  set of analysed steps (``steps``), and is then exactly what ``analyze``
  would say of the same steps.
* A trial marked finished (docs/format.md) with fewer steps than that can
  still fire, but cannot pass: that is an error, like a timeout, because a
  gate must not pass on steps it never saw.

A step is ready when every worker seen so far has written it, or once the
trial is marked finished. A worker first seen after some steps were judged
makes those steps be read again once its files for them arrive, and a pass is
not concluded while an analysed step lacks a known worker's file (unless the
trial is finished): ``--follow`` and ``analyze`` of the same files agree. A
worker that has written nothing at all is known only when the trial declares
its workers (root attribute ``workers``, docs/format.md): it is then waited
for like any other; without it, the per-worker FINISHED markers are what
closes that gap. Files written by :class:`~poorinit.TrialWriter`
appear whole (temporary name, then rename); a step file written in place by
another writer may fail to open while it is being written, so such a failure
is retried until the file has been left alone for :data:`SETTLE_SECONDS`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from . import format as fmt
from .analysis import Analysis
from .checks.base import Check, CriterionResult, Status
from .errors import PoorinitError, TrialError
from .params import RuleParams
from .rule import Verdict, conclude
from .trial import Trial

# A step file that fails to open is retried until it is this old: a writer
# that writes in place may still hold it.
SETTLE_SECONDS = 10.0


class FollowError(PoorinitError):
    """Following ended without a verdict: timeout, or a trial finished too early."""


class Follower:
    """The state of one followed trial; :meth:`poll` looks once, :func:`follow` loops."""

    def __init__(self, path: str | os.PathLike[str], params: RuleParams,
                 checks: Iterable[type[Check]] | None = None) -> None:
        self.path = Path(path)
        self.params = params
        self._checks = checks
        self.analysis: Analysis | None = None

    @property
    def analysed(self) -> int:
        return 0 if self.analysis is None else len(self.analysis.steps)

    def _listing(self, finished: bool) -> Trial | None:
        """The trial as it is now, or None while it has no step files of the mode."""
        if not self.path.exists():
            if finished:
                raise FollowError(f"{self.path}: no such trial directory")
            return None
        if not self.path.is_dir():
            raise TrialError(self.path, "is a file; a trial is a directory of step files")
        try:
            with os.scandir(self.path) as entries:
                names = [e.name for e in entries]
        except OSError as error:
            raise TrialError(self.path, f"cannot be listed ({error.strerror})") from error
        mode = self.params.mode
        if not any((m := fmt.STEP_FILE_RE.match(n)) and m["mode"] == mode for n in names):
            if finished:
                raise FollowError(f"{self.path}: marked finished with no step files of mode {mode!r}")
            return None
        return Trial(self.path)

    def _ready(self, trial: Trial, finished: bool) -> list[int]:
        """Steps not yet analysed that can be, in order, up to ``steps`` in all."""
        mode = self.params.mode
        done = self.analysis.steps if self.analysis else []
        last = done[-1] if done else -1
        workers = {f.worker for f in trial.files if f.mode == mode}
        ready: list[int] = []
        for step in trial.steps(mode):
            if step <= last:
                continue
            if len(done) + len(ready) >= self.params.steps:
                break
            if not finished and {f.worker for f in trial.step_files(step, mode)} != workers:
                break
            ready.append(step)
        return ready

    def _settled(self, trial: Trial, step: int) -> bool:
        newest = 0.0
        for step_file in trial.step_files(step, self.params.mode):
            try:
                newest = max(newest, step_file.path.stat().st_mtime)
            except OSError:
                return False
        return time.time() - newest >= SETTLE_SECONDS

    def poll(self) -> Verdict | None:
        """Look at the trial once; a verdict when the rule has concluded, else None.

        Raises :class:`FollowError` when the trial is finished before the rule
        could conclude, and any :class:`PoorinitError` a step file raises.
        """
        # The marker is read before the listing: a trial seen finished here has
        # all its step files in the listing that follows.
        try:
            markers = [n for n in os.listdir(self.path) if n.startswith(fmt.FINISHED_MARKER)]
        except OSError:
            markers = []
        trial = self._listing(bool(markers))
        if trial is None:
            return None
        finished = fmt.is_finished(markers, trial.workers)
        if self.analysis is None:
            self.analysis = Analysis(trial, self.params, self._checks)
        self.analysis.trial = trial
        # A late file for a step already judged (a worker that started late, a
        # slow copy) is read now, so --follow agrees with analyze of the same files.
        for step in [*self.analysis.stale_steps(), *self._ready(trial, finished)]:
            try:
                self.analysis.add_step(step)
            except TrialError:
                if finished or self._settled(trial, step):
                    raise
                return None  # still being written: look again at the next poll
            verdict = self._early_verdict()
            if verdict is not None:
                return verdict
        if self.analysed >= self.params.steps:
            if self.analysis.waiting_for_workers and not finished:
                return None  # a pass on part of the workers' data could be wrong: wait for their files
            return self.analysis.verdict()
        if finished:
            verdict = self.analysis.verdict()
            if verdict.fired:
                return verdict
            raise FollowError(
                f"{self.path}: the trial was marked finished after {self.analysed} of steps={self.params.steps} "
                "steps: too few to conclude that the rule does not fire (lower --steps to judge fewer)"
            )
        return None

    def _early_verdict(self) -> Verdict | None:
        analysis = self.analysis
        assert analysis is not None
        results = analysis.results()
        if not any(r.fired and c.fires_early for r, c in zip(results, analysis.checks, strict=True)):
            return None
        steps = analysis.steps
        criteria: list[CriterionResult] = []
        for check, result in zip(analysis.checks, results, strict=True):
            if result.fired and check.fires_early:
                criteria.append(result)
            else:
                criteria.append(check.result(
                    Status.NOT_APPLICABLE,
                    f"not concluded: the rule fired after step {steps[-1]}, before this criterion's "
                    f"steps were in ({len(steps)} of steps={self.params.steps})",
                ))
        warning = f"followed live: concluded after {len(steps)} of steps={self.params.steps} steps"
        return conclude(str(analysis.trial.path), self.params, steps, criteria,
                        [warning, *analysis.partial_warnings()], analysis.holds(), partial=analysis.partial)

    def timeout_error(self, timeout: float) -> FollowError:
        if self.analysis is None:
            return FollowError(f"{self.path}: timed out after {timeout:g} s waiting for the first step file "
                               f"of mode {self.params.mode!r}")
        return FollowError(
            f"{self.path}: timed out after {timeout:g} s with {self.analysed} of steps={self.params.steps} steps "
            "analysed and the rule not concluded"
        )


def _check_followable(path: str | os.PathLike[str]) -> None:
    """Following polls a local directory of step files: refuse at once what it would wait on forever."""
    from .smdebug.layout import looks_like_smdebug
    from .sources import is_url
    from .store import LocalStore

    if is_url(path):
        raise FollowError(f"{os.fspath(path)}: --follow polls a local directory; analyse a trial in an object store "
                          "without --follow")
    if looks_like_smdebug(LocalStore(), os.fspath(path)):
        raise FollowError(f"{os.fspath(path)}: is a SageMaker Debugger trial; --follow reads poorinit trials only: "
                          "analyse it without --follow")


def follow(
    path: str | os.PathLike[str],
    params: RuleParams,
    *,
    timeout: float | None = None,
    poll_interval: float = 1.0,
    checks: Iterable[type[Check]] | None = None,
    on_poll: Callable[[Follower], None] | None = None,
) -> Verdict:
    """Follow the trial at ``path`` until the rule concludes; return the verdict.

    Raises :class:`FollowError` when ``timeout`` seconds pass first or the trial
    is marked finished with too few steps to pass.
    """
    _check_followable(path)
    follower = Follower(path, params, checks)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        verdict = follower.poll()
        if verdict is not None:
            return verdict
        if on_poll is not None:
            on_poll(follower)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise follower.timeout_error(timeout or 0.0)
            time.sleep(min(poll_interval, left))
        else:
            time.sleep(poll_interval)

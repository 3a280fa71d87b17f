"""Writing step files off the training thread, so a recorded step costs the training loop its copies only.

The training thread hands each step's host copies to a bounded queue and goes
on. One thread does the rest, step by step, in the order the steps were handed
over: it forms what the recorder left to it (``prepare``: attention logits, see
attention.py), then writes the step file (``TrialWriter.write_step``: under a
temporary name, renamed into place when complete). It starts each file
outside a forward of the model and its loss (the recorder says so through
``idle``: from the forward's start until the backward pass reaches the
model's output), or after ``FORWARD_WAIT``: the writer's Python and a small
model's forward both need the GIL, and took turns on it, while the backward
pass runs without it.

The queue holds at most ``depth`` steps, so memory stays bounded: a training
loop faster than the writer waits at the next recorded step instead of piling
up copies. An error on the writer thread is kept and raised on the training
thread at the next step handed over or at ``join()``, which also waits for
every queued step; after an error, later steps are dropped: the trial is
incomplete already, and is not marked finished.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from ..writer import TrialWriter

__all__ = ["BackgroundWriter"]

_STOP = object()

# How long the writer waits, before each step file, for the training thread to leave the model's
# forward and reach the backward pass (seconds).
FORWARD_WAIT = 0.05


class BackgroundWriter:
    """``write_step`` on a thread; ``join`` waits for it and re-raises what failed there."""

    def __init__(
        self, writer: TrialWriter, depth: int = 2, prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> None:
        self.writer = writer
        self._prepare = prepare  # run on this thread on each step's groups first (the recorder forms logits)
        self._steps: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None  # not yet raised on the training thread
        self._broken = False  # an error happened: stays set once that error is raised
        self._lock = threading.Lock()
        # Cleared by the recorder from a forward of the model until the backward pass: the writer
        # then waits (at most FORWARD_WAIT), so that its Python falls in the backward pass, which
        # does not hold the GIL.
        self.idle = threading.Event()
        self.idle.set()
        self._thread = threading.Thread(target=self._write, name=f"poorinit-writer-{writer.path.name}", daemon=True)
        self._thread.start()
        self._closed = False

    def write_step(self, step: int, **groups: Any) -> None:
        self._raise_pending()
        if self._closed:
            raise RuntimeError("the background writer is closed")
        self._steps.put((step, groups))  # blocks while `depth` steps wait: bounded memory

    def join(self) -> None:
        """Wait until every queued step is written; raise the first error of the writer thread."""
        if not self._closed:
            self._closed = True
            self._steps.put(_STOP)
            self._thread.join()
        self._raise_pending()

    @property
    def broken(self) -> bool:
        """Whether a step failed (its error raised or pending): the steps after it were dropped."""
        with self._lock:
            return self._broken

    def _raise_pending(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _write(self) -> None:
        # What the first step file would pay (importing the writer, finding HDF5's
        # checksums): paid here, while the training thread runs the first step.
        try:
            from ..h5write import warm_up

            warm_up()
        except BaseException as error:  # pragma: no cover - an import that fails is raised at the first step
            self._fail(error)
        while True:
            item = self._steps.get()
            if item is _STOP:
                return
            if self.broken:
                continue  # after a failure, later steps are dropped: the trial is already incomplete
            step, groups = item
            self.idle.wait(FORWARD_WAIT)
            try:
                self.writer.write_step(step, **(groups if self._prepare is None else self._prepare(groups)))
            except BaseException as error:  # handed to the training thread
                self._fail(error)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if not self._broken:  # the first error is the one to see
                self._error, self._broken = error, True

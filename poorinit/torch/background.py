"""Writing step files on a background thread, so a recorded step costs the training loop its copies only.

The training thread hands each step's host copies to a bounded queue and goes
on; one writer thread writes, flushes and renames each file (``TrialWriter``'s
fsync runs there, never on the training thread). The queue holds at most
``depth`` steps, so memory stays bounded: a training loop faster than the disk
waits at the next recorded step instead of piling up copies. An error on the
writer thread is kept and raised on the training thread at the next step
handed over or at ``close()``, which also waits for every queued step.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from ..writer import TrialWriter

__all__ = ["BackgroundWriter"]

_STOP = object()


class BackgroundWriter:
    """``write_step`` on a thread; ``close`` joins it and re-raises what failed there."""

    def __init__(self, writer: TrialWriter, depth: int = 2) -> None:
        self.writer = writer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"poorinit-writer-{writer.path.name}", daemon=True)
        self._thread.start()
        self._closed = False

    def write_step(self, step: int, **groups: Any) -> None:
        self._raise_pending()
        if self._closed:
            raise RuntimeError("the background writer is closed")
        self._queue.put((step, groups))  # blocks while `depth` steps wait: bounded memory

    def join(self) -> None:
        """Wait until every queued step is written; raise the writer thread's error, if any."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # after a failure, later steps are dropped: the trial is already incomplete
            step, groups = item
            try:
                self.writer.write_step(step, **groups)
            except BaseException as error:  # handed to the training thread
                self._error = error

"""Writing step files off the training thread, so a recorded step costs the training loop its copies only.

The training thread hands each step's host copies to a bounded queue and goes
on. Two threads do the rest, one after the other, step by step:

* the *writer* encodes each step file under its temporary name
  (``TrialWriter.stage_step``): HDF5's work, which holds the GIL;
* the *publisher* flushes each written file to disk (fsync) and renames it
  into place (``StagedStep.publish``): waiting for the disk, which does not
  hold the GIL, so the next file is encoded meanwhile and neither the training
  thread nor the writer ever waits for the disk.

Files are published in the order they were handed over. The queues hold at
most ``depth`` steps each, so memory stays bounded: a training loop faster
than the disk waits at the next recorded step instead of piling up copies. An
error on either thread is kept and raised on the training thread at the next
step handed over or at ``join()``, which also waits for every queued step;
after an error, later steps are dropped (their temporary files removed): the
trial is incomplete already, and is not marked finished.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from ..writer import StagedStep, TrialWriter

__all__ = ["BackgroundWriter"]

_STOP = object()


class BackgroundWriter:
    """``write_step`` on two threads; ``join`` waits for both and re-raises what failed there."""

    def __init__(self, writer: TrialWriter, depth: int = 2) -> None:
        self.writer = writer
        self._steps: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._staged: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None  # not yet raised on the training thread
        self._broken = False  # an error happened: stays set once that error is raised
        self._lock = threading.Lock()
        name = writer.path.name
        self._writer = threading.Thread(target=self._write, name=f"poorinit-writer-{name}", daemon=True)
        self._publisher = threading.Thread(target=self._publish, name=f"poorinit-publisher-{name}", daemon=True)
        self._writer.start()
        self._publisher.start()
        self._closed = False

    def write_step(self, step: int, **groups: Any) -> None:
        self._raise_pending()
        if self._closed:
            raise RuntimeError("the background writer is closed")
        self._steps.put((step, groups))  # blocks while `depth` steps wait: bounded memory

    def join(self) -> None:
        """Wait until every queued step is written and published; raise the first error of either thread."""
        if not self._closed:
            self._closed = True
            self._steps.put(_STOP)
            self._writer.join()  # it passes the stop on to the publisher
            self._publisher.join()
        self._raise_pending()

    @property
    def broken(self) -> bool:
        """Whether a step failed (its error raised or pending): the steps after it were dropped."""
        return self._failed()

    def _raise_pending(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if not self._broken:  # the first error is the one to see
                self._error, self._broken = error, True

    def _failed(self) -> bool:
        with self._lock:
            return self._broken

    def _write(self) -> None:
        try:
            # What the first step file would pay (importing the writer, finding HDF5's
            # lookup3): paid here, while the training thread runs the first step.
            from ..h5write import warm_up

            warm_up()
            while True:
                item = self._steps.get()
                if item is _STOP:
                    return
                if self._failed():
                    continue  # after a failure, later steps are dropped: the trial is already incomplete
                step, groups = item
                try:
                    staged = self.writer.stage_step(step, **groups)
                except BaseException as error:  # handed to the training thread
                    self._fail(error)
                    continue
                self._staged.put(staged)
        finally:
            self._staged.put(_STOP)

    def _publish(self) -> None:
        while True:
            staged: StagedStep | object = self._staged.get()
            if staged is _STOP:
                return
            assert isinstance(staged, StagedStep)
            try:  # this thread must outlive any error: a dead publisher would leave the writer waiting on it
                if self._failed():
                    staged.discard()
                else:
                    staged.publish()
            except BaseException as error:
                self._fail(error)

"""The tensors of one step measured on several threads.

``analyze`` reads a large trial on both cores by measuring the tensors of a
step at once (:func:`map_in_order`), not several steps at once: the tensors of
one step share one copy of the gradients kept for the percentiles, so two
threads cost no second copy and never read a tensor twice. numpy releases the
GIL in the statistics and in the checksums of raw chunks, which is where the
time goes. How many threads is decided per analysis (:func:`using`); anything
outside one (the Python API on arrays, ``--explain``, remote stores) runs on
the calling thread, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # imported when a pool is first made: concurrent.futures brings logging, a small trial's cost
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

_THREADS: ContextVar[int] = ContextVar("poorinit_threads", default=1)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


@contextmanager
def using(threads: int) -> Iterator[None]:
    """Measure with ``threads`` threads inside the block (1: on the calling thread)."""
    token = _THREADS.set(max(1, threads))
    try:
        yield
    finally:
        _THREADS.reset(token)


def threads() -> int:
    """The threads the current analysis measures with."""
    return _THREADS.get()


def _executor(size: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor

    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(max_workers=size, thread_name_prefix="poorinit-tensor"), size
        return _pool


def map_in_order(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]``, on the analysis's threads.

    The results come in the order of ``items``, and so does the error: the
    first item that failed, in order, raises, as a serial loop would, once
    every item already started has finished (a caller closes the files the
    items read as soon as this returns)."""
    chosen = list(items)
    count = _THREADS.get()
    if count <= 1 or len(chosen) <= 1 or threading.current_thread().name.startswith("poorinit-tensor"):
        return [function(item) for item in chosen]
    futures: list[Future[R]] = []
    try:
        pool = _executor(count)
        for item in chosen:
            futures.append(pool.submit(function, item))
    except (RuntimeError, MemoryError):
        # No thread to be had (its stack is address space: ulimit -v): this one does it all.
        _settle(futures)
        return [function(item) for item in chosen]
    try:
        return [future.result() for future in futures]
    except BaseException:
        _settle(futures)
        raise


def _settle(futures: list[Future[R]]) -> None:
    """Cancel what has not started and wait for the rest (their errors are not the first)."""
    for future in futures:
        future.cancel()
    for future in futures:
        if not future.cancelled():
            future.exception()

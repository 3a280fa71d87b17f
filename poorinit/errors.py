"""Exceptions that name the culprit.

Every error a user can meet derives from :class:`PoorinitError`; the CLI prints
``str(error)`` as one line and exits 2. The message always says *which* file,
step or tensor is at fault and, where it can, what to do about it, because a CI
log line is often all a user sees.
"""

from __future__ import annotations

from pathlib import Path


class PoorinitError(Exception):
    """Base class: the input could not be analysed, or the call was misused."""


class TrialError(PoorinitError):
    """A trial directory or one of its files cannot be read as a trial."""

    def __init__(self, path: str | Path, problem: str) -> None:
        # An object-store URL stays a string: Path() would turn s3://b into s3:/b.
        text = str(path)
        self.path: Path | str = text if "://" in text else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StepFileError(TrialError):
    """One step file is damaged, foreign, or disagrees with its name."""


class TensorError(TrialError):
    """A tensor in a step file cannot be used (dtype, shape, values)."""

    def __init__(self, path: str | Path, tensor: str, problem: str) -> None:
        self.tensor = tensor
        super().__init__(path, f"tensor {tensor!r}: {problem}")


class ParameterError(PoorinitError):
    """A rule parameter is out of range or malformed (bad regex, steps=0, ...)."""


class Interrupted(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt)
    """SIGINT (Ctrl-C): stop, stop every worker, exit 130.

    Not a KeyboardInterrupt: click turns that into Abort after printing an
    empty line, and stderr must hold exactly one line.
    """

    exit_code = 130


class Terminated(Interrupted):
    """SIGTERM (a CI runner cancelling the job): stop, stop every worker, exit 143."""

    exit_code = 143


class NothingToAnalyseError(PoorinitError):
    """No criterion could be evaluated: a CI gate must not pass on missing data."""


# What to do when memory runs out, in every message that says so.
MEMORY_ADVICE = "give poorinit more memory (ulimit -v, the container's memory limit) or analyse fewer --steps"


class OutOfMemoryError(PoorinitError):
    """Memory ran out (Python's MemoryError, or HDF5's failed allocation): not damage, not a bug.

    ``where`` names what was being read when it is known (a file, a file and
    tensor, a trial and step); ``reason`` is the allocator's own words.
    """

    def __init__(self, reason: str, where: str | None = None, doing: str = "reading it") -> None:
        self.where = where
        self.reason = reason
        if where is None:
            super().__init__(f"ran out of memory ({reason}); {MEMORY_ADVICE}")
        else:
            super().__init__(f"{where}: ran out of memory while {doing} ({reason}); {MEMORY_ADVICE}")


def memory_reason(error: BaseException) -> str:
    """The allocator's words for a MemoryError (numpy says how much), on one line."""
    text = " ".join(str(error).split())
    return text or "an allocation failed"


def memory_exhausted(error: BaseException) -> str | None:
    """The reason, if ``error`` means that memory ran out, else None.

    Python says so with MemoryError, but not only: a library that cannot be
    mapped (ImportError), a thread that cannot get its stack (RuntimeError),
    HDF5's failed allocation (OSError), and any error raised while handling
    a MemoryError (an import cut short by it, say) all mean the same.
    """
    import errno

    seen: BaseException | None = error
    depth = 0
    while seen is not None and depth < 16:
        if isinstance(seen, MemoryError):
            return memory_reason(seen)
        seen, depth = seen.__context__, depth + 1
    text = " ".join(str(error).split())
    lowered = text.lower()
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return text
    if isinstance(error, RuntimeError) and "can't start new thread" in lowered:
        return text
    if any(words in lowered for words in ("failed to map segment", "cannot allocate memory",
                                          "memory allocation failed")):
        return text
    return None

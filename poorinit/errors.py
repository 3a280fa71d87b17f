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

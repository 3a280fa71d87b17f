"""Which reader opens a trial: one small interface, formats chosen by sniffing.

Two formats are read: poorinit's own (a directory of HDF5 step files,
:class:`poorinit.trial.Trial`) and SageMaker Debugger's (``events/``,
``index/``, ``collections/``; :class:`poorinit.smdebug.SmdebugTrial`). Each is
described by a :class:`TrialFormat`: a cheap ``guess_can_open`` that looks at
names only, kept apart from the expensive ``open`` (the model is xarray's
backends). The analysis, scan, inspect and the CLI call :func:`open_trial`
and never ask which format they hold.

Any trial reader provides what :class:`TrialReader` lists: steps, modes and
workers from names or indexes, a handle per (step, worker), and ``open`` on a
handle giving a step reader that names its tensors and collections and
streams a tensor.

A location with a scheme (``s3://bucket/trial``, ``gs://...``, any fsspec
URL) is read through fsspec (:mod:`poorinit.remote`), in either format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from . import format as fmt
from .errors import PoorinitError
from .records import record
from .store import LocalStore, Store
from .trial import Tensor, TensorInfo


class StepReader(Protocol):
    """One open step of one worker."""

    step_file: fmt.StepFile
    @property
    def attrs(self) -> Mapping[str, Any]:
        """The step file's root attributes as plain values (num_classes, ...); empty when it has none."""
        ...

    def tensor_names(self) -> list[tuple[str, tuple[str, ...]]]:
        """(name, poorinit collections) of every tensor, in the writer's order."""
        ...

    def infos(self) -> list[TensorInfo]: ...

    def tensor(self, name: str) -> Tensor: ...

    def close(self) -> None: ...

    def __enter__(self) -> StepReader: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class TrialReader(Protocol):
    """A trial, listed: what :class:`~poorinit.analysis.Analysis` and ``inspect`` read."""

    path: Any  # a Path, or the URL as typed (str) for an object store
    format_name: str

    @property
    def modes(self) -> tuple[str, ...]: ...

    @property
    def workers(self) -> tuple[int, ...]: ...

    def mode_workers(self, mode: str) -> tuple[int, ...]:
        """The workers that wrote data of ``mode``: whose data every analysed step should hold."""
        ...

    @property
    def finished(self) -> bool: ...

    def steps(self, mode: str = "train") -> list[int]: ...

    def step_files(self, step: int, mode: str = "train") -> list[fmt.StepFile]: ...

    def open(self, step_file: fmt.StepFile) -> StepReader: ...


@record
class TrialFormat:
    """A trial format: how to recognise it from names, and how to open it."""

    name: str
    description: str
    looks_for: str  # what guess_can_open looks for, for the error when nothing matches
    guess_can_open: Callable[[Store, str], bool]
    open: Callable[[Store, str], TrialReader]


def _poorinit_guess(store: Store, path: str) -> bool:
    try:
        if isinstance(store, LocalStore):
            # The first step file name answers, in directory order: a trial of
            # 10,000 steps is not listed, sorted and stat'ed once more before
            # Trial lists it (store.list does all three).
            with os.scandir(path) as entries:
                return any(fmt.STEP_FILE_RE.match(entry.name) for entry in entries)
        return any(fmt.STEP_FILE_RE.match(name) for name, _ in store.list(path))
    except OSError:
        return False


def _poorinit_open(store: Store, path: str) -> TrialReader:
    if isinstance(store, LocalStore):
        from .trial import Trial

        return Trial(path)
    from .remote import FsspecStore, RemoteTrial

    assert isinstance(store, FsspecStore)
    return RemoteTrial(store, path)


def _smdebug_guess(store: Store, path: str) -> bool:
    from .smdebug.layout import looks_like_smdebug

    return looks_like_smdebug(store, path)


def _smdebug_open(store: Store, path: str) -> TrialReader:
    from .smdebug import SmdebugTrial

    return SmdebugTrial(store, path)


POORINIT = TrialFormat(
    "poorinit", "poorinit trial (HDF5 step files, docs/format.md)",
    f"step files named like {fmt.step_file_name(0)}", _poorinit_guess, _poorinit_open,
)
SMDEBUG = TrialFormat(
    "smdebug", "SageMaker Debugger trial (docs/sagemaker.md)",
    "a SageMaker Debugger layout (events/ or index/ holding step directories)", _smdebug_guess, _smdebug_open,
)
FORMATS: tuple[TrialFormat, ...] = (POORINIT, SMDEBUG)


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an object in a store (``s3://...``); ``file://`` is local."""
    text = os.fspath(path)
    scheme, sep, _ = text.partition("://")
    # One letter is a Windows drive (C://...), not a protocol.
    return bool(sep) and len(scheme) > 1 and scheme.isidentifier() and scheme != "file"


def store_for(path: str | os.PathLike[str]) -> tuple[Store, str]:
    """The store that reads ``path`` and the path as that store spells it."""
    text = os.fspath(path)
    if is_url(text):
        from .remote import fsspec_store

        return fsspec_store(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return LocalStore(), text


def open_trial(path: str | os.PathLike[str], formats: Sequence[TrialFormat] = FORMATS) -> TrialReader:
    """The trial at ``path``, opened by the first format that recognises it.

    A local directory that no format recognises is opened as a poorinit trial,
    whose errors say what is wrong (no such directory, a file, no step files);
    the "no step files" error also names what the other formats looked for.
    """
    store, spelled = store_for(path)
    for candidate in formats:
        if candidate.guess_can_open(store, spelled):
            return candidate.open(store, spelled)
    if not isinstance(store, LocalStore):
        from .remote import missing_trial

        raise missing_trial(store, spelled, [f.looks_for for f in formats])
    from .trial import Trial

    return Trial(spelled, also_looked_for=[f.looks_for for f in formats if f is not POORINIT])


__all__ = ["FORMATS", "PoorinitError", "StepReader", "TrialFormat", "TrialReader", "open_trial", "store_for"]

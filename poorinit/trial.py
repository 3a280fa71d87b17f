"""Reading trials: list from names, open only the step files analysed, read
only the datasets selected, and stream them in blocks.

Listing a trial never opens a file, so a trial of 10,000 steps costs no more
to judge on its first 10 than a trial of 10. Every h5py failure is re-raised as
a :class:`~poorinit.errors.TrialError` subclass naming the file (and tensor).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from . import format as fmt
from .errors import StepFileError, TensorError, TrialError

# Elements per block when streaming a dataset: 1M values, 4 MiB of float32
# (8 MiB once in float64), small enough for the statistics' temporaries to
# stay in cache, large enough that the per-read cost of h5py vanishes.
BLOCK_ELEMENTS = 1 << 20


class Tensor(Protocol):
    """What a check reads: one tensor of one worker at one step."""

    name: str
    worker: int
    source: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int: ...

    def blocks(self) -> Iterator[np.ndarray]:
        """The values, flattened, in blocks of bounded size (native float dtype)."""
        ...


@dataclass(frozen=True)
class ArrayTensor:
    """An in-memory tensor: for the Python API and for tests of the checks."""

    name: str
    values: np.ndarray
    worker: int = 0
    source: str = "<memory>"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def size(self) -> int:
        return int(self.values.size)

    def blocks(self) -> Iterator[np.ndarray]:
        flat = np.asarray(self.values).reshape(-1)
        for start in range(0, flat.size, BLOCK_ELEMENTS):
            yield flat[start : start + BLOCK_ELEMENTS]


@dataclass(frozen=True)
class TensorInfo:
    """What ``poorinit inspect`` shows of a tensor; read from metadata only."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    collections: tuple[str, ...]


class DatasetTensor:
    """A tensor backed by an HDF5 dataset of an open step file."""

    def __init__(self, dataset: Any, name: str, worker: int, source: Path) -> None:
        self._dataset = dataset
        self.name = name
        self.worker = worker
        self.source = str(source)
        self.shape: tuple[int, ...] = tuple(dataset.shape)
        self._check_storage()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def _error(self, problem: str) -> TensorError:
        return TensorError(self.source, self.name, problem)

    def _check_storage(self) -> None:
        ds = self._dataset
        dtype = ds.dtype
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise self._error(f"dtype {dtype} is not float16/32/64; poorinit judges floating-point tensors only")
        if ds.is_virtual:
            raise self._error("is a virtual dataset; poorinit never follows data outside the trial")
        if ds.external:
            raise self._error("keeps its data in an external file; poorinit never follows data outside the trial")
        if self.size and not ds.compression and ds.id.get_storage_size() < ds.id.get_type().get_size() * self.size:
            raise self._error(
                f"claims shape {self.shape} but the file stores only "
                f"{ds.id.get_storage_size()} of {dtype.itemsize * self.size} bytes (truncated or forged)"
            )

    def blocks(self) -> Iterator[np.ndarray]:
        # A block is a run of the C-order array, cut along the first axis whose
        # inner extent fits BLOCK_ELEMENTS and at chunk boundaries, so the file
        # is read front to back and every chunk is decoded once.
        shape = self.shape
        if not shape:
            yield self._read(()).reshape(-1)
            return
        if not self.size:
            return
        inners = [int(np.prod(shape[axis + 1 :], dtype=np.int64)) for axis in range(len(shape))]
        axis = next(axis for axis, inner in enumerate(inners) if inner <= BLOCK_ELEMENTS)
        extent = shape[axis]
        step = min(extent, max(1, BLOCK_ELEMENTS // inners[axis]))
        chunks = self._dataset.chunks
        if chunks and step >= chunks[axis]:
            step -= step % chunks[axis]
        for outer in np.ndindex(*shape[:axis]):
            for start in range(0, extent, step):
                yield self._read((*outer, slice(start, start + step))).reshape(-1)

    def _read(self, selection: Any) -> np.ndarray:
        ds = self._dataset
        try:
            if not isinstance(selection, tuple) or not selection:
                return np.asarray(ds[selection])
            # read_direct into an uninitialised native-order array: ds[...]
            # zero-fills its result before reading, a third of the cost.
            dims = [
                len(range(*part.indices(extent)))
                for part, extent in zip(selection, self.shape, strict=False)
                if isinstance(part, slice)
            ]
            out = np.empty((*dims, *self.shape[len(selection):]), dtype=ds.dtype.newbyteorder("="))
            ds.read_direct(out, selection)
            return out
        except (OSError, ValueError, RuntimeError) as error:
            raise self._error(f"cannot be read ({_h5_reason(error)}): the file is damaged") from error


def _h5_reason(error: BaseException) -> str:
    """The useful tail of an h5py error message, on one line."""
    text = " ".join(str(error).split())
    return text.rsplit("(", 1)[-1].rstrip(")") if "(" in text else text or type(error).__name__


class StepReader:
    """An open step file: validated on open, tensors listed and read on demand."""

    def __init__(self, step_file: fmt.StepFile) -> None:
        import h5py

        self.step_file = step_file
        path = step_file.path
        try:
            size = path.stat().st_size
        except OSError as error:
            raise StepFileError(path, f"cannot be read ({error.strerror})") from error
        if size == 0:
            raise StepFileError(path, "is empty (0 bytes): the writer was interrupted; delete it or rerun")
        try:
            self._file = h5py.File(path, "r")
        except PermissionError as error:
            raise StepFileError(path, "permission denied") from error
        except OSError as error:
            raise StepFileError(path, f"is not a readable HDF5 file ({_h5_reason(error)})") from error
        try:
            self._validate()
        except BaseException:
            self._file.close()
            raise

    def _validate(self) -> None:
        path, f = self.step_file.path, self._file
        try:
            attrs = dict(f.attrs)
        except (OSError, RuntimeError) as error:
            raise StepFileError(path, f"has unreadable attributes ({_h5_reason(error)})") from error
        if fmt.FORMAT_ATTR not in attrs:
            raise StepFileError(path, f"is not a poorinit step file (no {fmt.FORMAT_ATTR!r} attribute)")
        version = attrs[fmt.FORMAT_ATTR]
        version = version.item() if isinstance(version, np.generic) else version
        if not isinstance(version, int) or version != fmt.FORMAT_VERSION:
            advice = "upgrade poorinit to read it" if isinstance(version, int) and version > fmt.FORMAT_VERSION \
                else "the file is not a valid trial"
            raise StepFileError(
                path, f"has format version {version!r}; this poorinit reads version {fmt.FORMAT_VERSION} ({advice})"
            )
        expected = {"step": self.step_file.step, "mode": self.step_file.mode, "worker": self.step_file.worker}
        for key, value in expected.items():
            if key not in attrs:
                raise StepFileError(path, f"lacks the required attribute {key!r}")
            found = attrs[key]
            if isinstance(found, bytes):
                found = found.decode("utf-8", "replace")
            if isinstance(found, np.generic):
                found = found.item()
            if found != value:
                raise StepFileError(path, f"attribute {key}={found!r} disagrees with its file name ({key} {value!r})")
        group = f.get(fmt.TENSOR_GROUP, getlink=True)
        if group is None:
            raise StepFileError(path, f"has no {fmt.TENSOR_GROUP!r} group")

    def tensor_names(self) -> list[tuple[str, tuple[str, ...]]]:
        """(name, collections) of every tensor, from metadata only."""
        import h5py

        found: list[tuple[str, tuple[str, ...]]] = []
        path = self.step_file.path

        def walk(group: Any, prefix: str) -> None:
            for key in group:
                link = group.get(key, getlink=True)
                name = f"{prefix}{key}"
                if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                    kind = "an external" if isinstance(link, h5py.ExternalLink) else "a soft"
                    raise TensorError(path, name, f"is {kind} link; poorinit never follows links")
                obj = group[key]
                if isinstance(obj, h5py.Group):
                    walk(obj, f"{name}/")
                elif isinstance(obj, h5py.Dataset):
                    found.append((name, _collections(obj)))

        try:
            walk(self._file[fmt.TENSOR_GROUP], "")
        except (OSError, RuntimeError, KeyError) as error:
            raise StepFileError(path, f"has an unreadable tensor index ({_h5_reason(error)})") from error
        return found

    def infos(self) -> list[TensorInfo]:
        infos = []
        for name, collections in self.tensor_names():
            ds = self._file[fmt.TENSOR_GROUP][name]
            infos.append(TensorInfo(name, tuple(ds.shape), str(ds.dtype), collections))
        return infos

    def tensor(self, name: str) -> DatasetTensor:
        dataset = self._file[fmt.TENSOR_GROUP][name]
        return DatasetTensor(dataset, name, self.step_file.worker, self.step_file.path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StepReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _collections(dataset: Any) -> tuple[str, ...]:
    raw = dataset.attrs.get(fmt.COLLECTIONS_ATTR)
    if raw is None:
        return ()
    values = [raw] if isinstance(raw, (str, bytes)) else list(np.asarray(raw).reshape(-1))
    names: list[str] = []
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        names.extend(part.strip() for part in text.split(",") if part.strip())
    return tuple(names)


class Trial:
    """A trial directory, listed from file names alone."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise TrialError(self.path, "no such trial directory")
        if not self.path.is_dir():
            raise TrialError(self.path, "is a file; a trial is a directory of step files")
        try:
            with os.scandir(self.path) as entries:
                names = [Path(entry.path) for entry in entries if entry.is_file()]
        except PermissionError as error:
            raise TrialError(self.path, "permission denied while listing the directory") from error
        files = sorted(f for f in map(fmt.parse_step_file_name, names) if f is not None)
        self._check_duplicates(files)
        self.files: tuple[fmt.StepFile, ...] = tuple(files)
        if not self.files:
            raise TrialError(self.path, self._no_step_files_hint())

    @staticmethod
    def _check_duplicates(files: Sequence[fmt.StepFile]) -> None:
        seen: dict[tuple[int, str, int], fmt.StepFile] = {}
        for f in files:
            key = (f.step, f.mode, f.worker)
            if key in seen:
                raise StepFileError(
                    f.path,
                    f"duplicates {seen[key].path.name} (step {f.step}, mode {f.mode}, worker {f.worker}); keep one",
                )
            seen[key] = f

    def _no_step_files_hint(self) -> str:
        example = fmt.step_file_name(0)
        inner = []
        try:
            for child in sorted(self.path.iterdir())[:200]:
                if child.is_dir() and not child.is_symlink() and any(
                    fmt.parse_step_file_name(p) for p in child.iterdir()
                ):
                    inner.append(child.name)
        except OSError:
            pass
        hint = f"; trials found inside: {', '.join(inner[:5])}" if inner else ""
        return f"holds no step files (named like {example}){hint}"

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(m for m in fmt.MODES if any(f.mode == m for f in self.files))

    @property
    def workers(self) -> tuple[int, ...]:
        return tuple(sorted({f.worker for f in self.files}))

    @property
    def finished(self) -> bool:
        """Whether the writer marked the trial complete (docs/format.md)."""
        return (self.path / fmt.FINISHED_MARKER).exists()

    def steps(self, mode: str = "train") -> list[int]:
        return sorted({f.step for f in self.files if f.mode == mode})

    def step_files(self, step: int, mode: str = "train") -> list[fmt.StepFile]:
        return [f for f in self.files if f.step == step and f.mode == mode]

    def open(self, step_file: fmt.StepFile) -> StepReader:
        return StepReader(step_file)

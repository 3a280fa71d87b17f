"""Writing trials: one HDF5 file per (step, mode, worker), never half-visible.

Each step file is written under a hidden temporary name in the trial directory,
flushed to disk and renamed into place once closed, so a reader listing the
directory sees a complete file or none at all (rename is atomic within one
filesystem), and a crash or a full disk leaves at most a temporary file that
readers ignore.

Every byte a reader needs is covered by a checksum (see ``format.HDF5_LIBVER``),
so a flipped bit or a torn copy is reported as damage, never judged as data.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from . import format as fmt

# Chunks of about 1 MiB: large enough that per-chunk overhead vanishes, small
# enough that a reader can stream a 1 GiB tensor in bounded memory.
CHUNK_BYTES = 1 << 20

# Opt-in compression of chunked datasets: smaller trials, slower reads (bench/recording.py).
COMPRESSIONS = (None, "gzip", "lzf")

ArrayLike = Any  # numpy arrays, Python floats, anything np.asarray accepts
AttrValue = str | int | float | bool | Sequence[int | float]


def chunk_shape(shape: tuple[int, ...], itemsize: int, target: int = CHUNK_BYTES) -> tuple[int, ...]:
    """A chunk shape of at most ``target`` bytes, cut along the leading axes.

    Cutting the leading axes keeps every chunk a contiguous run of the C-order
    array, so streaming chunk by chunk reads the file front to back.
    """
    chunk = list(shape)
    for axis in range(len(chunk)):
        inner = math.prod(chunk[axis + 1 :]) * itemsize
        if math.prod(chunk) * itemsize <= target:
            break
        chunk[axis] = max(1, min(chunk[axis], target // max(inner, 1)))
        if chunk[axis] > 1 or inner <= target:
            break
    return tuple(max(1, c) for c in chunk)


def _validate_name(name: str) -> None:
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid tensor name {name!r}: use non-empty '/'-separated parts")


def _as_float_array(name: str, value: ArrayLike, scalar: bool) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "f" and array.dtype.itemsize in (2, 4, 8):
        return array
    if scalar and array.dtype.kind in "iub" and array.size == 1:
        return array.astype(np.float64)
    raise TypeError(f"tensor {name!r} has dtype {array.dtype}; the format holds float16/32/64 only")


class TrialWriter:
    """Writes step files in the format of docs/format.md.

    >>> with TrialWriter("runs/trial") as writer:               # doctest: +SKIP
    ...     writer.write_step(0, activation_inputs={"fc1.relu_input": a},
    ...                       gradients={"gradient/fc1.weight": g}, losses={"loss": 0.69})

    Leaving the ``with`` block normally marks the trial finished (the
    ``FINISHED_<worker>`` file); leaving it by an exception does not, so a reader can
    tell a complete trial from a crashed one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "train",
        worker: int = 0,
        fsync: bool = True,
        compression: str | None = None,
    ) -> None:
        fmt.step_file_name(0, mode, worker)  # validates mode and worker
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(map(str, COMPRESSIONS))}, not {compression!r}")
        # gzip or lzf on chunked datasets, always with fletcher32 (the checksum
        # covers the compressed bytes); compact datasets live in the checksummed
        # object header and are never compressed.
        self.compression = compression
        self.path = Path(path)
        self.mode = mode
        self.worker = worker
        # Flushing each file to disk before its rename means that after a
        # machine crash a step file is either complete or absent, never a
        # right name over missing blocks (the rename alone already keeps a
        # half-written file from a concurrent reader). Off for throwaway
        # trials, and in poorinit.torch's Recorder, whose flushes cost a small
        # model's training loop about a step each (docs/recording.md,
        # Durability).
        self.fsync = fsync
        self.path.mkdir(parents=True, exist_ok=True)

    def write_step(
        self,
        step: int,
        *,
        activation_inputs: Mapping[str, ArrayLike] | None = None,
        gradients: Mapping[str, ArrayLike] | None = None,
        weights: Mapping[str, ArrayLike] | None = None,
        losses: Mapping[str, ArrayLike] | None = None,
        tensors: Mapping[str, tuple[ArrayLike, Iterable[str]]] | None = None,
        mode: str | None = None,
        worker: int | None = None,
        attrs: Mapping[str, Mapping[str, AttrValue]] | None = None,
        root_attrs: Mapping[str, AttrValue] | None = None,
    ) -> Path:
        """Write one step file atomically and return its path.

        The four keyword groups put each tensor in that collection; ``tensors``
        takes ``name -> (array, collections)`` for anything else. ``attrs``
        gives tensors optional attributes (``name -> {attribute: value}``, e.g.
        ``{"fc1.relu_input": {"activation": "relu", "order": 0}}``) and
        ``root_attrs`` the step file's (``{"num_classes": 10}``): the optional
        attributes of docs/format.md. Values are str, int, float, bool or a
        list of numbers.
        """
        mode = self.mode if mode is None else mode
        worker = self.worker if worker is None else worker
        entries: dict[str, tuple[np.ndarray, list[str]]] = {}
        groups = {
            fmt.ACTIVATION_INPUTS: activation_inputs,
            fmt.GRADIENTS: gradients,
            fmt.WEIGHTS: weights,
            fmt.LOSSES: losses,
        }
        for collection, group in groups.items():
            for name, value in (group or {}).items():
                scalar = collection == fmt.LOSSES
                entries[name] = (_as_float_array(name, value, scalar), [collection])
        for name, (value, collections) in (tensors or {}).items():
            entries[name] = (_as_float_array(name, value, scalar=False), list(collections))

        tensor_attrs = {name: dict(values) for name, values in (attrs or {}).items()}
        for name, values in tensor_attrs.items():
            if name not in entries:
                raise ValueError(f"attributes given for tensor {name!r}, which is not written")
            if fmt.COLLECTIONS_ATTR in values:
                raise ValueError(f"tensor {name!r}: set collections through the groups, not as an attribute")
            for key, value in values.items():
                _check_attr(f"attribute {key!r} of tensor {name!r}", key, value)
        root = dict(root_attrs or {})
        for key, value in root.items():
            if key in fmt.REQUIRED_ATTRS:
                raise ValueError(f"root attribute {key!r} is written by the writer itself")
            _check_attr(f"root attribute {key!r}", key, value)

        for name, (_, collections) in entries.items():
            _validate_name(name)
            for collection in collections:
                # Stored comma-separated in one string: a comma would split it.
                if not collection.strip() or "," in collection:
                    raise ValueError(f"invalid collection {collection!r} of tensor {name!r}: use a name without commas")

        final = self.path / fmt.step_file_name(step, mode, worker)
        # Hidden and unlike a step file name, so readers never list it; unique
        # per writer so that two processes never share one.
        temporary = self.path / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            self._write(temporary, _Contents(step, mode, worker, root, entries, tensor_attrs))
            if self.fsync:
                _fsync(temporary)
            os.replace(temporary, final)
        finally:
            _remove(temporary)
        return final

    def _write(self, temporary: Path, contents: _Contents) -> None:
        """The step file, written by poorinit itself (h5write.py), or through HDF5 where compressed
        or where h5write does not write it (a header message past 64 KiB, a paged chunk index)."""
        if self.compression is None:
            from .h5write import Unwritable, write_step_file

            try:
                write_step_file(temporary, contents.root_attributes(), contents.entries, contents.tensor_attrs)
                return
            except Unwritable:
                _remove(temporary)
        _write_file(temporary, contents, self.compression)

    def close(self) -> None:
        """Mark this worker finished: no more step files will come from it."""
        (self.path / fmt.worker_finished_marker(self.worker)).write_text("")

    def __enter__(self) -> TrialWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _check_attr(what: str, key: str, value: Any) -> None:
    """Refuse, before any file is made, a value the optional attributes cannot hold."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what}: attribute names are non-empty strings")
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value
    ):
        return
    raise TypeError(f"{what} is a {type(value).__name__}; attributes hold str, int, float, bool or a list of numbers")


# -- the file itself, through h5py's low-level API --
#
# A recorded step writes tens of datasets and attributes of a few bytes to a
# few MiB each; through h5py's high-level objects each costs several times
# HDF5's own work (a fresh property list, a type and a dataspace per call, an
# existence check per attribute). Here the property lists and types are built
# once per process and every object is created with h5d/h5a directly. The
# bytes on disk are those docs/format.md specifies, as before: the same
# layouts, filters, datatypes and attribute types (tests/test_format*.py).


@functools.cache
def _lists() -> Any:
    """File-access, link-, dataset- and attribute-creation property lists, made once."""
    import h5py

    h5p, h5f, h5d, h5t = h5py.h5p, h5py.h5f, h5py.h5d, h5py.h5t
    bounds = {"earliest": h5f.LIBVER_EARLIEST, "v108": h5f.LIBVER_V18, "v110": h5f.LIBVER_V110,
              "latest": h5f.LIBVER_LATEST}  # fmt: skip
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(bounds[fmt.HDF5_LIBVER], h5f.LIBVER_LATEST)
    # Closing the file closes every object still open in it, even after an error.
    fapl.set_fclose_degree(h5f.CLOSE_STRONG)
    lcpl = h5p.create(h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    lcpl.set_char_encoding(h5t.CSET_UTF8)
    compact = h5p.create(h5p.DATASET_CREATE)
    compact.set_layout(h5d.COMPACT)
    compact.set_obj_track_times(False)  # as h5py's create_dataset: no times in the header
    scalar = h5py.h5s.create(h5py.h5s.SCALAR)
    # No times in the groups' headers either (HDF5 stores four, to the
    # second, by default): the same step written twice is the same bytes.
    fcpl = h5p.create(h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    gcpl = h5p.create(h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return _Lists(fapl, fcpl, gcpl, lcpl, compact, scalar)


class _Lists:
    def __init__(self, fapl: Any, fcpl: Any, gcpl: Any, lcpl: Any, compact: Any, scalar: Any) -> None:
        self.fapl, self.fcpl, self.gcpl, self.lcpl = fapl, fcpl, gcpl, lcpl
        self.compact, self.scalar = compact, scalar


@functools.lru_cache(maxsize=256)
def _chunked_dcpl(chunks: tuple[int, ...], compression: str | None) -> Any:
    """Chunks of about 1 MiB, the optional compression, then fletcher32 (over the compressed bytes)."""
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    if compression == "gzip":
        dcpl.set_deflate(4)  # h5py's default level
    elif compression == "lzf":
        dcpl.set_filter(h5py.h5z.FILTER_LZF, h5py.h5z.FLAG_OPTIONAL)
    # fletcher32 lets the reader detect a flipped byte instead of judging it.
    dcpl.set_fletcher32()
    dcpl.set_obj_track_times(False)
    return dcpl


@functools.lru_cache(maxsize=64)
def _data_type(dtype: np.dtype) -> Any:
    import h5py

    return h5py.h5t.py_create(dtype, logical=True)


@functools.lru_cache(maxsize=256)
def _string_type(length: int) -> Any:
    """A fixed-length UTF-8 string: stored in the (checksummed) object header, not the global heap."""
    import h5py

    return h5py.h5t.py_create(h5py.string_dtype("utf-8", length), logical=True)


@dataclass(frozen=True)
class _Contents:
    """What one step file holds, checked: its root attributes and its tensors with their collections and attributes."""

    step: int
    mode: str
    worker: int
    root: Mapping[str, AttrValue]
    entries: Mapping[str, tuple[np.ndarray, list[str]]]
    tensor_attrs: Mapping[str, Mapping[str, AttrValue]]

    def root_attributes(self) -> dict[str, AttrValue]:
        """The root group's attributes in the order written: the required ones, then the optional."""
        return {fmt.FORMAT_ATTR: fmt.FORMAT_VERSION, "step": self.step, "mode": self.mode, "worker": self.worker,
                **self.root}  # fmt: skip


def _write_file(temporary: Path, contents: _Contents, compression: str | None) -> None:
    """Write the step file through HDF5."""
    import h5py

    h5f, h5g = h5py.h5f, h5py.h5g
    lists = _lists()
    fid = h5f.create(os.fsencode(temporary), h5f.ACC_TRUNC, fapl=lists.fapl, fcpl=lists.fcpl)
    try:
        top = h5g.open(fid, b"/")
        for key, value in contents.root_attributes().items():
            _write_attr(top, key, value)
        group = h5g.create(fid, fmt.TENSOR_GROUP.encode("utf-8"), lcpl=lists.lcpl, gcpl=lists.gcpl)
        for name, (array, collections) in contents.entries.items():
            dataset = _write_dataset(group, name, array, compression)
            if collections:
                _write_attr(dataset, fmt.COLLECTIONS_ATTR, ",".join(collections))
            for key, value in contents.tensor_attrs.get(name, {}).items():
                _write_attr(dataset, key, value)
            dataset.close()
        group.close()
        top.close()
    finally:
        fid.close()


def _write_dataset(group: Any, name: str, array: np.ndarray, compression: str | None = None) -> Any:
    """Create and fill one dataset; compact up to ``COMPACT_BYTES``, else chunked with fletcher32.

    Returns the dataset, open.
    """
    import h5py

    h5s = h5py.h5s
    lists = _lists()
    array = np.ascontiguousarray(array)
    chunks = chunk_shape(array.shape, array.dtype.itemsize)
    if array.nbytes <= fmt.COMPACT_BYTES:  # noqa: SIM108  (the comment belongs to the compact branch)
        # The data lives in the checksummed object header (for scalars too,
        # which h5py's high-level create_dataset would make contiguous).
        dcpl = lists.compact
    else:
        dcpl = _chunked_dcpl(chunks, compression)
    space = lists.scalar if array.ndim == 0 else h5s.create_simple(array.shape)
    dataset = h5py.h5d.create(group, name.encode("utf-8"), _data_type(array.dtype), space, dcpl=dcpl, lcpl=lists.lcpl)
    cut = fmt.chunk_axis(array.shape, chunks) if array.nbytes > fmt.COMPACT_BYTES and compression is None else None
    if cut is not None:
        _write_chunks(dataset, array, chunks, cut)
    elif array.size:
        dataset.write(h5s.ALL, h5s.ALL, array)
    return dataset


def _write_chunks(dataset: Any, array: np.ndarray, chunks: tuple[int, ...], cut: int) -> None:
    """Write each chunk raw, with its fletcher32 checksum computed in numpy.

    HDF5's filter computes the checksum a byte pair at a time inside h5py's
    lock (about 1 GB/s here); numpy computes the same four bytes about four
    times as fast and releases the GIL meanwhile, so a training thread runs
    while a background writer checksums. The bytes on disk are the ones the
    filter would write (tests/test_writer_and_trial.py compares them), and
    every reader verifies them as it verifies any fletcher32 chunk. Chunks are
    runs of the C-order array (``chunk_shape`` cuts the leading axes), so each
    is one slice (``cut``: the axis they cut, ``format.chunk_axis``); an edge chunk
    is padded with zeros to the full chunk size, as HDF5 stores it.
    """
    from .checksum import chunk_checksum

    shape = array.shape
    outer, rows, inner = math.prod(shape[:cut]), shape[cut], math.prod(shape[cut + 1 :])
    step = chunks[cut]
    chunk_bytes = step * inner * array.dtype.itemsize
    runs = array.reshape(outer, rows, inner).view(np.uint8).reshape(outer, rows, -1)
    buffer = np.empty(chunk_bytes + 4, dtype=np.uint8)
    body = buffer[:chunk_bytes]
    for index in range(outer):
        prefix = np.unravel_index(index, shape[:cut]) if cut else ()
        for start in range(0, rows, step):
            part = runs[index, start : start + step].reshape(-1)
            body[: part.size] = part
            body[part.size :] = 0
            buffer[chunk_bytes:] = np.frombuffer(chunk_checksum(body), dtype=np.uint8)
            offsets = (*(int(i) for i in prefix), start, *([0] * (len(shape) - cut - 1)))
            dataset.write_direct_chunk(offsets, buffer)


def _write_attr(location: Any, key: str, value: Any) -> None:
    """One attribute, with the types h5py's ``attrs[key] = value`` gives (strings fixed-length UTF-8)."""
    import h5py

    if isinstance(value, str):
        encoded = value.encode("utf-8")
        length = max(1, len(encoded))
        data = np.array(encoded, dtype=f"S{length}")
        file_type = memory_type = _string_type(length)
    else:
        if isinstance(value, (bool, np.bool_)):
            data = np.array(value, dtype=np.bool_)
        elif isinstance(value, (int, np.integer)):
            data = np.array(value, dtype=np.int64)
        elif isinstance(value, (float, np.floating)):
            data = np.array(value, dtype=np.float64)
        else:
            data = np.asarray(value, dtype=np.float64 if any(isinstance(v, float) for v in value) else np.int64)
        file_type = memory_type = _data_type(data.dtype)
    space = _lists().scalar if data.ndim == 0 else h5py.h5s.create_simple(data.shape)
    attribute = h5py.h5a.create(location, key.encode("utf-8"), file_type, space)
    try:
        attribute.write(data, mtype=memory_type)
    finally:
        attribute.close()

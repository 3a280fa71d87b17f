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

import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
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
        # right name over missing blocks. Off only for throwaway trials.
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
        import h5py

        try:
            with h5py.File(temporary, "w", libver=fmt.HDF5_LIBVER) as f:
                f.attrs[fmt.FORMAT_ATTR] = fmt.FORMAT_VERSION
                f.attrs["step"] = step
                _set_string_attr(f.attrs, "mode", mode)
                f.attrs["worker"] = worker
                for key, value in root.items():
                    _set_attr(f.attrs, key, value)
                group = f.create_group(fmt.TENSOR_GROUP)
                for name, (array, collections) in entries.items():
                    dataset = _write_dataset(group, name, array, collections, self.compression)
                    for key, value in tensor_attrs.get(name, {}).items():
                        _set_attr(dataset.attrs, key, value)
            if self.fsync:
                _fsync(temporary)
            os.replace(temporary, final)
        finally:
            if temporary.exists():
                temporary.unlink()
        return final

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


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _set_string_attr(attrs: Any, name: str, value: str) -> None:
    """A fixed-length UTF-8 string: stored in the (checksummed) object header."""
    import h5py

    encoded = value.encode("utf-8")
    attrs.create(name, encoded, dtype=h5py.string_dtype("utf-8", max(1, len(encoded))))


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


def _set_attr(attrs: Any, key: str, value: Any) -> None:
    if isinstance(value, str):
        _set_string_attr(attrs, key, value)
    elif isinstance(value, (bool, np.bool_)):
        attrs[key] = np.bool_(value)
    elif isinstance(value, (int, np.integer)):
        attrs[key] = np.int64(value)
    elif isinstance(value, (float, np.floating)):
        attrs[key] = np.float64(value)
    else:
        attrs[key] = np.asarray(value, dtype=np.float64 if any(isinstance(v, float) for v in value) else np.int64)


def _write_dataset(
    group: Any, name: str, array: np.ndarray, collections: list[str], compression: str | None = None
) -> Any:
    import h5py

    array = np.ascontiguousarray(array)
    if array.nbytes <= fmt.COMPACT_BYTES:
        # h5py ignores a creation property list for scalars, so the dataset is
        # made through the low-level API to get the compact layout for all shapes.
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        lcpl.set_create_intermediate_group(True)
        lcpl.set_char_encoding(h5py.h5t.CSET_UTF8)
        space = h5py.h5s.create(h5py.h5s.SCALAR) if array.ndim == 0 else h5py.h5s.create_simple(array.shape)
        type_id = h5py.h5t.py_create(array.dtype, logical=True)
        dataset_id = h5py.h5d.create(group.id, name.encode("utf-8"), type_id, space, dcpl=dcpl, lcpl=lcpl)
        if array.size:
            dataset_id.write(h5py.h5s.ALL, h5py.h5s.ALL, array)
        dataset = h5py.Dataset(dataset_id)
    else:
        # fletcher32 lets the reader detect a flipped byte instead of judging it.
        dataset = group.create_dataset(
            name,
            data=array,
            chunks=chunk_shape(array.shape, array.dtype.itemsize),
            fletcher32=True,
            compression=compression,
        )
    if collections:
        _set_string_attr(dataset.attrs, fmt.COLLECTIONS_ATTR, ",".join(collections))
    return dataset

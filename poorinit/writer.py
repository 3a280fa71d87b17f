"""Writing trials: one HDF5 file per (step, mode, worker), never half-visible.

Each step file is written under a hidden temporary name in the trial directory
and renamed into place once closed, so a reader listing the directory sees a
complete file or none at all (rename is atomic within one filesystem).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from . import format as fmt

# Chunks of about 1 MiB: large enough that per-chunk overhead vanishes, small
# enough that a reader can stream a 1 GiB tensor in bounded memory.
CHUNK_BYTES = 1 << 20

ArrayLike = Any  # numpy arrays, Python floats, anything np.asarray accepts


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
    ``FINISHED`` file); leaving it by an exception does not, so a reader can
    tell a complete trial from a crashed one.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: str = "train", worker: int = 0) -> None:
        fmt.step_file_name(0, mode, worker)  # validates mode and worker
        self.path = Path(path)
        self.mode = mode
        self.worker = worker
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
    ) -> Path:
        """Write one step file atomically and return its path.

        The four keyword groups put each tensor in that collection; ``tensors``
        takes ``name -> (array, collections)`` for anything else.
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

        final = self.path / fmt.step_file_name(step, mode, worker)
        temporary = self.path / f".{final.name}.{os.getpid()}.tmp"
        import h5py

        try:
            with h5py.File(temporary, "w") as f:
                f.attrs[fmt.FORMAT_ATTR] = fmt.FORMAT_VERSION
                f.attrs["step"] = step
                f.attrs["mode"] = mode
                f.attrs["worker"] = worker
                group = f.create_group(fmt.TENSOR_GROUP)
                for name, (array, collections) in entries.items():
                    _validate_name(name)
                    _write_dataset(group, name, array, collections)
            os.replace(temporary, final)
        finally:
            if temporary.exists():
                temporary.unlink()
        return final

    def close(self) -> None:
        """Mark the trial finished: no more step files will come."""
        (self.path / fmt.FINISHED_MARKER).write_text("")

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


def _write_dataset(group: Any, name: str, array: np.ndarray, collections: list[str]) -> None:
    if array.ndim == 0 or array.size == 0:
        dataset = group.create_dataset(name, data=array)
    else:
        # fletcher32 lets the reader detect a flipped byte instead of judging it.
        dataset = group.create_dataset(
            name,
            data=array,
            chunks=chunk_shape(array.shape, array.dtype.itemsize),
            fletcher32=True,
        )
    dataset.attrs[fmt.COLLECTIONS_ATTR] = collections

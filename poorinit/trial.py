"""Reading trials: list from names, open only the step files analysed, read
only the datasets selected, and stream them in blocks.

Listing a trial never opens a file, so a trial of 10,000 steps costs no more
to judge on its first 10 than a trial of 10. Every h5py failure is re-raised as
a :class:`~poorinit.errors.TrialError` subclass naming the file (and tensor).
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from . import format as fmt
from .errors import OutOfMemoryError, StepFileError, TensorError, TrialError, memory_reason
from .records import record

# Read chunks raw and verify their checksums with numpy where the filter
# pipeline holds nothing else (see DatasetTensor._raw_layout); False forces
# h5py's ordinary read path everywhere (tests compare the two).
RAW_READS = True

# Elements per block when streaming a dataset: 1M values, 4 MiB of float32
# (8 MiB once in float64), small enough for the statistics' temporaries to
# stay in cache, large enough that the per-read cost of h5py vanishes.
BLOCK_ELEMENTS = 1 << 20
# Values of a tensor read once and kept by its DatasetTensor (a loss, asked by two criteria).
TINY_VALUES = 16

# Resource budgets per step file (docs/format.md, "Resource budgets"). A file
# of a few kilobytes can describe gigabytes of work: links that fan out,
# nesting, chunks that decompress a thousandfold. Each budget is checked from
# metadata, before the work it bounds, whichever path reads the values, and a
# file beyond one is refused with a line naming the budget.
MAX_TENSORS = 16_384  # datasets listed per step file (a large model saves a few thousand)
MAX_LINKS = 32_768  # links below /tensors per step file (to datasets and groups)
MAX_DEPTH = 64  # groups nested below /tensors
MAX_CHUNK_BYTES = 16 << 20  # one chunk, decompressed (h5py chooses at most 1 MiB)
MAX_CHUNKS = 262_144  # chunks of the tensors read from one step file
# Filtered (compressed) data read from one file may expand to this much plus
# EXPANSION times the file's size: real tensors compress about 1-3x, zeros a
# thousandfold.
DECOMPRESSED_BASE = 256 << 20
EXPANSION = 100
# Dataset objects kept open per file after listing (the rest are looked up by
# name when read): an open HDF5 object costs kilobytes, 100,000 cost gigabytes.
KEEP_OPEN = 1024


# Step files in TrialWriter's layout are parsed without HDF5 (h5direct.py);
# False opens every file with HDF5 (tests compare the two).
DIRECT_READS = True

# What h5py raises when a file is damaged or holds what it cannot convert:
# HDF5 errors surface as OSError, KeyError, RuntimeError or ValueError, odd
# types as TypeError. Reading code re-raises them as TrialError subclasses
# that name the file and tensor, so no damage ever reaches the user as an
# "internal error".
H5_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    KeyError,
    RuntimeError,
    ValueError,
    TypeError,
    IndexError,
    OverflowError,
    SystemError,
)


# Opening a file: HDF5's failures, or memory running out on the way (told apart by _memory_failure).
H5_OR_MEMORY_ERRORS: tuple[type[Exception], ...] = (*H5_ERRORS, MemoryError)


BlockReader = Callable[..., Iterator[np.ndarray]]


def _reading(method: BlockReader) -> BlockReader:
    """Streaming a tensor: any h5py failure on the way becomes a TensorError naming it."""

    @functools.wraps(method)
    def blocks(self: DatasetTensor, *args: Any) -> Iterator[np.ndarray]:
        with _translated(self._where, self.name):
            yield from method(self, *args)

    return blocks


def _kind(dtype: np.dtype[Any]) -> str:
    kinds = {"i": "integer", "u": "integer", "b": "boolean", "S": "string", "U": "string", "O": "string or object",
             "c": "complex", "M": "date", "m": "time span", "f": f"{8 * dtype.itemsize}-bit float"}
    if dtype.kind == "V":
        return "compound" if dtype.names else "array or opaque"
    return kinds.get(dtype.kind, "unknown")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Tensor(Protocol):
    """What a check reads: one tensor of one worker at one step."""

    name: str
    worker: int
    source: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int: ...

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The dataset's attributes other than ``collections``, as plain Python values.

        Optional metadata (docs/format.md): e.g. ``activation``, ``after``,
        ``order`` on activation inputs, ``module`` on weights. Empty for a
        tensor written without any, so old trials read as before.
        """
        ...

    def blocks(self) -> Iterator[np.ndarray]:
        """The values, flattened, in blocks of bounded size (native float dtype)."""
        ...


@record
class ArrayTensor:
    """An in-memory tensor: for the Python API and for tests of the checks."""

    name: str
    values: np.ndarray
    worker: int = 0
    source: str = "<memory>"
    attrs: Mapping[str, Any] = field(default_factory=dict)

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


@record
class TensorInfo:
    """What ``poorinit inspect`` shows of a tensor; read from metadata only."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    collections: tuple[str, ...]


class DatasetTensor:
    """A tensor backed by an HDF5 dataset of an open step file.

    Whatever would make the values a lie is refused here, before a check reads
    a block: a dtype the rule cannot judge, data kept outside the file, and
    storage that holds less than the shape claims (chunks never written read
    back as the fill value, zeros, which the rule would judge as a dead network).
    """

    def __init__(self, dataset: Any, name: str, worker: int, source: Path, budget: _Budget | None = None,
                 raw_fd: int = -1) -> None:
        self._dataset = dataset
        self._bind(name, worker, source, budget, raw_fd)
        with _translated(source, name):
            shape = dataset.shape
            if shape is None:
                raise self._error("has no dataspace (an empty HDF5 dataset); store the tensor as an array")
            self.shape: tuple[int, ...] = tuple(int(n) for n in shape)
            # Asked once: h5py builds the numpy dtype from the HDF5 type at every ``dataset.dtype``.
            self._dtype: np.dtype[Any] = _dtype_of(dataset.id.get_type())
            self._chunks: tuple[int, ...] | None = dataset.chunks
            self._check_storage()

    def _bind(self, name: str, worker: int, source: Path, budget: _Budget | None, raw_fd: int) -> None:
        """What every tensor of a step file holds besides its dataset (DirectTensor shares it)."""
        # The open step file, for raw chunk reads without h5py's lock (_raw_blocks); -1: through h5py.
        self._raw_fd = raw_fd
        self._attrs: dict[str, Any] | None = None
        self._tiny: np.ndarray | None = None  # the values of a tensor of at most TINY_VALUES, once read
        self._budget = budget
        self.name = name
        self.worker = worker
        self.source = str(source)
        # How messages name the file: made once here, not at every read (a Path costs more than a small read).
        self._where = source if isinstance(source, Path) else _where(self.source)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def attrs(self) -> Mapping[str, Any]:
        """Read on first use only: the checks that never look pay nothing."""
        if self._attrs is None:
            with _translated(self._where, self.name):
                self._attrs = _plain_attrs(self._dataset.id, skip=(fmt.COLLECTIONS_ATTR,))
        return self._attrs

    def _error(self, problem: str) -> TensorError:
        return TensorError(self.source, self.name, problem)

    @functools.cached_property  # the loss is asked by two criteria
    def fill_value(self) -> float | None:
        """What the storage holds until written, when the writer asked for it to be allocated with
        the dataset (early allocation of contiguous or chunked storage); None otherwise.

        Storage allocated late or chunk by chunk, and never written, is refused by _check_storage
        (it counts what is stored). Compact storage, which lives in the object header, is always
        allocated with the dataset: TrialWriter stores small tensors so, and a loss of exactly 0
        there is data, so compact storage never written cannot be told apart (docs/format.md)."""
        import h5py

        with _translated(self._where, self.name):
            plist = self._dataset.id.get_create_plist()
            layout, alloc_time = plist.get_layout(), plist.get_alloc_time()
            if layout == h5py.h5d.COMPACT or alloc_time != h5py.h5d.ALLOC_TIME_EARLY:
                return None
            fill = np.zeros((1,), dtype=self._dtype)
            if plist.fill_value_defined() == h5py.h5d.FILL_VALUE_USER_DEFINED:
                plist.get_fill_value(fill)
            return float(fill[0])

    def refuse_fill_only(self, values: np.ndarray) -> None:
        """Refuse values that are all the fill value of storage allocated early: a dataset created
        and never written reads back as its fill value (0 unless the writer set one).

        For a loss, which is one value and never exactly its fill value in a real run. Activation
        inputs and gradients are not asked: zeros there are data, and the rule judges them."""
        fill = self.fill_value
        if fill is None or not values.size or not np.all((values == fill) | (np.isnan(values) & math.isnan(fill))):
            return
        raise self._error(
            f"holds only its fill value {fill!r}: its storage was allocated when the dataset was created and "
            "apparently never written (a writer that crashed or skipped it); rewrite the step"
        )

    def _damaged(self, reason: str) -> TensorError:
        """What HDF5's own failures on a tensor become (see _translated)."""
        return self._error(f"cannot be read ({reason}): the file is damaged")

    def _check_storage(self) -> None:
        ds = self._dataset
        if ds.is_virtual:
            raise self._error(
                "is a virtual dataset; poorinit never follows data stored elsewhere: store the values in the dataset"
            )
        if ds.external:
            raise self._error(
                f"keeps its data in an external file ({_text(ds.external[0][0])}); poorinit never follows data "
                "outside the trial: store the values in the dataset"
            )
        dtype = self._dtype
        self._check_dtype()
        if not self.size:
            return
        if ds.chunks is None:
            stored, needed, unit = ds.id.get_storage_size(), dtype.itemsize * self.size, "bytes"
        else:
            # Budgets first, from the layout alone: counting the chunks stored
            # walks the chunk index, which is itself what a hostile file inflates.
            needed = math.prod(-(-extent // chunk) for extent, chunk in zip(self.shape, ds.chunks, strict=True))
            filtered = self._check_layout(needed)
            # Counting chunks, not bytes, holds for compressed and filtered data too.
            stored, unit = ds.id.get_num_chunks(), "chunks"
        if stored < needed:
            raise self._error(
                f"claims shape {self.shape} but the file stores only {stored} of its {needed} {unit} "
                "(never written, truncated or forged); rewrite the step"
            )
        if ds.chunks is not None and self._budget is not None:
            self._budget.charge(self.name, needed, self.size * dtype.itemsize if filtered else 0)

    def _check_dtype(self) -> None:
        dtype = self._dtype
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise self._error(
                f"dtype {dtype} ({_kind(dtype)}) is not float16/32/64; poorinit judges floating-point tensors only: "
                "store it as floating point, or leave it out of what the rule selects"
            )

    def _check_layout(self, count: int) -> bool:
        """Refuse chunks too large or too many, or a filter this HDF5 lacks; whether data is filtered."""
        import h5py

        ds = self._dataset
        if count > MAX_CHUNKS:
            raise self._error(
                f"is stored in {count} chunks, past the budget of {MAX_CHUNKS} per step file (docs/format.md, "
                "resource budgets); rewrite the step with larger chunks"
            )
        chunk_bytes = math.prod(ds.chunks) * self._dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise self._error(
                f"is stored in chunks of {chunk_bytes} bytes decompressed, past the budget of {MAX_CHUNK_BYTES} "
                "(docs/format.md, resource budgets); rewrite the step with smaller chunks"
            )
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(index) for index in range(plist.get_nfilters())]
        for code, _flags, _values, label in filters:
            if not h5py.h5z.filter_avail(code):
                shown = _text(label).strip() or "unnamed"
                raise self._error(
                    f"is compressed with HDF5 filter {shown!r} (id {code}), which this HDF5 cannot decode; install "
                    "its plugin (for example pip install hdf5plugin, then set HDF5_PLUGIN_PATH) or rewrite the step "
                    "without it"
                )
        # Checksums and byte shuffling do not expand data; every other filter may.
        return any(code not in (h5py.h5z.FILTER_FLETCHER32, h5py.h5z.FILTER_SHUFFLE) for code, *_ in filters)

    @_reading
    def blocks(self) -> Iterator[np.ndarray]:
        raw = self._raw_layout()
        if raw is not None:
            yield from self._raw_blocks(*raw)
            return
        yield from self._filtered_blocks()

    def _raw_layout(self) -> tuple[int, bool] | None:
        """(axis, checksummed) when the chunks can be read raw, else None.

        Raw reading bypasses HDF5's filter pipeline, so it is used only where
        that pipeline does nothing but verify a checksum poorinit verifies
        itself: no filter, or fletcher32 alone (what TrialWriter writes).
        Compressed, shuffled or otherwise filtered data, and chunks that are
        not contiguous runs of the C-order array (chunk extent 1 before an
        axis, the full extent after it), go through h5py's ordinary read."""
        import h5py

        ds = self._dataset
        chunks = self._chunks
        if chunks is None or not self.size or not RAW_READS:
            return None
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(index)[0] for index in range(plist.get_nfilters())]
        if filters not in ([], [h5py.h5z.FILTER_FLETCHER32]):
            return None
        axis = fmt.chunk_axis(self.shape, chunks)
        return None if axis is None else (axis, bool(filters))

    def blocks_into(self, out: np.ndarray) -> Iterator[np.ndarray] | None:
        """The values as :meth:`blocks` gives them, read straight into ``out``
        (bytes: the tensor's, then 4 to spare for the last chunk's checksum),
        each block a view of it; None when the chunks do not lie there back to
        back (see _raw_layout), or the values are not native float32.

        For the gradients a step keeps for its percentiles: read into their
        place in the arena, they are never copied."""
        raw = self._raw_layout()
        dtype = self._dtype
        if raw is None or raw[0] != 0 or dtype != np.dtype(np.float32) or not dtype.isnative:
            return None
        if self._chunks is None or self.shape[0] % self._chunks[0] or out.nbytes < self.size * 4 + 4:
            return None
        return self._reading_into(raw[1], out)

    @_reading
    def _reading_into(self, checksummed: bool, out: np.ndarray) -> Iterator[np.ndarray]:
        yield from self._raw_blocks(0, checksummed, into=out)

    def _raw_blocks(self, axis: int, checksummed: bool, into: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The chunks' raw bytes, read into block buffers (or back to back into
        ``into``), each chunk's fletcher32 checksum verified with numpy
        (poorinit/checksum.py)."""
        from .checksum import fletcher32_matches

        dsid = None if self._dataset is None else self._dataset.id
        shape, chunks = self.shape, self._chunks
        assert chunks is not None
        dtype = self._dtype
        inner = math.prod(shape[axis + 1 :])
        chunk_values = chunks[axis] * inner
        chunk_bytes = chunk_values * dtype.itemsize
        trailer = 4 if checksummed else 0
        per_block = max(1, BLOCK_ELEMENTS // chunk_values)
        zeros = (0,) * (len(shape) - axis - 1)
        for outer in np.ndindex(*shape[:axis]):
            starts = range(0, shape[axis], chunks[axis])
            for first in range(0, len(starts), per_block):
                group = starts[first : first + per_block]
                values = sum(min(chunks[axis], shape[axis] - start) for start in group) * inner
                # Chunk k lands at k * chunk_bytes; its checksum, just after it,
                # is overwritten by the next chunk once verified.
                if into is None:
                    buffer = _block_buffer((len(group) * chunk_bytes + trailer,), np.dtype(np.uint8))
                else:  # whole chunks along axis 0 (blocks_into): block after block
                    buffer = into[first * chunk_bytes : (first + len(group)) * chunk_bytes + trailer]
                for index, start in enumerate(group):
                    at = index * chunk_bytes
                    coordinate = (*outer, start, *zeros)
                    where = f"chunk at {coordinate}"
                    if self._raw_fd >= 0:
                        mask, stored = self._read_chunk(dsid, coordinate, buffer[at:], where)
                    else:
                        assert dsid is not None
                        mask, raw = dsid.read_direct_chunk(coordinate, out=buffer[at:])
                        stored = len(raw)
                    expected = chunk_bytes + (trailer if not mask & 1 else 0)
                    if stored != expected:
                        raise self._damaged(f"{where} holds {stored} bytes, not {expected}")
                    if checksummed and not mask & 1 and not fletcher32_matches(
                        buffer[at : at + chunk_bytes], buffer[at + chunk_bytes : at + chunk_bytes + 4]
                    ):
                        raise self._damaged(f"{where} fails its fletcher32 checksum")
                block = buffer[: values * dtype.itemsize].view(dtype)
                yield block if dtype.isnative else block.astype(dtype.newbyteorder("="))

    def _read_chunk(self, dsid: Any, coordinate: tuple[int, ...], out: np.ndarray, where: str) -> tuple[int, int]:
        """(filter mask, bytes stored) of a raw chunk, its bytes read into ``out``.

        HDF5 gives the chunk's address and size; the bytes are read with
        ``os.preadv`` from the step file already open, which, unlike h5py's
        read_direct_chunk, releases the GIL: two threads read and verify at
        once. The checksum verified after it is what vouches for the bytes."""
        offset, size, mask = self._chunk_info(dsid, coordinate)
        if offset is None:
            raise self._damaged(f"{where} is not stored")
        if size > out.size:
            return mask, size  # refused by the caller: more bytes than a chunk holds
        read = os.preadv(self._raw_fd, [out[:size]], offset)  # type: ignore[list-item]
        if read != size:
            raise self._damaged(f"{where} lies past the end of the file ({read} of its {size} bytes there)")
        return mask, size

    def _chunk_info(self, dsid: Any, coordinate: tuple[int, ...]) -> tuple[int | None, int, int]:
        """(file offset or None when not stored, bytes stored, filter mask) of a chunk, as HDF5 gives them."""
        info = dsid.get_chunk_info_by_coord(coordinate)
        return info.byte_offset, info.size, info.filter_mask

    def _filtered_blocks(self) -> Iterator[np.ndarray]:
        # A block is a run of the C-order array, cut along the first axis whose
        # inner extent fits BLOCK_ELEMENTS and at chunk boundaries, so the file
        # is read front to back and every chunk is decoded once.
        shape = self.shape
        if not shape:
            yield self._read(()).reshape(-1)
            return
        if not self.size:
            return
        if self.size <= TINY_VALUES:
            # A loss is read by two criteria at every step: the second gets a copy of the first read.
            if self._tiny is None:
                self._tiny = self._read_whole().copy()
            yield self._tiny.copy()
            return
        if self.size <= BLOCK_ELEMENTS:
            yield self._read_whole()
            return
        inners = [int(np.prod(shape[axis + 1 :], dtype=np.int64)) for axis in range(len(shape))]
        axis = next(axis for axis, inner in enumerate(inners) if inner <= BLOCK_ELEMENTS)
        extent = shape[axis]
        step = min(extent, max(1, BLOCK_ELEMENTS // inners[axis]))
        chunks = self._chunks
        if chunks and step >= chunks[axis]:
            step -= step % chunks[axis]
        for outer in np.ndindex(*shape[:axis]):
            for start in range(0, extent, step):
                yield self._read((*outer, slice(start, start + step))).reshape(-1)

    def _read_whole(self) -> np.ndarray:
        """The whole dataset in one low-level read: h5py's selection machinery
        costs more than the read itself for the small tensors of most trials."""
        import h5py

        out = _block_buffer((self.size,), self._dtype.newbyteorder("="))
        self._dataset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        return out

    def _read(self, selection: Any) -> np.ndarray:
        # Errors are translated by @_reading on blocks(), the only caller.
        ds = self._dataset
        if not isinstance(selection, tuple) or not selection:
            return np.asarray(ds[selection])
        # read_direct into an uninitialised native-order array: ds[...]
        # zero-fills its result before reading, up to a third of the cost.
        dims = [
            len(range(*part.indices(extent)))
            for part, extent in zip(selection, self.shape, strict=False)
            if isinstance(part, slice)
        ]
        out = _block_buffer((*dims, *self.shape[len(selection):]), self._dtype.newbyteorder("="))
        ds.read_direct(out, selection)
        return out


_recycled = threading.local()
# Block buffers each thread keeps for reuse.
RECYCLED_BUFFERS = 2


def _block_buffer(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialised array for a block: a buffer of an earlier block that
    nobody holds any more, when there is one, else a new one.

    Consumers may keep blocks (a list of them, a census): a buffer is reused
    only when its reference count shows that no array or view of it is alive
    outside this pool. A fresh 4 MiB array per block costs a thousand page
    faults; a reused one, none."""
    count = math.prod(shape)
    pool: list[np.ndarray] = _recycled.__dict__.setdefault("buffers", [])
    for buffer in pool:
        # References: the pool's list, this loop's variable, getrefcount's argument.
        if sys.getrefcount(buffer) == 3 and buffer.dtype == dtype and buffer.size >= count:
            return buffer[:count].reshape(shape)
    buffer = np.empty(count, dtype=dtype)
    if count >= 1 << 16:
        if len(pool) >= RECYCLED_BUFFERS:
            pool.pop(0)
        pool.append(buffer)
    return buffer.reshape(shape)


def _h5_reason(error: BaseException) -> str:
    """The useful tail of an h5py error message, on one line."""
    # str() of a KeyError quotes its message; the message itself is args[0].
    message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    text = " ".join(message.split())
    # h5py puts HDF5's own words in the last, outermost parentheses, which
    # may nest: "... (unknown object header status flag(s))".
    depth = 0
    for index in range(len(text) - 1, -1, -1) if text.endswith(")") else ():
        depth += {")": 1, "(": -1}.get(text[index], 0)
        if depth == 0:
            return text[index + 1 : -1]
    return text or type(error).__name__


def _where(source: str) -> Path | str:
    """A tensor's file for messages: a local Path, or an object-store URL kept as typed."""
    return source if "://" in source else Path(source)


def _replaced(error: BaseException) -> bool:
    """Whether the store says the object changed since it was opened (s3fs's FileExpired: If-Match failed)."""
    return any(cls.__name__ == "FileExpired" for cls in type(error).__mro__)


class _translated:
    """Re-raise what h5py raises on damaged metadata as an error naming the file (and tensor).

    A class rather than a generator-based context manager: a small step file
    enters it some thirty times, and contextlib's machinery cost more than the
    HDF5 calls it guards."""

    __slots__ = ("path", "tensor")

    def __init__(self, path: Path | str, tensor: str | None = None) -> None:
        self.path = path
        self.tensor = tensor

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is None:
            return
        path, tensor = self.path, self.tensor
        if isinstance(error, MemoryError):
            raise _out_of_memory(path, tensor, memory_reason(error)) from None
        if isinstance(error, H5_ERRORS):
            if _memory_failure(error):  # HDF5's own allocation failed: memory ran out, the file may be fine
                raise _out_of_memory(path, tensor, _h5_reason(error)) from None
            if _replaced(error) or _replaced(error.__context__ or error):
                raise StepFileError(path, REPLACED_WHILE_READ) from error
            if _vanished(error) or _vanished(error.__context__ or error):
                raise StepFileError(path, VANISHED_WHILE_READ) from error
            if tensor is not None:
                raise TensorError(path, tensor, f"cannot be read ({_h5_reason(error)}): the file is damaged") from error
            raise StepFileError(path, f"is damaged ({_h5_reason(error)}); restore it or rerun the step") from error


# An object store's object replaced between two reads of it (remote step files are read by ranges,
# each asking for the object first seen): refused, never read half old, half new.
REPLACED_WHILE_READ = (
    "was replaced in the store while it was read (its ETag or version changed): a writer uploaded it again; "
    "rerun once the writer is done"
)


# A step file deleted while it was read: an object removed from its store, or a file on a network
# file system whose handle went stale. (A local file read through its open descriptor cannot vanish.)
VANISHED_WHILE_READ = (
    "vanished while it was read (deleted from its store, or a stale network file handle); rerun once nothing "
    "deletes step files"
)


def _vanished(error: BaseException) -> bool:
    import errno

    return isinstance(error, FileNotFoundError) or (
        isinstance(error, OSError) and error.errno in (errno.ENOENT, errno.ESTALE)
    )


# How HDF5 and the C library say an allocation failed (h5py passes their words on in an OSError).
_MEMORY_WORDS = re.compile(
    r"memory allocation failed|can'?t allocate|unable to allocate|out of memory|cannot allocate memory|"
    r"failed to map segment", re.IGNORECASE
)


def _memory_failure(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or bool(_MEMORY_WORDS.search(str(error)))


def _out_of_memory(path: Path | str, tensor: str | None, reason: str) -> OutOfMemoryError:
    where = f"{path}: tensor {tensor!r}" if tensor is not None else str(path)
    return OutOfMemoryError(reason, where)


def _open_problem(error: BaseException) -> str:
    """What h5py.File's failure to open a step file means, and what to do."""
    text = " ".join(str(error).split())
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if truncated:
        return (
            f"is truncated ({truncated[1]} of {truncated[2]} bytes): a copy or the writer was interrupted; "
            "copy it again or rerun the step"
        )
    if "consistency flags" in text:
        return (
            "was not closed by its writer (HDF5's file-consistency flag is set): it is being written in place, "
            "or its writer crashed; rerun once the writer is done, or rewrite the step"
        )
    if "file locking flag values don't match" in text or "file is already open" in text:
        return (
            "is already open in this process with other settings (an h5py.File of the caller's still open, "
            "e.g. for writing or with other locking); close it before analysing"
        )
    if "signature not found" in text:
        return (
            "is not a readable HDF5 file (no HDF5 signature); replace it with the file the writer wrote, "
            "or move it out of the trial"
        )
    return f"is not a readable HDF5 file ({_h5_reason(error)}): it is damaged; restore it or rerun the step"


def _open_step_file(path: Path) -> tuple[int, os.stat_result]:
    """Open the step file for HDF5, refusing first what plainly cannot be one.

    The file is opened once, without blocking (a FIFO swapped in after the
    listing would otherwise block ``open`` until a writer comes), and judged
    by ``fstat`` of what was opened, not by a ``stat`` of the name that the
    name may no longer mean. HDF5 then opens the same open file
    (``/proc/self/fd/N``), never the name again. Returns the descriptor
    (the caller closes it) and its status.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as error:
        if path.is_symlink():
            raise StepFileError(
                path,
                f"is a broken symbolic link (to {os.readlink(path)}): its data was never fetched or was deleted; "
                "fetch it (git annex get, dvc pull, ...) or remove the link",
            ) from error
        raise StepFileError(
            path, "vanished after the trial was listed; rerun once nothing deletes step files"
        ) from error
    except PermissionError as error:
        raise StepFileError(path, "permission denied; give this user read permission on the file") from error
    except IsADirectoryError as error:
        raise StepFileError(
            path, "is not a regular file (a directory, pipe or device); move it out of the trial"
        ) from error
    except OSError as error:
        raise StepFileError(path, f"cannot be read ({error.strerror or error}); check the path") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StepFileError(path, "is not a regular file (a directory, pipe or device); move it out of the trial")
        if info.st_size == 0:
            raise StepFileError(path, "is empty (0 bytes): the writer was interrupted; delete it or rerun the step")
        try:
            os.pread(fd, 8, 0)
        except OSError as error:
            raise StepFileError(path, f"cannot be read ({error.strerror or error}); check the path") from error
    except BaseException:
        os.close(fd)
        raise
    return fd, info


# Address space that must be free before HDF5 opens a file: libhdf5 does not
# check every allocation it makes while opening one, and crashes (SIGSEGV)
# where memory has run out. Probed with an anonymous mapping, which costs no
# page and no time; under a memory limit (ulimit -v) it fails as malloc would.
OPEN_RESERVE = 8 << 20


def _reserve_memory(path: Path | str) -> None:
    try:
        mmap.mmap(-1, OPEN_RESERVE).close()
    except (OSError, MemoryError, ValueError) as error:
        raise _out_of_memory(path, None, f"{OPEN_RESERVE >> 20} MiB could not be reserved to open it: "
                             f"{getattr(error, 'strerror', None) or error}") from None


@functools.cache
def _file_access() -> Any:
    """The file access property list of local step files, as ``h5py.File(name, "r",
    locking=False, rdcc_nbytes=0)`` makes it, made once per process: h5py makes
    a new one (and a creation list, unused when reading) for every file, which
    costs a scan of small trials more than HDF5 takes to open the file."""
    import h5py

    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_alignment(1, 1)
    slots, _elements, _nbytes, w0 = fapl.get_cache()
    fapl.set_cache(slots, _elements, 0, w0)
    fapl.set_file_locking(False, ignore_when_disabled=False)
    return fapl


def _hdf5_name(path: Path, fd: int) -> str:
    """The name HDF5 opens: the open descriptor itself where the system has one."""
    proc = f"/proc/self/fd/{fd}"
    return proc if os.path.exists(proc) else str(path)


def _unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
        after.st_size, after.st_mtime_ns, after.st_ctime_ns,
    )


class _Budget:
    """What the tensors read from one step file may cost, charged from metadata once per tensor."""

    def __init__(self, path: Path, file_size: int) -> None:
        self.path = path
        self.chunks = 0
        self.expanded = 0
        self.expansion_limit = DECOMPRESSED_BASE + EXPANSION * file_size
        self._charged: set[str] = set()

    def charge(self, name: str, chunks: int, expanded: int) -> None:
        if name in self._charged:
            return
        self._charged.add(name)
        self.chunks += chunks
        self.expanded += expanded
        if self.chunks > MAX_CHUNKS:
            raise TensorError(
                self.path, name, f"brings the chunks to read from this file to {self.chunks}, past the budget of "
                f"{MAX_CHUNKS} (docs/format.md, resource budgets); rewrite the step with larger chunks"
            )
        if self.expanded > self.expansion_limit:
            raise TensorError(
                self.path, name, f"brings the compressed data of this file to {self.expanded} bytes decompressed, "
                f"past the budget of {self.expansion_limit} (256 MiB + 100x the file size; docs/format.md, resource "
                "budgets): a decompression bomb, or data compressed far better than tensors compress"
            )


def _plain(value: Any) -> Any:
    """An attribute value as a plain Python value: bytes decoded, one-element arrays unwrapped."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    return _text(value) if isinstance(value, bytes) else value


def _plain_attrs(oid: Any, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Every readable attribute as a plain value; one that cannot be read is left out.

    The metadata is optional by contract: an attribute poorinit cannot decode
    must not refuse a tensor whose values are fine, it is simply not there.
    ``oid`` is the object's low-level id; the values are read through the
    low-level API (see _attribute).
    """
    import h5py

    plain: dict[Any, Any] = {}  # keys str, or bytes where a name is not UTF-8 (as h5py gives it)
    names: list[bytes] = []
    h5py.h5a.iterate(oid, lambda name, *_: names.append(name))
    for raw in names:
        key = _decoded(raw)
        if key in skip:
            continue
        try:
            plain[key] = _plain(_attribute(oid, raw))
        except H5_ERRORS:
            continue
    return plain


def _decoded(raw: bytes) -> str | bytes:
    """A name as h5py's high-level layer gives it: UTF-8 text, else the bytes."""
    try:
        return raw.decode("utf8")
    except UnicodeDecodeError:
        return raw


# h5py type objects of the attribute dtypes met so far: building one costs
# more than reading the attribute.
_MEMORY_TYPES: dict[np.dtype[Any], Any] = {}
# The numpy dtype h5py makes of each HDF5 type met so far, by the type's own
# serialisation (H5Tencode: equal bytes, the same type): h5py builds the dtype
# anew at every ``attr.dtype``, which costs more than the rest of the read.
_DTYPES: dict[bytes, np.dtype[Any]] = {}


def _dtype_of(stored: Any) -> np.dtype[Any]:
    """``stored.dtype``, remembered for types already met."""
    try:
        key = stored.encode()
    except Exception:  # a type HDF5 cannot serialise: asked every time, as before
        return stored.dtype
    dtype = _DTYPES.get(key)
    if dtype is None:
        dtype = _DTYPES[key] = stored.dtype
    return dtype


def _attribute(oid: Any, name: bytes | str, flat: bool = False) -> Any:
    """The value of an attribute of an HDF5 object, as ``h5py``'s ``attrs[name]``
    gives it (a numpy scalar or array), read through the low-level API: the
    high-level one costs four times as much, and a scan reads a few attributes
    of every step file of thousands of trials. Raises KeyError when absent.

    Numbers, booleans and fixed-length strings only; anything else (variable
    length strings, compound or array types, empty dataspaces) is read by the
    high-level layer, so every attribute reads exactly as h5py reads it.
    ``flat``: the caller treats a one-element array as the scalar it holds
    (``_plain``, the collections), so a single value is read without asking
    for its dataspace.
    """
    import h5py

    raw = name.encode("utf8") if isinstance(name, str) else name
    attr = h5py.h5a.open(oid, raw)
    stored = attr.get_type()
    dtype = _dtype_of(stored)  # attr.dtype, without asking HDF5 for the type a second time
    if dtype.kind not in "biufS" or dtype.subdtype is not None or dtype.names:
        return h5py.AttributeManager(_HighLevel(oid))[raw]
    # One value stored (an empty dataspace stores none): its shape, () or (1,)
    # or (1, 1), does not change what a flat caller makes of it.
    shape = () if flat and attr.get_storage_size() == dtype.itemsize else attr.shape
    if shape is None:
        return h5py.AttributeManager(_HighLevel(oid))[raw]
    if dtype.kind == "S":
        # Fixed-length bytes, copied as stored: equal numpy dtypes may stand for
        # strings of different character sets, which HDF5 will not convert.
        memory = stored
    else:
        memory = _MEMORY_TYPES.get(dtype)
        if memory is None:
            memory = _MEMORY_TYPES[dtype] = h5py.h5t.py_create(dtype)
    out = np.zeros(shape, dtype=dtype)
    attr.read(out, mtype=memory)
    return out[()] if out.ndim == 0 else out


class _HighLevel:
    """The least of an h5py high-level object that AttributeManager needs."""

    def __init__(self, oid: Any) -> None:
        self.id = oid


class StepReader:
    """An open step file: validated on open, tensors listed and read on demand.

    Links are never followed: a soft or external link anywhere below
    ``/tensors`` refuses the file, and so does a hard link that loops back to
    a parent group; virtual datasets and external storage refuse the tensor.
    """

    # Defaults for readers that open their file otherwise (a subclass reading an
    # object store has no descriptor): no fstat check, no budget of file size.
    _fd: int = -1
    _userblock: int | None = None
    _tensors: dict[str, DatasetTensor] | None = None
    _names: list[tuple[str, tuple[str, ...]]] | None = None
    _group: Any = None  # /tensors, once _validate found it
    budget: _Budget | None = None

    def __init__(self, step_file: fmt.StepFile) -> None:
        import h5py

        self.step_file = step_file
        self._datasets: dict[str, Any] = {}  # filled by tensor_names(), up to KEEP_OPEN
        self._names: list[tuple[str, tuple[str, ...]]] | None = None
        path = step_file.path
        self._fd, self._opened = _open_step_file(path)
        self.budget = _Budget(path, self._opened.st_size)
        try:
            _reserve_memory(path)
            # No file locking: step files are never written in place, and locks
            # fail on read-only and network filesystems. No chunk cache: every
            # chunk is read once, front to back, so caching it only costs memory
            # (1 MiB per open dataset by default, more than a block).
            # (h5py.File(name, "r", locking=False, rdcc_nbytes=0), without building
            # its property lists again for every step file: see _file_access.)
            name = os.fsencode(_hdf5_name(path, self._fd))
            self._file = h5py.File(h5py.h5f.open(name, h5py.h5f.ACC_RDONLY, fapl=_file_access()))
        except H5_OR_MEMORY_ERRORS as error:
            os.close(self._fd)
            if _memory_failure(error):
                raise _out_of_memory(path, None, memory_reason(error)) from None
            raise StepFileError(path, _open_problem(error)) from error
        except BaseException:
            os.close(self._fd)
            raise
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    def check_unchanged(self) -> None:
        """Refuse a file that changed while it was read (size or times, by ``fstat``).

        A writer that rewrites a step file in place (docs/format.md forbids
        it) can be caught in the act this way; one that finished its rewrite
        before the file was opened, or that rewrites within the clock's
        resolution, cannot (docs/format.md, "What a reader can detect").
        """
        if self._fd < 0:
            return  # not a local file: nothing to fstat
        try:
            now = os.fstat(self._fd)
        except OSError as error:
            raise StepFileError(
                self.step_file.path, f"cannot be read ({error.strerror or error}); check the path"
            ) from error
        if not _unchanged(self._opened, now):
            raise StepFileError(
                self.step_file.path,
                f"changed while it was read ({self._opened.st_size} bytes when opened, {now.st_size} after, or a "
                "newer modification time): a writer rewrites it in place; write step files under a temporary name "
                "and rename them into place (docs/format.md)",
            )

    def _attr(self, key: str) -> Any:
        import h5py

        path = self.step_file.path
        raw = key.encode("utf8")
        with _translated(path):
            oid = self._file.id
            present = h5py.h5a.exists(oid, raw)
        if not present:
            if key == fmt.FORMAT_ATTR:
                raise StepFileError(
                    path, f"is not a poorinit step file (no {fmt.FORMAT_ATTR!r} attribute); write step files as "
                    "docs/format.md specifies"
                )
            raise StepFileError(
                path, f"lacks the required attribute {key!r}; write step files as docs/format.md specifies"
            )
        try:
            return _plain(_attribute(oid, raw, flat=True))
        except H5_ERRORS as error:
            raise StepFileError(
                path, f"has an unreadable attribute {key!r} ({_h5_reason(error)}); write it as docs/format.md specifies"
            ) from error

    def _validate(self) -> None:
        import h5py

        path = self.step_file.path
        version = self._attr(fmt.FORMAT_ATTR)
        if isinstance(version, bool) or not isinstance(version, int) or version != fmt.FORMAT_VERSION:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > fmt.FORMAT_VERSION
            advice = "upgrade poorinit to read it" if newer else "the file is not a valid trial"
            raise StepFileError(
                path, f"has format version {version!r}; this poorinit reads version {fmt.FORMAT_VERSION} ({advice})"
            )
        expected = {"step": self.step_file.step, "mode": self.step_file.mode, "worker": self.step_file.worker}
        for key, value in expected.items():
            found = self._attr(key)
            if isinstance(found, bool) or found != value:
                raise StepFileError(
                    path,
                    f"attribute {key}={found!r} disagrees with its file name ({key} {value!r}); "
                    "rename the file or fix the attribute",
                )
        with _translated(path):
            link, group = self._tensor_link()
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                kind = "an external" if isinstance(link, h5py.ExternalLink) else "a soft"
                raise StepFileError(
                    path, f"its {fmt.TENSOR_GROUP!r} group is {kind} link; poorinit never follows links: "
                    "store the tensors in the file itself"
                )
        if not isinstance(group, h5py.Group):
            found = "nothing" if group is None else "a dataset"
            raise StepFileError(
                path, f"has no {fmt.TENSOR_GROUP!r} group (found {found}); write the tensors below "
                f"/{fmt.TENSOR_GROUP} as docs/format.md specifies"
            )
        self._group = group

    def _tensor_link(self) -> tuple[Any, Any]:
        """(link, object) of /tensors, as ``f.get(name, getlink=True)`` and ``f[name]``
        give them: (None, None) when absent, no object behind a soft or external link.

        A hard link, the only kind a valid file has, is looked up through the
        low-level API (h5py's ``get`` makes two property lists at every call);
        anything else goes the high-level way, so it is refused as before."""
        import h5py

        f, raw = self._file, _TENSOR_GROUP_NAME
        if f.id.links.exists(raw) and f.id.links.get_info(raw).type == h5py.h5l.TYPE_HARD:
            return _entry(f, raw)
        link = f.get(fmt.TENSOR_GROUP, getlink=True)
        return link, None if link is None else _entry(f, fmt.TENSOR_GROUP)[1]

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The file's root attributes as plain values (``format``, ``step``, ... and
        optional ones such as ``num_classes``)."""
        with _translated(self.step_file.path):
            return _plain_attrs(self._file.id)

    def tensor_names(self) -> list[tuple[str, tuple[str, ...]]]:
        """(name, collections) of every tensor, from metadata only, in the file's order.

        Each group is visited once, by address: a second hard link to a group
        already listed (a DAG of links, which can spell 2^40 paths in 47 KB)
        is not walked again, and one to a group still being walked (a cycle)
        refuses the file. Depth, links and tensors are budgeted (MAX_DEPTH,
        MAX_LINKS, MAX_TENSORS), and only KEEP_OPEN dataset objects stay
        open, so no file can make the listing take unbounded time or memory.
        """
        import h5py

        if self._names is not None:
            return self._names
        found: list[tuple[str, tuple[str, ...]]] = []
        path = self.step_file.path
        links = 0
        with _translated(path):
            root = self._tensor_group()
            # Depth first without recursion, so no nesting depth can exhaust the
            # stack. ``walked`` maps each group's address to its path ("a/b/"):
            # a link to a group on the current path (a prefix of it) is a cycle.
            walked: dict[int, str] = {_address(root): ""}
            links = self._count_links(root, 0)
            stack: list[tuple[Iterator[str], Any, str]] = [(_member_names(root), root, "")]
            while stack:
                keys, group, prefix = stack[-1]
                key = next(keys, None)
                if key is None:
                    stack.pop()
                    continue
                name = f"{prefix}{key}"
                with _translated(path, name):
                    link, obj = _entry(group, key)
                    collections = _collections(obj) if isinstance(obj, h5py.Dataset) else ()
                if isinstance(link, h5py.SoftLink):
                    raise TensorError(
                        path, name, f"is a soft link (to {link.path}); poorinit never follows links: "
                        "store the data in the file itself"
                    )
                if isinstance(link, h5py.ExternalLink):
                    raise TensorError(
                        path, name, f"is an external link (to {link.filename}:{link.path}); poorinit never "
                        "follows links: store the data in the file itself"
                    )
                if isinstance(obj, h5py.Group):
                    address = _address(obj)
                    first = walked.get(address)
                    if first is not None:
                        if prefix.startswith(first):
                            raise TensorError(
                                path, name, "is a hard link to a group that contains it (a cycle); remove the link"
                            )
                        continue  # a second link to a group already listed: its tensors are listed once
                    if len(stack) >= MAX_DEPTH:
                        raise TensorError(
                            path, name, f"nests groups more than {MAX_DEPTH} deep below /{fmt.TENSOR_GROUP}, past the "
                            "reading budget (docs/format.md, resource budgets); store the tensors less deeply"
                        )
                    walked[address] = f"{name}/"
                    links = self._count_links(obj, links)
                    stack.append((_member_names(obj), obj, f"{name}/"))
                elif isinstance(obj, h5py.Dataset):
                    found.append((name, collections))
                    if len(found) > MAX_TENSORS:
                        raise StepFileError(
                            path, f"holds more than {MAX_TENSORS} tensors, past the reading budget (docs/format.md, "
                            "resource budgets); store fewer tensors per step file"
                        )
                    if len(self._datasets) < KEEP_OPEN:
                        self._datasets[name] = obj
        self._names = found
        return found

    def _tensor_group(self) -> Any:
        """The /tensors group, as _validate found it."""
        if self._group is None:
            self._group = self._file[fmt.TENSOR_GROUP]
        return self._group

    def _count_links(self, group: Any, links: int) -> int:
        """Links counted so far plus the group's, refused past MAX_LINKS before any is visited."""
        links += len(group)  # the group's link count, from its header: nothing is opened
        if links > MAX_LINKS:
            raise StepFileError(
                self.step_file.path, f"holds more than {MAX_LINKS} links below /{fmt.TENSOR_GROUP}, past the reading "
                "budget (docs/format.md, resource budgets); store fewer tensors per step file"
            )
        return links

    def infos(self) -> list[TensorInfo]:
        infos = []
        for name, collections in self.tensor_names():
            with _translated(self.step_file.path, name):
                ds = self._datasets[name]
                shape = () if ds.shape is None else tuple(ds.shape)
                infos.append(TensorInfo(name, shape, str(ds.dtype), collections))
        return infos

    def tensor(self, name: str) -> DatasetTensor:
        # One object per tensor kept open: checks that select the same tensor
        # (the loss, for two criteria) check its storage once.
        made = self._tensors.get(name) if self._tensors is not None else None
        if made is not None:
            return made
        dataset = self._datasets.get(name)
        if dataset is None:  # beyond KEEP_OPEN, or a name not listed by tensor_names() yet
            with _translated(self.step_file.path, name):
                dataset = self._tensor_group()[name]
        made = DatasetTensor(dataset, name, self.step_file.worker, self.step_file.path, self.budget,
                             raw_fd=self._raw_fd())
        if name in self._datasets:
            if self._tensors is None:
                self._tensors = {}
            self._tensors[name] = made
        return made

    def _raw_fd(self) -> int:
        """The descriptor raw chunks are read from: the step file's own, when HDF5's
        addresses are offsets in it (no user block before the superblock); else -1."""
        if self._fd < 0:
            return -1
        if self._userblock is None:
            with _translated(self.step_file.path):
                self._userblock = int(self._file.id.get_create_plist().get_userblock())
        return self._fd if self._userblock == 0 else -1

    def close(self) -> None:
        self._group = None
        try:
            if getattr(self, "_file", None) is not None:
                self._file.close()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> StepReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DirectStepReader(StepReader):
    """A step file in TrialWriter's own layout, read without HDF5 (poorinit/h5direct.py).

    Raises h5direct.NotDirect on anything else, and on anything StepReader
    would refuse or look at twice (an attribute that disagrees with the file
    name, no /tensors group, a link that is not a hard link, a group reached
    twice, a tensor past a budget, a chunk not stored): the caller then opens
    the file with StepReader, whose messages users know. What it reads, it
    reads as StepReader does (tests/test_direct.py compares the two on every
    layout TrialWriter writes).
    """

    def __init__(self, step_file: fmt.StepFile) -> None:
        from .h5direct import Dataset, DirectFile, Group, NotDirect

        self.step_file = step_file
        path = step_file.path
        self._fd, self._opened = _open_step_file(path)
        try:
            if not stat.S_ISREG(self._opened.st_mode):
                raise NotDirect("not a regular file")
            self._direct = file = DirectFile(self._fd, self._opened.st_size)
            root = file.object(file.root)
            if not isinstance(root, Group):
                raise NotDirect("a root that is not a group")
            self._root_attrs = root.attrs
            self._check_names(root.attrs)
            tensors = dict(root.links).get(_TENSOR_GROUP_NAME)
            group = None if tensors is None else file.object(tensors)
            if not isinstance(group, Group):
                raise NotDirect(f"no {fmt.TENSOR_GROUP!r} group")
            found: list[tuple[str, tuple[str, ...]]] = []
            self._tensors_by_name: dict[str, Dataset] = {}
            seen = {root.address, group.address}
            links = 0
            stack: list[tuple[Iterator[tuple[bytes, int]], str]] = [(iter(group.links), "")]
            while stack:
                member = next(stack[-1][0], None)
                if member is None:
                    stack.pop()
                    continue
                key, address = member
                links += 1
                if address in seen or links > MAX_LINKS or len(stack) > MAX_DEPTH:
                    raise NotDirect("an object linked twice, or a file past a budget")
                seen.add(address)
                name = f"{stack[-1][1]}{key.decode('utf-8')}"
                obj = file.object(address)
                if isinstance(obj, Group):
                    stack.append((iter(obj.links), f"{name}/"))
                    continue
                self._check_dataset(file, obj)
                raw = obj.attrs.get(_COLLECTIONS_NAME)
                found.append((name, () if raw is None else _collection_names(raw[()] if raw.size == 1 else raw)))
                self._tensors_by_name[name] = obj
                if len(found) > MAX_TENSORS:
                    raise NotDirect("a file past the tensors' budget")
            self._names = found
        except MemoryError as error:
            os.close(self._fd)
            self._fd = -1
            raise _out_of_memory(path, None, memory_reason(error)) from None
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise
        self.budget = _Budget(path, self._opened.st_size)

    def _check_names(self, attrs: Mapping[bytes, np.ndarray]) -> None:
        """The root attributes StepReader._validate checks, as it would find them; else NotDirect."""
        from .h5direct import NotDirect

        expected = {fmt.FORMAT_ATTR: fmt.FORMAT_VERSION, "step": self.step_file.step, "mode": self.step_file.mode,
                    "worker": self.step_file.worker}  # fmt: skip
        for key, value in expected.items():
            raw = attrs.get(key.encode())
            found = None if raw is None else _plain(raw)
            if isinstance(found, bool) or type(found) is not type(value) or found != value:
                raise NotDirect(f"attribute {key} is not {value!r}")

    @staticmethod
    def _check_dataset(file: Any, dataset: Any) -> None:
        """Chunks within the budgets and runs of the array, their index parsed (and checksummed) now."""
        from .h5direct import NotDirect

        if dataset.chunk_shape is None or not math.prod(dataset.shape):
            return
        count = math.prod(-(-n // c) for n, c in zip(dataset.shape, dataset.chunk_shape, strict=True))
        if count > MAX_CHUNKS or math.prod(dataset.chunk_shape) * dataset.dtype.itemsize > MAX_CHUNK_BYTES:
            raise NotDirect("chunks past a budget")
        if fmt.chunk_axis(dataset.shape, dataset.chunk_shape) is None:
            raise NotDirect("chunks that are not runs of the array")
        dataset.index = file.chunks(dataset)

    @property
    def attrs(self) -> Mapping[str, Any]:
        return {key.decode("utf-8"): _plain(value) for key, value in sorted(self._root_attrs.items())}

    def tensor_names(self) -> list[tuple[str, tuple[str, ...]]]:
        assert self._names is not None
        return self._names

    def infos(self) -> list[TensorInfo]:
        datasets = self._tensors_by_name
        return [TensorInfo(name, datasets[name].shape, str(datasets[name].dtype), collections)
                for name, collections in self.tensor_names()]  # fmt: skip

    def tensor(self, name: str) -> DatasetTensor:
        made = self._tensors.get(name) if self._tensors is not None else None
        if made is not None:
            return made
        dataset = self._tensors_by_name.get(name)
        if dataset is None:
            raise KeyError(name)  # callers ask for the names tensor_names() gave
        made = DirectTensor(dataset, name, self.step_file.worker, self.step_file.path, self.budget, self._fd)
        if self._tensors is None:
            self._tensors = {}
        self._tensors[name] = made
        return made

    def _raw_fd(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class DirectTensor(DatasetTensor):
    """A tensor of a step file read by DirectStepReader: its values from the header (compact) or raw chunks."""

    def __init__(self, dataset: Any, name: str, worker: int, source: Path, budget: _Budget | None, raw_fd: int) -> None:
        self._dataset = None
        self._direct = dataset
        self._bind(name, worker, source, budget, raw_fd)
        self.shape = dataset.shape
        self._dtype = dataset.dtype
        self._chunks = dataset.chunk_shape
        self._check_dtype()
        if self._chunks is not None and self.size and budget is not None:
            budget.charge(name, len(dataset.index), 0)

    @property
    def attrs(self) -> Mapping[str, Any]:
        if self._attrs is None:
            self._attrs = {key.decode("utf-8"): _plain(value) for key, value in sorted(self._direct.attrs.items())
                           if key != _COLLECTIONS_NAME}  # fmt: skip
        return self._attrs

    @property
    def fill_value(self) -> float | None:
        return None  # compact storage, or chunks allocated as written (h5direct refuses storage allocated early)

    def _raw_layout(self) -> tuple[int, bool] | None:
        if self._chunks is None or not self.size:
            return None
        return fmt.chunk_axis(self.shape, self._chunks), self._direct.filtered  # type: ignore[return-value]

    def _chunk_info(self, dsid: Any, coordinate: tuple[int, ...]) -> tuple[int | None, int, int]:
        found = self._direct.index.get(coordinate)
        return (None, 0, 0) if found is None else found

    def _read_whole(self) -> np.ndarray:
        out = _block_buffer((self.size,), self._dtype.newbyteorder("="))
        out[...] = np.frombuffer(self._direct.compact, dtype=self._dtype)
        return out

    def _read(self, selection: Any) -> np.ndarray:
        values = np.frombuffer(self._direct.compact, dtype=self._dtype).reshape(self.shape)
        return np.array(values[selection], dtype=self._dtype.newbyteorder("="))


def _entry(group: Any, key: str | bytes) -> tuple[Any, Any]:
    """(link, object) of a group's member, as ``group.get(key, getlink=True)``
    and ``group[key]`` give them (the object None for a soft or external
    link, which is never followed), through the low-level API: the
    high-level lookups cost several times more, once per tensor of every
    step file a scan opens."""
    import h5py

    raw = key.encode("utf8") if isinstance(key, str) else key
    gid = group.id
    kind = gid.links.get_info(raw).type
    if kind == h5py.h5l.TYPE_SOFT:
        return h5py.SoftLink(_decoded(gid.links.get_val(raw))), None
    if kind == h5py.h5l.TYPE_EXTERNAL:
        filename, target = gid.links.get_val(raw)
        return h5py.ExternalLink(_decoded(filename), _decoded(target)), None
    if kind != h5py.h5l.TYPE_HARD:  # a user-defined link class: as the high-level layer sees it
        return group.get(key, getlink=True), group[key]
    oid = h5py.h5o.open(gid, raw)
    if isinstance(oid, h5py.h5d.DatasetID):
        return h5py.HardLink(), _dataset_class()(oid)
    if isinstance(oid, h5py.h5g.GroupID):
        return h5py.HardLink(), h5py.Group(oid)
    return h5py.HardLink(), group[key]  # a committed datatype: listed as nothing


def _member_names(group: Any) -> Iterator[Any]:
    """The names of a group's members, as ``iter(group)`` gives them (by name, increasing),
    in one call into HDF5 instead of two per member. The caller has counted the
    links against the budget first (_count_links), so the list is bounded."""
    import h5py

    raw: list[bytes] = []
    group.id.links.iterate(raw.append, idx_type=h5py.h5.INDEX_NAME, order=h5py.h5.ITER_INC)
    return iter([_decoded(name) for name in raw])


@functools.cache
def _dataset_class() -> type:
    """h5py's Dataset, for files opened read-only, without a transfer property list of its own.

    ``h5py.Dataset(oid)`` makes a new transfer property list for every dataset
    (HDF5 then closes it), which costs more than opening a small dataset; the
    lists poorinit's reads use are all HDF5's defaults, so one made per process
    serves every dataset. Read-only, as ``File(name, "r")[name]`` makes it
    (h5py then remembers the shape). Everything else is h5py's Dataset."""
    import h5py

    transfer = h5py.h5p.create(h5py.h5p.DATASET_XFER)

    class Dataset(h5py.Dataset):
        def __init__(self, bind: Any) -> None:
            if not isinstance(bind, h5py.h5d.DatasetID):
                raise ValueError(f"{bind} is not a DatasetID")
            self._id = bind
            self._dxpl = transfer
            self._readonly = True
            self._cache_props: dict[str, Any] = {}

    Dataset.__qualname__ = Dataset.__name__ = "Dataset"
    Dataset.__module__ = h5py.Dataset.__module__
    return Dataset


def _address(obj: Any) -> int:
    import h5py

    return int(h5py.h5o.get_info(obj.id).addr)


_COLLECTIONS_NAME = fmt.COLLECTIONS_ATTR.encode()
_TENSOR_GROUP_NAME = fmt.TENSOR_GROUP.encode()


def _collections(dataset: Any) -> tuple[str, ...]:
    import h5py

    oid = dataset.id
    if not h5py.h5a.exists(oid, _COLLECTIONS_NAME):
        return ()
    return _collection_names(_attribute(oid, _COLLECTIONS_NAME, flat=True))


def _collection_names(raw: Any) -> tuple[str, ...]:
    """The collections a ``collections`` attribute's value names (comma-separated, in one string or several)."""
    values = [raw] if isinstance(raw, (str, bytes)) else list(np.asarray(raw).reshape(-1))
    names: list[str] = []
    for value in values:
        names.extend(part.strip() for part in _text(value).split(",") if part.strip())
    return tuple(names)


class ListedSteps:
    """What a poorinit trial's step-file names say, wherever the names were listed (a directory, a store prefix).

    :class:`Trial` and :class:`poorinit.remote.RemoteTrial` share it: which
    modes and workers the trial has, which workers wrote a mode, whether
    every worker marked its part finished.
    """

    def __init__(self, names: list[str]) -> None:
        self._names = names
        keys = fmt.step_file_keys(names)
        keys.sort()
        self._keys: list[tuple[int, str, int, str]] = keys

    @property
    def modes(self) -> tuple[str, ...]:
        present = {key[1] for key in self._keys}
        return tuple(m for m in fmt.MODES if m in present)

    @property
    def workers(self) -> tuple[int, ...]:
        return tuple(sorted({key[2] for key in self._keys}))

    def mode_workers(self, mode: str) -> tuple[int, ...]:
        """The workers with at least one step file of ``mode``: whose data every step should hold."""
        return tuple(sorted({key[2] for key in self._keys if key[1] == mode}))

    @property
    def finished(self) -> bool:
        """Whether every worker's writer marked its part complete (docs/format.md), as listed."""
        return fmt.is_finished(self._names, self.workers)


class Trial(ListedSteps):
    """A trial directory, listed from file names alone.

    Every entry named like a step file counts, whatever it is: a broken
    symbolic link (data never fetched) or a directory is reported when its
    step is analysed, never skipped in silence.
    """

    format_name = "poorinit"

    def __init__(self, path: str | os.PathLike[str], also_looked_for: Sequence[str] = ()) -> None:
        # What other trial formats looked for, for the error when there are no step files (poorinit.sources).
        self._also_looked_for = tuple(also_looked_for)
        self.path = Path(path)
        self._check_root()
        try:
            with os.scandir(self.path) as entries:
                names = [entry.name for entry in entries]
        except PermissionError as error:
            raise TrialError(
                self.path, "permission denied while listing the directory; give this user read and execute "
                "permission on it"
            ) from error
        except OSError as error:
            raise TrialError(self.path, f"cannot be listed ({error.strerror or error}); check the path") from error
        # Plain tuples, sorted, and a Path only for the files a caller asks for:
        # a trial of 10,000 steps must list about as fast as one of 10.
        super().__init__(names)
        self._by_step: dict[tuple[str, int], list[tuple[int, str, int, str]]] = {}
        for key in self._keys:
            self._by_step.setdefault((key[1], key[0]), []).append(key)
        self._check_duplicates()
        if not self._keys:
            raise TrialError(self.path, self._no_step_files_hint([self.path / n for n in names]))

    def _step_file(self, key: tuple[int, str, int, str]) -> fmt.StepFile:
        return fmt.StepFile(key[0], key[1], key[2], self.path / key[3])

    @functools.cached_property
    def files(self) -> tuple[fmt.StepFile, ...]:
        """Every step file, in (step, mode, worker) order."""
        return tuple(self._step_file(key) for key in self._keys)

    def _check_root(self) -> None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError as error:
            if self.path.is_symlink():
                raise TrialError(
                    self.path, f"is a broken symbolic link (to {os.readlink(self.path)}); point it at the trial "
                    "directory"
                ) from error
            raise TrialError(self.path, "no such trial directory; check the path") from error
        except PermissionError as error:
            raise TrialError(
                self.path, "permission denied; give this user permission to enter the trial directory"
            ) from error
        except OSError as error:
            raise TrialError(self.path, f"cannot be listed ({error.strerror or error}); check the path") from error
        if not stat.S_ISDIR(info.st_mode):
            raise TrialError(
                self.path, "is a file; a trial is a directory of step files: pass the directory that holds it"
            )

    def _check_duplicates(self) -> None:
        for same_step in self._by_step.values():
            if len(same_step) == 1:
                continue  # the usual case: one worker, one file
            for first, second in zip(same_step, same_step[1:], strict=False):
                if first[2] == second[2]:
                    step, mode, worker, _ = first
                    raise StepFileError(
                        self.path / second[3],
                        f"duplicates {first[3]} (step {step}, mode {mode}, worker {worker}); "
                        "keep one and move the other out of the trial",
                    )

    def _no_step_files_hint(self, names: Sequence[Path]) -> str:
        example = fmt.step_file_name(0)
        hints = []
        inner = []
        try:
            for child in sorted(self.path.iterdir())[:200]:
                if child.is_dir() and not child.is_symlink() and any(
                    fmt.parse_step_file_name(p) for p in child.iterdir()
                ):
                    inner.append(child.name)
        except OSError:
            pass
        if inner:
            hints.append(f"trials found inside: {', '.join(inner[:5])}")
        others = sorted(p.name for p in names if p.suffix == ".h5" and not p.name.startswith("."))
        if others:
            hints.append(f"{len(others)} .h5 files named otherwise ({', '.join(others[:3])})")
        if any(p.name.startswith(".") and p.name.endswith(".tmp") for p in names):
            hints.append("only temporary files of a writer that has not finished or crashed")
        hints.extend(f"nor {looked_for}" for looked_for in self._also_looked_for)
        shown = "".join(f"; {hint}" for hint in hints)
        return f"holds no step files (named like {example}){shown}; point poorinit at the directory the writer wrote"

    def steps(self, mode: str = "train") -> list[int]:
        return sorted({step for m, step in self._by_step if m == mode})

    def step_files(self, step: int, mode: str = "train") -> list[fmt.StepFile]:
        return [self._step_file(key) for key in self._by_step.get((mode, step), ())]

    def open(self, step_file: fmt.StepFile) -> StepReader:
        if DIRECT_READS and RAW_READS:
            from .h5direct import NotDirect

            try:
                return DirectStepReader(step_file)
            # NotDirect: not TrialWriter's layout, or damaged; the others: bytes the parser misread (a file
            # forged to look like one it knows). Either way HDF5 reads the file, and says what is wrong.
            except (NotDirect, IndexError, ValueError, KeyError, OverflowError, TypeError):
                pass
        return StepReader(step_file)

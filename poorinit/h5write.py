"""Step files written without HDF5: the bytes of docs/format.md's layout, laid out in Python.

Writing a step file through HDF5 costs a fixed price per object, tens of
microseconds per dataset and per attribute, all of it holding the GIL (h5py
never releases it): for the small tensors of a recorded step that dwarfs the
bytes themselves, and a recorder's first step files, written through HDF5 on a
background thread, stalled the training loop for several of its steps. The
step file's structure is small and fixed (docs/format.md), so it is written
here directly, as HDF5 itself writes it with ``libver=("v110", "latest")``:

* a version 3 superblock;
* version 2 object headers, one chunk each, every one checksummed (lookup3);
* groups with their links in the header (compact storage, any number of links);
* attributes in the object header: int64, float64, h5py's booleans and
  fixed-length UTF-8 strings, scalars or 1-D lists;
* datasets of up to ``COMPACT_BYTES`` compact (the values in the header),
  larger ones chunked (writer.chunk_shape) with the fletcher32 filter, indexed
  by a single chunk or a fixed array (itself checksummed), each chunk padded
  to full size and followed by its checksum, as HDF5 stores it.

HDF5 reads these files like its own (tests/test_h5write.py reads every layout
back through h5py and compares values, attributes and layouts), and so does
poorinit/h5direct.py. What this module does not write (compression, a message
past 64 KiB, a fixed array that would need pages) raises :class:`Unwritable`
and the writer uses HDF5.

The file goes to the kernel in ``writev`` segments: the metadata, then each
chunk's values as a view of the caller's array (an edge chunk padded in a
copy) and its checksum, so a step of hundreds of MiB needs no second copy.
Where everything lies is worked out once per layout (:class:`_Layout`): a
recorder's later step files, with the same tensors, cost their values only.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import format as fmt
from .checksum import chunk_checksum_function, lookup3

__all__ = ["Unwritable", "write_step_file"]

UNDEFINED = b"\xff" * 8
SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Chunks of a fixed array index up to 2**10 before HDF5 pages its data block.
PAGE_BITS = 10
MESSAGE_MAX = 0xFFFF
# Links one group holds in its header here. HDF5 itself moves a group past
# eight links to a fractal heap indexed by name; in the header, HDF5 finds a
# name by scanning, so a group of many thousand tensors (read by name, one by
# one, by other tools) goes to HDF5 instead.
MAX_COMPACT_LINKS = 4096
# Buffers per writev call: POSIX guarantees at least 16, Linux takes 1,024.
IOV_MAX = 1024


# A compact dataset's values fit in one header message whatever they are.
assert fmt.COMPACT_BYTES + 4 <= MESSAGE_MAX


class Unwritable(Exception):
    """The step holds something this module does not write: write it with HDF5."""


# -- datatypes, dataspaces, attribute values --

_FLOATS = {2: (0x0F, 16, 10, 5, 10, 15), 4: (0x1F, 32, 23, 8, 23, 127), 8: (0x3F, 64, 52, 11, 52, 1023)}


@functools.lru_cache(maxsize=64)
def _float_type(dtype: np.dtype[Any]) -> bytes:
    sign, precision, exponent_at, exponent_bits, mantissa_bits, bias = _FLOATS[dtype.itemsize]
    order = 1 if dtype.byteorder == ">" or (dtype.byteorder == "=" and not _LITTLE) else 0
    return struct.pack("<BBBBIHHBBBBI", 0x11, 0x20 | order, sign, 0, dtype.itemsize, 0, precision,
                       exponent_at, exponent_bits, 0, mantissa_bits, bias)  # fmt: skip


_LITTLE = np.little_endian
_INT64 = struct.pack("<BBBBIHH", 0x10, 0x08, 0, 0, 8, 0, 64)
_INT8 = struct.pack("<BBBBIHH", 0x10, 0x08, 0, 0, 1, 0, 8)
# h5py's booleans: an int8 enumeration of FALSE = 0 and TRUE = 1 (datatype version 3: names unpadded).
_BOOL = struct.pack("<BBBBI", 0x38, 2, 0, 0, 1) + _INT8 + b"FALSE\0TRUE\0\x00\x01"


def _string_type(size: int) -> bytes:
    return struct.pack("<BBBBI", 0x13, 0x11, 0, 0, size)  # null-padded, UTF-8


@functools.lru_cache(maxsize=4096)
def _dataspace(shape: tuple[int, ...]) -> bytes:
    if not shape:
        return b"\x02\x00\x00\x00"  # scalar
    dims = struct.pack(f"<{len(shape)}Q", *shape)
    return struct.pack("<BBBB", 2, len(shape), 1, 1) + dims + dims  # maximum dimensions: the same


def _attribute_value(value: Any) -> tuple[bytes, bytes, bytes]:
    """(datatype, dataspace, data) of an optional attribute's value, as writer._write_attr types it."""
    if isinstance(value, str):
        encoded = value.encode("utf-8")
        size = max(1, len(encoded))
        return _string_type(size), _dataspace(()), encoded.ljust(size, b"\0")
    if isinstance(value, (bool, np.bool_)):
        return _BOOL, _dataspace(()), b"\x01" if value else b"\x00"
    if isinstance(value, (int, np.integer)):
        return _INT64, _dataspace(()), np.array(value, dtype="<i8").tobytes()
    if isinstance(value, (float, np.floating)):
        return _float_type(np.dtype("<f8")), _dataspace(()), np.array(value, dtype="<f8").tobytes()
    data = np.asarray(value, dtype="<f8" if any(isinstance(v, float) for v in value) else "<i8")
    datatype = _float_type(data.dtype) if data.dtype.kind == "f" else _INT64
    return datatype, _dataspace(data.shape), data.tobytes()


def _attribute(name: str, value: Any) -> bytes:
    """An attribute message (version 3, with its message header) holding ``value``.

    Remembered by name, type and repr (exact for every type written): the same
    attributes recur at every recorded step."""
    key = (name, type(value).__name__, repr(value))
    found = _ATTRIBUTES.get(key)
    if found is None:
        found = _encode_attribute(name, value)
        if len(found) <= 512:  # long values (a note of kilobytes) are not kept: memory stays bounded
            if len(_ATTRIBUTES) >= 1 << 12:
                _ATTRIBUTES.clear()
            _ATTRIBUTES[key] = found
    return found


_ATTRIBUTES: dict[tuple[str, str, str], bytes] = {}


def _encode_attribute(name: str, value: Any) -> bytes:
    encoded = name.encode("utf-8") + b"\0"
    datatype, dataspace, data = _attribute_value(value)
    return _message(0x0C, struct.pack("<BBHHHB", 3, 0, len(encoded), len(datatype), len(dataspace), 0)
                    + encoded + datatype + dataspace + data)  # fmt: skip


# -- object headers --


def _message(kind: int, body: bytes) -> bytes:
    if len(body) > MESSAGE_MAX:
        raise Unwritable(f"a header message of {len(body)} bytes")
    return struct.pack("<BHB", kind, len(body), 0) + body


def _width(size: int) -> int:
    """The object header flags' code for the bytes of its chunk-size field."""
    return 0 if size < 1 << 8 else 1 if size < 1 << 16 else 2


def _header_size(messages: Sequence[bytes]) -> int:
    size = sum(len(m) for m in messages)
    return 6 + (1 << _width(size)) + size + 4


def _header(messages: Sequence[bytes]) -> bytes:
    """A version 2 object header of one chunk, without times, checksummed."""
    body = b"".join(messages)
    size = len(body)
    width = _width(size)
    prefix = b"OHDR\x02" + bytes([width]) + size.to_bytes(1 << width, "little")
    data = prefix + body
    return data + lookup3(data).to_bytes(4, "little")


_GROUP_INFO = _message(0x0A, b"\x00\x00")
_LINK_INFO = _message(0x02, b"\x00\x00" + UNDEFINED + UNDEFINED)  # links in the header
_ATTRIBUTE_INFO = _message(0x15, b"\x00\x00" + UNDEFINED + UNDEFINED)  # attributes in the header


def _link(name: str, address: int) -> bytes:
    """A hard link message (version 1, UTF-8 name); short names' messages are remembered."""
    return _short_link(name, address) if len(name) <= 256 else _encode_link(name, address)


def _encode_link(name: str, address: int) -> bytes:
    encoded = name.encode("utf-8")
    width = 0 if len(encoded) < 1 << 8 else 1
    flags = 0x10 | width  # character set present; the length in 1 or 2 bytes
    return _message(0x06, bytes([1, flags, 1]) + len(encoded).to_bytes(1 << width, "little") + encoded
                    + address.to_bytes(8, "little"))  # fmt: skip


_short_link = functools.lru_cache(maxsize=1 << 14)(_encode_link)


class _Object:
    """An object header to be placed: its size is known before the addresses it holds (all 8 bytes wide)."""

    def __init__(self) -> None:
        self.address = 0

    def size(self) -> int:
        return _header_size(self.messages())

    def encode(self) -> bytes:
        return _header(self.messages())

    def messages(self) -> list[bytes]:
        raise NotImplementedError


class _Group(_Object):
    def __init__(self, attrs: Sequence[bytes] = ()) -> None:
        super().__init__()
        self.attrs = list(attrs)
        self.members: dict[str, _Object] = {}

    def head(self) -> list[bytes]:
        """The messages before the attributes."""
        return [_GROUP_INFO, _ATTRIBUTE_INFO] if self.attrs else [_GROUP_INFO]

    def tail(self) -> bytes:
        """The messages after the attributes: the links."""
        if len(self.members) > MAX_COMPACT_LINKS:
            raise Unwritable(f"a group of {len(self.members)} links")
        return _LINK_INFO + b"".join(_link(name, member.address) for name, member in self.members.items())

    def messages(self) -> list[bytes]:
        return [*self.head(), *self.attrs, self.tail()]


class _Dataset(_Object):
    """A dataset's header (and chunk index) by shape and dtype: the values come at writing."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any], attrs: Sequence[bytes]) -> None:
        super().__init__()
        from .writer import chunk_shape

        self.shape, self.dtype, self.attrs = shape, dtype, list(attrs)
        self.nbytes = math.prod(shape) * dtype.itemsize
        chunks = None if self.nbytes <= fmt.COMPACT_BYTES else chunk_shape(shape, dtype.itemsize)
        self.chunks = chunks  # None: compact
        self.count = 0 if chunks is None else math.prod(-(-n // c) for n, c in zip(shape, chunks, strict=True))
        self.chunk_bytes = 0 if chunks is None else math.prod(chunks) * dtype.itemsize
        self.index = 0  # where the chunk index (fixed array header) or the single chunk lies
        self.chunk_addresses: list[int] = []
        if self.count > 1 << PAGE_BITS:
            raise Unwritable(f"{self.count} chunks: a paged chunk index")
        if len(shape) > 32:
            raise Unwritable(f"{len(shape)} dimensions: HDF5 refuses more than 32")
        if chunks is not None and fmt.chunk_axis(shape, chunks) is None:
            raise Unwritable("chunks that are not runs of the C-order array")

    def head(self) -> bytes:
        """The messages before a compact dataset's values."""
        layout = struct.pack("<BHBBBH", 0x08, 4 + self.nbytes, 0, 3, 0, self.nbytes)  # version 3, compact
        return _dataset_prefix(self.shape, self.dtype, False) + layout

    def tail(self) -> bytes:
        """The messages after a compact dataset's values: its attributes."""
        return b"".join((_ATTRIBUTE_INFO, *self.attrs))

    def messages(self) -> list[bytes]:
        if self.chunks is None:  # the values' bytes come at writing (at most COMPACT_BYTES): zeros hold their place
            return [self.head(), bytes(self.nbytes), self.tail()]
        layout = _chunked_layout(self.chunks, self.dtype.itemsize, self.count, self.index)
        return [_dataset_prefix(self.shape, self.dtype, True), layout, _ATTRIBUTE_INFO, *self.attrs]

    # -- the fixed array that indexes more than one chunk --

    def _size_width(self) -> int:
        """Bytes HDF5 gives a filtered chunk's stored size in the index (H5D_FARRAY_FILT_COMPUTE_CHUNK_SIZE_LEN)."""
        return min(8, 1 + (self.chunk_bytes.bit_length() - 1 + 8) // 8)

    def index_size(self) -> int:
        if self.count <= 1:
            return 0
        element = 8 + self._size_width() + 4
        return 28 + 14 + self.count * element + 4

    def encode_index(self) -> bytes:
        width = self._size_width()
        element = 8 + width + 4
        header = b"FAHD" + struct.pack("<BBBBQQ", 0, 1, element, PAGE_BITS, self.count, self.index + 28)
        header += lookup3(header).to_bytes(4, "little")
        stored = (self.chunk_bytes + 4).to_bytes(width, "little")
        entries = b"".join(address.to_bytes(8, "little") + stored + b"\0\0\0\0" for address in self.chunk_addresses)
        block = b"FADB" + struct.pack("<BBQ", 0, 1, self.index) + entries
        return header + block + lookup3(block).to_bytes(4, "little")

    def chunk_ranges(self) -> tuple[tuple[int, int], ...]:
        """Each chunk's values in index order (C order over the chunk grid), as a range of the
        C-order bytes: a run, as writer.chunk_shape cuts them (padded at writing where short)."""
        chunks = self.chunks
        assert chunks is not None
        cut = fmt.chunk_axis(self.shape, chunks)
        assert cut is not None  # checked when the dataset was made
        inner = math.prod(self.shape[cut + 1 :]) * self.dtype.itemsize
        rows, step = self.shape[cut], chunks[cut]
        return tuple(
            ((outer * rows + start) * inner, (outer * rows + min(start + step, rows)) * inner)
            for outer in range(math.prod(self.shape[:cut]))
            for start in range(0, rows, step)
        )


@functools.lru_cache(maxsize=4096)
def _dataset_prefix(shape: tuple[int, ...], dtype: np.dtype[Any], chunked: bool) -> bytes:
    """A dataset's dataspace, datatype, fill value and (chunked) filter pipeline messages, as HDF5 orders them."""
    if chunked:  # allocated incrementally; fletcher32
        fill, pipeline = b"\x03\x0b", _message(0x0B, struct.pack("<BBHHH", 2, 1, 3, 0, 0))
    else:  # allocated early, fill value written if set
        fill, pipeline = b"\x03\x09", b""
    return (_message(0x01, _dataspace(shape)) + _message(0x03, _float_type(dtype)) + _message(0x05, fill)
            + pipeline)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _chunked_layout(chunks: tuple[int, ...], itemsize: int, count: int, index: int) -> bytes:
    """A chunked layout message (version 4): a single chunk's address, stored size and mask, or a fixed array's."""
    dims = (*chunks, itemsize)
    width = (max(dims).bit_length() - 1 + 8) // 8
    encoded = b"".join(d.to_bytes(width, "little") for d in dims)
    head = struct.pack("<BBBBB", 4, 2, 0x02 if count == 1 else 0, len(dims), width) + encoded
    if count == 1:  # a single chunk: its stored size and filter mask are in the layout
        return _message(0x08, head + struct.pack("<BQIQ", 1, math.prod(chunks) * itemsize + 4, 0, index))
    return _message(0x08, head + struct.pack("<BBQ", 3, PAGE_BITS, index))


def _padded(part: np.ndarray, size: int) -> np.ndarray:
    body = np.zeros(size, dtype=np.uint8)
    body[: part.size] = part
    return body


# -- the layout of a step file, and the file --

# What a step file's layout depends on: the lengths of the root's attribute
# messages, and each tensor's name, shape, dtype and attribute messages, in order.
_Key = tuple[tuple[int, ...], tuple[tuple[str, tuple[int, ...], str, tuple[bytes, ...]], ...]]


@dataclass(frozen=True)
class _Layout:
    """Where everything of a step file lies, worked out once per layout.

    A recorder writes the same tensors at every step, so every step file after
    the first has the layout of the one before: the same headers at the same
    addresses, the same chunk indexes. Only the bytes that hold values differ,
    and those are all a later step file costs: the root header (its ``step``
    attribute), each compact dataset's header (its values live there), each
    chunk and its checksum. Working the layout out again cost the writer
    thread, in Python holding the GIL, as much as a small model's training step.
    """

    metadata: bytes  # superblock, object headers, chunk indexes: values zeroed
    end: int
    root_head: tuple[bytes, ...]  # the root header's messages before its attributes
    root_tail: bytes  # ... and after them
    compact: tuple[tuple[int, int, bytes, bytes], ...]  # (tensor, header address, before, after the values)
    chunked: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...]  # (tensor, chunk bytes, byte ranges)

    def segments(self, root_attrs: Sequence[bytes], arrays: Sequence[np.ndarray]) -> list[Any]:
        """The file's bytes for these values, in ``writev`` segments (chunks as views of ``arrays``)."""
        metadata = bytearray(self.metadata)
        header = _header([*self.root_head, *root_attrs, self.root_tail])
        metadata[48 : 48 + len(header)] = header  # the same size: the key holds the attributes' lengths
        for tensor, address, before, after in self.compact:
            header = _header([before, arrays[tensor].tobytes(), after])
            metadata[address : address + len(header)] = header
        segments: list[Any] = [metadata]
        checksum = chunk_checksum_function()
        for tensor, size, ranges in self.chunked:
            flat = arrays[tensor].reshape(-1).view(np.uint8)
            for start, stop in ranges:
                part = flat[start:stop] if stop - start == size else _padded(flat[start:stop], size)
                segments.append(part)
                segments.append(checksum(part))
        return segments


def _plan(key: _Key, root_attrs: Sequence[bytes]) -> _Layout:
    """Place the headers, then the chunk indexes, then the chunks; then encode with the addresses known."""
    root = _Group(root_attrs)
    tensors = _Group()
    root.members[fmt.TENSOR_GROUP] = tensors
    groups: list[_Group] = [root, tensors]
    datasets: list[_Dataset] = []
    for name, shape, dtype, attrs in key[1]:
        *parents, leaf = name.split("/")
        group = tensors
        for part in parents:  # intermediate groups, as HDF5 makes them for a path
            found = group.members.get(part)
            if found is None:
                found = group.members[part] = _Group()
                groups.append(found)
            if not isinstance(found, _Group):
                raise Unwritable(f"{part!r} is both a tensor and a group")
            group = found
        if leaf in group.members:
            raise Unwritable(f"{name!r} names a group")
        dataset = group.members[leaf] = _Dataset(shape, np.dtype(dtype), attrs)
        datasets.append(dataset)

    position = 48
    for obj in (*groups, *datasets):
        obj.address = position
        position += obj.size()
    for dataset in datasets:
        size = dataset.index_size()
        if size:
            dataset.index = position
            position += size
    chunked: list[tuple[int, int, tuple[tuple[int, int], ...]]] = []
    for tensor, dataset in enumerate(datasets):
        if dataset.chunks is None or not dataset.count:
            continue
        ranges = dataset.chunk_ranges()
        dataset.chunk_addresses = [position + k * (dataset.chunk_bytes + 4) for k in range(len(ranges))]
        if dataset.count == 1:
            dataset.index = dataset.chunk_addresses[0]
        position += len(ranges) * (dataset.chunk_bytes + 4)
        chunked.append((tensor, dataset.chunk_bytes, ranges))

    superblock = (SIGNATURE + struct.pack("<BBBB", 3, 8, 8, 0) + b"\0" * 8  # base address 0
                  + UNDEFINED + struct.pack("<QQ", position, root.address))  # no extension; end of file, root group
    metadata = [superblock + lookup3(superblock).to_bytes(4, "little")]
    metadata.extend(obj.encode() for obj in (*groups, *datasets))
    metadata.extend(dataset.encode_index() for dataset in datasets if dataset.index_size())
    compact = tuple(
        (tensor, dataset.address, dataset.head(), dataset.tail())
        for tensor, dataset in enumerate(datasets)
        if dataset.chunks is None
    )
    return _Layout(b"".join(metadata), position, tuple(root.head()), root.tail(), compact, tuple(chunked))


# Layouts kept, and the bytes of metadata they may hold between them (a compact tensor's
# header holds up to 8 KiB of zeros): a recorder alternates between two or three.
LAYOUTS_KEPT = 8
LAYOUT_BYTES_KEPT = 32 << 20
_LAYOUTS: OrderedDict[_Key, _Layout] = OrderedDict()
_LAYOUTS_LOCK = threading.Lock()


def _layout(key: _Key, root_attrs: Sequence[bytes]) -> _Layout:
    with _LAYOUTS_LOCK:
        found = _LAYOUTS.get(key)
        if found is not None:
            _LAYOUTS.move_to_end(key)
            return found
    layout = _plan(key, root_attrs)
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = layout
        while len(_LAYOUTS) > LAYOUTS_KEPT or sum(len(kept.metadata) for kept in _LAYOUTS.values()) > LAYOUT_BYTES_KEPT:
            _LAYOUTS.popitem(last=False)
    return layout


def warm_up() -> None:
    """Pay once what the first step file would: HDF5's checksums found, the writer's helpers imported."""
    from . import writer  # noqa: F401  (chunk_shape)
    from .checksum import lookup3_function

    lookup3_function()


def write_step_file(
    path: str | os.PathLike[str],
    root_attrs: Mapping[str, Any],
    entries: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    tensor_attrs: Mapping[str, Mapping[str, Any]],
) -> None:
    """Write a new step file at ``path``: ``root_attrs`` in order (the required ones first),
    each tensor below /tensors with its ``collections`` and attributes."""
    root = [_attribute(key, value) for key, value in root_attrs.items()]
    arrays: list[np.ndarray] = []
    tensors: list[tuple[str, tuple[int, ...], str, tuple[bytes, ...]]] = []
    for name, (array, collections) in entries.items():
        array = np.ascontiguousarray(array)
        attrs = [_attribute(fmt.COLLECTIONS_ATTR, ",".join(collections))] if collections else []
        attrs.extend(_attribute(key, value) for key, value in tensor_attrs.get(name, {}).items())
        arrays.append(array)
        tensors.append((name, array.shape, array.dtype.str, tuple(attrs)))
    layout = _layout((tuple(map(len, root)), tuple(tensors)), root)
    _write(path, layout.segments(root, arrays), layout.end)


def _write(path: str | os.PathLike[str], segments: list[Any], size: int) -> None:
    # 0o666 less the umask: the permissions HDF5 gives the files it creates.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        written = 0
        writev = getattr(os, "writev", None)
        for first in range(0, len(segments), IOV_MAX):
            batch = segments[first : first + IOV_MAX]
            total = sum(memoryview(s).nbytes for s in batch)
            done = writev(descriptor, batch) if writev is not None else 0
            if done < total:  # no writev, or a short write: the rest in one buffer
                rest = memoryview(b"".join(bytes(memoryview(s)) for s in batch))[done:]
                while rest:
                    rest = rest[os.write(descriptor, rest) :]
            written += total
        if written != size:
            raise AssertionError(f"wrote {written} bytes of a {size}-byte step file")
    finally:
        os.close(descriptor)

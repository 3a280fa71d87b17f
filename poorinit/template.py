"""Step files from a template: a step shaped like the last one written is that file with new values.

Writing a step file through HDF5 costs a fixed price per object, tens of
microseconds per dataset and per attribute, holding the GIL, which for the
small tensors of a recorded step dwarfs the bytes themselves: one step file of
bench/recording.py's MLP costs several of its training steps. Yet from one
recorded step to the next only values change. The same tensors, shapes, dtypes
and attributes make HDF5 lay out the same objects at the same addresses, so
after HDF5 has written a step file, :meth:`StepTemplate.build` notes where its
variable bytes lie:

* the ``step`` attribute's value, in the root group's object header;
* each compact tensor's values, in its own object header;
* each chunked tensor's chunks, each followed by its fletcher32 checksum.

A later step with the same structure is then that image with those bytes
replaced, each chunk's fletcher32 recomputed (checksum.py) and each object
header chunk that holds a replaced byte checksummed again with Jenkins'
lookup3, as HDF5 does: the bytes HDF5 would have written, written without it
(tests/test_template.py compares them byte for byte). A template is kept only
when every located byte holds the value HDF5 was given and every recomputed
checksum equals the one HDF5 stored; anything this module does not parse
(dense attribute storage, another object header version, compression) leaves
the writer on HDF5, never writing a file wrong.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checksum import chunk_checksum

__all__ = ["DatasetLayout", "StepTemplate", "TemplateError", "lookup3"]


class TemplateError(Exception):
    """The file holds a structure this module does not parse: write the step with HDF5."""


# -- lookup3, the checksum of HDF5's metadata --


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _lookup3_python(data: bytes | bytearray | memoryview, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` as HDF5 computes it (H5_checksum_lookup3): metadata checksums."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & 0xFFFFFFFF
    view = bytes(data)
    pos = 0
    M = 0xFFFFFFFF
    while length > 12:
        x, y, z = struct.unpack_from("<III", view, pos)
        a, b, c = (a + x) & M, (b + y) & M, (c + z) & M
        a = (a - c) & M; a ^= _rot(c, 4); c = (c + b) & M  # noqa: E702
        b = (b - a) & M; b ^= _rot(a, 6); a = (a + c) & M  # noqa: E702
        c = (c - b) & M; c ^= _rot(b, 8); b = (b + a) & M  # noqa: E702
        a = (a - c) & M; a ^= _rot(c, 16); c = (c + b) & M  # noqa: E702
        b = (b - a) & M; b ^= _rot(a, 19); a = (a + c) & M  # noqa: E702
        c = (c - b) & M; c ^= _rot(b, 4); b = (b + a) & M  # noqa: E702
        pos += 12
        length -= 12
    if length == 0:
        return c
    tail = view[pos:] + bytes(12 - length)
    x, y, z = struct.unpack("<III", tail)
    a, b, c = (a + x) & M, (b + y) & M, (c + z) & M
    c ^= b; c = (c - _rot(b, 14)) & M  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & M  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & M  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & M  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & M  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & M  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & M  # noqa: E702
    return c


@functools.cache
def _hdf5_lookup3() -> Callable[[bytes | bytearray | memoryview], int] | None:
    """HDF5's own lookup3, from the libhdf5 h5py has loaded, when this platform lets us find it.

    In Python lookup3 costs about a microsecond per 12 bytes, and the object
    headers of a recorded step hold kilobytes (every compact tensor's values);
    the library's C function, exported by every HDF5 since 1.8, costs nothing
    by comparison. It is used only if it agrees with the Python version above.
    """
    import h5py  # noqa: F401  (loads libhdf5 into the process)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libhdf5" in line and "libhdf5_hl" not in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            function = ctypes.CDLL(path).H5_checksum_lookup3
        except (OSError, AttributeError):
            continue
        function.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32)
        function.restype = ctypes.c_uint32

        def call(data: bytes | bytearray | memoryview, function: Any = function) -> int:
            data = bytes(data)  # a few kilobytes at most: headers, not tensors
            return int(function(data, len(data), 0))

        probe = bytes(range(256)) * 3
        if all(call(bytearray(probe[:n])) == _lookup3_python(probe[:n]) for n in (0, 1, 12, 13, 700)):
            return call
    return None


def lookup3(data: bytes | bytearray | memoryview) -> int:
    """HDF5's metadata checksum of ``data`` (lookup3 with an initial value of 0)."""
    native = _hdf5_lookup3()
    return native(data) if native is not None else _lookup3_python(data)


# -- the bytes a template keeps --


class _Metadata:
    """A step file's bytes outside its chunks, sliced as the file is.

    The chunks hold the tensors' values, which every later step replaces, so a
    template keeps only the rest (the superblock, the object headers, the
    chunk indexes): kilobytes, whatever the tensors weigh. A slice reaching
    into a chunk is an IndexError, which the parser's caller turns into a
    TemplateError.
    """

    def __init__(self, runs: list[tuple[int, bytes]], size: int) -> None:
        self._starts = [start for start, _ in runs]
        self._runs = runs
        self.size = size

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, int):
            return self[key : key + 1][0]
        start, stop = key.start or 0, self.size if key.stop is None else key.stop
        if start == stop:
            return b""
        index = bisect.bisect_right(self._starts, start) - 1
        if index < 0 or start > stop:
            raise IndexError(f"bytes {start}-{stop} are not metadata")
        first, data = self._runs[index]
        if stop > first + len(data):
            raise IndexError(f"bytes {start}-{stop} reach into a chunk or past the end of the file")
        return data[start - first : stop - first]

    @property
    def kept(self) -> int:
        """How many bytes are kept."""
        return sum(len(data) for _, data in self._runs)


def _read_metadata(path: str | os.PathLike[str], chunks: list[tuple[int, int]]) -> _Metadata:
    """The bytes of ``path`` outside ``chunks`` ((offset, length) of each chunk with its checksum)."""
    runs: list[tuple[int, bytes]] = []
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        position = 0
        for offset, length in [*sorted(chunks), (size, 0)]:
            if offset < position or offset > size:
                raise TemplateError(f"chunks overlap, or lie past the end of the file, at {offset}")
            if offset > position:
                file.seek(position)
                runs.append((position, file.read(offset - position)))
            position = offset + length
    return _Metadata(runs, size)


# -- object headers (HDF5 file format, version 2 object headers) --

_CONTINUATION, _LAYOUT, _ATTRIBUTE = 0x10, 0x08, 0x0C


@dataclass(frozen=True)
class _Chunk:
    """One checksummed chunk of an object header: bytes [start, end) checksummed, the checksum at end."""

    start: int
    messages: int  # where its messages begin
    end: int


def _header(image: _Metadata, address: int) -> tuple[list[_Chunk], int]:
    """The chunks of the version 2 object header at ``address``, and its flags."""
    if image[address : address + 4] != b"OHDR" or image[address + 4] != 2:
        raise TemplateError(f"no version 2 object header at {address}")
    flags = image[address + 5]
    position = address + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 0x03)
    size = int.from_bytes(image[position : position + width], "little")
    position += width
    chunks = [_Chunk(address, position, position + size)]
    for chunk in chunks:  # grows as continuation messages are found
        for kind, data, length in _messages(image, chunk, flags):
            if kind == _CONTINUATION:
                offset, total = struct.unpack("<QQ", image[data : data + 16])
                if image[offset : offset + 4] != b"OCHK" or length != 16 or any(c.start == offset for c in chunks):
                    raise TemplateError(f"no continuation chunk at {offset}")
                chunks.append(_Chunk(offset, offset + 4, offset + total - 4))
    for chunk in chunks:
        stored = int.from_bytes(image[chunk.end : chunk.end + 4], "little")
        if lookup3(image[chunk.start : chunk.end]) != stored:
            raise TemplateError(f"object header chunk at {chunk.start} not parsed as HDF5 wrote it")
    return chunks, flags


def _messages(image: _Metadata, chunk: _Chunk, flags: int) -> list[tuple[int, int, int]]:
    """(type, offset of its data, size) of each message in one header chunk; a shorter tail is a gap."""
    prefix = 4 + (2 if flags & 0x04 else 0)
    found, position = [], chunk.messages
    while position + prefix <= chunk.end:
        kind, size = image[position], int.from_bytes(image[position + 1 : position + 3], "little")
        found.append((kind, position + prefix, size))
        position += prefix + size
    if position > chunk.end:
        raise TemplateError(f"a message overruns the object header chunk at {chunk.start}")
    return found


def _find(image: _Metadata, address: int, want: Callable[[int, int, int], int | None]) -> tuple[int, _Chunk]:
    """The offset ``want(type, data, size)`` returns for the one message it accepts, and its chunk."""
    chunks, flags = _header(image, address)
    hits = [(offset, chunk) for chunk in chunks for kind, data, size in _messages(image, chunk, flags)
            if (offset := want(kind, data, size)) is not None]  # fmt: skip
    if len(hits) != 1:
        raise TemplateError(f"{len(hits)} matching messages in the object header at {address}")
    return hits[0]


def _attribute_value(image: _Metadata, name: bytes, width: int) -> Callable[[int, int, int], int | None]:
    """Finds the value of attribute ``name`` (``width`` bytes) in an attribute message of version 2 or 3."""
    wanted = name + b"\0"

    def want(kind: int, data: int, size: int) -> int | None:
        if kind != _ATTRIBUTE or image[data] not in (2, 3):
            return None
        name_size, type_size, space_size = struct.unpack("<HHH", image[data + 2 : data + 8])
        start = data + (9 if image[data] == 3 else 8)
        if image[start : start + name_size] != wanted:
            return None
        value = start + name_size + type_size + space_size
        if value + width != data + size:
            raise TemplateError(f"attribute {name!r} holds {data + size - value} bytes, not {width}")
        return value

    return want


def _compact_values(image: _Metadata, nbytes: int) -> Callable[[int, int, int], int | None]:
    """Finds the values of a compact dataset (layout message version 3 or 4, class 0)."""

    def want(kind: int, data: int, size: int) -> int | None:
        if kind != _LAYOUT or image[data] not in (3, 4) or image[data + 1] != 0:
            return None
        if int.from_bytes(image[data + 2 : data + 4], "little") != nbytes:
            raise TemplateError("compact layout of another size")
        return data + 4

    return want


# -- the template --


@dataclass(frozen=True)
class DatasetLayout:
    """Where HDF5 put one dataset's values: in its object header (compact) or in chunks.

    A compact dataset has its ``header``'s address and no ``chunk_shape``; a
    chunked one has its ``chunk_shape`` and ``chunks``, each chunk's logical
    offset mapped to its file offset.
    """

    header: int | None
    chunk_shape: tuple[int, ...] | None
    chunks: Mapping[tuple[int, ...], int]


@dataclass(frozen=True)
class _Piece:
    """Bytes [source, source + length) of a tensor's C-order bytes, at ``target`` in the file.

    A chunk is ``padded`` bytes long (an edge chunk is filled with zeros) and
    followed by its fletcher32; compact values have ``padded`` 0.
    """

    target: int
    source: int
    length: int
    padded: int


@dataclass(frozen=True)
class StepTemplate:
    """Where a step file's step number and tensor values lie, and the file's other bytes."""

    metadata: _Metadata
    step_at: int
    pieces: Mapping[str, tuple[_Piece, ...]]
    nbytes: Mapping[str, int]
    headers: tuple[tuple[int, int], ...]  # (start, end) of each header chunk to checksum again

    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        step: int,
        root: int,
        arrays: Mapping[str, np.ndarray],
        layouts: Mapping[str, DatasetLayout],
    ) -> StepTemplate:
        """The template of the step file HDF5 wrote at ``path`` for ``step`` with ``arrays``.

        ``root`` is the root group's object header address, ``layouts`` where
        each dataset went. Raises TemplateError unless writing ``step`` from
        the template gives back the file, byte for byte: every located byte
        holds the value HDF5 was given and every recomputed checksum is HDF5's.
        """
        try:
            pieces: dict[str, tuple[_Piece, ...]] = {}
            for name, array in arrays.items():
                layout = layouts[name]
                if layout.chunk_shape is not None:
                    pieces[name] = _chunk_pieces(array, layout.chunk_shape, layout.chunks)
            chunks = [(piece.target, piece.padded + 4) for found in pieces.values() for piece in found]
            metadata = _read_metadata(path, chunks)
            step_bytes = np.array(step, dtype=np.int64).tobytes()
            step_at, step_chunk = _find(metadata, root, _attribute_value(metadata, b"step", len(step_bytes)))
            dirty = {(step_chunk.start, step_chunk.end)}
            for name, array in arrays.items():
                layout = layouts[name]
                if layout.chunk_shape is not None:
                    continue
                if array.nbytes == 0:
                    pieces[name] = ()
                elif layout.header is None:
                    raise TemplateError(f"no object header address for the compact dataset {name!r}")
                else:
                    offset, chunk = _find(metadata, layout.header, _compact_values(metadata, array.nbytes))
                    dirty.add((chunk.start, chunk.end))
                    pieces[name] = (_Piece(offset, 0, array.nbytes, 0),)
            ordered = {name: pieces[name] for name in arrays}
            template = cls(metadata, step_at, ordered, {n: a.nbytes for n, a in arrays.items()}, tuple(sorted(dirty)))
            with open(path, "rb") as file:  # segment by segment: no second copy of the file in memory
                for segment in template._segments(step, arrays):
                    ours = np.frombuffer(segment, dtype=np.uint8)  # compared by numpy: memoryview's == is per byte
                    theirs = np.frombuffer(file.read(ours.size), dtype=np.uint8)
                    if ours.size != theirs.size or not np.array_equal(ours, theirs):
                        raise TemplateError("the step written from its own template differs from HDF5's file")
            return template
        except (IndexError, ValueError, struct.error) as error:  # bytes this parser misread
            raise TemplateError(f"not parsed: {error}") from error

    def write(self, path: str | os.PathLike[str], step: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write the step file of ``step`` to a new file ``path``, the values straight from ``arrays``.

        No image of the file is assembled: the template's bytes between the
        replaced ones, the patched object headers and each chunk's values
        (a short edge chunk padded in a copy) go to the kernel in a few
        ``writev`` calls. A step holding hundreds of MiB of activation inputs
        thus needs no second buffer of that size; the time is the kernel's
        page-cache write either way (bench/recording.py's writer row).
        """
        segments = self._segments(step, arrays)
        # 0o666 less the umask: the permissions HDF5 gives the files it creates.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            writev = getattr(os, "writev", None)
            for first in range(0, len(segments), _IOV_MAX):
                batch = segments[first : first + _IOV_MAX]
                total, written = sum(len(s) for s in batch), 0
                if writev is not None:
                    written = writev(descriptor, batch)
                if written < total:  # no writev, or a short write: the rest one segment at a time
                    _write_all(descriptor, memoryview(b"".join(batch))[written:])
        finally:
            os.close(descriptor)

    def _segments(self, step: int, arrays: Mapping[str, np.ndarray]) -> list[Any]:
        """The file as buffers in order: template bytes, patched headers, chunk values and checksums."""
        metadata = self.metadata
        headers = {start: bytearray(metadata[start : end + 4]) for start, end in self.headers}

        def patch(target: int, data: Any) -> None:
            for start, header in headers.items():
                if start <= target and target + len(data) <= start + len(header) - 4:
                    header[target - start : target - start + len(data)] = data
                    return
            raise ValueError(f"byte {target} lies in no object header of the template")

        patch(self.step_at, np.array(step, dtype=np.int64).tobytes())
        replaced: list[tuple[int, int, list[Any]]] = []  # (offset, length in the file, buffers)
        for name, pieces in self.pieces.items():
            values = np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8)
            if values.size != self.nbytes[name]:
                raise ValueError(f"tensor {name!r} holds {values.size} bytes, the template {self.nbytes[name]}")
            for piece in pieces:
                part = values[piece.source : piece.source + piece.length]
                if not piece.padded:  # compact: inside its object header
                    patch(piece.target, part.tobytes())
                    continue
                if piece.length < piece.padded:  # an edge chunk: HDF5 stores it padded with zeros
                    body = np.zeros(piece.padded, dtype=np.uint8)
                    body[: piece.length] = part
                    part = body
                replaced.append((piece.target, piece.padded + 4, [part, chunk_checksum(part)]))
        for (start, end), header in zip(self.headers, headers.values(), strict=True):
            header[-4:] = lookup3(header[:-4]).to_bytes(4, "little")
            replaced.append((start, end + 4 - start, [header]))
        segments: list[Any] = []
        position = 0
        for offset, length, buffers in sorted(replaced, key=lambda item: item[0]):
            if offset < position:
                raise ValueError(f"replaced bytes overlap at {offset}")
            segments.append(metadata[position:offset])
            segments.extend(buffers)
            position = offset + length
        segments.append(metadata[position:])
        return segments


# Buffers per writev call: POSIX guarantees at least 16, Linux takes 1,024.
_IOV_MAX = 1024


def _write_all(descriptor: int, data: memoryview) -> None:
    while data:
        data = data[os.write(descriptor, data) :]


def _chunk_pieces(
    array: np.ndarray, chunks: tuple[int, ...], offsets: Mapping[tuple[int, ...], int]
) -> tuple[_Piece, ...]:
    """Each chunk as a run of the C-order bytes: chunks cut the leading axes (writer.chunk_shape)."""
    from .writer import _runs

    shape = array.shape
    cut = _runs(shape, chunks)
    if cut is None or len(offsets) != _count(shape, chunks):
        raise TemplateError("chunks that are not runs of the array")
    inner = int(np.prod(shape[cut + 1 :], dtype=np.int64)) * array.dtype.itemsize
    rows, step = shape[cut], chunks[cut]
    padded = step * inner
    pieces = []
    for position, target in sorted(offsets.items()):
        index = int(np.ravel_multi_index(position[:cut], shape[:cut])) if cut else 0
        start = position[cut]
        source = (index * rows + start) * inner
        pieces.append(_Piece(target, source, min(step, rows - start) * inner, padded))
    return tuple(pieces)


def _count(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    return int(np.prod([-(-n // c) for n, c in zip(shape, chunks, strict=True)], dtype=np.int64)) if shape else 1

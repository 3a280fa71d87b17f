"""Step files read without HDF5: the layout TrialWriter writes, parsed in Python.

Opening a step file through HDF5 and h5py has a fixed price, whatever the file
holds: HDF5 builds a metadata cache for it (about 1.2M instructions), h5py
makes and frees an identifier and a Python object for the file, every group,
dataset, attribute and type, and sweeps its registry of open identifiers on
close. A scan of thousands of small trials, or ``analyze`` on a trial of
kilobytes, spends most of its time there, not on the values.

The files TrialWriter writes use a small part of the HDF5 format (docs/format.md,
``libver="v110"``): a version 2 or 3 superblock, version 2 object headers,
groups with compact or indexed ("dense") link storage, attributes in the
object header, and datasets that are compact or chunked with fletcher32,
indexed by a single chunk or a fixed array. This module parses exactly that,
and verifies every checksum HDF5 would verify on it (lookup3 on the
superblock, each object header chunk, the fractal heap and B-tree of a dense
group and the chunk index; the chunks' fletcher32 is verified as they are
read, by trial.DatasetTensor).

Anything else raises :class:`NotDirect`: another layout, a filter other than
fletcher32, a link that is not a hard link, a shared message, a type it does
not decode, a checksum that does not match, bytes past the end of the file.
The caller then opens the file with HDF5 as before (trial.StepReader), so a
damaged or unusual file meets the same checks and the same messages whether
or not this module exists; it only ever says "not mine".
"""

from __future__ import annotations

import functools
import math
import os
import struct
from typing import Any

import numpy as np

from .checksum import lookup3_function

__all__ = ["NotDirect", "DirectFile", "Dataset", "Group"]

UNDEFINED = 0xFFFFFFFFFFFFFFFF
SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Files up to this size are read whole, in one system call; larger ones
# (tensors of megabytes) have their metadata read where it lies.
WHOLE_FILE = 1 << 20
# Fletcher32, the one filter read here: every other filter goes through HDF5.
FLETCHER32 = 3

_u16 = struct.Struct("<H").unpack_from
_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from


class NotDirect(Exception):
    """The file holds something this module does not read: open it with HDF5."""


class Group:
    """A group: its links (name, object header address) by name, and its attributes."""

    __slots__ = ("address", "links", "attrs")

    def __init__(self, address: int, links: list[tuple[bytes, int]], attrs: dict[bytes, np.ndarray]) -> None:
        self.address = address
        self.links = links
        self.attrs = attrs


class Dataset:
    """A dataset: shape, dtype, attributes, and where its values lie.

    ``compact`` holds the values of a compact dataset (they live in its object
    header); a chunked one has ``chunk_shape``, ``filtered`` (fletcher32) and
    its chunk index (``index``: a single chunk or a fixed array), read on
    first use by :meth:`DirectFile.chunks`.
    """

    __slots__ = ("shape", "dtype", "attrs", "compact", "chunk_shape", "filtered", "index")
    index: Any  # ("single", ...) or ("fixed", ...) as parsed; the chunks by offset once read (DirectFile.chunks)

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any], attrs: dict[bytes, np.ndarray],
                 compact: bytes | None, chunk_shape: tuple[int, ...] | None, filtered: bool,
                 index: tuple[Any, ...] | None) -> None:  # fmt: skip
        self.shape = shape
        self.dtype = dtype
        self.attrs = attrs
        self.compact = compact
        self.chunk_shape = chunk_shape
        self.filtered = filtered
        self.index = index


def _need(condition: bool, problem: str) -> None:
    if not condition:
        raise NotDirect(problem)


class DirectFile:
    """One step file's metadata, parsed from the bytes of an open descriptor.

    ``fd`` is read with ``os.pread`` and never closed here. Objects are parsed
    when first asked for (:meth:`object`) and kept.
    """

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._whole: bytes | None = None
        if size <= WHOLE_FILE:
            self._whole = os.pread(fd, size, 0)
            _need(len(self._whole) == size, "the file is shorter than its size")
        self._checksum = lookup3_function()
        self._objects: dict[int, Group | Dataset] = {}
        head = self.read(0, 48)
        _need(head[:8] == SIGNATURE, "no superblock at the start of the file (a user block, or not HDF5)")
        _need(head[8] in (2, 3) and head[9] == 8 and head[10] == 8, "a superblock other than version 2 or 3")
        # HDF5 refuses a file its flags mark as open for writing (a writer that crashed in place).
        _need(head[11] == 0, "the superblock marks the file open for writing")
        base, extension, end, root = struct.unpack_from("<QQQQ", head, 12)
        _need(self._checksum(head[:44]) == _u32(head, 44)[0], "the superblock fails its checksum")
        _need(base == 0 and extension == UNDEFINED, "a superblock extension or a base address")
        _need(end <= size, "the file is shorter than its superblock says")
        self.root = root

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise NotDirect("an address past the end of the file")
        if self._whole is not None:
            return self._whole[offset : offset + length]
        data = os.pread(self.fd, length, offset)
        _need(len(data) == length, "the file is shorter than its size")
        return data

    def _checked(self, offset: int, length: int, signature: bytes) -> bytes:
        """``length`` bytes at ``offset``: a signature, the structure, and its lookup3 checksum last."""
        data = self.read(offset, length)
        if data[:4] != signature or self._checksum(data[:-4]) != _u32(data, length - 4)[0]:
            raise NotDirect(f"no {signature.decode()} at {offset}, or it fails its checksum")
        return data

    # -- objects --

    def object(self, address: int) -> Group | Dataset:
        found = self._objects.get(address)
        if found is None:
            found = self._objects[address] = self._parse_object(address)
        return found

    def _header_messages(self, address: int) -> list[tuple[int, bytes]]:
        """(type, body) of every message of the version 2 object header at ``address``, continuations followed."""
        prefix = self.read(address, 6)
        flags = prefix[5]
        if prefix[:5] != b"OHDR\2" or flags & 0xC0:
            raise NotDirect(f"no version 2 object header at {address}, or unknown flags")
        start = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        size = int.from_bytes(self.read(address + start, width), "little")
        start += width
        chunk = self.read(address, start + size + 4)
        if self._checksum(chunk[:-4]) != _u32(chunk, len(chunk) - 4)[0]:
            raise NotDirect(f"the object header at {address} fails its checksum")
        creation_order = 2 if flags & 0x04 else 0
        messages: list[tuple[int, bytes]] = []
        pending = [(chunk, start)]
        seen = {address}
        while pending:
            data, position = pending.pop()
            end = len(data) - 4
            while position + 4 + creation_order <= end:
                kind, length, message_flags = data[position], _u16(data, position + 1)[0], data[position + 3]
                body_at = position + 4 + creation_order
                if body_at + length > end or message_flags & 0x02:
                    raise NotDirect(f"a message overruns the object header at {address}, or is shared")
                body = data[body_at : body_at + length]
                if kind == 0x10:  # continuation
                    offset, total = struct.unpack_from("<QQ", body)
                    _need(offset not in seen and total > 8, f"a continuation loop or no continuation at {offset}")
                    seen.add(offset)
                    pending.append((self._checked(offset, total, b"OCHK"), 4))
                elif kind:
                    messages.append((kind, body))
                position = body_at + length
        return messages

    def _parse_object(self, address: int) -> Group | Dataset:
        attrs: dict[bytes, np.ndarray] = {}
        links: list[tuple[bytes, int]] = []
        space = dtype = layout = None
        filters: list[int] = []
        group = False
        fill_flags = 0
        for kind, body in self._header_messages(address):
            if kind == 0x0C:
                name, value = _attribute(body)
                _need(name not in attrs, "an attribute named twice")
                attrs[name] = value
            elif kind == 0x06:
                links.append(_link(body))
                group = True
            elif kind == 0x02:
                group = True
                heap, names = _link_info(body)
                if heap != UNDEFINED:
                    links.extend(self._dense_links(heap, names))
            elif kind == 0x0A:
                group = True
            elif kind == 0x01:
                space = _dataspace(body)
            elif kind == 0x03:
                dtype = _datatype(body)[0]
            elif kind == 0x08:
                layout = body
            elif kind == 0x0B:
                filters = _filters(body)
            elif kind == 0x05:
                _need(body[0] == 3, "a fill value message other than version 3")
                fill_flags = body[1]
            elif kind == 0x15:
                _need(_attribute_info(body), "attributes in dense storage")
            elif kind not in (0x12, 0x16):  # modification time, reference count: not needed
                raise NotDirect(f"an object header message of type {kind:#x}")
        if group:
            _need(space is None and dtype is None and layout is None, "a group with data")
            links.sort()
            return Group(address, links, attrs)
        if space is None or dtype is None or layout is None:
            raise NotDirect("an object that is neither group nor dataset")
        return self._dataset(space, dtype, attrs, layout, filters, fill_flags)

    def _dataset(self, shape: tuple[int, ...], dtype: np.dtype[Any], attrs: dict[bytes, np.ndarray], layout: bytes,
                 filters: list[int], fill_flags: int) -> Dataset:  # fmt: skip
        _need(layout[0] in (3, 4), "a layout message other than version 3 or 4")
        size = math.prod(shape) * dtype.itemsize
        if layout[1] == 0:  # compact
            length = _u16(layout, 2)[0]
            _need(length == size and not filters, "compact data of another size")
            return Dataset(shape, dtype, attrs, layout[4 : 4 + length], None, False, None)
        _need(layout[1] == 2 and layout[0] == 4, "a layout other than compact or chunked (version 4)")
        _need(filters in ([], [FLETCHER32]), "a filter other than fletcher32")
        # Storage allocated early reads back as its fill value where never written: HDF5 tells that apart.
        _need(fill_flags & 0x03 != 1, "storage allocated early")
        flags, rank, width = layout[2], layout[3], layout[4]
        _need(not flags & 0x01 and rank == len(shape) + 1 and 1 <= width <= 8, "a chunked layout not parsed here")
        dims = [int.from_bytes(layout[5 + i * width : 5 + (i + 1) * width], "little") for i in range(rank)]
        _need(dims[-1] == dtype.itemsize and all(dims[:-1]), "chunks of another element size")
        position = 5 + rank * width
        kind = layout[position]
        position += 1
        if kind == 1:  # a single chunk
            if flags & 0x02:
                filtered_size, mask = struct.unpack_from("<QI", layout, position)
                position += 12
            else:
                filtered_size, mask = size, 0
            index: tuple[Any, ...] = ("single", _u64(layout, position)[0], filtered_size, mask)
            _need(tuple(dims[:-1]) == shape or not shape, "a single chunk of another shape")
        elif kind == 3:  # a fixed array
            index = ("fixed", _u64(layout, position + 1)[0])
        else:
            raise NotDirect(f"chunk index type {kind}")
        return Dataset(shape, dtype, attrs, None, tuple(dims[:-1]), bool(filters), index)

    def chunks(self, dataset: Dataset) -> dict[tuple[int, ...], tuple[int, int, int]]:
        """Each chunk's logical offset mapped to (file offset, bytes stored, filter mask)."""
        assert dataset.index is not None and dataset.chunk_shape is not None
        shape, chunk_shape = dataset.shape, dataset.chunk_shape
        grid = [-(-n // c) for n, c in zip(shape, chunk_shape, strict=True)]
        if dataset.index[0] == "single":
            _, address, stored, mask = dataset.index
            _need(address != UNDEFINED, "a chunk not written")
            return {(0,) * len(shape): (address, stored, mask)}
        header = self._checked(dataset.index[1], 28, b"FAHD")
        client, element, page_bits = header[5], header[6], header[7]
        count, block = struct.unpack_from("<QQ", header, 8)
        expected = math.prod(grid)
        _need(count == expected and client == int(dataset.filtered), "a chunk index of another size")
        _need(count <= 1 << page_bits, "a paged chunk index")
        width = 8 if not dataset.filtered else element - 12
        _need((element == 8) if not dataset.filtered else 1 <= width <= 8, "chunk index entries not parsed here")
        data = self._checked(block, 14 + count * element + 4, b"FADB")
        _need(_u64(data, 6)[0] == dataset.index[1], "a chunk index of another dataset")
        unfiltered = math.prod(chunk_shape) * dataset.dtype.itemsize
        found: dict[tuple[int, ...], tuple[int, int, int]] = {}
        for number, at in enumerate(range(14, 14 + count * element, element)):
            address = _u64(data, at)[0]
            _need(address != UNDEFINED, "a chunk not written")
            if dataset.filtered:
                stored = int.from_bytes(data[at + 8 : at + 8 + width], "little")
                mask = _u32(data, at + 8 + width)[0]
            else:
                stored, mask = unfiltered, 0
            position = np.unravel_index(number, grid)
            found[tuple(int(p) * c for p, c in zip(position, chunk_shape, strict=True))] = (address, stored, mask)
        return found

    # -- dense link storage: a fractal heap of link messages, indexed by a version 2 B-tree --

    def _dense_links(self, heap: int, names: int) -> list[tuple[bytes, int]]:
        header = self._checked(heap, 146, b"FRHP")
        id_length, filter_length, heap_flags = _u16(header, 5)[0], _u16(header, 7)[0], header[9]
        max_object = _u32(header, 10)[0]
        (huge,) = _u64(header, 86)
        (table_width,) = _u16(header, 110)
        start_size, max_direct = struct.unpack_from("<QQ", header, 112)
        max_heap_bits, _start_rows = struct.unpack_from("<HH", header, 128)
        root, rows = _u64(header, 132)[0], _u16(header, 140)[0]
        _need(filter_length == 0 and huge == 0, "a filtered heap or huge objects")
        offset_bytes = (max_heap_bits + 7) // 8
        length_bytes = min(_encoded_size(max_direct), _encoded_size(max_object))
        _need(1 + offset_bytes + length_bytes <= id_length <= 18, "heap IDs not parsed here")
        checksummed = bool(heap_flags & 0x02)

        def direct(address: int, size: int, expected_offset: int) -> tuple[int, int, bytes]:
            block = self.read(address, size)
            _need(block[:4] == b"FHDB" and _u64(block, 5)[0] == heap, f"no heap block at {address}")
            placed = int.from_bytes(block[13 : 13 + offset_bytes], "little")
            _need(placed == expected_offset, "a heap block out of place")
            if checksummed:
                at = 13 + offset_bytes
                stored = _u32(block, at)[0]
                _need(self._checksum(block[:at] + b"\0\0\0\0" + block[at + 4 :]) == stored,
                      f"the heap block at {address} fails its checksum")  # fmt: skip
            return expected_offset, size, block

        blocks: list[tuple[int, int, bytes]] = []
        if rows == 0:
            blocks.append(direct(root, start_size, 0))
        else:
            sizes = [start_size if row < 2 else start_size << (row - 1) for row in range(rows)]
            _need(all(size <= max_direct for size in sizes), "a heap with indirect blocks below its root")
            entries = rows * table_width
            length = 13 + offset_bytes + entries * 8 + 4
            indirect = self._checked(root, length, b"FHIB")
            _need(_u64(indirect, 5)[0] == heap, "a heap block of another heap")
            position, at = 0, 13 + offset_bytes
            for row in range(rows):
                for _ in range(table_width):
                    address = _u64(indirect, at)[0]
                    at += 8
                    if address != UNDEFINED:
                        blocks.append(direct(address, sizes[row], position))
                    position += sizes[row]

        def managed(heap_id: bytes) -> bytes:
            kind = heap_id[0]
            _need(kind & 0xC0 == 0, "a heap ID of another version")
            if kind & 0x30 == 0x20:  # tiny: the object is the ID's own bytes
                return heap_id[1 : 1 + (kind & 0x0F) + 1]
            _need(kind & 0x30 == 0, "a huge heap object")
            offset = int.from_bytes(heap_id[1 : 1 + offset_bytes], "little")
            length = int.from_bytes(heap_id[1 + offset_bytes : 1 + offset_bytes + length_bytes], "little")
            for start, size, block in blocks:
                if start <= offset and offset + length <= start + size:
                    return block[offset - start : offset - start + length]
            raise NotDirect("a heap object outside the heap's blocks")

        links = [_link(managed(record[4:])) for record in self._btree_records(names, 5, 4 + id_length)]
        _need(len({name for name, _ in links}) == len(links), "a link name twice")
        return links

    def _btree_records(self, address: int, kind: int, record_size: int) -> list[bytes]:
        """Every record of the version 2 B-tree at ``address`` (depth 0 or 1)."""
        header = self._checked(address, 38, b"BTHD")
        _need(header[5] == kind and _u16(header, 10)[0] == record_size, "a B-tree of another type")
        node_size, depth = _u32(header, 6)[0], _u16(header, 12)[0]
        root, root_count, total = _u64(header, 16)[0], _u16(header, 24)[0], _u64(header, 26)[0]
        _need(depth <= 1, "a B-tree deeper than one level")
        if total == 0:
            return []

        def leaf(at: int, count: int) -> list[bytes]:
            node = self._checked(at, 6 + count * record_size + 4, b"BTLF")
            _need(node[5] == kind, "a B-tree node of another type")
            return [node[6 + i * record_size : 6 + (i + 1) * record_size] for i in range(count)]

        if depth == 0:
            records = leaf(root, root_count)
        else:
            count_size = _encoded_size((node_size - 10) // record_size)
            pointer = 8 + count_size
            node = self._checked(root, 6 + root_count * record_size + (root_count + 1) * pointer + 4, b"BTIN")
            _need(node[5] == kind, "a B-tree node of another type")
            records = [node[6 + i * record_size : 6 + (i + 1) * record_size] for i in range(root_count)]
            at = 6 + root_count * record_size
            for _ in range(root_count + 1):
                child = _u64(node, at)[0]
                records.extend(leaf(child, int.from_bytes(node[at + 8 : at + pointer], "little")))
                at += pointer
        _need(len(records) == total, "a B-tree holding another number of records")
        return records


def _encoded_size(limit: int) -> int:
    """Bytes HDF5 uses for a number up to ``limit`` (H5VM_limit_enc_size)."""
    return (max(limit, 1).bit_length() - 1) // 8 + 1


# -- messages --


def _link(body: bytes) -> tuple[bytes, int]:
    """(name, object header address) of a hard link message; other links are not read here."""
    _need(body[0] == 1, "a link message other than version 1")
    flags, position = body[1], 2
    kind = 0
    if flags & 0x08:
        kind = body[position]
        position += 1
    if flags & 0x04:
        position += 8
    if flags & 0x10:
        _need(body[position] in (0, 1), "a link name in another character set")
        position += 1
    width = 1 << (flags & 0x03)
    length = int.from_bytes(body[position : position + width], "little")
    position += width
    name = body[position : position + length]
    _need(kind == 0 and len(name) == length > 0 and b"\0" not in name, "a soft, external or odd link")
    _utf8(name)
    return name, _u64(body, position + length)[0]


def _utf8(name: bytes) -> None:
    """Names are UTF-8 here (HDF5 would give other bytes as they are, which StepReader handles)."""
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        raise NotDirect("a name that is not UTF-8") from None


def _link_info(body: bytes) -> tuple[int, int]:
    """(fractal heap, name index) addresses of a group's dense links: the heap UNDEFINED when compact."""
    _need(body[0] == 0, "a link info message of another version")
    position = 2 + (8 if body[1] & 0x01 else 0)
    heap, names = struct.unpack_from("<QQ", body, position)
    return heap, names


def _attribute_info(body: bytes) -> bool:
    """Whether the attributes are all in the object header (no dense storage)."""
    _need(body[0] == 0, "an attribute info message of another version")
    position = 2 + (2 if body[1] & 0x01 else 0)
    return _u64(body, position)[0] == UNDEFINED


def _filters(body: bytes) -> list[int]:
    version, count = body[0], body[1]
    _need(version == 2, "a filter pipeline other than version 2")
    found, position = [], 2
    for _ in range(count):
        code = _u16(body, position)[0]
        _need(code < 256, "a filter with a name")
        values = _u16(body, position + 4)[0]
        found.append(code)
        position += 6 + 4 * values
    return found


def _dataspace(body: bytes) -> tuple[int, ...]:
    return _short_dataspace(body) if len(body) <= SHORT_ATTRIBUTE else _read_dataspace(body)


def _read_dataspace(body: bytes) -> tuple[int, ...]:
    version, rank, flags = body[0], body[1], body[2]
    if version == 1:
        kind, position = (1 if rank else 0), 8
    else:
        _need(version == 2, "a dataspace of another version")
        kind, position = body[3], 4
    _need(kind in (0, 1), "an empty (null) dataspace")
    _need(not flags & 0x02, "a dataspace with permutation indexes")
    return tuple(_u64(body, position + 8 * axis)[0] for axis in range(rank if kind else 0))


# The IEEE formats numpy reads: (size) -> (precision, exponent at, exponent bits, mantissa bits, bias).
_IEEE = {2: (16, 10, 5, 10, 15), 4: (32, 23, 8, 23, 127), 8: (64, 52, 11, 52, 1023)}


def _datatype(body: bytes) -> tuple[np.dtype[Any], int]:
    """The numpy dtype h5py reads a datatype as, and the bytes of its description (short ones remembered)."""
    return _short_datatype(body) if len(body) <= SHORT_ATTRIBUTE else _read_datatype(body)


def _read_datatype(body: bytes) -> tuple[np.dtype[Any], int]:
    kind, version = body[0] & 0x0F, body[0] >> 4
    bits = body[1] | body[2] << 8 | body[3] << 16
    size = _u32(body, 4)[0]
    if kind == 0:  # integer
        offset, precision = struct.unpack_from("<HH", body, 8)
        _need(size in (1, 2, 4, 8) and offset == 0 and precision == 8 * size and not bits & 0x06, "an odd integer type")
        return np.dtype(f"{'>' if bits & 1 else '<'}{'i' if bits & 0x08 else 'u'}{size}"), 12
    if kind == 1:  # floating point
        _need(size in _IEEE and not bits & 0x4E and (bits >> 4) & 0x03 == 2, "an odd floating-point type")
        offset, precision, exponent_at, exponent_bits, mantissa_at, mantissa_bits, bias = struct.unpack_from(
            "<HHBBBBI", body, 8
        )
        ieee = _IEEE[size]
        _need(offset == 0 and mantissa_at == 0 and (bits >> 8) & 0xFF == ieee[0] - 1, "an odd floating-point type")
        _need((precision, exponent_at, exponent_bits, mantissa_bits, bias) == ieee, "an odd floating-point type")
        return np.dtype(f"{'>' if bits & 1 else '<'}f{size}"), 20
    if kind == 3:  # fixed-length string, read as bytes
        _need(bits & 0x0F <= 2 and (bits >> 4) & 0x0F <= 1 and size, "a string type not parsed here")
        return np.dtype(f"S{size}"), 8
    if kind == 8 and version in (1, 2, 3):  # h5py's booleans: an int8 enum of FALSE and TRUE
        base, used = _datatype(body[8:])
        members = bits & 0xFFFF
        _need(base == np.dtype("i1") and members == 2 and size == 1, "an enumeration other than h5py's booleans")
        position, names = 8 + used, []
        for _ in range(members):
            end = body.index(b"\0", position)
            names.append(body[position:end])
            position = end + 1 if version == 3 else position + ((end - position) // 8 + 1) * 8
        values = body[position : position + 2]
        _need(names == [b"FALSE", b"TRUE"] and values == b"\x00\x01", "an enumeration other than h5py's booleans")
        return np.dtype(np.bool_), position + 2
    raise NotDirect(f"datatype class {kind}")


def _attribute(body: bytes) -> tuple[bytes, np.ndarray]:
    """(name, value) of an attribute message stored in its object header, read-only.

    A short one is remembered by its bytes: the same collections, mode and
    format recur in every step file of every trial. A long one is not, so
    that no file can fill the memory of a scan with its attributes."""
    return _short_attribute(body) if len(body) <= SHORT_ATTRIBUTE else _read_attribute(body)


# Attribute messages up to this size are remembered (at most 4,096 of them: 2 MiB).
SHORT_ATTRIBUTE = 512


def _read_attribute(body: bytes) -> tuple[bytes, np.ndarray]:
    version, flags = body[0], body[1]
    _need(version in (1, 2, 3) and not flags, "a shared or unknown attribute encoding")
    name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)

    def padded(n: int) -> int:
        return -(-n // 8) * 8 if version == 1 else n

    position = 9 if version == 3 else 8
    name = body[position : position + name_size]
    _need(name_size >= 2 and name.endswith(b"\0") and b"\0" not in name[:-1], "an odd attribute name")
    _utf8(name[:-1])
    position += padded(name_size)
    dtype, _ = _datatype(body[position : position + type_size])
    position += padded(type_size)
    shape = _dataspace(body[position : position + space_size])
    position += padded(space_size)
    count = math.prod(shape)
    data = body[position : position + count * dtype.itemsize]
    _need(len(data) == count * dtype.itemsize, "an attribute shorter than its shape")
    if dtype.kind == "b":
        raw = np.frombuffer(data, dtype=np.uint8)
        _need(bool(np.all(raw <= 1)), "a boolean attribute holding another value")
    value = np.frombuffer(data, dtype=dtype).reshape(shape)  # read-only: a view of immutable bytes
    return name[:-1], value


# Remembered by their bytes, short ones only: the same recur in every step file, and no file can fill memory with them.
_short_attribute = functools.lru_cache(maxsize=4096)(_read_attribute)
_short_dataspace = functools.lru_cache(maxsize=1024)(_read_dataspace)
_short_datatype = functools.lru_cache(maxsize=1024)(_read_datatype)

"""HDF5's fletcher32 checksum, computed with numpy over raw chunks.

Reading a chunk through HDF5's filter pipeline verifies its checksum one byte
pair at a time, inside h5py's lock, on one core. Reading the raw chunk and
verifying it here costs a few vectorised passes, outside the lock, so two
threads verify at once. The arithmetic is HDF5's (H5_checksum_fletcher32):
over the data as big-endian 16-bit words ``w_0 .. w_{L-1}`` (an odd last byte
padded with a zero), ``sum1 = sum(w_i)`` and ``sum2 = sum((L - i) * w_i)``,
both modulo 65535, stored as ``sum2 << 16 | sum1`` in little-endian order
after the data.

How it is vectorised: the data is viewed as native little-endian uint16 (the
words byte-swapped) in rows of 4,096. A byte-swapped word is ``256 * w`` modulo
65535, so sums of swapped words give the sums of the words once multiplied by
the inverse of 256. The weight ``L - i`` of word ``i = 4096 row + column`` is
affine in the row and the column, so ``sum2`` needs only the row sums and the
column sums: two reductions, no multiplication per value, each accumulating in
uint32 (numpy's fastest path here; a row sum stays below 2**28 and a column sum
of at most 65,536 rows below 2**32). The first version masked uint64 lanes
apart in seven passes: 5x slower.

Writing uses HDF5's own C function instead when this process has it
(:func:`chunk_checksum_function`): no Python per chunk, and no GIL held, on a
recorder's writer thread beside the training loop. HDF5's metadata checksum,
lookup3, is below: HDF5's own function too where this process has it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

_INVERSE_256 = pow(256, -1, 65535)
_COLUMNS = 4096  # words per row (8 KiB)
_ROWS = 1 << 16  # rows per column sum: 65,536 x 65,535 < 2**32
_COLUMN = np.arange(_COLUMNS, dtype=np.uint64)


def fletcher32_sums(data: np.ndarray) -> tuple[int, int]:
    """HDF5's (sum1, sum2) of the bytes ``data`` (a 1-D uint8 array), each modulo 65535."""
    size = data.size
    words = (size + 1) // 2
    body = size // (2 * _COLUMNS) * (2 * _COLUMNS)
    sum1 = sum2 = 0
    if body:
        matrix = data[:body].view(np.uint16).reshape(-1, _COLUMNS)
        for first in range(0, matrix.shape[0], _ROWS):
            values = matrix[first : first + _ROWS]
            per_row = values.sum(axis=1, dtype=np.uint32).astype(np.uint64)
            per_column = values.sum(axis=0, dtype=np.uint32).astype(np.uint64)
            rows = first + np.arange(values.shape[0], dtype=np.uint64)
            row_weights = (words - _COLUMNS * rows) % 65535  # the weight of each row's first word
            sum1 += int(per_row.sum())
            sum2 += int((row_weights * (per_row % 65535)).sum()) - int((_COLUMN * (per_column % 65535)).sum())
    if body < size:
        tail = data[body:]
        if tail.size % 2:
            tail = np.concatenate([tail, np.zeros(1, dtype=np.uint8)])
        swapped = tail.view("<u2").astype(np.int64)
        index = body // 2 + np.arange(swapped.size, dtype=np.int64)
        sum1 += int(swapped.sum())
        sum2 += int(((words - index) % 65535 * swapped).sum())
    return sum1 * _INVERSE_256 % 65535, sum2 * _INVERSE_256 % 65535


def chunk_checksum(body: np.ndarray) -> bytes:
    """The four bytes HDF5's fletcher32 filter stores after a chunk's ``body`` (1-D uint8)."""
    return chunk_checksum_function()(body)


def _chunk_checksum_numpy(body: np.ndarray) -> bytes:
    sum1, sum2 = fletcher32_sums(body)
    if not (sum1 and sum2) and body.any():
        # HDF5's end-around-carry sums are 0 only for all-zero data;
        # otherwise a residue of 0 is stored as 65535.
        sum1, sum2 = sum1 or 65535, sum2 or 65535
    return ((sum2 << 16) | sum1).to_bytes(4, "little")


def fletcher32_matches(data: np.ndarray, stored: np.ndarray) -> bool:
    """Whether ``data`` (uint8) has the checksum in the 4 bytes ``stored``.

    Compared modulo 65535, as HDF5's own sums are: a sum of 0 and one of
    65535 are the same residue, whichever HDF5 happened to write. Like HDF5,
    the stored value is accepted in either byte order."""
    sum1, sum2 = fletcher32_sums(data)
    # HDF5 before 1.6.? stored the checksum byte-swapped, and HDF5 accepts either order.
    for order in ("little", "big"):
        value = int.from_bytes(stored.tobytes(), order)  # type: ignore[arg-type]
        if (value & 0xFFFF) % 65535 == sum1 and (value >> 16) % 65535 == sum2:
            return True
    return False


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
def _hdf5_checksums() -> tuple[Callable[[bytes | bytearray | memoryview], int], Callable[[np.ndarray], bytes]] | None:
    """HDF5's own lookup3 and fletcher32, from the libhdf5 h5py ships or has loaded, when this platform lets us find it.

    In Python lookup3 costs about a microsecond per 12 bytes, and the object
    headers of a step file hold kilobytes (every compact tensor's values);
    the library's C function, exported by every HDF5 since 1.8, costs nothing
    by comparison. Its fletcher32 costs no Python per chunk, where the numpy
    version above makes several numpy calls per chunk: on a recorder's writer
    thread, that Python holds the GIL the training loop needs, and the C call
    (through ctypes) releases it. Both are
    used only if they agree with the versions above.
    The library is looked for next to h5py first (a wheel's ``h5py.libs``), so
    that reading and writing step files without HDF5 need not import h5py
    (about 50 ms); else h5py is imported and the library it loaded is used.
    """
    for path in _shipped_libhdf5() or _loaded_libhdf5():
        try:
            library = ctypes.CDLL(path)
            lookup3_c, fletcher32_c = library.H5_checksum_lookup3, library.H5_checksum_fletcher32
        except (OSError, AttributeError):
            continue
        lookup3_c.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32)
        lookup3_c.restype = ctypes.c_uint32
        fletcher32_c.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        fletcher32_c.restype = ctypes.c_uint32

        def lookup3_call(data: bytes | bytearray | memoryview, function: Any = lookup3_c) -> int:
            data = bytes(data)  # a few kilobytes at most: headers, not tensors
            return int(function(data, len(data), 0))

        def fletcher32_call(body: np.ndarray, function: Any = fletcher32_c) -> bytes:
            body = np.ascontiguousarray(body)
            return int(function(body.ctypes.data, body.nbytes)).to_bytes(4, "little")

        probe = bytes(range(256)) * 3
        if not all(lookup3_call(bytearray(probe[:n])) == _lookup3_python(probe[:n]) for n in (0, 1, 12, 13, 700)):
            continue
        bodies = [np.frombuffer(probe[:n], dtype=np.uint8) for n in (2, 3, 700, 701)]
        bodies += [np.zeros(64, dtype=np.uint8), np.full(8193, 255, dtype=np.uint8)]
        if all(fletcher32_call(body) == _chunk_checksum_numpy(body) for body in bodies):
            return lookup3_call, fletcher32_call
    return None


def _shipped_libhdf5() -> list[str]:
    """The libhdf5 of an h5py wheel (``site-packages/h5py.libs``), found without importing h5py."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("h5py")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    libs = os.path.join(os.path.dirname(next(iter(spec.submodule_search_locations))), "h5py.libs")
    try:
        names = os.listdir(libs)
    except OSError:
        return []
    return sorted(os.path.join(libs, n) for n in names if n.startswith("libhdf5-") and ".so" in n)


def _loaded_libhdf5() -> list[str]:
    """The libhdf5 h5py loads (a system library, for one), from /proc/self/maps once h5py is imported."""
    import h5py  # noqa: F401  (loads libhdf5 into the process)

    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "libhdf5" in line and "libhdf5_hl" not in line})
    except OSError:
        return []


def lookup3_function() -> Callable[[bytes | bytearray | memoryview], int]:
    """The fastest lookup3 this process has: HDF5's, else the Python one."""
    native = _hdf5_checksums()
    return native[0] if native is not None else _lookup3_python


def lookup3(data: bytes | bytearray | memoryview) -> int:
    """HDF5's metadata checksum of ``data`` (lookup3 with an initial value of 0)."""
    native = _hdf5_checksums()
    return native[0](data) if native is not None else _lookup3_python(data)


def chunk_checksum_function() -> Callable[[np.ndarray], bytes]:
    """The chunk checksum to write with: HDF5's fletcher32 (no GIL held), else numpy's."""
    native = _hdf5_checksums()
    return native[1] if native is not None else _chunk_checksum_numpy

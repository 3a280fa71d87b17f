"""HDF5's fletcher32 checksum, computed with numpy over raw chunks.

Reading a chunk through HDF5's filter pipeline verifies its checksum one byte
pair at a time, inside h5py's lock, on one core. Reading the raw chunk and
verifying it here costs a few vectorised passes, outside the lock, so two
threads verify at once. The arithmetic is HDF5's (H5_checksum_fletcher32):
over the data as big-endian 16-bit words ``w_0 .. w_{L-1}`` (an odd last byte
padded with a zero), ``sum1 = sum(w_i)`` and ``sum2 = sum((L - i) * w_i)``,
both modulo 65535, stored as ``sum2 << 16 | sum1`` in little-endian order
after the data.

How it is vectorised: the data is viewed as native little-endian uint64, four
byte-swapped words each. A byte-swapped word is ``256 * w`` modulo 65535, so
sums of swapped words give the sums of the words once multiplied by the
inverse of 256. Masking splits each uint64 into two lanes of 32 bits holding
one word each (words 0 and 2, then 1 and 3), so sums of rows of 2,048 values
never carry from one lane into the next. With the rows summed (their weights
``L - i`` are affine in the row index) and the columns summed (the part of the
weight that varies within a row), ``sum2`` needs no multiplication per value.
"""

from __future__ import annotations

import numpy as np

_LANES = np.uint64(0x0000FFFF0000FFFF)
_LOW = np.uint64(0xFFFFFFFF)
_16 = np.uint64(16)
_32 = np.uint64(32)
_INVERSE_256 = pow(256, -1, 65535)
_COLUMNS = 2048  # uint64 values per row: a row's lane sums stay below 2**27
_COLUMN = np.arange(_COLUMNS, dtype=np.uint64)


def fletcher32_sums(data: np.ndarray) -> tuple[int, int]:
    """HDF5's (sum1, sum2) of the bytes ``data`` (a 1-D uint8 array), each modulo 65535."""
    size = data.size
    words = (size + 1) // 2
    body = size // (8 * _COLUMNS) * (8 * _COLUMNS)
    sum1 = sum2 = 0
    if body:
        values = data[:body].view(np.uint64).reshape(-1, _COLUMNS)
        rows = values.shape[0]
        even = np.bitwise_and(values, _LANES)  # words 4j (low lane) and 4j+2 (high lane)
        odd = np.right_shift(values, _16)
        np.bitwise_and(odd, _LANES, out=odd)  # words 4j+1 and 4j+3
        even_rows, odd_rows = even.sum(axis=1), odd.sum(axis=1)
        even_columns, odd_columns = even.sum(axis=0), odd.sum(axis=0)
        lanes = np.stack([even_rows & _LOW, odd_rows & _LOW, even_rows >> _32, odd_rows >> _32])
        per_row = lanes.sum(axis=0) % 65535
        totals = [int(total) for total in lanes.sum(axis=1)]  # per word position 0..3 within a uint64
        per_column = ((even_columns & _LOW) + (even_columns >> _32) + (odd_columns & _LOW)
                      + (odd_columns >> _32)) % 65535
        # Word 4(row * C + column) + lane has weight words - 4 C row - 4 column - lane.
        row_weights = (words - 4 * _COLUMNS * np.arange(rows, dtype=np.uint64)) % 65535
        sum1 = sum(totals)
        sum2 = (int((row_weights * per_row).sum()) - (totals[1] + 2 * totals[2] + 3 * totals[3])
                - 4 * int((_COLUMN * per_column).sum()))
    if body < size:
        tail = data[body:]
        if tail.size % 2:
            tail = np.concatenate([tail, np.zeros(1, dtype=np.uint8)])
        swapped = tail.view("<u2").astype(np.int64)
        index = body // 2 + np.arange(swapped.size, dtype=np.int64)
        sum1 += int(swapped.sum())
        sum2 += int(((words - index) % 65535 * swapped).sum())
    return sum1 * _INVERSE_256 % 65535, sum2 * _INVERSE_256 % 65535


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

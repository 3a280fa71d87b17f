"""TFRecord framing, as smdebug writes its event files, with the masked CRC-32C verified.

A record is::

    uint64 length          little-endian
    uint32 masked_crc32c(length bytes)
    byte   payload[length]  a serialized Event
    uint32 masked_crc32c(payload)

smdebug's writer (``smdebug/core/tfrecord/record_writer.py``) fills the last
field with ``masked_crc32c(b"0x12345678")`` unless its ``write_checksum`` flag
is set, which its hooks leave off: the payload of such a record carries no
checksum. poorinit then verifies the length's CRC (always present), and
relies on the payload parsing as an Event and on each tensor's byte count
matching its shape; a record with a real payload CRC (TensorFlow's writer,
smdebug with ``write_checksum``) is verified in full.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

HEADER_BYTES = 12
FOOTER_BYTES = 4
# The constant smdebug checksums in place of an unchecksummed payload.
UNCHECKED_PAYLOAD_MAGIC = b"0x12345678"


class RecordError(ValueError):
    """A record that is truncated or fails its CRC; ``problem`` says which, at which byte."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def _crc32c(data: bytes | memoryview) -> int:
    from crc32c import crc32c

    return int(crc32c(data))


def masked_crc32c(data: bytes | memoryview) -> int:
    """TensorFlow's masking: rotate right by 15 bits and add a constant, modulo 2**32."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_UNCHECKED: int | None = None


def unchecked_payload_crc() -> int:
    global _UNCHECKED
    if _UNCHECKED is None:
        _UNCHECKED = masked_crc32c(UNCHECKED_PAYLOAD_MAGIC)
    return _UNCHECKED


def read_record(data: bytes | memoryview, offset: int = 0) -> tuple[memoryview, int]:
    """The payload of the record at ``offset`` of ``data``, and the offset after it.

    Raises :class:`RecordError` for a record cut short or failing a CRC.
    """
    view = memoryview(data)
    end = len(view)
    if end - offset < HEADER_BYTES:
        raise RecordError(f"truncated record at byte {offset}: {end - offset} of its {HEADER_BYTES} header bytes")
    header = view[offset : offset + 8]
    (length,) = struct.unpack("<Q", header)
    (length_crc,) = struct.unpack("<I", view[offset + 8 : offset + HEADER_BYTES])
    if length_crc != masked_crc32c(header):
        raise RecordError(f"bad CRC of the record length at byte {offset}")
    start = offset + HEADER_BYTES
    stop = start + length
    if end < stop + FOOTER_BYTES:
        have = max(0, end - start)
        raise RecordError(
            f"truncated record at byte {offset}: {have} of its {length + FOOTER_BYTES} payload and CRC bytes"
        )
    payload = view[start:stop]
    (payload_crc,) = struct.unpack("<I", view[stop : stop + FOOTER_BYTES])
    if payload_crc != unchecked_payload_crc() and payload_crc != masked_crc32c(payload):
        raise RecordError(f"bad CRC of the record payload at byte {offset}")
    return payload, stop + FOOTER_BYTES


def iter_records(data: bytes | memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """(offset, length in bytes, payload) of every record of a whole event file."""
    offset = 0
    while offset < len(data):
        payload, after = read_record(data, offset)
        yield offset, after - offset, payload
        offset = after


def frame(payload: bytes, checksum: bool = True) -> bytes:
    """One record around ``payload`` (for tests and tools that write event files)."""
    header = struct.pack("<Q", len(payload))
    crc = masked_crc32c(payload) if checksum else unchecked_payload_crc()
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", crc)

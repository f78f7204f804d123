"""Kafka record batches, magic 2: build, parse, CRC-32C, compression.

Batch layout (big-endian), 61-byte header then records:

    0  baseOffset int64           broker-assigned; not covered by the CRC
    8  batchLength int32          bytes after this field (total size - 12)
    12 partitionLeaderEpoch int32 broker-assigned; not covered by the CRC
    16 magic int8                 always 2
    17 crc uint32                 CRC-32C of bytes 21 .. end of batch
    21 attributes int16           bits 0-2 codec, 3 log-append-time, 4 transactional, 5 control
    23 lastOffsetDelta int32
    27 baseTimestamp int64
    35 maxTimestamp int64
    43 producerId int64
    51 producerEpoch int16
    53 baseSequence int32
    57 recordsCount int32
    61 records (one compressed stream when the codec is not none)

Because the CRC starts at byte 21, a broker assigns offsets and leader epochs by
overwriting bytes 0-7 and 12-15 in place, without re-encoding anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c as _crc32c

from .errors import CorruptRecordError

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted by batchLength
MAGIC = 2
CRC_START = 21

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_AND_LENGTH = struct.Struct(">qi")
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")


def crc32c(data) -> int:
    """CRC-32C (Castagnoli) of a bytes-like object."""
    return _crc32c.crc32c(data)


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The fixed 61-byte header of a record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Total size of the batch in bytes, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & 0x07

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & 0x08)


def parse_header(buf, pos: int = 0) -> BatchHeader:
    """Parse the batch header at `buf[pos:]`; raises CorruptRecordError when it is not one.

    Checks only what the header alone can tell: enough bytes for a header, magic 2, and a
    batchLength that covers at least the header. It does not check the CRC.
    """
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(f"batch header needs {HEADER_SIZE} bytes, {len(buf) - pos} left")
    header = BatchHeader(*_HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptRecordError(f"unsupported record batch magic {header.magic}")
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {header.batch_length} is shorter than a header")
    if header.last_offset_delta < 0 or header.records_count < 0:
        raise CorruptRecordError("negative record count or offset delta")
    return header


def peek_offset_and_size(buf, pos: int = 0) -> tuple[int, int]:
    """(baseOffset, total batch size) from the first 12 bytes at `pos`; no validation."""
    base_offset, batch_length = _OFFSET_AND_LENGTH.unpack_from(buf, pos)
    return base_offset, batch_length + LOG_OVERHEAD


def crc_is_valid(buf, pos: int, size: int) -> bool:
    """Whether the stored CRC matches the batch occupying `buf[pos:pos+size]`."""
    (stored,) = struct.unpack_from(">I", buf, pos + 17)
    view = memoryview(buf)[pos + CRC_START : pos + size]
    return crc32c(view) == stored


def iter_batches(buf, validate_crc: bool = True):
    """Yield (position, header) for each whole batch in `buf`, checking each one.

    Stops with CorruptRecordError at the first batch that is cut short, fails its header
    checks or (with validate_crc) its CRC. Callers that want the valid prefix catch it.
    """
    pos, end = 0, len(buf)
    while pos < end:
        header = parse_header(buf, pos)
        if pos + header.size > end:
            raise CorruptRecordError(
                f"batch at byte {pos} needs {header.size} bytes, {end - pos} present"
            )
        if validate_crc and not crc_is_valid(buf, pos, header.size):
            raise CorruptRecordError(f"CRC mismatch in batch at byte {pos}")
        yield pos, header
        pos += header.size


def set_base_offset(buf: bytearray, pos: int, base_offset: int) -> None:
    """Overwrite a batch's baseOffset in place (bytes 0-7; outside the CRC)."""
    _INT64.pack_into(buf, pos, base_offset)


def set_leader_epoch(buf: bytearray, pos: int, epoch: int) -> None:
    """Overwrite a batch's partitionLeaderEpoch in place (bytes 12-15; outside the CRC)."""
    _INT32.pack_into(buf, pos + 12, epoch)

"""Checks on produced record batches before anything is written.

`validate_batches(buf, max_batch_bytes)` walks one or more batches laid back to back (a
Produce request's records field) and returns one tuple per batch:

    (position, size, last_offset_delta, max_timestamp, partition_leader_epoch, base_offset)

It raises, before any write happens:

* CorruptRecordError (CORRUPT_MESSAGE) — no bytes, a bad header (magic other than 2, a
  batchLength shorter than a header, negative counts), a batch that runs past the bytes
  present, a CRC-32C mismatch;
* InvalidRecordError (INVALID_RECORD) — recordsCount < 1, or lastOffsetDelta != recordsCount - 1;
* MessageTooLargeError (MESSAGE_TOO_LARGE) — a batch bigger than max_batch_bytes.

The header checks are records.parse_header's, done on a plain struct tuple because this
runs once per produced batch on the broker's hot path.
"""

from __future__ import annotations

import struct

from .. import records
from ..errors import CorruptRecordError, InvalidRecordError, MessageTooLargeError

_HEADER = struct.Struct(">qiibIhiqqqhii")
_MIN_LENGTH = records.HEADER_SIZE - records.LOG_OVERHEAD


def validate_batches(buf, max_batch_bytes: int) -> list[tuple[int, int, int, int, int, int]]:
    end = len(buf)
    if end == 0:
        raise CorruptRecordError("no record batches")
    view = memoryview(buf)
    found, pos = [], 0
    while pos < end:
        if end - pos < records.HEADER_SIZE:
            raise CorruptRecordError(f"batch header at byte {pos} needs {records.HEADER_SIZE} bytes, "
                                     f"{end - pos} present")
        (base, length, epoch, magic, crc, _, delta, _, max_ts, _, _, _, count) = _HEADER.unpack_from(buf, pos)
        size = length + records.LOG_OVERHEAD
        if magic != records.MAGIC:
            raise CorruptRecordError(f"unsupported record batch magic {magic} at byte {pos}")
        if length < _MIN_LENGTH:
            raise CorruptRecordError(f"batch length {length} at byte {pos} is shorter than a header")
        if size > max_batch_bytes:
            raise MessageTooLargeError(f"batch at byte {pos} is {size} bytes; the limit is {max_batch_bytes} "
                                       f"(the topic's max.message.bytes)")
        if pos + size > end:
            raise CorruptRecordError(f"batch at byte {pos} needs {size} bytes, {end - pos} present")
        if records.crc32c(view[pos + records.CRC_START: pos + size]) != crc:
            raise CorruptRecordError(f"CRC mismatch in batch at byte {pos}")
        if count < 1:
            raise InvalidRecordError(f"batch at byte {pos} holds no records")
        if delta != count - 1:
            raise InvalidRecordError(f"batch at byte {pos}: lastOffsetDelta {delta} with {count} records")
        found.append((pos, size, delta, max_ts, epoch, base))
        pos += size
    return found

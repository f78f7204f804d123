"""Checks on produced record batches before anything is written.

`validate_batches(buf, max_batch_bytes)` walks one or more batches laid back to back (a
Produce request's records field) and returns [(position, BatchHeader)]. It raises, before
any write happens:

* CorruptRecordError (CORRUPT_MESSAGE) — no bytes, a bad header (magic other than 2, a
  batchLength shorter than a header), a batch that runs past the bytes present, a CRC-32C
  mismatch;
* InvalidRecordError (INVALID_RECORD) — recordsCount < 1, or lastOffsetDelta != recordsCount - 1;
* MessageTooLargeError (MESSAGE_TOO_LARGE) — a batch bigger than max_batch_bytes.
"""

from __future__ import annotations

from .. import records
from ..errors import CorruptRecordError, InvalidRecordError, MessageTooLargeError


def validate_batches(buf, max_batch_bytes: int) -> list[tuple[int, records.BatchHeader]]:
    end = len(buf)
    if end == 0:
        raise CorruptRecordError("no record batches")
    found, pos = [], 0
    while pos < end:
        header = records.parse_header(buf, pos)
        if header.size > max_batch_bytes:
            raise MessageTooLargeError(f"batch at byte {pos} is {header.size} bytes; the limit is {max_batch_bytes}")
        if pos + header.size > end:
            raise CorruptRecordError(f"batch at byte {pos} needs {header.size} bytes, {end - pos} present")
        if not records.crc_is_valid(buf, pos, header.size):
            raise CorruptRecordError(f"CRC mismatch in batch at byte {pos}")
        if header.records_count < 1:
            raise InvalidRecordError(f"batch at byte {pos} holds no records")
        if header.last_offset_delta != header.records_count - 1:
            raise InvalidRecordError(
                f"batch at byte {pos}: lastOffsetDelta {header.last_offset_delta} "
                f"with {header.records_count} records"
            )
        found.append((pos, header))
        pos += header.size
    return found

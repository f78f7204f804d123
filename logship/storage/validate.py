"""Checks on produced record batches before anything is written.

`validate_batches(buf, max_batch_bytes, client=...)` walks one or more batches laid back to
back (a Produce request's records field) and returns one tuple per batch:

    (position, size, last_offset_delta, max_timestamp, partition_leader_epoch, base_offset)

It raises, before any write happens:

* CorruptRecordError (CORRUPT_MESSAGE) — no bytes, a bad header (magic other than 2, a
  batchLength shorter than a header, negative counts), a batch that runs past the bytes
  present, a CRC-32C mismatch;
* InvalidRecordError (INVALID_RECORD) — recordsCount < 1, or lastOffsetDelta != recordsCount - 1;
* MessageTooLargeError (MESSAGE_TOO_LARGE) — a batch bigger than max_batch_bytes.

With `client` (a batch from a producer, which the leader appends: what Kafka's LogValidator
checks for AppendOrigin.CLIENT) a batch must also hold what it claims, because a batch that
passes the CRC but lies stalls every consumer after it:

* CorruptRecordError — a codec other than 0-4; a compressed records section that does not
  decompress (plain data flagged compressed, say) or inflates past `max_uncompressed`
  (compression.py's bound; DecompressionLimitError);
* UnsupportedCompression — a known codec this installation cannot decode;
* InvalidRecordError — attributes a producer may not set: the control bit (only a
  transaction coordinator writes control batches, and logship has none), the LogAppendTime
  bit (the broker sets it; Kafka answers INVALID_TIMESTAMP here, logship INVALID_RECORD),
  bits 6-15 (unused, or the log cleaner's); the transactional bit without a producer id;
  a producer id with a negative baseSequence (Kafka's rule); and a records section that is
  not exactly recordsCount well-formed records with offset deltas 0..n-1 (record_check).

Batches appended with `client` false, a follower's copies of its leader's batches and the
broker's own (committed offsets), were checked when the leader took them or are made by the
broker, and may legitimately carry what a producer may not (control batches, gaps left by
compaction), so only their header and CRC are checked, as Kafka does for those origins.

The header checks are records.parse_header's, done on a plain struct tuple because this
runs once per produced batch on the broker's hot path; the records check is
record_check's, whose common-shape path costs a few table look-ups per record.
"""

from __future__ import annotations

import struct

from .. import records
from ..compression import CODEC_NAMES, decompress
from ..errors import CorruptRecordError, InvalidRecordError, MessageTooLargeError
from ..record_check import check_section

_HEADER = struct.Struct(">qiibIhiqqqhii")
_MIN_LENGTH = records.HEADER_SIZE - records.LOG_OVERHEAD
_CODEC = records.ATTR_CODEC_MASK
_PRODUCER_MAY_NOT_SET = ~(records.ATTR_CODEC_MASK | records.ATTR_TRANSACTIONAL) & 0xFFFF


def validate_batches(buf, max_batch_bytes: int, *, client: bool = False,
                     max_uncompressed: int = records.DEFAULT_MAX_UNCOMPRESSED) -> list[tuple[int, int, int, int, int, int]]:
    end = len(buf)
    if end == 0:
        raise CorruptRecordError("no record batches")
    view = memoryview(buf)
    found, pos = [], 0
    while pos < end:
        if end - pos < records.HEADER_SIZE:
            raise CorruptRecordError(f"batch header at byte {pos} needs {records.HEADER_SIZE} bytes, "
                                     f"{end - pos} present")
        (base, length, epoch, magic, crc, attributes, delta, first_ts, max_ts, producer_id, _, sequence,
         count) = _HEADER.unpack_from(buf, pos)
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
        if client:
            _check_claims(view, pos, size, attributes, producer_id, sequence, count, max_uncompressed,
                          max_ts == first_ts)
        found.append((pos, size, delta, max_ts, epoch, base))
        pos += size
    return found


def _check_claims(view: memoryview, pos: int, size: int, attributes: int, producer_id: int, sequence: int,
                  count: int, max_uncompressed: int, one_time: bool) -> None:
    """A producer's batch at `pos`: its attributes, then its records against its header (`one_time`:
    its maximum timestamp is its first, a hint for record_check)."""
    attributes &= 0xFFFF
    codec = attributes & _CODEC
    if codec not in CODEC_NAMES:
        raise CorruptRecordError(f"batch at byte {pos}: unknown compression codec {codec}")
    if attributes & _PRODUCER_MAY_NOT_SET:
        if attributes & records.ATTR_CONTROL:
            raise InvalidRecordError(f"batch at byte {pos}: clients may not write control batches")
        if attributes & records.ATTR_LOG_APPEND_TIME:
            raise InvalidRecordError(f"batch at byte {pos}: a producer may not set the LogAppendTime "
                                     f"timestamp type; the broker sets it")
        raise InvalidRecordError(f"batch at byte {pos}: attributes 0x{attributes:04x} set bits a producer "
                                 f"may not set")
    if producer_id < 0:
        if attributes & records.ATTR_TRANSACTIONAL:
            raise InvalidRecordError(f"batch at byte {pos}: transactional without a producer id")
    elif sequence < 0:
        raise InvalidRecordError(f"batch at byte {pos}: producer id {producer_id} with base sequence {sequence}")
    body = view[pos + records.HEADER_SIZE: pos + size]
    try:
        data = decompress(codec, body, max_uncompressed) if codec else bytes(body)
    except CorruptRecordError as exc:
        raise type(exc)(f"batch at byte {pos}: {exc}") from None
    try:
        check_section(data, count, one_time)
    except InvalidRecordError as exc:
        raise InvalidRecordError(f"batch at byte {pos}: {exc}") from None

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

The records themselves, and the Record type, are in logship.record_codec.

A fresh batch has offset deltas 0..n-1, baseTimestamp = the first record's timestamp,
maxTimestamp = the largest one, and lastOffsetDelta = n - 1. With a codec set, all the
records are compressed together as one stream (logship.compression) and batchLength
and the CRC cover the compressed bytes; recordsCount stays in the clear.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Iterator

from . import compression as _compression
from .crc import crc32c
from .errors import CorruptRecordError, InvalidRecordError
from .record_codec import Headers as Headers
from .record_codec import Record as Record
from .record_codec import RecordInput as RecordInput
from .record_codec import decode_records_section, encode_record, encode_values

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted by batchLength
MAGIC = 2
CRC_START = 21

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_AND_LENGTH = struct.Struct(">qi")
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")


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


_PRODUCER_FIELDS = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence: bytes 43-56


def with_producer(batch: bytes | bytearray, producer_id: int, producer_epoch: int, base_sequence: int) -> bytearray:
    """A copy of one whole batch carrying an idempotent producer's id, epoch and base sequence
    (bytes 43-56, inside the CRC, which is computed again)."""
    buf = bytearray(batch)
    _PRODUCER_FIELDS.pack_into(buf, 43, producer_id, producer_epoch, base_sequence)
    struct.pack_into(">I", buf, CRC_START - 4, crc32c(memoryview(buf)[CRC_START:]))
    return buf


ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

DEFAULT_MAX_UNCOMPRESSED = 64 * 1024 * 1024
"""Default bound on the decompressed records section of one batch."""

_HEAD_BEFORE_CRC = struct.Struct(">qiib")  # baseOffset, batchLength, partitionLeaderEpoch, magic
_HEAD_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. recordsCount
_UINT32 = struct.Struct(">I")


def seal_batch(
    body: bytes,
    count: int,
    base_timestamp: int,
    max_timestamp: int,
    *,
    base_offset: int,
    compression: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    partition_leader_epoch: int,
    attributes: int,
    last_offset_delta: int | None = None,
) -> bytes:
    """A whole batch around an encoded records section (record_codec's encoding of `count`
    records): compress the section if asked, then prepend the header with its CRC.

    lastOffsetDelta is `count - 1` unless given (a compacted batch keeps its original one).
    """
    if compression:
        body = _compression.compress(compression, body)
    after_crc = _HEAD_AFTER_CRC.pack(
        attributes | compression,
        count - 1 if last_offset_delta is None else last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    crc = crc32c(body, crc32c(after_crc))
    before_crc = _HEAD_BEFORE_CRC.pack(
        base_offset, HEADER_SIZE - LOG_OVERHEAD + len(body), partition_leader_epoch, MAGIC
    )
    return b"".join((before_crc, _UINT32.pack(crc), after_crc, body))


def _attributes(timestamp_type_log_append: bool, transactional: bool, control: bool) -> int:
    return (
        (ATTR_LOG_APPEND_TIME if timestamp_type_log_append else 0)
        | (ATTR_TRANSACTIONAL if transactional else 0)
        | (ATTR_CONTROL if control else 0)
    )


def build_batch(
    records: Iterable[Record | tuple],
    *,
    base_offset: int = 0,
    compression: int = 0,
    base_timestamp: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    timestamp_type_log_append: bool = False,
    transactional: bool = False,
    control: bool = False,
) -> bytes:
    """Encode records as one batch (magic 2) and return its bytes.

    Each item of `records` is a (timestamp, key, value, headers) tuple (RecordInput) or a
    Record, whose offset is ignored: offset deltas are the positions 0..n-1. Keys and
    values are bytes-like or None; headers are (str, bytes-like or None) pairs.
    Timestamp deltas are relative to `base_timestamp`, by default the first record's
    timestamp, as Kafka's producer does. Raises InvalidRecordError for no records and
    UnsupportedCompression for a codec that is unknown or not installed.
    """
    parts: list = []
    count = 0
    first = max_timestamp = None
    for item in records:
        if isinstance(item, Record):
            timestamp, key, value, headers = item.timestamp, item.key, item.value, item.headers
        else:
            timestamp, key, value, headers = item
        if first is None:
            first = timestamp if base_timestamp is None else base_timestamp
            max_timestamp = timestamp
        elif timestamp > max_timestamp:
            max_timestamp = timestamp
        if headers and not isinstance(headers, (tuple, list)):
            headers = tuple(headers)
        encode_record(parts, count, timestamp - first, key, value, headers)
        count += 1
    if not count:
        raise InvalidRecordError("a record batch needs at least one record")
    return seal_batch(
        b"".join(parts),
        count,
        first,
        max_timestamp,
        base_offset=base_offset,
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=partition_leader_epoch,
        attributes=_attributes(timestamp_type_log_append, transactional, control),
    )


def build_batch_values(
    values: list,
    timestamp_ms: int,
    compression: int = 0,
    *,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    transactional: bool = False,
) -> bytes:
    """build_batch for keyless, headerless records sharing one timestamp, only faster.

    `values` is a list of bytes-like objects (None is not allowed here; use build_batch).
    The result is byte for byte what build_batch gives for [(timestamp_ms, None, v, ())
    for v in values] with the same options.
    """
    if not values:
        raise InvalidRecordError("a record batch needs at least one record")
    return seal_batch(
        encode_values(values),
        len(values),
        timestamp_ms,
        timestamp_ms,
        base_offset=base_offset,
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=partition_leader_epoch,
        attributes=_attributes(False, transactional, False),
    )


def rebuild_batch(header: BatchHeader, kept: Iterable[Record]) -> bytes:
    """The batch `header` describes, holding only `kept`: what log compaction writes.

    `kept` is a subset of the batch's own records, in order. As in Kafka's log cleaner, the
    batch keeps its baseOffset, lastOffsetDelta (so it still spans the same offsets),
    baseTimestamp, maxTimestamp, codec, attributes, producer fields and leader epoch, and
    every record keeps its offset and timestamp, so offsets inside the batch may have gaps.
    With nothing kept the result is an empty batch (recordsCount 0), which Kafka's format
    allows: it only marks the offsets it spans as used.
    """
    parts: list = []
    count = 0
    for record in kept:
        encode_record(parts, record.offset - header.base_offset, record.timestamp - header.base_timestamp,
                      record.key, record.value, record.headers)
        count += 1
    return seal_batch(
        b"".join(parts),
        count,
        header.base_timestamp,
        header.max_timestamp,
        base_offset=header.base_offset,
        compression=header.compression if count else 0,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        partition_leader_epoch=header.partition_leader_epoch,
        attributes=header.attributes & ~ATTR_CODEC_MASK,
        last_offset_delta=header.last_offset_delta,
    )


def decode_records(
    batch,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    *,
    validate_crc: bool = True,
) -> list[Record]:
    """The records of one whole batch: `batch` holds exactly its bytes, from baseOffset on.

    Decompresses with a bound of `max_uncompressed` bytes (DecompressionLimitError past
    it). Raises CorruptRecordError for any inconsistency: a bad header or CRC, a record
    count that does not match the records present, a length running past its record,
    negative lengths other than -1, bytes left after the last record; and
    UnsupportedCompression for a codec it cannot decode. Control batches are decoded
    like the others; iter_records skips them. Keys and values are copies (bytes), so
    the records outlive `batch` (which may be a view of an mmap).
    """
    header = parse_header(batch)
    if len(batch) != header.size:
        raise CorruptRecordError(f"batch declares {header.size} bytes, buffer holds {len(batch)}")
    if validate_crc and not crc_is_valid(batch, 0, header.size):
        raise CorruptRecordError("CRC mismatch")
    view = memoryview(batch)[HEADER_SIZE:]
    if header.compression:
        data = _compression.decompress(header.compression, view, max_uncompressed)
    else:
        data = bytes(view)
    return decode_records_section(
        data,
        header.records_count,
        header.base_offset,
        header.base_timestamp,
        header.max_timestamp if header.log_append_time else None,
    )


def iter_records(
    buf,
    *,
    validate_crc: bool = True,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    allow_truncated_tail: bool = True,
) -> Iterator[Record]:
    """The data records of consecutive batches in `buf`, skipping control batches.

    A Fetch response may end with a batch cut at the byte limit; with
    `allow_truncated_tail` such a last, incomplete batch is ignored, as Kafka's clients
    do. Anything else wrong raises CorruptRecordError.
    """
    view = memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        if allow_truncated_tail and (
            end - pos < HEADER_SIZE or pos + peek_offset_and_size(view, pos)[1] > end
        ):
            return
        header = parse_header(view, pos)
        if pos + header.size > end:
            raise CorruptRecordError(f"batch at byte {pos} needs {header.size} bytes, {end - pos} present")
        if not header.is_control:
            yield from decode_records(view[pos : pos + header.size], max_uncompressed, validate_crc=validate_crc)
        pos += header.size

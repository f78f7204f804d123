"""Record batches whose CRC is right but whose contents lie, built by hand for the tests of
storage/validate.py (test_validate_records.py) and of a real broker (test_produce_lying_batches.py).

LYING maps a case name to (builder, the exception class the validator raises, the Kafka error
code the broker answers). Every builder returns a whole batch (base offset 0) with a valid CRC.
"""

from __future__ import annotations

import struct

from logship import records
from logship.compression import GZIP, LZ4, SNAPPY, ZSTD, compress
from logship.crc import crc32c
from logship.errors import CorruptRecordError, InvalidRecordError
from logship.record_codec import encode_record
from logship.varint import zigzag_varint

NOW = 1_764_000_000_000
CORRUPT_MESSAGE, INVALID_RECORD = 2, 87


def fix_crc(batch: bytearray | bytes) -> bytes:
    """`batch` with its batchLength and CRC made to match its bytes."""
    batch = bytearray(batch)
    struct.pack_into(">i", batch, 8, len(batch) - records.LOG_OVERHEAD)
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[records.CRC_START:])))
    return bytes(batch)


def with_header(batch: bytes, **fields) -> bytes:
    """`batch` with header fields replaced (attributes, last_offset_delta, records_count,
    producer_id, base_sequence), CRC fixed."""
    out = bytearray(batch)
    at = {"attributes": (21, ">h"), "last_offset_delta": (23, ">i"), "producer_id": (43, ">q"),
          "producer_epoch": (51, ">h"), "base_sequence": (53, ">i"), "records_count": (57, ">i")}
    for name, value in fields.items():
        pos, fmt = at[name]
        struct.pack_into(fmt, out, pos, value)
    return fix_crc(out)


def sealed(section: bytes, count: int, *, codec: int = 0, last_offset_delta: int | None = None,
           attributes: int = 0) -> bytes:
    """A batch around a hand-made records section (compressed with `codec`), CRC right."""
    return records.seal_batch(section, count, NOW, NOW, base_offset=0, compression=codec, producer_id=-1,
                              producer_epoch=-1, base_sequence=-1, partition_leader_epoch=-1,
                              attributes=attributes, last_offset_delta=last_offset_delta)


def record(offset_delta: int = 0, key=None, value=b"v", headers=(), timestamp_delta: int = 0) -> bytes:
    parts: list = []
    encode_record(parts, offset_delta, timestamp_delta, key, value, headers)
    return b"".join(parts)


def raw_record(body: bytes) -> bytes:
    """A record from its bytes after the length varint (whatever they say)."""
    return zigzag_varint(len(body)) + body


def good(n: int = 1, codec: int = 0) -> bytes:
    return records.build_batch([(NOW, None, b"value %d" % i, ()) for i in range(n)], compression=codec)


def _count_over_one():
    return with_header(good(1), records_count=1000, last_offset_delta=999)


def _count_two_over_one():
    return with_header(good(1), records_count=2, last_offset_delta=1)


def _count_one_over_two():
    return with_header(good(2), records_count=1, last_offset_delta=0)


def _record_length_overrun():
    body = record()
    return sealed(zigzag_varint(len(body) - 1 + 40) + body[1:], 1)


def _record_length_short():
    body = record(value=b"value")
    return sealed(zigzag_varint(len(body) - 1 - 3) + body[1:], 1)


def _key_overrun():
    # attributes, timestampDelta, offsetDelta, keyLength 50 over a 1-byte key, value, headers
    return sealed(raw_record(b"\x00\x00\x00" + zigzag_varint(50) + b"k" + zigzag_varint(1) + b"v\x00"), 1)


def _value_overrun():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(90) + b"v\x00"), 1)


def _negative_value_length():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(-2) + b"\x00"), 1)


def _negative_key_length():
    return sealed(raw_record(b"\x00\x00\x00" + zigzag_varint(-7) + zigzag_varint(1) + b"v\x00"), 1)


def _header_count_overrun():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(1) + b"v" + zigzag_varint(40)), 1)


def _negative_header_count():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(1) + b"v" + zigzag_varint(-3)), 1)


def _null_header_key():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(1) + b"v" + zigzag_varint(1)
                             + zigzag_varint(-1) + zigzag_varint(1) + b"x"), 1)


def _header_key_not_utf8():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(1) + b"v" + zigzag_varint(1)
                             + zigzag_varint(2) + b"\xff\xfe" + zigzag_varint(-1)), 1)


def _header_value_overrun():
    return sealed(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(1) + b"v" + zigzag_varint(1)
                             + zigzag_varint(1) + b"h" + zigzag_varint(30) + b"x"), 1)


def _varint_too_long():
    return sealed(raw_record(b"\x00\x00\x00\x01" + b"\x82\x80\x80\x80\x80\x00" + b"v\x00"), 1)


def _offset_deltas_gap():
    return sealed(record(0) + record(5), 2)


def _offset_deltas_reversed():
    return sealed(record(1) + record(0), 2)


def _offset_deltas_repeated():
    return sealed(record(0) + record(0), 2)


def _trailing_garbage():
    return sealed(record(0) + b"\x00garbage", 1)


def _missing_records():
    return sealed(record(0) + record(1), 3, last_offset_delta=2)


def _unknown_codec():
    return with_header(good(1), attributes=5)


def _codec_7():
    return with_header(good(1), attributes=7)


def _compression_flag_on_plain_data(codec):
    return lambda: with_header(good(3), attributes=codec)


def _compressed_lying_count():
    return sealed(record(0), 5, codec=ZSTD)


def _compressed_bad_offsets():
    return sealed(record(0) + record(3), 2, codec=LZ4)


def _compressed_trailing():
    return sealed(record(0) + b"\x00\x00\x00", 1, codec=GZIP)


def _compressed_value_overrun():
    return records.seal_batch(raw_record(b"\x00\x00\x00\x01" + zigzag_varint(90) + b"v\x00"), 1, NOW, NOW,
                              base_offset=0, compression=SNAPPY, producer_id=-1, producer_epoch=-1,
                              base_sequence=-1, partition_leader_epoch=-1, attributes=0)


def _truncated_compressed_stream():
    body = compress(ZSTD, record(0) + record(1))[:-4]
    return fix_crc(with_header(good(2), attributes=ZSTD)[:records.HEADER_SIZE] + body)


def _control_flag():
    return with_header(good(1), attributes=records.ATTR_CONTROL)


def _control_transactional():
    return with_header(good(1), attributes=records.ATTR_CONTROL | records.ATTR_TRANSACTIONAL, producer_id=7,
                       producer_epoch=0, base_sequence=0)


def _log_append_time_flag():
    return with_header(good(1), attributes=records.ATTR_LOG_APPEND_TIME)


def _unknown_attribute_bit():
    return with_header(good(1), attributes=0x0100)


def _transactional_without_producer():
    return with_header(good(1), attributes=records.ATTR_TRANSACTIONAL)


def _producer_without_sequence():
    return with_header(good(1), producer_id=42, producer_epoch=0, base_sequence=-1)


LYING = {
    "record count 1000 over one record": (_count_over_one, InvalidRecordError, INVALID_RECORD),
    "record count 2 over one record": (_count_two_over_one, InvalidRecordError, INVALID_RECORD),
    "record count 1 over two records": (_count_one_over_two, InvalidRecordError, INVALID_RECORD),
    "record count 3 over two records": (_missing_records, InvalidRecordError, INVALID_RECORD),
    "record length past the batch": (_record_length_overrun, InvalidRecordError, INVALID_RECORD),
    "record length shorter than its fields": (_record_length_short, InvalidRecordError, INVALID_RECORD),
    "key length past its record": (_key_overrun, InvalidRecordError, INVALID_RECORD),
    "value length past its record": (_value_overrun, InvalidRecordError, INVALID_RECORD),
    "negative value length": (_negative_value_length, InvalidRecordError, INVALID_RECORD),
    "negative key length": (_negative_key_length, InvalidRecordError, INVALID_RECORD),
    "header count past its record": (_header_count_overrun, InvalidRecordError, INVALID_RECORD),
    "negative header count": (_negative_header_count, InvalidRecordError, INVALID_RECORD),
    "null header key": (_null_header_key, InvalidRecordError, INVALID_RECORD),
    "header key not UTF-8": (_header_key_not_utf8, InvalidRecordError, INVALID_RECORD),
    "header value past its record": (_header_value_overrun, InvalidRecordError, INVALID_RECORD),
    "varint of six bytes": (_varint_too_long, InvalidRecordError, INVALID_RECORD),
    "offset deltas with a gap": (_offset_deltas_gap, InvalidRecordError, INVALID_RECORD),
    "offset deltas reversed": (_offset_deltas_reversed, InvalidRecordError, INVALID_RECORD),
    "offset deltas repeated": (_offset_deltas_repeated, InvalidRecordError, INVALID_RECORD),
    "bytes after the last record": (_trailing_garbage, InvalidRecordError, INVALID_RECORD),
    "unknown codec 5": (_unknown_codec, CorruptRecordError, CORRUPT_MESSAGE),
    "unknown codec 7": (_codec_7, CorruptRecordError, CORRUPT_MESSAGE),
    "gzip flag on plain data": (_compression_flag_on_plain_data(GZIP), CorruptRecordError, CORRUPT_MESSAGE),
    "snappy flag on plain data": (_compression_flag_on_plain_data(SNAPPY), CorruptRecordError, CORRUPT_MESSAGE),
    "lz4 flag on plain data": (_compression_flag_on_plain_data(LZ4), CorruptRecordError, CORRUPT_MESSAGE),
    "zstd flag on plain data": (_compression_flag_on_plain_data(ZSTD), CorruptRecordError, CORRUPT_MESSAGE),
    "zstd stream cut short": (_truncated_compressed_stream, CorruptRecordError, CORRUPT_MESSAGE),
    "zstd batch claiming 5 records over one": (_compressed_lying_count, InvalidRecordError, INVALID_RECORD),
    "lz4 batch with an offset gap inside": (_compressed_bad_offsets, InvalidRecordError, INVALID_RECORD),
    "gzip batch with bytes after its records": (_compressed_trailing, InvalidRecordError, INVALID_RECORD),
    "snappy batch with a value past its record": (_compressed_value_overrun, InvalidRecordError, INVALID_RECORD),
    "control flag from a client": (_control_flag, InvalidRecordError, INVALID_RECORD),
    "transactional control flag from a client": (_control_transactional, InvalidRecordError, INVALID_RECORD),
    "LogAppendTime flag from a producer": (_log_append_time_flag, InvalidRecordError, INVALID_RECORD),
    "attribute bit 8": (_unknown_attribute_bit, InvalidRecordError, INVALID_RECORD),
    "transactional without a producer id": (_transactional_without_producer, InvalidRecordError, INVALID_RECORD),
    "producer id without a sequence": (_producer_without_sequence, InvalidRecordError, INVALID_RECORD),
}

"""logship.records, logship.record_codec and logship.varint: record batches v2.

Golden bytes come from kafka-python's independent implementation of the same format
(kafka.record.default_records), which writes partitionLeaderEpoch 0, so the comparisons
build with partition_leader_epoch=0.
"""

from __future__ import annotations

import struct
import types

import cramjam
import kafka.codec
import pytest
import zstandard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from logship import compression, records, varint
from logship.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from logship.errors import CorruptRecordError, DecompressionLimitError, InvalidRecordError, UnsupportedCompression
from logship.records import Record, RecordInput, build_batch, build_batch_values, decode_records, iter_records

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
CODEC_IDS = [compression.CODEC_NAMES[c] for c in CODECS]
T0 = 1_764_000_000_000

MIXED = [
    RecordInput(T0, b"key", b"value", [("trace-id", b"abc"), ("unicode-\u00e9\u4e2d", None)]),
    RecordInput(T0 - 5_000, None, None, ()),
    RecordInput(T0 + 86_400_000, b"", b"", [("empty", b"")]),
    RecordInput(T0 + 1, b"\x00\xff" * 100, b"v" * 10_000, ()),
    RecordInput(T0, None, b"no key", [("a", b"1"), ("a", b"2"), ("b", None)]),
]


def as_inputs(decoded):
    return [(r.timestamp, r.key, r.value, [(k, v) for k, v in r.headers]) for r in decoded]


def normalized(inputs):
    return [(ts, k, v, [(hk, hv) for hk, hv in h]) for ts, k, v, h in inputs]


def kafka_python_batch(inputs, codec=NONE, producer=None):
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, batch_size=1 << 30)
    if producer:
        builder.set_producer_state(*producer)
    for offset, (timestamp, key, value, headers) in enumerate(inputs):
        builder.append(offset, timestamp, key, value, list(headers))
    return bytes(builder.build())


def kafka_python_read(batch):
    parsed = DefaultRecordBatch(bytes(batch))
    assert parsed.validate_crc()
    return parsed, [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in parsed]


def raw_batch(section: bytes, count: int, attributes: int = 0, base_offset: int = 0) -> bytes:
    """A batch around an arbitrary records section, header and CRC written here by hand."""
    after_crc = struct.pack(">hiqqqhii", attributes, max(count - 1, 0), T0, T0, -1, -1, -1, count) + section
    crc = records.crc32c(after_crc)
    return struct.pack(">qiibI", base_offset, 49 + len(section), -1, 2, crc) + after_crc


@pytest.fixture
def kafka_python_snappy(monkeypatch):
    """kafka-python's xerial framing over cramjam's raw snappy (python-snappy is not installed)."""
    shim = types.SimpleNamespace(
        compress=lambda data: bytes(cramjam.snappy.compress_raw(bytes(data))),
        decompress=lambda data: bytes(cramjam.snappy.decompress_raw(bytes(data))),
    )
    monkeypatch.setattr(kafka.codec, "snappy", shim)


# ---------------------------------------------------------------- varints


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, "00"), (-1, "01"), (1, "02"), (63, "7e"), (-64, "7f"), (64, "8001"),
        (8191, "fe7f"), (-8192, "ff7f"), (8192, "808001"), (300, "d804"),
        (2**31 - 1, "feffffff0f"), (-(2**31), "ffffffff0f"),
    ],
)
def test_zigzag_varint_known_encodings(value, encoded):
    assert varint.zigzag_varint(value).hex() == encoded
    assert varint.zigzag_varlong(value).hex() == encoded
    assert varint.read_varint(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)
    assert varint.size_of_varint(value) == len(encoded) // 2


def test_varlong_extremes_take_ten_bytes():
    for value in (2**63 - 1, -(2**63)):
        encoded = varint.zigzag_varlong(value)
        assert len(encoded) == 10
        assert varint.read_varlong(encoded, 0) == (value, 10)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_varint_out_of_range(value):
    with pytest.raises(ValueError):
        varint.zigzag_varint(value)
    assert varint.read_varlong(varint.zigzag_varlong(value), 0)[0] == value


def test_varlong_out_of_range():
    with pytest.raises(ValueError):
        varint.zigzag_varlong(2**63)


@pytest.mark.parametrize(
    "reader, data",
    [
        (varint.read_varint, b"\x80\x80\x80\x80\x80\x01"),  # six bytes
        (varint.read_varint, b"\xff\xff\xff\xff\x1f"),  # five bytes, 33 bits
        (varint.read_varlong, b"\x80" * 10 + b"\x01"),  # eleven bytes
        (varint.read_varlong, b"\xff" * 9 + b"\x03"),  # ten bytes, 65 bits
    ],
)
def test_overlong_varints_are_refused(reader, data):
    with pytest.raises(ValueError):
        reader(data, 0)


def test_varint_cut_short_raises_index_error():
    with pytest.raises(IndexError):
        varint.read_varint(b"\x80\x80", 0)


def test_unsigned_varint():
    assert varint.unsigned_varint(300) == b"\xac\x02"
    assert varint.read_unsigned(b"\xac\x02", 0) == (300, 2)
    with pytest.raises(ValueError):
        varint.unsigned_varint(-1)


@given(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=3))
def test_varlong_round_trip(value, prefix):
    encoded = prefix + varint.zigzag_varlong(value) + b"tail"
    assert varint.read_varlong(encoded, len(prefix)) == (value, len(encoded) - 4)
    assert varint.size_of_varint(value) == len(encoded) - 4 - len(prefix)


@given(st.integers(-(2**31), 2**31 - 1))
def test_varint_round_trip(value):
    encoded = varint.zigzag_varint(value)
    assert len(encoded) <= 5
    assert varint.read_varint(encoded, 0) == (value, len(encoded))


# ---------------------------------------------------------------- building: header fields


def test_header_fields():
    batch = build_batch(
        [(T0 + 10, b"k", b"v", ()), (T0 + 30, None, b"w", ()), (T0 - 7, None, b"x", ())],
        base_offset=1234,
        producer_id=99,
        producer_epoch=3,
        base_sequence=17,
        partition_leader_epoch=5,
        transactional=True,
    )
    header = records.parse_header(batch)
    assert header.base_offset == 1234
    assert header.size == len(batch)
    assert header.partition_leader_epoch == 5
    assert header.magic == 2
    assert header.attributes == 0x10
    assert header.is_transactional and not header.is_control and not header.log_append_time
    assert header.compression == NONE
    assert header.last_offset_delta == 2
    assert header.records_count == 3
    assert header.base_timestamp == T0 + 10
    assert header.max_timestamp == T0 + 30
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (99, 3, 17)
    assert header.crc == records.crc32c(batch[21:])
    assert records.crc_is_valid(batch, 0, len(batch))


def test_defaults_are_those_of_a_fresh_produce_batch():
    header = records.parse_header(build_batch([(T0, None, b"v", ())]))
    assert header.base_offset == 0
    assert header.partition_leader_epoch == -1
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (-1, -1, -1)
    assert header.attributes == 0


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_attribute_bits(codec):
    batch = build_batch([(T0, None, b"v", ())], compression=codec, timestamp_type_log_append=True, control=True)
    header = records.parse_header(batch)
    assert header.compression == codec
    assert header.attributes == codec | 0x08 | 0x20
    assert header.log_append_time and header.is_control


def test_base_timestamp_option():
    batch = build_batch([(T0 + 5, None, b"a", ()), (T0 + 9, None, b"b", ())], base_timestamp=T0)
    header = records.parse_header(batch)
    assert (header.base_timestamp, header.max_timestamp) == (T0, T0 + 9)
    assert [r.timestamp for r in decode_records(batch)] == [T0 + 5, T0 + 9]


def test_empty_batch_is_refused():
    with pytest.raises(InvalidRecordError):
        build_batch([])
    with pytest.raises(InvalidRecordError):
        build_batch(iter(()))
    with pytest.raises(InvalidRecordError):
        build_batch_values([], T0)


def test_unknown_codec_is_refused():
    with pytest.raises(UnsupportedCompression):
        build_batch([(T0, None, b"v", ())], compression=6)


def test_null_header_key_is_refused():
    with pytest.raises(InvalidRecordError):
        build_batch([(T0, None, b"v", [(None, b"x")])])


def test_overhead_matches_the_reference_measurements():
    # kafka-protocol.md section 3.5: 200-byte values, no key, no headers.
    value = b"v" * 200
    for count, same_time, ten_ms_apart in ((1, 270, 270), (10, 2151, 2154), (100, 20997, 21090)):
        assert len(build_batch_values([value] * count, T0)) == same_time
        assert len(build_batch([(T0 + 10 * i, None, value, ()) for i in range(count)])) == ten_ms_apart


# ---------------------------------------------------------------- accepted input forms


def test_input_forms_agree():
    expected = build_batch(MIXED)
    as_records = [Record(1000 + i, *item) for i, item in enumerate(MIXED)]
    assert build_batch(as_records) == expected
    assert build_batch(tuple(item) for item in MIXED) == expected
    assert build_batch([(t, k, v, iter(h)) for t, k, v, h in MIXED]) == expected
    as_buffers = [
        (t, None if k is None else bytearray(k), None if v is None else memoryview(v), [(hk.encode(), hv) for hk, hv in h])
        for t, k, v, h in MIXED
    ]
    assert build_batch(as_buffers) == expected


def test_records_decoded_from_one_batch_rebuild_it():
    batch = build_batch(MIXED, compression=ZSTD, producer_id=7, producer_epoch=1, base_sequence=0)
    again = build_batch(decode_records(batch), compression=ZSTD, producer_id=7, producer_epoch=1, base_sequence=0)
    assert again == batch


@pytest.mark.parametrize(
    "values",
    [
        [b"one"],
        [b"line %d" % i for i in range(1000)],
        [b""] * 70,
        [b"x" * 20_000, b"y"],
        [b"z"] * 70_000,
        [bytearray(b"buf"), memoryview(b"view"), b"bytes"],
    ],
    ids=["one", "1000", "empty values", "long value", "70000", "buffers"],
)
@pytest.mark.parametrize("codec", [NONE, ZSTD], ids=["none", "zstd"])
def test_fast_path_equals_general_path(values, codec):
    options = dict(base_offset=42, producer_id=5, producer_epoch=0, base_sequence=100, partition_leader_epoch=3)
    fast = build_batch_values(values, T0, codec, **options)
    general = build_batch([(T0, None, v, ()) for v in values], compression=codec, **options)
    assert fast == general
    decoded = decode_records(fast)
    assert [r.value for r in decoded] == [bytes(v) for v in values]
    assert [r.offset for r in decoded] == list(range(42, 42 + len(values)))
    assert {r.timestamp for r in decoded} == {T0}
    assert all(r.key is None and r.headers == () for r in decoded)


def test_fast_path_transactional():
    fast = build_batch_values([b"a", b"b"], T0, transactional=True, producer_id=1, producer_epoch=0, base_sequence=0)
    slow = build_batch([(T0, None, b"a", ()), (T0, None, b"b", ())], transactional=True, producer_id=1, producer_epoch=0, base_sequence=0)
    assert fast == slow


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize(
    "inputs",
    [
        MIXED,
        [(T0, None, b"only", ())],
        [(-1, None, b"no timestamp", ())],
        [(0, b"k", b"v", ()), (2**62, b"k", b"v", ()), (-(2**61), None, None, ())],
        [(T0 + i * 1_000_003, b"k%d" % i, b"value %d" % i, [("i", str(i).encode())]) for i in range(300)],
        [(T0, None, b"x" * 100, ())] * 10_000,
    ],
    ids=["mixed", "one", "no timestamp", "huge deltas", "300 with headers", "10000"],
)
def test_round_trip(codec, inputs):
    batch = build_batch(inputs, base_offset=1000, compression=codec)
    decoded = decode_records(batch)
    assert as_inputs(decoded) == normalized(inputs)
    assert [r.offset for r in decoded] == list(range(1000, 1000 + len(inputs)))
    header = records.parse_header(batch)
    assert header.max_timestamp == max(i[0] for i in inputs)
    assert header.base_timestamp == inputs[0][0]


def test_decoded_fields_are_bytes_and_outlive_the_buffer():
    buffer = bytearray(build_batch(MIXED))
    view = memoryview(buffer)
    decoded = decode_records(view)
    view.release()
    buffer[:] = bytes(len(buffer))
    assert as_inputs(decoded) == normalized(MIXED)
    for record in decoded:
        assert record.key is None or type(record.key) is bytes
        assert record.value is None or type(record.value) is bytes
        assert all(type(k) is str for k, _ in record.headers)


def test_record_is_a_frozen_slotted_dataclass():
    record = decode_records(build_batch(MIXED))[0]
    assert [f for f in Record.__dataclass_fields__] == ["offset", "timestamp", "key", "value", "headers"]
    assert record == Record(0, T0, b"key", b"value", (("trace-id", b"abc"), ("unicode-\u00e9\u4e2d", None)))
    assert hash(record) == hash(Record(0, T0, b"key", b"value", (("trace-id", b"abc"), ("unicode-\u00e9\u4e2d", None))))
    with pytest.raises(AttributeError):
        record.offset = 5
    assert not hasattr(record, "__dict__")


def test_log_append_time_batches_use_max_timestamp():
    batch = build_batch([(T0, None, b"a", ()), (T0 + 50, None, b"b", ())], timestamp_type_log_append=True)
    assert [r.timestamp for r in decode_records(batch)] == [T0 + 50, T0 + 50]


def test_broker_rewrites_keep_the_crc():
    batch = bytearray(build_batch(MIXED))
    records.set_base_offset(batch, 0, 5_000_000_000)
    records.set_leader_epoch(batch, 0, 9)
    decoded = decode_records(batch)
    assert [r.offset for r in decoded] == list(range(5_000_000_000, 5_000_000_000 + len(MIXED)))
    assert records.parse_header(batch).partition_leader_epoch == 9


# ---------------------------------------------------------------- golden bytes: kafka-python


GOLDEN_SETS = {
    "mixed": MIXED,
    "one": [(T0, None, b"v" * 200, ())],
    "values only": [(T0, None, b"line %d" % i, ()) for i in range(100)],
    "spread timestamps": [(T0 + 10 * i, None, b"x" * 200, ()) for i in range(100)],
    "keys and headers": [(T0 - i, b"key-%d" % i, b"v" * i, [("h%d" % j, b"x" * j) for j in range(i % 4)]) for i in range(200)],
    "varint growth": [(T0 + i * 37, None, b"y" * (i % 300), ()) for i in range(9000)],
}


@pytest.mark.parametrize("name", GOLDEN_SETS)
def test_uncompressed_bytes_equal_kafka_python(name):
    inputs = GOLDEN_SETS[name]
    assert build_batch(inputs, partition_leader_epoch=0) == kafka_python_batch(inputs)


def test_fast_path_bytes_equal_kafka_python():
    values = [b"log line number %d" % i for i in range(5000)]
    expected = kafka_python_batch([(T0, None, v, ()) for v in values])
    assert build_batch_values(values, T0, partition_leader_epoch=0) == expected


def test_idempotent_producer_fields_equal_kafka_python():
    inputs = GOLDEN_SETS["keys and headers"]
    expected = kafka_python_batch(inputs, producer=(4242, 7, 1000, True))
    ours = build_batch(
        inputs, partition_leader_epoch=0, producer_id=4242, producer_epoch=7, base_sequence=1000, transactional=True
    )
    assert ours == expected


@pytest.mark.usefixtures("kafka_python_snappy")
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("name", GOLDEN_SETS)
def test_we_read_kafka_python_batches(codec, name):
    inputs = GOLDEN_SETS[name]
    batch = kafka_python_batch(inputs, codec)
    if codec != NONE and name != "one":
        assert records.parse_header(batch).compression == codec
    assert as_inputs(decode_records(batch)) == normalized(inputs)


@pytest.mark.usefixtures("kafka_python_snappy")
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("name", GOLDEN_SETS)
def test_kafka_python_reads_our_batches(codec, name):
    inputs = GOLDEN_SETS[name]
    batch = build_batch(inputs, compression=codec, base_offset=77)
    parsed, read = kafka_python_read(batch)
    assert parsed.compression_type == codec
    assert [r[0] for r in read] == list(range(77, 77 + len(inputs)))
    assert [r[1:] for r in read] == normalized(inputs)


@pytest.mark.usefixtures("kafka_python_snappy")
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_kafka_python_reads_our_fast_path(codec):
    values = [b"line %d " % i * 3 for i in range(3000)]
    _, read = kafka_python_read(build_batch_values(values, T0, codec))
    assert [r[3] for r in read] == values


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**40), 2**40),
            st.none() | st.binary(max_size=300),
            st.none() | st.binary(max_size=300),
            st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_arbitrary_records_match_kafka_python(inputs):
    assert build_batch(inputs, partition_leader_epoch=0) == kafka_python_batch(inputs)


# ---------------------------------------------------------------- property: arbitrary records round-trip


record_inputs = st.tuples(
    st.integers(-(2**61), 2**61),  # any two differ by a delta that fits a varlong
    st.none() | st.binary(max_size=200),
    st.none() | st.binary(max_size=2000),
    st.lists(st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=50)), max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.lists(record_inputs, min_size=1, max_size=150),
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(0, 2**62),
)
def test_arbitrary_records_round_trip(inputs, codec, base_offset):
    first = inputs[0][0]
    assume(all(-(2**63) <= ts - first < 2**63 for ts, *_ in inputs))
    batch = build_batch(inputs, compression=codec, base_offset=base_offset)
    decoded = decode_records(batch)
    assert as_inputs(decoded) == normalized(inputs)
    assert [r.offset for r in decoded] == list(range(base_offset, base_offset + len(inputs)))
    assert list(iter_records(batch)) == decoded


# ---------------------------------------------------------------- corruption


def test_cut_short_or_padded_batch():
    batch = build_batch(MIXED)
    for cut in (0, 10, 60, 61, len(batch) - 1):
        with pytest.raises(CorruptRecordError):
            decode_records(batch[:cut])
    with pytest.raises(CorruptRecordError):
        decode_records(batch + b"\x00")


def test_crc_mismatch():
    batch = bytearray(build_batch(MIXED))
    batch[-1] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode_records(batch)
    decoded = decode_records(batch, validate_crc=False)
    assert decoded[-1].headers[-1] == ("b", b"")  # the flipped bit turned null (0x01) into empty (0x00)


def test_bad_magic():
    batch = bytearray(build_batch(MIXED))
    batch[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        decode_records(batch)


def _section(inputs) -> bytes:
    return build_batch(inputs)[records.HEADER_SIZE :]


def test_raw_batch_helper_matches_builder():
    inputs = [(T0, None, b"a", ()), (T0, b"k", b"b", [("h", None)])]
    assert raw_batch(_section(inputs), 2) == build_batch(inputs)


@pytest.mark.parametrize("declared", [0, 1, 3, 1000, 2**31 - 1])
def test_record_count_mismatch(declared):
    section = _section([(T0, None, b"a", ()), (T0, None, b"b", ())])
    with pytest.raises(CorruptRecordError):
        decode_records(raw_batch(section, declared))


def test_zero_records_and_no_bytes_is_an_empty_batch():
    assert decode_records(raw_batch(b"", 0)) == []


def _record(body: bytes) -> bytes:
    return varint.zigzag_varint(len(body)) + body


def _zz(*values) -> bytes:
    return b"".join(varint.zigzag_varint(v) for v in values)


@pytest.mark.parametrize(
    "section",
    [
        _record(b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(0)) + b"\x00",  # trailing byte
        _record(b"\x00" + _zz(0, 0, -2, 1) + b"a" + _zz(0)),  # key length -2
        _record(b"\x00" + _zz(0, 0, -1, -3) + _zz(0)),  # value length -3
        _record(b"\x00" + _zz(0, 0, -1, 50) + b"a" + _zz(0)),  # value runs past the record
        _record(b"\x00" + _zz(0, 0, 40, 1) + b"a" + _zz(0)),  # key runs past the record
        _record(b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(-1)),  # negative header count
        _record(b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(5)),  # more headers than bytes
        _record(b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(1, -1, -1)),  # null header key
        _record(b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(1, 2) + b"\xff\xfe" + _zz(-1)),  # bad UTF-8 key
        _record(b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(0) + b"xx"),  # record longer than its fields
        _zz(20) + b"\x00" + _zz(0, 0, -1, 1) + b"a" + _zz(0),  # record length past the end
        _zz(-5) + b"\x00" * 8,  # negative record length
        b"\x0e\x00" + b"\xff" * 11 + b"\x00" * 3,  # 11-byte timestamp varlong
        b"\x0e\x00\x00" + b"\x80" * 6 + b"\x01" + b"\x01\x00\x00",  # 7-byte offset varint
        b"\x8e",  # varint cut by the end
    ],
    ids=[
        "trailing byte", "key length -2", "value length -3", "value past record", "key past record",
        "negative header count", "too many headers", "null header key", "bad utf-8 header key",
        "record longer than fields", "record past end", "negative record length",
        "overlong varlong", "overlong varint", "cut varint",
    ],
)
def test_malformed_records(section):
    with pytest.raises(CorruptRecordError):
        decode_records(raw_batch(section, 1))


def test_well_formed_hand_made_record_decodes():
    section = _record(b"\x00" + _zz(-3, 0, -1, 1) + b"a" + _zz(1, 1) + b"h" + _zz(-1))
    assert decode_records(raw_batch(section, 1)) == [Record(0, T0 - 3, None, b"a", (("h", None),))]


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD], ids=CODEC_IDS[1:])
def test_corrupt_compressed_section(codec):
    packed = bytearray(compression.compress(codec, _section(MIXED)))
    packed[len(packed) // 2 :] = bytes(len(packed) - len(packed) // 2)
    with pytest.raises(CorruptRecordError):
        decode_records(raw_batch(bytes(packed), len(MIXED), attributes=codec))


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_unknown_codec_in_batch(codec):
    with pytest.raises(UnsupportedCompression):
        decode_records(raw_batch(b"whatever", 1, attributes=codec))


@pytest.mark.parametrize("codec", [GZIP, ZSTD, LZ4, SNAPPY], ids=CODEC_IDS[1:])
def test_decompression_bound(codec):
    batch = build_batch_values([bytes(1000)] * 5000, T0, codec)
    assert len(decode_records(batch)) == 5000
    with pytest.raises(DecompressionLimitError):
        decode_records(batch, max_uncompressed=1 << 20)
    assert records.DEFAULT_MAX_UNCOMPRESSED == 64 << 20


def test_zstd_bomb_in_a_batch():
    bomb = zstandard.ZstdCompressor().compress(bytes(200 << 20))
    with pytest.raises(DecompressionLimitError):
        decode_records(raw_batch(bomb, 1, attributes=ZSTD))


ALLOWED = (CorruptRecordError, UnsupportedCompression)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_corrupt_record_error(data):
    for candidate in (data, raw_batch(data, 3), raw_batch(data, 1, attributes=data[0] & 7 if data else 0)):
        for validate in (True, False):
            try:
                decode_records(candidate, 1 << 20, validate_crc=validate)
            except ALLOWED:
                pass


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.lists(record_inputs, min_size=1, max_size=5),
    codec=st.sampled_from(CODECS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10_000),
)
def test_mutated_batches_raise_only_corrupt_record_error(inputs, codec, edits, cut):
    batch = bytearray(build_batch(inputs, compression=codec))
    section = bytearray(batch[records.HEADER_SIZE :])
    for position, byte in edits:
        section[position % len(section)] = byte
    count = records.parse_header(batch).records_count
    for candidate in (
        raw_batch(bytes(section), count, attributes=codec),
        raw_batch(bytes(section[: cut % len(section)]), count, attributes=codec),
        raw_batch(bytes(batch[records.HEADER_SIZE :]), count + 1 + cut % 3, attributes=codec),
    ):
        try:
            decoded = decode_records(candidate, 1 << 20)
        except ALLOWED:
            continue
        assert len(decoded) == records.parse_header(candidate).records_count


# ---------------------------------------------------------------- several batches


def test_iter_records_over_a_log():
    first = bytearray(build_batch([(T0, None, b"a", ()), (T0, None, b"b", ())], compression=LZ4))
    control = bytearray(build_batch([(T0, b"\x00\x00\x00\x00", b"commit", ())], control=True, transactional=True))
    second = bytearray(build_batch_values([b"c", b"d", b"e"], T0 + 1))
    records.set_base_offset(first, 0, 10)
    records.set_base_offset(control, 0, 12)
    records.set_base_offset(second, 0, 13)
    log = bytes(first + control + second)
    got = [(r.offset, r.value) for r in iter_records(log)]
    assert got == [(10, b"a"), (11, b"b"), (13, b"c"), (14, b"d"), (15, b"e")]
    assert [r.value for r in iter_records(memoryview(log)[: len(log) - 5])] == [b"a", b"b"]
    assert [r.value for r in iter_records(log[: len(first) + 30])] == [b"a", b"b"]
    with pytest.raises(CorruptRecordError):
        list(iter_records(log[:-5], allow_truncated_tail=False))
    assert list(iter_records(b"")) == []


def test_iter_records_stops_at_a_corrupt_batch():
    batch = bytearray(build_batch_values([b"a"], T0))
    log = bytearray(build_batch_values([b"ok"], T0)) + batch
    log[-1] ^= 0xFF
    found = []
    with pytest.raises(CorruptRecordError):
        for record in iter_records(bytes(log)):
            found.append(record.value)
    assert found == [b"ok"]


def test_the_small_varint_table_matches_the_encoder():
    from logship.varint import SMALL, SMALL_LIMIT, _zigzag_bytes

    assert SMALL == tuple(_zigzag_bytes(v) for v in range(SMALL_LIMIT))

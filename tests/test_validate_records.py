"""storage/validate.py with client=True: a produced batch must hold what it claims (record_check.py).

Each lying batch of tests/lying_batches.py (valid CRC) is refused with the right error; valid
batches of every shape pass; and a hypothesis test mutates valid batches, fixes their CRC and
checks that the validator either refuses them or they decode cleanly, by logship's decoders and
kafka-python's, into exactly the records the header claims.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logship import records
from logship.client.fetched import decode
from logship.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from logship.errors import CorruptRecordError, DamagedBatchError, InvalidRecordError, LogshipError
from logship.storage.validate import validate_batches
from lying_batches import LYING, NOW, fix_crc, good, with_header

LIMIT = 1 << 20


def check(batch: bytes) -> None:
    validate_batches(bytearray(batch), LIMIT, client=True)


@pytest.mark.parametrize("name", sorted(LYING))
def test_lying_batches_are_refused(name):
    build, error, _ = LYING[name]
    batch = build()
    assert records.crc_is_valid(batch, 0, len(batch))  # the CRC is right: only the contents lie
    with pytest.raises(error) as caught:
        check(batch)
    assert type(caught.value) is error or issubclass(type(caught.value), error)
    if error is CorruptRecordError:
        assert not isinstance(caught.value, InvalidRecordError)
    assert "batch at byte 0" in str(caught.value)


@pytest.mark.parametrize("name", sorted(LYING))
def test_a_lying_batch_after_a_good_one_refuses_the_whole_request(name):
    with pytest.raises(LYING[name][1]):
        check(good(3) + LYING[name][0]())


def test_a_follower_copy_is_checked_only_for_header_and_crc():
    """Replicated batches may carry what a producer may not (control batches), as in Kafka."""
    control = records.build_batch([(NOW, b"\x00\x00\x00\x00", b"", ())], control=True, transactional=True,
                                  producer_id=3, producer_epoch=0, base_sequence=0)
    validate_batches(bytearray(control), LIMIT)
    with pytest.raises(InvalidRecordError):
        check(control)


SHAPES = {
    "one record": lambda c: records.build_batch([(NOW, None, b"x", ())], compression=c),
    "values, one timestamp": lambda c: records.build_batch_values([b"v%d" % i for i in range(300)], NOW, c),
    "values of 100 bytes": lambda c: records.build_batch_values([b"x" * 100] * 70, NOW, c),
    "spread timestamps": lambda c: records.build_batch([(NOW + i * 7, None, b"v", ()) for i in range(200)],
                                                       compression=c),
    "earlier timestamps": lambda c: records.build_batch([(NOW - i, None, b"v", ()) for i in range(90)],
                                                        compression=c),
    "keys and headers": lambda c: records.build_batch(
        [(NOW, b"k%d" % i, None if i % 3 == 0 else b"v" * i, [("h", b"1"), ("é", None)]) for i in range(80)],
        compression=c),
    "empty values": lambda c: records.build_batch([(NOW, b"", b"", ())] * 5, compression=c),
    "10000 records": lambda c: records.build_batch_values([b"%d" % i for i in range(10_000)], NOW, c),
    "large values": lambda c: records.build_batch([(NOW, None, b"z" * 20_000, ())] * 3, compression=c),
    "idempotent producer": lambda c: records.build_batch([(NOW, None, b"x", ())], compression=c, producer_id=5,
                                                         producer_epoch=0, base_sequence=0),
    "transactional producer": lambda c: records.build_batch([(NOW, None, b"x", ())], compression=c, producer_id=5,
                                                            producer_epoch=0, base_sequence=0, transactional=True),
}


@pytest.mark.parametrize("codec", [NONE, GZIP, SNAPPY, LZ4, ZSTD])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_valid_batches_of_every_shape_pass(shape, codec):
    batch = SHAPES[shape](codec)
    found = validate_batches(bytearray(batch + batch), LIMIT, client=True)
    assert len(found) == 2


def test_a_bomb_is_refused_within_the_bound():
    batch = records.build_batch_values([b"\x00" * 100_000] * 20, NOW, ZSTD)
    with pytest.raises(CorruptRecordError, match="limit"):
        validate_batches(bytearray(batch), LIMIT, client=True, max_uncompressed=1_000_000)


# ---------------------------------------------------------------- mutations


def _kafka_python_records(batch: bytes) -> list:
    from kafka.record.default_records import DefaultRecordBatch

    return [(r.offset, r.key, r.value, tuple(r.headers)) for r in DefaultRecordBatch(bytearray(batch))]


def _decoded_cleanly(batch: bytes) -> None:
    """The consumers' view of an accepted batch: exactly recordsCount records, offsets 0..n-1."""
    header = records.parse_header(batch)
    ours = records.decode_records(batch)
    assert [r.offset for r in ours] == list(range(header.records_count))
    fetched = decode(batch, "t", 0, 0, None)
    assert fetched.offsets == [r.offset for r in ours]
    assert fetched.values == [r.value for r in ours]
    if header.compression == SNAPPY:
        return  # kafka-python has no snappy library here
    theirs = _kafka_python_records(batch)
    assert [(o, k, v) for o, k, v, _ in theirs] == [(r.offset, r.key, r.value) for r in ours]


inputs = st.lists(st.tuples(st.integers(NOW - 10_000, NOW + 10_000), st.none() | st.binary(max_size=12),
                            st.none() | st.binary(max_size=80),
                            st.lists(st.tuples(st.text(max_size=4), st.none() | st.binary(max_size=6)), max_size=2)),
                  min_size=1, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=inputs, codec=st.sampled_from([NONE, NONE, GZIP, LZ4, ZSTD, SNAPPY]),
       edits=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), min_size=1, max_size=3),
       cut=st.integers(-6, 6), in_header=st.booleans())
def test_mutated_batches_are_refused_or_decode_into_what_they_claim(inputs, codec, edits, cut, in_header):
    batch = bytearray(records.build_batch(inputs, compression=codec))
    if in_header:  # attributes .. recordsCount (what the CRC covers of the header)
        for position, byte in edits:
            batch[records.CRC_START + position % (records.HEADER_SIZE - records.CRC_START)] = byte
    else:
        section = bytearray(records.decode_records.__globals__["_compression"].decompress(
            codec, batch[records.HEADER_SIZE:], LIMIT)) if codec else batch[records.HEADER_SIZE:]
        for position, byte in edits:
            section[position % len(section)] = byte
        if cut < 0:
            section = section[:cut]
        elif cut:
            section += bytes(cut)
        header = records.parse_header(batch)
        batch = bytearray(records.seal_batch(bytes(section), header.records_count, header.base_timestamp,
                                             header.max_timestamp, base_offset=0, compression=codec,
                                             producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                             partition_leader_epoch=-1, attributes=0))
    batch = fix_crc(batch)
    try:
        check(batch)
    except (CorruptRecordError, InvalidRecordError, LogshipError):
        return
    _decoded_cleanly(batch)


# ---------------------------------------------------------------- the consumer's side


def test_decode_stops_before_a_damaged_batch():
    first, second = bytearray(good(3)), bytearray(LYING["record count 1000 over one record"][0]())
    third = bytearray(good(2))
    records.set_base_offset(second, 0, 3)
    records.set_base_offset(third, 0, 1003)
    data = bytes(first + second + third)
    out = decode(data, "t", 0, 0, None, partial=True)
    assert out.offsets == [0, 1, 2] and out.values == [b"value 0", b"value 1", b"value 2"]
    assert isinstance(out.damaged, DamagedBatchError)
    assert (out.damaged.offset, out.damaged.next_offset) == (3, 1003)
    with pytest.raises(DamagedBatchError, match="offset 3 is damaged"):
        decode(data, "t", 0, 0, None)
    assert decode(data, "t", 0, 1003, None).values == [b"value 0", b"value 1"]  # skipping it reads the rest


def test_decode_drops_the_records_of_the_damaged_batch_it_had_started():
    first = bytearray(records.build_batch([(NOW, b"k", b"a", ())]))
    bad = bytearray(records.build_batch([(NOW, b"k", b"b", ()), (NOW, b"k", b"c", ())]))
    bad = bytearray(fix_crc(bad + b"\x00"))  # a byte after its records: found after they were decoded
    records.set_base_offset(bad, 0, 1)
    out = decode(bytes(first + bad), "t", 0, 0, None, partial=True)
    assert out.values == [b"a"] and out.keys == [b"k"] and out.damaged.offset == 1
    assert out.damaged.next_offset == 3


def test_a_damaged_header_still_names_the_next_batch_when_it_follows():
    first, second = bytearray(good(1)), bytearray(good(1))
    records.set_base_offset(second, 0, 1)
    broken = bytearray(with_header(first, attributes=6))  # codec 6
    out = decode(bytes(broken + second), "t", 0, 0, None, partial=True)
    assert out.values == [] and (out.damaged.offset, out.damaged.next_offset) == (0, 1)
    struct.pack_into(">i", broken, 8, 10)  # a batch length shorter than a header
    out = decode(bytes(broken + second), "t", 0, 0, None, partial=True)
    assert out.damaged.offset == 0 and "header" in str(out.damaged)


# ---------------------------------------------------------------- the common-shape check


def _section(batch: bytes) -> tuple[bytes, int]:
    return bytes(batch[records.HEADER_SIZE:]), records.parse_header(batch).records_count


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.binary(max_size=130), min_size=1, max_size=90),
       deltas=st.lists(st.integers(-70, 70), min_size=1, max_size=90),
       edits=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), max_size=2),
       cut=st.integers(-3, 3))
def test_is_simple_agrees_with_simple(values, deltas, edits, cut):
    """record_shapes.is_simple (the broker's check) says yes exactly when simple() (the consumer's
    decoder) accepts, on common-shape sections and on their mutations."""
    from logship.record_shapes import is_simple, simple

    batch = records.build_batch([(NOW + deltas[i % len(deltas)], None, v, ()) for i, v in enumerate(values)],
                                base_timestamp=NOW)
    section, count = _section(batch)
    section = bytearray(section)
    for position, byte in edits:
        section[position % len(section)] = byte
    section = bytes(section[:cut] if cut < 0 else section + bytes(cut))
    assert is_simple(section, count) == is_simple(section, count, True) == (simple(section, count) is not None)


def test_is_simple_refuses_a_record_length_written_in_two_bytes_for_one():
    from logship.record_shapes import is_simple

    section, count = _section(records.build_batch_values([b"a", b"bc", b"d"], NOW))
    assert is_simple(section, count)
    body = section[1:1 + section[0] // 2]  # the first record after its one-byte length
    padded = bytes([section[0] | 0x80, 0x00]) + section[1:]  # the same length, non-minimal
    assert body and not is_simple(padded, count)
    # a non-minimal varint is still well formed (Kafka reads it): the field-by-field walk accepts it
    batch = records.seal_batch(padded, count, NOW, NOW, base_offset=0, compression=0, producer_id=-1,
                               producer_epoch=-1, base_sequence=-1, partition_leader_epoch=-1, attributes=0)
    check(batch)
    _decoded_cleanly(batch)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.tuples(st.binary(max_size=70), st.binary(max_size=130)), min_size=1, max_size=80),
       deltas=st.lists(st.integers(-70, 70), min_size=1, max_size=80),
       edits=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), max_size=2),
       cut=st.integers(-3, 3))
def test_is_simple_keyed_accepts_only_what_the_field_by_field_walk_accepts(items, deltas, edits, cut):
    """record_shapes.is_simple_keyed says yes to keyed sections of the common shape (keys under 64
    bytes), and, on their mutations, only to sections the field-by-field walk accepts too."""
    from logship.record_check import _walk
    from logship.record_shapes import is_simple_keyed

    batch = records.build_batch([(NOW + deltas[i % len(deltas)], key, value, ())
                                 for i, (key, value) in enumerate(items)], base_timestamp=NOW)
    section, count = _section(batch)
    short_keys = all(len(key) < 64 for key, _ in items) and all(-64 <= d < 64 for d in deltas[:len(items)])
    if not edits and not cut:
        assert is_simple_keyed(section, count) == short_keys
    section = bytearray(section)
    for position, byte in edits:
        section[position % len(section)] = byte
    section = bytes(section[:cut] if cut < 0 else section + bytes(cut))
    if is_simple_keyed(section, count):
        _walk(section, count)  # raises InvalidRecordError if it does not agree


def _walk_verdict(section: bytes, count: int) -> bool:
    from logship.record_check import _walk

    try:
        _walk(section, count)
    except InvalidRecordError:
        return False
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.tuples(st.none() | st.binary(max_size=70), st.binary(max_size=130)), min_size=1,
                      max_size=90),
       deltas=st.none() | st.lists(st.integers(-70, 70), min_size=1, max_size=90),
       edits=st.lists(st.tuples(st.integers(0, 24) | st.integers(0, 100_000),
                                st.sampled_from([0x00, 0x01, 0x02, 0x7E, 0x7F, 0x80, 0x81, 0xFF])
                                | st.integers(0, 255)),
                      max_size=2),
       cut=st.integers(-3, 3), keyed=st.booleans())
def test_the_fast_paths_give_the_verdict_of_the_field_by_field_walk(items, deltas, edits, cut, keyed):
    """record_check's common-shape walks (is_simple, with and without the one-timestamp walk first,
    and is_simple_keyed) accept a section only if the field-by-field walk does, and accept the
    common shape itself; so check_section's verdict is the field-by-field walk's, on valid batches
    (one timestamp or spread, keyed or not, past 64 records and 64-byte lengths) and on their
    mutations."""
    from logship.record_check import check_section
    from logship.record_shapes import is_simple, is_simple_keyed

    keys = [key if keyed else None for key, _ in items]
    batch = records.build_batch([(NOW + (deltas[i % len(deltas)] if deltas else 0), key, value, ())
                                 for i, (key, (_, value)) in enumerate(zip(keys, items))], base_timestamp=NOW)
    section, count = _section(batch)
    if not edits and not cut:
        short_deltas = deltas is None or all(-64 <= deltas[i % len(deltas)] < 64 for i in range(count))
        assert is_simple(section, count, True) == is_simple(section, count) == (
            short_deltas and keys == [None] * count)
        if all(key is not None and len(key) < 64 for key in keys):
            assert is_simple_keyed(section, count) == short_deltas
    section = bytearray(section)
    for position, byte in edits:
        section[position % len(section)] = byte
    section = bytes(section[:cut] if cut < 0 else section + bytes(cut))
    verdict = _walk_verdict(section, count)
    simple = is_simple(section, count)
    assert is_simple(section, count, True) == simple
    assert not simple or verdict
    assert not is_simple_keyed(section, count) or verdict
    for one_time in (False, True):
        try:
            check_section(section, count, one_time)
        except InvalidRecordError:
            assert not verdict
        else:
            assert verdict


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("at", [0, 1])
def test_a_record_length_in_two_bytes_for_one_is_left_to_the_field_by_field_walk(keyed, at):
    """A non-minimal two-byte record length (which Kafka reads) finds no entry in the fast paths'
    tables: they say no, never raise, and the batch is checked field by field and accepted."""
    from logship.record_shapes import is_simple, is_simple_keyed

    section, count = _section(records.build_batch([(NOW, b"k" if keyed else None, b"abc", ())] * 2))
    start = 0 if at == 0 else 1 + section[0] // 2
    padded = section[:start] + bytes([section[start] | 0x80, 0x00]) + section[start + 1:]
    assert not is_simple(padded, count) and not is_simple(padded, count, True)
    assert not is_simple_keyed(padded, count)
    batch = records.seal_batch(padded, count, NOW, NOW, base_offset=0, compression=0, producer_id=-1,
                               producer_epoch=-1, base_sequence=-1, partition_leader_epoch=-1, attributes=0)
    check(batch)
    _decoded_cleanly(batch)


def _record_starts(section: bytes, count: int) -> list[int]:
    from logship.varint import read_varint

    starts, pos = [], 0
    for _ in range(count):
        starts.append(pos)
        length, pos = read_varint(section, pos)
        pos += length
    return starts


EDGE_SECTIONS = {
    "one timestamp": lambda: records.build_batch_values([b"v" * (i % 7) for i in range(66)] + [b"w" * 70], NOW),
    "spread timestamps": lambda: records.build_batch([(NOW + i % 5 - 2, None, b"v" * (i % 3), ())
                                                      for i in range(66)] + [(NOW, None, b"w" * 70, ())],
                                                     base_timestamp=NOW),
    "keyed": lambda: records.build_batch([(NOW + i % 3, b"k" * (i % 4), b"v" * (i % 3), ())
                                          for i in range(66)] + [(NOW, b"k" * 63, b"w" * 70, ())]),
}


@pytest.mark.parametrize("name", sorted(EDGE_SECTIONS))
def test_every_one_byte_edit_near_the_edges_gets_the_field_by_field_verdict(name):
    """Exhaustively, every value of every byte of the first two records, of records 63 to 65 (where
    offset deltas take two bytes) and of the last one (a two-byte length): the common-shape walks
    accept the edited section only if the field-by-field walk does, and check_section agrees."""
    from logship.record_check import check_section
    from logship.record_shapes import is_simple, is_simple_keyed

    section, count = _section(EDGE_SECTIONS[name]())
    assert is_simple(section, count) or is_simple_keyed(section, count)
    starts = _record_starts(section, count) + [len(section)]
    positions = [p for first, last in ((0, 2), (63, 66), (count - 1, count))
                 for p in range(starts[first], starts[last])]
    for position in positions:
        for byte in range(256):
            edited = section[:position] + bytes((byte,)) + section[position + 1:]
            verdict = _walk_verdict(edited, count)
            assert not is_simple(edited, count) or verdict, (position, byte)
            assert not is_simple(edited, count, True) or verdict, (position, byte)
            assert not is_simple_keyed(edited, count) or verdict, (position, byte)
            try:
                check_section(edited, count, True)
            except InvalidRecordError:
                assert not verdict, (position, byte)
            else:
                assert verdict, (position, byte)


@pytest.mark.parametrize("keyed, count, around", [(False, 1100, 575), (True, 700, 575), (False, 1100, 1087)])
def test_edits_where_the_checks_are_split_get_the_field_by_field_verdict(keyed, count, around):
    """A long section is checked in chunks of record_shapes._CHUNK records after the first 64: the
    section is accepted whole, and edits to the bytes around the end of a chunk (all but values)
    get the field-by-field walk's verdict."""
    from logship.record_check import check_section
    from logship.record_shapes import _CHUNK, is_simple, is_simple_keyed

    assert (around - 63) % _CHUNK == 0
    batch = records.build_batch([(NOW + i % 5, b"k" * (i % 4) if keyed else None, b"v" * (i % 80), ())
                                 for i in range(count)], base_timestamp=NOW)
    section, count = _section(batch)
    fast = is_simple_keyed if keyed else is_simple
    assert fast(section, count)
    starts = _record_starts(section, count)
    for record in range(around - 1, around + 3):
        value_at = starts[record + 1] - 1 - record % 80  # the value ends before the header count
        for position in [*range(starts[record] - 1, starts[record] + 9), value_at - 1]:
            for byte in (0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, section[position] ^ 1, section[position] ^ 2):
                edited = section[:position] + bytes((byte,)) + section[position + 1:]
                verdict = _walk_verdict(edited, count)
                assert not fast(edited, count) or verdict, (position, byte)
                try:
                    check_section(edited, count)
                except InvalidRecordError:
                    assert not verdict, (position, byte)
                else:
                    assert verdict, (position, byte)

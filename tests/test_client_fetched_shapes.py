"""The fetch decoder's fast path (fetched._simple) against records.decode_records: the common
record shape (null key, no headers, offset delta = index, one-byte timestamp delta, minimal
varints) goes through it; every other shape, well formed or not, must reach fetched._general and
decode exactly as records.decode_records does (or raise CorruptRecordError when that raises)."""

from __future__ import annotations

import random

import pytest

from logship import records
from logship.client import fetched
from logship.client.fetched import decode
from logship.errors import CorruptRecordError
from logship.records import HEADER_SIZE
from logship.varint import SMALL

NOW = 1_800_000_000_000


def _decoded(batch: bytes, start: int = 0, stop: int | None = None, check_crcs: bool = True):
    return [(r.offset, r.timestamp, r.key, r.value, r.headers)
            for r in decode(batch, "t", 0, start, stop, check_crcs=check_crcs)]


def _reference(batch: bytes, start: int = 0, stop: int | None = None, validate_crc: bool = True):
    """What decode() must give: records.decode_records' records with start <= offset < stop."""
    return [(r.offset, r.timestamp, r.key, r.value, r.headers)
            for r in records.decode_records(batch, validate_crc=validate_crc)
            if r.offset >= start and (stop is None or r.offset < stop)]


def _section(batch: bytes) -> tuple[bytes, int]:
    """The records section of an uncompressed batch and its record count."""
    return bytes(batch[HEADER_SIZE:]), records.parse_header(batch).records_count


def _seal(section: bytes, count: int, base_offset: int = 0, last_offset_delta: int | None = None) -> bytes:
    return records.seal_batch(section, count, NOW, NOW, base_offset=base_offset, compression=0, producer_id=-1,
                              producer_epoch=-1, base_sequence=-1, partition_leader_epoch=-1, attributes=0,
                              last_offset_delta=last_offset_delta)


def _record(index: int, value: bytes, *, attributes=b"\x00", timestamp=b"\x00", offset=None, key=b"\x01",
            value_length=None, headers=b"\x00", length=None) -> bytes:
    """One record by hand, each field given as its bytes (by default those of the common shape)."""
    body = (attributes + timestamp + (SMALL[index] if offset is None else offset) + key
            + (SMALL[len(value)] if value_length is None else value_length) + value + headers)
    return (SMALL[len(body)] if length is None else length) + body


def _by_hand(count: int, odd: int, last_offset_delta: int | None = None, **fields) -> bytes:
    """A batch of `count` common records but for record `odd`, made with `fields`."""
    return _seal(b"".join(_record(i, b"v%d" % i, **(fields if i == odd else {})) for i in range(count)), count,
                 last_offset_delta=last_offset_delta)


def _values(*sizes: int) -> list[bytes]:
    return [bytes([i % 251]) * size for i, size in enumerate(sizes)]


COMMON = {
    "one-byte lengths": records.build_batch_values([b"a", b"", b"bc"], NOW),
    "two-byte lengths": records.build_batch_values(_values(100, 200, 8000), NOW),
    "value sizes 0, 63, 64, 8000": records.build_batch_values(_values(0, 63, 64, 8000), NOW, base_offset=7),
    "record lengths 63 and 64": records.build_batch_values(_values(*range(50, 70), *([1] * 50), *range(50, 70)), NOW),
    "two-byte offset deltas": records.build_batch_values(_values(*range(300)), NOW, base_offset=10**9),
    "8192 records": records.build_batch_values(_values(*[5, 60, 61, 200] * 2048), NOW),
    "one-byte timestamp deltas": records.build_batch([(NOW + d, None, b"x%d" % d, ()) for d in range(-64, 64)] * 2,
                                                     base_timestamp=NOW),
    "by hand": _by_hand(70, 0),
}


@pytest.mark.parametrize("name", COMMON)
def test_common_records_take_the_fast_path(name):
    batch = COMMON[name]
    section, count = _section(batch)
    assert fetched._simple(section, count) is not None
    assert _decoded(batch) == _reference(batch)
    base = records.parse_header(batch).base_offset
    assert _decoded(batch, base + 5, base + 70) == _reference(batch, base + 5, base + 70)


def test_fast_path_gives_values_and_zigzag_timestamp_deltas():
    batch = records.build_batch([(NOW, None, b"a", ()), (NOW - 1, None, b"", ()), (NOW + 63, None, b"c" * 64, ())])
    for one_time in (False, True):  # tried as one timestamp first, it still comes out right
        values, deltas = fetched._simple(*_section(batch), one_time)
        assert values == [b"a", b"", b"c" * 64] and list(deltas) == [0, 1, 126]


def test_a_batch_of_one_timestamp_gives_no_deltas_and_an_earlier_record_is_still_seen():
    values = [b"v%d" % i for i in range(100)]
    assert fetched._simple(*_section(records.build_batch_values(values, NOW)), True) == (values, None)
    # maxTimestamp is the first record's, but another is earlier: a delta of -1
    earlier = records.build_batch([(NOW, None, b"a", ()), (NOW - 1, None, b"b", ())])
    assert records.parse_header(earlier).max_timestamp == NOW
    assert fetched._simple(*_section(earlier), True) == ([b"a", b"b"], b"\x00\x01")
    assert [r.timestamp for r in decode(earlier, "t", 0, 0, None)] == [NOW, NOW - 1]


OTHER = {
    "a key": records.build_batch([(NOW, None, b"a", ()), (NOW, b"k", b"b", ())]),
    "an empty key": records.build_batch([(NOW, b"", b"a", ())]),
    "headers": records.build_batch([(NOW, None, b"a", [("h", b"1"), ("n", None)])]),
    "a null value": records.build_batch([(NOW, None, b"a", ()), (NOW, None, None, ())]),
    "a two-byte timestamp delta": records.build_batch([(NOW, None, b"a", ()), (NOW + 64, None, b"b", ())]),
    "a negative two-byte timestamp delta": records.build_batch([(NOW, None, b"a", ()), (NOW - 65, None, b"b", ())]),
    "8193 records": records.build_batch_values([b"v"] * 8193, NOW),
    "attributes": _by_hand(3, 1, attributes=b"\x01"),
    "attributes at record 66": _by_hand(70, 66, attributes=b"\x80"),
    "an offset gap": _by_hand(3, 2, 5, offset=SMALL[5]),  # as compaction leaves them: within lastOffsetDelta
    "an offset gap at record 69": _by_hand(70, 69, 75, offset=SMALL[75]),
    "a two-byte offset delta for a one-byte one": _by_hand(3, 1, offset=b"\x82\x00"),
    "a two-byte value length for a one-byte one": _by_hand(3, 1, value_length=b"\x84\x00"),
    "a two-byte record length for a one-byte one": _by_hand(3, 2, length=b"\x90\x00"),
    "a 63-byte value with a two-byte length": _seal(_record(0, b"x" * 63, value_length=b"\xfe\x00"), 1),
}


@pytest.mark.parametrize("name", OTHER)
def test_other_records_fall_back_to_the_general_decoder(name):
    batch = OTHER[name]
    assert fetched._simple(*_section(batch)) is None
    assert fetched._simple(*_section(batch), True) is None
    assert _decoded(batch) == _reference(batch)


MALFORMED = {
    "a byte after the records": _seal(_record(0, b"a") + _record(1, b"b") + b"\x00", 2),
    "a truncated record": _seal(_record(0, b"a") + _record(1, b"bcd")[:-2], 2),
    "a count above the records": _seal(_record(0, b"a") + _record(1, b"b"), 3),
    "a count below the records": _seal(_record(0, b"a") + _record(1, b"b"), 1),
    "a record length beyond the section": _seal(_record(0, b"a") + _record(1, b"b", length=SMALL[9]), 2),
    "a record length short of its value": _seal(_record(0, b"a", length=SMALL[6]) + b"\x00" + _record(1, b"b"), 2),
    "a value length beyond its record": _seal(_record(0, b"ab", value_length=SMALL[3]) + _record(1, b"b"), 2),
    "a header count in place of the last value byte": _seal(_record(0, b"a\x01", headers=b""), 1),
    "a three-byte record length": _seal(_record(0, b"a", length=b"\x8c\x80\x00"), 1),
    "a record length shorter than the fields": _seal(_record(0, b"", length=SMALL[5]) + _record(1, b"b"), 2),
    "8192 records counted as 8193": _seal(_section(COMMON["8192 records"])[0], 8193),
    "a timestamp delta byte with its high bit set": _seal(_record(0, b"a") + _record(1, b"b", timestamp=b"\x80"), 2),
    # length -8, which the fast path used to take for 7 (the record's length) and return the record
    "a negative record length": _seal(_record(0, b"a", length=b"\x0f"), 1),
}


OFFSETS_THAT_LIE = {
    "the last record first": _seal(_record(1, b"b") + _record(0, b"a"), 2),
    "an offset delta repeated": _by_hand(70, 69, offset=SMALL[68]),
    "an offset delta past lastOffsetDelta": _by_hand(3, 2, offset=SMALL[5]),
}


@pytest.mark.parametrize("name", OFFSETS_THAT_LIE)
def test_offset_deltas_that_do_not_grow_within_the_batch_raise(name):
    """Gaps are allowed (compaction leaves them), but not offsets out of order or past the
    batch's last offset, where the next batch's records are."""
    batch = OFFSETS_THAT_LIE[name]
    assert fetched._simple(*_section(batch)) is None
    with pytest.raises(CorruptRecordError, match="offset delta"):
        decode(batch, "t", 0, 0, None)


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_records_raise(name):
    batch = MALFORMED[name]
    assert fetched._simple(*_section(batch)) is None
    assert fetched._simple(*_section(batch), True) is None
    with pytest.raises(CorruptRecordError):
        records.decode_records(batch)
    with pytest.raises(CorruptRecordError):
        decode(batch, "t", 0, 0, None)


def _outcome(batch: bytes):
    try:
        return _decoded(batch, check_crcs=False)
    except CorruptRecordError:
        return CorruptRecordError


def test_one_byte_mutations_decode_as_the_reference_or_raise():
    """One byte changed anywhere in the records: decode() gives what records.decode_records
    gives, or raises CorruptRecordError; it never makes up records."""
    rng = random.Random(5)
    sizes = [0, 1, 2, 56, 57, 58, 62, 63, 64, 65, 66, 120, 200]
    for _ in range(40):
        values = [bytes(rng.choice((0, 1, 0x7E, 0x80, 0xFF, rng.randrange(256))) for _ in range(rng.choice(sizes)))
                  for _ in range(rng.choice((1, 2, 3, 63, 64, 65, 70, 130)))]
        if rng.random() < 0.5:
            batch = records.build_batch_values(values, NOW)
        else:
            batch = records.build_batch([(NOW + rng.randrange(-70, 70), None, value, ()) for value in values],
                                        base_timestamp=NOW)
        for _ in range(25):
            mutated = bytearray(batch)
            at = rng.randrange(HEADER_SIZE, len(batch))
            mutated[at] = rng.choice((rng.randrange(256), mutated[at] ^ 1, mutated[at] ^ 0x80, 0, 1, 0x80, 0xFF))
            mutated = bytes(mutated)
            got = _outcome(mutated)
            if got is not CorruptRecordError:
                assert got == _reference(mutated, validate_crc=False), (at, mutated.hex())

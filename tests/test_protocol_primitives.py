"""Wire primitives of logship.protocol: varints, strings, bytes, records, array lengths."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logship.errors import ProtocolError
from logship.protocol import primitives as p
from logship.protocol.primitives import EncodeError, Writer


def written(write, value) -> bytes:
    out = Writer()
    write(out, value)
    return bytes(out)


def read_all(read, data: bytes):
    value, pos = read(memoryview(data), 0)
    assert pos == len(data)
    return value


@pytest.mark.parametrize("value,encoded", [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"),
                                           (300, b"\xac\x02"), (0xFFFFFFFF, b"\xff\xff\xff\xff\x0f")])
def test_uvarint_vectors(value, encoded):
    assert written(p.write_uvarint, value) == encoded
    assert read_all(p.read_uvarint, encoded) == value


@pytest.mark.parametrize("value,encoded", [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"),
                                           (64, b"\x80\x01"), (-(2 ** 31), b"\xff\xff\xff\xff\x0f")])
def test_zigzag_varint_vectors(value, encoded):
    assert written(p.write_varint, value) == encoded
    assert read_all(p.read_varint, encoded) == value


@given(st.integers(0, 0xFFFFFFFF))
def test_uvarint_round_trip(value):
    assert read_all(p.read_uvarint, written(p.write_uvarint, value)) == value


@given(st.integers(-(2 ** 31), 2 ** 31 - 1))
def test_varint_round_trip(value):
    assert read_all(p.read_varint, written(p.write_varint, value)) == value


@given(st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_varlong_round_trip(value):
    assert read_all(p.read_varlong, written(p.write_varlong, value)) == value


def test_varint_ranges():
    for write, value in ((p.write_uvarint, -1), (p.write_uvarint, 2 ** 32), (p.write_varint, 2 ** 31),
                         (p.write_varlong, 2 ** 63)):
        with pytest.raises(ProtocolError):
            written(write, value)
    with pytest.raises(ProtocolError):
        p.read_varlong(memoryview(b"\xff" * 11), 0)
    with pytest.raises(IndexError):  # a short varint: the entry points turn this into ProtocolError
        p.read_uvarint(memoryview(b"\x80"), 0)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=50)


@given(st.none() | TEXT)
def test_strings_round_trip(value):
    assert read_all(p.read_nullable_string, written(p.write_nullable_string, value)) == value
    assert read_all(p.read_compact_nullable_string, written(p.write_compact_nullable_string, value)) == value
    if value is not None:
        assert read_all(p.read_string, written(p.write_string, value)) == value
        assert read_all(p.read_compact_string, written(p.write_compact_string, value)) == value


def test_string_encodings():
    assert written(p.write_string, "hé") == b"\x00\x03h\xc3\xa9"
    assert written(p.write_nullable_string, None) == b"\xff\xff"
    assert written(p.write_compact_string, "") == b"\x01"
    assert written(p.write_compact_nullable_string, None) == b"\x00"
    for write, value in ((p.write_string, None), (p.write_string, 5), (p.write_string, "x" * 40000),
                         (p.write_compact_string, None)):
        with pytest.raises(EncodeError):
            written(write, value)
    with pytest.raises(ProtocolError):
        p.read_string(memoryview(b"\xff\xff"), 0)
    with pytest.raises(ProtocolError):
        p.read_compact_string(memoryview(b"\x00"), 0)


@given(st.none() | st.binary(max_size=100))
def test_bytes_round_trip(value):
    for read, write in ((p.read_nullable_bytes, p.write_nullable_bytes),
                        (p.read_compact_nullable_bytes, p.write_compact_nullable_bytes)):
        decoded = read_all(read, written(write, value))
        assert decoded == value and (decoded is None or type(decoded) is bytes)
    for read, write in ((p.read_records, p.write_records), (p.read_compact_records, p.write_compact_records)):
        decoded = read_all(read, written(write, value))
        assert (decoded is None and value is None) or (isinstance(decoded, memoryview) and decoded == value)


def test_bytes_accept_memoryview_and_bytearray():
    assert written(p.write_bytes, memoryview(b"abc")) == b"\x00\x00\x00\x03abc"
    assert written(p.write_compact_bytes, bytearray(b"ab")) == b"\x03ab"
    with pytest.raises(EncodeError):
        written(p.write_bytes, "text")
    with pytest.raises(EncodeError):
        written(p.write_bytes, None)


class Slice:
    def __init__(self, length):
        self.length = length


def test_spliced_records():
    out = Writer(b"head", [])
    spliced = Slice(1000)
    p.write_records(out, spliced)
    p.write_compact_records(out, spliced)
    assert bytes(out) == b"head\x00\x00\x03\xe8\xe9\x07"
    assert out.splices == [(8, spliced), (10, spliced)]
    with pytest.raises(EncodeError, match="spliced"):
        p.write_records(Writer(), spliced)
    for bad in (Slice(-1), Slice(1.5), Slice(None), object()):
        with pytest.raises(EncodeError):
            p.write_records(Writer(b"", []), bad)


def test_array_length_is_checked_against_what_is_left():
    assert p.read_array_length(memoryview(b"\x00\x00\x00\x02" + b"\x00" * 8), 0, 4) == (2, 4)
    assert p.read_array_length(memoryview(b"\xff\xff\xff\xff"), 0, 4) == (-1, 4)
    with pytest.raises(ProtocolError):
        p.read_array_length(memoryview(b"\x00\x00\x00\x03" + b"\x00" * 8), 0, 4)
    with pytest.raises(ProtocolError):
        p.read_compact_array_length(memoryview(b"\xff\xff\xff\xff\x0f" + b"\x00" * 8), 0, 1)
    assert p.read_compact_array_length(memoryview(b"\x00"), 0, 1) == (-1, 1)


def test_uuid():
    value = uuid.uuid4()
    assert read_all(p.read_uuid, written(p.write_uuid, value)) == value
    assert written(p.write_uuid, None) == b"\x00" * 16
    with pytest.raises(ProtocolError):
        p.read_uuid(memoryview(b"\x00" * 15), 0)

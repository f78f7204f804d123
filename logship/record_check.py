"""Does a records section hold what its batch header claims? Checked without decoding records.

`check_section(data, count)` returns quietly only when `data` (a batch's records
section, decompressed) holds exactly `count` records (magic 2, layout in record_codec) and:

* record i has offsetDelta i, so the offsets run 0..count-1 in order, as lastOffsetDelta says;
* every record length is at least a record's fixed part and the record ends exactly where
  its length says; nothing is left after the last record;
* every varint is well formed (at most 5 bytes, a varlong at most 10);
* key, value and header value lengths are -1 (null) or non-negative and inside the record;
  the header count is non-negative and its headers fit the record; header keys are not
  null and are UTF-8 (clients decode them as strings);
* the record attributes byte is 0: Kafka leaves it unused and ignores it, but kafka-python
  reads it as a varint, so any other value breaks that client's reading of the record.

Otherwise it raises InvalidRecordError naming the record (as Kafka's DefaultRecord reading
does). Timestamps are not checked.

Records of the common shape (record_shapes.is_simple: null key, no headers, small varints; or
is_simple_keyed: the same with keys of up to 63 bytes) are accepted by that byte-for-byte walk.
Anything else takes the field-by-field walk below, which skips over keys and values without
copying them.
"""

from __future__ import annotations

from .errors import InvalidRecordError
from .record_shapes import is_simple, is_simple_keyed
from .varint import read_varint, read_varlong

MIN_RECORD_BODY = 6
"""Bytes of the smallest record after its length varint: attributes, timestampDelta,
offsetDelta, keyLength, valueLength, headerCount, one byte each."""


def check_section(data: bytes, count: int, one_time: bool = False) -> None:
    """See above; `one_time` (the batch's maximum timestamp is its first) says which common-shape
    walk to try first, never what is accepted."""
    if count * (MIN_RECORD_BODY + 1) > len(data):
        raise InvalidRecordError(f"{count} records cannot fit in {len(data)} bytes")
    shape = _first_shape(data)
    if shape == 1 and is_simple(data, count, one_time) or shape == 2 and is_simple_keyed(data, count):
        return
    _walk(data, count)


def _first_shape(data: bytes) -> int:
    """1 if the first record has a one- or two-byte length, a one-byte timestamp delta, offset
    delta 0, a null key and no headers, as in the common shape; 2 if it has the same with a key of
    up to 63 bytes; else 0. A fast-path walk is tried only when the first record suggests it:
    otherwise it might walk the whole section to say no (records with headers, say, which differ
    from the common shape only in their last bytes)."""
    byte = data[0]
    if byte < 0x80:
        at, end = 1, 1 + (byte >> 1)
    else:
        at, end = 2, 2 + (((byte & 0x7F) | (data[1] << 7)) >> 1)
    if len(data) < max(at + 4, end) or data[end - 1] or data[at] or data[at + 1] >= 0x80 or data[at + 2]:
        return 0
    key = data[at + 3]
    return 1 if key == 1 else 2 if key < 0x80 and not key & 1 else 0


_ZIGZAG = [(b >> 1) ^ -(b & 1) for b in range(0x80)]  # one-byte varints
#: bytes a one-byte nullable length and its field take, by the length's byte: 1 for null (-1),
#: 1 + n for n >= 0; None for negative lengths other than -1 and for longer varints
_FIELD = [1 if b == 1 else (1 + (b >> 1) if not b & 1 else None) for b in range(0x80)] + [None] * 0x80


def _walk(data: bytes, count: int) -> None:
    """The field-by-field check: one-byte varints (two for the record and value lengths) are read
    with tables inline; keys and values are skipped, not copied. Positions only grow, so a field
    running past its record shows as the record's fields not ending where its length says."""
    zigzag, field = _ZIGZAG, _FIELD
    pos, end, index = 0, len(data), 0
    try:
        for index in range(count):
            byte = data[pos]
            if byte < 0x80:
                length, pos = zigzag[byte], pos + 1
            elif data[pos + 1] < 0x80:
                raw = (byte & 0x7F) | (data[pos + 1] << 7)
                length, pos = (raw >> 1) ^ -(raw & 1), pos + 2
            else:
                length, pos = read_varint(data, pos)
            stop = pos + length
            if length < MIN_RECORD_BODY or stop > end:
                raise InvalidRecordError(f"length {length} does not fit the {end - pos} bytes left")
            if data[pos]:
                raise InvalidRecordError(f"record attributes 0x{data[pos]:02x}; they must be 0")
            p = pos + 2 if data[pos + 1] < 0x80 else read_varlong(data, pos + 1)[1]  # past the timestamp
            byte = data[p]
            if byte < 0x80:
                delta, p = zigzag[byte], p + 1
            else:
                delta, p = read_varint(data, p)
            if delta != index:
                raise InvalidRecordError(f"offset delta {delta}, expected {index}")
            size = field[data[p]]  # key
            p = p + size if size is not None else _skip(data, p, stop)
            byte = data[p]  # value
            size = field[byte]
            if size is not None:
                p += size
            elif byte & 0x81 == 0x80 and data[p + 1] < 0x80:
                p += 2 + (((byte & 0x7F) | (data[p + 1] << 7)) >> 1)
            else:
                p = _skip(data, p, stop)
            if data[p] == 0:
                p += 1
            else:
                p = _skip_headers(data, p, stop)
            if p != stop:
                raise InvalidRecordError(f"its fields end at byte {p} of the section, its length says {stop}")
            pos = stop
    except InvalidRecordError as exc:
        raise InvalidRecordError(f"record {index} of {count}: {exc}") from None
    except (IndexError, ValueError) as exc:
        raise InvalidRecordError(f"record {index} of {count} is malformed: {exc or 'runs past the batch'}") from None
    if pos != end:
        raise InvalidRecordError(f"{end - pos} bytes left after the {count} records the batch claims")


def _skip(data: bytes, p: int, stop: int) -> int:
    """Past the nullable length-prefixed field at `p`, which must end by `stop`."""
    byte = data[p]
    if byte < 0x80:
        size, p = (byte >> 1) ^ -(byte & 1), p + 1
    else:
        size, p = read_varint(data, p)
    if size < 0:
        if size == -1:
            return p
        raise InvalidRecordError(f"negative length {size}")
    p += size
    if p > stop:
        raise InvalidRecordError(f"a field of {size} bytes runs past its record")
    return p


def _skip_headers(data: bytes, p: int, stop: int) -> int:
    """Past the header count at `p` and its headers, which must end by `stop`; one-byte varints
    are read with tables inline, as in _walk."""
    zigzag, field = _ZIGZAG, _FIELD
    byte = data[p]
    count, p = (zigzag[byte], p + 1) if byte < 0x80 else read_varint(data, p)
    if count < 0 or count * 2 > stop - p:
        raise InvalidRecordError(f"header count {count} does not fit its record")
    for _ in range(count):
        byte = data[p]
        size, p = (zigzag[byte], p + 1) if byte < 0x80 else read_varint(data, p)
        if size < 0:
            raise InvalidRecordError("a header key is null" if size == -1 else f"negative length {size}")
        end = p + size
        if end > stop:
            raise InvalidRecordError(f"a header key of {size} bytes runs past its record")
        try:
            data[p:end].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecordError("a header key is not UTF-8") from None
        size = field[data[end]]  # the value's length and the value
        if size is None:
            p = _skip(data, end, stop)
        else:
            p = end + size
            if p > stop:
                raise InvalidRecordError(f"a field of {size - 1} bytes runs past its record")
    return p

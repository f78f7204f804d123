"""The records inside a batch (magic 2): the Record type and the records-section codec.

logship.records owns the batch (header, CRC, compression) and is the public API; this
module encodes and decodes the bytes after the 61-byte header, once uncompressed.
Each record (varints are zig-zag, see logship.varint):

    length varint                 bytes of the record after this field
    attributes int8               unused, 0
    timestampDelta varlong        timestamp - baseTimestamp
    offsetDelta varint            offset - baseOffset
    keyLength varint, key         -1 = null key
    valueLength varint, value     -1 = null value
    headerCount varint
      headerKeyLength varint, headerKey (UTF-8, never null)
      headerValueLength varint, headerValue (-1 = null)

so a record takes at least MIN_RECORD_SIZE bytes, length prefix included.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Iterable, NamedTuple, Union

from .errors import CorruptRecordError, InvalidRecordError
from .varint import SMALL, SMALL_LIMIT, read_varint, read_varlong, zigzag_varint, zigzag_varlong

MIN_RECORD_SIZE = 7

Headers = tuple[tuple[str, Union[bytes, None]], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record: absolute offset and timestamp (ms), key, value and headers.

    `headers` is a tuple of (key, value) pairs: the key a str, the value bytes or None.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


class RecordInput(NamedTuple):
    """What build_batch takes per record; any (timestamp, key, value, headers) tuple does."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Iterable[tuple[str | bytes, bytes | None]] = ()


# ---------------------------------------------------------------- encoding


def _length_prefixed(data) -> tuple[bytes, bytes, int]:
    """(varint length, the bytes, total size) of a nullable bytes field."""
    if data is None:
        return b"\x01", b"", 1
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    prefix = SMALL[size] if size < SMALL_LIMIT else zigzag_varint(size)
    return prefix, data, len(prefix) + size


def encode_record(parts: list, offset_delta: int, timestamp_delta: int, key, value, headers) -> None:
    """Append the encoded pieces of one record, length prefix first, to `parts`.

    `key` and `value` are bytes-like or None; `headers` a sequence of (str or bytes key,
    bytes-like or None value) pairs.
    """
    head = (
        b"\x00"
        + (SMALL[timestamp_delta] if 0 <= timestamp_delta < SMALL_LIMIT else zigzag_varlong(timestamp_delta))
        + (SMALL[offset_delta] if offset_delta < SMALL_LIMIT else zigzag_varint(offset_delta))
    )
    key_prefix, key, key_size = _length_prefixed(key)
    value_prefix, value, value_size = _length_prefixed(value)
    if not headers:
        size = len(head) + key_size + value_size + 1
        parts += (zigzag_varint(size), head, key_prefix, key, value_prefix, value, b"\x00")
        return
    header_parts = [zigzag_varint(len(headers))]
    for header_key, header_value in headers:
        if isinstance(header_key, str):
            header_key = header_key.encode("utf-8")
        elif header_key is None:
            raise InvalidRecordError("a header key cannot be null")
        header_parts += _length_prefixed(header_key)[:2]
        header_parts += _length_prefixed(header_value)[:2]
    header_bytes = b"".join(header_parts)
    size = len(head) + key_size + value_size + len(header_bytes)
    parts += (zigzag_varint(size), head, key_prefix, key, value_prefix, value, header_bytes)


_FAST_TABLE_LIMIT = 1 << 16
_fast_prefixes: list[bytes] = []
#: encode_values' fast path: values shorter than this, record i's offsetDelta varint(i) is
#: 1, 2 or 3 bytes for i below these bounds (zig-zag doubles i).
_FAST_VALUE_LIMIT = SMALL_LIMIT - 16
_WIDTH_BOUNDS = (1 << 6, 1 << 13, 1 << 20)
_separators_by_width: dict[int, list[bytes]] = {}


def _offset_prefixes(count: int) -> list[bytes]:
    """Record i's bytes from attributes to the key in encode_values, for i < count:
    0x00 attributes, 0x00 timestampDelta, varint(i) offsetDelta, 0x01 null key."""
    global _fast_prefixes
    table = _fast_prefixes
    if len(table) < count:
        wanted = min(max(count, 2 * len(table), 256), _FAST_TABLE_LIMIT)
        table = table + [b"\x00\x00" + zigzag_varint(i) + b"\x01" for i in range(len(table), wanted)]
        _fast_prefixes = table
        if count > wanted:
            table = table + [b"\x00\x00" + zigzag_varint(i) + b"\x01" for i in range(wanted, count)]
    return table[:count]


def look_up(table, keys) -> tuple | list:
    """[table[k] for k in keys] for a sequence of keys, in one C call (operator.itemgetter:
    faster than a map over table.__getitem__, which calls through Python's calling
    convention for each key)."""
    if len(keys) > 1:
        return itemgetter(*keys)(table)
    return [table[key] for key in keys]  # itemgetter of one key returns the item itself


def _separators(width: int) -> list[bytes]:
    """Indexed by a value's length n < _FAST_VALUE_LIMIT: the bytes between the previous
    record's value and the offset prefix of a record whose offsetDelta varint is `width`
    bytes long: 0x00 (the previous record's header count), varint(record length), where
    the record length is 3 + width (attributes, timestampDelta, offsetDelta, null key) +
    len(varint(n)) + n + 1 (header count)."""
    table = _separators_by_width.get(width)
    if table is None:
        table = _separators_by_width[width] = [
            b"\x00" + SMALL[4 + width + len(SMALL[n]) + n] for n in range(_FAST_VALUE_LIMIT)]
    return table


def encode_values(values: list) -> bytes:
    """The records section for keyless, headerless values with timestampDelta 0.

    Byte for byte what encode_record gives for (i, 0, None, value, ()). Record i is:
    varint(length), 0x00 attributes, 0x00 timestampDelta, varint(i), 0x01 null key,
    varint(len(value)), value, 0x00 header count. Varints come from tables (the length's
    by value length and offsetDelta width) and the pieces are interleaved by slice
    assignment, so no Python code runs per record.
    """
    count = len(values)
    lengths = list(map(len, values))
    if count and count <= _WIDTH_BOUNDS[-1] and max(lengths) < _FAST_VALUE_LIMIT:
        parts = [b"\x00"] * (4 * count + 1)
        start = 0
        for width, bound in enumerate(_WIDTH_BOUNDS, 1):
            stop = min(bound, count)
            parts[4 * start : 4 * stop : 4] = look_up(_separators(width), lengths[start:stop])
            if stop == count:
                break
            start = stop
        parts[0] = parts[0][1:]
        parts[1::4] = _offset_prefixes(count)
        parts[2::4] = look_up(SMALL, lengths)
        parts[3::4] = values
        return b"".join(parts)
    parts = []
    for offset_delta, value in enumerate(values):
        encode_record(parts, offset_delta, 0, None, value, ())
    return b"".join(parts)


# ---------------------------------------------------------------- decoding


def decode_records_section(
    data: bytes, count: int, base_offset: int, base_timestamp: int, log_append_time: int | None
) -> list[Record]:
    """Decode `count` records that fill `data` exactly; CorruptRecordError otherwise.

    Timestamps are base_timestamp + delta, or `log_append_time` for every record when
    it is not None (LogAppendTime batches carry it in maxTimestamp).
    """
    if count * MIN_RECORD_SIZE > len(data):
        raise CorruptRecordError(f"{count} records cannot fit in {len(data)} bytes")
    try:
        return _decode(data, count, base_offset, base_timestamp, log_append_time)
    except (IndexError, ValueError) as exc:
        raise CorruptRecordError(f"malformed record: {exc}") from exc


_new_record = object.__new__
_set_fields = tuple(Record.__dict__[name].__set__ for name in Record.__slots__)


def _decode(data: bytes, count: int, base_offset: int, base_timestamp: int, log_append_time) -> list[Record]:
    """The loop of decode_records_section. Common varints (one byte; two for lengths) are
    decoded inline, and records are made by setting their slots directly, which costs
    half of calling the frozen dataclass's __init__."""
    set_offset, set_timestamp, set_key, set_value, set_headers = _set_fields
    records = []
    append = records.append
    pos, end = 0, len(data)
    for _ in range(count):
        byte = data[pos]
        if byte < 0x80:
            length, pos = (byte >> 1) ^ -(byte & 1), pos + 1
        elif data[pos + 1] < 0x80:
            raw = (byte & 0x7F) | (data[pos + 1] << 7)
            length, pos = (raw >> 1) ^ -(raw & 1), pos + 2
        else:
            length, pos = read_varint(data, pos)
        stop = pos + length
        if length < MIN_RECORD_SIZE - 1 or stop > end:
            raise CorruptRecordError(f"record length {length} at byte {pos} does not fit")
        byte = data[pos + 1]
        if byte < 0x80:
            timestamp_delta, pos = (byte >> 1) ^ -(byte & 1), pos + 2
        else:
            timestamp_delta, pos = read_varlong(data, pos + 1)
        byte = data[pos]
        if byte < 0x80:
            offset_delta, pos = (byte >> 1) ^ -(byte & 1), pos + 1
        else:
            offset_delta, pos = read_varint(data, pos)
        if data[pos] == 1:
            key, pos = None, pos + 1
        else:
            key, pos = _read_nullable(data, pos, stop)
        byte = data[pos]
        if byte < 0x80 and not byte & 1:
            size, pos = byte >> 1, pos + 1
        elif byte & 0x81 == 0x80 and data[pos + 1] < 0x80:
            size, pos = ((byte & 0x7F) | (data[pos + 1] << 7)) >> 1, pos + 2
        else:
            size = -1
        if size < 0:
            value, pos = _read_nullable(data, pos, stop)
        elif pos + size > stop:
            raise CorruptRecordError(f"value of {size} bytes runs past its record")
        else:
            value, pos = data[pos : pos + size], pos + size
        if data[pos] == 0:
            headers: Headers = ()
            pos += 1
        else:
            headers, pos = _read_headers(data, pos, stop)
        if pos != stop:
            raise CorruptRecordError(f"record ends at byte {pos}, its length says {stop}")
        record = _new_record(Record)
        set_offset(record, base_offset + offset_delta)
        set_timestamp(record, base_timestamp + timestamp_delta if log_append_time is None else log_append_time)
        set_key(record, key)
        set_value(record, value)
        set_headers(record, headers)
        append(record)
    if pos != end:
        raise CorruptRecordError(f"{end - pos} bytes left after {count} records")
    return records


def _read_nullable(data: bytes, pos: int, stop: int) -> tuple[bytes | None, int]:
    byte = data[pos]
    if byte < 0x80:
        length, pos = (byte >> 1) ^ -(byte & 1), pos + 1
    else:
        length, pos = read_varint(data, pos)
    if length < 0:
        if length == -1:
            return None, pos
        raise CorruptRecordError(f"negative length {length}")
    if pos + length > stop:
        raise CorruptRecordError(f"field of {length} bytes runs past its record")
    return data[pos : pos + length], pos + length


def _read_headers(data: bytes, pos: int, stop: int) -> tuple[Headers, int]:
    count, pos = read_varint(data, pos)
    if count < 0 or count * 2 > stop - pos:
        raise CorruptRecordError(f"header count {count} does not fit its record")
    headers = []
    for _ in range(count):
        key, pos = _read_nullable(data, pos, stop)
        if key is None:
            raise CorruptRecordError("null header key")
        value, pos = _read_nullable(data, pos, stop)
        headers.append((key.decode("utf-8"), value))
    return tuple(headers), pos

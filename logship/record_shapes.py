"""The common shape of a records section, recognised byte for byte without decoding it field by field.

Most batches hold records of one shape: null key, no headers, small varints, offset deltas
0..n-1, attributes 0. `simple(data, count)` walks such a section by its record lengths only,
slicing each value and reading each timestamp delta; every other byte of the section is not
read but made from tables (from the record's index and length), and the records are accepted
only if what was made is the section, byte for byte. It returns None for anything else, and
the caller then takes its general, field-by-field path. Both the consumer (client/fetched.py,
to decode) and the broker (storage/validate.py, to check a produced batch) use it: a section
`simple` accepts is a well-formed one.
"""

from __future__ import annotations

import struct
from functools import cache

from .varint import SMALL

# simple(), for records of the common shape. Record i (offset delta i) of a batch, with timestamp
# delta t and value v, has it when its bytes are
#     varint(L) 0x00 varint(t) varint(i) 0x01 varint(len(v)) v 0x00
# (length, attributes, timestamp and offset deltas, null key, value, no headers), every varint
# minimal, varint(t) one byte and varint(i) and varint(L) at most two: i and L below 8192.
# L counts the bytes after varint(L). The fields before the value length take 4 bytes, or 5 from
# record 64 on (two-byte offset deltas).
_SIMPLE_MAX = 8192
# A record length from its varint's byte, or two bytes (low and high parts): list lookups, which
# CPython runs faster than these shifts and masks.
_LENGTH_1 = [b >> 1 for b in range(0x80)]
_LENGTH_2_LOW = [(b & 0x7F) >> 1 for b in range(0x100)]  # for b >= 0x80
_LENGTH_2_HIGH = [b << 6 for b in range(0x100)]
_STAMPS = [bytes((t,)) for t in range(0x80)]  # one-byte timestamp deltas; IndexError past them


def _layout(prefix: int, heads: list) -> list:
    """For each record length L, (head, varint(value length), where the value starts counted from
    the attributes byte) of the record of the common shape of length L whose fields before the
    value length take `prefix` bytes, with heads[L] the bytes made for it before the timestamp
    delta; None for lengths no such record has: shorter than its fixed fields, or prefix + 66,
    which only a 63-byte value with a non-minimal two-byte varint fits."""
    layout: list = [None] * (prefix + 2)
    layout += [(heads[length], SMALL[length - prefix - 2], prefix + 1) for length in range(prefix + 2, prefix + 66)]
    layout.append(None)
    layout += [(heads[length], SMALL[length - prefix - 3], prefix + 2) for length in range(prefix + 67, _SIMPLE_MAX)]
    return layout


@cache
def _simple_tables() -> tuple[list, dict]:
    """(offset deltas and keys, {(one_time, prefix): layout}): the pieces of the common shape that
    simple() makes from record lengths and indexes. A head is the previous record's header count,
    varint(L) and the attributes, and for batches of one timestamp the delta 0 too. Made on first
    use: they take milliseconds, which every command's start-up would pay otherwise."""
    offsets_keys = [varint + b"\x01" for varint in SMALL[:_SIMPLE_MAX]]
    separators = [b"\x00" + varint + b"\x00" for varint in SMALL[:_SIMPLE_MAX]]
    one_time = [separator + b"\x00" for separator in separators]
    return offsets_keys, {(same, prefix): _layout(prefix, one_time if same else separators)
                          for same in (False, True) for prefix in (4, 5)}


def warm_up() -> None:
    """Build the tables of the fast path now (tens of milliseconds) rather than at the
    first batch: for a process that is to decode, while it would otherwise wait."""
    _simple_tables()


def simple(data: bytes, count: int, one_time: bool = False):
    """(values, timestamp deltas) if the `count` records filling `data` all have the common shape
    (above), else None (the caller then decodes them field by field). The deltas are a bytes object, one zig-zag
    varint byte per record, or None when they are all 0: tried first if `one_time` (the batch's
    maximum timestamp is its first).

    One Python loop follows the record lengths, slicing each value and reading its timestamp delta;
    the other fields of each record are not read but made, as the common shape has them, from its
    index and length. The records are accepted only if the encoding made so is `data`, byte for byte.
    Keys, headers, attributes, offset deltas other than the index, negative or non-minimal varints,
    a value length other than the one the record length implies, or bytes missing or left over all
    make it differ. A timestamp delta of two bytes or a record length that the common shape does not
    have (see _layout) stop the loop with IndexError or TypeError, as reading past `data` does.
    """
    if not 0 < count <= _SIMPLE_MAX:
        return None
    offsets_keys, layouts = _simple_tables()
    if one_time:
        parts = _made(data, count, offsets_keys, layouts, True)
        if parts is not None:
            return parts[3::4], None
    parts = _made(data, count, offsets_keys, layouts, False)
    return None if parts is None else (parts[4::5], b"".join(parts[1::5]))


def _made(data: bytes, count: int, offsets_keys: list, layouts: dict, one_time: bool) -> list | None:
    """The pieces made by walking `data` (by _walk_one_time or _walk), if they make `data` again."""
    walk = _walk_one_time if one_time else _walk
    parts: list = []
    try:
        pos = walk(data, 0, offsets_keys[:min(count, 64)], layouts[(one_time, 4)], parts)
        if count > 64:
            walk(data, pos, offsets_keys[64:count], layouts[(one_time, 5)], parts)
    except (IndexError, TypeError):
        return None
    parts[0] = parts[0][1:]  # no header count before the first record
    parts.append(b"\x00")  # the last record's
    return parts if b"".join(parts) == data else None


def _walk(data: bytes, pos: int, offsets_keys: list, layout: list, parts: list) -> int:
    """Add to `parts` the pieces of the records from `pos` on, one per item of `offsets_keys`, as the
    common shape (with `layout`) has them; return where the last one ends."""
    length_1, length_2_low, length_2_high, stamps = _LENGTH_1, _LENGTH_2_LOW, _LENGTH_2_HIGH, _STAMPS
    for offset_key in offsets_keys:
        byte = data[pos]
        if byte < 0x80:
            start, length = pos + 1, length_1[byte]
        else:
            start, length = pos + 2, length_2_low[byte] + length_2_high[data[pos + 1]]
        pos = start + length
        head, varint, value_start = layout[length]
        parts += (head, stamps[data[start + 1]], offset_key, varint, data[start + value_start:pos - 1])
    return pos


def _walk_one_time(data: bytes, pos: int, offsets_keys: list, layout: list, parts: list) -> int:
    """_walk for records whose timestamp deltas are all 0, made as part of each head (one piece
    fewer per record: this is the loop `logship consume` spends most of its time in)."""
    length_1, length_2_low, length_2_high = _LENGTH_1, _LENGTH_2_LOW, _LENGTH_2_HIGH
    for offset_key in offsets_keys:
        byte = data[pos]
        if byte < 0x80:
            start, length = pos + 1, length_1[byte]
        else:
            start, length = pos + 2, length_2_low[byte] + length_2_high[data[pos + 1]]
        pos = start + length
        head, varint, value_start = layout[length]
        parts += (head, offset_key, varint, data[start + value_start:pos - 1])
    return pos


# is_simple() and is_simple_keyed(), the broker's checks: whether a section has the common shape,
# answered without slicing values or making the section again. A record is looked up in tables by
# the byte or two of its record length varint, which give the bytes of the gap before its value as
# the common shape has them (the previous record's header count, varint(L), attributes, timestamp
# delta, offset delta, null key or key length, varint(value length)) and a struct format piece that
# reads the same gap from the section and skips the value ("9s120x"). After the walk of a chunk of
# records (see _chunks_agree), one struct format reads all their gaps at once (one C call, where a
# slice per record cost more than the rest of the walk), and the section has the shape only if the
# gaps read, joined, are the gaps made, joined. Every gap made is as long as the gap read for it
# (both come from one table entry), so the joined gaps are equal only if each gap is; the values
# are then exactly where the record lengths put them. A record length written in more bytes than
# it needs, or negative, has no table entry, and the walk stops with TypeError or IndexError, as
# reading past the section does.
_TWO_BYTES = 0x80 + (0x80 << 7)  # long tables are indexed by byte + (next byte << 7), byte >= 0x80
_CHUNK = 512  # records checked at a time after the first 64 (see _chunks_agree)


def _by_varint(entries: dict) -> tuple[list, list]:
    """(short, long): `entries` {record length: entry} indexed by the bytes of varint(length),
    short[byte] for one-byte varints, long[byte + (next << 7)] for two-byte ones; None elsewhere."""
    short: list = [None] * 0x80
    long: list = [None] * _TWO_BYTES
    for length, entry in entries.items():
        varint = SMALL[length]
        if len(varint) == 1:
            short[varint[0]] = entry
        else:
            long[varint[0] + (varint[1] << 7)] = entry
    return short, long


@cache
def _check_tables() -> tuple[list, dict]:
    """(offset deltas and null keys, {(one_time, prefix): (short, long)}) for is_simple(): per
    record length L of the common shape (see _layout) whose fields before the value length take
    `prefix` bytes, the entry (gap head, varint(value length), format piece, bytes of the record
    with its length varint).
    The head is the previous record's header count, varint(L) and the attributes, and for batches of
    one timestamp the delta 0 too. Made on first use (tens of milliseconds, a few megabytes)."""
    tables = {}
    for prefix in (4, 5):
        shapes = {}
        for length in range(prefix + 2, _SIMPLE_MAX):
            if length == prefix + 66:
                continue  # only a 63-byte value with a non-minimal two-byte varint fits
            value_varint = SMALL[length - prefix - (2 if length < prefix + 66 else 3)]
            width = len(SMALL[length])
            value_length = length - prefix - len(value_varint) - 1
            shapes[length] = (value_varint, f"{1 + width + prefix + len(value_varint)}s{value_length}x",
                              width + length)
        for one_time in (False, True):
            tail = b"\x00\x00" if one_time else b"\x00"
            tables[(one_time, prefix)] = _by_varint({length: (b"\x00" + SMALL[length] + tail, *shape)
                                                     for length, shape in shapes.items()})
    return [varint + b"\x01" for varint in SMALL[:_SIMPLE_MAX]], tables


def is_simple(data: bytes, count: int, one_time: bool = False) -> bool:
    """Whether the `count` records filling `data` all have the common shape: what simple() says,
    for a caller that wants only the answer (the broker, checking a produced batch), and cheaper.
    `one_time` (the batch's maximum timestamp is its first) only says which walk to try first:
    the one for timestamp deltas all 0, which makes each record's delta as part of its head."""
    if not 0 < count <= _SIMPLE_MAX:
        return False
    if one_time and _gaps_agree(data, count, _gaps_one_time, True):
        return True
    return _gaps_agree(data, count, _gaps, False)


def _gaps_agree(data: bytes, count: int, walk, one_time: bool) -> bool:
    """Whether the gaps `walk` makes for the records of `data` are those the section has."""
    offsets_keys, tables = _check_tables()
    return _chunks_agree(data, count, lambda pos, first, end, made, formats: walk(
        data, pos, offsets_keys[first:end], *tables[(one_time, 4 if first < 64 else 5)], made, formats))


def _chunks_agree(data: bytes, count: int, walk) -> bool:
    """Whether every chunk of records (the 64 whose offset deltas take one byte, then _CHUNK at a
    time) has the gaps that `walk(pos, first, end, made, formats)` makes for records first..end-1
    from `pos` on, returning where they end. Chunks keep the lists and the struct of a check small
    (a struct for thousands of records would take hundreds of kilobytes, which malloc maps and
    unmaps for every batch) and let a section that differs early stop early."""
    pos = 0
    for first in (0, *range(64, count, _CHUNK)):
        end = min(count, 64 if first == 0 else first + _CHUNK)
        made: list = []
        formats: list = []
        start = pos
        try:
            pos = walk(pos, first, end, made, formats)
        except (IndexError, TypeError):
            return False
        if pos != len(data) if end == count else pos >= len(data):
            return False
        if not _joined_gaps_equal(data, made, formats, start, end == count):
            return False
    return True


def _joined_gaps_equal(data: bytes, made: list, formats: list, start: int, last: bool) -> bool:
    """Whether the gaps made for the records from `start` on are those that the format pieces read
    from `data` (in struct's standard mode: no padding), from the header count of the record
    before. The first record has no header count before it; the last one's ends the section."""
    if start:
        start -= 1
    else:
        made[0] = made[0][1:]
        count, rest = formats[0].split("s", 1)
        formats[0] = f"{int(count) - 1}s{rest}"
    if last:
        made.append(b"\x00")
        formats.append("s")
    return b"".join(made) == b"".join(struct.Struct("<" + "".join(formats)).unpack_from(data, start))


def _gaps(data: bytes, pos: int, offsets_keys: list, short: list, long: list, made: list, formats: list) -> int:
    """Add to `made` the gaps before the values of the records from `pos` on (one per item of
    `offsets_keys`) as the common shape has them, and to `formats` the pieces that read them;
    return where the last record ends."""
    stamps = _STAMPS
    for offset_key in offsets_keys:
        byte = data[pos]
        if byte < 0x80:
            head, varint, piece, size = short[byte]
            stamp = stamps[data[pos + 2]]
        else:
            head, varint, piece, size = long[byte + (data[pos + 1] << 7)]
            stamp = stamps[data[pos + 3]]
        made += (head, stamp, offset_key, varint)
        formats.append(piece)
        pos += size
    return pos


def _gaps_one_time(data: bytes, pos: int, offsets_keys: list, short: list, long: list, made: list,
                   formats: list) -> int:
    """_gaps for records whose timestamp deltas are all 0, made as part of each head."""
    for offset_key in offsets_keys:
        byte = data[pos]
        if byte < 0x80:
            head, varint, piece, size = short[byte]
        else:
            head, varint, piece, size = long[byte + (data[pos + 1] << 7)]
        made += (head, offset_key, varint)
        formats.append(piece)
        pos += size
    return pos


# is_simple_keyed(), for the common shape with a key of 0 to 63 bytes:
#     varint(L) 0x00 varint(t) varint(i) varint(len(k)) k varint(len(v)) v 0x00
# with the same bounds as above. A record's gaps are the bytes from the previous record's header
# count to the offset delta, and varint(len(v)); the key length's byte is checked by table (a key
# length piece skips it and the key) and the value is skipped.
_REST_BASE = 128  # rests are looked up at r + this, so that r < 0 (a key longer than its record) finds None


@cache
def _keyed_tables() -> tuple[list, list, dict, list]:
    """(short, long, keys, rests) for is_simple_keyed():
    short and long (by the bytes of varint(L), see _by_varint): (head, bytes of the record with
    varint(L)), the head being the previous record's header count, varint(L) and the attributes;
    keys {(width of varint(L), width of the offset delta): by the key length's byte,
    (_REST_BASE - bytes before the key - key length, so that the record's size plus this is where
    its rest is in rests; format piece reading the gap before the key and skipping it and the key)};
    rests, for each number r of bytes after the key, at r + _REST_BASE: (varint(value length),
    format piece reading it and skipping the value) of the record whose value length varint,
    value and header count take r bytes; None where none does minimally."""
    short, long = _by_varint({length: (b"\x00" + SMALL[length] + b"\x00", len(SMALL[length]) + length)
                              for length in range(_SIMPLE_MAX)})
    keys = {}
    for width in (1, 2):
        for offset_width in (1, 2):
            gap = 1 + width + 2 + offset_width  # header count, varint(L), attributes, timestamp and offset deltas
            keys[(width, offset_width)] = [(_REST_BASE - gap - (byte >> 1), f"{gap}s{1 + (byte >> 1)}x")
                                           if not byte & 1 else None for byte in range(0x80)]
    rests: list = [None] * (_REST_BASE + _SIMPLE_MAX + 3)
    for size in range(0, _SIMPLE_MAX):
        varint = SMALL[size]
        rests[_REST_BASE + len(varint) + size + 1] = (varint, f"{len(varint)}s{size}x")
    return short, long, keys, rests


def is_simple_keyed(data: bytes, count: int) -> bool:
    """Whether the `count` records filling `data` all have the common shape with a short key
    (above), compared as is_simple() compares: only the bytes between the variable fields."""
    if not 0 < count <= _SIMPLE_MAX:
        return False
    short, long, keys, rests = _keyed_tables()
    return _chunks_agree(data, count, lambda pos, first, end, made, formats: _keyed_gaps(
        data, pos, SMALL[first:end], 1 if first < 64 else 2, short, long, keys, rests, made, formats))


def _keyed_gaps(data: bytes, pos: int, offsets, width: int, short: list, long: list, keys: dict, rests: list,
                made: list, formats: list) -> int:
    """_gaps for keyed records whose offset delta varints are `width` bytes long."""
    stamps = _STAMPS
    keys_1, keys_2 = keys[(1, width)], keys[(2, width)]
    key_at_1 = 3 + width  # the key length's byte: after varint(L), attributes, timestamp and offset deltas
    key_at_2 = key_at_1 + 1
    for offset in offsets:
        byte = data[pos]
        if byte < 0x80:
            head, size = short[byte]
            rest_at, key_piece = keys_1[data[pos + key_at_1]]
            varint, rest_piece = rests[size + rest_at]
            stamp = stamps[data[pos + 2]]
        else:
            head, size = long[byte + (data[pos + 1] << 7)]
            rest_at, key_piece = keys_2[data[pos + key_at_2]]
            varint, rest_piece = rests[size + rest_at]
            stamp = stamps[data[pos + 3]]
        made += (head, stamp, offset, varint)
        formats += (key_piece, rest_piece)
        pos += size
    return pos

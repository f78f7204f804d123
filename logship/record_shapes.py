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


@cache
def _check_tables() -> dict:
    """{prefix: (layout for one-byte record lengths, layout for two-byte ones)} for is_simple():
    _layout's entries with the separators as heads, split by the width of varint(L), so that a
    record length written in more bytes than it needs finds no entry."""
    separators = [b"\x00" + varint + b"\x00" for varint in SMALL[:_SIMPLE_MAX]]
    tables = {}
    for prefix in (4, 5):
        layout = _layout(prefix, separators)
        tables[prefix] = (layout[:0x40], [None] * 0x40 + layout[0x40:])
    return tables


def is_simple(data: bytes, count: int) -> bool:
    """Whether the `count` records filling `data` all have the common shape: what simple() says,
    for a caller that wants only the answer (the broker, checking a produced batch), and cheaper.

    It walks the records as simple() does but neither slices values nor joins them: it compares
    only the bytes between one value and the next (previous header count, varint(L), attributes,
    timestamp delta, offset delta, null key, varint(value length)), as made from tables, with
    those of `data`. Each such gap made has the length of the gap read (a varint(L) of a width
    other than its minimal one finds no layout entry), so the joined gaps are equal only if every
    gap is; the values between them are then exactly where the record lengths put them.
    """
    if not 0 < count <= _SIMPLE_MAX:
        return False
    offsets_keys, _ = _simple_tables()
    tables = _check_tables()
    made: list = []
    read: list = []
    try:
        pos, last = _gaps(data, 0, 0, offsets_keys[:min(count, 64)], *tables[4], made, read)
        if count > 64:
            pos, last = _gaps(data, pos, last, offsets_keys[64:count], *tables[5], made, read)
    except (IndexError, TypeError):
        return False
    if pos != len(data):
        return False
    made[0] = made[0][1:]  # no header count before the first record
    made.append(b"\x00")  # the last record's
    read.append(data[last:pos])
    return b"".join(made) == b"".join(read)


def _gaps(data: bytes, pos: int, last: int, offsets_keys: list, short: list, long: list, made: list,
          read: list) -> tuple[int, int]:
    """Add to `made` the pieces of the gaps before the values of the records from `pos` on (one per
    item of `offsets_keys`) and to `read` the same gaps as `data` has them; return where the last
    record ends and where its header count is."""
    length_1, length_2_low, length_2_high, stamps = _LENGTH_1, _LENGTH_2_LOW, _LENGTH_2_HIGH, _STAMPS
    for offset_key in offsets_keys:
        byte = data[pos]
        if byte < 0x80:
            start = pos + 1
            length = length_1[byte]
            head, varint, value_start = short[length]
        else:
            start = pos + 2
            length = length_2_low[byte] + length_2_high[data[pos + 1]]
            head, varint, value_start = long[length]
        made += (head, stamps[data[start + 1]], offset_key, varint)
        read.append(data[last:start + value_start])
        pos = start + length
        last = pos - 1
    return pos, last


# is_simple_keyed(), for the common shape with a key of 0 to 63 bytes:
#     varint(L) 0x00 varint(t) varint(i) varint(len(k)) k varint(len(v)) v 0x00
# with the same bounds as above. The gaps compared are the bytes from the previous record's header
# count to the key length (whose one byte is checked by table), and varint(len(v)).
_KEY_LENGTHS = [b >> 1 if b < 0x80 and not b & 1 else None for b in range(0x100)]
_REST_BASE = 128  # rests are looked up at r + this, so that r < 0 (a key longer than its record) finds None


@cache
def _keyed_tables() -> tuple[list, list, list]:
    """(heads of records with a one-byte varint(L), heads of those with a two-byte one, and for
    each number r of bytes after the key, at r + _REST_BASE: varint(value length) of the record whose value length
    varint, value and header count take r bytes; None where none does minimally)."""
    heads = [b"\x00" + varint + b"\x00" for varint in SMALL[:_SIMPLE_MAX]]
    rests: list = [None] * (_SIMPLE_MAX + 3)
    for size in range(0, _SIMPLE_MAX):
        varint = SMALL[size]
        rests[len(varint) + size + 1] = varint
    rests[66] = None  # a 63-byte value with a two-byte varint: not minimal
    return heads[:0x40], [None] * 0x40 + heads[0x40:], [None] * _REST_BASE + rests


def is_simple_keyed(data: bytes, count: int) -> bool:
    """Whether the `count` records filling `data` all have the common shape with a short key
    (above), compared as is_simple() compares: only the bytes between the variable fields."""
    if not 0 < count <= _SIMPLE_MAX:
        return False
    short, long, rests = _keyed_tables()
    offsets = SMALL
    made: list = []
    read: list = []
    try:
        pos, last = _keyed_gaps(data, 0, 0, offsets[:min(count, 64)], 1, short, long, rests, made, read)
        if count > 64:
            pos, last = _keyed_gaps(data, pos, last, offsets[64:count], 2, short, long, rests, made, read)
    except (IndexError, TypeError):
        return False
    if pos != len(data):
        return False
    made[0] = made[0][1:]
    made.append(b"\x00")
    read.append(data[last:pos])
    return b"".join(made) == b"".join(read)


def _keyed_gaps(data: bytes, pos: int, last: int, offsets, width: int, short: list, long: list, rests: list,
                made: list, read: list) -> tuple[int, int]:
    """_gaps for keyed records whose offset delta varints are `width` bytes long."""
    length_1, length_2_low, length_2_high, stamps, key_lengths = (
        _LENGTH_1, _LENGTH_2_LOW, _LENGTH_2_HIGH, _STAMPS, _KEY_LENGTHS)
    fixed = 3 + width  # attributes, timestamp delta, offset delta, key length
    rest_base = _REST_BASE - fixed
    for offset in offsets:
        byte = data[pos]
        if byte < 0x80:
            start = pos + 1
            length = length_1[byte]
            head = short[length]
        else:
            start = pos + 2
            length = length_2_low[byte] + length_2_high[data[pos + 1]]
            head = long[length]
        key_at = start + fixed
        key_length = key_lengths[data[key_at - 1]]
        varint = rests[length + rest_base - key_length]
        made += (head, stamps[data[start + 1]], offset, varint)
        key_end = key_at + key_length
        read += (data[last:key_at - 1], data[key_end:key_end + len(varint)])
        pos = start + length
        last = pos - 1
    return pos, last

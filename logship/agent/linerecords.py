"""Lines of one file as Kafka records (the records section of a batch, magic 2).

Every record of a file has the same key and the same headers but one:

    key        the input's key template rendered for the file, or null
    value      the line without its line ending: the bytes as read (encoding "utf-8",
               not decoded), or the line decoded from UTF-16 and encoded as UTF-8
    headers    host, path, the input's fields..., [truncated=true], offset

where `offset` is the decimal byte offset of the line in the file. So a `RecordTemplate`
holds the bytes that are the same for every record of a file, and `encode()` builds the
records of a whole chunk of lines with slice assignments and maps over lookup tables:
no Python code runs per line in the common case (lines shorter than 16 KiB). That is what
lets one Python thread frame lines faster than the broker can take them (see
reference/agents.md §5); a per-record loop would cost several times more.

Record i of a batch (see logship/record_codec.py for the layout):

    varint length | 0x00 attributes | 0x00 timestampDelta | varint offsetDelta |
    key | varint valueLength | value | varint headerCount | headers... |
    varint(6) "offset" varint(len) "<decimal offset>"
"""

from __future__ import annotations

from bisect import bisect_left
from operator import add

from ..record_codec import look_up
from ..varint import SMALL, SMALL_LIMIT, zigzag_varint

__all__ = ["RecordTemplate", "encode"]

_OFFSET_KEY = SMALL[6] + b"offset"
_TRUNCATED = SMALL[9] + b"truncated" + SMALL[4] + b"true"
# Below this value length, a record's length (value + headers, a few hundred bytes at most
# besides the value) still fits the precomputed varint table.
_FAST_VALUE_LIMIT = SMALL_LIMIT - 4096
_VALUE_FIELD = [len(SMALL[n]) + n for n in range(_FAST_VALUE_LIMIT)]  # bytes of varint(n) + n
_POWERS = [10 ** d for d in range(1, 20)]
_delta_prefixes: list[bytes] = []


def _deltas(start: int, count: int) -> list[bytes]:
    """attributes, timestampDelta and offsetDelta of records start..start+count-1."""
    global _delta_prefixes
    table = _delta_prefixes
    if len(table) < start + count:
        wanted = max(start + count, 2 * len(table), 1024)
        table = table + [b"\x00\x00" + zigzag_varint(i) for i in range(len(table), wanted)]
        _delta_prefixes = table
    return table[start:start + count]


def _header(name: bytes, value: bytes) -> bytes:
    return zigzag_varint(len(name)) + name + zigzag_varint(len(value)) + value


class RecordTemplate:
    """The bytes every record of one file shares: key and headers but the offset."""

    __slots__ = ("key", "headers", "plain", "truncated", "fixed")

    def __init__(self, key: bytes | None, headers: list[tuple[str, bytes]]):
        self.key = b"\x01" if key is None else zigzag_varint(len(key)) + key
        self.headers = tuple(headers)
        common = b"".join(_header(name.encode("utf-8"), value) for name, value in headers)
        self.plain = zigzag_varint(len(headers) + 1) + common + _OFFSET_KEY
        self.truncated = zigzag_varint(len(headers) + 2) + common + _TRUNCATED + _OFFSET_KEY
        # bytes of a record besides offsetDelta, value field and offset field
        self.fixed = len(self.key) + len(self.plain)


def _offset_fields(starts: list) -> tuple[list, list]:
    """(varint(len(decimal)) + decimal of each offset, their lengths)."""
    fields: list = []
    sizes: list = []
    index, count = 0, len(starts)
    while index < count:
        first = starts[index]
        digits = len(str(first))
        stop = bisect_left(starts, _POWERS[digits - 1], index) if digits <= len(_POWERS) else count
        fields += map((SMALL[digits] + b"%d").__mod__, starts[index:stop])
        sizes += [digits + 1] * (stop - index)
        index = stop
    return fields, sizes


def encode(values: list, starts: list, truncated: list, first_delta: int,
           template: RecordTemplate) -> bytes:
    """The records of `values` (lines starting at file offsets `starts`, in increasing
    order), numbered from offsetDelta `first_delta`; `truncated` lists the indices of the
    values to flag as truncated."""
    count = len(values)
    if not count:
        return b""
    lengths = list(map(len, values))
    deltas = _deltas(first_delta, count)
    offsets, offset_sizes = _offset_fields(starts)
    fast = max(lengths) < _FAST_VALUE_LIMIT
    if fast:
        value_fields = look_up(_VALUE_FIELD, lengths)
        value_prefixes = look_up(SMALL, lengths)
    else:
        value_prefixes = list(map(zigzag_varint, lengths))
        value_fields = list(map(add, map(len, value_prefixes), lengths))
    sizes = list(map(template.fixed.__add__, map(add, map(add, map(len, deltas), value_fields), offset_sizes)))
    headers = [template.plain] * count
    if truncated:
        extra = len(template.truncated) - len(template.plain)
        for index in truncated:
            headers[index] = template.truncated
            sizes[index] += extra
    if max(sizes) < SMALL_LIMIT:
        prefixes = look_up(SMALL, sizes)
    else:
        prefixes = list(map(zigzag_varint, sizes))
    parts = [template.key] * (7 * count)
    parts[0::7] = prefixes
    parts[1::7] = deltas
    parts[3::7] = value_prefixes
    parts[4::7] = values
    parts[5::7] = headers
    parts[6::7] = offsets
    return b"".join(parts)

"""Decoding a Fetch response's records, leanly, into PartitionRecords.

This is the consumer's hot loop, so it decodes straight from the response (a memoryview
of the frame) into columns (offsets, timestamps, keys, values, headers) of a
`PartitionRecords`, without the intermediate Record objects of logship.records and
without one object per record: records become ConsumedRecord tuples only when someone
iterates, one at a time (so they die young and the cyclic GC never has to look at them;
a list of a million namedtuples costs the GC far more than decoding them), and a caller
that wants only values (`%v`) takes `.values` and makes no per-record object at all.
Common records (null key, no headers, small varints) take a loop that only slices values
and reads timestamp deltas, and are checked all at once: their encoding, made from tables, must
be the data (_simple). It follows records.iter_records in what it accepts:
- batches start where the broker's byte range starts, so records below the requested
  offset (inside the first batch) are skipped, and so are those at or past `stop`;
- a truncated last batch (cut at the byte limit) is ignored: the next fetch starts at the
  offset after the last whole batch, which is what `scan` returns;
- control batches (attributes bit 5) are skipped, but still advance the position;
- with `aborted` (read_committed), transactional batches of aborted transactions are
  skipped (Kafka's algorithm over the response's aborted_transactions list).
Anything malformed raises CorruptRecordError; a compressed batch is inflated with a bound.
"""

from __future__ import annotations

import struct
from functools import cache
from itertools import repeat
from typing import NamedTuple

from ..compression import decompress
from ..errors import CorruptRecordError
from ..record_codec import look_up
from ..records import DEFAULT_MAX_UNCOMPRESSED, HEADER_SIZE, crc32c
from ..varint import SMALL, read_varint, read_varlong

__all__ = ["ConsumedRecord", "PartitionRecords", "scan", "decode"]

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_LENGTH = struct.Struct(">qi")
_LOG_OVERHEAD = 12
_MIN_RECORD = 7


class ConsumedRecord(NamedTuple):
    """One record as a consumer returns it; `headers` is a tuple of (str, bytes | None)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()


_new = tuple.__new__


class PartitionRecords:
    """Consecutive records of one partition, in offset order, as columns.

    `offsets`, `timestamps` and `values` are lists; `keys` and `headers` are None when every
    record has a null key / no headers (else lists). Iterating yields ConsumedRecords.
    `next_offset` is where the partition's next records start (the fetch position after
    these, which may be past the last record's offset + 1 because of control batches).
    """

    __slots__ = ("topic", "partition", "offsets", "timestamps", "keys", "values", "headers", "next_offset")

    def __init__(self, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.offsets: list[int] = []
        self.timestamps: list[int] = []
        self.keys: list | None = None
        self.values: list = []
        self.headers: list | None = None
        self.next_offset = -1

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        return map(_new, repeat(ConsumedRecord), zip(
            repeat(self.topic), repeat(self.partition), self.offsets, self.timestamps,
            repeat(None) if self.keys is None else self.keys, self.values,
            repeat(()) if self.headers is None else self.headers))

    def __repr__(self) -> str:
        span = f"{self.offsets[0]}..{self.offsets[-1]}" if self.offsets else "empty"
        return f"<PartitionRecords {self.topic}-{self.partition} {span}>"


def scan(buf, position: int) -> tuple[int, int]:
    """(next fetch offset, bytes of whole batches) for records data fetched at `position`.
    Only batch headers are read: cheap enough to send the next fetch before decoding."""
    pos, end, next_offset = 0, len(buf), position
    while end - pos >= HEADER_SIZE:
        base_offset, length = _OFFSET_LENGTH.unpack_from(buf, pos)
        if length < HEADER_SIZE - _LOG_OVERHEAD:
            raise CorruptRecordError(f"batch length {length} at byte {pos} is shorter than a header")
        size = length + _LOG_OVERHEAD
        if pos + size > end:
            break
        last = base_offset + struct.unpack_from(">i", buf, pos + 23)[0]
        if last + 1 > next_offset:
            next_offset = last + 1
        pos += size
    return next_offset, pos


def decode(buf, topic: str, partition: int, start: int, stop: int | None, *, check_crcs: bool = True,
           aborted: list | None = None, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> PartitionRecords:
    """The records with start <= offset < stop (stop None: no limit) in the whole batches
    of `buf`, in offset order."""
    out = PartitionRecords(topic, partition)
    pos, end = 0, len(buf)
    aborting: set[int] = set()
    pending_aborts = sorted(aborted, key=lambda a: a[1]) if aborted else None
    while end - pos >= HEADER_SIZE:
        (base_offset, length, _epoch, magic, crc, attributes, last_delta, base_ts, max_ts,
         producer_id, _pepoch, _seq, count) = _HEADER.unpack_from(buf, pos)
        size = length + _LOG_OVERHEAD
        if pos + size > end:
            break  # a batch cut at the byte limit: fetched again next time
        if magic != 2:
            raise CorruptRecordError(f"{topic}-{partition}: record batch magic {magic} is not supported")
        if length < HEADER_SIZE - _LOG_OVERHEAD or last_delta < 0 or count < 0:
            raise CorruptRecordError(f"{topic}-{partition}: malformed batch header at offset {base_offset}")
        if check_crcs and crc32c(buf[pos + 21:pos + size]) != crc:
            raise CorruptRecordError(f"{topic}-{partition}: CRC mismatch in the batch at offset {base_offset}")
        batch_start, pos = pos, pos + size
        if base_offset + last_delta < start or (stop is not None and base_offset >= stop):
            continue
        if pending_aborts is not None:
            while pending_aborts and pending_aborts[0][1] <= base_offset:
                aborting.add(pending_aborts.pop(0)[0])
            if attributes & 0x20:
                aborting.discard(producer_id)  # the marker ending that transaction
                continue
            if attributes & 0x10 and producer_id in aborting:
                continue
        if attributes & 0x20 or not count:
            continue
        body = buf[batch_start + HEADER_SIZE:batch_start + size]
        codec = attributes & 0x07
        data = decompress(codec, body, max_uncompressed) if codec else bytes(body)
        try:
            _records(out, data, count, topic, partition, base_offset, base_ts, max_ts,
                     max_ts if attributes & 0x08 else None, start, stop)
        except (IndexError, ValueError) as exc:
            raise CorruptRecordError(f"{topic}-{partition}: malformed record in the batch at offset "
                                     f"{base_offset}: {exc}") from None
    return out


def _records(out: PartitionRecords, data: bytes, count: int, topic: str, partition: int, base_offset: int,
             base_ts: int, max_ts: int, append_time: int | None, start: int, stop: int | None) -> None:
    """Decode the `count` records filling `data` into `out`, keeping start <= offset < stop."""
    if count * _MIN_RECORD > len(data):
        raise CorruptRecordError(f"{topic}-{partition}: {count} records cannot fit in {len(data)} bytes")
    simple = _simple(data, count, append_time is None and max_ts == base_ts)
    if simple is None:
        _general(out, data, count, topic, partition, base_offset, base_ts, append_time, start, stop)
        return
    values, deltas = simple
    first = max(start - base_offset, 0)
    last = count if stop is None else min(max(stop - base_offset, 0), count)
    if first or last < count:
        values, deltas = values[first:last], deltas and deltas[first:last]
    n = len(values)
    if not n:
        return
    if out.keys is not None:
        out.keys += repeat(None, n)
    if out.headers is not None:
        out.headers += repeat((), n)
    out.offsets += range(base_offset + first, base_offset + last)
    if append_time is not None:
        out.timestamps += repeat(append_time, n)
    elif deltas is None or not any(deltas):  # one timestamp for the batch (as build_batch_values writes it)
        out.timestamps += repeat(base_ts, n)
    else:
        out.timestamps += map(base_ts.__add__, look_up(_ZIGZAG, deltas))
    out.values += values


_ZIGZAG = [(b >> 1) ^ -(b & 1) for b in range(128)]


# _simple, for records of the common shape. Record i (offset delta i) of a batch, with timestamp
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
    _simple makes from record lengths and indexes. A head is the previous record's header count,
    varint(L) and the attributes, and for batches of one timestamp the delta 0 too. Made on first
    use: they take milliseconds, which every command's start-up would pay otherwise."""
    offsets_keys = [varint + b"\x01" for varint in SMALL[:_SIMPLE_MAX]]
    separators = [b"\x00" + varint + b"\x00" for varint in SMALL[:_SIMPLE_MAX]]
    one_time = [separator + b"\x00" for separator in separators]
    return offsets_keys, {(same, prefix): _layout(prefix, one_time if same else separators)
                          for same in (False, True) for prefix in (4, 5)}


def warm_up() -> None:
    """Build the tables of decode()'s fast path now (tens of milliseconds) rather than at the
    first batch: for a process that is to decode, while it would otherwise wait."""
    _simple_tables()


def _simple(data: bytes, count: int, one_time: bool = False):
    """(values, timestamp deltas) if the `count` records filling `data` all have the common shape
    (above), else None, and _general decodes them. The deltas are a bytes object, one zig-zag
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


def _general(out: PartitionRecords, data: bytes, count: int, topic: str, partition: int, base_offset: int,
             base_ts: int, append_time: int | None, start: int, stop: int | None) -> None:
    """Any record layout: keys, headers, varints of any size, gaps in offset deltas."""
    if out.keys is None:
        out.keys = [None] * len(out.values)
    if out.headers is None:
        out.headers = [()] * len(out.values)
    add_offset, add_timestamp, add_key = out.offsets.append, out.timestamps.append, out.keys.append
    add_value, add_headers = out.values.append, out.headers.append
    high = stop if stop is not None else 1 << 63
    pos = 0
    for _ in range(count):
        byte = data[pos]
        if byte < 0x80:
            length, pos = (byte >> 1) ^ -(byte & 1), pos + 1
        else:
            length, pos = read_varint(data, pos)
        end = pos + length
        byte = data[pos + 1]  # data[pos] holds the unused record attributes
        if byte < 0x80:
            ts_delta, p = (byte >> 1) ^ -(byte & 1), pos + 2
        else:
            ts_delta, p = read_varlong(data, pos + 1)
        byte = data[p]
        if byte < 0x80:
            offset_delta, p = (byte >> 1) ^ -(byte & 1), p + 1
        else:
            offset_delta, p = read_varint(data, p)
        if data[p] == 1:
            key, p = None, p + 1
        else:
            key, p = _nullable(data, p)
        byte = data[p]
        if byte < 0x80 and not byte & 1:
            size = byte >> 1
            value, p = data[p + 1:p + 1 + size], p + 1 + size
        elif byte & 0x81 == 0x80 and data[p + 1] < 0x80:
            size = ((byte & 0x7F) | (data[p + 1] << 7)) >> 1
            value, p = data[p + 2:p + 2 + size], p + 2 + size
        else:
            value, p = _nullable(data, p)
        if data[p] == 0:
            headers, p = (), p + 1
        else:
            headers, p = _headers(data, p)
        if p != end or length < _MIN_RECORD - 1:
            raise CorruptRecordError(f"{topic}-{partition}: record at offset "
                                     f"{base_offset + offset_delta} is malformed")
        pos = end
        offset = base_offset + offset_delta
        if start <= offset < high:
            add_offset(offset)
            add_timestamp(base_ts + ts_delta if append_time is None else append_time)
            add_key(key)
            add_value(value)
            add_headers(headers)
    if pos != len(data):
        raise CorruptRecordError(f"{topic}-{partition}: {len(data) - pos} bytes after the last record "
                                 f"of the batch at offset {base_offset}")


def _nullable(data: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = read_varint(data, pos)
    if length < 0:
        if length == -1:
            return None, pos
        raise CorruptRecordError(f"negative length {length}")
    if pos + length > len(data):
        raise CorruptRecordError(f"a field of {length} bytes runs past its batch")
    return data[pos:pos + length], pos + length


def _headers(data: bytes, pos: int) -> tuple[tuple, int]:
    count, pos = read_varint(data, pos)
    if count < 0 or count * 2 > len(data) - pos:
        raise CorruptRecordError(f"header count {count} does not fit its record")
    headers = []
    for _ in range(count):
        name, pos = _nullable(data, pos)
        if name is None:
            raise CorruptRecordError("null header key")
        value, pos = _nullable(data, pos)
        headers.append((name.decode("utf-8", "replace"), value))
    return tuple(headers), pos

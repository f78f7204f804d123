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
- a batch that cannot be read ends the records: those before it are returned, with
  `damaged` (a DamagedBatchError naming the batch and where the next one starts) for the
  caller to raise after using them; a compressed batch is inflated with a bound.
"""

from __future__ import annotations

import struct
from itertools import repeat
from typing import NamedTuple

from ..compression import decompress
from ..compression import CODEC_NAMES
from ..errors import CorruptRecordError, DamagedBatchError
from ..record_codec import look_up
from ..record_shapes import simple as _simple
from ..record_shapes import warm_up as warm_up
from ..records import DEFAULT_MAX_UNCOMPRESSED, HEADER_SIZE, crc32c
from ..varint import read_varint, read_varlong

__all__ = ["ConsumedRecord", "PartitionRecords", "scan", "decode"]

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_LENGTH = struct.Struct(">qi")
_LOG_OVERHEAD = 12
_MIN_RECORD = 7
_LAST_CODEC = max(CODEC_NAMES)


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
    `damaged` is set when these records stop before a batch that cannot be read.
    """

    __slots__ = ("topic", "partition", "offsets", "timestamps", "keys", "values", "headers", "next_offset",
                 "damaged")

    def __init__(self, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.offsets: list[int] = []
        self.timestamps: list[int] = []
        self.keys: list | None = None
        self.values: list = []
        self.headers: list | None = None
        self.next_offset = -1
        self.damaged: DamagedBatchError | None = None  # the batch these records stop before, if any

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
    Only batch headers are read: cheap enough to send the next fetch before decoding. A
    batch whose length is not even a header's makes the rest of `buf` count as whole: decode
    reports it as damaged, after the records before it."""
    pos, end, next_offset = 0, len(buf), position
    while end - pos >= HEADER_SIZE:
        base_offset, length = _OFFSET_LENGTH.unpack_from(buf, pos)
        last = base_offset + struct.unpack_from(">i", buf, pos + 23)[0]
        if length < HEADER_SIZE - _LOG_OVERHEAD:
            return max(next_offset, last + 1, base_offset + 1), end
        size = length + _LOG_OVERHEAD
        if pos + size > end:
            break
        if last + 1 > next_offset:
            next_offset = last + 1
        pos += size
    return next_offset, pos


def decode(buf, topic: str, partition: int, start: int, stop: int | None, *, check_crcs: bool = True,
           aborted: list | None = None, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
           partial: bool = False) -> PartitionRecords:
    """The records with start <= offset < stop (stop None: no limit) in the whole batches
    of `buf`, in offset order. At the first batch that cannot be read (bad header or CRC,
    unknown codec, data that does not decompress, records other than its header claims)
    it raises DamagedBatchError; with `partial` it stops there instead: the records before
    that batch are returned, and their `damaged` is that error, for the caller to raise
    once it has used them."""
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
        kept, batch_start = len(out.values), pos
        try:
            if magic != 2:
                raise CorruptRecordError(f"record batch magic {magic} is not supported")
            if length < HEADER_SIZE - _LOG_OVERHEAD or last_delta < 0 or count < 0:
                raise CorruptRecordError("malformed batch header")
            if check_crcs and crc32c(buf[pos + 21:pos + size]) != crc:
                raise CorruptRecordError("CRC mismatch")
            pos = batch_start + size
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
            if codec > _LAST_CODEC:
                raise CorruptRecordError(f"unknown compression codec {codec}")
            data = decompress(codec, body, max_uncompressed) if codec else bytes(body)
            try:
                _records(out, data, count, topic, partition, base_offset, base_ts, max_ts,
                         max_ts if attributes & 0x08 else None, start, stop, last_delta)
            except (IndexError, ValueError) as exc:
                raise CorruptRecordError(f"malformed record: {exc or 'runs past the batch'}") from None
        except CorruptRecordError as exc:
            _keep_first(out, kept)
            reason = str(exc).removeprefix(f"{topic}-{partition}: ")
            out.damaged = DamagedBatchError(topic, partition, base_offset,
                                            _after(buf, batch_start, size, base_offset, last_delta), reason)
            if not partial:
                raise out.damaged from None
            return out
    return out


def _keep_first(out: PartitionRecords, n: int) -> None:
    """Drop the records of `out` after the first n (those of a batch found damaged)."""
    for column in (out.offsets, out.timestamps, out.values, out.keys, out.headers):
        if column is not None:
            del column[n:]


def _after(buf, pos: int, size: int, base_offset: int, last_delta: int) -> int:
    """Where the batch after the damaged one at `pos` starts: the next batch's base offset when
    it follows in `buf`, else what the damaged batch's header says, else the offset after its base."""
    if size >= HEADER_SIZE and len(buf) - (pos + size) >= _LOG_OVERHEAD:
        following = _OFFSET_LENGTH.unpack_from(buf, pos + size)[0]
        if following > base_offset:
            return following
    return base_offset + last_delta + 1 if last_delta >= 0 else base_offset + 1


def _records(out: PartitionRecords, data: bytes, count: int, topic: str, partition: int, base_offset: int,
             base_ts: int, max_ts: int, append_time: int | None, start: int, stop: int | None,
             last_delta: int | None = None) -> None:
    """Decode the `count` records filling `data` into `out`, keeping start <= offset < stop."""
    if count * _MIN_RECORD > len(data):
        raise CorruptRecordError(f"{topic}-{partition}: {count} records cannot fit in {len(data)} bytes")
    simple = _simple(data, count, append_time is None and max_ts == base_ts)
    if simple is None:
        _general(out, data, count, topic, partition, base_offset, base_ts, append_time, start, stop,
                 last_delta)
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


def _general(out: PartitionRecords, data: bytes, count: int, topic: str, partition: int, base_offset: int,
             base_ts: int, append_time: int | None, start: int, stop: int | None,
             last_delta: int | None = None) -> None:
    """Any record layout: keys, headers, varints of any size, gaps in offset deltas (compaction
    leaves them); but offset deltas must grow, and stay within the batch's lastOffsetDelta."""
    if out.keys is None:
        out.keys = [None] * len(out.values)
    if out.headers is None:
        out.headers = [()] * len(out.values)
    add_offset, add_timestamp, add_key = out.offsets.append, out.timestamps.append, out.keys.append
    add_value, add_headers = out.values.append, out.headers.append
    high = stop if stop is not None else 1 << 63
    highest = (1 << 31) if last_delta is None else last_delta
    pos, previous = 0, -1
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
        if not previous < offset_delta <= highest:
            raise CorruptRecordError(f"{topic}-{partition}: record offset delta {offset_delta} after {previous}, "
                                     f"in a batch whose last is {highest}")
        previous = offset_delta
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

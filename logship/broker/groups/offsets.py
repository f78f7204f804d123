"""Committed offsets, kept as records of the compacted internal topic `__consumer_offsets`.

One partition. Every OffsetCommit request that is accepted appends one record batch, one
record per committed partition, and the in-memory table is updated as the append returns
(so a commit is visible to the next request at once; the reply waits for fdatasync). On
start the table is rebuilt by reading the topic from its log start: the last record of each
key wins, a tombstone (null value) removes the key. Compaction (storage/compaction.py) keeps
only the latest record per key, so the topic stays about as big as the table.

Records use Kafka's own schemas for this topic (so Kafka's tools could read them), all
big-endian, strings as int16 length + UTF-8:

    key   (OffsetCommitKey v1):   version int16 = 1, group string, topic string, partition int32
    value (OffsetCommitValue v3): version int16 = 3, offset int64, leader_epoch int32,
                                  metadata string, commit_timestamp int64 (ms since the epoch)

Values of versions 0-2 (Kafka's older layouts) are read too. Keys of version 2 (Kafka's
group-membership records) are skipped: membership is not persisted, members rejoin.
Deleting a group (DeleteGroups) or some of its offsets (OffsetDelete) appends tombstones,
one per offset key, plus one for the group's version-2 key when the whole group goes.
The record timestamp is the commit time.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ... import records
from ...errors import CorruptRecordError
from ...storage import AppendResult, LogConfig, Store

OFFSETS_TOPIC = "__consumer_offsets"
KEY_VERSION = 1
VALUE_VERSION = 3
GROUP_KEY_VERSION = 2  # Kafka's group metadata records: only ever written here as tombstones
log = logging.getLogger("logship.broker")

_INT16 = struct.Struct(">h")
_KEY_TAIL = struct.Struct(">i")
_V3_HEAD = struct.Struct(">hqi")  # version, offset, leader epoch
_INT64 = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """A committed position: the next offset to read, as the consumer said it."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _INT16.pack(len(data)) + data


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    (size,) = _INT16.unpack_from(buf, pos)
    end = pos + 2 + size
    if size < 0 or end > len(buf):
        raise CorruptRecordError("string runs past its record")
    return buf[pos + 2:end].decode("utf-8"), end


def encode_key(group: str, topic: str, partition: int) -> bytes:
    return _INT16.pack(KEY_VERSION) + _string(group) + _string(topic) + _KEY_TAIL.pack(partition)


def decode_key(key: bytes) -> tuple[str, str, int] | None:
    """(group, topic, partition) of an offset key; None for other keys (group metadata)."""
    (version,) = _INT16.unpack_from(key, 0)
    if version not in (0, 1):
        return None
    group, pos = _read_string(key, 2)
    topic, pos = _read_string(key, pos)
    (partition,) = _KEY_TAIL.unpack_from(key, pos)
    return group, topic, partition


def encode_value(committed: CommittedOffset) -> bytes:
    return (_V3_HEAD.pack(VALUE_VERSION, committed.offset, committed.leader_epoch)
            + _string(committed.metadata) + _INT64.pack(committed.commit_timestamp))


def decode_value(value: bytes) -> CommittedOffset:
    (version,) = _INT16.unpack_from(value, 0)
    if version == 3:
        _, offset, epoch = _V3_HEAD.unpack_from(value, 0)
        metadata, pos = _read_string(value, _V3_HEAD.size)
        return CommittedOffset(offset, epoch, metadata, _INT64.unpack_from(value, pos)[0])
    if version in (0, 1, 2):  # offset, metadata, commit timestamp (v1: then an expiry time)
        (offset,) = _INT64.unpack_from(value, 2)
        metadata, pos = _read_string(value, 10)
        return CommittedOffset(offset, -1, metadata, _INT64.unpack_from(value, pos)[0])
    raise CorruptRecordError(f"unknown offset value version {version}")


#: Most bytes a record adds to a batch beyond its key and value: length, attributes, timestamp
#: and offset deltas, key and value lengths, header count (varints at their longest).
_RECORD_OVERHEAD = 5 + 1 + 10 + 5 + 5 + 5 + 5


def _batches(entries: list[tuple], limit: int) -> Iterable[tuple[int, bytes]]:
    """(end, batch) for consecutive runs entries[..end] whose batch is at most `limit` bytes
    (a record too big on its own gets a batch of its own, which the append refuses)."""
    start, size = 0, records.HEADER_SIZE
    for i, (_, key, value, _) in enumerate(entries):
        grown = _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
        if i > start and size + grown > limit:
            yield i, records.build_batch(entries[start:i])
            start, size = i, records.HEADER_SIZE
        size += grown
    yield len(entries), records.build_batch(entries[start:])


class OffsetStore:
    """Every group's committed offsets: a table in memory over the `__consumer_offsets` log.

    Creates the topic when missing and applies `log_config` to it (compacted, no retention),
    then loads it. `clock()` gives wall-clock seconds for commit timestamps.
    """

    def __init__(self, store: Store, log_config: LogConfig, clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock
        store.set_topic_config(OFFSETS_TOPIC, log_config)
        if OFFSETS_TOPIC not in store.topics():
            store.create_topic(OFFSETS_TOPIC, 1)
        self.partition = store.partition(OFFSETS_TOPIC, 0)
        self._groups: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        self.loaded_records = self._load()

    def groups(self) -> list[str]:
        """Groups that have committed offsets."""
        return list(self._groups)

    def committed(self, group: str) -> dict[tuple[str, int], CommittedOffset]:
        """{(topic, partition): CommittedOffset} of `group` (do not modify)."""
        return self._groups.get(group, {})

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def commit(self, group: str, offsets: Iterable[tuple[str, int, CommittedOffset]]) -> AppendResult | None:
        """Append records for `offsets` and update the table; None when there are none.

        The records go in batches within the topic's max.message.bytes, in one append when
        they fit a segment (several otherwise). Raises what Partition.append_batches raises
        (KafkaStorageError); the table then keeps what earlier appends of the call wrote.
        Durability is the caller's: sync the partition to the result's log end.
        """
        offsets = list(offsets)
        if not offsets:
            return None
        now = self.now_ms()
        entries = [(now, encode_key(group, topic, partition), encode_value(committed), ())
                   for topic, partition, committed in offsets]

        def applied(start: int, end: int) -> None:
            table = self._groups.setdefault(group, {})
            for topic, partition, committed in offsets[start:end]:
                table[(topic, partition)] = committed

        return self._write(entries, applied)

    def delete(self, group: str, partitions: Iterable[tuple[str, int]], *, whole_group: bool = False
               ) -> AppendResult | None:
        """Append tombstones (null values) for `partitions` of `group` and drop them from the
        table; with `whole_group` also a tombstone for the group's metadata key (Kafka's
        GroupMetadataKey, version 2), so Kafka's tools reading the topic see the group gone.
        None when there is nothing to write. Batched, raises and keeps the table like commit().
        Durability is the caller's: sync the partition to the result's log end."""
        partitions = list(partitions)
        now = self.now_ms()
        tombstones = [(now, encode_key(group, topic, partition), None, ()) for topic, partition in partitions]
        if whole_group:
            tombstones.append((now, _INT16.pack(GROUP_KEY_VERSION) + _string(group), None, ()))
        if not tombstones:
            return None

        def applied(start: int, end: int) -> None:
            table = self._groups.get(group, {})
            for key in partitions[start:end]:
                table.pop(key, None)
            if not table:
                self._groups.pop(group, None)

        return self._write(tombstones, applied)

    def _write(self, entries: list[tuple], applied: Callable[[int, int], None]) -> AppendResult:
        """Append records `entries` in batches that each fit the topic's max.message.bytes and
        segment.bytes, joined into as few appends as fit a segment (one, usually); after each
        append `applied(start, end)` is told which entries it held. Returns the last append."""
        config = self.partition.config
        limit = min(config.max_batch_bytes, config.segment_bytes)
        result, start, pending, pending_bytes, pending_end = None, 0, [], 0, 0
        for end, batch in _batches(entries, limit):
            if pending and pending_bytes + len(batch) > config.segment_bytes:
                result = self.partition.append_batches(bytearray(b"".join(pending)))
                applied(start, pending_end)
                start, pending, pending_bytes = pending_end, [], 0
            pending.append(batch)
            pending_bytes += len(batch)
            pending_end = end
        result = self.partition.append_batches(bytearray(b"".join(pending)))
        applied(start, pending_end)
        return result

    def _load(self) -> int:
        """Replay the topic from its log start; returns the number of records read."""
        count, offset, end = 0, self.partition.log_start_offset, self.partition.high_watermark
        while offset < end:
            piece = self.partition.read(offset, 1 << 20)
            if piece is None:
                break
            with piece:
                data = piece.read_bytes()
            pos, start = 0, offset
            while len(data) - pos >= records.HEADER_SIZE and pos + records.peek_offset_and_size(data, pos)[1] <= len(data):
                header = records.parse_header(data, pos)
                if not header.is_control:
                    for record in records.decode_records(data[pos:pos + header.size]):
                        self._apply(record)
                        count += 1
                offset, pos = header.next_offset, pos + header.size
            if offset == start:
                raise CorruptRecordError(f"{OFFSETS_TOPIC}: no whole batch at offset {offset}")
        return count

    def _apply(self, record: records.Record) -> None:
        try:
            key = decode_key(record.key) if record.key else None
            if key is None:
                return
            group, topic, partition = key
            if record.value is None:
                table = self._groups.get(group, {})
                table.pop((topic, partition), None)
                if not table:
                    self._groups.pop(group, None)
            else:
                self._groups.setdefault(group, {})[(topic, partition)] = decode_value(record.value)
        except (CorruptRecordError, struct.error, UnicodeDecodeError) as exc:
            log.warning("%s: skipping unreadable record at offset %d (%s)", OFFSETS_TOPIC, record.offset, exc)

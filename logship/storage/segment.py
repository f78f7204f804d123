"""`Segment`: one `.log` file of record batches plus its `.index` and `.timeindex`.

Files are named by the segment's base offset, zero-padded to 20 digits:
`00000000000000001000.log`, `.index`, `.timeindex`. The `.log` file holds record batches
(magic 2) exactly as they travel on the wire, back to back, with their baseOffset already
assigned; nothing else. Invariants once loaded or recovered:

* every byte of the file belongs to a whole batch (`size` is the end of the last one);
* batch offsets increase: each batch starts at or after the previous one's next offset,
  and relative offsets and positions fit in int32;
* `next_offset` is the last batch's last offset + 1 (the base offset when empty);
* `max_timestamp` is the largest batch maxTimestamp in the file (-1 when empty).

The segment does no locking; its Partition serialises access. Its three files are
CachedFiles of the store's FileCache (filecache.py): a descriptor is opened when needed and
may be closed by the cache between two uses; the segment itself holds none.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import CorruptRecordError, KafkaStorageError
from .filecache import SHARED_FILES, CachedFile, FileCache, SharedFd
from .index import OffsetIndex, TimeIndex

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
_SCAN = struct.Struct(">qiibIhiqq")  # header bytes 0..42: up to and including maxTimestamp
_PRODUCER_SCAN = struct.Struct(">qiibIhiqqqhii")  # the whole 61-byte header: producer id, epoch, sequence
_SCAN_CHUNK = 16 << 10
_MIN_BATCH = 61


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class BatchInfo(NamedTuple):
    """What the storage layer knows of one batch. `position` is relative to its buffer/file."""

    position: int
    base_offset: int
    last_offset: int
    max_timestamp: int
    size: int
    leader_epoch: int


def write_all(fd: int, data, position: int) -> None:
    """os.pwrite until every byte is written (a short write is retried, an error raised)."""
    n = os.pwrite(fd, data, position)
    if n == len(data):
        return
    view, position = memoryview(data)[n:], position + n
    while view:
        n = os.pwrite(fd, view, position)
        if n <= 0:
            raise OSError(5, "pwrite wrote nothing")
        view, position = view[n:], position + n


class Segment:
    """One segment of a partition's log; see the module docstring for its invariants."""

    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int, *, create: bool = False,
                 files: FileCache | None = None):
        self.directory = Path(directory)
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.files = files = SHARED_FILES if files is None else files
        stem = self.directory / segment_name(base_offset)
        self.path = stem.with_suffix(LOG_SUFFIX)
        if create:  # an empty log and empty index files, as Kafka leaves them
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                os.close(os.open(stem.with_suffix(suffix), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            self.size = 0
        else:
            self.size = os.stat(self.path).st_size
        self.log_file: CachedFile = files.file(self.path, os.O_RDWR)
        self.offset_index = OffsetIndex(stem.with_suffix(INDEX_SUFFIX), base_offset, files)
        self.time_index = TimeIndex(stem.with_suffix(TIMEINDEX_SUFFIX), base_offset, files)
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.roll_base_ms: int | None = None  # wall clock of the first append (for segment_ms)
        self._bytes_since_index = 0

    @property
    def closed(self) -> bool:
        """True once closed or deleted: its files are no longer used."""
        return self.log_file.closed

    def acquire(self) -> SharedFd:
        """A reference to an open descriptor of the .log file (`with segment.acquire() as fd:`)."""
        return self.log_file.acquire()

    def sync(self, fdatasync=os.fdatasync) -> None:
        """fdatasync the .log file."""
        with self.log_file.acquire() as fd:
            fdatasync(fd)

    @classmethod
    def adopt(cls, directory: Path, base_offset: int, index_interval_bytes: int,
              files: FileCache | None = None) -> "Segment":
        """Open a whole `.log` file just moved into place (a compacted segment), with new
        indexes built from its batch headers. Raises CorruptRecordError if it is not whole batches."""
        stem = Path(directory) / segment_name(base_offset)
        for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            os.close(os.open(stem.with_suffix(suffix), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        segment = cls(directory, base_offset, index_interval_bytes, files=files)
        try:
            segment.rebuild_indexes()
            segment.load_state()
            segment.seal()
        except BaseException:
            segment.close()
            raise
        return segment

    # ----------------------------------------------------------------- reading

    def scan(self, start: int = 0, end: int | None = None) -> Iterator[BatchInfo]:
        """Batch headers from byte `start` to `end` (default: the file's end), in order.

        Reads 16 KiB chunks with os.pread and looks only at the first 43 bytes of each batch.
        Raises CorruptRecordError on a header that cannot be a batch or runs past `end`.
        """
        for pos, (base, length, epoch, _magic, _crc, _attrs, delta, _base_ts, max_ts) in \
                self._headers(_SCAN, start, end):
            yield BatchInfo(pos, base, base + delta, max_ts, length + 12, epoch)

    def producer_batches(self, start: int = 0) -> Iterator[tuple[int, int, int, int, int, int]]:
        """(base offset, last offset, attributes, producer id, producer epoch, base sequence)
        of each batch from byte `start` to the end (whole 61-byte headers; see scan)."""
        for _, fields in self._headers(_PRODUCER_SCAN, start, None):
            yield fields[0], fields[0] + fields[6], fields[5], fields[9], fields[10], fields[11]

    def _headers(self, shape: struct.Struct, start: int, end: int | None) -> Iterator[tuple[int, tuple]]:
        end = self.size if end is None else end
        pos, buf, buf_start = start, b"", start
        while pos < end:
            off = pos - buf_start
            if off + shape.size > len(buf):
                with self.log_file.acquire() as fd:
                    buf, buf_start, off = os.pread(fd, _SCAN_CHUNK, pos), pos, 0
                if len(buf) < shape.size:
                    raise CorruptRecordError(f"{self.path.name}: batch header cut short at byte {pos}")
            fields = shape.unpack_from(buf, off)
            size, magic, delta = fields[1] + 12, fields[3], fields[6]
            if magic != 2 or size < _MIN_BATCH or delta < 0 or pos + size > end:
                raise CorruptRecordError(f"{self.path.name}: no valid batch at byte {pos}")
            yield pos, fields
            pos += size

    def find_batch(self, offset: int, end: int | None = None) -> BatchInfo | None:
        """The batch containing `offset` among those ending by byte `end`, or None."""
        _, start = self.offset_index.lookup(offset)
        for batch in self.scan(start, end):
            if batch.last_offset >= offset:
                return batch
        return None

    def first_batch(self) -> BatchInfo | None:
        return next(self.scan(0), None) if self.size else None

    # ----------------------------------------------------------------- writing

    def _plan_index(self, batches: Sequence[BatchInfo], start: int):
        """Index entries for `batches` placed at file position `start` + batch.position.

        Kafka's rule: before counting a batch's bytes, if more than index_interval_bytes were
        appended since the last entry, index that batch (and the time index when the largest
        timestamp grew).
        """
        since, max_ts, max_off = self._bytes_since_index, self.max_timestamp, self.offset_of_max_timestamp
        last_indexed_ts = self.time_index.last_timestamp
        offsets, times = [], []
        for batch in batches:
            if batch.max_timestamp > max_ts:
                max_ts, max_off = batch.max_timestamp, batch.last_offset
            if since > self.index_interval_bytes:
                offsets.append((batch.last_offset, start + batch.position))
                if max_ts > last_indexed_ts:
                    times.append((max_ts, max_off))
                    last_indexed_ts = max_ts
                since = 0
            since += batch.size
        return offsets, times, since, max_ts, max_off

    def append(self, buf, batches: Sequence[BatchInfo], now_ms: int) -> int:
        """Write `buf` (whole batches described by `batches`) at the end; returns its position.

        One pwrite for the log; index entries are buffered (see index.py). If the write
        fails the file is cut back to its old size and KafkaStorageError is raised: a full
        disk corrupts nothing.
        """
        start = self.size
        try:
            with self.log_file.acquire() as fd:
                try:
                    write_all(fd, buf, start)
                except OSError:
                    try:
                        os.ftruncate(fd, start)
                    except OSError:
                        pass  # shrinking needs no space; if even this fails, recovery cuts the tail
                    raise
        except OSError as exc:
            raise KafkaStorageError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
        offsets, times, since, max_ts, max_off = self._plan_index(batches, start)
        self.offset_index.append_many(offsets)
        self.time_index.append_many(times)
        if start == 0:
            self.roll_base_ms = now_ms
        self.size = start + len(buf)
        self.next_offset = batches[-1].last_offset + 1
        self._bytes_since_index, self.max_timestamp, self.offset_of_max_timestamp = since, max_ts, max_off
        return start

    def add_to_indexes(self, batches: Sequence[BatchInfo]) -> None:
        """Index batches already in the file (positions absolute), e.g. while recovering."""
        offsets, times, since, max_ts, max_off = self._plan_index(batches, 0)
        self.offset_index.append_many(offsets)
        self.time_index.append_many(times)
        self._bytes_since_index, self.max_timestamp, self.offset_of_max_timestamp = since, max_ts, max_off
        if batches:
            self.next_offset = batches[-1].last_offset + 1

    def seal(self) -> None:
        """Record the largest timestamp in the time index and write out both indexes.

        Done when the segment stops being active (roll, close). Never fails: index entries
        that cannot be written are dropped (index.py).
        """
        if self.max_timestamp > self.time_index.last_timestamp:
            self.time_index.append_many([(self.max_timestamp, self.offset_of_max_timestamp)])
        self.offset_index.flush()
        self.time_index.flush()

    def truncate_file(self, size: int) -> None:
        """Cut the .log file to `size` bytes (a batch boundary); indexes are the caller's business."""
        with self.log_file.acquire() as fd:
            os.ftruncate(fd, size)
        self.size = size

    def truncate_to(self, offset: int) -> int:
        """Drop the batch containing `offset` and everything after; returns the new next_offset.

        Cutting happens at a batch start, so when `offset` is inside a batch the whole batch
        goes and next_offset lands below `offset`.
        """
        batch = self.find_batch(offset)
        if batch is None:
            return self.next_offset
        self.truncate_file(batch.position)
        self.offset_index.truncate_to(batch.base_offset)
        self.time_index.truncate_to(batch.base_offset)
        self.load_state()
        return self.next_offset

    # ----------------------------------------------------------------- loading

    def load_state(self) -> None:
        """Set next_offset, max_timestamp and the index cursor from the indexes and the tail.

        Scans batch headers from the last offset-index entry to the end of the file.
        Raises CorruptRecordError when the tail is not whole batches.
        """
        last = self.offset_index.last_entry
        start = last[1] if last else 0
        self.next_offset = self.base_offset
        last_time = self.time_index.last_entry
        self.max_timestamp, self.offset_of_max_timestamp = last_time if last_time else (-1, self.base_offset)
        for batch in self.scan(start):
            self.next_offset = batch.last_offset + 1
            if batch.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = batch.max_timestamp, batch.last_offset
        if last is not None and self.next_offset <= last[0]:
            raise CorruptRecordError(f"{self.offset_index.path.name}: last entry points past the log")
        self._bytes_since_index = self.size - start

    def index_problem(self, full: bool) -> str | None:
        """Check the indexes against the log (call load_state first); None when sane."""
        if self.size and not (self.offset_index.existed and self.time_index.existed):
            return "index file missing"
        problem = self.offset_index.problem(self.size, full)
        if problem is None and self.offset_index.last_entry is not None:
            offset, position = self.offset_index.last_entry
            batch = next(self.scan(position), None)
            if batch is None or batch.last_offset != offset:
                problem = f"{self.offset_index.path.name}: last entry does not point at its batch"
        return problem or self.time_index.problem(self.next_offset, full)

    def rebuild_indexes(self) -> None:
        """Rebuild .index and .timeindex from the batch headers (no CRC check)."""
        self.reset_indexes()
        chunk: list[BatchInfo] = []
        for batch in self.scan(0):
            chunk.append(batch)
            if len(chunk) >= 4096:
                self.add_to_indexes(chunk)
                chunk.clear()
        self.add_to_indexes(chunk)

    def reset_indexes(self) -> None:
        self.offset_index.reset()
        self.time_index.reset()
        self._bytes_since_index = 0
        self.next_offset = self.base_offset
        self.max_timestamp, self.offset_of_max_timestamp = -1, self.base_offset

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Write out the indexes and leave the file cache (slices still open keep their descriptor)."""
        self.offset_index.close()
        self.time_index.close()
        self.log_file.close()

    def delete(self) -> None:
        """Close and unlink all three files (open FileSlices keep their own descriptors)."""
        self.close()
        self.offset_index.delete()
        self.time_index.delete()
        self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Segment({self.path}, size={self.size}, next_offset={self.next_offset})"

"""`Partition`: the log of one topic partition, a directory of segments.

`<data_dir>/<topic>-<partition>/` holds segments (see segment.py), the newest of which is
active (appended to), `leader-epoch-checkpoint` and, once a coordinator moved it,
`leader-epoch` (epochs.py). State and invariants, all guarded by one lock:

* log_start_offset <= high_watermark <= log_end_offset; offsets below log_start_offset are
  gone, log_end_offset is the next offset to assign; offsets never repeat or skip, across
  restarts and retention too (an emptied log keeps an empty segment named by its end);
* segments are sorted, contiguous (each starts where the previous ends) and only the last
  is ever written; there is always at least one;
* reads never return bytes at or beyond the high watermark's batch;
* a compacted log (compaction.py, via replace_segments) keeps every offset where it was, but
  its sealed segments may skip offsets inside (records removed, batches emptied or dropped);
* recovery_point: everything below it has been fdatasynced (the segment files, and the
  directory when files were created or deleted). It only advances after a sync;
* leader_epoch (0 until set_leader_epoch or a replicated batch moves it; never below an
  epoch in the log, and never lower than before, even once the log is emptied) is
  stamped on every batch append_batches writes (partitionLeaderEpoch, bytes 12-15, outside
  the CRC like baseOffset); the leader-epoch checkpoint gains an entry when the first batch
  of a new epoch is appended, loses entries with truncate_to, and is trimmed from the front
  as log_start_offset advances.

Nothing per record or per batch is kept in memory: per segment a few integers, and the
sparse index files on disk. Dropping parts of the log (truncate_to, delete_before, retention,
replace_segments) is removal.py's `LogRemoval`, which Partition inherits.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..errors import InvalidRecordError, KafkaStorageError, OffsetOutOfRangeError, RecordListTooLargeError
from . import reader
from .append_time import stamp_log_append_time
from .checkpoint import fsync_dir
from .config import INT32_MAX, LogConfig
from .epochs import open_epoch_cache, read_current_epoch, write_current_epoch
from .filecache import SHARED_FILES, FileCache
from .fileslice import INLINE_BYTES, FileSlice
from . import producer_log
from .groupcommit import GroupCommit, SyncNotStarted
from .recovery import load_segments
from .removal import LogRemoval
from .segment import BatchInfo, Segment
from .validate import validate_batches

_pack_offset = struct.Struct(">q").pack_into  # baseOffset, bytes 0-7 (as records.set_base_offset)
_pack_epoch = struct.Struct(">i").pack_into   # partitionLeaderEpoch, bytes 12-15


def _writable(data) -> bool:
    return isinstance(data, bytearray) or (isinstance(data, memoryview) and not data.readonly)


class AppendResult(NamedTuple):
    """Where an append_batches call put its batches."""

    base_offset: int          # offset of the first record appended
    last_offset: int          # offset of the last record appended
    max_timestamp: int        # largest batch maxTimestamp appended
    log_end_offset: int       # last_offset + 1
    segment_base_offset: int  # the segment written
    position: int             # byte position of the first batch in that segment
    size: int                 # bytes appended
    record_count: int
    duplicate: bool = False   # an idempotent producer's retry of batches already here: nothing appended


class Partition(LogRemoval):
    """One partition's log. Thread-safe; see the module docstring. Owns all the state below;
    truncate_to, delete_before, enforce_retention and replace_segments come from LogRemoval.

    `clock()` returns seconds (time.time), `fdatasync(fd)` is called for every segment sync
    (tests count it). `on_log_start_change(partition)` runs when log_start_offset advances,
    outside the partition's lock. `clean` says the directory was last closed cleanly (all
    flushed); with clean=False segments from `recovery_point` on are recovered (recovery.py).
    `log_start_offset` and `recovery_point` come from the Store's checkpoints.
    """

    def __init__(self, topic: str, index: int, directory: str | os.PathLike, config: LogConfig | None = None,
                 *, clock: Callable[[], float] = time.time, fdatasync: Callable[[int], None] | None = None,
                 log_start_offset: int = 0, recovery_point: int = 0, clean: bool = True,
                 on_log_start_change: Callable[["Partition"], None] | None = None, files: FileCache | None = None):
        self._topic, self._index = topic, index
        self.directory = Path(directory)
        self.config = config or LogConfig()
        self._clock, self._fdatasync = clock, fdatasync or os.fdatasync
        self._on_log_start_change = on_log_start_change or (lambda partition: None)
        self._lock = threading.RLock()
        self.files = SHARED_FILES if files is None else files
        self.hw_follows_log_end = True  # replication will turn this off and call set_high_watermark
        self.directory.mkdir(parents=True, exist_ok=True)
        self.load_report = load_segments(self.directory, self.config.index_interval_bytes,
                                         recovery_point=recovery_point, clean=clean, fdatasync=self._fdatasync,
                                         files=self.files)
        segments = self.load_report.segments
        created = False
        if not segments or segments[-1].next_offset < log_start_offset:
            # a new partition, or one whose data below a checkpointed log start is gone; the
            # directory is fsynced by the first sync (nothing below is durable before that anyway)
            start = max(log_start_offset, segments[-1].next_offset if segments else 0)
            for segment in segments:
                segment.delete()
            segments[:] = [Segment(self.directory, start, self.config.index_interval_bytes, create=True,
                                   files=self.files)]
            created = True
        self._segments = segments
        self._bases = [segment.base_offset for segment in segments]
        active, now_ms = segments[-1], self._now_ms()
        if active.size:
            # segment_ms counts from the open, not from record timestamps: replayed old logs
            # would otherwise roll a segment per append (the price: a restart delays a roll)
            active.roll_base_ms = now_ms
        self._leo = active.next_offset
        self._log_start = max(log_start_offset, segments[0].base_offset)
        try:
            self._epochs = open_epoch_cache(self.directory, segments, self._log_start, self._leo,
                                            self.load_report.epochs)
        except OSError as exc:
            raise KafkaStorageError(f"cannot write the leader epochs of {self.directory}: "
                                    f"{exc.strerror or exc}") from exc
        self._current_epoch = max(read_current_epoch(self.directory) or 0, self._epochs.latest_epoch)
        self._hw, self._hw_position = self._leo, (active.base_offset, active.size)
        self._unsynced: list[Segment] = []
        self._dir_dirty, self._log_start_moved = created, False
        self._unflushed_records, self._last_flush_ms = 0, now_ms
        self._commit = GroupCommit(self._sync_once, durable_offset=self._leo)  # loading left it all durable
        self._producers = producer_log.load(self.directory, segments, self._leo, now_ms)

    # ------------------------------------------------------------------ state

    topic = property(lambda self: self._topic)
    index = property(lambda self: self._index)
    log_start_offset = property(lambda self: self._log_start)
    log_end_offset = property(lambda self: self._leo)
    high_watermark = property(lambda self: self._hw)
    recovery_point = property(lambda self: self._commit.durable_offset, doc="Everything below is fdatasynced.")
    leader_epoch = property(lambda self: max(self._current_epoch, self._epochs.latest_epoch),
                            doc="The current leader epoch, stamped on every batch append_batches writes.")
    epochs = property(lambda self: self._epochs)
    offline = property(lambda self: self._commit.failure is not None)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(segment.size for segment in self._segments)

    @property
    def segments(self) -> list[Segment]:
        """A copy of the segment list, oldest first (for inspection; do not write to them)."""
        with self._lock:
            return list(self._segments)

    def sealed_files(self) -> list[tuple[Segment, int]]:
        """(segment, duplicated descriptor) of every sealed segment, oldest first.

        For readers that work without the lock (compaction.py): sealed segments never change,
        and the descriptors stay valid whatever happens to the segments; close them when done.
        """
        with self._lock:
            files = []
            for segment in self._segments[:-1]:
                if not segment.closed:
                    with segment.acquire() as fd:
                        files.append((segment, os.dup(fd)))
            return files

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def __repr__(self) -> str:
        return f"Partition({self._topic}-{self._index}, [{self._log_start}, {self._leo}), hw={self._hw})"

    # ------------------------------------------------------------------ append

    def append_batches(self, data: bytes | bytearray | memoryview, *, client: bool = False) -> AppendResult:
        """Validate, assign offsets to and append one or more whole record batches (leader).

        Everything is checked before anything is written (CorruptRecordError,
        InvalidRecordError, MessageTooLargeError; RecordListTooLargeError when the batches
        are larger than segment_bytes, as Kafka); with `client` (batches from a producer,
        not the broker's own) also what each batch claims against what it holds
        (validate.py). Each batch gets its offsets and the
        current leader_epoch (whatever the producer put there); a bytearray or a writable
        memoryview is modified in place, anything else is copied once. Records are never
        re-encoded. A failed write raises KafkaStorageError and leaves the log as it was.
        """
        return self._append(data, assign_offsets=True, client=client)

    def append_replica_batch(self, data: bytes | bytearray | memoryview) -> AppendResult:
        """Append batches copied from a leader as they are: offsets and leader epochs kept.

        Checked like append_batches; also the first batch must start at log_end_offset and
        each next one where the previous ended (InvalidRecordError otherwise, nothing
        written), so a follower's log is the leader's byte for byte, without gaps.
        """
        return self._append(data, assign_offsets=False)

    def _append(self, data, assign_offsets: bool, client: bool = False) -> AppendResult:
        buf = data if _writable(data) else bytearray(data)
        checked = validate_batches(buf, self.config.max_batch_bytes, client=client)
        if len(buf) > self.config.segment_bytes:  # it could never fit a segment: Kafka refuses it too
            raise RecordListTooLargeError(f"{len(buf)} bytes of batches are more than the segment.bytes "
                                          f"({self.config.segment_bytes}) of {self._topic}-{self._index}")
        if assign_offsets and self.config.message_timestamp_type == "LogAppendTime":
            checked = stamp_log_append_time(buf, checked, self._now_ms())
        record_count = len(checked) + sum(batch[2] for batch in checked)
        producers = producer_log.producer_fields(buf, checked)
        with self._lock:
            if self._commit.failure is not None:
                self._commit.sync_to(0)  # raises KafkaStorageError naming the failure
            if not assign_offsets:
                self._check_replica_offsets(checked)
            elif client and producers is not None:
                duplicate = self._producers.check(field for field in producers if field is not None)
                if duplicate is not None:
                    return AppendResult(duplicate.first_offset, duplicate.last_offset, -1, self._leo, -1, -1, 0, 0,
                                        duplicate=True)
            now_ms = self._now_ms()
            segment = self._maybe_roll(len(buf), record_count, len(checked), now_ms)
            offset, batches = self._leo, []
            stamp = self.leader_epoch
            for pos, size, delta, max_ts, epoch, _ in checked:
                if assign_offsets:
                    _pack_offset(buf, pos, offset)
                    _pack_epoch(buf, pos + 12, stamp)
                    epoch = stamp
                batches.append(BatchInfo(pos, offset, offset + delta, max_ts, size, epoch))
                offset += delta + 1
            if not assign_offsets or stamp > self._epochs.latest_epoch:
                self._note_epochs(batches)
            position = segment.append(buf, batches, now_ms)
            if producers is not None:
                producer_log.apply_batches(self._producers, producers, [b.base_offset for b in batches], now_ms)
            if not self._unsynced or self._unsynced[-1] is not segment:
                self._unsynced.append(segment)
            self._leo = offset
            if self.hw_follows_log_end:
                self._hw, self._hw_position = offset, (segment.base_offset, segment.size)
            self._unflushed_records += record_count
            flush_due = self._flush_due(now_ms)
        if flush_due:
            self.flush()
        max_timestamp = max(batch.max_timestamp for batch in batches) if len(batches) > 1 else batches[0].max_timestamp
        return AppendResult(batches[0].base_offset, offset - 1, max_timestamp, offset, segment.base_offset,
                            position, len(buf), record_count)

    def _check_replica_offsets(self, checked: list[tuple]) -> None:
        offset = self._leo
        for pos, _, delta, _, _, base in checked:
            if base != offset:
                raise InvalidRecordError(f"replica batch at byte {pos} starts at offset {base}; "
                                         f"{self._topic}-{self._index} continues at {offset}")
            offset += delta + 1

    def _note_epochs(self, batches: list[BatchInfo]) -> None:
        """Checkpoint the start of each new epoch among `batches`, before they are written."""
        latest = self._epochs.latest_epoch
        for batch in batches:
            if batch.leader_epoch > latest:
                if batch.leader_epoch > self._current_epoch:
                    # the current epoch never goes back, even once emptying the log drops this entry
                    self._save_current_epoch(batch.leader_epoch)
                try:  # made durable with the batch by the next sync (_sync_once)
                    self._epochs.assign(batch.leader_epoch, batch.base_offset, durable=False)
                except OSError as exc:
                    raise KafkaStorageError(f"cannot write {self._epochs.path}: {exc.strerror or exc}") from exc
                latest = batch.leader_epoch

    def expire_producers(self, expiration_ms: int) -> int:
        """Forget idempotent producers silent for `expiration_ms` (producer.id.expiration.ms)."""
        with self._lock:
            return self._producers.expire(self._now_ms(), expiration_ms)

    # ------------------------------------------------------------------ leader epochs

    def epoch_for_offset(self, offset: int) -> int:
        """The leader epoch the record at `offset` was written in, -1 when unknown."""
        with self._lock:
            return self._epochs.epoch_for_offset(offset)

    def epoch_end_offset(self, epoch: int) -> tuple[int, int]:
        """(the largest epoch <= `epoch` in the log, the offset where it ended), (-1, -1) when
        none (KIP-101: what a leader tells a follower whose last fetched epoch is `epoch`)."""
        with self._lock:
            return self._epochs.end_offset_for(epoch, self._leo)

    @property
    def last_epoch(self) -> int:
        """The leader epoch of the last batch in the log, -1 when the log is empty."""
        with self._lock:
            return self._epochs.latest_epoch

    def set_leader_epoch(self, epoch: int) -> None:
        """Make `epoch` the current leader epoch, durably (a coordinator elected a leader).

        Epochs only move forward: ValueError below the current one. The checkpoint gains
        its entry when the first batch of the new epoch is appended.
        """
        with self._lock:
            if epoch < self.leader_epoch:
                raise ValueError(f"{self._topic}-{self._index}: leader epoch {epoch} is below the current "
                                 f"{self.leader_epoch}")
            if epoch == self._current_epoch:
                return
            self._save_current_epoch(epoch)

    def _save_current_epoch(self, epoch: int) -> None:
        try:
            write_current_epoch(self.directory, epoch)
        except OSError as exc:
            raise KafkaStorageError(f"cannot write the leader epoch in {self.directory}: "
                                    f"{exc.strerror or exc}") from exc
        self._current_epoch = epoch

    def _flush_due(self, now_ms: int) -> bool:
        cfg = self.config
        if cfg.flush_messages is None and cfg.flush_ms is None:
            return False
        return bool((cfg.flush_messages and self._unflushed_records >= cfg.flush_messages)
                    or (cfg.flush_ms is not None and now_ms - self._last_flush_ms >= cfg.flush_ms))

    def _maybe_roll(self, nbytes: int, nrecords: int, nbatches: int, now_ms: int) -> Segment:
        segment, cfg = self._segments[-1], self.config
        if segment.size == 0:
            return segment
        if (segment.size + nbytes > cfg.segment_bytes
                or segment.size + nbytes > INT32_MAX
                or (segment.roll_base_ms is not None and now_ms - segment.roll_base_ms >= cfg.segment_ms)
                or self._leo + nrecords - 1 - segment.base_offset > INT32_MAX
                or (segment.offset_index.entries + nbatches) * 8 > cfg.max_index_bytes
                or (segment.time_index.entries + nbatches + 1) * 12 > cfg.max_index_bytes):
            return self._roll()
        return segment

    def _roll(self) -> Segment:
        """Seal the active segment and start an empty one at the log end."""
        self._segments[-1].seal()
        try:
            segment = Segment(self.directory, self._leo, self.config.index_interval_bytes, create=True,
                                   files=self.files)
        except OSError as exc:
            raise KafkaStorageError(f"cannot create a segment in {self.directory}: {exc.strerror or exc}") from exc
        self._segments.append(segment)
        self._bases.append(segment.base_offset)
        self._dir_dirty = True
        producer_log.snapshot(self._producers, self.directory, self._leo)
        return segment

    # ------------------------------------------------------------------ durability

    def flush(self, up_to_offset: int | None = None) -> None:
        """Make everything appended so far (or below `up_to_offset`) durable."""
        self.sync_to(self._leo if up_to_offset is None else up_to_offset)

    def sync_to(self, offset: int) -> None:
        """Block until every offset below `offset` is on stable storage (group commit).

        Concurrent callers share fdatasyncs; raises KafkaStorageError if a sync failed.
        """
        self._commit.sync_to(min(offset, self._leo))

    def _sync_once(self) -> int:
        """One group-commit round. Failing to open a file (descriptors used up: EMFILE, ENFILE)
        is SyncNotStarted, which leaves the partition online and its sync to the next round;
        a failed fdatasync is for good (groupcommit.py)."""
        with self._lock:
            target = self._leo
            fds = []
            try:
                for segment in self._unsynced:
                    fds.append(segment.acquire())
            except OSError as exc:
                for shared in fds:
                    shared.release()
                raise SyncNotStarted(f"cannot open the files of {self._topic}-{self._index} to sync them: "
                                     f"{exc.strerror or exc}") from exc
            self._unsynced = []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            epochs_dirty = self._epochs.dirty
            self._unflushed_records, self._last_flush_ms = 0, self._now_ms()
        try:
            for shared in fds:
                self._fdatasync(shared.fd)
        finally:
            for shared in fds:
                shared.release()
        try:
            if epochs_dirty:
                self._epochs.sync()  # fsyncs the directory too
            elif dir_dirty:
                fsync_dir(self.directory)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            with self._lock:  # the segments are synced; the rest goes with the next round
                self._dir_dirty = self._dir_dirty or dir_dirty
                self._epochs.dirty = self._epochs.dirty or epochs_dirty
            raise SyncNotStarted(f"cannot open {self.directory} to sync it: {exc.strerror or exc}") from exc
        return target

    # ------------------------------------------------------------------ reads

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None,
             inline_bytes: int = INLINE_BYTES) -> FileSlice | None:
        """A slice of one segment file starting at the batch that contains `offset`.

        It ends at min(max_bytes, the committed bytes of that segment), committed meaning
        below `max_offset` (default: the high watermark; a batch containing it is excluded).
        The last batch may be cut at max_bytes, but a first batch larger than max_bytes is
        returned whole (KIP-74). None when nothing is there yet (offset at the end or at the
        bound). OffsetOutOfRangeError below log_start_offset or above log_end_offset. A slice of
        at most `inline_bytes` is read into memory and holds no descriptor (fileslice.py).
        """
        with self._lock:
            if not self._log_start <= offset <= self._leo:
                raise OffsetOutOfRangeError(f"offset {offset} is outside {self._topic}-{self._index}'s "
                                            f"range [{self._log_start}, {self._leo}]")
            if max_offset is None or max_offset == self._hw:
                bound, position = self._hw, self._hw_position
            else:
                bound = min(max_offset, self._leo)
                position = reader.position_of(self._segments, self._bases, bound)
            if offset >= bound:
                return None
            return reader.read_slice(self._segments, self._bases, offset, max_bytes, position, inline_bytes)

    def set_high_watermark(self, offset: int) -> None:
        """Set the high watermark (clamped to [0, log_end_offset]); reads stop below it."""
        with self._lock:
            self._hw = max(0, min(offset, self._leo))
            self._hw_position = reader.position_of(self._segments, self._bases, self._hw)

    def offset_for_timestamp(self, timestamp: int, max_offset: int | None = None) -> int | None:
        """Base offset of the first batch whose max timestamp >= `timestamp`, or None.

        Only batches below `max_offset` (default: the high watermark) count; the result is
        never below log_start_offset. Uses the time index, then scans batch headers.
        """
        with self._lock:
            bound = self._hw if max_offset is None else min(max_offset, self._leo)
            return reader.offset_for_timestamp(self._segments, timestamp, bound, self._log_start)

    def max_timestamp(self, max_offset: int | None = None) -> tuple[int, int] | None:
        """(largest timestamp, last offset of the first batch that carries it) among the
        batches from log_start_offset to `max_offset` (default: the high watermark), or None
        when no such batch has a timestamp (ListOffsets MAX_TIMESTAMP decodes that one batch
        for the exact record). Uses each segment's largest timestamp (its time index)."""
        with self._lock:
            bound = self._hw if max_offset is None else min(max_offset, self._leo)
            return reader.max_timestamp(self._segments, bound, self._log_start)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Seal the active segment and close every file (flush first to make it durable); the
        producer state is snapshotted at the log end, so the next load reads no batch."""
        with self._lock:
            if self._commit.failure is None and not self._segments[-1].closed:
                producer_log.snapshot(self._producers, self.directory, self._leo)
            try:
                self._segments[-1].seal()
            finally:
                for segment in self._segments:
                    segment.close()

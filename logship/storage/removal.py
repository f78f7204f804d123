"""`LogRemoval`: dropping parts of a partition's log (a part of Partition, which inherits it).

The tail: `truncate_to(offset)` cuts at the start of the batch holding `offset` and makes the
cut durable before it returns (a follower truncating by leader epoch, KIP-101). The head:
`delete_before(offset)` and `enforce_retention` (retention.py decides what expires) delete
whole segments from the front, and advance log_start_offset, which is made durable first
through on_log_start_change (the Store's checkpoint). Compacted segments: `replace_segments`
swaps sealed segments for the cleaned file compaction.py wrote, crash-safely (`.swap`).

Every one keeps the invariants stated in partition.py: at least one segment, contiguous
offsets that never repeat (an emptied log restarts with an empty segment at its end), and
log_start_offset <= high_watermark <= log_end_offset; the leader-epoch checkpoint loses its
entries past a cut tail and is trimmed from the front as the log start advances.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import CorruptRecordError, KafkaStorageError, OffsetOutOfRangeError
from . import producer_log, reader, retention
from .checkpoint import fsync_dir
from .segment import LOG_SUFFIX, Segment, segment_name

log = logging.getLogger("logship.storage")


class LogRemoval:
    """The removal half of Partition. All the state it changes is Partition's (its __init__
    makes it), under Partition's `_lock`: `_segments`, `_bases`, `_log_start`,
    `_log_start_moved`, `_leo`, `_hw`, `_hw_position`, `_epochs`, `_commit`, `_unsynced`,
    `_dir_dirty`, `_producers`; it also uses `directory`, `config`, `files`, `_fdatasync`, `_roll()`,
    `_now_ms()` and `_on_log_start_change`.
    """

    def truncate_to(self, offset: int) -> None:
        """Drop everything at and after `offset` (the tail), durably.

        The cut falls at the start of the batch containing `offset`, so a cut inside a batch
        drops the whole batch. Below log_start_offset, or when the cut takes the batch holding
        log_start_offset, the log is emptied and restarts at `offset` (log start = log end).
        """
        with self._lock:
            if offset >= self._leo:
                return
            if offset < self._log_start:
                self._empty_at(offset)
            else:
                i = reader.segment_at(self._bases, offset)
                for segment in self._segments[i + 1:]:
                    segment.delete()
                del self._segments[i + 1:]
                active = self._segments[-1]
                self._leo = active.truncate_to(offset)
                if active.size == 0:
                    active.roll_base_ms = None
                if self._leo < self._log_start:  # the cut took the batch that holds the log start
                    self._empty_at(offset)
            self._bases = [segment.base_offset for segment in self._segments]
            self._hw = min(max(self._hw, self._log_start), self._leo)
            self._hw_position = reader.position_of(self._segments, self._bases, self._hw)
            self._epochs.truncate_from_end(self._leo)
            self._commit.lower_to(self._leo)
            self._producers = producer_log.load(self.directory, self._segments, self._leo, self._now_ms())
            # make the cut durable now (and whatever earlier segments still wait for a sync)
            pending = [s for s in self._unsynced if s in self._segments]
            if self._segments[-1] not in pending:
                pending.append(self._segments[-1])
            try:
                for segment in pending:
                    segment.sync(self._fdatasync)
                fsync_dir(self.directory)
            except OSError as exc:
                self._commit.fail(exc)  # never retried: the partition goes offline
                raise KafkaStorageError(f"cannot sync {self.directory} after truncation: {exc}") from exc
            finally:
                self._unsynced, self._dir_dirty = [], False
        self._announce_log_start()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop the whole log, durably; it restarts empty at `offset` (a follower whose log end
        is below its leader's log start, or whose whole log diverged: Kafka's
        truncateFullyAndStartAt). The high watermark and log start become `offset`."""
        with self._lock:
            self._empty_at(offset)
            self._bases = [offset]
            self._hw, self._hw_position = offset, (offset, 0)
            self._commit.lower_to(offset)
            self._unsynced, self._dir_dirty = [], False
            try:
                fsync_dir(self.directory)
            except OSError as exc:
                self._commit.fail(exc)
                raise KafkaStorageError(f"cannot sync {self.directory} after emptying it: {exc}") from exc
        self._announce_log_start()

    def _empty_at(self, offset: int) -> None:
        """Drop every segment; the log restarts empty at `offset` (Kafka's truncateFullyAndStartAt)."""
        for segment in self._segments:
            segment.delete()
        self._segments = [Segment(self.directory, offset, self.config.index_interval_bytes, create=True,
                                  files=self.files)]
        self._log_start = self._leo = offset
        self._log_start_moved = True
        self._epochs.clear()
        self._producers.clear()  # as Kafka's truncateFullyAndStartAt: nothing of the old log is known
        producer_log.forget_snapshots(self.directory)

    def delete_before(self, offset: int) -> int:
        """Advance log_start_offset to `offset`; delete segments entirely below it.

        Returns the number of segments deleted. OffsetOutOfRangeError above the high watermark.
        The new log start is made durable first (on_log_start_change: the Store's checkpoint);
        if that fails (KafkaStorageError) it is set back and nothing is deleted.
        """
        with self._lock:
            if offset > self._hw:
                raise OffsetOutOfRangeError(f"cannot delete {self._topic}-{self._index} before {offset}: "
                                            f"the high watermark is {self._hw}")
            if offset <= self._log_start:
                return 0
            previous, self._log_start = self._log_start, offset
        try:
            self._on_log_start_change(self)
        except (OSError, KafkaStorageError) as exc:
            with self._lock:
                if self._log_start == offset:
                    self._log_start = previous
            raise KafkaStorageError(f"cannot record the new log start of {self._topic}-{self._index}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from exc
        with self._lock:
            deleted = self._delete_leading(retention.below_offset(self._segments, self._log_start))
            self._trim_epochs()
        self._announce_log_start()
        return deleted

    def _trim_epochs(self) -> None:
        """Trim the epoch checkpoint to the log start; a failed write only logs (the entries in
        memory are trimmed, and opening trims the file again from the log-start checkpoint)."""
        try:
            self._epochs.truncate_from_start(self._log_start)
        except OSError as exc:
            log.warning("cannot trim %s to offset %d (trimmed again on open): %s", self._epochs.path,
                        self._log_start, exc.strerror or exc)

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete segments past retention_ms or beyond retention_bytes; see retention.py."""
        with self._lock:
            now_ms = self._now_ms() if now_ms is None else now_ms
            cfg = self.config
            deleted = self._delete_leading(retention.expired_by_time(self._segments, cfg.retention_ms, now_ms, self._hw))
            deleted += self._delete_leading(retention.excess_by_size(self._segments, cfg.retention_bytes, self._hw))
        self._announce_log_start()
        return deleted

    def _delete_leading(self, count: int) -> int:
        if count <= 0:
            return 0
        if count >= len(self._segments):
            try:
                self._roll()  # keep an (empty) active segment at the log end
            except KafkaStorageError:
                count = len(self._segments) - 1  # disk full: free what we can without rolling
                if count <= 0:
                    return 0
        doomed = self._segments[:count]
        del self._segments[:count]
        del self._bases[:count]
        for segment in doomed:
            segment.delete()
        self._unsynced = [segment for segment in self._unsynced if segment not in doomed]
        self._dir_dirty = True
        if self._segments[0].base_offset > self._log_start:
            self._log_start, self._log_start_moved = self._segments[0].base_offset, True
            self._trim_epochs()
        producer_log.trim_snapshots(self.directory, self._segments[0].base_offset)
        return count

    def replace_segments(self, old: list[Segment], cleaned: Path) -> Segment | None:
        """Swap the consecutive sealed segments `old` for one file `cleaned` (log compaction).

        `cleaned` (`<base>.log.cleaned` in this directory, fdatasynced by the caller) holds
        batches spanning exactly old[0].base_offset to old[-1].next_offset with offsets kept
        (gaps allowed inside). The swap is crash-safe: rename to `<base>.log.swap` and fsync
        the directory (the commit point: recovery.py finishes an interrupted swap by deleting
        the segments it covers), delete the old files, rename to `<base>.log`, rebuild the
        indexes. Returns the new segment, or None (and `cleaned` is removed) when `old` is no
        longer a run of sealed segments of this log, e.g. retention or truncation got there first.
        """
        with self._lock:
            try:
                i = next(k for k, segment in enumerate(self._segments) if segment is old[0])
            except StopIteration:
                i = -1
            if (i < 0 or self._segments[i:i + len(old)] != old or i + len(old) >= len(self._segments)
                    or any(segment.closed for segment in old)):
                cleaned.unlink(missing_ok=True)
                return None
            base = old[0].base_offset
            swap = self.directory / f"{segment_name(base)}{LOG_SUFFIX}.swap"
            try:
                os.rename(cleaned, swap)
                fsync_dir(self.directory)
                for segment in old:
                    segment.delete()
                os.rename(swap, self.directory / f"{segment_name(base)}{LOG_SUFFIX}")
                segment = Segment.adopt(self.directory, base, self.config.index_interval_bytes, self.files)
                fsync_dir(self.directory)
            except (OSError, CorruptRecordError) as exc:
                self._commit.fail(exc)  # the directory is no longer what memory says: reopen to recover
                raise KafkaStorageError(f"cannot swap compacted segments into {self.directory}: {exc}") from exc
            self._segments[i:i + len(old)] = [segment]
            self._bases = [s.base_offset for s in self._segments]
            self._unsynced = [s for s in self._unsynced if s not in old]
            self._hw_position = reader.position_of(self._segments, self._bases, self._hw)
            return segment

    def _announce_log_start(self) -> None:
        """Run on_log_start_change outside the lock (it may take the Store's lock)."""
        with self._lock:
            moved, self._log_start_moved = self._log_start_moved, False
        if moved:
            self._on_log_start_change(self)

"""Sparse segment indexes in Apache Kafka's file formats: `OffsetIndex` and `TimeIndex`.

`.index` — 8-byte entries, big-endian: int32 offset relative to the segment's base offset,
int32 byte position in the `.log` file. An entry (L, P) says: the batch starting at byte P
has last offset L. Entries are strictly increasing in both fields.

`.timeindex` — 12-byte entries, big-endian: int64 timestamp, int32 relative offset. An entry
(T, O) says: the largest timestamp of the batches up to and including offset O is T.
Timestamps strictly increase and offsets never decrease from one entry to the next.

Entries are appended by the segment every `index_interval_bytes` of batches, so the files
stay ~1/500 of the log's size. Nothing of them is kept in memory but the entry count and the
last entry, and up to 256 entries not yet written: lookups binary-search the file with
os.pread. The files are plain appended files (no preallocation), exactly `entries * entry
size` bytes long once flushed, so nothing needs trimming on roll or close. They are never
fsynced: recovery rebuilds them from the log, and entries lost in a crash only make the
index sparser, which is still correct. Their descriptors come from the store's FileCache
(filecache.py) when needed, never held between uses; they are not memory-mapped.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from .filecache import SHARED_FILES, FileCache

log = logging.getLogger("logship.storage")


class _Index:
    """A file of fixed-size entries, searched with os.pread; appends are buffered.

    Up to FLUSH_ENTRIES new entries wait in memory (lookups see them) and go to the file
    in one write, or on flush()/close(). If that write fails they are dropped: a sparser
    index is still a correct one, and recovery would rebuild it anyway.
    """

    ENTRY: struct.Struct
    FLUSH_ENTRIES = 256

    def __init__(self, path: Path, base_offset: int, files: FileCache | None = None):
        self.path = path
        self.base_offset = base_offset
        self._file = (SHARED_FILES if files is None else files).file(path, os.O_RDWR | os.O_CREAT)
        try:
            size = path.stat().st_size
            self.existed = True
        except FileNotFoundError:
            size, self.existed = 0, False
        self.file_size = size
        self._disk_entries = self.entries = size // self.ENTRY.size
        self._pending: list[tuple] = []
        self._last = None
        if self.entries:  # read the last entry without keeping a descriptor open
            with open(path, "rb") as f:
                f.seek((self.entries - 1) * self.ENTRY.size)
                self._last = self.ENTRY.unpack(f.read(self.ENTRY.size))

    def _read(self, i: int) -> tuple:
        if i >= self._disk_entries:
            return self._pending[i - self._disk_entries]
        with self._file.acquire() as fd:
            raw = os.pread(fd, self.ENTRY.size, i * self.ENTRY.size)
        return self.ENTRY.unpack(raw)

    def _bisect(self, pred: Callable[[tuple], bool]) -> int:
        """Number of leading entries for which the monotone `pred` holds."""
        lo, hi = 0, self.entries
        while lo < hi:
            mid = (lo + hi) // 2
            if pred(self._read(mid)):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _append_raw(self, raws: Sequence[tuple]) -> None:
        if raws:
            self._pending.extend(raws)
            self.entries += len(raws)
            self._last = raws[-1]
            if len(self._pending) >= self.FLUSH_ENTRIES:
                self.flush()

    def flush(self) -> None:
        """Write the buffered entries (dropping them if the write fails)."""
        if not self._pending:
            return
        data = b"".join(self.ENTRY.pack(*raw) for raw in self._pending)
        view, pos = memoryview(data), self._disk_entries * self.ENTRY.size
        try:
            with self._file.acquire() as fd:
                while view:
                    n = os.pwrite(fd, view, pos)
                    view, pos = view[n:], pos + n
        except OSError as exc:
            log.warning("%s: dropping %d index entries (%s)", self.path, len(self._pending), exc)
            self._pending.clear()
            try:
                self.truncate_entries(self._disk_entries)
            except OSError:
                pass
            return
        self._pending.clear()
        self._disk_entries = self.entries
        self.file_size = self.entries * self.ENTRY.size

    def truncate_entries(self, count: int) -> None:
        """Keep the first `count` entries."""
        if count >= self._disk_entries:
            del self._pending[count - self._disk_entries:]
        else:
            self._pending.clear()
            with self._file.acquire() as fd:
                os.ftruncate(fd, count * self.ENTRY.size)
            self._disk_entries = count
            self.file_size = count * self.ENTRY.size
        self.entries = count
        self._last = self._read(count - 1) if count else None

    def reset(self) -> None:
        self.truncate_entries(0)
        self.existed = True

    def all_raw(self) -> list[tuple]:
        """Every entry, for sanity checks; reads the whole file."""
        size = self._disk_entries * self.ENTRY.size
        if size:
            with self._file.acquire() as fd:
                data = os.pread(fd, size, 0)
        else:
            data = b""
        return list(self.ENTRY.iter_unpack(data)) + list(self._pending)

    def close(self) -> None:
        """Write the buffered entries, then leave the file cache."""
        if not self._file.closed:
            self.flush()
        self._file.close()

    def delete(self) -> None:
        self._pending.clear()
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class OffsetIndex(_Index):
    """`.index`: (last offset of a batch, its byte position), sparse."""

    ENTRY = struct.Struct(">ii")

    @property
    def last_entry(self) -> tuple[int, int] | None:
        """(absolute offset, position) of the last entry, or None."""
        if self._last is None:
            return None
        return self.base_offset + self._last[0], self._last[1]

    def append_many(self, entries: Sequence[tuple[int, int]]) -> None:
        """Append (absolute offset, position) entries with one write."""
        base = self.base_offset
        self._append_raw([(offset - base, position) for offset, position in entries])

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry whose offset <= `offset`, else (base, 0).

        The batch containing `offset`, if any, starts at or after the returned position.
        """
        rel = offset - self.base_offset
        count = self._bisect(lambda entry: entry[0] <= rel)
        if count == 0:
            return self.base_offset, 0
        entry = self._read(count - 1)
        return self.base_offset + entry[0], entry[1]

    def truncate_to(self, offset: int) -> None:
        """Drop every entry whose offset >= `offset`."""
        rel = offset - self.base_offset
        self.truncate_entries(self._bisect(lambda entry: entry[0] < rel))

    def problem(self, log_size: int, full: bool) -> str | None:
        """Why this index cannot be trusted for a log of `log_size` bytes, or None."""
        if self.file_size % self.ENTRY.size:
            return f"{self.path.name}: size {self.file_size} is not a multiple of {self.ENTRY.size}"
        if self._last is not None and not (0 <= self._last[0] and 0 <= self._last[1] < log_size):
            return f"{self.path.name}: last entry {self._last} lies outside the log ({log_size} bytes)"
        if full:
            previous = (-1, -1)
            for entry in self.all_raw():
                if entry[0] <= previous[0] or entry[1] <= previous[1]:
                    return f"{self.path.name}: entries {previous} then {entry} do not increase"
                previous = entry
        return None


class TimeIndex(_Index):
    """`.timeindex`: (largest timestamp so far, offset of the batch holding it), sparse."""

    ENTRY = struct.Struct(">qi")

    @property
    def last_entry(self) -> tuple[int, int] | None:
        """(timestamp, absolute offset) of the last entry, or None."""
        if self._last is None:
            return None
        return self._last[0], self.base_offset + self._last[1]

    @property
    def last_timestamp(self) -> int:
        return -1 if self._last is None else self._last[0]

    def append_many(self, entries: Sequence[tuple[int, int]]) -> None:
        """Append (timestamp, absolute offset) entries with one write."""
        base = self.base_offset
        self._append_raw([(timestamp, offset - base) for timestamp, offset in entries])

    def last_below(self, timestamp: int) -> tuple[int, int] | None:
        """(timestamp, offset) of the greatest entry whose timestamp < `timestamp`, or None.

        Every batch up to that entry's offset has a max timestamp below `timestamp`.
        """
        count = self._bisect(lambda entry: entry[0] < timestamp)
        if count == 0:
            return None
        entry = self._read(count - 1)
        return entry[0], self.base_offset + entry[1]

    def truncate_to(self, offset: int) -> None:
        """Drop every entry whose offset >= `offset`."""
        rel = offset - self.base_offset
        self.truncate_entries(self._bisect(lambda entry: entry[1] < rel))

    def problem(self, next_offset: int, full: bool) -> str | None:
        """Why this index cannot be trusted for a segment ending before `next_offset`, or None."""
        if self.file_size % self.ENTRY.size:
            return f"{self.path.name}: size {self.file_size} is not a multiple of {self.ENTRY.size}"
        if self._last is not None and not 0 <= self._last[1] < next_offset - self.base_offset:
            return f"{self.path.name}: last entry {self._last} lies outside the segment"
        if full:
            previous = (-1 << 63, -1)
            for entry in self.all_raw():
                if entry[0] <= previous[0] or entry[1] < previous[1]:
                    return f"{self.path.name}: entries {previous} then {entry} are out of order"
                previous = entry
        return None

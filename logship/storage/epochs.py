"""A partition's leader epochs (KIP-101): the current one, and where each one started.

Two files in the partition directory, both in Kafka's checkpoint layout (checkpoint.py),
both replaced atomically:

* `leader-epoch-checkpoint` (`LeaderEpochCache`): "epoch startOffset" lines, the first
  offset written in each epoch. An entry is added when the first batch of a new epoch is
  appended (before the batch is written, so a crash leaves at worst an entry at the log
  end, which loading drops); entries are dropped by truncation (`truncate_from_end`), and
  the oldest are trimmed when the log start advances (`truncate_from_start`: the epoch
  spanning the new log start now starts there, as Kafka does). Invariants: epochs strictly
  increase and start offsets strictly increase from one entry to the next; every start
  offset lies in [log_start_offset, log_end_offset]. A file that is missing or unreadable
  while the log holds batches is rebuilt from the batch headers.
* `leader-epoch` (`read_current_epoch` / `write_current_epoch`): the partition's current
  leader epoch, the one a leader stamps on every batch it appends. Written when a
  coordinator moves it (`Partition.set_leader_epoch`) and when a replicated batch brings a
  newer epoch (so emptying the log, which drops the checkpoint's entries, never moves the
  current epoch back); while absent the current epoch is 0 (a single broker's). The current
  epoch is never below the checkpoint's latest epoch:

      0                      version
      1                      number of entries
      3                      the current leader epoch

Replication will answer OffsetsForLeaderEpoch from `end_offset_for`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import CorruptRecordError
from .checkpoint import VERSION, MalformedCheckpoint, read_epochs, write_atomic, write_epochs

FILE_NAME = "leader-epoch-checkpoint"
CURRENT_FILE_NAME = "leader-epoch"
log = logging.getLogger("logship.storage")


class LeaderEpochCache:
    """The entries of `leader-epoch-checkpoint`, in memory and on disk; see the module docstring.

    `found` says whether the file existed and was readable when the cache was opened.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / FILE_NAME
        self.found = self.path.exists()
        try:
            self.entries = read_epochs(self.path)
        except (MalformedCheckpoint, OSError) as exc:
            log.warning("ignoring unreadable %s (%s); rebuilding it from the batch headers", self.path, exc)
            self.entries, self.found = [], False

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def assign(self, epoch: int, start_offset: int, save: bool = True) -> bool:
        """Note that `epoch` starts at `start_offset`; returns True when that is news.

        Epochs below zero (batches never stamped by a leader) and epochs not above the latest
        are ignored, as Kafka does. Entries at or after `start_offset` are dropped first.
        """
        if epoch < 0 or epoch <= self.latest_epoch:
            return False
        self.entries = [e for e in self.entries if e[1] < start_offset] + [(epoch, start_offset)]
        if save:
            self.save()
        return True

    def rebuild(self, epochs: Iterable[tuple[int, int]]) -> None:
        """Replace every entry by those of (epoch, base offset) pairs met in log order, and save."""
        self.entries = []
        for epoch, offset in epochs:
            self.assign(epoch, offset, save=False)
        self.save()
        self.found = True

    def clear(self) -> None:
        """Forget every entry (the log was emptied)."""
        if self.entries:
            self.entries = []
            self.save()

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that start at or after `end_offset` (the log was cut there)."""
        kept = [e for e in self.entries if e[1] < end_offset]
        if kept != self.entries:
            self.entries = kept
            self.save()

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget epochs that ended before `start_offset`; the one spanning it now starts there."""
        before = [e for e in self.entries if e[1] <= start_offset]
        kept = [e for e in self.entries if e[1] > start_offset]
        if before:
            kept.insert(0, (before[-1][0], start_offset))
        if kept != self.entries:
            self.entries = kept
            self.save()

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch the record at `offset` was written in (the latest entry starting at or
        before it), -1 when none."""
        found = -1
        for epoch, start in self.entries:
            if start > offset:
                break
            found = epoch
        return found

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= `epoch`, the offset where it ended), or (-1, -1) when none.

        An epoch ends where the next one starts; the latest one ends at the log end offset.
        """
        for i in range(len(self.entries) - 1, -1, -1):
            found, _ = self.entries[i]
            if found <= epoch:
                end = self.entries[i + 1][1] if i + 1 < len(self.entries) else log_end_offset
                return found, end
        return -1, -1

    def save(self) -> None:
        write_epochs(self.path, self.entries)


def open_epoch_cache(directory: Path, segments: Sequence, log_start_offset: int, log_end_offset: int,
                     recovered: Iterable[tuple[int, int]]) -> LeaderEpochCache:
    """The epoch cache of a just-loaded log, made consistent with it.

    Entries past the log end (a torn tail that recovery cut) are dropped and epochs met in
    recovered batches (`recovered`) added; without a readable file the entries are rebuilt
    from every segment's batch headers. Entries below the log start are trimmed.
    """
    cache = LeaderEpochCache(directory)
    if cache.found:
        cache.truncate_from_end(log_end_offset)
        for epoch, start in recovered:
            cache.assign(epoch, start)
    else:
        cache.rebuild(_scan_epochs(segments))
    cache.truncate_from_start(log_start_offset)
    return cache


def _scan_epochs(segments: Sequence) -> Iterator[tuple[int, int]]:
    """(epoch, base offset) where each run of equally stamped batches starts, in log order."""
    latest = -1
    for segment in segments:
        try:
            for batch in segment.scan():
                if batch.leader_epoch != latest:
                    latest = batch.leader_epoch
                    yield latest, batch.base_offset
        except CorruptRecordError as exc:
            log.warning("%s: leader epochs read up to a damaged batch: %s", segment.path, exc)
            return


def read_current_epoch(directory: Path) -> int | None:
    """The epoch in `<directory>/leader-epoch`, None when there is no such file (or it is unreadable)."""
    path = Path(directory) / CURRENT_FILE_NAME
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return None
    if len(lines) != 3 or lines[0] != str(VERSION) or lines[1] != "1" or not lines[2].lstrip("-").isdigit():
        log.warning("ignoring malformed %s", path)
        return None
    return int(lines[2])


def write_current_epoch(directory: Path, epoch: int) -> None:
    """Replace `<directory>/leader-epoch` atomically and durably."""
    write_atomic(Path(directory) / CURRENT_FILE_NAME, f"{VERSION}\n1\n{epoch}\n")

"""`LeaderEpochCache`: leader epoch -> first offset written in it (KIP-101).

Persisted as `leader-epoch-checkpoint` in the partition directory (Kafka's format, see
checkpoint.py), rewritten atomically whenever it changes, which happens only when a new
epoch starts, on truncation and on log-start advances. Invariants: epochs strictly
increase and start offsets never decrease from one entry to the next; every start offset
lies in [log_start_offset, log_end_offset]. Replication will answer OffsetsForLeaderEpoch
from `end_offset_for`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .checkpoint import MalformedCheckpoint, read_epochs, write_epochs

FILE_NAME = "leader-epoch-checkpoint"
log = logging.getLogger("logship.storage")


class LeaderEpochCache:
    def __init__(self, directory: Path):
        self.path = Path(directory) / FILE_NAME
        try:
            self.entries = read_epochs(self.path)
        except (MalformedCheckpoint, OSError) as exc:
            log.warning("ignoring unreadable %s (%s); rebuilt from batches as they are read", self.path, exc)
            self.entries = []

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Note that `epoch` starts at `start_offset`; returns True when that is news.

        Epochs below zero (batches never stamped by a leader) and epochs not above the latest
        are ignored, as Kafka does. Entries at or after `start_offset` are dropped first.
        """
        if epoch < 0 or epoch <= self.latest_epoch:
            return False
        self.entries = [e for e in self.entries if e[1] < start_offset] + [(epoch, start_offset)]
        self._save()
        return True

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that start at or after `end_offset` (the log was cut there)."""
        kept = [e for e in self.entries if e[1] < end_offset]
        if kept != self.entries:
            self.entries = kept
            self._save()

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget epochs that ended before `start_offset`; the one spanning it now starts there."""
        before = [e for e in self.entries if e[1] <= start_offset]
        kept = [e for e in self.entries if e[1] > start_offset]
        if before:
            kept.insert(0, (before[-1][0], start_offset))
        if kept != self.entries:
            self.entries = kept
            self._save()

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

    def _save(self) -> None:
        write_epochs(self.path, self.entries)

"""`PartitionSlot`: a partition of the Store, known from its directory, loaded on first use.

The Store (store.py) keeps one slot per partition. Until the partition is loaded, the slot
holds what the checkpoints said at open (recovery point, log start offset), whether the
partition is clean (the clean-shutdown marker did not list it) and, once asked, its leader
epoch as its files say; the Store writes those values back into its checkpoints unchanged
(the partition's files have not changed). `lock` serialises loading; `gone` (deleted, or the
store closed) forbids it. Also here: reading the clean-shutdown marker, which lists the
partitions a clean close left unrecovered (checkpoint.py's offsets format).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .checkpoint import MalformedCheckpoint, read_epochs, read_offsets
from .epochs import FILE_NAME as EPOCHS_FILE, read_current_epoch
from .partition import Partition

log = logging.getLogger("logship.storage")


class PartitionSlot:
    """One partition of the store: its Partition once loaded, else what the checkpoints said."""

    __slots__ = ("topic", "index", "lock", "partition", "recovery_point", "log_start", "clean", "epoch", "gone")

    def __init__(self, topic: str, index: int, recovery_point: int = 0, log_start: int = 0, clean: bool = True):
        self.topic, self.index = topic, index
        self.lock = threading.Lock()
        self.partition: Partition | None = None
        self.recovery_point, self.log_start, self.clean = recovery_point, log_start, clean
        self.epoch: int | None = None  # leader epoch read from the files, while not loaded
        self.gone = False  # deleted, or the store closed: never load it again

    @classmethod
    def new(cls, topic: str, index: int) -> "PartitionSlot":
        """A partition just created: empty, clean, epoch 0."""
        slot = cls(topic, index)
        slot.epoch = 0
        return slot

    @property
    def recovery_point_now(self) -> int:
        return self.partition.recovery_point if self.partition is not None else self.recovery_point

    @property
    def log_start_now(self) -> int:
        return self.partition.log_start_offset if self.partition is not None else self.log_start


def read_marker(marker: Path) -> dict[tuple[str, int], int] | None:
    """The partitions a clean close left unrecovered ({} when none: also an empty marker, as
    older versions touched it), or None when there is no marker (or it is unreadable): the
    last stop was not clean and every partition is recovered."""
    try:
        if marker.stat().st_size == 0:
            return {}
        return read_offsets(marker)
    except FileNotFoundError:
        return None
    except (MalformedCheckpoint, OSError) as exc:
        log.warning("unreadable %s (%s): recovering every partition", marker.name, exc)
        return None


def stored_leader_epoch(directory: Path) -> int | None:
    """A partition's leader epoch as its files say (Partition.leader_epoch without loading
    it), or None when they cannot say: no readable checkpoint while its log holds batches."""
    try:
        entries = read_epochs(directory / EPOCHS_FILE)
        if not entries and any(p.stat().st_size for p in directory.glob("*.log")):
            return None
        return max(read_current_epoch(directory) or 0, entries[-1][0] if entries else -1)
    except (MalformedCheckpoint, OSError, ValueError):
        return None

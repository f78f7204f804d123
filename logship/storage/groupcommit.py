"""`GroupCommit`: many threads waiting for durability share one fdatasync.

`sync_to(offset)` returns once everything below `offset` is on stable storage. At most one
sync runs at a time. A caller whose offset is already durable returns at once; one that
arrives while a sync runs waits for it, and if that sync does not cover its offset, the
next sync, started by one of the waiters, covers every waiter that arrived meanwhile. The
`sync` callable does the work: it notes the log end offset, makes everything written so far
durable and returns that offset. Appends may go on while it runs.

A failed sync is not retried: after an fsync error Linux may have dropped the dirty pages,
so a second fsync could succeed without the data (PostgreSQL's "fsyncgate"). The object
turns failed for good and every later sync_to raises KafkaStorageError; the partition must
be reopened (recovery then finds what really reached the disk).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import KafkaStorageError


class SyncNotStarted(KafkaStorageError):
    """A sync that could not begin (opening a file it needed failed, e.g. EMFILE): nothing was
    lost, so the object does not turn failed; the caller gets the error and the next sync tries
    again."""


class GroupCommit:
    def __init__(self, sync: Callable[[], int], durable_offset: int = 0):
        self._sync = sync
        self._cond = threading.Condition()
        self._durable = durable_offset
        self._running = False
        self._cut_during_sync: int | None = None
        self.failure: BaseException | None = None
        self.syncs = 0

    @property
    def durable_offset(self) -> int:
        """Every offset below this is durable."""
        return self._durable

    def sync_to(self, offset: int) -> None:
        """Block until everything below `offset` is durable (one shared sync per round).

        Whoever runs the sync returns after it even if it covered less than `offset`
        (an offset beyond the log end); callers pass offsets they have appended.
        """
        with self._cond:
            while True:
                self._check()
                if self._durable >= offset:
                    return
                if not self._running:
                    break
                self._cond.wait()
            self._running = True
            self._cut_during_sync = None
        covered, failure = None, None
        try:
            covered = self._sync()
        except BaseException as exc:  # noqa: BLE001 - recorded, then raised to the caller
            failure = exc
        with self._cond:
            self._running = False
            self.syncs += 1
            if isinstance(failure, SyncNotStarted):
                pass
            elif failure is not None:
                self.failure = failure
            else:
                if self._cut_during_sync is not None:  # what it covered above the cut is gone
                    covered = min(covered, self._cut_during_sync)
                self._durable = max(self._durable, covered)
            self._cond.notify_all()
        if isinstance(failure, SyncNotStarted):
            raise failure
        self._check()

    def lower_to(self, offset: int) -> None:
        """The log was truncated to `offset`: nothing at or after it is durable any more."""
        with self._cond:
            self._durable = min(self._durable, offset)
            if self._running:
                cut = self._cut_during_sync
                self._cut_during_sync = offset if cut is None else min(cut, offset)

    def fail(self, exc: BaseException) -> None:
        """A sync done outside this object failed: turn failed for good, wake every waiter."""
        with self._cond:
            self.failure = self.failure or exc
            self._cond.notify_all()

    def _check(self) -> None:
        if self.failure is not None:
            raise KafkaStorageError(f"an earlier fdatasync failed ({self.failure}); "
                                    "the partition stays offline until the store is reopened") from self.failure

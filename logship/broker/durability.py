"""`DurableWaits`: acks=all for the event loop, in sync rounds of one fdatasync job per partition.

`until_durable(partition, offset)` gives a future that is done once every offset below
`offset` is on stable storage (None if that is already so): no task and no coroutine per
waiter. The first waiter of a partition starts a sync in a worker thread once the frames
already read have been handled (call_soon); it covers everything appended before it
started. When it ends, every waiter it covered is released and, if later waiters remain,
one more sync (the next round) starts for all of them. Requests arriving during a sync
thus share the next one, and each round costs a single thread hop however many requests
it serves.

A future fails with the sync's error (KafkaStorageError), or, for a waiter whose offset
is above the log end once a round is over (the log was truncated below it, as a follower's
truncation does), with NotLeaderError: that offset can never become durable, so it is not
waited for again. A future nobody will take (its connection is gone) may be cancelled.

In a cluster, an acks=all write to a replicated partition waits for the high watermark
instead (`turn`'s until_replicated, replication/manager.py), which never passes this
broker's durable offset, so it implies the fdatasync above.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import KafkaStorageError, LogshipError, NotLeaderError
from ..storage import Partition

log = logging.getLogger("logship.broker")


class DurableWaits:
    """`on_sync(seconds)`, if given, is told how long each sync round took."""

    def __init__(self, on_sync=None) -> None:
        self._waiters: dict[Partition, list[tuple[int, asyncio.Future]]] = {}
        self._syncing: set[Partition] = set()
        self._on_sync = on_sync

    def until_durable(self, partition: Partition, offset: int) -> asyncio.Future | None:
        """A future done once every offset below `offset` is on stable storage; None if it is
        already. It fails with KafkaStorageError, or NotLeaderError (truncated below `offset`)."""
        if partition.recovery_point >= offset:
            return None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiters.setdefault(partition, []).append((offset, future))
        if partition not in self._syncing:
            self._syncing.add(partition)
            loop.call_soon(self._start, partition)  # after the frames already read: one round for them all
        return future

    def _start(self, partition: Partition) -> None:
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, partition.sync_to, partition.log_end_offset)
        started = loop.time()
        job.add_done_callback(lambda done: self._finished(partition, done, loop.time() - started))

    def _finished(self, partition: Partition, job: asyncio.Future, seconds: float = 0.0) -> None:
        self._syncing.discard(partition)
        if self._on_sync is not None:
            self._on_sync(seconds)
        failure = job.exception() if not job.cancelled() else asyncio.CancelledError()
        durable, end, waiting = partition.recovery_point, partition.log_end_offset, []
        for offset, future in self._waiters.pop(partition, []):
            if future.done():
                continue
            if failure is not None:
                future.set_exception(failure)
            elif offset <= durable:
                future.set_result(None)
            elif offset > end:
                future.set_exception(NotLeaderError(
                    f"{partition.topic}-{partition.index} was truncated to offset {end} before offset "
                    f"{offset - 1} became durable; the records must be sent again"))
            else:
                waiting.append((offset, future))
        if waiting:
            self._waiters[partition] = waiting
            self._syncing.add(partition)
            self._start(partition)

    def turn(self, reply, respond, until_replicated=None) -> "DurableTurn":
        """What to queue for a reply with `sync` writes: waits for all of them, in one round each.

        A write with `replicated_within_ms` (acks=all in a cluster) waits instead for
        `until_replicated(partition, offset, timeout_ms)` (replication/: the high watermark,
        which implies durable here) where that gives a future; else for durability alone."""
        futures = []
        for write in reply.sync:
            future = None
            if until_replicated is not None and write.replicated_within_ms is not None:
                future = until_replicated(write.partition, write.offset, write.replicated_within_ms)
            futures.append(future if future is not None else self.until_durable(write.partition, write.offset))
        return DurableTurn(reply, respond, futures)


class DurableTurn:
    """A reply in a connection's queue whose response may go out only once its writes are
    durable (`Reply.sync`): one future per write from `DurableWaits.until_durable`. A write
    whose future failed has its response entries' error_code set (the client resends)."""

    __slots__ = ("reply", "respond", "futures")

    def __init__(self, reply, respond, futures: list[asyncio.Future | None]):
        self.reply, self.respond, self.futures = reply, respond, futures

    @property
    def ready(self) -> bool:
        return all(future is None or future.done() for future in self.futures)

    async def parts(self) -> list | None:
        """The response's parts once every write is durable (None for acks=0)."""
        pending = [future for future in self.futures if future is not None and not future.done()]
        if pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                self.drop()
                raise
        for write, future in zip(self.reply.sync, self.futures):
            failure = None if future is None else future.exception()
            if isinstance(failure, LogshipError):
                if isinstance(failure, KafkaStorageError):
                    log.error("sync of %s-%d failed: %s", write.partition.topic, write.partition.index, failure)
                write.fail(failure.code if failure.code is not None else -1, str(failure))
            elif failure is not None:
                raise failure
        return None if self.reply.body is None else self.respond.parts(self.reply.body)

    def drop(self) -> None:
        """Its connection is gone: nobody will take the outcome."""
        for future in self.futures:
            if future is not None:
                future.cancel()

"""`DurableWaits`: acks=all for the event loop, with one fdatasync job in flight per partition.

A produce with acks=all awaits `wait(partition, offset)`. The first waiter of a partition
starts a sync in a worker thread that covers everything appended before it started; when it
ends, every waiter it covered is released and, if later waiters remain, one more sync starts
for all of them. Requests arriving during a sync thus share the next one, and each sync
costs a single thread hop however many requests it serves.
"""

from __future__ import annotations

import asyncio

from ..storage import Partition


class DurableWaits:
    def __init__(self) -> None:
        self._waiters: dict[Partition, list[tuple[int, asyncio.Future]]] = {}
        self._syncing: set[Partition] = set()

    async def wait(self, partition: Partition, offset: int) -> None:
        """Return once every offset below `offset` is on stable storage; KafkaStorageError if not."""
        if partition.recovery_point >= offset:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(partition, []).append((offset, future))
        if partition not in self._syncing:
            self._start(partition)
        await future

    def _start(self, partition: Partition) -> None:
        self._syncing.add(partition)
        job = asyncio.get_running_loop().run_in_executor(None, partition.sync_to, partition.log_end_offset)
        job.add_done_callback(lambda done: self._finished(partition, done))

    def _finished(self, partition: Partition, job: asyncio.Future) -> None:
        self._syncing.discard(partition)
        failure = job.exception() if not job.cancelled() else asyncio.CancelledError()
        durable, waiting = partition.recovery_point, []
        for offset, future in self._waiters.pop(partition, []):
            if future.done():
                continue
            if failure is not None:
                future.set_exception(failure)
            elif offset <= durable:
                future.set_result(None)
            else:
                waiting.append((offset, future))
        if waiting:
            self._waiters[partition] = waiting
            self._start(partition)

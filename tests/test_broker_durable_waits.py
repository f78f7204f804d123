"""DurableWaits (broker/durability.py): acks=all waiters share sync rounds, and a waiter whose
offset the log was truncated below fails instead of syncing for ever. A real Partition with a
counting fdatasync; the event loop of the broker, no sockets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from logship.broker.durability import DurableWaits
from logship.errors import NotLeaderError
from logship.storage import Partition
from storage_batches import make_batch


class GatedSync:
    """An fdatasync stand-in that counts its calls and, while `gate` is clear, waits for it."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.started.set()
        assert self.gate.wait(10)


def _partition(tmp_path, sync: GatedSync, batches: int) -> Partition:
    partition = Partition("t", 0, tmp_path / "t-0", fdatasync=sync)
    for _ in range(batches):
        partition.append_batches(make_batch(1))
    return partition


def test_waiters_arriving_during_a_sync_share_the_next_one(tmp_path):
    sync = GatedSync()
    partition = _partition(tmp_path, sync, 1)

    async def main():
        waits = DurableWaits()
        sync.gate.clear()
        first = waits.until_durable(partition, 1)
        await asyncio.get_running_loop().run_in_executor(None, sync.started.wait, 10)
        later = []
        for _ in range(20):
            partition.append_batches(make_batch(1))
            later.append(waits.until_durable(partition, partition.log_end_offset))
        calls_before = sync.calls
        sync.gate.set()
        await asyncio.wait_for(asyncio.gather(first, *later), 10)
        assert partition.recovery_point == 21
        assert waits.until_durable(partition, 21) is None  # already durable: nothing to wait for
        return sync.calls - calls_before

    partition_files = 2  # a round syncs the segment's .log and its directory, at most
    assert asyncio.run(main()) <= partition_files  # one round for the twenty, not twenty
    partition.close()


@pytest.mark.parametrize("during_sync", [False, True])
def test_a_waiter_truncated_below_its_offset_fails_instead_of_syncing_for_ever(tmp_path, during_sync):
    sync = GatedSync()
    partition = _partition(tmp_path, sync, 10)

    async def main():
        waits = DurableWaits()
        loop = asyncio.get_running_loop()
        if during_sync:
            sync.gate.clear()
            future = waits.until_durable(partition, 10)
            await loop.run_in_executor(None, sync.started.wait, 10)
            truncating = loop.run_in_executor(None, partition.truncate_to, 5)
            await asyncio.sleep(0.05)
            sync.gate.set()
            await truncating
        else:
            partition.truncate_to(5)
            future = waits.until_durable(partition, 10)
        calls = sync.calls
        with pytest.raises(NotLeaderError, match="truncated to offset 5"):
            await asyncio.wait_for(future, 5)
        assert sync.calls - calls < 10  # no endless restarting of syncs
        assert await asyncio.wait_for(waits.until_durable(partition, 5) or asyncio.sleep(0), 5) is None

    asyncio.run(main())
    partition.close()


def test_waiters_of_one_loop_step_start_a_single_round(tmp_path):
    sync = GatedSync()
    partition = _partition(tmp_path, sync, 0)

    async def main():
        waits = DurableWaits()
        futures = []
        for _ in range(10):  # as requests read in one go are handled before the loop goes on
            partition.append_batches(make_batch(1))
            futures.append(waits.until_durable(partition, partition.log_end_offset))
            time.sleep(0.01)  # handling takes time: a sync started at once would cover less
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert partition.recovery_point == 10

    asyncio.run(main())
    assert sync.calls == 1, sync.calls  # one round: one fdatasync of the segment
    partition.close()

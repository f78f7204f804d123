"""The follower fetcher's rounds against a scripted leader: what it reports as fetch_offset
(the leader's high watermark counts on it) after a failed fdatasync and after a divergence
with no epoch in common. The partitions are real (storage.Partition, fdatasync injected);
the leader is a stand-in for the PeerLink that records each Fetch and answers from a script."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from logship.errors import LogshipError
from logship.storage import Partition
from logship.broker.replication.fetcher import ReplicaFetcher

from storage_batches import make_batch, with_offset

KEY = ("t", 0)


class ScriptedLeader:
    """Stands for the link to the leader: answers each Fetch with the next scripted partition
    entry (an empty one once the script is done) and keeps every request body."""

    closed = False

    def __init__(self, *entries: dict):
        self.entries = list(entries)
        self.requests: list[dict] = []

    async def request(self, api_key, version, body, timeout):
        self.requests.append(body)
        entry = {"partition_index": 0, "error_code": 0, "high_watermark": 0, "log_start_offset": 0,
                 "records": b""}
        if self.entries:
            entry.update(self.entries.pop(0))
        return {"error_code": 0, "responses": [{"topic": "t", "partitions": [entry]}]}

    def fetch_offsets(self) -> list[int]:
        return [p["fetch_offset"] for body in self.requests for t in body["topics"] for p in t["partitions"]]


def _fetcher(partition: Partition, leader: ScriptedLeader) -> ReplicaFetcher:
    manager = SimpleNamespace(store=SimpleNamespace(partition=lambda topic, index: partition), node_id=2)
    fetcher = ReplicaFetcher(manager, leader=1, host="127.0.0.1", port=0)
    fetcher.partitions[KEY] = 7
    fetcher._link = leader
    return fetcher


def _batches(start: int, count: int, epoch: int) -> bytes:
    return b"".join(with_offset(make_batch(), start + i, epoch) for i in range(count))


async def _rounds(fetcher: ReplicaFetcher, count: int) -> None:
    for _ in range(count):
        if not fetcher.partitions:
            return
        try:
            await fetcher._round()
        except LogshipError:  # what _run does: back off, then the next round
            pass


def test_failed_fdatasync_is_never_reported_as_durable(tmp_path, caplog):
    failing = {"on": False}

    def fdatasync(fd):
        if failing["on"]:
            raise OSError(5, "Input/output error")

    partition = Partition("t", 0, tmp_path / "t-0", fdatasync=fdatasync)
    partition.hw_follows_log_end = False
    partition.append_replica_batch(_batches(0, 10, epoch=7))
    partition.flush()
    failing["on"] = True
    leader = ScriptedLeader({"records": _batches(10, 10, epoch=7), "high_watermark": 10})
    fetcher = _fetcher(partition, leader)
    asyncio.run(_rounds(fetcher, 3))
    assert partition.offline and partition.recovery_point == 10 and partition.log_end_offset == 20
    assert leader.fetch_offsets() and max(leader.fetch_offsets()) <= 10, leader.fetch_offsets()
    assert KEY not in fetcher.partitions  # offline: no longer fetched, not retried forever
    assert "offline" in caplog.text


def test_sync_that_could_not_start_is_retried_before_reporting(tmp_path):
    partition = Partition("t", 0, tmp_path / "t-0")
    partition.hw_follows_log_end = False
    partition.append_replica_batch(_batches(0, 4, epoch=7))  # appended, not synced (as a SyncNotStarted leaves it)
    assert partition.recovery_point == 0
    leader = ScriptedLeader()
    asyncio.run(_rounds(_fetcher(partition, leader), 1))
    assert leader.fetch_offsets() == [4] and partition.recovery_point == 4


@pytest.mark.parametrize("leader_end", [20, 3])
def test_no_common_epoch_never_moves_ahead_of_the_log(tmp_path, leader_end):
    """The local log holds only epoch 5; the leader says its largest epoch <= 5 is 2, ending at
    `leader_end`: every local batch below that differs from the leader's, none may be
    reported, and the log never restarts beyond what it holds."""
    partition = Partition("t", 0, tmp_path / "t-0")
    partition.hw_follows_log_end = False
    partition.append_replica_batch(_batches(0, 10, epoch=5))
    partition.flush()
    leader = ScriptedLeader({"diverging_epoch": {"epoch": 2, "end_offset": leader_end}, "high_watermark": 2})
    asyncio.run(_rounds(_fetcher(partition, leader), 2))
    assert partition.log_end_offset == 0 and partition.last_epoch == -1
    assert leader.fetch_offsets() == [10, 0]


"""The follower fetcher's rounds against a scripted leader: what it reports as durable (its
fetch_offset, or the smaller durable offset of a pipelined fetch: the leader's high watermark
counts on it) after a failed fdatasync, while catching up with a sync in flight, and after a
divergence with no epoch in common. The partitions are real (storage.Partition, fdatasync injected);
the leader is a stand-in for the PeerLink that records each Fetch and answers from a script."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from logship.broker.fetch import durable_offset, durable_offset_field
from logship.errors import LogshipError
from logship.protocol import ApiKey, decode_request, encode_request
from logship.protocol.codec import TAGGED_FIELDS_KEY
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


def _failing_after_ten(tmp_path) -> Partition:
    """A follower's partition holding offsets 0-9 durably, whose every later fdatasync fails."""
    failing = {"on": False}

    def fdatasync(fd):
        if failing["on"]:
            raise OSError(5, "Input/output error")

    partition = Partition("t", 0, tmp_path / "t-0", fdatasync=fdatasync)
    partition.hw_follows_log_end = False
    partition.append_replica_batch(_batches(0, 10, epoch=7))
    partition.flush()
    failing["on"] = True
    return partition


def test_failed_fdatasync_is_never_reported_as_durable(tmp_path, caplog):
    partition = _failing_after_ten(tmp_path)
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



def _reported(body: dict) -> list[int]:
    """What one Fetch told the leader is durable, per partition (as the leader reads it)."""
    return [durable_offset(p) for t in body["topics"] for p in t["partitions"]]


class GatedLeader(ScriptedLeader):
    """A ScriptedLeader that also notes, at each Fetch, what the partition holds durably then,
    and opens `gate` (the fdatasync under test waits on it) once it has seen `open_after` fetches."""

    def __init__(self, partition: Partition, gate: threading.Event, open_after: int, *entries: dict):
        super().__init__(*entries)
        self.partition, self.gate, self.open_after = partition, gate, open_after
        self.durable_then: list[int] = []

    async def request(self, api_key, version, body, timeout):
        self.durable_then.append(self.partition.recovery_point)
        answer = await super().request(api_key, version, body, timeout)
        if len(self.requests) >= self.open_after:
            self.gate.set()
        return answer


def test_catching_up_reads_on_while_syncing_and_reports_only_what_is_durable(tmp_path):
    gate = threading.Event()
    partition = Partition("t", 0, tmp_path / "t-0", fdatasync=lambda fd: gate.wait(30))
    partition.hw_follows_log_end = False
    leader = GatedLeader(partition, gate, 2,
                         {"records": _batches(0, 10, epoch=7), "high_watermark": 30},
                         {"records": _batches(10, 10, epoch=7), "high_watermark": 30})
    asyncio.run(_rounds(_fetcher(partition, leader), 4))
    # the 2nd fetch went out while the 1st append's sync waited: it read on from 10, reported 0
    assert leader.fetch_offsets()[:2] == [0, 10]
    assert _reported(leader.requests[1]) == [0] and leader.durable_then[1] == 0
    assert leader.requests[1]["max_wait_ms"] == 0
    for body, durable in zip(leader.requests, leader.durable_then):
        assert all(reported <= durable for reported in _reported(body)), (leader.requests, leader.durable_then)
    assert partition.log_end_offset == partition.recovery_point == 20
    assert _reported(leader.requests[-1]) == [20]


def test_caught_up_follower_syncs_before_it_fetches(tmp_path):
    """Not catching up (the leader's high watermark reached, a small answer): the next fetch
    waits for the sync and long-polls as before."""
    partition = Partition("t", 0, tmp_path / "t-0")
    partition.hw_follows_log_end = False
    leader = ScriptedLeader({"records": _batches(0, 10, epoch=7), "high_watermark": 10})
    asyncio.run(_rounds(_fetcher(partition, leader), 2))
    assert leader.fetch_offsets() == [0, 10] and _reported(leader.requests[1]) == [10]
    assert leader.requests[1]["max_wait_ms"] > 0 and TAGGED_FIELDS_KEY not in str(leader.requests[1])


def test_failed_pipelined_sync_is_never_reported(tmp_path, caplog):
    partition = _failing_after_ten(tmp_path)
    leader = ScriptedLeader({"records": _batches(10, 10, epoch=7), "high_watermark": 40},
                            {"records": _batches(20, 10, epoch=7), "high_watermark": 40})
    fetcher = _fetcher(partition, leader)
    asyncio.run(_rounds(fetcher, 4))
    assert partition.offline and partition.recovery_point == 10
    assert max(offset for body in leader.requests for offset in _reported(body)) <= 10, leader.requests
    assert partition.log_end_offset == 20  # the answer that came while the sync failed is not appended
    assert KEY not in fetcher.partitions and "offline" in caplog.text


@pytest.mark.parametrize("tagged, expected", [(None, 50), (20, 20), (80, 50)])
def test_leader_reads_the_durable_offset_of_a_replica_fetch(tagged, expected):
    partition = {"partition": 0, "current_leader_epoch": 1, "fetch_offset": 50, "last_fetched_epoch": 1,
                 "log_start_offset": 0, "partition_max_bytes": 1024}
    if tagged is not None:
        partition.update(durable_offset_field(tagged))
    body = {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1024, "isolation_level": 0,
            "session_id": 0, "session_epoch": -1, "topics": [{"topic": "t", "partitions": [partition]}],
            "forgotten_topics_data": [], "rack_id": ""}
    decoded = decode_request(encode_request(ApiKey.FETCH, 12, 1, "replica", body)[4:]).body
    assert durable_offset(decoded["topics"][0]["partitions"][0]) == expected

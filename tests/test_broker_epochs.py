"""Leader epochs end to end: whatever the client, every batch a real `logship serve` stores
carries the partition's leader epoch, and the leader-epoch checkpoint says where each epoch
starts; both hold across a clean restart and across a kill -9 with a torn tail (recovery)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from kafka_clients import consume, dataset, produce
from logship import records
from logship.broker import fetch, offsets, topics
from logship.broker.broker import Broker
from logship.broker.config import BrokerConfig
from logship.errors import FencedLeaderEpochError, UnknownLeaderEpochError
from logship.protocol import ApiKey, encode_response
from logship.storage import Partition, Store

pytestmark = pytest.mark.integration

TOPIC = "epochs"


def logship(*args, input: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", *map(str, args)], input=input, capture_output=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def stored(directory: Path) -> list[tuple[int, int, int]]:
    """(base offset, next offset, partitionLeaderEpoch) of every batch in the segment files."""
    out = []
    for path in sorted(directory.glob("*.log")):
        for pos, header in records.iter_batches(path.read_bytes()):
            assert records.crc_is_valid(path.read_bytes(), pos, header.size)
            out.append((header.base_offset, header.next_offset, header.partition_leader_epoch))
    return out


def produce_all(address: str, tag: str) -> int:
    """Produce with kcat, logship's producer (lines and --json), kafka-python, confluent-kafka
    and aiokafka; returns how many records were sent."""
    produce("kcat", address, TOPIC, dataset(tag + "-kcat", 20))
    result = logship("produce", TOPIC, "-b", address, input=b"".join(b"%s-line-%d\n" % (tag.encode(), i)
                                                                     for i in range(30)))
    assert result.returncode == 0, result.stderr
    lines = b"".join(json.dumps({"key": "k", "value": f"{tag}-json-{i}"}).encode() + b"\n" for i in range(5))
    result = logship("produce", TOPIC, "-b", address, "--json", input=lines)
    assert result.returncode == 0, result.stderr
    produce("kafka-python", address, TOPIC, dataset(tag + "-kp", 10))
    produce("confluent", address, TOPIC, dataset(tag + "-ck", 10))
    produce("aiokafka", address, TOPIC, dataset(tag + "-aio", 10))
    return 20 + 30 + 5 + 10 + 10 + 10


def broker_epochs(data_dir: Path) -> tuple[int, int]:
    """(Metadata v7's leader_epoch, ListOffsets v4 latest's leader_epoch) of partition 0, asked of
    a Broker in this process over `data_dir` (the broker still advertises versions without them)."""
    with Store(data_dir) as store:
        broker = Broker(store, BrokerConfig())
        meta = topics.metadata(broker, 7, {"topics": [{"name": TOPIC}], "allow_auto_topic_creation": False}).body
        listed = offsets.list_offsets(broker, 4, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": TOPIC, "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]}).body
    return meta["topics"][0]["partitions"][0]["leader_epoch"], listed["topics"][0]["partitions"][0]["leader_epoch"]


def test_handlers_report_and_fence_the_partition_epoch(tmp_path):
    with Store(tmp_path / "d") as store:
        store.create_topic(TOPIC, 1)
        p = store.partition(TOPIC, 0)
        p.append_batches(records.build_batch([(1_000, None, b"a", ())]))
        p.set_leader_epoch(2)
        p.append_batches(records.build_batch([(2_000, None, b"b", ())]))
        broker = Broker(store, BrokerConfig())
        meta = topics.metadata(broker, 7, {"topics": [{"name": TOPIC}], "allow_auto_topic_creation": False}).body
        assert meta["topics"][0]["partitions"][0]["leader_epoch"] == 2
        encode_response(ApiKey.METADATA, 7, 1, meta)

        def listed(timestamp, current=-1):
            body = offsets.list_offsets(broker, 4, {"replica_id": -1, "isolation_level": 0, "topics": [
                {"name": TOPIC, "partitions": [{"partition_index": 0, "current_leader_epoch": current,
                                                "timestamp": timestamp}]}]}).body
            encode_response(ApiKey.LIST_OFFSETS, 4, 1, body)
            entry = body["topics"][0]["partitions"][0]
            return entry["error_code"], entry["offset"], entry["leader_epoch"]

        assert listed(-1) == (0, 2, 2) and listed(-2) == (0, 0, 0)
        assert listed(1_500) == (0, 1, 2) and listed(500) == (0, 0, 0) and listed(9_000) == (0, -1, -1)
        assert listed(-1, current=2) == (0, 2, 2)
        assert listed(-1, current=1)[0] == FencedLeaderEpochError.code
        assert listed(-1, current=3)[0] == UnknownLeaderEpochError.code

        def fetched(current):
            body = fetch.FetchWait(broker, {"max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "topics": [
                {"topic": TOPIC, "partitions": [{"partition": 0, "current_leader_epoch": current, "fetch_offset": 0,
                                                 "partition_max_bytes": 1 << 20}]}]}).plan().body
            return body["responses"][0]["partitions"][0]

        assert fetched(2)["error_code"] == 0 and fetched(-1)["error_code"] == 0
        fenced = fetched(1)
        assert fenced["error_code"] == FencedLeaderEpochError.code
        assert fenced["current_leader"] == {"leader_id": BrokerConfig().node_id, "leader_epoch": 2}
        assert fetched(5)["error_code"] == UnknownLeaderEpochError.code


def test_every_client_s_batches_are_stamped_and_checkpointed(start_broker, tmp_path):
    data_dir = tmp_path / "data"
    broker = start_broker("--partitions", "1", data_dir=data_dir)
    part = data_dir / f"{TOPIC}-0"
    sent = produce_all(broker.address, "a")
    batches = stored(part)
    assert len(batches) >= 5 and {epoch for _, _, epoch in batches} == {0}
    assert (part / "leader-epoch-checkpoint").read_text() == "0\n1\n0 0\n"
    dump = logship("dump", sorted(part.glob("*.log"))[0])
    assert dump.returncode == 0 and dump.stdout.count(b"partitionLeaderEpoch: 0 ") == len(batches)

    # a clean restart keeps it; a coordinator (here: the store, with the broker stopped) moves the epoch
    assert broker.stop() == 0
    assert broker_epochs(data_dir) == (0, 0)
    p = Partition(TOPIC, 0, part)
    p.set_leader_epoch(3)
    p.close()
    assert broker_epochs(data_dir) == (3, 3)
    broker = start_broker("--partitions", "1", data_dir=data_dir)
    end_a = batches[-1][1]
    sent += produce_all(broker.address, "b")
    batches = stored(part)
    assert [epoch for base, _, epoch in batches if base < end_a] == [0] * len([b for b in batches if b[0] < end_a])
    assert {epoch for base, _, epoch in batches if base >= end_a} == {3}
    assert (part / "leader-epoch-checkpoint").read_text() == f"0\n2\n0 0\n3 {end_a}\n"
    assert len(consume("kcat", broker.address, TOPIC, sent)) == sent  # clients fetch under epoch 3

    # kill -9, a torn tail inside the last batch: recovery cuts it, the checkpoint stays consistent
    broker.kill()
    last = sorted(part.glob("*.log"))[-1]
    size = last.stat().st_size
    with open(last, "r+b") as f:
        f.truncate(size - 5)
    broker = start_broker("--partitions", "1", data_dir=data_dir)
    after = stored(part)
    assert after == batches[:-1]
    assert (part / "leader-epoch-checkpoint").read_text() == f"0\n2\n0 0\n3 {end_a}\n"
    produce("kcat", broker.address, TOPIC, dataset("c", 5))
    assert stored(part)[-1][2] == 3
    assert broker.stop() == 0
    assert broker_epochs(data_dir) == (3, 3)


def test_a_kill_9_inside_a_new_epoch_s_first_batch_drops_its_entry(start_broker, tmp_path):
    data_dir = tmp_path / "data"
    broker = start_broker("--partitions", "1", data_dir=data_dir)
    part = data_dir / f"{TOPIC}-0"
    result = logship("produce", TOPIC, "-b", broker.address, input=b"one\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert broker.stop() == 0
    p = Partition(TOPIC, 0, part)
    p.set_leader_epoch(1)
    p.close()
    broker = start_broker("--partitions", "1", data_dir=data_dir)
    result = logship("produce", TOPIC, "-b", broker.address, "--acks", "all", input=b"three\n")
    assert result.returncode == 0, result.stderr
    assert (part / "leader-epoch-checkpoint").read_text() == "0\n2\n0 0\n1 2\n"
    broker.kill()
    last = sorted(part.glob("*.log"))[-1]
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size - 1)  # epoch 1's only batch is torn
    broker = start_broker("--partitions", "1", data_dir=data_dir)
    assert stored(part) == [(0, 2, 0)]
    assert (part / "leader-epoch-checkpoint").read_text() == "0\n1\n0 0\n"
    result = logship("produce", TOPIC, "-b", broker.address, input=b"three again\n")
    assert result.returncode == 0, result.stderr
    assert stored(part) == [(0, 2, 0), (2, 3, 1)]  # the current epoch (1) was kept
    assert (part / "leader-epoch-checkpoint").read_text() == "0\n2\n0 0\n1 2\n"

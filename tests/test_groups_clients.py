"""Consumer groups against a real `logship serve`, with real clients: confluent-kafka
(librdkafka), kafka-python, kcat and aiokafka. One thread or process per group member
(reference/kafka-protocol.md, pitfall 16)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import wait_until
from kafka_clients import create_topic

pytestmark = pytest.mark.integration

BROKER_ARGS = ("--group-initial-rebalance-delay", "300ms")
SESSION_MS = 6000  # the broker's minimum, so that silent members go quickly


def produce(address: str, topic: str, count: int, partitions: int, tag: str = "r") -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, b"%s-%05d" % (tag.encode(), i), partition=i % partitions)
    assert producer.flush(30) == 0


def committed_confluent(address: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": address, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def describe_confluent(address: str, group: str) -> dict:
    """What confluent-kafka's admin client says of `group` (ListGroups and DescribeGroups)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": address})
    listed = [g.group_id for g in admin.list_consumer_groups().result(20).valid]
    description = admin.describe_consumer_groups([group])[group].result(20)
    return {"listed": group in listed, "state": description.state.name,
            "members": [[tp.partition for tp in m.assignment.topic_partitions] for m in description.members]}


class ConfluentMember(threading.Thread):
    """A confluent-kafka group member polling in its own thread; `assignment` is current."""

    def __init__(self, address: str, group: str, topic: str, **config):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": address, "group.id": group, "auto.offset.reset": "earliest",
                                  "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500,
                                  "enable.auto.commit": False, **config})
        self.topic = topic
        self.assignment: list[int] = []
        self.received: list[tuple[int, int, bytes]] = []
        self.errors: list = []
        self.stop = threading.Event()

    def run(self) -> None:
        def assigned(consumer, partitions):
            self.assignment = sorted(p.partition for p in partitions)

        def revoked(consumer, partitions):
            self.assignment = []

        self.consumer.subscribe([self.topic], on_assign=assigned, on_revoke=revoked)
        try:
            while not self.stop.is_set():
                msg = self.consumer.poll(0.1)
                if msg is None:
                    continue
                if msg.error():
                    self.errors.append(msg.error())
                    continue
                self.received.append((msg.partition(), msg.offset(), msg.value()))
                self.consumer.commit(msg, asynchronous=False)
        finally:
            self.consumer.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)


def offsets_seen(*members) -> set[tuple[int, int]]:
    return {(partition, offset) for member in members for partition, offset, _ in member.received}


def test_two_confluent_consumers_split_a_topic_and_read_every_record(start_broker):
    broker = start_broker(*BROKER_ARGS)
    create_topic(broker.address, "split", 4)
    produce(broker.address, "split", 400, 4)
    members = [ConfluentMember(broker.address, "splitters", "split") for _ in range(2)]
    for member in members:
        member.start()
    try:
        assert wait_until(lambda: all(len(m.assignment) == 2 for m in members)
                          and len(offsets_seen(*members)) == 400, timeout=30), \
            ([m.assignment for m in members], len(offsets_seen(*members)))
        assert sorted(members[0].assignment + members[1].assignment) == [0, 1, 2, 3]
        described = describe_confluent(broker.address, "splitters")  # ListGroups, DescribeGroups
        assert described["state"] == "STABLE" and described["listed"]
        assert sorted(p for m in described["members"] for p in m) == [0, 1, 2, 3]
        produce(broker.address, "split", 40, 4, tag="late")
        assert wait_until(lambda: len(offsets_seen(*members)) == 440, timeout=20)
        for member in members:  # after the split, each reads only what it owns
            assert {p for p, _, v in member.received if v.startswith(b"late")} <= set(member.assignment)
    finally:
        for member in members:
            member.finish()
    assert not [e for m in members for e in m.errors if not e.code() == -191]  # _PARTITION_EOF only
    assert committed_confluent(broker.address, "splitters", "split", 4) == {p: 110 for p in range(4)}


class KafkaPythonMember(threading.Thread):
    def __init__(self, address: str, group: str, topic: str):
        super().__init__(daemon=True)
        self.address, self.group, self.topic = address, group, topic
        self.assignment: list[int] = []
        self.received: list[tuple[int, int, bytes]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(bootstrap_servers=self.address, group_id=self.group,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)
        # the topic's metadata before joining: kafka-python 3 joins a plain subscription without
        # it, and as leader then assigns nothing (test_admin_ops_clients._active_member)
        wait_until(lambda: consumer.partitions_for_topic(self.topic), timeout=20)
        consumer.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=100)
                self.assignment = sorted(tp.partition for tp in consumer.assignment())
                for records in batches.values():
                    self.received += [(r.partition, r.offset, r.value) for r in records]
                if batches:
                    consumer.commit()
        finally:
            consumer.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)


def test_kafka_python_and_confluent_share_a_group_and_read_each_others_commits(start_broker):
    from kafka import KafkaConsumer, TopicPartition

    broker = start_broker(*BROKER_ARGS)
    create_topic(broker.address, "mixed", 2)
    produce(broker.address, "mixed", 200, 2)
    python_member = KafkaPythonMember(broker.address, "mixed-group", "mixed")
    confluent_member = ConfluentMember(broker.address, "mixed-group", "mixed")
    python_member.start()
    confluent_member.start()
    try:
        assert wait_until(lambda: len(python_member.assignment) == 1 and len(confluent_member.assignment) == 1
                          and len(offsets_seen(python_member, confluent_member)) == 200, timeout=40), \
            (python_member.assignment, confluent_member.assignment, len(offsets_seen(python_member, confluent_member)))
        [python_partition], [confluent_partition] = python_member.assignment, confluent_member.assignment
    finally:
        python_member.finish()
        confluent_member.finish()
    assert {python_partition, confluent_partition} == {0, 1}
    # confluent reads what kafka-python committed, and kafka-python what confluent committed
    assert committed_confluent(broker.address, "mixed-group", "mixed", 2)[python_partition] == 100
    reader = KafkaConsumer(bootstrap_servers=broker.address, group_id="mixed-group", enable_auto_commit=False)
    try:
        assert reader.committed(TopicPartition("mixed", confluent_partition)) == 100
    finally:
        reader.close()


def test_kcat_balanced_consumer_reads_and_commits(start_broker):
    broker = start_broker(*BROKER_ARGS)
    create_topic(broker.address, "kc", 3)
    produce(broker.address, "kc", 90, 3)
    cmd = ["kcat", "-b", broker.address, "-G", "kcat-group", "-X", "auto.offset.reset=earliest",
           "-c", "90", "-f", "%p %o\n", "kc"]
    out = subprocess.run(cmd, capture_output=True, timeout=40, check=True).stdout
    assert len({tuple(line.split()) for line in out.splitlines()}) == 90
    assert wait_until(lambda: sum(committed_confluent(broker.address, "kcat-group", "kc", 3).values()) == 90,
                      timeout=10)


def test_aiokafka_group_consumer_resumes_from_its_commit(start_broker):
    from aiokafka import AIOKafkaConsumer

    broker = start_broker(*BROKER_ARGS)
    create_topic(broker.address, "aio", 1)
    produce(broker.address, "aio", 50, 1)

    async def consume(count: int) -> list[int]:
        consumer = AIOKafkaConsumer("aio", bootstrap_servers=broker.address, group_id="aio-group",
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)
        await consumer.start()
        offsets = []
        try:
            while len(offsets) < count:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
                for records in batches.values():
                    offsets += [r.offset for r in records]
            offsets = offsets[:count]
            await consumer.commit({tp: offsets[-1] + 1 for tp in consumer.assignment()})
        finally:
            await consumer.stop()
        return offsets

    assert asyncio.run(consume(30)) == list(range(30))
    assert asyncio.run(consume(20)) == list(range(30, 50))


def test_committed_offsets_survive_graceful_and_sigkill_restarts(start_broker, tmp_path):
    from confluent_kafka import Consumer, TopicPartition

    data = tmp_path / "offsets-data"
    broker = start_broker(*BROKER_ARGS, data_dir=data)
    create_topic(broker.address, "kept", 3)

    def commit(address, group, offsets):
        consumer = Consumer({"bootstrap.servers": address, "group.id": group, "enable.auto.commit": False})
        try:
            consumer.commit(offsets=[TopicPartition("kept", p, o) for p, o in offsets.items()], asynchronous=False)
        finally:
            consumer.close()

    expected = {f"group-{g}": {p: 10 * g + p for p in range(3)} for g in range(5)}
    for group, offsets in expected.items():
        commit(broker.address, group, offsets)
    broker.stop()
    assert "recovered" not in broker.log()
    broker = start_broker(*BROKER_ARGS, data_dir=data)
    for group, offsets in expected.items():
        assert committed_confluent(broker.address, group, "kept", 3) == offsets
    for group in expected:
        expected[group] = {p: 1000 + p for p in range(3)}
        commit(broker.address, group, expected[group])
    broker.proc.send_signal(signal.SIGKILL)  # every commit above was acknowledged: it is on disk
    broker.proc.wait(10)
    broker = start_broker(*BROKER_ARGS, data_dir=data)
    for group, offsets in expected.items():
        assert committed_confluent(broker.address, group, "kept", 3) == offsets


MEMBER_SCRIPT = """
import json, sys
from confluent_kafka import Consumer
consumer = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "auto.offset.reset": "earliest",
                     "session.timeout.ms": %d, "heartbeat.interval.ms": 500})
def assigned(c, partitions):
    print(json.dumps(sorted(p.partition for p in partitions)), flush=True)
consumer.subscribe([sys.argv[3]], on_assign=assigned)
while True:
    consumer.poll(0.1)
""" % SESSION_MS


def test_a_killed_members_partitions_move_to_the_survivor_after_the_session_timeout(start_broker):
    broker = start_broker(*BROKER_ARGS)
    create_topic(broker.address, "failover", 4)
    victim = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, broker.address, "fo-group", "failover"],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    survivor = ConfluentMember(broker.address, "fo-group", "failover")
    try:
        line = victim.stdout.readline()  # the victim's first assignment
        assert json.loads(line)
        survivor.start()
        assert wait_until(lambda: len(survivor.assignment) == 2, timeout=30), survivor.assignment
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed = time.monotonic()
        assert wait_until(lambda: survivor.assignment == [0, 1, 2, 3], timeout=SESSION_MS / 1000 + 15)
        assert time.monotonic() - killed < SESSION_MS / 1000 + 5
        produce(broker.address, "failover", 40, 4, tag="after")
        assert wait_until(lambda: {p for p, _, v in survivor.received if v.startswith(b"after")} == {0, 1, 2, 3},
                          timeout=15)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)
        survivor.finish()

"""Real Kafka clients against a real `logship serve`: each reads what each other wrote."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from conftest import ROOT, BrokerProcess
from kafka_clients import CLIENTS, Consumed, Message, consume, create_topic, dataset, produce

pytestmark = pytest.mark.integration

COUNT = 10_000
CODECS = ("none", "gzip", "zstd")


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    broker = BrokerProcess(tmp_path_factory.mktemp("broker") / "data").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def produced(shared_broker):
    """Topic -> the messages produced into it: one topic per (producing client, codec)."""
    topics = {}
    for client in CLIENTS:
        for codec in CODECS:
            topic = f"from-{client}-{codec}"
            messages = dataset(topic, COUNT)
            produce(client, shared_broker.address, topic, messages, codec)
            topics[topic] = messages
    return topics


def assert_same_per_partition(sent: list[Message], got: list[Consumed]) -> None:
    """Every message arrived once; within each partition in the order sent, offsets 0, 1, 2, ..."""
    assert len(got) == len(sent)
    by_partition = defaultdict(list)
    for record in got:
        by_partition[record.partition].append(record)
    order = {m.value: i for i, m in enumerate(sent)}
    sent_by_value = {m.value: m for m in sent}
    for partition, records in by_partition.items():
        assert [r.offset for r in records] == list(range(len(records))), f"partition {partition} offsets"
        positions = [order[r.value] for r in records]
        assert positions == sorted(positions), f"partition {partition} is out of order"
        for r in records:
            m = sent_by_value[r.value]
            assert (r.key, r.value, r.headers) == (m.key, m.value, m.headers)
    assert {r.value for r in got} == set(sent_by_value)


def segment_codecs(data_dir, topic: str) -> set[str]:
    """The compression names `logship dump --json` reports for the batches of `topic`-0."""
    names = set()
    for segment in sorted((data_dir / f"{topic}-0").glob("*.log")):
        out = subprocess.run([sys.executable, "-m", "logship", "dump", "--json", str(segment)],
                             capture_output=True, check=True, cwd=ROOT).stdout
        names |= {json.loads(line)["batch"]["compression"] for line in out.splitlines()}
    return names


def test_batches_are_stored_with_the_producers_codec(shared_broker, produced):
    for topic in produced:
        codec = topic.rsplit("-", 1)[1]
        assert segment_codecs(shared_broker.data_dir, topic) == {codec}, topic


@pytest.mark.parametrize("consumer", CLIENTS)
def test_client_reads_every_clients_records(shared_broker, produced, consumer):
    for topic, messages in produced.items():
        got = consume(consumer, shared_broker.address, topic, len(messages))
        assert_same_per_partition(messages, got)


def test_three_partition_topic_created_by_admin_client(shared_broker):
    create_topic(shared_broker.address, "three", 3)
    messages = dataset("three", 3000)
    produce("confluent", shared_broker.address, "three", messages, "zstd")
    for consumer in CLIENTS:
        got = consume(consumer, shared_broker.address, "three", len(messages))
        assert {r.partition for r in got} == {0, 1, 2}
        assert_same_per_partition(messages, got)


def test_offsets_by_time(shared_broker):
    from confluent_kafka import Producer
    from kafka import KafkaConsumer, TopicPartition

    base = int(time.time() * 1000) - 100_000
    producer = Producer({"bootstrap.servers": shared_broker.address, "linger.ms": 20})
    for i in range(100):
        producer.produce("timed", b"v%d" % i, timestamp=base + i * 1000)
    assert producer.flush(30) == 0

    out = subprocess.run(["kcat", "-Q", "-b", shared_broker.address, "-t", f"timed:0:{base + 41_500}"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert "offset 42" in out, out

    consumer = KafkaConsumer(bootstrap_servers=shared_broker.address, group_id=None)
    tp = TopicPartition("timed", 0)
    found = consumer.offsets_for_times({tp: base + 10_000})[tp]
    assert (found.offset, found.timestamp) == (10, base + 10_000)
    assert consumer.offsets_for_times({tp: base + 1_000_000})[tp] is None
    assert consumer.beginning_offsets([tp])[tp] == 0 and consumer.end_offsets([tp])[tp] == 100
    consumer.close()

"""Drive real Kafka clients (kcat, confluent-kafka, kafka-python, aiokafka) against a broker.

Each client produces `Message`s and consumes them back as `Consumed` tuples, so tests can
compare what every client wrote with what every other client read, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import threading
import time
from typing import NamedTuple

CLIENTS = ("kcat", "confluent", "kafka-python", "aiokafka")


class Message(NamedTuple):
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class Consumed(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


HEADERS = (("source", b"test"),)


def dataset(tag: str, count: int) -> list[Message]:
    """`count` records: even ones keyed (7 distinct keys), all with one header; values distinct."""
    pad = b"x" * 40
    return [Message(b"k%d" % (i % 7) if i % 2 == 0 else None, b"%s-%06d-%s" % (tag.encode(), i, pad), HEADERS)
            for i in range(count)]


@contextlib.contextmanager
def mock_cluster(brokers: int = 1):
    """The bootstrap list of a librdkafka mock cluster: another implementation of the broker
    side of the protocol, hosted on loopback by a long-running kcat for as long as the block."""
    host = subprocess.Popen(["kcat", "-C", "-b", "127.0.0.1:1", "-t", "keepalive", "-o", "end", "-q",
                             "-X", f"test.mock.num.brokers={brokers}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, address = threading.Event(), []

    def watch():
        for line in host.stderr:
            match = re.search(r"replaced with (\S+)", line)
            if match and not address:
                address.append(match.group(1))
                found.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert found.wait(20), "kcat did not start a mock cluster"
        yield address[0]
    finally:
        host.kill()
        host.wait(10)


def create_topic(address: str, name: str, partitions: int) -> None:
    """Create a topic through confluent-kafka's admin client (CreateTopics, as tools do)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=20)


def produce(client: str, address: str, topic: str, messages: list[Message], compression: str = "none") -> None:
    """Produce `messages` with `client`, waiting until every one is acknowledged."""
    {"kcat": _produce_kcat, "confluent": _produce_confluent, "kafka-python": _produce_kafka_python,
     "aiokafka": _produce_aiokafka}[client](address, topic, messages, compression)


def consume(client: str, address: str, topic: str, count: int, timeout: float = 60) -> list[Consumed]:
    """Read `count` records of every partition of `topic` from the beginning with `client`."""
    return {"kcat": _consume_kcat, "confluent": _consume_confluent, "kafka-python": _consume_kafka_python,
            "aiokafka": _consume_aiokafka}[client](address, topic, count, timeout)


def _produce_kcat(address, topic, messages, compression):
    assert all(m.headers == HEADERS for m in messages), "kcat sends one header set for all records"
    lines = b"".join((m.key + b"\t" if m.key is not None else b"") + m.value + b"\n" for m in messages)
    cmd = ["kcat", "-P", "-b", address, "-t", topic, "-K", "\t", "-z", compression,
           *[arg for name, value in HEADERS for arg in ("-H", f"{name}={value.decode()}")],
           "-X", "linger.ms=5"]
    subprocess.run(cmd, input=lines, check=True, timeout=120)


def _consume_kcat(address, topic, count, timeout):
    out = subprocess.run(["kcat", "-C", "-b", address, "-t", topic, "-o", "beginning", "-e", "-c", str(count),
                          "-f", "%p\t%o\t%k\t%s\t%h\n"], capture_output=True, check=True, timeout=timeout).stdout
    result = []
    for line in out.splitlines():
        partition, offset, key, value, headers = line.split(b"\t")
        pairs = tuple((k.decode(), v) for k, _, v in (h.partition(b"=") for h in headers.split(b",") if h))
        result.append(Consumed(int(partition), int(offset), key or None, value, pairs))
    return result


def _produce_confluent(address, topic, messages, compression):
    from confluent_kafka import Producer

    failures = []
    producer = Producer({"bootstrap.servers": address, "compression.type": compression, "linger.ms": 5})
    for m in messages:
        while True:
            try:
                producer.produce(topic, m.value, m.key, headers=list(m.headers),
                                 on_delivery=lambda err, msg: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    assert not failures, failures[:3]


def _partitions_confluent(consumer, topic, timeout):
    deadline = time.monotonic() + timeout
    while True:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        if partitions or time.monotonic() > deadline:
            return sorted(partitions)
        time.sleep(0.1)


def _consume_confluent(address, topic, count, timeout):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": address, "group.id": "unused", "enable.auto.commit": False,
                         "enable.partition.eof": False})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in _partitions_confluent(consumer, topic, timeout)])
        result, deadline = [], time.monotonic() + timeout
        while len(result) < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                assert msg.error() is None, msg.error()
                result.append(Consumed(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                       tuple(msg.headers() or ())))
        return result
    finally:
        consumer.close()


def _produce_kafka_python(address, topic, messages, compression):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=address, compression_type=None if compression == "none" else compression,
                             linger_ms=5)
    futures = [producer.send(topic, value=m.value, key=m.key, headers=list(m.headers)) for m in messages]
    producer.flush(60)
    for future in futures:
        future.get(timeout=10)
    producer.close()


def _consume_kafka_python(address, topic, count, timeout):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False, group_id=None)
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        result = []
        while len(result) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                result += [Consumed(r.partition, r.offset, r.key, r.value, tuple(r.headers)) for r in records]
        return result
    finally:
        consumer.close()


def _produce_aiokafka(address, topic, messages, compression):
    from aiokafka import AIOKafkaProducer

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5,
                                    compression_type=None if compression == "none" else compression)
        await producer.start()
        try:
            futures = [await producer.send(topic, m.value, key=m.key, headers=list(m.headers)) for m in messages]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def _consume_aiokafka(address, topic, count, timeout):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        consumer = AIOKafkaConsumer(bootstrap_servers=address, enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            partitions = None
            while not partitions and time.monotonic() < deadline:
                cluster = await consumer._client.fetch_all_metadata()  # no public call refreshes one topic
                partitions = cluster.partitions_for_topic(topic)
                if not partitions:
                    await asyncio.sleep(0.1)
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            result = []
            while len(result) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    result += [Consumed(r.partition, r.offset, r.key, r.value, tuple(r.headers)) for r in records]
            return result
        finally:
            await consumer.stop()

    return asyncio.run(run())

"""A real `logship serve` refuses batches whose CRC is right but whose contents lie.

Every case of tests/lying_batches.py is sent on one raw Kafka connection (logship's client
Connection: a socket and the codec, no producer logic) between good batches: each is refused
with its code (CORRUPT_MESSAGE or INVALID_RECORD), nothing is appended, the connection stays usable, and kafka-python producing before and after, and
kafka-python, kcat and `logship consume` reading everything back, all work.
"""

from __future__ import annotations

import subprocess
import sys

from lying_batches import LYING, good
from logship.client.connection import Connection
from logship.protocol import ApiKey
from logship.broker_process import child_env

TOPIC = "lies"


def _produce(conn: Connection, batch: bytes, version: int | None = None) -> dict:
    body = {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
            "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}]}
    return conn.request(ApiKey.PRODUCE, body, version)["responses"][0]["partition_responses"][0]


def _end_offset(conn: Connection) -> int:
    body = {"replica_id": -1, "isolation_level": 0,
            "topics": [{"name": TOPIC, "partitions": [{"partition_index": 0, "timestamp": -1,
                                                        "current_leader_epoch": -1}]}]}
    return conn.request(ApiKey.LIST_OFFSETS, body)["topics"][0]["partitions"][0]["offset"]


def test_lying_batches_are_refused_and_the_connection_stays_usable(broker):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.address, acks="all")
    producer.send(TOPIC, b"from kafka-python before").get(timeout=30)
    with Connection(broker.host, broker.port) as conn:
        assert _produce(conn, good(2))["error_code"] == 0
        expected = 3
        for name, (build, _, code) in sorted(LYING.items()):
            answer = _produce(conn, build())
            assert answer["error_code"] == code, name
            assert answer["base_offset"] == -1, name
            answer = _produce(conn, good(1))  # the same connection, at once
            assert answer["error_code"] == 0 and answer["base_offset"] == expected, name
            expected += 1
        # Produce v3 (no error_message): the same codes
        assert _produce(conn, LYING["record count 1000 over one record"][0](), version=3)["error_code"] == 87
        assert _produce(conn, LYING["gzip flag on plain data"][0](), version=3)["error_code"] == 2
        # a good batch and a lying one for the same partition: the whole partition is refused
        assert _produce(conn, good(2) + LYING["control flag from a client"][0]())["error_code"] == 87
        assert _end_offset(conn) == expected
    producer.send(TOPIC, b"from kafka-python after").get(timeout=30)
    producer.close()
    total = expected + 1

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(TOPIC, 0)])
    values = [message.value for message in consumer]
    consumer.close()
    assert len(values) == total
    assert values[0] == b"from kafka-python before" and values[-1] == b"from kafka-python after"

    kcat = subprocess.run(["kcat", "-C", "-b", broker.address, "-t", TOPIC, "-e", "-q", "-f", "%o\n"],
                          capture_output=True, timeout=60)
    assert kcat.returncode == 0
    assert [int(line) for line in kcat.stdout.split()] == list(range(total))

    ours = subprocess.run([sys.executable, "-m", "logship", "consume", TOPIC, "-e", "-b", broker.address],
                          capture_output=True, timeout=60, env=child_env())
    assert ours.returncode == 0, ours.stderr
    assert len(ours.stdout.splitlines()) == total and ours.stderr == b""
    assert "Traceback" not in broker.log()


def test_a_compressed_bomb_with_a_lying_count_is_refused(broker):
    """Decompression on produce stays under the existing bound (64 MiB by default)."""
    from logship import records
    from logship.compression import ZSTD

    bomb = records.seal_batch(b"\x00" * (80 << 20), 3, 0, 0, base_offset=0, compression=ZSTD, producer_id=-1,
                              producer_epoch=-1, base_sequence=-1, partition_leader_epoch=-1, attributes=0)
    assert len(bomb) < 1 << 20
    with Connection(broker.host, broker.port) as conn:
        answer = _produce(conn, bomb)
        assert answer["error_code"] == 2
        assert _produce(conn, good(1))["error_code"] == 0

"""The broker de-duplicates idempotent producers (issue #14), against a real `logship serve`:

* Kafka's answers, named as kafka-python names them: a resent batch gets its first offsets and
  is stored once; a gap, a stale epoch and a batch older than the last five are refused;
  producer ids differ across a restart;
* confluent-kafka and kafka-python with idempotence on, through a proxy that loses responses
  (tests/response_dropper.py): every record exactly once, in order;
* the broker kill -9'd ten times under confluent-kafka's idempotent load: every acknowledged
  record present exactly once (tests/ack_log.py's checker).
"""

from __future__ import annotations

import subprocess
import time

import kafka.errors
import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from ack_log import check, read_acks
from acked_load import AckedProducer, read_back, running
from conftest import wait_until
from local_cluster import free_port
from logship.client.connection import Connection
from logship.protocol import ApiKey
from response_dropper import ResponseDropper

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _batch(pid: int, epoch: int, seq: int, count: int = 3) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=pid,
                                        producer_epoch=epoch, base_sequence=seq, batch_size=1 << 30)
    for i in range(count):
        builder.append(i, timestamp=int(time.time() * 1000), key=None, value=b"seq-%d" % (seq + i), headers=[])
    return bytes(builder.build())


def _produce(conn: Connection, data: bytes, topic: str = "idem") -> dict:
    answer = conn.request(ApiKey.PRODUCE, {"transactional_id": None, "acks": -1, "timeout_ms": 10_000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": data}]}]})
    return answer["responses"][0]["partition_responses"][0]


def _error_name(code: int) -> str:
    return kafka.errors.for_code(code).__name__


def _init(conn: Connection) -> tuple[int, int]:
    answer = conn.request(ApiKey.INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout_ms": 60_000})
    assert answer["error_code"] == 0
    return answer["producer_id"], answer["producer_epoch"]


def test_kafkas_answers_to_retries_gaps_and_stale_epochs(start_broker, tmp_path):
    broker = start_broker()
    host, port = broker.address.rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        pid, epoch = _init(conn)
        first = _produce(conn, _batch(pid, epoch, 0))
        assert first["error_code"] == 0 and first["base_offset"] == 0
        for seq in range(3, 3 * 7, 3):  # six more batches: the first one is now older than the last five
            assert _produce(conn, _batch(pid, epoch, seq))["error_code"] == 0
        again = _produce(conn, _batch(pid, epoch, 18))  # the last one, resent
        assert (again["error_code"], again["base_offset"]) == (0, 18)
        again = _produce(conn, _batch(pid, epoch, 6))  # the oldest of the five kept
        assert (again["error_code"], again["base_offset"]) == (0, 6)
        assert _error_name(_produce(conn, _batch(pid, epoch, 0))["error_code"]) == "OutOfOrderSequenceNumberError"
        assert _error_name(_produce(conn, _batch(pid, epoch, 30))["error_code"]) == "OutOfOrderSequenceNumberError"
        assert _produce(conn, _batch(pid, epoch + 1, 0))["error_code"] == 0  # a new epoch starts at 0
        assert _error_name(_produce(conn, _batch(pid, epoch, 21))["error_code"]) == "InvalidProducerEpochError"
        assert _error_name(_produce(conn, _batch(pid, epoch + 2, 5))["error_code"]) == "OutOfOrderSequenceNumberError"
    consumed = subprocess.run(["kcat", "-C", "-b", broker.address, "-t", "idem", "-e", "-q", "-f", "%s\n"],
                              capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert consumed == [f"seq-{n}" for n in range(21)] + ["seq-0", "seq-1", "seq-2"]  # each batch once

    broker.stop()
    restarted = start_broker(data_dir=broker.data_dir)
    host, port = restarted.address.rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        assert _produce(conn, _batch(pid, epoch + 1, 0))["base_offset"] == 21  # remembered across the restart
        assert _init(conn)[0] > pid  # ids are never handed out twice


def _numbered(count: int) -> list[bytes]:
    return [b"%07d" % n for n in range(count)]


def _exactly_once_in_order(address: str, topic: str, count: int) -> None:
    out = subprocess.run(["kcat", "-C", "-b", address, "-t", topic, "-p", "0", "-e", "-q", "-f", "%s\n"],
                         capture_output=True, check=True, timeout=120).stdout.split()
    assert len(out) == count and out == _numbered(count), \
        f"{len(out)} records for {count}; first difference at {next(i for i, (a, b) in enumerate(zip(out, _numbered(count))) if a != b) if out[:count] != _numbered(count)[:len(out)] else min(len(out), count)}"


@pytest.fixture
def proxied(start_broker):
    proxy = ResponseDropper(drop=0.02, seed=14)
    broker = start_broker("--advertise", proxy.address)
    proxy.upstream = ("127.0.0.1", int(broker.address.rsplit(":", 1)[1]))
    yield proxy, broker
    proxy.close()


COUNT = 200_000


def test_confluent_kafka_through_lost_responses(proxied):
    from confluent_kafka import Producer

    proxy, broker = proxied
    subprocess.run(["kcat", "-P", "-b", broker.address, "-t", "ck", "-p", "0"], input=b"", check=True, timeout=30)
    failed = []
    producer = Producer({"bootstrap.servers": proxy.address, "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 120_000, "retry.backoff.ms": 50, "batch.num.messages": 2000})
    for value in _numbered(COUNT):
        while True:
            try:
                producer.produce("ck", value, partition=0,
                                 on_delivery=lambda err, msg: err is not None and failed.append(err))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(180) == 0 and not failed, failed[:3]
    assert proxy.dropped > 0
    _exactly_once_in_order(broker.address, "ck", COUNT)


def test_kafka_python_through_lost_responses(proxied):
    from kafka import KafkaProducer

    proxy, broker = proxied
    proxy.drop = 0.05  # its batches are bigger than librdkafka's here: fewer responses to lose
    producer = KafkaProducer(bootstrap_servers=proxy.address, enable_idempotence=True, acks="all", linger_ms=5,
                             retries=1_000_000, delivery_timeout_ms=180_000, request_timeout_ms=10_000,
                             batch_size=16 << 10)
    futures = [producer.send("kp", value, partition=0) for value in _numbered(COUNT)]
    producer.flush(180)
    for future in futures[:: COUNT // 100]:
        future.get(timeout=1)
    assert all(f.succeeded() for f in futures)
    producer.close(10)
    assert proxy.dropped > 0
    _exactly_once_in_order(broker.address, "kp", COUNT)


def test_kill_9_under_idempotent_load_loses_and_duplicates_nothing(start_broker, tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    broker = start_broker("--listen", address)
    acks = tmp_path / "acks"
    producer = AckedProducer(address, "crash", acks, "idem", count=300_000, message_timeout_s=120,
                             config={"enable.idempotence": True}, rate=20_000)
    with running(producer):
        for round_ in range(10):
            assert producer.wait_acked(10_000 * (round_ + 1), timeout=60), producer.errors
            broker.kill()
            broker = start_broker("--listen", address, data_dir=broker.data_dir)
        assert producer.wait_acked(110_000, timeout=60), producer.errors
    verdict = check(read_acks(acks), read_back(address, "crash"))
    assert verdict.clean and verdict.acked >= 110_000, verdict.summary()

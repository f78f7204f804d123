"""`logship serve` under real clients: long-poll latency, crashes, restarts, hostile input."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import wait_until
from kafka_clients import consume, create_topic

pytestmark = pytest.mark.integration


def _consumer_thread(address, topic, received, stop, config=None):
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": address, "group.id": "unused", "enable.auto.commit": False,
                         **(config or {})})
    consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
    while not stop.is_set():
        msg = consumer.poll(0.05)
        if msg is not None and msg.error() is None:
            received.append((time.monotonic(), msg.value()))
    consumer.close()


def test_waiting_consumer_gets_a_new_record_within_100ms(broker):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 0})
    producer.produce("latency", b"warm-up")
    assert producer.flush(10) == 0
    received, stop = [], threading.Event()
    thread = threading.Thread(target=_consumer_thread, args=(broker.address, "latency", received, stop))
    thread.start()
    try:
        time.sleep(2)  # consumer resolved its start offset and is parked in a long-poll fetch
        delays = []
        for i in range(5):
            sent = time.monotonic()
            producer.produce("latency", b"r%d" % i)
            assert producer.flush(10) == 0
            assert wait_until(lambda: len(received) > i, timeout=5)
            delays.append(received[i][0] - sent)
            time.sleep(0.3)
        assert sorted(delays)[2] < 0.1, delays
    finally:
        stop.set()
        thread.join(10)


def test_idle_consumer_sends_only_a_few_fetches_per_second(broker):
    create_topic(broker.address, "idle", 1)
    stats = []
    received, stop = [], threading.Event()
    config = {"statistics.interval.ms": 1000, "stats_cb": stats.append}
    thread = threading.Thread(target=_consumer_thread, args=(broker.address, "idle", received, stop, config))
    thread.start()
    try:
        assert wait_until(lambda: len(stats) >= 6, timeout=20)
    finally:
        stop.set()
        thread.join(10)

    def fetches(raw):
        brokers = json.loads(raw)["brokers"].values()
        return sum(b.get("req", {}).get("Fetch", 0) for b in brokers)

    rate = (fetches(stats[5]) - fetches(stats[2])) / 3
    assert 0 < rate <= 5, f"{rate} fetch requests per second from an idle consumer"


def test_sigkill_during_acks_all_produce_loses_no_acknowledged_record(start_broker, tmp_path):
    from confluent_kafka import Producer

    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    acked = {}

    def delivered(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()

    producer = Producer({"bootstrap.servers": broker.address, "acks": "all", "linger.ms": 2,
                         "message.timeout.ms": 5000, "enable.idempotence": True})
    for i in range(100_000):
        if i == 40_000:
            wait_until(lambda: len(acked) >= 20_000, timeout=30)
            broker.proc.send_signal(signal.SIGKILL)
            broker.proc.wait(10)
        while True:
            try:
                producer.produce("crash", b"r%06d" % i, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(30)
    assert len(acked) >= 20_000

    restarted = start_broker(data_dir=data_dir)
    assert "not closed cleanly" in restarted.log()
    records = consume("confluent", restarted.address, "crash", len(acked), timeout=60)
    by_offset = {r.offset: r.value for r in records}
    assert sorted(by_offset) == list(range(len(records))), "offsets repeat or skip"
    assert all(by_offset.get(offset) == value for offset, value in acked.items())
    values = [by_offset[o] for o in sorted(by_offset)]
    assert values == sorted(values), "records are out of order"


def test_graceful_restart_continues_offsets_without_recovery(start_broker, tmp_path):
    from confluent_kafka import Producer

    data_dir = tmp_path / "data"
    offsets = []
    for round_ in range(2):
        broker = start_broker(data_dir=data_dir)
        producer = Producer({"bootstrap.servers": broker.address})
        for i in range(100):
            producer.produce("steady", b"%d-%d" % (round_, i),
                             on_delivery=lambda err, msg: offsets.append(msg.offset()))
        assert producer.flush(10) == 0
        assert broker.stop() == 0
        assert "not closed cleanly" not in broker.log(), broker.log()
    assert sorted(offsets) == list(range(200))


# --- hostile input -----------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _hostile_payloads() -> dict[str, bytes]:
    rng = __import__("random").Random(7)
    header = struct.pack(">hhih", 3, 1, 1, 4) + b"evil"  # Metadata v1, correlation 1, client "evil"
    array_2_31 = header + struct.pack(">i", 0x7FFFFFFF)
    unknown_key = struct.pack(">hhih", 999, 0, 1, -1)
    unknown_version = struct.pack(">hhih", 0, 99, 1, -1) + b"\x00" * 16
    frame = lambda body: struct.pack(">i", len(body)) + body  # noqa: E731
    return {
        "random bytes": bytes(rng.randrange(256) for _ in range(4096)),
        "random frame": frame(bytes(rng.randrange(256) for _ in range(512))),
        "2 GB length prefix": struct.pack(">I", 0x7FFFFFFF) + b"\x00" * 64,
        "negative length prefix": struct.pack(">i", -5),
        "array count 2^31": frame(array_2_31),
        "unknown api key": frame(unknown_key),
        "unknown api version": frame(unknown_version),
    }


def _good_producer(address, stop, stats):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "acks": "all", "linger.ms": 1})

    def delivered(err, msg):
        stats["errors" if err else "acked"] += 1

    i = 0
    while not stop.is_set() and i < 200_000:
        try:
            producer.produce("good", b"g%06d" % i, on_delivery=delivered)
            i += 1
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    producer.flush(20)
    stats["sent"] = i


def test_hostile_connections_leave_the_broker_and_a_good_client_unharmed(broker):
    stats = {"acked": 0, "errors": 0, "sent": 0}
    stop = threading.Event()
    good = threading.Thread(target=_good_producer, args=(broker.address, stop, stats))
    good.start()
    try:
        assert wait_until(lambda: stats["acked"] > 100, timeout=20)
        rss_before = _rss_kib(broker.proc.pid)
        for name, payload in _hostile_payloads().items():
            with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
                sock.sendall(payload)
                assert _closed_by_peer(sock), f"{name}: connection left open"
        assert broker.proc.poll() is None
        assert _rss_kib(broker.proc.pid) - rss_before < 64 * 1024, "broker memory grew"
    finally:
        stop.set()
        good.join(60)
    assert stats["errors"] == 0 and stats["acked"] == stats["sent"] > 0, stats
    records = consume("confluent", broker.address, "good", stats["sent"], timeout=60)
    assert [r.value for r in records] == [b"g%06d" % i for i in range(stats["sent"])]


def test_produce_with_a_bad_crc_is_refused_and_nothing_is_appended(broker):
    from logship import records
    from logship.protocol import ApiKey, framing

    batch = bytearray(records.build_batch([(int(time.time() * 1000), None, b"payload", ())]))
    batch[-1] ^= 0xFF
    body = {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
            "topic_data": [{"name": "crc", "partition_data": [{"index": 0, "records": bytes(batch)}]}]}
    request = framing.encode_request(ApiKey.PRODUCE, 7, 42, "test", body)
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(request)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        correlation_id, response = framing.decode_response(ApiKey.PRODUCE, 7, _recv_exactly(sock, size))
    assert correlation_id == 42
    assert response["responses"][0]["partition_responses"][0]["error_code"] == 2  # CORRUPT_MESSAGE
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, group_id=None)
    assert consumer.end_offsets([TopicPartition("crc", 0)])[TopicPartition("crc", 0)] == 0
    consumer.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_requests_sent_before_a_half_close_are_still_answered(broker):
    from logship.protocol import ApiKey, framing

    requests = b"".join(framing.encode_request(ApiKey.API_VERSIONS, 0, cid, "half", {}) for cid in (1, 2, 3))
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(requests)
        sock.shutdown(socket.SHUT_WR)
        answered = []
        for _ in range(3):
            size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
            answered.append(framing.decode_response(ApiKey.API_VERSIONS, 0, _recv_exactly(sock, size))[0])
        assert answered == [1, 2, 3]
        assert sock.recv(1) == b""  # then the broker closes

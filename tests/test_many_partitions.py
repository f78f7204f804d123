"""A topic of 10,000 partitions against a real `logship serve`: created in several requests under
the per-request cap (confluent-kafka's AdminClient), every partition touched by a producer while
the broker's open descriptors (/proc/PID/fd) stay below a bound set by --max-open-files (and its
resident memory below 256 MB), and the
broker restarted, cleanly and after kill -9: it listens within a stated bound and serves produce
and consume on random partitions, every acknowledged record still there."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from conftest import BrokerProcess

pytestmark = [pytest.mark.integration]

PARTITIONS = 10_000
PER_REQUEST = 2_500
MAX_OPEN_FILES = 200
#: the file cache, plus sockets, the listener, pipes, the lock, a few transient descriptors
FD_BOUND = MAX_OPEN_FILES + 100
START_BOUND_S = 10.0   # the broker listens within this after a start, clean or not
RSS_BOUND_MB = 256     # the broker's resident memory with every partition loaded (~6 KB each)
TOPIC = "wide"
ARGS = ("--max-partitions-per-request", str(PER_REQUEST), "--max-open-files", str(MAX_OPEN_FILES),
        "--log-level", "warning")


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) // 1024


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class _FdSampler:
    """The highest descriptor count of a process, sampled every 20 ms while in a `with`."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _fds(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> "_FdSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _start(data_dir) -> tuple[BrokerProcess, float]:
    start = time.monotonic()
    broker = BrokerProcess(data_dir, *ARGS).start(timeout=60)
    return broker, time.monotonic() - start


def _create_in_steps(address: str) -> int:
    """Create the topic in requests of PER_REQUEST partitions; returns the count Metadata gives."""
    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(TOPIC, PER_REQUEST)])[TOPIC].result(timeout=60)
    for total in range(2 * PER_REQUEST, PARTITIONS + 1, PER_REQUEST):
        admin.create_partitions([NewPartitions(TOPIC, total)])[TOPIC].result(timeout=60)
    return len(admin.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions)


def _produce(address: str, values: dict[int, bytes], acks: str) -> None:
    producer = Producer({"bootstrap.servers": address, "acks": acks, "linger.ms": 20,
                         "queue.buffering.max.messages": 2 * PARTITIONS})
    failures = []
    for partition, value in values.items():
        producer.produce(TOPIC, value, partition=partition,
                         on_delivery=lambda err, msg: err and failures.append(err))
    try:
        assert producer.flush(120) == 0
        assert failures == []
    finally:
        producer.close()


def _consume(address: str, expected: dict[int, list[bytes]]) -> dict[int, set[bytes]]:
    """Read the partitions of `expected` from offset 0 until each holds its expected values (sets:
    a producer's retry may store a record twice, which is not what this test is about)."""
    consumer = Consumer({"bootstrap.servers": address, "group.id": "many", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in expected])
    got: dict[int, set[bytes]] = {p: set() for p in expected}
    missing = set(expected)
    deadline = time.monotonic() + 60
    try:
        while missing and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got[msg.partition()].add(msg.value())
                if got[msg.partition()] >= set(expected[msg.partition()]):
                    missing.discard(msg.partition())
    finally:
        consumer.close()
    return got


def _check_random_partitions(address: str, rng: random.Random, written: dict[int, list[bytes]], tag: str) -> None:
    """Produce (acks=all) to 20 random partitions, then read them all back from the start."""
    sample = rng.sample(range(PARTITIONS), 20)
    fresh = {p: b"%s-%d" % (tag.encode(), p) for p in sample}
    _produce(address, fresh, "all")
    for p, value in fresh.items():
        written.setdefault(p, []).append(value)
    got = _consume(address, {p: written[p] for p in sample})
    assert got == {p: set(written[p]) for p in sample}


def test_ten_thousand_partitions_created_touched_and_restarted(tmp_path):
    rng = random.Random(12)
    data_dir = tmp_path / "data"
    broker, _ = _start(data_dir)
    try:
        begin = time.monotonic()
        assert _create_in_steps(broker.address) == PARTITIONS
        created = time.monotonic() - begin
        print(f"created {PARTITIONS} partitions in 4 requests in {created:.1f}s")

        written = {p: [b"first-%d" % p] for p in range(PARTITIONS)}
        begin = time.monotonic()
        with _FdSampler(broker.proc.pid) as fds:
            _produce(broker.address, {p: values[0] for p, values in written.items()}, "1")
        rss = _rss_mb(broker.proc.pid)
        print(f"touched every partition in {time.monotonic() - begin:.1f}s, peak {fds.peak} descriptors, "
              f"{rss} MB resident")
        assert fds.peak <= FD_BOUND and rss <= RSS_BOUND_MB
        _check_random_partitions(broker.address, rng, written, "a")
        assert broker.stop() == 0

        broker, took = _start(data_dir)
        print(f"clean restart listened after {took:.1f}s")
        assert took < START_BOUND_S
        with _FdSampler(broker.proc.pid) as fds:
            _check_random_partitions(broker.address, rng, written, "b")
            sample = rng.sample(range(PARTITIONS), 300)
            got = _consume(broker.address, {p: written[p] for p in sample})
            assert got == {p: set(written[p]) for p in sample}
        assert fds.peak <= FD_BOUND

        broker.kill()
        broker, took = _start(data_dir)
        print(f"restart after kill -9 listened after {took:.1f}s")
        assert took < START_BOUND_S
        _check_random_partitions(broker.address, rng, written, "c")
        assert "Traceback" not in broker.log()
        assert broker.stop() == 0
    finally:
        broker.stop()

"""logship's own producer is idempotent (issue #14): `logship produce` through a proxy that loses
responses stores every record once, in order; batches carry one producer id and consecutive
sequences per partition; `--no-idempotence` sends none; a batch refused for good leaves a gap
the producer recovers from with a bumped epoch (as the Java producer resets its sequences)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from local_cluster import run_logship
from logship.broker_process import child_env
from logship.client import Producer
from logship.errors import DeliveryError
from response_dropper import ResponseDropper

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNT = 200_000


def _batches(data_dir, topic: str, partition: int = 0) -> list[dict]:
    found = []
    for segment in sorted((data_dir / f"{topic}-{partition}").glob("*.log")):
        out = subprocess.run([sys.executable, "-m", "logship", "dump", str(segment), "--json"], capture_output=True,
                             text=True, check=True, env=child_env()).stdout
        found += [json.loads(line)["batch"] for line in out.splitlines()]
    return found


def _read_through(proxy: ResponseDropper, topic: str) -> list[str]:
    """Partition 0 of `topic`, read with kcat through the proxy, which now loses nothing (the
    broker advertises the proxy's address, so a client that follows Metadata needs it open)."""
    proxy.drop = 0.0
    return subprocess.run(["kcat", "-C", "-b", proxy.address, "-t", topic, "-p", "0", "-e", "-q"],
                          capture_output=True, check=True, timeout=120).stdout.decode().split()


def test_logship_produce_through_lost_responses_stores_each_record_once(start_broker):
    proxy = ResponseDropper(drop=0.05, seed=3)
    try:
        broker = start_broker("--advertise", proxy.address)
        proxy.upstream = ("127.0.0.1", int(broker.address.rsplit(":", 1)[1]))
        lines = "".join(f"{n:07d}\n" for n in range(COUNT))
        done = subprocess.run([sys.executable, "-m", "logship", "produce", "-b", proxy.address, "lost", "-p", "0",
                               "--batch-size", "64K", "-z", "none"], input=lines.encode(), capture_output=True,
                              timeout=240, env=child_env({"LOGSHIP_ENCODE_WORKERS": "0"}))
        assert done.returncode == 0, done.stderr
        assert proxy.dropped > 0
        assert _read_through(proxy, "lost") == [f"{n:07d}" for n in range(COUNT)]
    finally:
        proxy.close()


def test_producer_api_through_lost_responses_stores_each_record_once_in_order(start_broker):
    proxy = ResponseDropper(drop=0.05, seed=5)
    try:
        broker = start_broker("--advertise", proxy.address)
        proxy.upstream = ("127.0.0.1", int(broker.address.rsplit(":", 1)[1]))
        with Producer(proxy.address, batch_size=32768, linger_ms=5, compression="none",
                      retry_backoff_ms=10) as producer:
            for n in range(COUNT):
                producer.send("api", b"%07d" % n, partition=0)
            producer.flush(timeout=240)
        assert producer.acknowledged == COUNT and producer.failed == 0
        assert proxy.dropped > 0
        assert _read_through(proxy, "api") == [f"{n:07d}" for n in range(COUNT)]
    finally:
        proxy.close()


def test_batches_carry_one_id_and_consecutive_sequences(start_broker):
    broker = start_broker("--partitions", "2")
    with Producer(broker.address, batch_size=4096, linger_ms=1) as producer:
        for n in range(3000):
            producer.send("seq", b"%05d" % n, partition=n % 2)
    pid = producer.producer_id
    assert pid >= 0 and producer.idempotent
    for partition in (0, 1):
        batches = _batches(broker.data_dir, "seq", partition)
        assert len(batches) > 3
        assert {b["producer_id"] for b in batches} == {pid} and {b["producer_epoch"] for b in batches} == {0}
        expected = 0
        for b in batches:
            assert b["base_sequence"] == expected
            expected += b["count"]
        assert expected == 1500

    assert run_logship("produce", "-b", broker.address, "plain", "--no-idempotence", input="a\nb\n").returncode == 0
    assert {b["producer_id"] for p in (0, 1) for b in _batches(broker.data_dir, "plain", p)} == {-1}
    assert run_logship("produce", "-b", broker.address, "acks1", "--acks", "1", input="a\n").returncode == 0
    assert {b["producer_id"] for p in (0, 1) for b in _batches(broker.data_dir, "acks1", p)} == {-1}  # needs acks=all


def test_a_batch_refused_for_good_leaves_a_gap_that_a_bumped_epoch_closes(start_broker):
    broker = start_broker()
    assert run_logship("topics", "create", "small", "-b", broker.address, "-c", "max.message.bytes=2000").returncode == 0
    producer = Producer(broker.address, linger_ms=0, compression="none")
    try:
        producer.send("small", b"first", partition=0)
        producer.flush()
        first = (producer.producer_id, producer.producer_epoch)
        producer.send("small", b"x" * 5000, partition=0)  # refused as too large: its sequence never lands
        with pytest.raises(DeliveryError):
            producer.flush()
        producer.send("small", b"after", partition=0)  # the broker waits for the lost sequence: reset
        producer.flush()
        assert (producer.producer_id, producer.producer_epoch) == (first[0], first[1] + 1)
    finally:
        producer.close()
    out = subprocess.run(["kcat", "-C", "-b", broker.address, "-t", "small", "-e", "-q"], capture_output=True,
                         check=True, timeout=60).stdout.split()
    assert out == [b"first", b"after"]

"""A full disk fails the produce request, keeps the broker up and corrupts no segment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from kafka_clients import consume

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny_disk(tmp_path):
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_produce_on_a_full_disk_fails_cleanly(start_broker, tiny_disk):
    from confluent_kafka import Producer

    broker = start_broker("--segment-bytes", "256K", data_dir=tiny_disk / "data")
    outcomes = {"acked": [], "failed": []}

    def delivered(err, msg):
        (outcomes["failed"] if err else outcomes["acked"]).append(msg.value())

    producer = Producer({"bootstrap.servers": broker.address, "acks": "all", "linger.ms": 5, "retries": 0,
                         "message.timeout.ms": 10000, "compression.type": "none",
                         "batch.size": 64 << 10})  # batches fit a segment: bigger ones are refused (18)
    for i in range(30_000):  # ~3 MB of records into a 2 MB disk
        while True:
            try:
                producer.produce("fill", b"%06d-" % i + b"x" * 93, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    assert outcomes["failed"], "the disk never filled up"
    assert outcomes["acked"], "nothing fitted on the disk"
    assert broker.proc.poll() is None, "the broker died"
    assert "produce to fill-0 failed" in broker.log() and "No space left" in broker.log(), broker.log()[-2000:]

    got = consume("confluent", broker.address, "fill", len(outcomes["acked"]), timeout=30)
    assert [r.value for r in got][: len(outcomes["acked"])] == outcomes["acked"][: len(got)]
    assert {r.value for r in got} >= set(outcomes["acked"])
    assert [r.offset for r in got] == list(range(len(got)))
    for segment in sorted((tiny_disk / "data" / "fill-0").glob("*.log")):
        dump = subprocess.run([sys.executable, "-m", "logship", "dump", str(segment)], capture_output=True,
                              text=True, cwd=ROOT)
        assert dump.returncode == 0, f"{segment.name}: {dump.stdout[-300:]}"

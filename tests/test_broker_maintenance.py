"""The broker's periodic jobs survive a full disk: a checkpoint that fails with ENOSPC is one
log line, and retention and checkpoints go on once there is space again."""

from __future__ import annotations

import time

import pytest

from conftest import wait_until
from logship.storage.checkpoint import read_offsets
from tiny_disk import fill, tmpfs

pytestmark = pytest.mark.integration


def produce(address: str, topic: str, count: int, size: int = 1000) -> list:
    """`count` records of about `size` bytes with acks=all; returns the delivery errors."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "acks": "all", "linger.ms": 5, "retries": 0,
                         "compression.type": "none", "message.timeout.ms": 20000, "batch.size": 16384})
    errors = []
    for i in range(count):
        producer.produce(topic, b"%06d-" % i + b"x" * size, on_delivery=lambda err, msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0
    return errors


def test_checkpoints_failing_on_a_full_disk_do_not_stop_retention(start_broker, tmp_path):
    with tmpfs(tmp_path / "tiny", "4m") as disk:
        data = disk / "data"
        broker = start_broker("--segment-bytes", "64K", "--retention-bytes", "128K", "--retention",
                              "-1", "--retention-check-interval", "200ms", "--checkpoint-interval", "200ms",
                              data_dir=data)
        assert produce(broker.address, "logs", 100) == []  # ~100 KB: two segments, under retention.bytes
        first = data / "logs-0" / f"{0:020d}.log"
        assert first.exists()

        fill(disk / "filler")
        assert wait_until(lambda: "checkpoint failed" in broker.log(), 10), broker.log()[-2000:]
        time.sleep(1.5)  # several more checkpoint intervals (200 ms) on the full disk
        assert broker.proc.poll() is None
        assert not list(data.glob("*.tmp")), "a failed checkpoint left its temporary file"

        (disk / "filler").unlink()
        assert wait_until(lambda: "checkpoint works again" in broker.log(), 10), broker.log()[-2000:]
        assert produce(broker.address, "logs", 200) == []  # now well over retention.bytes
        assert wait_until(lambda: not first.exists(), 10), "retention stopped after the full disk"
        assert wait_until(lambda: read_offsets(data / "log-start-offset-checkpoint").get(("logs", 0), 0) > 0, 10)
        assert read_offsets(data / "recovery-point-offset-checkpoint").get(("logs", 0), 0) > 0
        assert broker.stop() == 0
    log = broker.log()
    assert "Traceback" not in log, log[-3000:]
    failures = [line for line in log.splitlines() if "checkpoint failed" in line]
    assert len(failures) == 1, failures  # one line for a run of failures with the same reason
    assert "No space left on device" in failures[0]
    assert "retention deleted" in log


def test_sigterm_on_a_full_disk_exits_without_a_traceback_and_recovers(start_broker, tmp_path):
    from kafka_clients import consume

    with tmpfs(tmp_path / "tiny", "4m") as disk:
        data = disk / "data"
        broker = start_broker("--segment-bytes", "64K", data_dir=data)
        assert produce(broker.address, "logs", 300) == []
        fill(disk / "filler")
        assert broker.stop() == 0
        log = broker.log()
        assert "Traceback" not in log, log[-3000:]
        assert "cannot write the checkpoints" in log and "No space left on device" in log, log[-2000:]
        assert not (data / ".logship-clean-shutdown").exists()

        (disk / "filler").unlink()
        restarted = start_broker("--segment-bytes", "64K", data_dir=data)
        assert "not closed cleanly" in restarted.log()
        got = consume("confluent", restarted.address, "logs", 300, timeout=30)
        assert [r.offset for r in got] == list(range(300))
        assert restarted.stop() == 0


def test_a_failing_job_says_why_once_and_runs_again_until_it_works(caplog):
    import asyncio
    import errno
    import logging

    from logship.broker.maintenance import Job

    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) <= 5:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/recovery-point-offset-checkpoint.tmp")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        job = Job("checkpoint", 0.01, flaky, loop.time())
        for _ in range(7):
            await job.run_once(loop)
            assert job.next_at > loop.time()

    with caplog.at_level(logging.INFO, logger="logship.broker"):
        asyncio.run(main())
    assert len(calls) == 7
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["checkpoint failed: No space left on device: /data/recovery-point-offset-checkpoint.tmp; "
                      "retrying every 0.01 s"]
    assert not any(r.exc_info for r in caplog.records)  # tracebacks only at debug level
    assert "checkpoint works again, after 5 failed attempt(s)" in caplog.text

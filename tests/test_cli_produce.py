"""`logship produce` end to end: real broker, records read back by kcat and confluent-kafka."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from kafka_clients import consume

pytestmark = pytest.mark.integration


def logship(*args, input: bytes = b"", env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", *map(str, args)], input=input, capture_output=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


def test_200000_lines_arrive_in_order(broker):
    lines = b"".join(b"%d\n" % i for i in range(1, 200_001))
    result = logship("produce", "seq", "--brokers", broker.address, input=lines)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # no progress line when stderr is not a terminal
    out = subprocess.run(["kcat", "-C", "-b", broker.address, "-t", "seq", "-e", "-q"], capture_output=True,
                         check=True, timeout=60).stdout
    assert out == lines


def test_a_line_from_a_slow_pipe_is_sent_before_the_pipe_closes(broker):
    """`tail -f app.log | logship produce`: each line goes when it comes, not once a chunk fills."""
    producer = subprocess.Popen([sys.executable, "-m", "logship", "produce", "slow", "-b", broker.address],
                                stdin=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        producer.stdin.write(b"first\n")
        producer.stdin.flush()
        got = consume("confluent", broker.address, "slow", 1, timeout=20)
        assert [r.value for r in got] == [b"first"]
        assert producer.poll() is None  # still reading its input
        producer.stdin.write(b"second")
        producer.stdin.close()
        assert producer.wait(timeout=30) == 0
    finally:
        producer.kill()
        producer.wait()
    assert [r.value for r in consume("confluent", broker.address, "slow", 2)] == [b"first", b"second"]


def test_keys_headers_nul_records_and_a_last_line_without_newline(broker):
    data = b"host-1:boot ok\0host-2:multi\nline value\0no key here"
    result = logship("produce", "keyed", "-b", broker.address, "-0", "-k", ":", "-H", "source=init",
                     "-H", "dc=eu", input=data)
    assert result.returncode == 0, result.stderr
    got = consume("confluent", broker.address, "keyed", 3)
    headers = (("source", b"init"), ("dc", b"eu"))
    assert [(r.key, r.value, r.headers) for r in got] == [
        (b"host-1", b"boot ok", headers), (b"host-2", b"multi\nline value", headers), (None, b"no key here", headers)]


def test_lines_from_files_in_order(broker, tmp_path):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b"a1\na2\n")
    second.write_bytes(b"b1\nb2")
    assert logship("produce", "files", "-b", broker.address, first, second).returncode == 0
    assert [r.value for r in consume("confluent", broker.address, "files", 4)] == [b"a1", b"a2", b"b1", b"b2"]


def test_keyed_records_land_where_kafkas_partitioner_puts_them(broker):
    from kafka_clients import create_topic

    create_topic(broker.address, "spread", 4)
    data = b"".join(b"key-%d:v%d\n" % (i, i) for i in range(200))
    assert logship("produce", "spread", "-b", broker.address, "-k", ":", input=data).returncode == 0
    from kafka.partitioner.default import murmur2

    for record in consume("confluent", broker.address, "spread", 200):
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 4


def test_broker_down_exits_3_with_one_clear_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    result = logship("produce", "t", "--brokers", f"127.0.0.1:{port}", input=b"x\n")
    assert result.returncode == 3
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], result.stderr


def test_unknown_partition_exits_4(broker):
    result = logship("produce", "one", "-b", broker.address, "-p", "7", input=b"x\n")
    assert result.returncode == 4, result.stderr
    assert b"partition 7" in result.stderr


def test_undeliverable_records_are_counted_and_exit_1(broker):
    big = b"x" * (2 << 20) + b"\n"
    result = logship("produce", "big", "-b", broker.address, "-z", "none", "--batch-size", "4M",
                     input=b"small\n" + big)
    assert result.returncode == 1
    assert b"were not delivered" in result.stderr and b"of 2 records" in result.stderr, result.stderr


def test_progress_is_shown_when_stderr_is_a_terminal(broker):
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "logship", "produce", "tty", "-b", broker.address],
                              input=b"x\n" * 100_000, stdout=subprocess.PIPE, stderr=slave, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"produced 100,000 records" in shown and b"records/s" in shown, shown

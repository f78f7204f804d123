"""`logship consume`, `tail`, `replay` and `topics` end to end against a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, wait_until
from kafka_clients import HEADERS, consume, create_topic, dataset, produce
from test_cli_produce import logship

pytestmark = pytest.mark.integration


def lines_of(result: subprocess.CompletedProcess) -> list[bytes]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_produce_then_consume_200000_in_order(broker):
    data = b"".join(b"%d\n" % i for i in range(1, 200_001))
    assert logship("produce", "seq", "-b", broker.address, input=data).returncode == 0
    result = logship("consume", "seq", "-b", broker.address, "-e")
    assert result.stdout == data and result.stderr == b""


def test_kcat_and_confluent_records_read_by_logship(broker):
    messages = dataset("kc", 500)
    produce("kcat", broker.address, "from-kcat", messages)
    produce("confluent", broker.address, "from-confluent", messages, "zstd")
    for topic in ("from-kcat", "from-confluent"):
        out = [json.loads(line) for line in lines_of(logship("consume", topic, "-b", broker.address, "-e", "--json"))]
        assert [(o["key"], o["value"], o["headers"]) for o in out] == [
            (m.key.decode() if m.key else None, m.value.decode(), [[k, v.decode()] for k, v in HEADERS]) for m in messages]


def test_format_tokens_show_keys_headers_partitions_offsets(broker):
    assert logship("produce", "fmt", "-b", broker.address, "-k", ":", "-H", "a=1", input=b"k1:v1\nk2:v2\n").returncode == 0
    out = lines_of(logship("consume", "fmt", "-b", broker.address, "-e", "-f", "%t/%p/%o %k=%s %h\\n"))
    assert out == [b"fmt/0/0 k1=v1 a=1", b"fmt/0/1 k2=v2 a=1"]


def test_json_round_trip_through_produce_keeps_everything(broker):
    create_topic(broker.address, "src", 3)
    produce("confluent", broker.address, "src", dataset("rt", 300), "none")
    exported = logship("consume", "src", "-b", broker.address, "-e", "--json").stdout
    create_topic(broker.address, "dst", 3)
    assert logship("produce", "dst", "-b", broker.address, "--json", input=exported).returncode == 0
    copied = logship("consume", "dst", "-b", broker.address, "-e", "--json").stdout

    def comparable(raw):
        rows = [json.loads(line) for line in raw.splitlines()]
        return sorted((r["partition"], r["offset"], r["timestamp"], r["key"], r["value"], str(r["headers"])) for r in rows)

    assert comparable(copied) == comparable(exported)


def test_consume_into_head_exits_at_once_quietly(broker):
    assert logship("produce", "many", "-b", broker.address, input=b"x\n" * 50_000).returncode == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    pipeline = subprocess.run(f"{sys.executable} -m logship consume many -b {broker.address} | head -3",
                              shell=True, capture_output=True, env=env, timeout=30)
    assert pipeline.stdout == b"x\nx\nx\n" and pipeline.stderr == b""
    assert time.monotonic() - started < 10  # without -e it would follow forever


def test_exit_at_end_finishes_on_a_busy_topic(broker):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 1})
    stop = threading.Event()

    def keep_producing():
        while not stop.is_set():
            producer.produce("busy", b"more")
            producer.poll(0)
            time.sleep(0.001)
        producer.flush(10)

    producer.produce("busy", b"first")
    producer.flush(10)
    thread = threading.Thread(target=keep_producing)
    thread.start()
    try:
        result = logship("consume", "busy", "-b", broker.address, "-e", timeout=30)
    finally:
        stop.set()
        thread.join(20)
    assert result.returncode == 0 and result.stdout.startswith(b"first\n")


def test_count_grep_and_offsets(broker):
    data = b"".join(b"line %d %s\n" % (i, b"ERROR" if i % 10 == 0 else b"ok") for i in range(100))
    assert logship("produce", "g", "-b", broker.address, input=data).returncode == 0
    assert lines_of(logship("consume", "g", "-b", broker.address, "-c", "2")) == [b"line 0 ERROR", b"line 1 ok"]
    assert lines_of(logship("consume", "g", "-b", broker.address, "-e", "--grep", "ERROR"))[-1] == b"line 90 ERROR"
    assert lines_of(logship("consume", "g", "-b", broker.address, "-e", "-o", "-2")) == [b"line 98 ok", b"line 99 ok"]
    assert lines_of(logship("consume", "g", "-b", broker.address, "-e", "-o", "97"))[0] == b"line 97 ok"


def test_tail_prints_the_last_records_across_partitions_in_time_order(broker):
    from confluent_kafka import Producer

    create_topic(broker.address, "merged", 3)
    producer = Producer({"bootstrap.servers": broker.address})
    base = int(time.time() * 1000) - 10_000
    for i in range(30):
        producer.produce("merged", b"r%02d" % i, partition=i % 3, timestamp=base + i)
    assert producer.flush(10) == 0
    assert lines_of(logship("tail", "merged", "-b", broker.address, "-n", "5")) == [b"r25", b"r26", b"r27", b"r28", b"r29"]
    assert len(lines_of(logship("tail", "merged", "-b", broker.address))) == 10


def test_tail_follow_shows_a_new_record_quickly(broker):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 0})
    producer.produce("live", b"old")
    producer.flush(10)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    follower = subprocess.Popen([sys.executable, "-m", "logship", "tail", "-f", "live", "-b", broker.address, "-n", "1"],
                                stdout=subprocess.PIPE, env=env)
    try:
        assert follower.stdout.readline() == b"old\n"
        time.sleep(1)  # parked in a long-poll fetch
        delays = []
        for i in range(3):
            sent = time.monotonic()
            producer.produce("live", b"new %d" % i)
            producer.flush(10)
            assert follower.stdout.readline() == b"new %d\n" % i
            delays.append(time.monotonic() - sent)
        assert sorted(delays)[1] < 0.1, delays
    finally:
        follower.terminate()
        follower.wait(10)


def test_replay_from_a_time_starts_at_the_right_record_and_can_copy(broker):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.address})
    base = 1_790_000_000_000
    for i in range(20):
        producer.produce("history", b"h%d" % i, key=b"k", headers=[("n", b"%d" % i)], timestamp=base + i * 60_000)
    assert producer.flush(10) == 0
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((base + 5 * 60_000) / 1000))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((base + 8 * 60_000) / 1000))
    assert lines_of(logship("replay", "history", "-b", broker.address, "--from", f"@{at}", "--to", f"@{until}")) == [
        b"h5", b"h6", b"h7"]
    assert logship("replay", "history", "-b", broker.address, "--from", f"@{at}", "--into", "history-copy").returncode == 0
    copied = consume("confluent", broker.address, "history-copy", 15)
    assert [(r.key, r.value, r.headers) for r in copied] == [(b"k", b"h%d" % i, (("n", b"%d" % i),)) for i in range(5, 20)]


def test_topics_create_list_describe_delete(broker):
    assert logship("topics", "create", "orders", "-b", broker.address, "-p", "3").returncode == 0
    assert logship("produce", "orders", "-b", broker.address, "-p", "1", input=b"a\nb\n").returncode == 0
    assert b"orders" in lines_of(logship("topics", "list", "-b", broker.address))
    described = [json.loads(line) for line in lines_of(logship("topics", "describe", "orders", "-b", broker.address, "--json"))]
    assert [(d["partition"], d["log_start_offset"], d["log_end_offset"]) for d in described] == [(0, 0, 0), (1, 0, 2), (2, 0, 0)]
    assert described[1]["size_bytes"] > 0 and described[0]["size_bytes"] == 0
    table = logship("topics", "describe", "orders", "-b", broker.address).stdout.decode()
    assert "log start" in table and "size" in table
    again = logship("topics", "create", "orders", "-b", broker.address)
    assert again.returncode == 1 and b"already exists" in again.stderr
    assert logship("topics", "delete", "orders", "-b", broker.address).returncode == 0
    assert b"orders" not in lines_of(logship("topics", "list", "-b", broker.address))


def test_unknown_topic_exits_4_and_broker_down_exits_3(broker):
    missing = logship("consume", "no-such-topic", "-b", broker.address, "-e")
    assert missing.returncode == 4 and len(missing.stderr.splitlines()) == 1
    down = logship("consume", "t", "-b", "127.0.0.1:1", "-e")
    assert down.returncode == 3 and len(down.stderr.splitlines()) == 1, down.stderr
    bad = logship("consume", "t", "-b", broker.address, "-o", "yesterday")
    assert bad.returncode == 2

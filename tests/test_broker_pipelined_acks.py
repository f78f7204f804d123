"""Many produce requests pipelined on one connection, acks=all mixed with acks=1 and acks=0,
against a real `logship serve`: every answer comes, in request order, with the right offsets,
and a kill -9 right after the last acknowledgement loses none of the acknowledged records."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time

import pytest

from kafka_clients import consume, create_topic

pytestmark = pytest.mark.integration

REQUESTS = 1500
PARTITIONS = 2
ACKS = (-1, -1, 1, -1, 0, -1)  # request i is sent with ACKS[i % len(ACKS)]; each partition's last is acks=all


def _plan() -> list[dict]:
    """Each request: its acks, partition, values, and the base offset the broker must give it."""
    ends, plan = [0] * PARTITIONS, []
    for i in range(REQUESTS):
        acks = -1 if i >= REQUESTS - PARTITIONS else ACKS[i % len(ACKS)]
        partition, count = i % PARTITIONS, 1 + i % 3
        plan.append({"acks": acks, "partition": partition, "base": ends[partition],
                     "values": [b"r%05d-%d" % (i, n) for n in range(count)]})
        ends[partition] += count
    return plan


def _frame(i: int, request: dict) -> bytes:
    from logship import records
    from logship.protocol import ApiKey, framing

    now = int(time.time() * 1000)
    batch = records.build_batch([(now, None, value, ()) for value in request["values"]])
    body = {"transactional_id": None, "acks": request["acks"], "timeout_ms": 10000,
            "topic_data": [{"name": "pipe", "partition_data": [{"index": request["partition"],
                                                                 "records": bytes(batch)}]}]}
    return framing.encode_request(ApiKey.PRODUCE, 7, i, "pipelined", body)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return bytes(data)


def test_pipelined_mixed_acks_are_answered_in_order_and_survive_kill_9(start_broker, tmp_path):
    from logship.protocol import ApiKey, framing

    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    create_topic(broker.address, "pipe", PARTITIONS)
    plan = _plan()
    frames = b"".join(_frame(i, request) for i, request in enumerate(plan))
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(frames,), daemon=True)
        sender.start()  # all of it at once: the broker reads far ahead of its answers
        answered = []
        for i, request in enumerate(plan):
            if request["acks"] == 0:
                continue
            size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
            correlation_id, body = framing.decode_response(ApiKey.PRODUCE, 7, _recv_exactly(sock, size))
            assert correlation_id == i, "answers out of request order"
            entry = body["responses"][0]["partition_responses"][0]
            assert (entry["index"], entry["error_code"]) == (request["partition"], 0)
            assert entry["base_offset"] == request["base"], f"request {i}"
            answered.append(i)
        broker.proc.send_signal(signal.SIGKILL)  # at once after the last acknowledgement
        broker.proc.wait(10)
        sender.join(10)
    assert len(answered) == sum(1 for r in plan if r["acks"] != 0)

    restarted = start_broker(data_dir=data_dir)
    assert "not closed cleanly" in restarted.log()
    total = sum(len(r["values"]) for r in plan)
    stored = {(r.partition, r.offset): r.value for r in consume("confluent", restarted.address, "pipe", total)}
    for i, request in enumerate(plan):  # each partition's last request was acks=all: all before it is durable
        for n, value in enumerate(request["values"]):
            assert stored.get((request["partition"], request["base"] + n)) == value, f"request {i} lost"

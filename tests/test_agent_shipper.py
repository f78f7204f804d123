"""The agent's shipper against a scripted broker: what it does with each kind of Produce
error (retry, split, drop and count), in order, with acks=all."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from logship import records
from logship.agent.batches import OutgoingBatch
from logship.agent.checkpoint import FileState
from logship.agent.identity import FileId, Fingerprint
from logship.agent.linerecords import RecordTemplate, encode
from logship.agent.shipper import Shipper
from logship.client import Cluster
from logship.protocol import ADVERTISED, ApiKey, api_versions_entries, decode_request, encode_response


class ScriptedBroker:
    """One node leading topic "t" (one partition); the n-th Produce request is answered
    with the error code `script(n, values)` returns. Records produced (and answered 0) are
    kept in `log`."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[list[bytes]] = []
        self.log: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                try:
                    size = struct.unpack(">i", _recv(conn, 4))[0]
                    request = decode_request(_recv(conn, size))
                except (EOFError, OSError):
                    return
                conn.sendall(self._answer(request))

    def _answer(self, request):
        cid, version = request.correlation_id, request.api_version
        if request.api_key == ApiKey.API_VERSIONS:
            return encode_response(ApiKey.API_VERSIONS, version, cid, {
                "error_code": 0, "api_keys": api_versions_entries(ADVERTISED), "throttle_time_ms": 0})
        if request.api_key == ApiKey.METADATA:
            return encode_response(ApiKey.METADATA, version, cid, {
                "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": self.port, "rack": None}],
                "cluster_id": "fake", "controller_id": 1,
                "topics": [{"error_code": 0, "name": "t", "is_internal": False, "partitions": [
                    {"error_code": 0, "partition_index": 0, "leader_id": 1, "replica_nodes": [1],
                     "isr_nodes": [1], "offline_replicas": []}]}]})
        assert request.api_key == ApiKey.PRODUCE and request.body["acks"] == -1
        data = bytes(request.body["topic_data"][0]["partition_data"][0]["records"])
        values = [r.value for r in records.iter_records(data)]
        self.requests.append(values)
        code = self.script(len(self.requests) - 1, values)
        if code == 0:
            self.log += values
        return encode_response(ApiKey.PRODUCE, version, cid, {"responses": [
            {"name": "t", "partition_responses": [{"index": 0, "error_code": code, "base_offset": -1}]}],
            "throttle_time_ms": 0})

    def close(self):
        self.sock.close()


def _recv(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


STATE = FileState(FileId(1, 1), Fingerprint(0, ""), 0, "/x")
TEMPLATE = RecordTemplate(None, [("host", b"h")])


def batch(values: list[bytes]) -> OutgoingBatch:
    b = OutgoingBatch("t", 0)
    b.add(encode(values, list(range(len(values))), [], 0, TEMPLATE), len(values), sum(map(len, values)))
    b.steps.append(STATE.add(len(values)))
    return b


@pytest.fixture
def ship():
    started = []

    def start(script):
        broker = ScriptedBroker(script)
        shipper = Shipper(Cluster(f"127.0.0.1:{broker.port}"), compression=4, backoff_max=0.05)
        shipper.start()
        started.append((broker, shipper))
        return broker, shipper

    yield start
    for broker, shipper in started:
        shipper.close(5)
        broker.close()


def wait_done(shipper, count, timeout=10):
    done, deadline = [], time.monotonic() + timeout
    while len(done) < count and time.monotonic() < deadline:
        done += shipper.take_done()
        time.sleep(0.01)
    return done


def test_retriable_errors_are_retried_in_order_until_acknowledged(ship):
    broker, shipper = ship(lambda n, values: 6 if n < 2 else 0)  # NOT_LEADER_OR_FOLLOWER twice
    batches = [batch([b"a%d" % i for i in range(10)]), batch([b"b%d" % i for i in range(10)])]
    shipper.submit(batches)
    done = wait_done(shipper, 2)
    assert [b for b, error in done] == batches and all(error is None for _, error in done)
    assert broker.log == [b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)]
    assert shipper.retries >= 2


def test_a_batch_too_large_for_the_broker_is_split_and_delivered_in_order(ship):
    broker, shipper = ship(lambda n, values: 10 if len(values) > 3 else 0)  # MESSAGE_TOO_LARGE
    values = [b"v%02d" % i for i in range(10)]
    original = batch(values)
    steps = list(original.steps)
    shipper.submit([original])
    done = wait_done(shipper, 4)
    assert broker.log == values
    assert all(error is None for _, error in done)
    assert [step for b, _ in done for step in b.steps] == steps  # the checkpoint moves with the last piece


def test_a_single_record_too_large_is_dropped_counted_and_does_not_block_the_next(ship):
    broker, shipper = ship(lambda n, values: 10 if values == [b"huge"] else 0)
    shipper.submit([batch([b"huge"]), batch([b"next"])])
    done = wait_done(shipper, 2)
    assert [error is None for _, error in done] == [False, True]
    assert broker.log == [b"next"]


def test_a_non_retriable_error_is_tried_three_times_then_dropped(ship):
    broker, shipper = ship(lambda n, values: 2 if values == [b"bad"] else 0)  # CORRUPT_MESSAGE
    bad, good = batch([b"bad"]), batch([b"good"])
    shipper.submit([bad, good])
    done = dict(wait_done(shipper, 2))
    assert done[good] is None and done[bad].code == 2
    # the batch behind the refused one was written once, not sent again with it
    assert broker.requests.count([b"bad"]) == 3 and broker.log == [b"good"]

"""The agent's shipper against a scripted broker: what it does with each kind of Produce
error (retry, split, drop and count), in order, with acks=all."""

from __future__ import annotations

import time

import pytest
from fake_broker import ScriptedServer

from logship import records
from logship.agent.batches import OutgoingBatch
from logship.agent.checkpoint import FileState
from logship.agent.identity import FileId, Fingerprint
from logship.agent.linerecords import RecordTemplate, encode
from logship.agent.shipper import Shipper
from logship.client import Cluster
from logship.protocol import ApiKey, encode_response


class ScriptedBroker(ScriptedServer):
    """One node leading topic "t" (one partition); the n-th Produce request is answered
    with the error code `script(n, values)` returns. Records produced (and answered 0) are
    kept in `log`."""

    def __init__(self, script):
        super().__init__({"t": 1})
        self.script = script
        self.requests: list[list[bytes]] = []
        self.log: list[bytes] = []

    def answer_other(self, request):
        assert request.api_key == ApiKey.PRODUCE and request.body["acks"] == -1
        data = bytes(request.body["topic_data"][0]["partition_data"][0]["records"])
        values = [r.value for r in records.iter_records(data)]
        self.requests.append(values)
        code = self.script(len(self.requests) - 1, values)
        if code == 0:
            self.log += values
        return encode_response(ApiKey.PRODUCE, request.api_version, request.correlation_id, {"responses": [
            {"name": "t", "partition_responses": [{"index": 0, "error_code": code, "base_offset": -1}]}],
            "throttle_time_ms": 0})


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
    done = wait_done(shipper, 1)
    assert broker.log == values
    assert done == [(original, None)] and original.steps == steps  # reported once, when every piece is in
    assert max(map(len, broker.requests[1:])) <= 5  # halves, then quarters


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

"""Producer.send_encoded against a scripted fake broker: batches encoded by the caller, each
reported once to its on_delivery callback (None or the error), in order, through the same
retries as every batch; and the options a log shipper sets (strict_order=False,
refused_attempts, split_too_large, wait_for_topics, on_retry). Also Producer.send_batch:
whole batches built by the caller, sent as given, in order."""

from __future__ import annotations

import time

import pytest
from conftest import wait_until
from fake_broker import ScriptedServer

from logship import records
from logship.client import Cluster, Producer
from logship.errors import (CorruptRecordError, DeliveryError, InvalidRecordError, MessageTooLargeError,
                            NotLeaderError, RequestTimedOutError, UnknownTopicError)
from logship.protocol import ApiKey, encode_response
from logship.compression import ZSTD
from logship.record_codec import encode_values

T0 = 1_700_000_000_000


class ScriptedBroker(ScriptedServer):
    """Leads every partition of `topics`. The n-th Produce request is answered as
    `script(n, values) -> (error code, hold)` says (values: those of its one batch); a held
    answer goes out when the next request arrives, so two are in flight. Records answered
    0 are kept in `log` (value, timestamp); `requests` keeps each request's values."""

    def __init__(self, script=lambda n, values: (0, False), topics=None):
        super().__init__(topics or {"t": 1})
        self.script = script
        self.requests: list[list[bytes]] = []
        self.partitions: list[int] = []  # each Produce request's partition
        self.log: list[tuple[bytes, int]] = []

    def serve(self, conn):
        held = []
        for request in self.incoming(conn):
            if request.api_key != ApiKey.PRODUCE:
                conn.sendall(self.answer(request))
                continue
            part = request.body["topic_data"][0]["partition_data"][0]
            batch = list(records.iter_records(bytes(part["records"])))
            values = [r.value for r in batch]
            self.requests.append(values)
            self.partitions.append(part["index"])
            code, hold = self.script(len(self.requests) - 1, values)
            if code == 0:
                self.log += [(r.value, r.timestamp) for r in batch]
            held.append(encode_response(ApiKey.PRODUCE, request.api_version, request.correlation_id, {
                "responses": [{"name": request.body["topic_data"][0]["name"], "partition_responses": [
                    {"index": part["index"], "error_code": code, "base_offset": -1}]}], "throttle_time_ms": 0}))
            if not hold:
                for frame in held:
                    conn.sendall(frame)
                held = []

    @property
    def values(self) -> list[bytes]:
        return [value for value, _ in self.log]


class Reports:
    """on_delivery callbacks that note (name, error) in the order they are called."""

    def __init__(self):
        self.calls: list = []

    def __call__(self, name):
        return lambda error: self.calls.append((name, error))

    def by_name(self) -> dict:
        result = dict(self.calls)
        assert len(result) == len(self.calls), f"a callback ran twice: {self.calls}"
        return result


@pytest.fixture
def make():
    made = []

    def make(script=lambda n, values: (0, False), topics=None, **options):
        broker = ScriptedBroker(script, topics)
        cluster = Cluster(broker.address, topic_wait=options.pop("topic_wait", None))
        options.setdefault("retry_backoff_ms", 10)
        producer = Producer(cluster, **options)
        made.append((broker, cluster, producer))
        return broker, producer

    yield make
    for broker, cluster, producer in made:
        try:
            producer.close(timeout=5)
        except DeliveryError:
            pass
        cluster.close()
        broker.close()


def send(producer, name, values, reports, topic="t", timestamp_ms=T0):
    producer.send_encoded(topic, 0, encode_values(values), len(values), timestamp_ms=timestamp_ms,
                          on_delivery=reports(name))


def test_each_batch_is_written_in_order_and_reported_once_before_flush_returns(make):
    broker, producer = make()
    reports = Reports()
    for i in range(5):
        section = encode_values([b"%d-%d" % (i, j) for j in range(3)])
        given = [section[:7], section[7:]] if i % 2 else section  # whole, or in pieces to be joined
        producer.send_encoded("t", 0, given, 3, timestamp_ms=T0 + i, on_delivery=reports(i))
    producer.flush(timeout=10)
    assert reports.calls == [(i, None) for i in range(5)]  # flush waited for the callbacks
    assert broker.log == [(b"%d-%d" % (i, j), T0 + i) for i in range(5) for j in range(3)]
    assert producer.acknowledged == 15 and producer.pending == 0


def test_an_encoded_batch_goes_after_records_sent_before_to_its_partition(make):
    broker, producer = make(linger_ms=60_000)
    reports = Reports()
    producer.send_values("t", [b"a", b"b"], partition=0)
    send(producer, "c", [b"c"], reports)
    producer.send_values("t", [b"d"], partition=0)
    producer.flush(timeout=10)
    assert broker.values == [b"a", b"b", b"c", b"d"]
    assert reports.calls == [("c", None)]


def test_a_built_batch_goes_as_given_after_records_sent_before_to_its_partition(make):
    broker, producer = make(linger_ms=60_000)
    producer.send_values("t", [b"a", b"b"], partition=0)
    producer.send_batch("t", records.build_batch_values([b"c", b"d"], T0 + 5, ZSTD), 2, partition=0)
    producer.send_values("t", [b"e"], partition=0)
    producer.flush(timeout=10)
    assert broker.values == [b"a", b"b", b"c", b"d", b"e"]
    assert broker.log[2:4] == [(b"c", T0 + 5), (b"d", T0 + 5)]  # its own timestamp, as built
    assert broker.requests[1] == [b"c", b"d"] and producer.acknowledged == 5


def test_built_batches_without_a_partition_take_the_sticky_one_which_moves_on_each_batch(make):
    broker, producer = make(topics={"t": 3})
    for i in range(6):
        producer.send_batch("t", records.build_batch_values([b"%d" % i], T0), 1)
        producer.flush(timeout=10)  # one partition a request: all this fake broker answers
    assert broker.values == [b"%d" % i for i in range(6)]
    first = broker.partitions[0]
    assert broker.partitions == [(first + i) % 3 for i in range(6)]
    with pytest.raises(UnknownTopicError, match="no partition 3"):
        producer.send_batch("t", records.build_batch_values([b"x"], T0), 1, partition=3)


def test_a_refused_batch_is_reported_with_its_error_and_the_next_goes_on(make):
    broker, producer = make(lambda n, values: (87 if values == [b"bad"] else 0, False))  # INVALID_RECORD
    reports = Reports()
    send(producer, "bad", [b"bad"], reports)
    send(producer, "good", [b"good"], reports)
    with pytest.raises(DeliveryError) as raised:
        producer.flush(timeout=10)
    assert raised.value.failed == 1
    done = reports.by_name()
    assert isinstance(done["bad"], InvalidRecordError) and done["good"] is None
    assert broker.requests.count([b"bad"]) == 1 and broker.values == [b"good"]


def test_retriable_errors_are_retried_and_reported_once_as_delivered(make):
    retried = []
    broker, producer = make(lambda n, values: (6 if n < 3 else 0, False), on_retry=retried.append)
    reports = Reports()
    send(producer, "a", [b"a"], reports)
    producer.flush(timeout=10)
    assert reports.calls == [("a", None)]
    assert broker.requests == [[b"a"]] * 4 and broker.values == [b"a"]
    assert producer.resent == 3
    assert len(retried) == 3 and all(isinstance(e, NotLeaderError) for e in retried)


def test_refused_attempts_sends_a_refused_batch_again_before_failing_it(make):
    # (without strict_order: with it, "good" written first would end the retries of "bad")
    broker, producer = make(lambda n, values: (2 if values == [b"bad"] else 0, False),  # CORRUPT_MESSAGE
                            refused_attempts=3, strict_order=False)
    reports = Reports()
    send(producer, "bad", [b"bad"], reports)
    send(producer, "good", [b"good"], reports)
    with pytest.raises(DeliveryError):
        producer.flush(timeout=10)
    done = reports.by_name()
    assert isinstance(done["bad"], CorruptRecordError) and done["good"] is None
    assert broker.requests.count([b"bad"]) == 3 and broker.values == [b"good"]


@pytest.mark.parametrize("strict", [True, False])
def test_a_batch_failing_after_a_later_one_was_written_fails_or_lands_after_it(make, strict):
    # The first request's answer (NOT_LEADER_OR_FOLLOWER) is held until the second arrived
    # and was written. Without idempotence (with it the broker orders them: test_idempotence_client.py).
    broker, producer = make(lambda n, values: (6, True) if n == 0 else (0, False), strict_order=strict,
                            idempotence=False)
    reports = Reports()
    send(producer, "first", [b"1"], reports)
    send(producer, "second", [b"2"], reports)
    if strict:
        with pytest.raises(DeliveryError):
            producer.flush(timeout=10)
        assert broker.values == [b"2"]
        assert isinstance(reports.by_name()["first"], NotLeaderError)
    else:
        producer.flush(timeout=10)
        assert broker.values == [b"2", b"1"]
        assert reports.by_name() == {"first": None, "second": None}


def test_a_batch_too_large_fails_or_is_split_in_halves_and_reported_once(make):
    values = [b"v%02d" % i for i in range(10)]
    script = lambda n, batch: (10 if len(batch) > 3 else 0, False)  # noqa: E731  MESSAGE_TOO_LARGE
    broker, producer = make(script)
    reports = Reports()
    send(producer, "big", values, reports)
    with pytest.raises(DeliveryError):
        producer.flush(timeout=10)
    assert isinstance(reports.by_name()["big"], MessageTooLargeError) and broker.log == []

    broker, producer = make(script, split_too_large=True, compression="none")
    reports = Reports()
    send(producer, "big", values, reports, timestamp_ms=T0 + 5)
    producer.flush(timeout=10)
    assert reports.calls == [("big", None)]
    assert broker.log == [(v, T0 + 5) for v in values]
    assert [len(r) for r in broker.requests] == [10, 5, 2, 3, 5, 2, 3]
    assert producer.acknowledged == 10 and producer.resent == 0


def test_a_split_batch_of_which_one_record_is_refused_says_how_many_failed(make):
    values = [b"v%02d" % i for i in range(8)]
    broker, producer = make(lambda n, batch: (10 if len(batch) > 1 or batch == [b"v05"] else 0, False),
                            split_too_large=True)
    reports = Reports()
    send(producer, "big", values, reports)
    with pytest.raises(DeliveryError):
        producer.flush(timeout=10)
    (name, error), = reports.calls
    assert isinstance(error, DeliveryError) and error.failed == 1
    assert isinstance(error.first_error, MessageTooLargeError)
    assert broker.values == [v for v in values if v != b"v05"]
    assert producer.failed == 1 and producer.acknowledged == 7


def test_a_missing_topic_fails_its_batches_or_they_wait_for_it(make):
    broker, producer = make(topics={"t": 1}, topic_wait=1)
    reports = Reports()
    send(producer, "lost", [b"x"], reports, topic="later")
    started = time.monotonic()
    with pytest.raises(DeliveryError):
        producer.flush(timeout=10)
    assert isinstance(reports.by_name()["lost"], UnknownTopicError)
    assert 0.5 < time.monotonic() - started < 3  # asked for again for the cluster's topic_wait, then failed

    retried = []
    broker, producer = make(topics={"t": 1}, wait_for_topics=True, retry_backoff_max_ms=50, on_retry=retried.append)
    reports = Reports()
    assert producer.partitions("later", wait=False) is None
    send(producer, "waits", [b"x"], reports, topic="later")
    assert wait_until(lambda: sum(isinstance(e, UnknownTopicError) for e in retried) >= 3)
    assert reports.calls == [] and producer.pending == 1
    broker.topics["later"] = 2
    producer.flush(timeout=10)
    assert reports.calls == [("waits", None)] and broker.values == [b"x"]
    assert wait_until(lambda: producer.partitions("later", wait=False) == 2)


def test_a_partition_the_topic_lacks_fails_or_waits(make):
    broker, producer = make(topics={"t": 1})
    reports = Reports()
    producer.send_encoded("t", 3, encode_values([b"x"]), 1, timestamp_ms=T0, on_delivery=reports("p3"))
    with pytest.raises(DeliveryError):
        producer.flush(timeout=10)
    error = reports.by_name()["p3"]
    assert isinstance(error, UnknownTopicError) and "no partition 3" in str(error)

    retried = []
    broker, producer = make(topics={"t": 1}, wait_for_topics=True, retry_backoff_max_ms=50, on_retry=retried.append)
    reports = Reports()
    producer.send_encoded("t", 3, encode_values([b"x"]), 1, timestamp_ms=T0, on_delivery=reports("p3"))
    assert wait_until(lambda: len(retried) >= 2)
    assert "no partition 3" in str(retried[0]) and reports.calls == []
    broker.topics["t"] = 4
    producer.flush(timeout=10)
    assert reports.calls == [("p3", None)] and broker.values == [b"x"]


def test_no_delivery_timeout_and_a_callback_that_raises_does_not_stop_delivery(make):
    first = []

    def script(n, values):  # REQUEST_TIMED_OUT for the first 0.5 s
        first.append(first[0] if first else time.monotonic())
        return 7 if time.monotonic() - first[0] < 0.5 else 0, False

    broker, producer = make(script, delivery_timeout_ms=None, retry_backoff_max_ms=50)
    calls = []

    def failing(error):
        calls.append(error)
        raise RuntimeError("a bug in the caller")

    producer.send_encoded("t", 0, encode_values([b"a"]), 1, timestamp_ms=T0, on_delivery=failing)
    reports = Reports()
    send(producer, "b", [b"b"], reports)
    producer.flush(timeout=10)
    assert calls == [None] and reports.calls == [("b", None)]
    assert broker.values == [b"a", b"b"] and len(broker.requests) > 4


def test_close_reports_what_was_not_delivered_once(make):
    broker, producer = make(lambda n, values: (0, True))  # never answered
    reports = Reports()
    send(producer, "stuck", [b"x"], reports)
    assert wait_until(lambda: broker.requests)
    with pytest.raises(DeliveryError):
        producer.close(timeout=0.2)
    (name, error), = reports.calls
    assert name == "stuck" and isinstance(error, RequestTimedOutError)
    with pytest.raises(DeliveryError, match="closed"):
        send(producer, "late", [b"y"], reports)

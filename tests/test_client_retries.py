"""The producer's retry rules against a scripted fake broker: retriable errors are retried
in order, a batch is never retried past a later batch that was written, and nothing is
dropped without DeliveryError saying so."""

from __future__ import annotations


import pytest
from conftest import wait_until
from fake_broker import ScriptedServer

from logship import records
from logship.client import Cluster, Producer
from logship.errors import DeliveryError, NotLeaderError
from logship.protocol import ApiKey, encode_response


class ScriptedBroker(ScriptedServer):
    """Answers ApiVersions and Metadata (one topic "t", one partition, led by itself) and
    Produce requests as `script(n)` says for the n-th one: an error code, and whether to
    hold the answer until the next request arrived (so two requests are in flight)."""

    def __init__(self, script):
        super().__init__({"t": 1})
        self.script = script
        self.produced: list[list[bytes]] = []  # values of each Produce request, in arrival order
        self.unanswered: list[int] = []  # Produce requests in flight when each one arrived
        self.answered = 0

    def serve(self, conn):
        held = []
        for request in self.incoming(conn):
            reply = self.answer(request)
            if request.api_key != ApiKey.PRODUCE:
                conn.sendall(reply)
                continue
            if request.body["acks"] == 0:
                continue  # Kafka never answers acks=0
            code, hold = self.script(len(self.produced) - 1)
            held.append(reply(code))
            if not hold:
                for frame in held:
                    conn.sendall(frame)
                self.answered += len(held)
                held = []

    def answer_other(self, request):
        assert request.api_key == ApiKey.PRODUCE
        cid, version = request.correlation_id, request.api_version
        data = request.body["topic_data"][0]["partition_data"][0]["records"]
        self.unanswered.append(len(self.produced) - self.answered)
        self.produced.append([r.value for r in records.iter_records(bytes(data))])
        return lambda code: encode_response(ApiKey.PRODUCE, version, cid, {"responses": [
            {"name": "t", "partition_responses": [{"index": 0, "error_code": code, "base_offset": -1}]}],
            "throttle_time_ms": 0})


def _produce_two_batches(broker, **options):
    """Two batches of 100 values each for partition 0, sent back to back."""
    values = [b"%03d" % i for i in range(200)]
    cluster = Cluster(f"127.0.0.1:{broker.port}")
    producer = Producer(cluster, batch_size=100 * 15 + 128, linger_ms=1000, retry_backoff_ms=10, **options)
    producer.send_values("t", values[:100])
    producer.send_values("t", values[100:])
    error = None
    try:
        producer.flush(timeout=20)
    except DeliveryError as exc:
        error = exc
    producer.close(timeout=5) if error is None else None
    cluster.close()
    return producer, error, values


def test_retriable_errors_are_retried_in_order_one_at_a_time():
    # Both in-flight batches fail with NOT_LEADER_OR_FOLLOWER; then everything succeeds.
    broker = ScriptedBroker(lambda n: (6, n == 0) if n < 2 else (0, False))
    producer, error, values = _produce_two_batches(broker)
    assert error is None and producer.acknowledged == 200 and producer.failed == 0
    assert broker.produced == [values[:100], values[100:], values[:100], values[100:]]
    assert broker.unanswered == [0, 1, 0, 0]  # pipelined at first, one at a time after the error
    assert broker.metadata_requests >= 2  # the leader was looked up again
    broker.close()


def test_a_batch_is_not_retried_once_a_later_one_was_written():
    # The first batch fails retriably while the second, already in flight, is written:
    # retrying the first would put it after the second, so it fails instead (without
    # idempotence: an idempotent producer retries it, and the broker finds it or refuses the
    # second until it comes: test_idempotence_client.py).
    broker = ScriptedBroker(lambda n: (6, True) if n == 0 else (0, False))
    producer, error, values = _produce_two_batches(broker, idempotence=False)
    assert isinstance(error, DeliveryError) and error.failed == 100
    assert isinstance(error.first_error, NotLeaderError)
    assert producer.acknowledged == 100 and producer.failed == 100
    assert broker.produced == [values[:100], values[100:]]
    broker.close()


def test_non_retriable_errors_fail_at_once_and_retries_are_bounded():
    broker = ScriptedBroker(lambda n: (87, False))  # INVALID_RECORD
    producer, error, _ = _produce_two_batches(broker)
    assert error.failed == 200 and producer.acknowledged == 0
    assert len(broker.produced) == 2
    broker.close()

    broker = ScriptedBroker(lambda n: (56, False))  # KAFKA_STORAGE_ERROR, forever
    producer, error, _ = _produce_two_batches(broker, retries=3)
    assert error.failed == 200 and "KAFKA_STORAGE_ERROR" in str(error.first_error)
    assert len(broker.produced) == 2 * 4  # first attempts and three retries each
    broker.close()


def test_delivery_timeout_bounds_retries():
    broker = ScriptedBroker(lambda n: (7, False))  # REQUEST_TIMED_OUT, forever
    producer, error, _ = _produce_two_batches(broker, delivery_timeout_ms=300)
    assert error.failed == 200 and producer.pending == 0
    broker.close()


@pytest.mark.parametrize("acks", [0, 1])
def test_flush_is_not_fooled_by_acks(acks):
    broker = ScriptedBroker(lambda n: (0, False))
    producer, error, values = _produce_two_batches(broker, acks=acks)
    assert error is None and producer.acknowledged == 200
    assert wait_until(lambda: len(broker.produced) == 2)  # acks=0: flush returns once written
    assert broker.produced == [values[:100], values[100:]]
    broker.close()


def test_a_batch_that_cannot_be_built_fails_alone():
    broker = ScriptedBroker(lambda n: (0, False))
    cluster = Cluster(f"127.0.0.1:{broker.port}")
    producer = Producer(cluster)
    producer.send_values("t", ["not bytes"])
    with pytest.raises(DeliveryError, match="1 record could not be delivered: cannot build"):
        producer.flush(timeout=10)
    producer.send_values("t", [b"fine"])
    producer.close(timeout=10)
    assert producer.acknowledged == 1 and producer.failed == 1
    cluster.close()
    broker.close()

"""The idempotent producer's rules against a scripted fake broker (issue #14, client side):
what each batch carries (producer id, epoch, base sequence), that a retry resends the same
bytes in sequence order, that OUT_OF_ORDER_SEQUENCE_NUMBER behind a retried batch is retried
under the same id while UNKNOWN_PRODUCER_ID starts the sequences over under a bumped epoch
and INVALID_PRODUCER_EPOCH under a new id, the cap of 5 requests in flight, the sequences of
a batch split as too large, and the fallback to plain batches against a broker without
InitProducerId. The same rules against a real broker: test_idempotence_client.py."""

from __future__ import annotations

import logging

from fake_broker import ScriptedServer
from test_client_retries import ScriptedBroker, _produce_two_batches

from logship import records
from logship.client import Cluster, Producer
from logship.protocol import ADVERTISED, ApiKey, api_versions_entries, encode_response


class StampedBroker(ScriptedBroker):
    """ScriptedBroker that also keeps each Produce request's batch header and bytes."""

    def __init__(self, script):
        super().__init__(script)
        self.stamps: list[tuple[int, int, int]] = []  # (producer id, epoch, base sequence) per request
        self.raw: list[bytes] = []

    def answer_other(self, request):
        data = bytes(request.body["topic_data"][0]["partition_data"][0]["records"])
        header = records.parse_header(data)
        self.stamps.append((header.producer_id, header.producer_epoch, header.base_sequence))
        self.raw.append(data)
        return super().answer_other(request)


def test_each_batch_carries_the_id_epoch_and_its_partitions_sequence():
    broker = StampedBroker(lambda n: (0, False))
    producer, error, values = _produce_two_batches(broker)
    assert error is None and producer.idempotent and producer.acknowledged == 200
    assert broker.producer_ids == 1
    assert broker.stamps == [(1001, 0, 0), (1001, 0, 100)]
    assert broker.produced == [values[:100], values[100:]]
    broker.close()

    broker = StampedBroker(lambda n: (0, False))
    producer, error, _ = _produce_two_batches(broker, idempotence=False)
    assert error is None and broker.producer_ids == 0
    assert broker.stamps == [(-1, -1, -1), (-1, -1, -1)]
    broker.close()


def test_a_retry_resends_the_same_bytes_even_after_a_later_batch_was_written():
    # The first batch fails retriably while the second, in flight, is written: without
    # idempotence it would fail (test_client_retries.py); here it is resent, byte for byte.
    broker = StampedBroker(lambda n: (6, True) if n == 0 else (0, False))
    producer, error, values = _produce_two_batches(broker)
    assert error is None and producer.acknowledged == 200 and producer.failed == 0
    assert broker.produced == [values[:100], values[100:], values[:100]]
    assert broker.raw[2] == broker.raw[0] and broker.stamps[2] == (1001, 0, 0)
    assert broker.producer_ids == 1
    broker.close()


def test_out_of_order_behind_a_retried_batch_is_retried_in_sequence_order():
    # First: NOT_LEADER_OR_FOLLOWER (held until the second arrives); second: OUT_OF_ORDER_
    # SEQUENCE_NUMBER (the broker never saw sequence 0). Both are resent, first then second,
    # with their sequences, under the same producer id.
    broker = StampedBroker(lambda n: (6, True) if n == 0 else (45, False) if n == 1 else (0, False))
    producer, error, values = _produce_two_batches(broker)
    assert error is None and producer.acknowledged == 200 and producer.failed == 0
    assert broker.produced == [values[:100], values[100:], values[:100], values[100:]]
    assert broker.stamps == [(1001, 0, 0), (1001, 0, 100), (1001, 0, 0), (1001, 0, 100)]
    assert broker.producer_ids == 1
    broker.close()


def _two_sends(broker):
    """"one" then "two" to partition 0, each flushed; the producer."""
    cluster = Cluster(broker.address)
    producer = Producer(cluster, linger_ms=0, retry_backoff_ms=10)
    producer.send("t", b"one", partition=0)
    producer.flush(timeout=20)
    producer.send("t", b"two", partition=0)
    producer.flush(timeout=20)
    producer.close(timeout=5)
    cluster.close()
    return producer


def test_unknown_producer_id_bumps_the_epoch_and_starts_the_sequences_over():
    broker = StampedBroker(lambda n: (59, False) if n == 0 else (0, False))  # UNKNOWN_PRODUCER_ID
    producer = _two_sends(broker)
    assert broker.producer_ids == 1 and (producer.producer_id, producer.producer_epoch) == (1001, 1)
    assert broker.produced == [[b"one"], [b"one"], [b"two"]]
    assert broker.stamps == [(1001, 0, 0), (1001, 1, 0), (1001, 1, 1)]
    broker.close()


def test_invalid_producer_epoch_takes_a_new_id():
    broker = StampedBroker(lambda n: (47, False) if n == 0 else (0, False))  # INVALID_PRODUCER_EPOCH
    producer = _two_sends(broker)
    assert broker.producer_ids == 2 and (producer.producer_id, producer.producer_epoch) == (1002, 0)
    assert broker.stamps == [(1001, 0, 0), (1002, 0, 0), (1002, 0, 1)]
    broker.close()


def test_at_most_five_requests_in_flight_when_idempotent():
    broker = StampedBroker(lambda n: (0, False))
    cluster = Cluster(broker.address)
    assert Producer(cluster, max_in_flight=50).max_in_flight == 5
    assert Producer(cluster, max_in_flight=3).max_in_flight == 3
    assert Producer(cluster, max_in_flight=50, idempotence=False).max_in_flight == 50
    assert Producer(cluster, max_in_flight=50, acks=1).max_in_flight == 50  # idempotence needs acks=all
    cluster.close()
    broker.close()


def test_a_batch_split_as_too_large_gives_each_half_the_sequences_it_covers():
    broker = StampedBroker(lambda n: (10, False) if n == 0 else (0, False))  # MESSAGE_TOO_LARGE, once
    producer, error, values = _produce_two_batches(broker, split_too_large=True)
    assert error is None and producer.acknowledged == 200
    assert broker.produced[0] == values[:100]
    assert sorted(zip([s[2] for s in broker.stamps[1:]], broker.produced[1:])) == [
        (0, values[:50]), (50, values[50:100]), (100, values[100:])]
    assert {s[:2] for s in broker.stamps} == {(1001, 0)}
    broker.close()


class NoProducerIdsBroker(StampedBroker):
    """A broker (an old Kafka, say) whose ApiVersions lists no InitProducerId."""

    def answer(self, request):
        if request.api_key == ApiKey.API_VERSIONS:
            versions = {key: span for key, span in ADVERTISED.items() if key != ApiKey.INIT_PRODUCER_ID}
            return encode_response(request.api_key, request.api_version, request.correlation_id, {
                "error_code": 0, "api_keys": api_versions_entries(versions), "throttle_time_ms": 0})
        return super().answer(request)


def test_a_broker_without_producer_ids_gets_plain_batches_and_one_warning(caplog):
    broker = NoProducerIdsBroker(lambda n: (0, False))
    with caplog.at_level(logging.WARNING, logger="logship.client.sender"):
        producer, error, values = _produce_two_batches(broker)
    assert error is None and producer.acknowledged == 200 and not producer.idempotent
    assert broker.producer_ids == 0 and broker.stamps == [(-1, -1, -1), (-1, -1, -1)]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "without idempotence" in warnings[0].getMessage()
    broker.close()


class TwoPartitionBroker(ScriptedServer):
    """Topic "t" with two partitions; each partition's n-th batch gets `script(partition, n)`."""

    def __init__(self, script):
        super().__init__({"t": 2})
        self.script = script
        self.stamps: dict[int, list[tuple[int, int, int]]] = {0: [], 1: []}
        self.values: dict[int, list[bytes]] = {0: [], 1: []}

    def answer_other(self, request):
        assert request.api_key == ApiKey.PRODUCE
        answers = []
        for part in request.body["topic_data"][0]["partition_data"]:
            data, index = bytes(part["records"]), part["index"]
            header = records.parse_header(data)
            code = self.script(index, len(self.stamps[index]))
            self.stamps[index].append((header.producer_id, header.producer_epoch, header.base_sequence))
            self.values[index] += [r.value for r in records.iter_records(data)] if code == 0 else []
            answers.append({"index": index, "error_code": code, "base_offset": -1})
        return encode_response(ApiKey.PRODUCE, request.api_version, request.correlation_id, {
            "responses": [{"name": "t", "partition_responses": answers}], "throttle_time_ms": 0})


def test_a_bump_restarts_only_the_partition_that_needed_it_and_a_pending_retry_keeps_its_stamp():
    # Partition 0's first batch: UNKNOWN_PRODUCER_ID (its sequences start over under epoch 1).
    # Partition 1's first batch: NOT_LEADER_OR_FOLLOWER, retried with the bytes it was sent with
    # (it may be in the log already: restamping it would store it twice); only its next batch,
    # with nothing of it pending, starts at sequence 0 under the new epoch.
    broker = TwoPartitionBroker(lambda partition, n: (59 if partition == 0 else 6) if n == 0 else 0)
    cluster = Cluster(broker.address)
    producer = Producer(cluster, linger_ms=50, retry_backoff_ms=10)
    producer.send("t", b"a0", partition=0)
    producer.send("t", b"b0", partition=1)
    producer.flush(timeout=20)
    producer.send("t", b"a1", partition=0)
    producer.send("t", b"b1", partition=1)
    producer.flush(timeout=20)
    producer.close(timeout=5)
    cluster.close()
    assert broker.values == {0: [b"a0", b"a1"], 1: [b"b0", b"b1"]}
    assert broker.stamps[0] == [(1001, 0, 0), (1001, 1, 0), (1001, 1, 1)]
    assert broker.stamps[1] == [(1001, 0, 0), (1001, 0, 0), (1001, 1, 0)]
    assert broker.producer_ids == 1
    broker.close()


def test_resume_resends_the_given_bytes_under_their_stamps_then_goes_on_with_the_next_sequence():
    """Producer(producer_id=, producer_epoch=) and resume(): what the agent does after a kill
    -9 with its journal: no InitProducerId, the journaled batches go first as they were (a
    gap where one was acknowledged), new batches go on from the journaled next sequence."""
    from logship.records import build_batch_values, with_producer

    broker = StampedBroker(lambda n: (0, False))
    cluster = Cluster(f"127.0.0.1:{broker.port}")
    old = [bytes(with_producer(build_batch_values([b"old-%d" % i for i in range(n)], 1000, 0), 77, 3, seq))
           for n, seq in ((10, 2147483640), (5, 4))]  # wraps: 2147483640 + 10 -> 2, then 2..3 were acked
    done = []
    producer = Producer(cluster, producer_id=77, producer_epoch=3, linger_ms=1, retry_backoff_ms=10)
    producer.resume("t", 0, (77, 3), 9, [((77, 3, 2147483640), old[0], 10, done.append, None),
                                         ((77, 3, 4), old[1], 5, done.append, None)])
    producer.send_values("t", [b"new"], partition=0)
    producer.flush(timeout=20)
    producer.close(timeout=5)
    cluster.close()
    assert broker.producer_ids == 0 and done == [None, None]
    assert broker.raw[:2] == old
    assert broker.stamps == [(77, 3, 2147483640), (77, 3, 4), (77, 3, 9)]
    broker.close()


def test_on_stamped_sees_each_new_stamp_before_the_send_and_its_failure_stops_the_producer():
    broker = StampedBroker(lambda n: (0, False))
    seen = []

    def record(stamped):
        assert len(broker.raw) == len(seen)  # called before the batch is sent
        seen.extend((batch.stamp, old, batch.context, bytes(batch.data)) for batch, old in stamped)

    cluster = Cluster(f"127.0.0.1:{broker.port}")
    reported = []
    producer = Producer(cluster, linger_ms=1, on_stamped=record, on_reported=lambda: reported.append(1))
    done = []
    producer.send_encoded("t", 0, [records_section(3)], 3, timestamp_ms=1000, context="ctx", on_delivery=done.append)
    producer.flush(timeout=20)
    assert seen == [((1001, 0, 0), None, "ctx", broker.raw[0])] and done == [None] and reported
    producer.close(timeout=5)

    def failing(stamped):
        raise OSError(28, "No space left on device")

    producer = Producer(cluster, linger_ms=1, on_stamped=failing)
    producer.send_encoded("t", 0, [records_section(3)], 3, timestamp_ms=1000)
    try:
        producer.flush(timeout=20)
    except Exception as exc:
        assert "No space left" in str(exc)
    assert isinstance(producer.fatal_error, OSError) and len(broker.raw) == 1  # nothing more was sent
    cluster.close()
    broker.close()


def records_section(count: int) -> bytes:
    from logship.record_codec import encode_values
    return encode_values([b"v%d" % i for i in range(count)])


def test_resume_stamps_a_batch_of_an_older_epoch_anew_after_the_current_ones():
    """A journal caught between an epoch bump and the last restamp: the batch under the old
    epoch goes after those under the new one, with the sequence that follows them, and
    on_stamped sees its old stamp (so its journal entry is replaced)."""
    from logship.records import build_batch_values, with_producer

    broker = StampedBroker(lambda n: (0, False))
    cluster = Cluster(f"127.0.0.1:{broker.port}")
    new = bytes(with_producer(build_batch_values([b"a", b"b"], 1000, 0), 77, 4, 0))
    stale = bytes(with_producer(build_batch_values([b"c", b"d", b"e"], 1000, 0), 77, 3, 40))
    seen = []
    producer = Producer(cluster, producer_id=77, producer_epoch=4, linger_ms=1,
                        on_stamped=lambda stamped: seen.extend((b.stamp, old) for b, old in stamped))
    producer.resume("t", 0, (77, 4), 2, [((77, 4, 0), new, 2, None, None), ((77, 3, 40), stale, 3, None, None)])
    producer.send_values("t", [b"f"], partition=0)
    producer.flush(timeout=20)
    producer.close(timeout=5)
    cluster.close()
    assert broker.stamps == [(77, 4, 0), (77, 4, 2), (77, 4, 5)]
    assert seen == [((77, 4, 2), (77, 3, 40)), ((77, 4, 5), None)]
    assert broker.produced[1] == [b"c", b"d", b"e"]
    broker.close()



def test_the_pieces_of_a_split_are_stamped_together_and_the_first_names_the_batch_it_replaces():
    """Partition 0's batch is refused as too large while partition 1's first batch bumps the
    epoch (UNKNOWN_PRODUCER_ID): the halves go under the new epoch, both seen by on_stamped at
    once, the first with the whole batch's stamp as its old one (so a journal replaces it)."""
    broker = TwoPartitionBroker(lambda partition, n: (10 if partition == 0 else 59) if n == 0 else 0)
    cluster = Cluster(broker.address)
    calls = []
    producer = Producer(cluster, linger_ms=50, retry_backoff_ms=10, split_too_large=True,
                        on_stamped=lambda stamped: calls.append(
                            [(b.partition, b.stamp, old, b.count, b.ends_batch) for b, old in stamped]))
    for value in (b"a0", b"a1", b"a2", b"a3"):
        producer.send("t", value, partition=0)
    producer.send("t", b"b0", partition=1)
    producer.flush(timeout=20)
    producer.close(timeout=5)
    cluster.close()
    broker.close()
    assert broker.values[0] == [b"a0", b"a1", b"a2", b"a3"]
    whole = next(stamp for call in calls for p, stamp, old, count, _ in call if p == 0 and count == 4)
    pieces = next(call for call in calls if [p for p, *_ in call] == [0, 0])
    assert [(old, count, ends) for _, _, old, count, ends in pieces] == [(whole, 2, False), (None, 2, True)]
    (_, first, *_), (_, second, *_) = pieces
    assert second[:2] == first[:2] and second[2] == first[2] + 2
    print(f"\nwhole {whole}, pieces {first} and {second}")

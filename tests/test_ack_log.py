"""The acknowledgement checker (tests/ack_log.py) catches each kind of difference, and only those."""

from __future__ import annotations

import pytest

from ack_log import AckWriter, Position, check, read_acks
from acked_load import AckedProducer, kcat_produce, read_back


def _records(n: int, topic: str = "t", partitions: int = 2) -> list[Position]:
    return [Position(topic, i % partitions, i // partitions, f"p-{i:04d}") for i in range(n)]


def test_everything_read_back_where_acknowledged_is_clean():
    records = _records(100)
    verdict = check(records, records)
    assert verdict.clean and (verdict.acked, verdict.consumed) == (100, 100)
    assert verdict.unacknowledged == 0
    assert "0 lost, 0 misplaced, 0 duplicated" in verdict.summary()


def test_a_missing_record_is_lost():
    records = _records(100)
    verdict = check(records, records[:37] + records[38:])
    assert not verdict.clean
    assert verdict.lost == [records[37]] and not verdict.misplaced and not verdict.duplicated
    assert "1 lost" in verdict.summary() and "p-0037 acked at t/1@18" in verdict.summary()


def test_a_truncated_and_rewritten_tail_is_misplaced_not_lost():
    """A new leader that lost an acknowledged tail and took other records at its offsets."""
    acks = _records(10, partitions=1)
    consumed = acks[:8] + [Position("t", 0, 8, "other-1"), Position("t", 0, 9, "p-0008"),
                           Position("t", 0, 10, "p-0009")]
    verdict = check(acks, consumed)
    assert not verdict.clean and not verdict.lost
    assert [(ack.payload, found) for ack, found in verdict.misplaced] == [
        ("p-0008", "that offset holds other-1"), ("p-0009", "that offset holds p-0008")]
    assert verdict.unacknowledged == 1


def test_the_same_payload_elsewhere_is_misplaced():
    acks = [Position("t", 0, 5, "a"), Position("t", 1, 0, "b")]
    consumed = [Position("t", 1, 3, "a"), Position("t", 1, 0, "b")]
    verdict = check(acks, consumed)
    assert [(ack.payload, found) for ack, found in verdict.misplaced] == [("a", "read back at t/1@3")]


def test_a_record_read_twice_is_duplicated_even_where_acknowledged():
    acks = _records(10, partitions=1)
    consumed = acks + [Position("t", 0, 10, "p-0004")]  # a retried batch, written again
    verdict = check(acks, consumed)
    assert not verdict.clean and not verdict.lost and not verdict.misplaced
    assert verdict.duplicated == {"p-0004": [("t", 0, 4), ("t", 0, 10)]}
    # acknowledged at the second copy's offset: still not misplaced
    verdict = check([Position("t", 0, 10, "p-0004")], consumed)
    assert not verdict.misplaced and not verdict.lost and "p-0004" in verdict.duplicated


def test_acknowledgements_without_offsets_check_presence_only():
    acks = [Position("t", None, None, "k1"), Position("t", None, None, "k2"), Position("t", 1, None, "k3")]
    consumed = [Position("t", 0, 7, "k1"), Position("t", 0, 8, "k3")]
    verdict = check(acks, consumed)
    assert [ack.payload for ack in verdict.lost] == ["k2"]
    assert [(ack.payload, found) for ack, found in verdict.misplaced] == [("k3", "read back at t/0@8")]


def test_unacknowledged_records_read_back_are_counted_but_clean():
    records = _records(10)
    verdict = check(records[:6], records)
    assert verdict.clean and verdict.unacknowledged == 4


def test_logs_round_trip_and_a_torn_line_is_an_error(tmp_path):
    path = tmp_path / "acks"
    with AckWriter(path) as log:
        log.ack("t", 2, 41, "c1-000001")
        log.ack("t", None, None, "k-000002")
    assert log.count == 2
    assert list(read_acks(path)) == [Position("t", 2, 41, "c1-000001"), Position("t", None, None, "k-000002")]
    with open(path, "a") as f:
        f.write("t 2 4")
    try:
        list(read_acks(path))
    except ValueError as exc:
        assert f"{path}:3" in str(exc)
    else:
        raise AssertionError("a torn line was accepted")


@pytest.mark.integration
def test_real_producers_acknowledgements_match_what_is_read_back(start_broker, tmp_path):
    """The loads and the checker end to end on one broker: confluent-kafka's delivery reports
    name the offsets kcat reads back; kcat's own records are all there."""
    broker = start_broker("--partitions", "3")
    # keyless records spread over the partitions one by one, not stuck to one for a linger
    producer = AckedProducer(broker.address, "acked", tmp_path / "acks", "c1", 3000,
                             config={"sticky.partitioning.linger.ms": 0})
    producer.start()
    kcat_acks = kcat_produce(broker.address, "acked", "k1", 1000)
    producer.join(60)
    assert not producer.is_alive() and producer.unflushed == 0 and not producer.errors
    assert producer.acked == producer.sent == 3000
    acks = list(read_acks(tmp_path / "acks")) + kcat_acks
    assert {a.partition for a in acks if a.partition is not None} == {0, 1, 2}
    consumed = read_back(broker.address, "acked")
    verdict = check(acks, consumed)
    assert verdict.clean and (verdict.acked, verdict.consumed, verdict.unacknowledged) == (4000, 4000, 0), \
        verdict.summary()
    verdict = check(acks, [c for c in consumed if c.offset != 17])
    assert not verdict.clean and len(verdict.lost) == 3

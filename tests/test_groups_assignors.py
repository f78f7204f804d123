"""The consumer protocol bytes and the range/roundrobin assignors, against Kafka's documented
examples and kafka-python's implementation (an independent oracle)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription
from kafka.protocol.old.consumer_protocol import ConsumerProtocolMemberAssignment_v0, ConsumerProtocolMemberMetadata_v0

from logship.client.assignors import decode_assignment, decode_subscription, encode_assignment, encode_subscription, \
    range_assign, roundrobin_assign
from logship.errors import ProtocolError


# --- bytes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("topics", [[], ["logs"], ["a", "b", "ünïcode-topic"], [f"t{i}" for i in range(50)]])
def test_subscription_v0_bytes_match_kafka_python(topics):
    assert encode_subscription(topics) == ConsumerProtocolMemberMetadata_v0(0, topics, b"").encode()
    assert encode_subscription(topics, None) == ConsumerProtocolMemberMetadata_v0(0, topics, None).encode()
    assert encode_subscription(topics, b"\x00user") == ConsumerProtocolMemberMetadata_v0(0, topics, b"\x00user").encode()
    assert decode_subscription(encode_subscription(topics, b"ud")) == (0, topics, b"ud")


def test_subscription_of_later_versions_is_read_ignoring_the_new_fields():
    v1 = ConsumerProtocolSubscription(topics=["a", "b"], user_data=None, version=1, owned_partitions=[
        ConsumerProtocolSubscription.TopicPartition(topic="a", partitions=[1, 2])]).encode()
    assert decode_subscription(v1) == (1, ["a", "b"], None)
    v3 = ConsumerProtocolSubscription(topics=["x"], user_data=b"u", version=3, owned_partitions=[], generation_id=7,
                                      rack_id="rack-1").encode()
    assert decode_subscription(v3) == (3, ["x"], b"u")


@pytest.mark.parametrize("assignment", [{}, {"logs": [0, 2, 5]}, {"b": [1], "a": [0, 3]}, {"t": list(range(100))}])
def test_assignment_v0_bytes_match_kafka_python(assignment):
    ours = encode_assignment(assignment)
    theirs = ConsumerProtocolMemberAssignment_v0(0, sorted(assignment.items()), b"").encode()
    assert ours == theirs
    assert decode_assignment(ours) == assignment
    decoded = ConsumerProtocolAssignment.decode(ours)
    assert {tp.topic: tp.partitions for tp in decoded.assigned_partitions} == assignment


def test_assignment_decoding_accepts_what_other_clients_send():
    assert decode_assignment(b"") == {}  # a member the leader gave nothing
    v1 = ConsumerProtocolAssignment(version=1, user_data=None, assigned_partitions=[
        ConsumerProtocolAssignment.TopicPartition(topic="t", partitions=[3, 4])]).encode()
    assert decode_assignment(v1) == {"t": [3, 4]}
    without_user_data = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x01\x00\x00\x00\x07"
    assert decode_assignment(without_user_data) == {"t": [7]}


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00\x00\x00\x00\x05\x00\x01a", b"\x00\x00\x7f\xff\xff\xff",
                                  b"\x00\x00\x00\x00\x00\x01\xff\xff"])
def test_malformed_protocol_bytes_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode_assignment(data)
    with pytest.raises(ProtocolError):
        decode_subscription(data)


# --- Kafka's documented examples ----------------------------------------------------------------------

def test_range_kafkas_javadoc_example():
    # RangeAssignor javadoc: C0, C1 on t0, t1 of 3 partitions each.
    plan = range_assign({"C0": ["t0", "t1"], "C1": ["t0", "t1"]}, {"t0": 3, "t1": 3})
    assert plan == {"C0": {"t0": [0, 1], "t1": [0, 1]}, "C1": {"t0": [2], "t1": [2]}}


def test_roundrobin_kafkas_javadoc_examples():
    plan = roundrobin_assign({"C0": ["t0", "t1"], "C1": ["t0", "t1"]}, {"t0": 3, "t1": 3})
    assert plan == {"C0": {"t0": [0, 2], "t1": [1]}, "C1": {"t0": [1], "t1": [0, 2]}}
    # unequal subscriptions: C0 -> t0; C1 -> t0, t1; C2 -> t0, t1, t2
    plan = roundrobin_assign({"C0": ["t0"], "C1": ["t0", "t1"], "C2": ["t0", "t1", "t2"]}, {"t0": 1, "t1": 2, "t2": 3})
    assert plan == {"C0": {"t0": [0]}, "C1": {"t1": [0]}, "C2": {"t1": [1], "t2": [0, 1, 2]}}


def test_members_are_ordered_by_member_id_not_by_arrival():
    plan = range_assign({"m-b": ["t"], "m-a": ["t"], "m-c": ["t"]}, {"t": 7})
    assert plan == {"m-a": {"t": [0, 1, 2]}, "m-b": {"t": [3, 4]}, "m-c": {"t": [5, 6]}}


def test_more_members_than_partitions_and_unknown_topics():
    plan = range_assign({"a": ["t", "gone"], "b": ["t"], "c": ["t"]}, {"t": 2})
    assert plan == {"a": {"t": [0]}, "b": {"t": [1]}, "c": {}}
    plan = roundrobin_assign({"a": ["t", "gone"], "b": ["t"], "c": ["t"]}, {"t": 2})
    assert plan == {"a": {"t": [0]}, "b": {"t": [1]}, "c": {}}


# --- kafka-python as an oracle ---------------------------------------------------------------------

def _kafka_python(assignor, subscriptions, partitions):
    cluster = SimpleNamespace(partitions_for_topic=lambda t: set(range(partitions[t])) if t in partitions else None)
    members = [SimpleNamespace(member_id=m, group_instance_id=None, metadata=SimpleNamespace(topics=topics))
               for m, topics in subscriptions.items()]
    result = {}
    for member, assignment in assignor.assign(cluster, members).items():
        pairs = [(tp.topic, tp.partitions) if hasattr(tp, "topic") else tuple(tp) for tp in assignment.assigned_partitions]
        result[member] = {topic: list(parts) for topic, parts in pairs if parts}
    return result


def _random_group(rng, same_subscription: bool):
    topics = [f"topic-{i}" for i in range(rng.randint(1, 5))]
    partitions = {t: rng.randint(1, 12) for t in topics}
    members = {f"consumer-{rng.randrange(10**6)}-{i}": list(topics) if same_subscription
               else rng.sample(topics, rng.randint(1, len(topics))) for i in range(rng.randint(1, 7))}
    return members, partitions


def _covers_every_partition_once(plan, members, partitions):
    given = sorted((t, p) for a in plan.values() for t, ps in a.items() for p in ps)
    wanted = sorted((t, p) for t in {t for ts in members.values() for t in ts} for p in range(partitions[t]))
    return given == wanted


@pytest.mark.parametrize("seed", range(40))
def test_range_agrees_with_kafka_python(seed):
    members, partitions = _random_group(random.Random(seed), same_subscription=seed % 2 == 0)
    plan = range_assign(members, partitions)
    assert plan == _kafka_python(RangePartitionAssignor, members, partitions)
    assert _covers_every_partition_once(plan, members, partitions)


@pytest.mark.parametrize("seed", range(40))
def test_roundrobin_agrees_with_kafka_python(seed):
    # kafka-python 3.0.12 fails on unequal subscriptions (it rebinds member_id to a tuple while
    # skipping), so it is the oracle for equal ones; Kafka's javadoc example covers unequal ones.
    members, partitions = _random_group(random.Random(seed), same_subscription=True)
    plan = roundrobin_assign(members, partitions)
    assert plan == _kafka_python(RoundRobinPartitionAssignor, members, partitions)
    assert _covers_every_partition_once(plan, members, partitions)
    counts = [sum(map(len, a.values())) for a in plan.values()]
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("seed", range(20))
def test_roundrobin_with_unequal_subscriptions_gives_each_partition_to_a_subscriber(seed):
    members, partitions = _random_group(random.Random(seed), same_subscription=False)
    plan = roundrobin_assign(members, partitions)
    assert _covers_every_partition_once(plan, members, partitions)
    assert all(topic in members[m] for m, a in plan.items() for topic in a)

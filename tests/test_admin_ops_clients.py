"""The admin APIs against a real `logship serve` subprocess, driven by real clients: kafka-python's
KafkaAdminClient and confluent-kafka's AdminClient (librdkafka) alter partitions, delete groups
and their offsets, delete records and list max-timestamp offsets; the effects are checked with
producers and consumers and again after the broker restarts."""

from __future__ import annotations

import time
import warnings

import pytest

from conftest import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerrors
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition as KTP
    from kafka.admin import KafkaAdminClient, NewTopic, OffsetSpec as KOffsetSpec

import confluent_kafka
from confluent_kafka import Consumer as CConsumer, Producer as CProducer, TopicPartition as CTP
from confluent_kafka.admin import AdminClient, NewPartitions, OffsetSpec as COffsetSpec

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

BROKER_ARGS = ("--group-initial-rebalance-delay", "0ms")
# recent (retention would delete 1970), out of order; the first of the two largest is offset 1
BASE = (int(time.time()) - 3600) * 1000
TIMESTAMPS = [BASE + s for s in (1_000, 9_000, 4_000, 9_000, 2_000, 7_000)]


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def kafka_admin():
    admins = []

    def make(address):
        admin = KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=10_000)
        admins.append(admin)
        return admin

    yield make
    for admin in admins:
        admin.close()


def _result(future, timeout=15):
    return future.result(timeout=timeout)


def produce_kafka_python(address, topic, partition, timestamps, tag=b"v"):
    producer = KafkaProducer(bootstrap_servers=address, acks="all")
    try:
        for i, ts in enumerate(timestamps):
            producer.send(topic, b"%s%d" % (tag, i), partition=partition, timestamp_ms=ts)
        producer.flush(timeout=15)
    finally:
        producer.close()


def consume_kafka_python(address, topic, partition, start=None, expect=1, reset="earliest"):
    """(offset, value) records of one partition from `start` (or the reset policy), until
    `expect` records came or 10 s passed."""
    consumer = KafkaConsumer(bootstrap_servers=address, auto_offset_reset=reset, enable_auto_commit=False,
                             consumer_timeout_ms=500)
    try:
        tp = KTP(topic, partition)
        consumer.assign([tp])
        if start is not None:
            consumer.seek(tp, start)
        got, deadline = [], time.monotonic() + 10
        while len(got) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(200).values():
                got += [(r.offset, r.value) for r in batch]
        return got
    finally:
        consumer.close()


# --- kafka-python ----------------------------------------------------------------------------------

def test_kafka_python_create_partitions_survive_a_restart(start_broker, data_dir, kafka_admin):
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = kafka_admin(broker.address)
    admin.create_topics([NewTopic("grow", 1, 1)])
    admin.create_partitions({"grow": 3})
    with pytest.raises(kerrors.InvalidPartitionsError):
        admin.create_partitions({"grow": 2})
    with pytest.raises(kerrors.InvalidPartitionsError):
        admin.create_partitions({"grow": 3})
    with pytest.raises(kerrors.UnknownTopicOrPartitionError):
        admin.create_partitions({"nope": 3})
    admin.create_partitions({"grow": 5}, validate_only=True)
    assert len(admin.describe_topics(["grow"])[0]["partitions"]) == 3
    produce_kafka_python(broker.address, "grow", 2, [BASE])
    assert consume_kafka_python(broker.address, "grow", 2) == [(0, b"v0")]
    broker.stop()
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = kafka_admin(broker.address)
    assert len(admin.describe_topics(["grow"])[0]["partitions"]) == 3
    assert consume_kafka_python(broker.address, "grow", 2) == [(0, b"v0")]
    produce_kafka_python(broker.address, "grow", 1, [BASE], tag=b"w")
    assert consume_kafka_python(broker.address, "grow", 1) == [(0, b"w0")]


def test_kafka_python_delete_records_and_max_timestamp(start_broker, data_dir, kafka_admin):
    broker = start_broker(*BROKER_ARGS, "--segment-bytes", "1KiB", data_dir=data_dir)
    admin = kafka_admin(broker.address)
    admin.create_topics([NewTopic("recs", 2, 1)])
    produce_kafka_python(broker.address, "recs", 0, TIMESTAMPS * 10)  # offsets 0-59
    produce_kafka_python(broker.address, "recs", 1, [BASE + 3_000, BASE + 3_000])
    tp0, tp1 = KTP("recs", 0), KTP("recs", 1)
    found = admin.list_partition_offsets({tp0: KOffsetSpec.MAX_TIMESTAMP, tp1: KOffsetSpec.MAX_TIMESTAMP})
    assert (found[tp0].offset, found[tp0].timestamp) == (1, BASE + 9_000)
    assert (found[tp1].offset, found[tp1].timestamp) == (0, BASE + 3_000)

    deleted = admin.delete_records({tp0: 26, tp1: -1})
    assert deleted[tp0]["low_watermark"] == 26 and deleted[tp1]["low_watermark"] == 2
    with pytest.raises(kerrors.OffsetOutOfRangeError):
        admin.delete_records({tp0: 61})
    earliest = admin.list_partition_offsets({tp0: KOffsetSpec.EARLIEST})
    assert earliest[tp0].offset == 26
    # offsets 6k+1 and 6k+3 carry the largest timestamp: 25 is gone (its batch may remain), 27 is next
    assert admin.list_partition_offsets({tp0: KOffsetSpec.MAX_TIMESTAMP})[tp0].offset == 27
    # a consumer positioned below the new log start is told OFFSET_OUT_OF_RANGE and resets
    assert consume_kafka_python(broker.address, "recs", 0, start=3)[0][0] == 26
    broker.stop()
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = kafka_admin(broker.address)
    assert admin.list_partition_offsets({tp0: KOffsetSpec.EARLIEST})[tp0].offset == 26
    assert admin.list_partition_offsets({tp0: KOffsetSpec.MAX_TIMESTAMP})[tp0].offset == 27
    assert consume_kafka_python(broker.address, "recs", 0, start=0)[0][0] == 26


def _commit(address, group, offsets):
    consumer = KafkaConsumer(bootstrap_servers=address, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({KTP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
    finally:
        consumer.close()


def _active_member(address, group, topic):
    consumer = KafkaConsumer(bootstrap_servers=address, group_id=group, enable_auto_commit=False,
                             session_timeout_ms=10_000)
    # kafka-python 3 may join before its first metadata answer: as the group's leader it then
    # assigns the topic's partitions to nobody ("No partition metadata for topic a") and had not
    # joined again 20 s later (CI, stop 22); so the topic's metadata comes first
    assert wait_until(lambda: consumer.partitions_for_topic(topic), timeout=20)
    consumer.subscribe([topic])
    assert wait_until(lambda: consumer.poll(100) is not None and consumer.assignment(), timeout=20)
    return consumer


def test_kafka_python_delete_groups_and_offsets(start_broker, data_dir, kafka_admin):
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = kafka_admin(broker.address)
    admin.create_topics([NewTopic("a", 2, 1), NewTopic("b", 1, 1)])
    _commit(broker.address, "idle", {("a", 0): 4, ("b", 0): 1})
    _commit(broker.address, "busy", {("a", 0): 2, ("b", 0): 7})
    member = _active_member(broker.address, "busy", "a")
    try:
        assert admin.delete_groups(["idle", "busy", "never"]) == {
            "idle": "OK", "busy": "NonEmptyGroupError", "never": "GroupIdNotFoundError"}
        result = admin.delete_group_offsets("busy", [KTP("a", 0), KTP("b", 0)])
        assert result == {KTP("a", 0): kerrors.GroupSubscribedToTopicError, KTP("b", 0): kerrors.NoError}
        assert admin.list_group_offsets("busy")["busy"] == {KTP("a", 0): OffsetAndMetadata(2, "", -1)}
    finally:
        member.close()
    assert wait_until(lambda: admin.describe_groups(["busy"])["busy"]["group_state"] == "Empty", timeout=15)
    assert admin.delete_groups(["busy"]) == {"busy": "OK"}
    broker.stop()
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = kafka_admin(broker.address)
    assert not {"idle", "busy"} & {g["group_id"] for g in admin.list_groups()}
    assert admin.list_group_offsets("busy")["busy"] == {}
    assert admin.delete_groups(["idle", "busy"]) == {"idle": "GroupIdNotFoundError", "busy": "GroupIdNotFoundError"}


# --- confluent-kafka (librdkafka) -----------------------------------------------------------------

def test_confluent_admin(start_broker, data_dir):
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = AdminClient({"bootstrap.servers": broker.address})
    _result(admin.create_topics([confluent_kafka.admin.NewTopic("ck", 1, 1)])["ck"])
    _result(admin.create_partitions([NewPartitions("ck", 4)])["ck"])
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        _result(admin.create_partitions([NewPartitions("ck", 2)])["ck"])
    assert refused.value.args[0].code() == confluent_kafka.KafkaError.INVALID_PARTITIONS
    assert "can only grow" in refused.value.args[0].str()
    assert len(admin.list_topics(timeout=10).topics["ck"].partitions) == 4

    producer = CProducer({"bootstrap.servers": broker.address, "acks": "all"})
    for i, ts in enumerate(TIMESTAMPS):
        producer.produce("ck", b"c%d" % i, partition=3, timestamp=ts)
    producer.flush(15)
    tp = CTP("ck", 3)
    info = _result(admin.list_offsets({tp: COffsetSpec.max_timestamp()})[tp])
    assert (info.offset, info.timestamp) == (1, BASE + 9_000)
    deleted = _result(admin.delete_records([CTP("ck", 3, 2)])[tp])
    assert deleted.low_watermark == 2
    info = _result(admin.list_offsets({tp: COffsetSpec.max_timestamp()})[tp])
    assert (info.offset, info.timestamp) == (3, BASE + 9_000)
    assert _result(admin.list_offsets({tp: COffsetSpec.earliest()})[tp]).offset == 2
    with pytest.raises(confluent_kafka.KafkaException):
        _result(admin.delete_records([CTP("ck", 3, 100)])[tp])

    consumer = CConsumer({"bootstrap.servers": broker.address, "group.id": "ckg", "auto.offset.reset": "earliest",
                          "enable.auto.commit": False})
    try:
        consumer.assign([CTP("ck", 3, 0)])  # below the log start: reset to it
        message = None
        deadline = time.monotonic() + 15
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error():
                message = None
        assert message is not None and message.offset() == 2
        consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    futures = admin.delete_consumer_groups(["ckg", "unknown"])
    assert _result(futures["ckg"]) is None
    with pytest.raises(confluent_kafka.KafkaException) as missing:
        _result(futures["unknown"])
    assert missing.value.args[0].code() == confluent_kafka.KafkaError.GROUP_ID_NOT_FOUND
    broker.stop()
    broker = start_broker(*BROKER_ARGS, data_dir=data_dir)
    admin = AdminClient({"bootstrap.servers": broker.address})
    assert len(admin.list_topics(timeout=10).topics["ck"].partitions) == 4
    groups = _result(admin.list_consumer_groups())
    assert "ckg" not in {g.group_id for g in groups.valid}
    assert _result(admin.list_offsets({tp: COffsetSpec.earliest()})[tp]).offset == 2


def test_confluent_delete_consumer_groups_refuses_an_active_group(broker):
    admin = AdminClient({"bootstrap.servers": broker.address})
    _result(admin.create_topics([confluent_kafka.admin.NewTopic("act", 1, 1)])["act"])
    consumer = CConsumer({"bootstrap.servers": broker.address, "group.id": "live", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["act"])
        assert wait_until(lambda: consumer.poll(0.1) is None and consumer.assignment(), timeout=20)
        with pytest.raises(confluent_kafka.KafkaException) as refused:
            _result(admin.delete_consumer_groups(["live"])["live"])
        assert refused.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP
    finally:
        consumer.close()

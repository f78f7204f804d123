"""The partition caps over the wire (broker/partition_limits.py): confluent-kafka's AdminClient
(librdkafka) and kafka-python ask for more partitions than `logship serve` allows per request,
per topic and per broker; each is refused with POLICY_VIOLATION and a message naming the limit
and its option, nothing of the refused topic is created, and the broker goes on serving."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CAPS = ("--max-partitions-per-request", "100", "--max-partitions-per-topic", "300",
        "--max-broker-partitions", "400")
POLICY_VIOLATION = 44


def _refused(future) -> confluent_kafka.KafkaError:
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        future.result(timeout=15)
    return refused.value.args[0]


def _topics(admin) -> dict[str, int]:
    return {name: len(t.partitions) for name, t in admin.list_topics(timeout=10).topics.items()
            if not name.startswith("__")}


def test_each_cap_refuses_with_its_limit_and_option(start_broker):
    broker = start_broker(*CAPS, "--no-auto-create")
    admin = AdminClient({"bootstrap.servers": broker.address})

    error = _refused(admin.create_topics([NewTopic("big", 101)])["big"])
    assert error.code() == POLICY_VIOLATION
    assert "100 per request" in error.str() and "--max-partitions-per-request" in error.str()
    # the budget is per request, summed over its topics: 60 + 60 is refused for the second
    futures = admin.create_topics([NewTopic("a", 60), NewTopic("b", 60)])
    futures["a"].result(timeout=15)
    assert "--max-partitions-per-request" in _refused(futures["b"]).str()
    assert _topics(admin) == {"a": 60}

    admin.create_partitions([NewPartitions("a", 160)])["a"].result(timeout=15)
    error = _refused(admin.create_partitions([NewPartitions("a", 261)])["a"])
    assert error.code() == POLICY_VIOLATION and "--max-partitions-per-request" in error.str()
    admin.create_partitions([NewPartitions("a", 260)])["a"].result(timeout=15)
    admin.create_partitions([NewPartitions("a", 300)])["a"].result(timeout=15)
    error = _refused(admin.create_partitions([NewPartitions("a", 301)])["a"])
    assert error.code() == POLICY_VIOLATION
    assert "at most 300 per topic" in error.str() and "--max-partitions-per-topic" in error.str()

    admin.create_topics([NewTopic("b", 99)])["b"].result(timeout=15)  # 399 with __consumer_offsets
    error = _refused(admin.create_topics([NewTopic("c", 2)])["c"])
    assert error.code() == POLICY_VIOLATION
    assert "at most 400" in error.str() and "--max-broker-partitions" in error.str()
    assert _topics(admin) == {"a": 300, "b": 99}
    assert "Traceback" not in broker.log()


def test_auto_creation_is_capped_too(start_broker):
    broker = start_broker("--partitions", "50", "--max-broker-partitions", "120")
    producer = KafkaProducer(bootstrap_servers=broker.address, acks=1, max_block_ms=3000)
    try:
        producer.send("first", b"x").get(timeout=15)  # 50 + __consumer_offsets
        producer.send("second", b"x").get(timeout=15)  # 101
        with pytest.raises(Exception):
            producer.send("third", b"x").get(timeout=15)  # 151 > 120: never created
    finally:
        producer.close()
    admin = AdminClient({"bootstrap.servers": broker.address})
    assert _topics(admin) == {"first": 50, "second": 50}


def test_serve_refuses_a_default_partition_count_over_the_topic_cap(tmp_path):
    from click.testing import CliRunner
    from logship.cli.serve import serve

    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path), "--partitions", "20",
                                       "--max-partitions-per-topic", "10"])
    assert result.exit_code == 2 and "--max-partitions-per-topic" in result.output


@pytest.mark.parametrize("args, named", [
    (["--partitions", "20", "--max-partitions-per-request", "10"], "--max-partitions-per-request"),
    (["--partitions", "20", "--max-broker-partitions", "10"], "--max-broker-partitions"),
    (["--max-connections", "10", "--max-connections-per-ip", "20"], "--max-connections"),
])
def test_serve_refuses_caps_that_contradict_each_other(tmp_path, args, named):
    from click.testing import CliRunner
    from logship.cli.serve import serve

    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output

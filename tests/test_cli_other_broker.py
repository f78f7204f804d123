"""logship's commands against a broker that is not logship: librdkafka's mock cluster.

librdkafka (here inside a long-running kcat) can host a mock Kafka cluster on a loopback
port: an independent implementation of the broker side of the protocol. logship's client
must work against it exactly as against `logship serve`.
"""

from __future__ import annotations

import json

import pytest

import kafka_clients
from kafka_clients import consume, dataset, produce
from test_cli_produce import logship

pytestmark = pytest.mark.integration


@pytest.fixture
def mock_cluster():
    """HOST:PORT of a one-broker librdkafka mock cluster that lives as long as the test."""
    with kafka_clients.mock_cluster(1) as address:
        yield address


def test_produce_consume_tail_replay_topics_against_librdkafka_mock(mock_cluster):
    b = ("-b", mock_cluster)
    lines = b"".join(b"line %d\n" % i for i in range(1000))
    assert logship("produce", "other", *b, "-p", "0", input=lines).returncode == 0
    result = logship("consume", "other", *b, "-e", "-p", "0")
    assert result.returncode == 0 and result.stdout == lines, result.stderr
    assert logship("tail", "other", *b, "-n", "2").stdout == b"line 998\nline 999\n"
    assert logship("replay", "other", *b, "--from", "995", "-p", "0").stdout.splitlines()[0] == b"line 995"
    listed = logship("topics", "list", *b, "--json")
    assert "other" in {json.loads(line)["topic"] for line in listed.stdout.splitlines()}
    described = [json.loads(line) for line in logship("topics", "describe", "other", *b, "--json").stdout.splitlines()]
    assert described[0]["log_end_offset"] == 1000 and described[0]["size_bytes"] is None


def test_records_cross_between_logship_and_confluent_kafka_through_the_mock(mock_cluster):
    assert logship("produce", "from-logship", "-b", mock_cluster, "-k", ":", "-H", "h=v",
                   input=b"k1:one\nk2:two\n").returncode == 0
    got = sorted((r.key, r.value, r.headers) for r in consume("confluent", mock_cluster, "from-logship", 2))
    assert got == [(b"k1", b"one", (("h", b"v"),)), (b"k2", b"two", (("h", b"v"),))]

    messages = dataset("ck", 200)
    produce("confluent", mock_cluster, "from-confluent", messages, "zstd")
    out = [json.loads(line) for line in logship("consume", "from-confluent", "-b", mock_cluster, "-e", "--json").stdout.splitlines()]
    assert sorted(o["value"] for o in out) == sorted(m.value.decode() for m in messages)


def test_topics_describe_shows_replicas_and_isr_of_a_three_broker_mock_cluster():
    with kafka_clients.mock_cluster(3) as address:
        assert logship("produce", "replicated", "-b", address, input=b"one\ntwo\n").returncode == 0  # auto-created
        done = logship("topics", "describe", "replicated", "-b", address, "--json")
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(rows) > 1 and sum(r["records"] for r in rows) == 2
        for row in rows:
            assert sorted(row["replicas"]) == sorted(row["isr"]) and len(row["replicas"]) == 3
            assert row["leader"] in row["replicas"] and row["under_replicated"] is False
        from confluent_kafka.admin import AdminClient  # the mock places leaders at random: compare, not expect

        meta = AdminClient({"bootstrap.servers": address}).list_topics("replicated", timeout=10)
        assert {r["partition"]: r["leader"] for r in rows} == \
            {p.id: p.leader for p in meta.topics["replicated"].partitions.values()}
        table = logship("topics", "describe", "replicated", "-b", address).stdout.decode()
        assert "isr" in table and "under-replicated" not in table

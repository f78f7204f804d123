"""Cluster metadata and the controller on a real three-broker cluster on loopback
(tests/local_cluster.py): topics created through any broker, Metadata from every broker
agreeing, leaders spread, UpdateMetadata refused without the cluster secret, the image kept
across a restart."""

from __future__ import annotations

import collections
import json
import time

import pytest

from logship.client.connection import Connection
from logship.protocol import ApiKey
from local_cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made = LocalCluster(tmp_path_factory.mktemp("ctrl"), 3)
    try:
        made.start_all()
        yield made
    finally:
        made.stop_all()


def connect(cluster: LocalCluster, broker_id: int) -> Connection:
    host, port = cluster.address(broker_id).split(":")
    return Connection(host, int(port))


def create(cluster, broker_id, name, partitions=6, rf=3) -> dict:
    with connect(cluster, broker_id) as conn:
        answer = conn.request(ApiKey.CREATE_TOPICS, {
            "topics": [{"name": name, "num_partitions": partitions, "replication_factor": rf, "assignments": [],
                        "configs": []}], "timeout_ms": 20000, "validate_only": False})
    return answer["topics"][0]


def layout(cluster, broker_id, name) -> tuple[list, dict]:
    with connect(cluster, broker_id) as conn:
        meta = conn.request(ApiKey.METADATA, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
    brokers = sorted((b["node_id"], b["port"]) for b in meta["brokers"])
    topic = meta["topics"][0]
    assert topic["error_code"] == 0, topic
    return brokers, {p["partition_index"]: (p["leader_id"], tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
                     for p in topic["partitions"]}


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("via", [1, 2, 3])
def test_create_rf3_through_any_broker_spreads_leaders_and_every_broker_agrees(cluster, via):
    name = f"spread-{via}"
    result = create(cluster, via, name)
    assert result["error_code"] == 0, result
    assert (result["num_partitions"], result["replication_factor"]) == (6, 3)
    views = [layout(cluster, b, name) for b in cluster.ids]
    assert all(view == views[0] for view in views)
    brokers, partitions = views[0]
    assert brokers == sorted((b, cluster.ports[b]) for b in cluster.ids)
    assert sorted(partitions) == list(range(6))
    assert collections.Counter(leader for leader, _, _ in partitions.values()) == {1: 2, 2: 2, 3: 2}
    for leader, replicas, isr in partitions.values():
        assert sorted(replicas) == [1, 2, 3] and isr == replicas and leader == replicas[0]


def test_replication_factor_above_the_brokers_is_refused_with_a_clear_message(cluster):
    result = create(cluster, 2, "too-many", partitions=1, rf=4)
    assert result["error_code"] == 38
    assert "3 brokers" in result["error_message"]


def test_default_replication_factor_comes_from_the_cluster_file(cluster):
    result = create(cluster, 3, "defaults", partitions=2, rf=-1)
    assert result["error_code"] == 0 and result["replication_factor"] == 3


def test_existing_topic_is_refused(cluster):
    assert create(cluster, 1, "twice", partitions=1)["error_code"] == 0
    assert create(cluster, 3, "twice", partitions=1)["error_code"] == 36


def test_auto_create_through_metadata_answers_leader_not_available_then_the_topic(cluster):
    with connect(cluster, 3) as conn:
        first = conn.request(ApiKey.METADATA, {"topics": [{"name": "auto-made"}], "allow_auto_topic_creation": True})
        assert first["topics"][0]["error_code"] == 5  # LEADER_NOT_AVAILABLE while the controller creates it

        def known() -> bool:
            meta = conn.request(ApiKey.METADATA, {"topics": [{"name": "auto-made"}],
                                                  "allow_auto_topic_creation": False})
            return meta["topics"][0]["error_code"] == 0
        wait_for(known)


def test_create_partitions_and_delete_through_a_non_controller(cluster):
    assert create(cluster, 2, "grows", partitions=2, rf=2)["error_code"] == 0
    with connect(cluster, 3) as conn:
        answer = conn.request(ApiKey.CREATE_PARTITIONS, {"topics": [{"name": "grows", "count": 5, "assignments": None}],
                                                         "timeout_ms": 20000, "validate_only": False})
        assert answer["results"][0]["error_code"] == 0, answer
    for broker_id in cluster.ids:
        _, partitions = layout(cluster, broker_id, "grows")
        assert sorted(partitions) == list(range(5))
        assert all(len(replicas) == 2 for _, replicas, _ in partitions.values())
    with connect(cluster, 2) as conn:
        answer = conn.request(ApiKey.DELETE_TOPICS, {"topic_names": ["grows"], "timeout_ms": 20000})
        assert answer["responses"][0]["error_code"] == 0
    for broker_id in cluster.ids:
        with connect(cluster, broker_id) as conn:
            meta = conn.request(ApiKey.METADATA, {"topics": [{"name": "grows"}], "allow_auto_topic_creation": False})
            assert meta["topics"][0]["error_code"] == 3


def test_find_coordinator_points_at_the_controller(cluster):
    for broker_id in cluster.ids:
        with connect(cluster, broker_id) as conn:
            answer = conn.request(ApiKey.FIND_COORDINATOR, {"key": "g", "key_type": 0})
            assert (answer["node_id"], answer["port"]) == (1, cluster.ports[1])


def test_update_metadata_without_the_secret_is_refused(cluster):
    with connect(cluster, 2) as conn:
        answer = conn.request(ApiKey.UPDATE_METADATA, {
            "controller_id": 1, "controller_epoch": 1, "broker_epoch": 10**9, "topic_states": [],
            "live_brokers": []}, version=5)
    assert answer["error_code"] == 31


def test_the_image_survives_a_restart(cluster):
    assert create(cluster, 1, "kept", partitions=3, rf=3)["error_code"] == 0
    before = layout(cluster, 3, "kept")
    saved = json.loads((cluster.data_dir(3) / "cluster-metadata").read_text())
    assert sorted(saved["topics"]["kept"]) == ["0", "1", "2"]
    cluster.brokers[3].stop()
    cluster.start(3)
    assert layout(cluster, 3, "kept") == before


def test_a_consumer_group_commits_through_the_cluster_and_any_broker_describes_it(cluster):
    import subprocess
    import sys

    from confluent_kafka import Consumer

    from kafka_clients import dataset, produce
    from logship.broker_process import child_env

    assert create(cluster, 2, "grouped", partitions=3)["error_code"] == 0
    produce("confluent", cluster.bootstrap, "grouped", dataset("g", 90))
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "readers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe(["grouped"])
        got, deadline = 0, time.monotonic() + 30
        while got < 90 and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                assert message.error() is None, message.error()
                got += 1
        assert got == 90
        assert all(tp.error is None for tp in consumer.commit(asynchronous=False))
    finally:
        consumer.close()
    done = subprocess.run([sys.executable, "-m", "logship", "groups", "describe", "readers", "--brokers",
                           cluster.address(3), "--json"], capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert sum(p["committed_offset"] for p in described["partitions"]) == 90
    assert described["total_lag"] == 0


def test_the_partition_caps_hold_in_a_cluster(tmp_path):
    capped = LocalCluster(tmp_path, 3)
    try:
        capped.start_all("--max-partitions-per-topic", "4")
        result = create(capped, 2, "too-wide", partitions=5)
        assert result["error_code"] == 44 and "--max-partitions-per-topic" in result["error_message"]
        assert create(capped, 3, "fits", partitions=4)["error_code"] == 0
        with connect(capped, 2) as conn:
            answer = conn.request(ApiKey.CREATE_PARTITIONS, {"topics": [{"name": "fits", "count": 5,
                                                                         "assignments": None}],
                                                             "timeout_ms": 20000, "validate_only": False})
        assert answer["results"][0]["error_code"] == 44
    finally:
        capped.stop_all()

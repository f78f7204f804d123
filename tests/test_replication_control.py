"""LeaderAndIsr and StopReplica on real brokers of a LocalCluster: only authenticated peers
are heard, the partition state is persisted before it is acted on, roles are kept across a
restart, and only the leader takes produces."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from logship.protocol import ApiKey, decode_response, encode_request

from cluster_control import ClusterControl
from local_cluster import started

pytestmark = pytest.mark.integration

UNKNOWN_TOPIC = 3
NOT_LEADER = 6
STALE_CONTROLLER_EPOCH = 11
CLUSTER_AUTHORIZATION_FAILED = 31


def raw_request(address: str, api_key: int, version: int, body: dict) -> dict:
    """One request on a fresh, unauthenticated connection; the decoded response body."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(encode_request(api_key, version, 7, "test", body))
        size = struct.unpack(">i", _read(sock, 4))[0]
        correlation_id, answer = decode_response(api_key, version, _read(sock, size))
        assert correlation_id == 7
        return answer


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def produce_once(address: str, topic: str, partition: int = 0, acks: int = -1, timeout_ms: int = 5000,
                 version: int = 7) -> dict:
    from logship import records

    batch = records.build_batch([(int(time.time() * 1000), None, b"hello", ())])
    body = {"transactional_id": None, "acks": acks, "timeout_ms": timeout_ms,
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}]}
    return raw_request(address, ApiKey.PRODUCE, version, body)["responses"][0]["partition_responses"][0]


@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path, no_tracebacks=True) as made:
        yield made


def test_leader_and_isr_needs_an_authenticated_peer(cluster):
    body = {"controller_id": 1, "controller_epoch": 1, "broker_epoch": -1, "topic_states": [
        {"topic_name": "t", "partition_states": [
            {"partition_index": 0, "controller_epoch": 1, "leader": 1, "leader_epoch": 1, "isr": [1],
             "zk_version": 1, "replicas": [1], "is_new": True}]}], "live_leaders": []}
    answer = raw_request(cluster.address(1), ApiKey.LEADER_AND_ISR, 2, body)
    assert answer["error_code"] == CLUSTER_AUTHORIZATION_FAILED
    assert not (cluster.data_dir(1) / "t-0").exists()
    stop = {"controller_id": 1, "controller_epoch": 1, "broker_epoch": -1, "delete_partitions": True,
            "topics": [{"name": "t", "partition_indexes": [0]}]}
    assert raw_request(cluster.address(1), ApiKey.STOP_REPLICA, 1, stop)["error_code"] == CLUSTER_AUTHORIZATION_FAILED


def test_state_is_persisted_and_only_the_leader_takes_produces(cluster):
    control = ClusterControl(cluster)
    control.lead("logs", 0, leader=1, epoch=3, replicas=[1, 2, 3])
    for broker_id in cluster.ids:
        saved = json.loads((cluster.data_dir(broker_id) / "logs-0" / "partition-state").read_text())
        assert saved["leader"] == 1 and saved["leader_epoch"] == 3 and saved["replicas"] == [1, 2, 3]
    assert produce_once(cluster.address(2), "logs")["error_code"] == NOT_LEADER
    assert produce_once(cluster.address(1), "other")["error_code"] == UNKNOWN_TOPIC  # nowhere: not created
    assert not (cluster.data_dir(1) / "other-0").exists()
    assert produce_once(cluster.address(1), "logs")["error_code"] == 0
    offset, epoch = control.log_end("logs", 0, broker_id=1)
    assert (offset, epoch) == (1, 3)


def _fetch_and_list_offsets(address: str, topic: str) -> tuple[int, int]:
    """The error codes of a consumer's Fetch and of a ListOffsets (latest) for partition 0."""
    fetch = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
             "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
             "topics": [{"topic": topic, "partitions": [{"partition": 0, "current_leader_epoch": -1,
                                                         "fetch_offset": 0, "log_start_offset": -1,
                                                         "partition_max_bytes": 1 << 20}]}]}
    offsets = {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]}
    fetched = raw_request(address, ApiKey.FETCH, 10, fetch)["responses"][0]["partitions"][0]
    listed = raw_request(address, ApiKey.LIST_OFFSETS, 4, offsets)["topics"][0]["partitions"][0]
    return fetched["error_code"], listed["error_code"]


def test_unknown_topic_is_told_apart_from_another_leader(cluster):
    """A topic the cluster does not have: UNKNOWN_TOPIC_OR_PARTITION; one it has but another
    broker leads: NOT_LEADER_OR_FOLLOWER, on a follower and on a broker that only knows it
    from the cluster metadata; Produce, Fetch and ListOffsets alike."""
    control = ClusterControl(cluster)
    control.lead("logs", 0, leader=1, epoch=1, replicas=[1, 2])
    state = {"partition_index": 0, "controller_epoch": 1, "leader": 1, "leader_epoch": 1, "isr": [1, 2],
             "zk_version": 1, "replicas": [1, 2]}
    assert control.request(3, ApiKey.UPDATE_METADATA, 5, control._metadata_delta("logs", state))["error_code"] == 0
    for broker_id in cluster.ids:
        address = cluster.address(broker_id)
        assert produce_once(address, "nowhere")["error_code"] == UNKNOWN_TOPIC
        assert _fetch_and_list_offsets(address, "nowhere") == (UNKNOWN_TOPIC, UNKNOWN_TOPIC)
        assert produce_once(address, "logs", partition=1)["error_code"] == UNKNOWN_TOPIC
    for broker_id in (2, 3):
        address = cluster.address(broker_id)
        assert produce_once(address, "logs")["error_code"] == NOT_LEADER
        assert _fetch_and_list_offsets(address, "logs") == (NOT_LEADER, NOT_LEADER)
    assert _fetch_and_list_offsets(cluster.address(1), "logs") == (0, 0)
    assert not (cluster.data_dir(3) / "logs-0").exists() and not (cluster.data_dir(1) / "nowhere-0").exists()


def test_stale_controller_epoch_is_refused(cluster):
    control = ClusterControl(cluster, controller_epoch=5)
    control.lead("logs", 0, leader=1, epoch=1, replicas=[1])
    answer = control.leader_and_isr(1, "logs", 0, leader=1, epoch=2, replicas=[1], controller_epoch=4)
    assert answer["error_code"] == STALE_CONTROLLER_EPOCH
    saved = json.loads((cluster.data_dir(1) / "logs-0" / "partition-state").read_text())
    assert saved["leader_epoch"] == 1


def test_older_state_version_is_refused(cluster):
    control = ClusterControl(cluster)
    control.leader_and_isr(1, "logs", 0, leader=1, epoch=4, replicas=[1], version=10)
    answer = control.leader_and_isr(1, "logs", 0, leader=1, epoch=2, replicas=[1], version=9)
    assert answer["partition_errors"][0]["error_code"] == 74  # FENCED_LEADER_EPOCH (review finding 4)
    saved = json.loads((cluster.data_dir(1) / "logs-0" / "partition-state").read_text())
    assert (saved["leader_epoch"], saved["version"]) == (4, 10)


def test_role_survives_a_restart(cluster):
    control = ClusterControl(cluster)
    control.lead("logs", 0, leader=2, epoch=2, replicas=[2])
    assert produce_once(cluster.address(2), "logs")["error_code"] == 0
    cluster.brokers[2].stop()
    cluster.start(2)
    assert produce_once(cluster.address(2), "logs")["error_code"] == 0
    assert control.log_end("logs", 0, broker_id=2) == (2, 2)


def test_stop_replica_with_delete(cluster):
    control = ClusterControl(cluster)
    control.lead("logs", 0, leader=1, epoch=1, replicas=[1])
    assert produce_once(cluster.address(1), "logs")["error_code"] == 0
    answer = control.stop_replica(1, "logs", 0, delete=True)
    assert answer["error_code"] == 0
    assert produce_once(cluster.address(1), "logs")["error_code"] == NOT_LEADER
    assert not (cluster.data_dir(1) / "logs-0").exists()


def test_stop_replica_stops_following(cluster):
    control = ClusterControl(cluster)
    control.lead("logs", 0, leader=1, epoch=1, replicas=[1, 2])
    assert produce_once(cluster.address(1), "logs")["error_code"] == 0
    assert control.log_end("logs", 0, broker_id=2) == (1, 1)  # acks=all: broker 2 had it
    assert control.stop_replica(2, "logs", 0)["error_code"] == 0
    # broker 2 no longer a replica (the controller, told of this state, tells the replicas it names)
    control.lead("logs", 0, leader=1, epoch=1, replicas=[1], isr=[1], to=[1])
    for _ in range(3):
        assert produce_once(cluster.address(1), "logs")["error_code"] == 0
    assert control.log_end("logs", 0, broker_id=1) == (4, 1)
    # broker 2 hosts it no more: it neither fetched nor answers for it (its log stays as it was)
    answer = control.request(2, ApiKey.LIST_OFFSETS, 4, {"replica_id": -2, "isolation_level": 0, "topics": [
        {"name": "logs", "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]})
    assert answer["topics"][0]["partitions"][0]["error_code"] == NOT_LEADER
    assert (cluster.data_dir(2) / "logs-0" / "00000000000000000000.log").stat().st_size == \
        (cluster.data_dir(1) / "logs-0" / "00000000000000000000.log").stat().st_size // 4
    assert not (cluster.data_dir(2) / "logs-0" / "partition-state").exists()  # a restart does not resume it

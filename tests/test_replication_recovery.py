"""Replicas coming back: a follower whose log ends below the leader's log start restarts its
log there (and follows the leader's log start), and a restarted replica keeps its high
watermark (replication-offset-checkpoint) instead of exposing or hiding records."""

from __future__ import annotations

import pytest

from logship.protocol import ApiKey

from cluster_control import ClusterControl
from conftest import wait_until
from local_cluster import LocalCluster, started
from test_replication_control import produce_once, raw_request
from test_replication_data import latest_offset

pytestmark = pytest.mark.integration

TOPIC = "logs"


@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path, no_tracebacks=True) as made:
        yield made


def _delete_records(address: str, offset: int) -> dict:
    body = {"topics": [{"name": TOPIC, "partitions": [{"partition_index": 0, "offset": offset}]}],
            "timeout_ms": 5000}
    return raw_request(address, ApiKey.DELETE_RECORDS, 1, body)["topics"][0]["partitions"][0]


def test_follower_below_the_leaders_log_start_restarts_there(cluster):
    control = ClusterControl(cluster)
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3])
    for _ in range(60):
        assert produce_once(cluster.address(1), TOPIC)["error_code"] == 0
    cluster.brokers[3].stop()
    directory = cluster.data_dir(3) / f"{TOPIC}-0"
    for path in directory.iterdir():  # a replaced disk: only the partition state is left
        if path.name != "partition-state":
            path.unlink()
    assert _delete_records(cluster.address(1), 50) == {"partition_index": 0, "low_watermark": 50, "error_code": 0}
    # the follower's log start follows the leader's
    assert wait_until(lambda: f"{TOPIC} 0 50" in _log_starts(cluster, 2), timeout=10)
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3], isr=[1, 2], to=[1, 2])
    cluster.start(3)
    assert wait_until(lambda: control.log_end(TOPIC, 0, 3)[0] == 60, timeout=20)
    assert (directory / "00000000000000000050.log").exists()
    assert "behind the leader's log start 50" in cluster.brokers[3].log()
    for _ in range(3):
        assert produce_once(cluster.address(1), TOPIC, acks=1)["error_code"] == 0
    assert wait_until(lambda: control.log_end(TOPIC, 0, 3)[0] == 63, timeout=20)


def _log_starts(cluster: LocalCluster, broker_id: int) -> str:
    path = cluster.data_dir(broker_id) / "log-start-offset-checkpoint"
    return path.read_text() if path.exists() else ""


def test_restarted_leader_keeps_its_high_watermark(cluster):
    control = ClusterControl(cluster)
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3])
    for _ in range(10):
        assert produce_once(cluster.address(1), TOPIC)["error_code"] == 0
    assert latest_offset(cluster.address(1)) == 10
    cluster.brokers[2].stop()
    cluster.brokers[3].stop()
    for _ in range(4):  # not replicated: above the high watermark
        assert produce_once(cluster.address(1), TOPIC, acks=1)["error_code"] == 0
    cluster.brokers[1].stop()
    cluster.start(1)
    # neither 0 (nothing readable until followers return) nor 14 (records never acknowledged)
    assert latest_offset(cluster.address(1)) == 10
    assert control.log_end(TOPIC, 0, 1)[0] == 14
    cluster.start(2)
    cluster.start(3)
    assert wait_until(lambda: latest_offset(cluster.address(1)) == 14, timeout=20)


def test_emptied_follower_beyond_the_leaders_log_restarts_at_its_high_watermark(cluster):
    control = ClusterControl(cluster)
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3])
    for _ in range(10):
        assert produce_once(cluster.address(1), TOPIC)["error_code"] == 0
    cluster.brokers[3].stop()
    data = cluster.data_dir(3)
    for path in (data / f"{TOPIC}-0").iterdir():
        if path.name != "partition-state":
            path.unlink()
    (data / "log-start-offset-checkpoint").write_text(f"0\n1\n{TOPIC} 0 100\n")  # an empty log at 100
    (data / "recovery-point-offset-checkpoint").unlink(missing_ok=True)
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3], isr=[1, 2], to=[1, 2])
    cluster.start(3)
    assert wait_until(lambda: "restarting at its high watermark 10" in cluster.brokers[3].log(), timeout=20)
    assert produce_once(cluster.address(1), TOPIC, acks=1)["error_code"] == 0
    assert wait_until(lambda: control.log_end(TOPIC, 0, 3)[0] == 11, timeout=20)
    assert (data / f"{TOPIC}-0" / "00000000000000000010.log").exists()

"""`logship status` (issue #15, health): its exit status in each situation, against real brokers.

0 healthy (one broker; a three-broker cluster); 1 degraded (a partition offline after a failed
fdatasync, injected into the real broker by tests/failing_sync; a nearly full disk, a real tmpfs
filled up; a cluster broker killed, its partitions under-replicated); 3 unreachable (the broker
stopped). Each prints one table and one status line, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import wait_until
from local_cluster import run_logship, started
from tiny_disk import fill, tmpfs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FAILING_SYNC = Path(__file__).resolve().parent / "failing_sync"


def _status(address: str, *args: str):
    result = run_logship("status", "--brokers", address, "--timeout", "5", *args)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def _json(address: str) -> dict:
    result = _status(address, "--json")
    return json.loads(result.stdout)


def test_a_healthy_broker_then_a_stopped_one(start_broker):
    broker = start_broker()
    assert run_logship("produce", "-b", broker.address, "web", input="a\nb\n").returncode == 0
    result = _status(broker.address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "status: healthy" in result.stdout
    assert "logship 0.1" in result.stdout and broker.address in result.stdout
    report = _json(broker.address)
    (only,) = report["brokers"]
    assert only["up"] and only["version"].startswith("logship ")
    assert only["leaders"] == only["partitions"] >= 1 and only["topics"] >= 1
    assert only["total_bytes"] > 0 and 0 <= only["usable_bytes"] <= only["total_bytes"]
    assert only["used_bytes"] > 0
    assert report["status"] == "healthy" and report["exit_status"] == 0

    broker.stop()
    result = _status(broker.address)
    assert result.returncode == 3, result.stdout
    assert "status: unreachable" in result.stdout
    assert sum("problem:" in line for line in result.stdout.splitlines()) == 1


def test_an_offline_partition_is_degraded(start_broker, tmp_path, monkeypatch):
    flag = tmp_path / "fail-syncs"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAILING_SYNC), os.environ.get("PYTHONPATH")])))
    broker = start_broker(env={"LOGSHIP_TEST_FAIL_SYNC": str(flag)})
    assert run_logship("produce", "-b", broker.address, "fine", input="ok\n").returncode == 0
    assert _status(broker.address).returncode == 0
    flag.touch()
    produced = run_logship("produce", "-b", broker.address, "--timeout", "5", "lost", input="x\n")
    assert produced.returncode != 0, produced.stderr  # its fdatasync failed: never acknowledged
    wait_until(lambda: "lost-0" in _json(broker.address)["offline"], timeout=30)
    result = _status(broker.address)
    assert result.returncode == 1, result.stdout
    assert "offline partition(s): lost-0" in result.stdout and "status: degraded" in result.stdout
    assert "fine-0" not in _json(broker.address)["offline"]


def test_a_nearly_full_disk_is_degraded(start_broker, tmp_path):
    with tmpfs(tmp_path / "tiny", "4m") as disk:
        broker = start_broker(data_dir=disk / "data")
        assert run_logship("produce", "-b", broker.address, "web", input="a\n").returncode == 0
        assert _status(broker.address).returncode == 0
        fill(disk / "ballast")
        result = _status(broker.address)
        assert result.returncode == 1, result.stdout
        assert "of its volume is free (below 10%)" in result.stdout
        assert _status(broker.address, "--min-free", "0").returncode == 0
        broker.stop()


def test_a_cluster_with_a_broker_down_is_degraded(tmp_path):
    with started(tmp_path, no_tracebacks=True) as cluster:
        bootstrap = cluster.bootstrap
        made = run_logship("topics", "create", "logs", "--partitions", "3", "--replication-factor", "3",
                           "-b", bootstrap)
        assert made.returncode == 0, made.stderr
        wait_until(lambda: _status(bootstrap).returncode == 0, timeout=30)
        report = _json(bootstrap)
        assert [b["node_id"] for b in report["brokers"]] == [1, 2, 3]
        assert all(b["up"] and b["partitions"] >= 3 for b in report["brokers"])
        assert sum(b["leaders"] for b in report["brokers"]) >= 3

        cluster.brokers[3].proc.send_signal(signal.SIGKILL)
        cluster.brokers[3].proc.wait(10)
        result = _status(cluster.address(1))
        assert result.returncode == 1, result.stdout
        assert "broker 3 at" in result.stdout and "does not answer" in result.stdout
        down = [b for b in _json(cluster.address(1))["brokers"] if not b["up"]]
        assert [b["node_id"] for b in down] == [3]


def test_a_broker_without_describe_log_dirs_is_healthy_with_its_disk_unknown():
    import kafka_clients

    with kafka_clients.mock_cluster(2) as address:  # librdkafka's mock: no DescribeLogDirs, no groups
        assert run_logship("produce", "-b", address, "mocked", input="a\n").returncode == 0
        result = _status(address)
        assert result.returncode == 0, result.stdout
        report = _json(address)
        assert [b["up"] for b in report["brokers"]] == [True, True]
        assert all(b["total_bytes"] is None for b in report["brokers"]) and report["problems"] == []

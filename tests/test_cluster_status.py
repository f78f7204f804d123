"""`logship cluster status`'s replication columns (issue #13): replication lag and last heard,
from the leaders' DescribeQuorum answers (broker/describe_quorum.py, cluster/replication_view.py).

Units: a DescribeQuorum answer read into per-follower lags, and those summed per broker. The
broker: DescribeQuorum from a single broker and from a cluster's leaders and non-leaders. End
to end, a real three-broker cluster on loopback (tests/local_cluster.py): caught up shows lag 0;
a SIGSTOPped follower shows the records it missed and a growing "last heard", then catches up.

The local cluster's brokers are started directly, not over SSH: `cluster status` is given a
copy of the cluster file whose SSH targets are a closed port, so every host is "unreachable"
(refused at once, whatever sshd this machine runs) and each broker is still asked over its
Kafka listener, as status does for an unreachable host.
"""

from __future__ import annotations

import json
import signal

import pytest

from conftest import wait_until
from local_cluster import free_port, run_logship, started
from logship.client.connection import Connection
from logship.cluster.replication_view import BrokerView, FollowerLag, follower_lags, with_replication
from logship.protocol import ApiKey

pytestmark = [pytest.mark.timeout(180)]


# --- units -------------------------------------------------------------------------------------

def _state(replica, offset, fetched, caught_up=-1):
    return {"replica_id": replica, "log_end_offset": offset, "last_fetch_timestamp": fetched,
            "last_caught_up_timestamp": caught_up}


def _answer(*partitions):
    return {"error_code": 0, "topics": [{"topic_name": "t", "partitions": list(partitions)}]}


def _part(index, leader, voters, observers=(), error=0):
    return {"partition_index": index, "error_code": error, "leader_id": leader, "leader_epoch": 3,
            "high_watermark": 0, "current_voters": list(voters), "observers": list(observers)}


def test_follower_lags_are_taken_on_the_leaders_clock():
    answer = _answer(
        _part(0, 1, [_state(1, 100, 50_000), _state(2, 100, 49_900, 49_900)], [_state(3, 40, 44_000)]),
        _part(1, 1, [_state(1, 7, 50_000), _state(2, -1, -1)]),  # broker 2 not heard from in this epoch
        _part(2, 2, [], error=6))  # not led by the broker asked: left out
    assert follower_lags(answer) == (
        FollowerLag("t", 0, 1, 2, 0, 0.1), FollowerLag("t", 0, 1, 3, 60, 6.0), FollowerLag("t", 1, 1, 2, None, None))


def test_a_brokers_figures_are_summed_from_what_its_leaders_reported():
    views = {
        1: BrokerView(led=2, followed=1, reported=(FollowerLag("a", 0, 1, 3, 10, 0.5),
                                                   FollowerLag("a", 0, 1, 2, 0, 0.2),
                                                   FollowerLag("a", 1, 1, 3, 25, 4.0))),
        2: BrokerView(led=1, followed=2, reported=(FollowerLag("b", 0, 2, 3, 0, 9.0),
                                                   FollowerLag("b", 0, 2, 1, None, None))),
        3: BrokerView(led=0, followed=3),
        4: BrokerView(led=0, followed=0),
    }
    filled = with_replication(views)
    three = filled[3]
    assert (three.lag, three.last_heard_s, three.unheard) == (35, 9.0, 0)
    assert three.worst == FollowerLag("a", 1, 1, 3, 25, 4.0)  # the most records behind
    assert (filled[2].lag, filled[2].last_heard_s, filled[2].worst.partition) == (0, 0.2, 0)
    one = filled[1]  # its only leader has not heard from it yet in its epoch
    assert (one.lag, one.last_heard_s, one.unheard, one.worst) == (None, None, 1, FollowerLag("b", 0, 2, 1, None, None))
    assert (filled[4].lag, filled[4].last_heard_s, filled[4].worst, filled[4].unheard) == (None, None, None, 0)
    assert filled[1].reported == views[1].reported and filled[3].led == 0  # the rest is kept


def test_the_table_cells():
    from logship.cli.cluster import _heard_cell, _lag_cell

    assert (_lag_cell(None), _heard_cell(None)) == ("-", "-")
    assert (_lag_cell(BrokerView()), _heard_cell(BrokerView())) == ("-", "-")  # follows nothing, or leaders down
    assert (_lag_cell(BrokerView(lag=12, last_heard_s=1.25)), _heard_cell(BrokerView(lag=12, last_heard_s=1.25))) \
        == ("12", "1.2s")
    partly = BrokerView(lag=5, last_heard_s=0.5, unheard=1)
    assert (_lag_cell(partly), _heard_cell(partly)) == ("5+?", "never")
    assert _lag_cell(BrokerView(unheard=2)) == "?"


# --- the broker --------------------------------------------------------------------------------

def describe(address: str, *partitions: tuple[str, int], version: int | None = None) -> dict:
    host, port = address.rsplit(":", 1)
    topics: dict[str, list[int]] = {}
    for topic, index in partitions:
        topics.setdefault(topic, []).append(index)
    with Connection(host, int(port)) as conn:
        answer = conn.request(ApiKey.DESCRIBE_QUORUM, {"topics": [
            {"topic_name": name, "partitions": [{"partition_index": i} for i in indexes]}
            for name, indexes in topics.items()]}, version=version)
    assert answer["error_code"] == 0
    return {(t["topic_name"], p["partition_index"]): p for t in answer["topics"] for p in t["partitions"]}


@pytest.mark.integration
def test_a_single_broker_leads_every_partition_alone(broker):
    assert run_logship("topics", "create", "solo", "-p", "1", "-b", broker.address).returncode == 0
    assert run_logship("produce", "solo", "-b", broker.address, input="a\nb\nc\n").returncode == 0
    found = describe(broker.address, ("solo", 0), ("solo", 1), ("nope", 0))
    solo = found[("solo", 0)]
    assert (solo["error_code"], solo["high_watermark"], solo["observers"]) == (0, 3, [])
    (own,) = solo["current_voters"]
    assert own["replica_id"] == solo["leader_id"] and own["log_end_offset"] == 3
    assert own["last_fetch_timestamp"] == own["last_caught_up_timestamp"] > 0  # the leader's "now"
    assert found[("solo", 1)]["error_code"] == found[("nope", 0)]["error_code"] == 3  # UNKNOWN_TOPIC_OR_PARTITION
    v0 = describe(broker.address, ("solo", 0), version=0)[("solo", 0)]
    assert v0["current_voters"][0]["log_end_offset"] == 3 and "last_fetch_timestamp" not in v0["current_voters"][0]


# --- a real cluster ----------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path, no_tracebacks=True) as made:
        text = made.path.read_text().replace('ssh = "127.0.0.1"', f'ssh = "127.0.0.1:{free_port()}"')
        (tmp_path / "status.toml").write_text(text)
        made.status_file = tmp_path / "status.toml"
        (tmp_path / "status.toml.secret").write_bytes(made.secret)  # for `cluster remove`
        yield made


def status(cluster, *args: str, timeout: str = "3s") -> dict[int, dict]:
    done = run_logship("cluster", "status", str(cluster.status_file), "--timeout", timeout, "--json", *args)
    assert done.returncode == 3, done.stderr  # every host "unreachable" (see the module docstring)
    return {row["broker"]: row for row in map(json.loads, done.stdout.splitlines())}


def leaders(cluster, topic: str) -> dict[int, int]:
    host, port = cluster.address(1).rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        meta = conn.request(ApiKey.METADATA, {"topics": [{"name": topic}], "allow_auto_topic_creation": False})
    return {p["partition_index"]: p["leader_id"] for p in meta["topics"][0]["partitions"]}


def produce(cluster, topic: str, partition: int, count: int, acks: str, via: int) -> None:
    lines = "".join(f"record {n}\n" for n in range(count))
    done = run_logship("produce", topic, "-p", str(partition), "--acks", acks, "-b", cluster.address(via), input=lines)
    assert done.returncode == 0, done.stderr


def caught_up(rows: dict[int, dict]) -> bool:
    return all(row["replication_lag"] == 0 and row["partitions_unheard"] == 0 for row in rows.values())


@pytest.mark.integration
def test_lag_and_last_heard_of_a_stopped_follower(cluster):
    N = 500
    done = run_logship("topics", "create", "lagged", "-p", "3", "-r", "3", "--brokers", cluster.address(1))
    assert done.returncode == 0, done.stderr
    led = leaders(cluster, "lagged")
    assert sorted(led.values()) == [1, 2, 3]
    by_leader = {leader: index for index, leader in led.items()}
    produce(cluster, "lagged", by_leader[1], 50, "all", via=1)

    rows = wait_until(lambda: (lambda r: r if caught_up(r) else None)(status(cluster)), timeout=30, interval=0.2)
    assert rows, status(cluster)
    for row in rows.values():
        assert (row["partitions_led"], row["partitions_followed"]) == (1, 2)
        assert row["last_heard_s"] is not None and row["worst_partition"]["lag"] == 0

    broker3 = cluster.brokers[3].proc
    broker3.send_signal(signal.SIGSTOP)
    try:
        produce(cluster, "lagged", by_leader[1], N, "1", via=1)
        produce(cluster, "lagged", by_leader[2], N, "1", via=2)
        first = status(cluster)
        assert first[3]["replication_lag"] >= 2 * N, first[3]
        assert first[3]["worst_partition"]["partition"] in (by_leader[1], by_leader[2])
        assert first[3]["worst_partition"]["lag"] >= N
        # it does not answer itself (both reasons said); its leaders speak for it
        assert "cannot connect" in first[3]["reason"] and "did not answer" in first[3]["reason"]
        assert first[1]["worst_partition"]["leader"] != 3  # what broker 3 leads goes unreported
        second = status(cluster)
        assert second[3]["last_heard_s"] > first[3]["last_heard_s"]  # nothing heard from it since
        assert second[3]["replication_lag"] >= 2 * N
        table = run_logship("cluster", "status", str(cluster.status_file), "--timeout", "3s")
        (line3,) = [line for line in table.stdout.splitlines() if line.split()[:1] == ["3"]]
        assert str(second[3]["replication_lag"]) in line3.split()
        assert "replication lag" in table.stdout and "last heard" in table.stdout
    finally:
        broker3.send_signal(signal.SIGCONT)

    assert wait_until(lambda: caught_up(status(cluster)), timeout=60, interval=0.2), status(cluster)


@pytest.mark.integration
def test_leaders_answer_describe_quorum_and_a_removed_broker_is_an_observer(cluster):
    done = run_logship("topics", "create", "watched", "-p", "3", "-r", "3", "--brokers", cluster.address(1))
    assert done.returncode == 0, done.stderr
    led = leaders(cluster, "watched")
    produce(cluster, "watched", 0, 20, "all", via=1)
    found = describe(cluster.address(1), *(("watched", p) for p in led))
    for index, leader in led.items():
        entry = found[("watched", index)]
        assert entry["leader_id"] == leader
        if leader != 1:
            assert (entry["error_code"], entry["current_voters"]) == (6, [])  # NOT_LEADER_OR_FOLLOWER
            continue
        assert entry["error_code"] == 0 and entry["observers"] == []
        assert [v["replica_id"] for v in entry["current_voters"]] == [1, 2, 3]  # the ISR, the leader first

    removed = run_logship("cluster", "remove", "3", "--cluster", str(cluster.status_file), "--timeout", "5s")
    assert removed.returncode == 3 and "NOT fenced" in removed.stderr, removed.stderr  # its host is "unreachable"
    index = next(index for index, leader in led.items() if leader != 3)
    after = describe(cluster.address(led[index]), ("watched", index))[("watched", index)]
    assert [v["replica_id"] for v in after["current_voters"]] == [led[index], ({1, 2} - {led[index]}).pop()]
    assert [o["replica_id"] for o in after["observers"]] == [3]
    produce(cluster, "watched", index, 30, "all", via=led[index])  # acks=all no longer waits for broker 3
    assert wait_until(lambda: status(cluster)[3]["replication_lag"] == 0, timeout=30, interval=0.2)  # still reported

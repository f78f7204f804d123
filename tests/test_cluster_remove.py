"""`logship cluster remove` and `cluster add` on a real three-broker cluster on loopback: a
dead follower blocks acks=all until it is removed; removed, it is out of every in-sync replica
set and leads nothing; a fenced broker refuses to lead; added back, it catches up and acks=all
waits for it again. The loopback brokers have no sshd, so the fence cannot be written over SSH
here: the command says so (exit 3) and still removes the broker; the marker itself is written
by hand where the test needs one (tests/test_cluster_ssh.py has real hosts)."""

from __future__ import annotations

import json
import time

import pytest

from logship.client.connection import Connection
from logship.protocol import ApiKey
from cluster_control import ClusterControl
from local_cluster import run_logship, started

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path) as made:
        yield made


logship = run_logship


def layout(cluster, broker_id, name) -> dict[int, tuple[int, tuple, tuple]]:
    host, port = cluster.address(broker_id).split(":")
    with Connection(host, int(port)) as conn:
        meta = conn.request(ApiKey.METADATA, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
    return {p["partition_index"]: (p["leader_id"], tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
            for p in meta["topics"][0]["partitions"]}


def produce(cluster, topic, count, tag, timeout_ms=20000) -> int:
    """Produce `count` records with acks=all through the cluster; how many were acknowledged."""
    from confluent_kafka import Producer

    acked = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5,
                         "request.timeout.ms": min(timeout_ms, 30000), "message.timeout.ms": timeout_ms})
    for i in range(count):
        producer.produce(topic, b"%s-%d" % (tag.encode(), i), on_delivery=lambda err, msg: err or acked.append(1))
    producer.flush(timeout_ms / 1000 + 10)
    return len(acked)


def remove(cluster, broker_id) -> tuple[int, list[dict], str]:
    done = logship("cluster", "remove", str(broker_id), "--cluster", str(cluster.path), "--json", "--timeout", "3s")
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_remove_a_dead_follower_lets_writes_resume_and_add_brings_it_back(cluster):
    assert logship("topics", "create", "logs", "-p", "3", "-r", "3", "--brokers", cluster.bootstrap).returncode == 0
    assert produce(cluster, "logs", 300, "first") == 300
    before = layout(cluster, 1, "logs")
    cluster.brokers[3].kill()
    assert produce(cluster, "logs", 30, "blocked", timeout_ms=3000) == 0  # acks=all waits for broker 3

    status, moves, err = remove(cluster, 3)
    assert status == 3, err  # removed, but its host could not be fenced over SSH
    assert "NOT fenced" in err and "cluster add 3" in err and "Traceback" not in err
    assert len(moves) == 3 and all(m["error"] is None and 3 not in m["isr"] for m in moves)
    for broker_id in (1, 2):
        after = layout(cluster, broker_id, "logs")
        for p, (leader, replicas, isr) in after.items():
            assert leader in (1, 2) and replicas == before[p][1] and 3 not in isr and len(isr) == 2
    assert produce(cluster, "logs", 300, "second") == 300
    described = logship("topics", "describe", "logs", "--brokers", cluster.address(1), "--json")
    rows = [json.loads(line) for line in described.stdout.splitlines()]
    assert [(r["under_replicated"], 3 in r["replicas"], 3 in r["isr"]) for r in rows] == [(True, True, False)] * 3
    table = logship("topics", "describe", "logs", "--brokers", cluster.address(2), "--under-replicated").stdout
    assert table.count("under-replicated") == 3
    created = logship("topics", "create", "while-removed", "-p", "3", "-r", "3", "--brokers", cluster.bootstrap)
    assert created.returncode == 0, created.stderr  # the controller keeps the removed broker out of it
    assert all(leader != 3 and 3 not in isr and 3 in replicas
               for leader, replicas, isr in layout(cluster, 2, "while-removed").values())

    cluster.start(3)
    done = logship("cluster", "add", "3", "--cluster", str(cluster.path), "--json", "--timeout", "3s")
    assert done.returncode == 3, done.stderr  # the fence could not be cleared over SSH; the ISR is back
    assert all(3 in json.loads(line)["isr"] for line in done.stdout.splitlines())

    def back() -> bool:
        return all(len(isr) == 3 for _, _, isr in layout(cluster, 3, "logs").values())
    deadline = time.monotonic() + 20
    while not back():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert produce(cluster, "logs", 300, "third") == 300  # acks=all includes broker 3 again, caught up
    described = logship("topics", "describe", "logs", "--brokers", cluster.address(3), "--under-replicated")
    assert described.returncode == 0 and "under-replicated" not in described.stdout
    control = ClusterControl(cluster)
    for p in range(3):
        leader = layout(cluster, 1, "logs")[p][0]
        assert control.log_end("logs", p, broker_id=3)[0] == control.log_end("logs", p, broker_id=leader)[0]


def test_a_fenced_broker_refuses_to_lead_and_is_never_promoted(cluster):
    assert logship("topics", "create", "fence", "-p", "1", "-r", "3", "--brokers", cluster.bootstrap).returncode == 0
    leader, replicas, _ = layout(cluster, 1, "fence")[0]
    status, moves, err = remove(cluster, 2)
    assert status == 3 and all(2 not in m["isr"] for m in moves), err
    (cluster.data_dir(2) / "fenced").write_text('{"removed_at_epoch": 1, "by": "test"}\n')
    cluster.brokers[2].stop()
    cluster.start(2)
    assert "fenced" in cluster.brokers[2].log()
    answer = ClusterControl(cluster).leader_and_isr(2, "fence", 0, leader=2, epoch=50, version=50,
                                                    replicas=list(replicas))
    assert [e["error_code"] for e in answer["partition_errors"]] == [107]  # INELIGIBLE_REPLICA

    current = layout(cluster, 1, "fence")[0][0]
    done = logship("promote", "fence:0", "--cluster", str(cluster.path), "--json")
    assert done.returncode == 0, done.stderr
    move = json.loads(done.stdout)
    assert move["new_leader"] not in (2, current)


def test_remove_of_an_unknown_broker_is_a_one_line_error(cluster):
    done = logship("cluster", "remove", "9", "--cluster", str(cluster.path))
    assert done.returncode != 0 and "no broker 9" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = logship("cluster", "remove", "1")
    assert done.returncode == 2 and "cluster file" in done.stderr


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    from sshhosts import SshHosts

    made = SshHosts.start(tmp_path_factory.mktemp("sshhosts"))
    yield made
    made.close()


def test_remove_writes_the_fence_over_ssh_and_add_clears_it(hosts, tmp_path):
    from logship.cluster_file import load
    from sshhosts import kill_brokers

    data_dirs = [tmp_path / f"data{n}" for n in range(1, len(hosts.hosts) + 1)]
    path = hosts.cluster_file(tmp_path / "cluster.toml", data_dirs, hosts.write_known_hosts(tmp_path / "known_hosts"))
    bootstrap = load(path).bootstrap
    try:
        up = logship("cluster", "up", str(path), timeout=120)
        assert up.returncode == 0, up.stderr
        assert logship("topics", "create", "fenced", "-p", "3", "-r", "3", "--brokers", bootstrap).returncode == 0
        done = logship("cluster", "remove", "3", "--cluster", str(path), "--json")
        assert done.returncode == 0, done.stderr
        epochs = [json.loads(line)["leader_epoch"] for line in done.stdout.splitlines()]
        marker = json.loads((data_dirs[2] / "fenced").read_text())
        assert marker["removed_at_epoch"] == max(epochs) and marker["by"]
        assert "fenced" in done.stderr

        done = logship("cluster", "add", "3", str(path), "--json")
        assert done.returncode == 0, done.stderr
        assert not (data_dirs[2] / "fenced").exists() and "fence removed" in done.stderr
        assert all(3 in json.loads(line)["isr"] for line in done.stdout.splitlines())
    finally:
        logship("cluster", "down", str(path), timeout=120)
        kill_brokers(data_dirs)


def test_the_last_in_sync_replica_stays_and_a_stale_one_joins_only_once_caught_up(cluster):
    """The review's scenario: {A, B}; B dies and is removed; A acknowledges alone; A is removed
    too. Before the fix the ISR became empty, `cluster add B` put the stale B straight into it
    and promote picked B: A's acknowledged records were lost."""
    assert logship("topics", "create", "last", "-p", "1", "-r", "2", "--brokers", cluster.bootstrap).returncode == 0
    leader, replicas, _ = layout(cluster, 1, "last")[0]
    stale = next(r for r in replicas if r != leader)
    cluster.brokers[stale].kill()
    assert remove(cluster, stale)[0] == 3
    assert produce(cluster, "last", 50, "alone") == 50  # acknowledged by the leader alone
    status, moves, err = remove(cluster, leader)  # the last in-sync replica: it stays, leading nothing
    assert status == 3 and moves[0]["new_leader"] == -1 and moves[0]["isr"] == [leader], err
    assert "last in-sync replica" in err
    row = json.loads(logship("topics", "describe", "last", "--brokers", cluster.address(leader), "--json").stdout)
    assert (row["leader"], row["isr"]) == (-1, [leader])

    cluster.start(stale)
    done = logship("cluster", "add", str(stale), str(cluster.path), "--json", "--timeout", "3s", "--wait", "1s")
    move = json.loads(done.stdout)
    assert done.returncode == 3 and "promote last:0" in move["error"], done.stderr
    assert layout(cluster, leader, "last")[0][2] == (leader,)  # not in the ISR while it has no leader to follow

    done = logship("promote", "last:0", "--cluster", str(cluster.path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new_leader"] == leader  # the only in-sync replica, never the stale one
    done = logship("cluster", "add", str(stale), str(cluster.path), "--json", "--timeout", "3s", "--wait", "20s")
    assert done.returncode == 3 and json.loads(done.stdout)["error"] is None, done.stderr  # caught up, then in
    assert sorted(layout(cluster, leader, "last")[0][2]) == sorted(replicas)
    control = ClusterControl(cluster)
    assert control.log_end("last", 0, broker_id=stale)[0] >= 50
    assert produce(cluster, "last", 10, "after") == 10


def test_add_of_a_replica_that_cannot_catch_up_leaves_it_out_of_the_isr(cluster):
    assert logship("topics", "create", "lag", "-p", "1", "-r", "2", "--brokers", cluster.bootstrap).returncode == 0
    leader, replicas, _ = layout(cluster, 1, "lag")[0]
    stale = next(r for r in replicas if r != leader)
    cluster.brokers[stale].kill()
    assert remove(cluster, stale)[0] == 3
    assert produce(cluster, "lag", 50, "alone") == 50
    done = logship("cluster", "add", str(stale), str(cluster.path), "--json", "--timeout", "2s", "--wait", "1s")
    move = json.loads(done.stdout)
    assert done.returncode == 3 and f"broker {stale} did not answer" in move["error"], done.stderr
    assert layout(cluster, leader, "lag")[0][2] == (leader,)  # before the fix: in the ISR, blocking acks=all
    assert produce(cluster, "lag", 10, "still") == 10


def test_promote_refuses_when_the_only_in_sync_replica_is_gone_unless_unclean(cluster):
    assert logship("topics", "create", "gone", "-p", "1", "-r", "2", "--brokers", cluster.bootstrap).returncode == 0
    leader, replicas, _ = layout(cluster, 1, "gone")[0]
    stale = next(r for r in replicas if r != leader)
    cluster.brokers[stale].kill()
    assert remove(cluster, stale)[0] == 3
    assert produce(cluster, "gone", 50, "alone") == 50
    cluster.brokers[leader].kill()
    cluster.start(stale)
    status, moves, err = remove(cluster, leader)  # the state goes to the stale replica, the one reachable
    assert status == 3 and moves[0]["isr"] == [leader] and moves[0]["new_leader"] == -1, err
    done = logship("promote", "gone:0", "--cluster", str(cluster.path), "--json", "--timeout", "2s")
    assert done.returncode == 1 and "--unclean" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"].startswith("no other in-sync replica answered")
    done = logship("promote", "gone:0", "--unclean", "--cluster", str(cluster.path), "--json", "--timeout", "2s")
    move = json.loads(done.stdout)
    assert done.returncode == 0 and move["new_leader"] == stale and move["isr"] == [stale], done.stderr
    assert "UNCLEAN" in done.stderr and "lost" in done.stderr
    assert produce(cluster, "gone", 10, "after") == 10

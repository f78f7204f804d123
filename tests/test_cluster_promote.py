"""`logship promote` on a real three-broker cluster on loopback: leadership moves to the most
complete other in-sync replica with a higher epoch, every broker's Metadata follows, real
clients (kcat, confluent-kafka) carry on through the new leaders, and the old leader can no
longer acknowledge acks=all writes."""

from __future__ import annotations

import collections
import json

import pytest

from logship.client.connection import Connection
from logship.protocol import ApiKey
from local_cluster import run_logship, started

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path) as made:
        yield made


logship = run_logship


def create(cluster, name, partitions=6, rf=3):
    done = logship("topics", "create", name, "-p", str(partitions), "-r", str(rf), "--brokers", cluster.address(2))
    assert done.returncode == 0, done.stderr


def leaders(cluster, broker_id, name) -> dict[int, tuple[int, tuple, tuple]]:
    host, port = cluster.address(broker_id).split(":")
    with Connection(host, int(port)) as conn:
        meta = conn.request(ApiKey.METADATA, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
    return {p["partition_index"]: (p["leader_id"], tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
            for p in meta["topics"][0]["partitions"]}


def promote(cluster, *args) -> tuple[int, list[dict], str]:
    done = logship("promote", *args, "--cluster", str(cluster.path), "--json")
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_promote_away_from_a_broker_moves_every_partition_it_led(cluster):
    create(cluster, "moving")
    before = leaders(cluster, 1, "moving")
    led_by_2 = sorted(p for p, (leader, _, _) in before.items() if leader == 2)
    assert len(led_by_2) == 2
    status, moves, err = promote(cluster, "--away-from", "2")
    assert status == 0, err
    assert sorted(m["partition"] for m in moves) == led_by_2
    assert all(m["old_leader"] == 2 and m["new_leader"] in (1, 3) and m["error"] is None for m in moves)
    assert all(m["leader_epoch"] == 1 for m in moves)
    for broker_id in cluster.ids:
        after = leaders(cluster, broker_id, "moving")
        for p, (leader, replicas, isr) in after.items():
            assert leader != 2
            assert (replicas, isr) == before[p][1:]
            if p not in led_by_2:
                assert leader == before[p][0]
    counts = collections.Counter(leader for leader, _, _ in leaders(cluster, 3, "moving").values())
    assert counts[2] == 0 and counts[1] + counts[3] == 6


def test_promote_named_partitions_and_the_errors(cluster):
    create(cluster, "named", partitions=2)
    old = leaders(cluster, 1, "named")[1][0]
    status, moves, err = promote(cluster, "named:1")
    assert status == 0, err
    assert [(m["partition"], m["old_leader"]) for m in moves] == [(1, old)] and moves[0]["new_leader"] != old
    assert leaders(cluster, 2, "named")[1][0] == moves[0]["new_leader"]

    status, _, err = promote(cluster, "named:7")
    assert status == 4 and "named:7" in err and "Traceback" not in err
    done = logship("promote", "--cluster", str(cluster.path))
    assert done.returncode == 2 and "--away-from" in done.stderr
    done = logship("promote", "named:x", "--cluster", str(cluster.path))
    assert done.returncode == 2


def test_promote_with_a_wrong_secret_is_refused_in_one_line(cluster, tmp_path):
    create(cluster, "secret", partitions=1)
    other = tmp_path / "other.toml"
    other.write_text(cluster.path.read_text())
    (tmp_path / "other.toml.secret").write_bytes(b"not-the-secret-at-all-0123456789")
    done = logship("promote", "secret:0", "--cluster", str(other))
    assert done.returncode == 3, done.stderr
    assert "secret" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_kcat_and_confluent_kafka_carry_on_through_the_cluster_after_a_leader_change(cluster):
    from kafka_clients import consume, dataset, produce

    create(cluster, "clients")
    first, second = dataset("before", 600), dataset("after", 600)
    produce("kcat", cluster.bootstrap, "clients", first)
    status, moves, err = promote(cluster, "--away-from", "1")
    assert status == 0 and len(moves) == 2, err
    produce("confluent", cluster.bootstrap, "clients", second)
    for client in ("kcat", "confluent"):
        got = consume(client, cluster.bootstrap, "clients", len(first) + len(second))
        assert sorted(r.value for r in got) == sorted(m.value for m in first + second), client
        by_partition = collections.defaultdict(list)
        for r in got:
            by_partition[r.partition].append(r.offset)
        assert all(offsets == list(range(len(offsets))) for offsets in map(sorted, by_partition.values()))


def test_the_controller_killed_promote_and_remove_let_acks_all_writes_resume(cluster):
    from kafka_clients import consume, dataset, produce

    create(cluster, "failover")
    first, second = dataset("one", 400), dataset("two", 400)
    produce("confluent", cluster.bootstrap, "failover", first)
    cluster.brokers[1].kill()  # the controller, leading two partitions
    status, moves, err = promote(cluster, "--away-from", "1")
    assert status == 0 and len(moves) == 2, err
    assert all(m["new_leader"] in (2, 3) for m in moves)
    for broker_id in (2, 3):  # every surviving broker's Metadata has the new leaders, without the controller
        assert all(leader != 1 for leader, _, _ in leaders(cluster, broker_id, "failover").values())
    done = logship("cluster", "remove", "1", str(cluster.path), "--timeout", "3s")
    assert done.returncode == 3, done.stderr  # removed; its host has no sshd here to be fenced
    produce("confluent", cluster.address(2), "failover", second)
    got = consume("confluent", cluster.address(3), "failover", len(first) + len(second))
    assert sorted(r.value for r in got) == sorted(m.value for m in first + second)


def test_topic_changes_need_the_controller_and_say_so_in_one_line(cluster):
    cluster.brokers[1].stop()
    done = logship("topics", "create", "later", "-p", "1", "--brokers", cluster.address(2))
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr  # the client asks the controller
    assert len(done.stderr.strip().splitlines()) == 1
    host, port = cluster.address(2).split(":")
    with Connection(host, int(port)) as conn:  # a broker forwarding to the controller says why it failed
        answer = conn.request(ApiKey.CREATE_TOPICS, {
            "topics": [{"name": "later", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                        "configs": []}], "timeout_ms": 2000, "validate_only": False})["topics"][0]
    assert answer["error_code"] == 7 and "controller (broker 1) is not reachable" in answer["error_message"]
    cluster.start(1)  # back: it resends its image, and topic changes work again
    create(cluster, "later", partitions=2)
    assert sorted(leaders(cluster, 3, "later")) == [0, 1]


def test_a_broker_down_during_a_creation_gets_the_topic_when_it_is_back(cluster):
    cluster.brokers[3].stop()
    host, port = cluster.address(2).split(":")
    with Connection(host, int(port)) as conn:
        answer = conn.request(ApiKey.CREATE_TOPICS, {
            "topics": [{"name": "meanwhile", "num_partitions": 3, "replication_factor": 3, "assignments": [],
                        "configs": []}], "timeout_ms": 1500, "validate_only": False})["topics"][0]
    assert answer["error_code"] == 7 and "broker 3" in answer["error_message"]  # created; 3 not told yet
    assert sorted(leaders(cluster, 2, "meanwhile")) == [0, 1, 2]
    cluster.start(3)
    import time
    deadline = time.monotonic() + 20
    while True:
        try:
            if leaders(cluster, 3, "meanwhile") == leaders(cluster, 1, "meanwhile"):
                break
        except KeyError:
            pass
        assert time.monotonic() < deadline, "broker 3 never got the topic"
        time.sleep(0.1)
    assert (cluster.data_dir(3) / "meanwhile-0" / "partition-state").exists()


def test_the_controller_killed_and_back_takes_the_newer_states_and_follows(cluster):
    from cluster_control import ClusterControl
    from kafka_clients import dataset, produce

    create(cluster, "comeback")
    produce("confluent", cluster.bootstrap, "comeback", dataset("a", 300))
    cluster.brokers[1].kill()
    status, moves, err = promote(cluster, "--away-from", "1")
    assert status == 0 and len(moves) == 2, err
    cluster.start(1)  # its image and its replicas still say it leads: it learns otherwise from the others
    import time
    deadline = time.monotonic() + 20
    while any(leader == 1 for leader, _, _ in leaders(cluster, 1, "comeback").values()):
        assert time.monotonic() < deadline, "the controller never took the promoted states"
        time.sleep(0.1)
    assert leaders(cluster, 1, "comeback") == leaders(cluster, 2, "comeback")
    produce("confluent", cluster.bootstrap, "comeback", dataset("b", 300))  # acks=all: broker 1 follows again
    control = ClusterControl(cluster)
    for move in moves:
        ends = {b: control.log_end("comeback", move["partition"], b) for b in cluster.ids}
        assert len(set(ends.values())) == 1, ends


def test_a_zombie_controller_learns_of_the_promote_when_it_wakes(cluster):
    import os
    import signal
    import time

    create(cluster, "asleep", partitions=3)
    led_by_1 = [p for p, (leader, _, _) in leaders(cluster, 2, "asleep").items() if leader == 1]
    assert led_by_1
    os.kill(cluster.brokers[1].proc.pid, signal.SIGSTOP)
    try:
        done = logship("promote", "--away-from", "1", "--cluster", str(cluster.path), "--json", "--timeout", "2s")
        assert done.returncode == 0, done.stderr
        assert sorted(json.loads(line)["partition"] for line in done.stdout.splitlines()) == led_by_1
    finally:
        os.kill(cluster.brokers[1].proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while leaders(cluster, 1, "asleep") != leaders(cluster, 3, "asleep"):
        assert time.monotonic() < deadline, "the controller never learnt of the promote"
        time.sleep(0.1)
    assert all(leaders(cluster, 1, "asleep")[p][0] != 1 for p in led_by_1)
    from cluster_control import ClusterControl
    from kafka_clients import dataset, produce

    produce("confluent", cluster.bootstrap, "asleep", dataset("awake", 90))  # acks=all: broker 1 follows
    control = ClusterControl(cluster)
    for p in led_by_1:
        assert len({control.log_end("asleep", p, b) for b in cluster.ids}) == 1


def test_a_state_of_the_same_version_with_other_content_is_refused(cluster):
    from cluster_control import ClusterControl

    control = ClusterControl(cluster)
    control.leader_and_isr(1, "twin", 0, leader=1, epoch=5, replicas=[1], version=5)
    assert control.leader_and_isr(1, "twin", 0, leader=1, epoch=5, replicas=[1], version=5)[
        "partition_errors"][0]["error_code"] == 0  # the same state again: a repeat
    answer = control.leader_and_isr(1, "twin", 0, leader=1, epoch=5, replicas=[1, 2], isr=[1], version=5)
    assert answer["partition_errors"][0]["error_code"] == 74  # FENCED_LEADER_EPOCH; before the fix: 0
    saved = json.loads((cluster.data_dir(1) / "twin-0" / "partition-state").read_text())
    assert saved["replicas"] == [1]


def test_promote_goes_above_a_state_epoch_a_replica_holds_unannounced(cluster):
    """A replica holds a state of epoch 1 that no Metadata shows (a promote that died half-way):
    promote's first try (epoch 1) conflicts with it, so it tries once more at epoch 2, and
    every replica ends up with that state. Before the fix the replica answered 0, kept its
    conflicting state and promote reported epoch 1 done."""
    from cluster_control import ClusterControl
    from logship.protocol.apis.interbroker import leader_and_isr_body
    from logship.storage.partition_state import PartitionState

    create(cluster, "half", partitions=1)
    leader, replicas, isr = leaders(cluster, 1, "half")[0]
    follower = next(r for r in replicas if r != leader)
    live = [(b, "127.0.0.1", cluster.ports[b]) for b in cluster.ids]
    unannounced = PartitionState(leader=leader, leader_epoch=1, replicas=replicas, isr=(leader, follower), version=1)
    body = leader_and_isr_body(-1, {("half", 0): unannounced}, live)
    answer = ClusterControl(cluster).request(follower, ApiKey.LEADER_AND_ISR, 2, body)
    assert answer["partition_errors"][0]["error_code"] == 0
    assert leaders(cluster, 1, "half")[0][0] == leader  # nobody else knows of it

    status, moves, err = promote(cluster, "half:0")
    assert status == 0, err
    assert moves[0]["leader_epoch"] == 2 and moves[0]["new_leader"] != leader
    for broker_id in replicas:
        saved = json.loads((cluster.data_dir(broker_id) / "half-0" / "partition-state").read_text())
        assert (saved["leader"], saved["leader_epoch"]) == (moves[0]["new_leader"], 2), broker_id


def test_a_forward_with_a_huge_timeout_is_capped_and_does_not_block_a_promote_relay(cluster):
    """CreateTopics through a non-controller while a replica is down and timeout_ms is 2^31-1:
    the controller waits at most MAX_TIMEOUT_MS (60 s), so the answer comes (REQUEST_TIMED_OUT,
    the topic exists). Meanwhile a promote's states reach the controller on their own link.
    Before the fix the forward waited ~24 days, and the relay, queued behind it on the one
    ordered link, timed out after 5 s and closed it, failing the forward as unreachable."""
    import threading
    import time

    create(cluster, "moved", partitions=1)
    cluster.brokers[3].kill()
    answers = []

    def forward() -> None:
        host, port = cluster.address(2).split(":")
        with Connection(host, int(port), timeout=85) as conn:
            started = time.monotonic()
            answers.append(conn.request(ApiKey.CREATE_TOPICS, {
                "topics": [{"name": "slow", "num_partitions": 1, "replication_factor": 3, "assignments": [],
                            "configs": []}], "timeout_ms": 2**31 - 1, "validate_only": False}))
            answers.append(time.monotonic() - started)

    thread = threading.Thread(target=forward)
    thread.start()
    try:
        time.sleep(1)  # let the forward reach the controller first (if not, the relay case is not exercised)
        status, moves, err = promote(cluster, "moved:0")
        assert status == 0, err
    finally:
        thread.join(90)
    assert len(answers) == 2, "the forwarded CreateTopics was not answered within 85 s"
    result, elapsed = answers[0]["topics"][0], answers[1]
    assert result["error_code"] == 7 and "did not confirm" in result["error_message"], result
    assert 55 < elapsed < 75


def test_forwards_beyond_the_byte_budget_are_refused_at_once_while_the_controller_is_stopped(cluster):
    """The controller is asleep (SIGSTOP): 12 CreateTopics of ~1 MiB each through broker 2.
    At most MAX_FORWARDED_BYTES (8 MiB) wait for it; the others are answered REQUEST_TIMED_OUT
    at once, saying so. Before the fix every one was held (and its bytes kept) until the link
    to the controller timed out."""
    import os
    import signal
    import threading
    import time

    names = [f"{'x' * 240}-{i:05d}" for i in range(4200)]  # ~1 MiB of topic names per request
    answers: list[tuple[float, dict]] = []

    def forward(n: int) -> None:
        host, port = cluster.address(2).split(":")
        with Connection(host, int(port), timeout=30) as conn:
            started = time.monotonic()
            body = {"topics": [{"name": f"{name}-{n}"[:249], "num_partitions": 1, "replication_factor": 3,
                                "assignments": [], "configs": []} for name in names],
                    "timeout_ms": 1000, "validate_only": False}
            answer = conn.request(ApiKey.CREATE_TOPICS, body)
            answers.append((time.monotonic() - started, answer["topics"][0]))

    os.kill(cluster.brokers[1].proc.pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=forward, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
    finally:
        os.kill(cluster.brokers[1].proc.pid, signal.SIGCONT)
    assert len(answers) == 12
    refused = [(elapsed, t) for elapsed, t in answers if "waiting for the controller" in (t["error_message"] or "")]
    assert 4 <= len(refused) <= 6, answers[:1]  # 8 MiB admits 6..8 of them
    assert all(t["error_code"] == 7 and elapsed < 5 for elapsed, t in refused)


def test_clients_learn_the_leader_epoch_so_a_deposed_leaders_view_is_ignored(cluster, tmp_path):
    """Metadata carries each partition's leader epoch (v7+), as Kafka's does: librdkafka and
    kafka-python keep the newest epoch they saw and ignore an answer with an older one, which a
    deposed leader gives until it hears of its successor (without epochs librdkafka could take
    the stale leader back and stay on it, refused with NOT_LEADER, for as long as it ran)."""
    import logging
    from confluent_kafka import Producer
    from kafka import KafkaProducer, TopicPartition

    create(cluster, "epochs", partitions=2)
    status, moves, err = promote(cluster, "epochs:0")
    assert status == 0 and moves[0]["leader_epoch"] == 1, err
    new_leader = moves[0]["new_leader"]

    log_path = tmp_path / "librdkafka.log"
    logger = logging.getLogger("librdkafka.epochs")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(logging.FileHandler(log_path))
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "debug": "metadata", "log_level": 7}, logger=logger)
    producer.produce("epochs", b"x", partition=0)
    assert producer.flush(30) == 0
    seen = log_path.read_text()
    assert f"Topic epochs [0] Leader {new_leader} Epoch 1" in seen, seen[-3000:]
    assert "Topic epochs [1] Leader" in seen and "Topic epochs [1] Leader -1" not in seen

    kafka = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    try:
        kafka.send("epochs", b"y", partition=0).get(timeout=30)
        assert kafka._metadata.leader_epoch_for_partition(TopicPartition("epochs", 0)) == 1
        assert kafka._metadata.leader_epoch_for_partition(TopicPartition("epochs", 1)) == 0
    finally:
        kafka.close(timeout=5)

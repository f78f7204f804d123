"""Issue #13's failure cases on a real cluster, under bounded acks=all loads whose
acknowledgements are logged (tests/acked_load.py) and checked against what is read back
afterwards (tests/ack_log.py), replicas compared byte for byte (tests/replica_compare.py):

* a leader killed -9, `logship promote --away-from` it, the broker restarted: ten times;
* a zombie leader (SIGSTOP, promote, SIGCONT) acknowledges nothing more and, once it
  follows, has its divergent tail truncated;
* the controller itself deposed as a leader (killed, or a zombie) follows when it is back;
* a deposed leader answers a produce waiting for acks=all at once (NOT_LEADER_OR_FOLLOWER);
* a follower cut off (its veth down, network namespaces only): acks=all times out with a
  clear error (what was written stays in the leader's log, unacknowledged, as in Kafka),
  `cluster remove` lets writes resume, `cluster add` and it catches up;
* a follower restarted after missing 200,000 records catches up, while a consumer racing
  the producer never sees a record above the high watermark.

Brokers run on loopback (tests/local_cluster.py), except the cut-off follower's, which
needs the SSH hosts of tests/sshhosts.py.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ack_log import Position, check, read_acks
from acked_load import AckedProducer, fully_replicated, read_back, running, topic_metadata, value
from cluster_probes import RacingConsumer, RawProduce
from conftest import wait_until
from local_cluster import LocalCluster, run_logship
from logship.broker_process import child_env
from logship.client.connection import Connection
from logship.protocol import ApiKey
from replica_compare import compare, log_bounds, partition_dirs
from sshhosts import SshHosts, kill_brokers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT = 6, 7


logship = run_logship


def create_topic(bootstrap: str, topic: str, partitions: int) -> dict:
    done = logship("topics", "create", topic, "--partitions", str(partitions), "--replication-factor", "3",
                   "--brokers", bootstrap)
    assert done.returncode == 0, done.stderr
    found = wait_until(lambda: fully_replicated(bootstrap, topic, partitions, 3), timeout=30, interval=0.2)
    assert found, f"{topic} not fully replicated within 30 s: {topic_metadata(bootstrap, topic)}"
    return found


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    return {p: m.leader for p, m in topic_metadata(bootstrap, topic).items()}


def states(cluster: LocalCluster, topic: str, partitions: int) -> str:
    """For failure messages: every replica's partition-state file and log end, and the
    leaders each broker's own Metadata answer names."""
    files = "; ".join(f"{topic}-{p} on {b}: " + (cluster.data_dir(b) / f"{topic}-{p}" / "partition-state").read_text().strip()
                      + f" log end {log_bounds(cluster.data_dir(b) / f'{topic}-{p}')[1]}"
                      for p in range(partitions) for b in cluster.ids
                      if (cluster.data_dir(b) / f"{topic}-{p}" / "partition-state").exists())
    views = []
    for broker in cluster.ids:
        try:
            with Connection(*cluster.address(broker).rsplit(":", 1), timeout=5) as conn:
                meta = conn.request(ApiKey.METADATA, {"topics": [{"name": topic}], "allow_auto_topic_creation": False})
            views.append(f"broker {broker} says leaders " + str({p["partition_index"]: p["leader_id"]
                                                                 for t in meta["topics"] for p in t["partitions"]}))
        except Exception as exc:  # noqa: BLE001 - a diagnostic: say what failed
            views.append(f"broker {broker}: {exc}")
    return files + "; " + "; ".join(views) + "; " + probe_leaders(cluster, topic, partitions)


def probe_leaders(cluster: LocalCluster, topic: str, partitions: int) -> str:
    """For failure messages: one acks=all produce straight to each partition's leader (as
    broker 1's Metadata names it), its answer and how long it took; tells a broker that
    does not acknowledge from a client that does not send."""
    found = []
    for partition, leader in leaders(cluster.bootstrap, topic).items():
        started = time.monotonic()
        try:
            code = RawProduce(cluster.address(leader), timeout_s=10).send(
                topic, partition, [value("diagnostic", partition)], timeout_ms=3000).error_code()
            found.append(f"produce to {topic}-{partition} on its leader {leader}: error {code} "
                         f"in {time.monotonic() - started:.1f} s")
        except Exception as exc:  # noqa: BLE001 - a diagnostic: say what failed
            found.append(f"produce to {topic}-{partition} on its leader {leader}: {exc}")
    return "; ".join(found)


def promote_away(file: Path, broker: int, *args: str) -> None:
    done = logship("promote", "--away-from", str(broker), "--cluster", str(file), *args)
    assert done.returncode == 0, f"promote --away-from {broker}: {done.stderr}"


def replica_dirs(data_dirs: dict[int, Path], topic: str, partition: int, leader: int) -> dict[int, Path]:
    """The partition's directories, the leader's first (the reference of a comparison)."""
    order = [leader] + [b for b in data_dirs if b != leader]
    return partition_dirs({b: data_dirs[b] for b in order}, topic, partition)


def wait_equal_logs(data_dirs: dict[int, Path], topic: str, partitions: int, leader_of: dict[int, int],
                    timeout: float = 60):
    """Wait until every replica of every partition has the leader's log end, then compare them
    byte for byte up to it; return the comparisons."""
    def caught_up():
        ends = [{b: log_bounds(d)[1] for b, d in replica_dirs(data_dirs, topic, p, leader_of[p]).items()}
                for p in range(partitions)]
        return all(len(set(e.values())) == 1 for e in ends)

    ends_reached = wait_until(caught_up, timeout=timeout, interval=0.2)
    results = [compare(replica_dirs(data_dirs, topic, p, leader_of[p]), upto=log_bounds(
        data_dirs[leader_of[p]] / f"{topic}-{p}")[1]) for p in range(partitions)]
    assert ends_reached, "replicas did not reach the leader's log end:\n" + "\n".join(r.report() for r in results)
    for result in results:
        assert result.equal, result.report()
    return results


def assert_nothing_lost(ack_paths: list[Path], consumed: list[Position], extra_acks: list[Position] = ()):
    verdict = check(list(read_acks(*ack_paths)) + list(extra_acks), consumed)
    assert not verdict.lost and not verdict.misplaced, verdict.summary()
    return verdict


@pytest.fixture
def cluster(tmp_path):
    made = LocalCluster(tmp_path / "cluster", 3)
    made.start_all()
    yield made
    for process in made.brokers.values():
        if process.proc is not None and process.proc.poll() is None:
            process.proc.send_signal(signal.SIGCONT)
    made.stop_all()
    for broker_id, process in made.brokers.items():  # shown by pytest when the test failed
        print(f"--- broker {broker_id}, last lines:\n" + "".join(process.stderr_lines[-30:]))


def _data_dirs(cluster: LocalCluster) -> dict[int, Path]:
    return {b: cluster.data_dir(b) for b in cluster.ids}


def acks_flow(producers: list[AckedProducer], partitions: int, more: int, timeout: float) -> bool:
    """Whether every producer gets `more` acknowledgements in every partition within `timeout`
    (one partition that stalls shows, even while the others go on)."""
    return all(p.wait_acked(p.acked_in[n] + more, timeout, partition=n) for p in producers for n in range(partitions))


def current_leaders(cluster: LocalCluster, topic: str) -> dict[int, int]:
    found = wait_until(lambda: (now := leaders(cluster.bootstrap, topic)) and -1 not in now.values() and now,
                       timeout=20)
    assert found, f"{topic} has a partition without a leader: {leaders(cluster.bootstrap, topic)}"
    return found


def non_controller_leader(cluster: LocalCluster, topic: str, round_: int) -> int:
    """A broker leading some partition of `topic`, not the controller (the lowest id), starting
    the search at partition `round_`; if the controller leads them all, one partition is first
    moved away from it with a plain `promote TOPIC:PARTITION` while it runs."""
    controller, now = min(cluster.ids), current_leaders(cluster, topic)
    order = [(round_ + i) % len(now) for i in range(len(now))]
    for partition in order:
        if now[partition] != controller:
            return now[partition]
    done = logship("promote", f"{topic}:{order[0]}", "--cluster", str(cluster.path))
    assert done.returncode == 0, done.stderr
    return next(b for b in [current_leaders(cluster, topic)[order[0]]] if b != controller)


def test_leader_killed_promoted_away_restarted_ten_times(cluster, tmp_path):
    """Ten rounds: kill -9 a leader, promote away from it, restart it; the victims are leaders
    other than the controller (test_controller_killed_as_leader_follows_when_back is the
    controller's own case)."""
    topic, partitions = "failover", 3
    create_topic(cluster.bootstrap, topic, partitions)
    producers = [AckedProducer(cluster.bootstrap, topic, tmp_path / f"acks-{n}", f"f{n}", 400_000, rate=2000,
                               message_timeout_s=90, client_log=tmp_path / f"librdkafka-{n}.log") for n in range(2)]
    victims = []
    started = time.monotonic()
    with running(*producers):
        for round_ in range(10):
            victim = non_controller_leader(cluster, topic, round_)
            assert acks_flow(producers, partitions, 100, 30), \
                f"round {round_}: no acks after killing {victims}: {states(cluster, topic, partitions)}"
            victims.append(victim)
            cluster.brokers[victim].proc.kill()
            cluster.brokers[victim].proc.wait(10)
            promote_away(cluster.path, victim)
            moved = wait_until(lambda: victim not in current_leaders(cluster, topic).values(), timeout=20)
            assert moved, f"round {round_}: still led by {victim}: {leaders(cluster.bootstrap, topic)}"
            cluster.start(victim)
            # producers carry on: acks flow again in every partition once the restarted broker follows
            assert acks_flow(producers, partitions, 100, 60), \
                f"round {round_}: acks stopped after broker {victim} came back: {states(cluster, topic, partitions)}" \
                f"\n{producers[0].client_log_tail(topic + ' [')}"
    loop_s = time.monotonic() - started
    assert all(not p.errors and p.unflushed == 0 for p in producers), [p.errors for p in producers]
    wait_equal_logs(_data_dirs(cluster), topic, partitions, current_leaders(cluster, topic))
    verdict = assert_nothing_lost([tmp_path / "acks-0", tmp_path / "acks-1"], read_back(cluster.bootstrap, topic))
    print(f"\n10 leader kills (brokers {victims}) in {loop_s:.1f} s: {verdict.summary()}")


def test_zombie_leader_acknowledges_nothing_and_is_truncated(cluster, tmp_path):
    """SIGSTOP a leader (not the controller: test_controller_as_zombie_leader_follows is that
    case), promote away from it, SIGCONT it: a produce it receives asleep or awake is never
    acknowledged, and once it follows, its log equals the new leader's."""
    topic, partitions = "zombie", 3
    create_topic(cluster.bootstrap, topic, partitions)
    producer = AckedProducer(cluster.bootstrap, topic, tmp_path / "acks", "z", 200_000, rate=3000,
                             message_timeout_s=90, config={"request.timeout.ms": 5000},
                             client_log=tmp_path / "librdkafka.log")
    with running(producer):
        assert producer.wait_acked(2000, 30)
        zombie = non_controller_leader(cluster, topic, 0)
        partition = next(p for p, b in current_leaders(cluster, topic).items() if b == zombie)
        zombie_process = cluster.brokers[zombie].proc
        probe = RawProduce(cluster.address(zombie))
        zombie_process.send_signal(signal.SIGSTOP)
        try:
            # written while it sleeps, before the promotion: it reads it as the leader it was
            probe.send(topic, partition, [value("probe", n) for n in range(50)])
            promote_away(cluster.path, zombie, "--timeout", "3s")
        finally:
            zombie_process.send_signal(signal.SIGCONT)
        probe_code = probe.error_code()
        assert probe_code != 0, "the deposed leader acknowledged an acks=all produce"
        after = RawProduce(cluster.address(zombie)).send(topic, partition, [value("late", 0)]).error_code()
        assert after != 0, "the deposed leader acknowledged an acks=all produce after it resumed"
        moved = wait_until(lambda: zombie not in current_leaders(cluster, topic).values(), timeout=20)
        assert moved, f"still led by {zombie}: {leaders(cluster.bootstrap, topic)}"
        assert acks_flow([producer], partitions, 500, 60), f"acks stopped after promotion: " \
            f"{states(cluster, topic, partitions)}\n{producer.client_log_tail(f'{topic} [{partition}]')}"
    assert not producer.errors and producer.unflushed == 0, \
        f"{producer.errors} in partitions {producer.failed_in} (zombie {zombie} led {partition}): " \
        f"{states(cluster, topic, partitions)}\n{producer.client_log_tail(f'{topic} [{partition}]')}"
    wait_equal_logs(_data_dirs(cluster), topic, partitions, current_leaders(cluster, topic))
    consumed = read_back(cluster.bootstrap, topic)
    assert not [c for c in consumed if c.payload.startswith(("probe-", "late-"))], "the zombie's writes survived"
    assert_nothing_lost([tmp_path / "acks"], consumed)
    print(f"\nzombie broker {zombie} answered {probe_code} and {after}")


def controller_led_partition(cluster: LocalCluster, topic: str) -> int:
    """A partition of `topic` the controller (the lowest id) leads, moving one to it with a
    plain `promote TOPIC:PARTITION` while everything runs if it leads none."""
    controller = min(cluster.ids)
    for _ in range(len(cluster.ids)):
        now = current_leaders(cluster, topic)
        led = [p for p, b in now.items() if b == controller]
        if led:
            return led[0]
        done = logship("promote", f"{topic}:0", "--cluster", str(cluster.path))
        assert done.returncode == 0, done.stderr
    raise AssertionError(f"the controller leads no partition of {topic}: {current_leaders(cluster, topic)}")


@pytest.mark.parametrize("failure", ["kill", "stop"])
def test_controller_deposed_as_leader_follows_when_back(cluster, tmp_path, failure):
    """The controller (lowest id) leads a partition; it is killed -9 (restarted later) or
    SIGSTOPped (SIGCONT later, a zombie) and promoted away from: once back it follows the new
    leader, acks=all flows in every partition again, and the replicas end equal."""
    topic, partitions = "controlled", 3
    create_topic(cluster.bootstrap, topic, partitions)
    controller = min(cluster.ids)
    partition = controller_led_partition(cluster, topic)
    producer = AckedProducer(cluster.bootstrap, topic, tmp_path / "acks", "k", 200_000, rate=3000,
                             message_timeout_s=60, config={"request.timeout.ms": 5000},
                             client_log=tmp_path / "librdkafka.log")
    with running(producer):
        assert acks_flow([producer], partitions, 300, 30)
        process = cluster.brokers[controller].proc
        if failure == "kill":
            process.kill()
            process.wait(10)
        else:
            process.send_signal(signal.SIGSTOP)
        try:
            promote_away(cluster.path, controller, "--timeout", "3s")
        finally:
            if failure == "kill":
                cluster.start(controller)
            else:
                process.send_signal(signal.SIGCONT)
        moved = wait_until(lambda: current_leaders(cluster, topic)[partition] != controller, timeout=20)
        assert moved, f"partition {partition} still led by the controller: {states(cluster, topic, partitions)}"
        assert acks_flow([producer], partitions, 300, 30), f"acks=all stalled once the controller was back: " \
            f"{states(cluster, topic, partitions)}\n{producer.client_log_tail(f'{topic} [{partition}]')}"
    assert not producer.errors and producer.unflushed == 0, producer.errors
    wait_equal_logs(_data_dirs(cluster), topic, partitions, current_leaders(cluster, topic))
    assert_nothing_lost([tmp_path / "acks"], read_back(cluster.bootstrap, topic))


def test_deposed_leader_answers_its_waiting_produce_at_once(cluster):
    """A produce waiting on a leader for acks=all (a follower is stopped, so the high
    watermark cannot pass it) when the leader is deposed is answered as soon as it learns it
    follows, NOT_LEADER_OR_FOLLOWER, as Kafka completes its delayed produces when a leader
    becomes a follower, not at the request's timeout."""
    topic = "held"
    create_topic(cluster.bootstrap, topic, 1)
    leader = non_controller_leader(cluster, topic, 0)
    controller = min(cluster.ids)
    stopped = next(b for b in cluster.ids if b not in (leader, controller))
    cluster.brokers[stopped].proc.send_signal(signal.SIGSTOP)
    try:
        probe = RawProduce(cluster.address(leader), timeout_s=60).send(topic, 0, [value("held", 0)], timeout_ms=45_000)
        assert wait_until(lambda: log_bounds(cluster.data_dir(controller) / f"{topic}-0")[1] == 1, timeout=10)
        cluster.brokers[leader].proc.send_signal(signal.SIGSTOP)
        cluster.brokers[stopped].proc.send_signal(signal.SIGCONT)
        promote_away(cluster.path, leader, "--timeout", "3s")
    finally:
        for broker in (stopped, leader):
            cluster.brokers[broker].proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    code = probe.error_code()
    waited = time.monotonic() - resumed
    assert code == NOT_LEADER_OR_FOLLOWER and waited < 5, \
        f"the deposed leader answered {code} {waited:.1f} s after it resumed: {states(cluster, topic, 1)}"
    assert wait_until(lambda: {log_bounds(cluster.data_dir(b) / f"{topic}-0")[1] for b in cluster.ids} == {1},
                      timeout=10), states(cluster, topic, 1)


def test_follower_restarted_after_missing_records_catches_up_below_the_watermark(cluster, tmp_path):
    topic, missed = "catchup", 200_000
    create_topic(cluster.bootstrap, topic, 1)
    data_dirs = _data_dirs(cluster)
    leader = leaders(cluster.bootstrap, topic)[0]
    follower = next(b for b in cluster.ids if b not in (leader, min(cluster.ids)))
    racer = RacingConsumer(cluster.bootstrap, topic, partition_dirs(data_dirs, topic, 0))
    racer.start()
    try:
        first = AckedProducer(cluster.bootstrap, topic, tmp_path / "acks-all", "a", 1000)
        first.run()
        assert first.acked == 1000 and not first.errors
        cluster.brokers[follower].proc.kill()
        cluster.brokers[follower].proc.wait(10)
        stalled_end = log_bounds(data_dirs[follower] / f"{topic}-0")[1]
        assert stalled_end >= 1000
        # acks=1: the leader answers; the high watermark waits for the dead follower
        missing = AckedProducer(cluster.bootstrap, topic, tmp_path / "acks-1", "m", missed, config={"acks": "1"})
        missing.run()
        assert missing.acked == missed and not missing.errors, missing.errors
        assert racer.max_offset < stalled_end, "a consumer read above the high watermark"
        assert log_bounds(data_dirs[leader] / f"{topic}-0")[1] == stalled_end + missed
        started = time.monotonic()
        cluster.start(follower)
        wait_equal_logs(data_dirs, topic, 1, {0: leader}, timeout=90)
        catch_up_s = time.monotonic() - started
        assert wait_until(lambda: racer.count >= 1000 + missed, timeout=60), racer.count
    finally:
        racer.stop()
        racer.join(30)
    assert not racer.violations, racer.violations[:5]
    consumed = racer.consumed
    verdict = assert_nothing_lost([tmp_path / "acks-all", tmp_path / "acks-1"], consumed)
    assert verdict.clean and verdict.consumed == 1000 + missed, verdict.summary()
    print(f"\nfollower restarted after missing {missed} records: caught up in {catch_up_s:.1f} s "
          f"(restart included); the racing consumer checked {racer.checks} times")


def link(namespace: str, device: str, state: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", device, state], check=True, timeout=10)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    made = SshHosts.start(tmp_path_factory.mktemp("sshhosts"))
    yield made
    made.close()


def test_follower_cut_off_times_out_then_removed_then_added_back(hosts, tmp_path):
    if hosts.hosts[0].namespace is None:
        pytest.skip("a link can only be cut between network namespaces")
    topic = "cut"
    data_dirs = {h.number: tmp_path / f"data{h.number}" for h in hosts.hosts}
    file = hosts.cluster_file(tmp_path / "cluster.toml", list(data_dirs.values()),
                              hosts.write_known_hosts(tmp_path / "known_hosts"))
    bootstrap = ",".join(f"{h.address}:9092" for h in hosts.hosts)
    switch = hosts.namespaces[0]
    try:
        up = logship("cluster", "up", str(file), timeout=90)
        assert up.returncode == 0, up.stderr
        create_topic(bootstrap, topic, 1)
        leader = leaders(bootstrap, topic)[0]
        follower = next(h for h in hosts.hosts if h.number not in (leader, 1))  # 1: the controller
        leader_address = f"{hosts.hosts[leader - 1].address}:9092"
        producer = AckedProducer(bootstrap, topic, tmp_path / "acks", "c", 200_000, rate=2000, message_timeout_s=90)
        try:
            with running(producer):
                assert producer.wait_acked(2000, 30)
                link(switch, follower.veth, "down")
                cut_end = log_bounds(data_dirs[follower.number] / f"{topic}-0")[1]
                assert RawProduce(leader_address).send(topic, 0, [value("cut", 0)], timeout_ms=2000).error_code() \
                    == REQUEST_TIMED_OUT
                cli = subprocess.run([sys.executable, "-m", "logship", "produce", topic, "-p", "0", "--acks", "all",
                                      "--timeout", "3", "--brokers", leader_address], input="cut-cli\n",
                                     capture_output=True, text=True, timeout=60, env=child_env())
                assert cli.returncode != 0 and "Traceback" not in cli.stderr, cli.stderr
                assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
                assert re.search(r"not delivered.*(within|timed out)", cli.stderr), cli.stderr
                stalled = producer.acked

                removed = logship("cluster", "remove", str(follower.number), "--cluster", str(file), timeout=120)
                # its host is cut off too: removed, said not fenced, exit status 3 (unreachable)
                assert removed.returncode == 3 and "removed but NOT fenced" in removed.stderr, removed.stderr
                assert producer.wait_acked(stalled + 2000, 60), f"writes did not resume after cluster remove: " \
                                                                f"{removed.stderr} {producer.errors}"

                link(switch, follower.veth, "up")
                added = logship("cluster", "add", str(follower.number), "--cluster", str(file), timeout=120)
                assert added.returncode == 0, added.stderr
                isr = wait_until(lambda: fully_replicated(bootstrap, topic, 1, 3), timeout=60, interval=0.2)
                assert isr, f"the follower did not rejoin the in-sync replicas: {topic_metadata(bootstrap, topic)}"
                assert producer.wait_acked(producer.acked + 2000, 60)
        finally:
            link(switch, follower.veth, "up")
        assert not producer.errors and producer.unflushed == 0, producer.errors
        results = wait_equal_logs(data_dirs, topic, 1, {0: leaders(bootstrap, topic)[0]})
        assert results[0].upto > cut_end
        assert_nothing_lost([tmp_path / "acks"], read_back(bootstrap, topic))
        assert logship("cluster", "down", str(file)).returncode == 0
    finally:
        kill_brokers(list(data_dirs.values()))

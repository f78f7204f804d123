"""The replication data path on real brokers (LocalCluster, roles set by tests/cluster_control.py):
followers copy the leader's batches byte for byte and catch up after a crash, acks=all waits
for every in-sync replica (and times out while one is stopped), consumers never read above
the high watermark, a divergent follower truncates by leader epoch, and replica fetches need
the cluster secret."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from logship.protocol import ApiKey

from cluster_control import ClusterControl
from conftest import wait_until
from kafka_clients import consume, dataset, produce
from local_cluster import LocalCluster, started
from test_replication_control import produce_once, raw_request

pytestmark = pytest.mark.integration

TOPIC = "logs"
REQUEST_TIMED_OUT = 7
CLUSTER_AUTHORIZATION_FAILED = 31


def log_bytes(cluster: LocalCluster, broker_id: int, topic: str = TOPIC, partition: int = 0) -> bytes:
    """Every batch of one replica, oldest first: its segment files' contents concatenated."""
    directory = cluster.data_dir(broker_id) / f"{topic}-{partition}"
    return b"".join(path.read_bytes() for path in sorted(directory.glob("*.log")))


def all_equal(cluster: LocalCluster, control: ClusterControl, ids, topic: str = TOPIC) -> bool:
    ends = {control.log_end(topic, 0, broker_id) for broker_id in ids}
    if len(ends) != 1:
        return False
    contents = {log_bytes(cluster, broker_id, topic) for broker_id in ids}
    return len(contents) == 1


def latest_offset(address: str, topic: str = TOPIC) -> int:
    body = {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]}
    answer = raw_request(address, ApiKey.LIST_OFFSETS, 4, body)["topics"][0]["partitions"][0]
    assert answer["error_code"] == 0, answer
    return answer["offset"]


def kcat_count(address: str, topic: str = TOPIC) -> int:
    """How many records a consumer reading to the end (-e) sees now."""
    out = subprocess.run(["kcat", "-C", "-b", address, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o\n"],
                         capture_output=True, check=True, timeout=60).stdout
    return len(out.splitlines())


@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path, no_tracebacks=True) as made:
        yield made


@pytest.fixture
def control(cluster):
    control = ClusterControl(cluster)
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3])
    return control


def test_rf3_acks_all_replicas_equal_byte_for_byte(cluster, control):
    messages = dataset("rf3", 3000)
    produce("kcat", cluster.address(1), TOPIC, messages[:1500])  # librdkafka's default: acks=all
    produce("confluent", cluster.address(1), TOPIC, messages[1500:], compression="lz4")
    # acks=all answered: every in-sync replica already holds everything below the high watermark
    leader_end = control.log_end(TOPIC, 0, 1)[0]
    assert leader_end == latest_offset(cluster.address(1)) == 3000
    for broker_id in (2, 3):
        assert control.log_end(TOPIC, 0, broker_id) == (3000, 1)
    assert log_bytes(cluster, 1) == log_bytes(cluster, 2) == log_bytes(cluster, 3)
    assert len(log_bytes(cluster, 1)) > 3000 * 40
    got = consume("confluent", cluster.address(1), TOPIC, 3000)
    assert [c.value for c in got] == [m.value for m in messages]


def test_follower_killed_catches_up_byte_for_byte(cluster, control):
    produce("kcat", cluster.address(1), TOPIC, dataset("a", 500))
    cluster.brokers[3].kill()
    # out of the ISR (as `cluster remove` would do), so acks=all goes on without it
    control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3], isr=[1, 2], to=[1, 2])
    produce("confluent", cluster.address(1), TOPIC, dataset("b", 2000))
    cluster.start(3)
    assert wait_until(lambda: all_equal(cluster, control, (1, 2, 3)), timeout=30)
    assert control.log_end(TOPIC, 0, 3) == (2500, 1)


def test_stopped_follower_times_out_acks_all_and_holds_the_high_watermark(cluster, control):
    assert produce_once(cluster.address(1), TOPIC)["error_code"] == 0
    follower = cluster.brokers[3].proc
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = produce_once(cluster.address(1), TOPIC, timeout_ms=800, version=8)
        assert answer["error_code"] == REQUEST_TIMED_OUT
        assert answer["error_message"] == ("logs-0: not replicated to every in-sync replica within 800 ms "
                                           "(lagging: broker 3)")
        assert 0.7 < time.monotonic() - started < 10
        assert "Traceback" not in cluster.brokers[1].log()
        # acks=1 is taken, but consumers see nothing above the high watermark
        for _ in range(5):
            assert produce_once(cluster.address(1), TOPIC, acks=1)["error_code"] == 0
        assert control.log_end(TOPIC, 0, 1)[0] == 7
        assert latest_offset(cluster.address(1)) == 1
        assert kcat_count(cluster.address(1)) == 1
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": cluster.address(1), "request.timeout.ms": 1000,
                             "message.timeout.ms": 3000, "retries": 0})
        failures = []
        producer.produce(TOPIC, b"late", partition=0, on_delivery=lambda err, msg: failures.append(err))
        producer.flush(20)
        assert failures and failures[0] is not None and "timed out" in str(failures[0]).lower(), failures
    finally:
        os.kill(follower.pid, signal.SIGCONT)
    assert wait_until(lambda: latest_offset(cluster.address(1)) == control.log_end(TOPIC, 0, 1)[0], timeout=20)
    assert produce_once(cluster.address(1), TOPIC, timeout_ms=10000)["error_code"] == 0
    assert kcat_count(cluster.address(1)) == control.log_end(TOPIC, 0, 1)[0]
    assert wait_until(lambda: all_equal(cluster, control, (1, 2, 3)), timeout=20)


def test_consumer_racing_the_producer_never_sees_above_the_high_watermark(cluster, control):
    """A consumer polling while acks=1 records arrive: every offset it is handed is below the
    high watermark the leader reported at that moment, and it ends with all of them."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": cluster.address(1), "group.id": "race",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    follower = cluster.brokers[2].proc
    producer = subprocess.Popen(["kcat", "-P", "-b", cluster.address(1), "-t", TOPIC, "-X", "acks=1",
                                 "-X", "linger.ms=1"], stdin=subprocess.PIPE)
    try:
        seen = []
        for round_ in range(6):
            producer.stdin.write(b"".join(b"r%d-%d\n" % (round_, i) for i in range(200)))
            producer.stdin.flush()
            if round_ == 2:
                os.kill(follower.pid, signal.SIGSTOP)  # the high watermark stops here for a while
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                for message in consumer.consume(100, timeout=0.1):
                    if message.error() is None:
                        seen.append(message.offset())
                # the high watermark never goes back: what was handed out must be below it now
                assert not seen or seen[-1] < latest_offset(cluster.address(1))
            if round_ == 3:
                stalled_at = latest_offset(cluster.address(1))
                assert len(seen) <= stalled_at < control.log_end(TOPIC, 0, 1)[0]
                os.kill(follower.pid, signal.SIGCONT)
        producer.stdin.close()
        assert producer.wait(30) == 0
        end = control.log_end(TOPIC, 0, 1)[0]
        assert end == 1200
        deadline = time.monotonic() + 20
        while len(seen) < end and time.monotonic() < deadline:
            seen.extend(m.offset() for m in consumer.consume(500, timeout=0.2) if m.error() is None)
        assert seen == list(range(end))
    finally:
        os.kill(follower.pid, signal.SIGCONT)
        consumer.close()
        if producer.poll() is None:
            producer.kill()


def test_divergent_follower_truncates_by_epoch(cluster, control):
    produce("kcat", cluster.address(1), TOPIC, dataset("common", 100))
    cluster.brokers[2].kill()
    cluster.brokers[3].kill()
    for _ in range(5):  # an unreplicated tail on the old leader
        assert produce_once(cluster.address(1), TOPIC, acks=1)["error_code"] == 0
    assert control.log_end(TOPIC, 0, 1) == (105, 1)
    cluster.brokers[1].kill()
    cluster.start(2)
    cluster.start(3)
    version = 1000
    for broker_id in (2, 3):  # broker 2 leads in epoch 2; broker 1 is out of the ISR
        control.leader_and_isr(broker_id, TOPIC, 0, leader=2, epoch=2, replicas=[1, 2, 3], isr=[2, 3],
                               version=version)
    produce("kcat", cluster.address(2), TOPIC, dataset("new", 20))
    assert control.log_end(TOPIC, 0, 2) == (120, 2)
    cluster.start(1)
    control.leader_and_isr(1, TOPIC, 0, leader=2, epoch=2, replicas=[1, 2, 3], isr=[2, 3], version=version)
    assert wait_until(lambda: all_equal(cluster, control, (1, 2, 3)), timeout=30)
    assert "diverged from leader broker 2 at epoch 1; truncating to 100" in cluster.brokers[1].log()
    values = [c.value for c in consume("kcat", cluster.address(2), TOPIC, 120)]
    assert b"hello" not in values and len(values) == 120


def test_replica_fetch_needs_the_secret(cluster, control):
    body = {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
            "session_id": 0, "session_epoch": -1, "topics": [{"topic": TOPIC, "partitions": [
                {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0, "log_start_offset": -1,
                 "partition_max_bytes": 1 << 20}]}], "forgotten_topics_data": [], "rack_id": ""}
    answer = raw_request(cluster.address(1), ApiKey.FETCH, 10, body)
    assert answer["error_code"] == CLUSTER_AUTHORIZATION_FAILED
    assert answer["responses"][0]["partitions"][0]["error_code"] == CLUSTER_AUTHORIZATION_FAILED
    # authenticated, but not as the broker it claims to be
    admin = control.request(1, ApiKey.FETCH, 12, dict(body, replica_id=2))
    assert admin["error_code"] == CLUSTER_AUTHORIZATION_FAILED


def test_shrinking_the_isr_releases_a_waiting_acks_all(cluster, control):
    from concurrent.futures import ThreadPoolExecutor

    assert produce_once(cluster.address(1), TOPIC)["error_code"] == 0
    follower = cluster.brokers[3].proc
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(produce_once, cluster.address(1), TOPIC, timeout_ms=20000)
            time.sleep(0.5)
            assert not waiting.done()  # held: broker 3 is in the ISR and cannot fetch
            started = time.monotonic()
            control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2, 3], isr=[1, 2], to=[1, 2])
            assert waiting.result(timeout=10)["error_code"] == 0
            assert time.monotonic() - started < 5
    finally:
        os.kill(follower.pid, signal.SIGCONT)
    assert latest_offset(cluster.address(1)) == 2

"""A follower catching up a backlog (replication/fetcher.py's pipelined fetches: the next fetch
goes out while the last append syncs, reporting only what is durable) killed with SIGKILL in
the middle: what it holds is a prefix of the leader's log, byte for byte; the leader's high
watermark never passed it beyond where it stood when the follower rejoined the in-sync replicas; restarted, it catches up to the leader's bytes, and no record an
acks=all producer had acknowledged meanwhile is lost."""

from __future__ import annotations

import os
import signal

import pytest

from ack_log import check, read_acks
from acked_load import AckedProducer, kcat_produce, read_back, running
from cluster_control import ClusterControl
from conftest import wait_until
from local_cluster import started
from replica_compare import compare, log_bounds, partition_dirs
from test_replication_data import latest_offset, log_bytes

pytestmark = pytest.mark.integration

TOPIC = "backlog"
BACKLOG = 400_000  # records of 200 bytes: ~90 MB of batches, several fetches of the follower


def test_follower_killed_mid_catch_up_holds_a_prefix_and_loses_no_acknowledged_record(tmp_path):
    with started(tmp_path / "cluster", 2, no_tracebacks=False) as cluster:
        control = ClusterControl(cluster)
        control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2], isr=[1])
        follower = cluster.brokers[2].proc
        os.kill(follower.pid, signal.SIGSTOP)  # misses the backlog
        try:
            backlog = kcat_produce(cluster.address(1), TOPIC, "b", BACKLOG, size=200)
            backlog_end = control.log_end(TOPIC, 0, 1)[0]  # the high watermark too (in-sync: the leader alone)
            # back in the in-sync replicas (told to the leader only: the follower is stopped), so
            # acks=all and the high watermark wait for what it reports durable while it catches up
            control.lead(TOPIC, 0, leader=1, epoch=1, replicas=[1, 2], isr=[1, 2], to=[1])
        finally:
            os.kill(follower.pid, signal.SIGCONT)
        producer = AckedProducer(cluster.address(1), TOPIC, tmp_path / "acks", "a", 2000, rate=500,
                                 message_timeout_s=90, size=200)
        with running(producer):
            assert wait_until(lambda: control.log_end(TOPIC, 0, 2)[0] > 0, timeout=60, interval=0.002)
            cluster.brokers[2].kill()
            high_watermark = latest_offset(cluster.address(1), TOPIC)
            held, whole = log_bytes(cluster, 2, TOPIC), log_bytes(cluster, 1, TOPIC)
            held_end = log_bounds(cluster.data_dir(2) / f"{TOPIC}-0")[1]
            assert 0 < len(held) < len(whole), "the follower was not killed in the middle of its catch-up"
            assert whole.startswith(held), "the killed follower's log is not a prefix of the leader's"
            # what was acknowledged after the follower rejoined counted on what it reported durable
            assert high_watermark <= max(backlog_end, held_end), (high_watermark, backlog_end, held_end)
            cluster.start(2)
            assert producer.wait_acked(producer.count, timeout=120)
            assert wait_until(lambda: control.log_end(TOPIC, 0, 2) == control.log_end(TOPIC, 0, 1), timeout=60)
        result = compare(partition_dirs({1: cluster.data_dir(1), 2: cluster.data_dir(2)}, TOPIC, 0),
                         upto=control.log_end(TOPIC, 0, 1)[0])
        assert result.equal, result.report()
        verdict = check(list(read_acks(tmp_path / "acks")) + backlog, read_back(cluster.address(1), TOPIC))
        assert verdict.clean, verdict.summary()
        for broker_id in (1, 2):
            assert "Traceback" not in cluster.brokers[broker_id].log(), cluster.brokers[broker_id].log()

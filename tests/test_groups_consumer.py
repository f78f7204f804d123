"""GroupConsumer as a library against a real broker: several topics, two members in threads,
the roundrobin assignor, and commit() refusing positions it must not commit."""

from __future__ import annotations

import threading

import pytest

from conftest import wait_until
from test_cli_produce import logship
from test_groups_cli import BROKER_ARGS, keyed_lines, produce

from logship.client.cluster import Cluster
from logship.client.group_consumer import GroupConsumer
from logship.client.groups_admin import committed_offsets, describe_group

pytestmark = pytest.mark.integration


def test_one_member_reads_two_topics_from_their_committed_offsets(start_broker):
    broker = start_broker(*BROKER_ARGS)
    for topic, count in (("left", 2), ("right", 3)):
        assert logship("topics", "create", topic, "-p", str(count), "-b", broker.address).returncode == 0
        produce(broker.address, topic, keyed_lines(500, topic))
    with Cluster(broker.address) as cluster:
        with GroupConsumer(cluster, "two", ["left", "right"], stop_at_end=True, session_timeout_ms=6000) as consumer:
            values = []
            while not consumer.finished:
                chunks = consumer.poll_chunks(1.0)
                values += [v for chunk in chunks for v in chunk.values]
            assert consumer.assignment == {"left": [0, 1], "right": [0, 1, 2]}
            # half of what was read, for two partitions: later positions are what counts
            positions = consumer.positions()
            assert consumer.commit({tp: o // 2 for tp, o in positions.items() if tp[1] == 0})
            assert consumer.commit({("left", 9): 5, ("gone", 0): 1})  # not owned: ignored
            assert consumer.commit({("left", 1): positions[("left", 1)] + 1000})  # beyond what was read: ignored
        assert sorted(values) == sorted([b"left-%d" % i for i in range(500)] + [b"right-%d" % i for i in range(500)])
        found = committed_offsets(cluster, "two")
        assert found == {tp: o // 2 for tp, o in positions.items() if tp[1] == 0}
        with GroupConsumer(cluster, "two", ["left", "right"], stop_at_end=True) as again:
            reread = [v for v in (r.value for r in again)]
        # partitions 0 from their commits, the others (nothing committed) from the beginning
        assert len(reread) == sum(o - (o // 2 if p == 0 else 0) for (_, p), o in positions.items())


def test_two_members_in_threads_split_two_topics_round_robin(start_broker):
    broker = start_broker(*BROKER_ARGS)
    for topic in ("rr-a", "rr-b"):
        assert logship("topics", "create", topic, "-p", "3", "-b", broker.address).returncode == 0
        produce(broker.address, topic, keyed_lines(300, topic))
    assignments, values, stop = {}, [], threading.Event()

    def run(name):
        with GroupConsumer(broker.address, "rr", ["rr-a", "rr-b"], assignors=("roundrobin",),
                           session_timeout_ms=6000, heartbeat_interval_ms=300) as consumer:
            while not stop.is_set():
                values.extend(r.value for r in consumer.poll(0.2))
                assignments[name] = consumer.assignment
                consumer.commit()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in ("one", "two")]
    for thread in threads:
        thread.start()
    try:
        with Cluster(broker.address) as cluster:
            assert wait_until(lambda: describe_group(cluster, "rr").state == "Stable"
                              and len(describe_group(cluster, "rr").members) == 2, timeout=30)
            assert describe_group(cluster, "rr").protocol == "roundrobin"
        assert wait_until(lambda: len(values) >= 600 and len(assignments) == 2
                          and sum(len(p) for a in assignments.values() for p in a.values()) == 6, timeout=30)
        owned = sorted((t, p) for a in assignments.values() for t, ps in a.items() for p in ps)
        assert owned == [(t, p) for t in ("rr-a", "rr-b") for p in range(3)]
        assert all(sum(map(len, a.values())) == 3 for a in assignments.values())
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert sorted(set(values)) == sorted([b"rr-a-%d" % i for i in range(300)] + [b"rr-b-%d" % i for i in range(300)])

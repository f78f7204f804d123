"""`logship consume -g` in one group with confluent-kafka, kafka-python and kcat -G: they
split a topic, and each reads the offsets the others committed."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import wait_until
from test_cli_produce import logship
from test_groups_cli import BROKER_ARGS, Member, committed, keyed_lines, produce, stable_members
from test_groups_clients import ConfluentMember, KafkaPythonMember, committed_confluent

pytestmark = pytest.mark.integration


def test_logship_confluent_and_kafka_python_share_a_group_and_kcat_continues(start_broker, tmp_path):
    from kafka import KafkaConsumer, TopicPartition

    broker = start_broker(*BROKER_ARGS)
    address = broker.address
    assert logship("topics", "create", "mix", "-p", "3", "-b", address).returncode == 0
    ours = Member(tmp_path, address, "mix", "mx", name="logship")
    assert wait_until(lambda: stable_members(address, "mx", 1), timeout=30)  # logship leads: it assigns
    python_member = KafkaPythonMember(address, "mx", "mix")
    confluent_member = ConfluentMember(address, "mx", "mix")
    python_member.start()
    assert wait_until(lambda: stable_members(address, "mx", 2), timeout=30)
    confluent_member.start()
    try:
        split = wait_until(lambda: stable_members(address, "mx", 3), timeout=40)
        assert split and sorted(map(len, split.values())) == [1, 1, 1], split
        assert wait_until(lambda: len(python_member.assignment) == 1 and len(confluent_member.assignment) == 1,
                          timeout=20)
        described = json.loads(logship("groups", "describe", "mx", "-b", address, "--json").stdout)
        assert described["protocol"] == "range" and len(described["members"]) == 3
        produce(address, "mix", keyed_lines(900))
        assert wait_until(lambda: len(ours.records()) + len(python_member.received) + len(confluent_member.received)
                          >= 900, timeout=30)
        [our_partition] = split[ours.client_id]
        assert {p for p, _, _ in ours.records()} == {our_partition}
        assert {p for p, _, _ in python_member.received} == set(python_member.assignment)
        assert {p for p, _, _ in confluent_member.received} == set(confluent_member.assignment)
    finally:
        assert ours.stop() == 0, ours.stderr()
        python_member.finish()
        confluent_member.finish()
    values = [v for _, _, v in ours.records()] + [v for _, _, v in python_member.received + confluent_member.received]
    assert sorted(values) == sorted(b"r-%d" % i for i in range(900))
    # every client's commits, as logship shows them and as the others read them
    ends = {row["partition"]: row["log_end_offset"] for row in
            json.loads(logship("groups", "describe", "mx", "-b", address, "--json").stdout)["partitions"]}
    assert committed(address, "mx") == ends and sum(ends.values()) == 900
    assert committed_confluent(address, "mx", "mix", 3) == ends
    reader = KafkaConsumer(bootstrap_servers=address, group_id="mx", enable_auto_commit=False)
    try:
        assert {p: reader.committed(TopicPartition("mix", p)) for p in range(3)} == ends
    finally:
        reader.close()
    # kcat -G continues from those commits and commits in turn; logship continues after kcat
    produce(address, "mix", keyed_lines(90, "late"))
    out = subprocess.run(["kcat", "-b", address, "-G", "mx", "-c", "90", "-f", "%s\n", "mix"], capture_output=True,
                         timeout=60, check=True).stdout
    assert sorted(out.splitlines()) == sorted(b"late-%d" % i for i in range(90))
    assert wait_until(lambda: sum(committed(address, "mx").values()) == 990, timeout=15)
    time.sleep(0.5)
    assert json.loads(logship("groups", "describe", "mx", "-b", address, "--json").stdout)["total_lag"] == 0
    rest = logship("consume", "mix", "-g", "mx", "-b", address, "-e")
    assert rest.returncode == 0 and rest.stdout == b"", rest.stderr


def test_logship_follows_an_assignment_made_by_a_confluent_leader(start_broker, tmp_path):
    broker = start_broker(*BROKER_ARGS)
    address = broker.address
    assert logship("topics", "create", "led", "-p", "4", "-b", address).returncode == 0
    leader = ConfluentMember(address, "lg", "led", **{"partition.assignment.strategy": "roundrobin"})
    leader.start()
    try:
        assert wait_until(lambda: stable_members(address, "lg", 1), timeout=30)
        ours = Member(tmp_path, address, "led", "lg", name="follower")
        split = wait_until(lambda: stable_members(address, "lg", 2), timeout=30)
        assert split and sorted(split[ours.client_id] + leader.assignment) == [0, 1, 2, 3], split
        assert split[ours.client_id] in ([0, 2], [1, 3])  # roundrobin, as the leader chose
        produce(address, "led", keyed_lines(400))
        assert wait_until(lambda: len(ours.records()) + len(leader.received) >= 400, timeout=30)
        assert {p for p, _, _ in ours.records()} == set(split[ours.client_id])
        assert ours.stop() == 0
    finally:
        leader.finish()
    assert sorted([v for _, _, v in ours.records()] + [v for _, _, v in leader.received]) == \
        sorted(b"r-%d" % i for i in range(400))

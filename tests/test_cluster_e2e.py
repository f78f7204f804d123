"""Issue #13, end to end, as a user runs it: three sshd "hosts" (tests/sshhosts.py: network
namespaces, else 127.0.0.11-13), `logship cluster up FILE` through the CLI, a topic of six
partitions with three replicas each, one million records produced with acks=all by kcat and
confluent-kafka and read back by both, every replica's batches byte-identical up to the high
watermark, and `cluster down` leaving no process behind.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ack_log import check, read_acks
from acked_load import (AckedProducer, fully_replicated, kcat_produce, read_back, read_back_confluent,
                        topic_metadata)
from conftest import wait_until
from replica_compare import compare, partition_dirs
from sshhosts import LOCAL_LOGSHIP, SshHosts, kill_brokers, serve_processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(280)]

TOPIC = "e2e"
KCAT_RECORDS = 400_000
CONFLUENT_RECORDS = 600_000


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    made = SshHosts.start(tmp_path_factory.mktemp("sshhosts"))
    yield made
    made.close()


def logship(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([LOCAL_LOGSHIP, *args], capture_output=True, text=True, timeout=timeout)


def status(file: Path) -> list[dict]:
    done = logship("cluster", "status", str(file), "--json")
    return [json.loads(line) for line in done.stdout.splitlines()]


def host_processes(hosts: SshHosts) -> dict[int, list[str]]:
    """Command lines of every process in each host's namespace but its sshd (netns only)."""
    found = {}
    for host in hosts.hosts:
        pids = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True,
                              timeout=10).stdout.split()
        lines = []
        for pid in pids:
            if int(pid) == host.sshd.pid:
                continue
            try:
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                continue
        found[host.number] = [line for line in lines if line]
    return found


def test_a_million_records_replicated_three_times(hosts, tmp_path):
    data_dirs = {h.number: tmp_path / f"data{h.number}" for h in hosts.hosts}
    known_hosts = hosts.write_known_hosts(tmp_path / "known_hosts")
    file = hosts.cluster_file(tmp_path / "cluster.toml", list(data_dirs.values()), known_hosts)
    bootstrap = ",".join(f"{h.address}:9092" for h in hosts.hosts)
    try:
        up = logship("cluster", "up", str(file))
        assert up.returncode == 0, up.stderr
        rows = status(file)
        assert [(r["broker"], r["state"]) for r in rows] == [(1, "up"), (2, "up"), (3, "up")], rows

        create = logship("topics", "create", TOPIC, "--partitions", "6", "--replication-factor", "3",
                         "--brokers", bootstrap)
        assert create.returncode == 0, create.stderr
        partitions = wait_until(lambda: fully_replicated(bootstrap, TOPIC, 6, 3), timeout=30, interval=0.2)
        assert partitions, f"not fully replicated within 30 s: {topic_metadata(bootstrap, TOPIC)}"
        leaders = {p: m.leader for p, m in partitions.items()}
        assert sorted(leaders.values()) == [1, 1, 2, 2, 3, 3], leaders
        assert all(sorted(m.replicas) == [1, 2, 3] for m in partitions.values())
        shares = {r["broker"]: (r["partitions_led"], r["partitions_followed"]) for r in status(file)}
        assert shares == {1: (2, 4), 2: (2, 4), 3: (2, 4)}

        started = time.monotonic()
        producer = AckedProducer(bootstrap, TOPIC, tmp_path / "acks-confluent", "c", CONFLUENT_RECORDS)
        producer.start()
        kcat_acks: list = []
        kcat = threading.Thread(target=lambda: kcat_acks.extend(kcat_produce(bootstrap, TOPIC, "k", KCAT_RECORDS,
                                                                             timeout=150)))
        kcat.start()
        kcat.join(160)
        producer.join(160)
        produce_s = time.monotonic() - started
        assert not producer.is_alive() and not kcat.is_alive()
        assert len(kcat_acks) == KCAT_RECORDS, "kcat did not finish"
        assert producer.acked == CONFLUENT_RECORDS and not producer.errors and producer.unflushed == 0, \
            (producer.acked, producer.errors)

        started = time.monotonic()
        consumed = read_back(bootstrap, TOPIC)
        verdict = check(list(read_acks(tmp_path / "acks-confluent")) + kcat_acks, consumed)
        assert verdict.clean, verdict.summary()
        assert (verdict.acked, verdict.consumed, verdict.unacknowledged) == (1_000_000, 1_000_000, 0)
        by_confluent = read_back_confluent(bootstrap, TOPIC, 1_000_000)
        assert sorted(by_confluent) == sorted(consumed)
        consume_s = time.monotonic() - started

        ends = {}
        for partition, meta in sorted(partitions.items()):
            order = [meta.leader] + [b for b in (1, 2, 3) if b != meta.leader]
            result = compare(partition_dirs({b: data_dirs[b] for b in order}, TOPIC, partition))
            assert result.equal, result.report()
            ends[partition] = result.upto
            assert result.upto == 1 + max(c.offset for c in consumed if c.partition == partition)
        assert sum(ends.values()) == 1_000_000
        print(f"\n1,000,000 records acks=all RF3 over {bootstrap}: produced in {produce_s:.1f} s, "
              f"read back twice in {consume_s:.1f} s; per-partition ends {ends}")

        down = logship("cluster", "down", str(file))
        assert down.returncode == 0, down.stderr
        for data_dir in data_dirs.values():
            assert serve_processes(data_dir) == []
        if hosts.hosts[0].namespace:  # nothing but sshd left in any host (SSH sessions end too)
            leftover = wait_until(lambda: not any(host_processes(hosts).values()), timeout=10)
            assert leftover, host_processes(hosts)
    finally:
        kill_brokers(list(data_dirs.values()))


"""Failover time in the static mode, on a 3-broker cluster on loopback (tests/local_cluster.py):

    python bench/promote.py [--runs 10] [--partitions 6]

A confluent-kafka producer (acks=all, retries) writes one record every 2 ms round the
partitions of a replication-factor-3 topic. Each run SIGKILLs the broker leading partition
0, then at once runs what an operator's script would: `logship promote --away-from B` and
`logship cluster remove B` (acks=all waits for every in-sync replica, so writes resume only
once the dead one is out). Printed per run: seconds from the kill until promote returned,
until remove returned, and until every partition had acknowledged a record sent after the
kill; then the median and worst of the last figure. Between runs the broker is restarted,
`cluster add`ed and given time to catch up. No sshd here: `cluster remove` cannot write the
fence and says so (exit 3), which costs it its SSH connect attempt.

Brokers and data are throw-away (a temporary directory). Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from logship.broker_process import child_env  # noqa: E402
from logship.client.connection import Connection  # noqa: E402
from logship.protocol import ApiKey  # noqa: E402

from local_cluster import LocalCluster  # noqa: E402

TOPIC = "failover"


def logship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", *args], capture_output=True, text=True, timeout=120,
                          env=child_env())


def partitions_of(cluster: LocalCluster, broker_id: int) -> dict[int, tuple[int, tuple]]:
    host, port = cluster.address(broker_id).split(":")
    with Connection(host, int(port)) as conn:
        meta = conn.request(ApiKey.METADATA, {"topics": [{"name": TOPIC}], "allow_auto_topic_creation": False})
    return {p["partition_index"]: (p["leader_id"], tuple(p["isr_nodes"])) for p in meta["topics"][0]["partitions"]}


class Load:
    """Records sent round the partitions; the last acknowledgement time of each partition."""

    def __init__(self, bootstrap: str, partitions: int):
        from confluent_kafka import Producer

        self.partitions = partitions
        self.acked: dict[int, float] = {}
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                                   "message.timeout.ms": 120_000, "request.timeout.ms": 2_000,
                                   "topic.metadata.refresh.interval.ms": 500, "retry.backoff.ms": 50,
                                   "log_level": 0})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _delivered(self, err, msg) -> None:
        if err is None:
            self.acked[msg.partition()] = time.monotonic()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self._producer.produce(TOPIC, b"record %d" % n, partition=n % self.partitions,
                                   on_delivery=self._delivered)
            self._producer.poll(0.002)
            n += 1
        self._producer.flush(30)

    def all_acked_after(self, moment: float, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            times = [self.acked.get(p, 0.0) for p in range(self.partitions)]
            if min(times) > moment:
                return max(times)
            time.sleep(0.005)
        raise SystemExit(f"acknowledgements did not resume within {timeout:g} s")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logship-bench-promote-") as tmp:
        cluster = LocalCluster(Path(tmp), 3)
        cluster.start_all()
        load = None
        try:
            done = logship("topics", "create", TOPIC, "-p", str(args.partitions), "-r", "3", "--brokers",
                           cluster.bootstrap)
            assert done.returncode == 0, done.stderr
            load = Load(cluster.bootstrap, args.partitions)
            load.all_acked_after(time.monotonic())
            resumed = []
            for run in range(1, args.runs + 1):
                victim = partitions_of(cluster, 2 if run % 3 == 1 else 1)[0][0]
                cluster.brokers[victim].kill()
                killed = time.monotonic()
                promoted = logship("promote", "--away-from", str(victim), "--cluster", str(cluster.path),
                                   "--timeout", "2s")
                assert promoted.returncode == 0, promoted.stderr
                promote_s = time.monotonic() - killed
                removed = logship("cluster", "remove", str(victim), str(cluster.path), "--timeout", "2s")
                assert removed.returncode in (0, 3), removed.stderr
                remove_s = time.monotonic() - killed
                resumed.append(load.all_acked_after(killed) - killed)
                print(f"run {run:2d}: broker {victim} killed; promote done {promote_s:5.2f} s, remove done "
                      f"{remove_s:5.2f} s, every partition acknowledging again {resumed[-1]:5.2f} s", flush=True)
                cluster.start(victim)
                added = logship("cluster", "add", str(victim), str(cluster.path), "--timeout", "2s")
                assert added.returncode in (0, 3), added.stderr
                deadline = time.monotonic() + 60
                while any(len(isr) < 3 for _, isr in partitions_of(cluster, victim).values()):
                    assert time.monotonic() < deadline, "the restarted broker did not rejoin"
                    time.sleep(0.1)
                load.all_acked_after(time.monotonic())
            print(f"seconds from a leader's kill -9 until every partition acknowledges acks=all writes again "
                  f"(promote + cluster remove, {len(resumed)} runs): median {statistics.median(resumed):.2f}, "
                  f"worst {max(resumed):.2f}")
        finally:
            if load is not None:
                load.stop()
            cluster.stop_all()


if __name__ == "__main__":
    main()

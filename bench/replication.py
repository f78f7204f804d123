"""Replication cost, side by side in one run on a 3-broker cluster on loopback (tests/local_cluster.py;
roles set with LeaderAndIsr as tests/cluster_control.py sends them):

    python bench/replication.py [--records 200000] [--size 200] [--rounds 2]

* acks=all produce throughput with kcat (a file of lines, linger 5 ms) into a topic of
  replication factor 1 and one of replication factor 3, both led by the same broker,
  alternating for --rounds rounds; prints records/s and MB/s of each and the RF3 / RF1 ratio
  of the medians;
* follower catch-up: --records records produced to a leader (in-sync replicas: itself) while
  its follower is stopped (SIGSTOP), then the follower is resumed and timed until its log end
  equals the leader's; prints MB/s of log bytes copied (and fsynced) by the follower, beside
  `cat` of the same segment files into a plain loopback socket (read by a sink that discards
  them), the issue's reference: `--catchup-records` sets the backlog (5,000,000 x 200 B ~ 1 GB);
  and beside the copy every follower must make at least: the same bytes written (pwrite,
  8 MiB at a time, each fdatasynced: one fetch's worth) into a new file of the same file
  system, the floor of what storage can take here.

Brokers, data and files are throw-away (a temporary directory). Never part of the test run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import socket
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from logship.cli.bench import log_lines  # noqa: E402

from cluster_control import ClusterControl  # noqa: E402
from local_cluster import LocalCluster  # noqa: E402


def produce(address: str, topic: str, lines: Path, acks: str = "all") -> float:
    start = time.perf_counter()
    subprocess.run(["kcat", "-P", "-b", address, "-t", topic, "-p", "0", "-l", str(lines), "-X", f"acks={acks}",
                    "-X", "linger.ms=5", "-X", "queue.buffering.max.messages=1000000"], check=True, timeout=600)
    return time.perf_counter() - start


def log_bytes(cluster: LocalCluster, broker_id: int, topic: str) -> int:
    return sum(p.stat().st_size for p in (cluster.data_dir(broker_id) / f"{topic}-0").glob("*.log"))


def cat_over_socket(files: list[Path]) -> float:
    """Seconds for `cat FILES` into a loopback TCP socket drained by a thread that discards."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        received = [0]

        def sink() -> None:
            conn, _ = server.accept()
            with conn:
                buffer = bytearray(1 << 20)
                while (got := conn.recv_into(buffer)) > 0:
                    received[0] += got

        thread = threading.Thread(target=sink)
        thread.start()
        with socket.create_connection(server.getsockname()) as sender:
            start = time.perf_counter()
            subprocess.run(["cat", *map(str, files)], stdout=sender.fileno(), check=True, timeout=600)
            sender.shutdown(socket.SHUT_WR)
            thread.join()
            seconds = time.perf_counter() - start
    assert received[0] == sum(f.stat().st_size for f in files)
    return seconds


def write_and_sync(files: list[Path], directory: Path, chunk: int = 8 << 20) -> float:
    """Seconds to copy FILES into one new file in `directory`, `chunk` bytes per pwrite, each
    fdatasynced (what a follower's storage does at least), the file removed afterwards."""
    target = directory / "write-and-sync"
    buffer = bytearray(chunk)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        start, position = time.perf_counter(), 0
        for path in files:
            with open(path, "rb", buffering=0) as source:
                while (got := source.readinto(buffer)) > 0:
                    view = memoryview(buffer)[:got]
                    while view:
                        written = os.pwrite(fd, view, position)
                        view, position = view[written:], position + written
                    os.fdatasync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        target.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--catchup-records", type=int, default=None, help="backlog (default: --records)")
    args = parser.parse_args()
    n, size = args.records, args.size
    with tempfile.TemporaryDirectory(prefix="logship-bench-repl-") as tmp:
        lines = Path(tmp) / "lines"
        lines.write_bytes(log_lines(n, size))
        backlog = lines
        if args.catchup_records not in (None, n):
            backlog = Path(tmp) / "backlog"
            backlog.write_bytes(log_lines(args.catchup_records, size))
        cluster = LocalCluster(Path(tmp) / "cluster", 3)
        cluster.start_all()
        try:
            control = ClusterControl(cluster)
            leader = cluster.address(1)
            rates: dict[int, list[float]] = {1: [], 3: []}
            for round_ in range(args.rounds):
                for rf in (1, 3):
                    topic = f"rf{rf}-{round_}"
                    control.lead(topic, 0, leader=1, epoch=1, replicas=[1, 2, 3][:rf])
                    seconds = produce(leader, topic, lines)
                    assert control.log_end(topic, 0, 1)[0] == n, "not every record arrived"
                    rates[rf].append(n / seconds)
                    print(f"round {round_ + 1}  RF{rf} acks=all (kcat)   {n / seconds:>10,.0f} records/s "
                          f"{n * size / seconds / 1e6:>7.1f} MB/s  {seconds:6.2f} s", flush=True)
            rf1, rf3 = statistics.median(rates[1]), statistics.median(rates[3])
            print(f"median RF1 {rf1:,.0f} records/s, RF3 {rf3:,.0f} records/s: RF3/RF1 = {rf3 / rf1:.2f}")

            topic = "catchup"
            follower = cluster.brokers[2].proc
            control.lead(topic, 0, leader=1, epoch=1, replicas=[1, 2], isr=[1])
            os.kill(follower.pid, signal.SIGSTOP)  # the follower misses everything produced now
            try:
                produce(leader, topic, backlog)
                end = control.log_end(topic, 0, 1)[0]
            finally:
                os.kill(follower.pid, signal.SIGCONT)
            start = time.perf_counter()
            while control.log_end(topic, 0, 2)[0] < end:
                time.sleep(0.02)
            seconds = time.perf_counter() - start
            copied = log_bytes(cluster, 2, topic)
            assert copied == log_bytes(cluster, 1, topic)
            print(f"follower catch-up: {end:,} records, {copied / 1e6:.1f} MB of batches in {seconds:.2f} s: "
                  f"{copied / seconds / 1e6:.1f} MB/s, {end / seconds:,.0f} records/s", flush=True)
            files = sorted((cluster.data_dir(1) / f"{topic}-0").glob("*.log"))
            cat_seconds = cat_over_socket(files)
            print(f"cat of the leader's segment files into a loopback socket: {copied / cat_seconds / 1e6:.1f} MB/s; "
                  f"catch-up / cat = {cat_seconds / seconds:.2f}")
            floor_seconds = write_and_sync(files, Path(tmp))
            print(f"the same bytes written and fdatasynced 8 MiB at a time into a new file: "
                  f"{copied / floor_seconds / 1e6:.1f} MB/s; catch-up / that = {floor_seconds / seconds:.2f}", flush=True)
        finally:
            cluster.stop_all()


if __name__ == "__main__":
    main()

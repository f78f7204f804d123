"""A soak of `logship serve` (issue #12): good load and hostile clients for a long while, with
the broker's memory, descriptors and throughput written down every minute.

    python bench/soak.py [--minutes 30] [--rate 2000] [--csv soak.csv]

It starts a real broker with the default limits, then at once:
- good load (bench/soak_load.py): confluent-kafka producers with acks=all sending `--rate`
  records a second into topic `soak` (4 partitions), logging every acknowledged (partition,
  offset, id), and a consumer reading every partition from the beginning;
- the attackers of bench/soak_attacks.py in rotation, one at a time, each a separate process
  (ROTATION: short and random-byte frames, lying batches, a 2 GiB Fetch, CreateTopics storms
  under the caps, a connection flood, 2 MiB length prefixes, unread Fetches, slow frames).

Every minute one CSV row (COLUMNS): elapsed seconds, the broker's RSS (MB) and open
descriptors at that moment and their peaks over the minute (sampled each second), acknowledged
and consumed records a second, attacks finished, WARNING lines (refusals) and tracebacks in the
broker's log so far, and the attack running. At the end the producers stop and flush, the
consumer reads up to the last acknowledged offset, and the checker compares: every acknowledged
record read exactly once where it was acknowledged. It prints the rows, the slopes of RSS and
descriptors (least squares, per minute, from the second row on: the first minute includes the
warm-up), each attack's outcome and the checker's result, and exits 1 if a record was lost or
duplicated, a delivery failed, the log holds a traceback or the broker did not stop cleanly.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tabulate import tabulate  # noqa: E402

from logship.broker_process import BrokerProcess  # noqa: E402
from logship.client.admin import Admin  # noqa: E402
from soak_load import Consumer, Producers, acked_ends, check  # noqa: E402
from test_broker_limits import open_fds, rss_mb  # noqa: E402

ATTACKS = Path(__file__).with_name("soak_attacks.py")
TOPIC, PARTITIONS, PRODUCERS = "soak", 4, 2
COLUMNS = ["elapsed_s", "rss_mb", "fds", "acked_per_s", "consumed_per_s", "attacks_run", "refusals_logged",
           "tracebacks", "peak_rss_mb", "peak_fds", "attacking"]
# (kind, seconds, count): the default timeouts (request and write, 30 s) close the slow ones
ROTATION = [("short", 6, 20), ("lying", 5, 1), ("garbage", 8, 100), ("bigfetch", 60, 1), ("topics", 12, 1),
            ("flood", 12, 4500), ("prefix", 35, 500), ("fetch", 35, 20), ("slowloris", 35, 300)]


def expected(kind: str, result: dict) -> bool:
    """Whether an attacker saw what a bounded broker does to it."""
    if kind == "lying":
        return result["accepted"] == 0 and result["good_failed"] == 0 and result["refused"] > 0
    if kind == "topics":
        return result["accepted_over_cap"] == 0 and result["refused"] > 0 and result["created"] > 0
    if kind == "bigfetch":
        return result["errors"] == [0] and result["response_bytes"] <= (56 << 20)
    return result["closed"] > 0


class Rotation(threading.Thread):
    """Runs ROTATION's attackers one after another until stopped; `results` holds one dict per
    attack (kind, seconds, result or error, as_expected)."""

    def __init__(self, address: str, work_dir: Path):
        super().__init__(daemon=True)
        self.address, self.work_dir = address, work_dir
        self.results: list[dict] = []
        self.current = ""
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(300)

    def run(self) -> None:
        turn = 0
        while not self._stopping.is_set():
            kind, seconds, count = ROTATION[turn % len(ROTATION)]
            turn += 1
            self.current = kind
            self.results.append(self._attack(kind, seconds, count))
            self.current = ""
            self._stopping.wait(2)

    def _attack(self, kind: str, seconds: float, count: int) -> dict:
        start = time.monotonic()
        with open(self.work_dir / "attackers.err", "a") as err:
            proc = subprocess.Popen([sys.executable, str(ATTACKS), kind, self.address, str(seconds), str(count)],
                                    stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                out, _ = proc.communicate(timeout=seconds + 120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        entry = {"kind": kind, "seconds": round(time.monotonic() - start, 1)}
        lines = out.split()
        try:
            entry["result"] = json.loads(out.strip().splitlines()[-1])
            entry["as_expected"] = lines[0] == "ready" and expected(kind, entry["result"])
        except (IndexError, ValueError, KeyError):
            entry.update(result={"exit": proc.returncode}, as_expected=False)
        with open(self.work_dir / "attacks.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
        return entry


def bait(address: str) -> None:
    """2 MiB of records in topic `bait`, for the Fetch attacks to ask for."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "linger.ms": 20, "batch.size": 1 << 20})
    for _ in range(2048):
        producer.produce("bait", b"b" * 1024)
    if producer.flush(60):
        raise RuntimeError("could not write the bait topic")


def slope(values: list[float]) -> float:
    """Least-squares slope of `values` against their index (0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


def soak(minutes: float, rate: int, csv_path: Path, work_dir: Path) -> dict:
    """Run the soak against a new broker in `work_dir`; its outcome, for `report`."""
    broker = BrokerProcess(work_dir / "data").start()
    try:
        return _soak(broker, minutes, rate, csv_path, work_dir)
    finally:
        broker.kill()  # only if it is still there: an error in the soak itself


def _soak(broker: BrokerProcess, minutes: float, rate: int, csv_path: Path, work_dir: Path) -> dict:
    pid = broker.proc.pid
    with Admin(broker.address) as admin:
        admin.create_topic(TOPIC, PARTITIONS)
    bait(broker.address)
    consumer = Consumer(broker.address, TOPIC, PARTITIONS, PRODUCERS)
    consumer.start()
    producers = Producers(broker.address, TOPIC, rate, PRODUCERS, work_dir).start()
    rotation = Rotation(broker.address, work_dir)
    rotation.start()
    rows: list[dict] = []
    start = last = time.monotonic()
    last_acked = last_consumed = 0
    peak_rss = peak_fds = fds = 0
    rss = 0.0
    with open(csv_path, "w", newline="") as out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        while True:
            now = time.monotonic()
            finished = now - start >= minutes * 60 or broker.proc.poll() is not None
            try:
                rss, fds = rss_mb(pid), open_fds(pid)
                peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
            except OSError:
                pass  # it has died: the last row keeps the last sample
            if now - last >= 60 or (finished and now - last >= 1):  # the last row may be short
                log = broker.log()
                acked, consumed = producers.acked, consumer.consumed
                row = {"elapsed_s": round(now - start), "rss_mb": round(rss, 1), "fds": fds,
                       "acked_per_s": round((acked - last_acked) / (now - last)),
                       "consumed_per_s": round((consumed - last_consumed) / (now - last)),
                       "attacks_run": len(rotation.results), "refusals_logged": log.count(" WARNING "),
                       "tracebacks": log.count("Traceback"), "peak_rss_mb": round(peak_rss, 1),
                       "peak_fds": peak_fds, "attacking": rotation.current or "-"}
                writer.writerow(row)
                out.flush()
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
                last, last_acked, last_consumed, peak_rss, peak_fds = now, acked, consumed, 0, 0
            if finished:
                break
            time.sleep(max(0.0, min(1.0, start + minutes * 60 - now)))
    died = broker.proc.poll()
    rotation.stop()
    producers.stop()
    read_all = consumer.read_through(acked_ends(work_dir, PRODUCERS, PARTITIONS), timeout=120)
    consumer.stop()
    outcome = check(work_dir, PRODUCERS, consumer)
    exit_code = broker.stop(timeout=30) if died is None else died
    log = broker.log()
    (work_dir / "broker.log").write_text(log)
    outcome.update(rows=rows, attacks=rotation.results, delivery_failures=producers.failed,
                   delivery_errors=producers.errors, unflushed=producers.unflushed, read_all=read_all,
                   consumer_errors=consumer.errors, consumer_error_texts=consumer.error_texts,
                   tracebacks=log.count("Traceback"), broker_exit=exit_code, broker_died=died is not None,
                   log_tail=log.splitlines()[-5:])
    return outcome


def report(outcome: dict) -> bool:
    """Print the tables; True if the soak passed."""
    rows = outcome["rows"]
    print(tabulate([[r[c] for c in COLUMNS] for r in rows], headers=COLUMNS, tablefmt="simple"))
    steady = rows[1:] if len(rows) > 2 else rows
    print(f"\nslopes from minute {rows.index(steady[0]) + 1 if steady else '-'} on: "
          f"RSS {slope([r['rss_mb'] for r in steady]):+.2f} MB/min, "
          f"fds {slope([r['fds'] for r in steady]):+.2f} /min; of the minutes' peaks: "
          f"RSS {slope([r['peak_rss_mb'] for r in steady]):+.2f} MB/min, "
          f"fds {slope([r['peak_fds'] for r in steady]):+.2f} /min")
    # a minute's sample depends on the attack running then; the lowest of each 5 minutes does not
    floors = [min(r["rss_mb"] for r in rows[i:i + 5]) for i in range(0, len(rows) - 4, 5)]
    if floors:
        print(f"lowest RSS of each 5 minutes: {', '.join(f'{v:.0f}' for v in floors)} MB "
              f"(slope {slope(floors) / 5:+.2f} MB/min)")
    by_kind: dict[str, list[dict]] = {}
    for entry in outcome["attacks"]:
        by_kind.setdefault(entry["kind"], []).append(entry)
    print("\n" + tabulate([[kind, len(runs), sum(e["as_expected"] for e in runs), json.dumps(runs[-1]["result"])]
                           for kind, runs in by_kind.items()],
                          headers=["attack", "runs", "as expected", "last result"], tablefmt="simple"))
    failures = {
        "records lost": outcome["lost"], "records duplicated": outcome["duplicated"],
        "delivery failures": outcome["delivery_failures"] + outcome["unflushed"],
        "tracebacks in the broker log": outcome["tracebacks"],
        "broker died during the soak": int(outcome["broker_died"]),
        "broker exit code": outcome["broker_exit"] or 0,
        "consumer did not reach the last acked offsets": int(not outcome["read_all"]),
    }
    print("\n" + tabulate([["acknowledged", outcome["acked"]], ["consumed", outcome["consumed"]],
                           ["read but never acknowledged", outcome["unacked_read"]],
                           ["consumer errors (transient)", outcome["consumer_errors"]],
                           *[[name, value] for name, value in failures.items()]], tablefmt="simple"))
    for text in (*outcome["lost_examples"], *outcome["delivery_errors"], *outcome["consumer_error_texts"]):
        print("  " + text)
    passed = not any(failures.values())
    print("\nPASS: every acknowledged record read exactly once where acknowledged; no traceback"
          if passed else "\nFAIL")
    if not passed:
        print("broker log tail:\n  " + "\n  ".join(outcome["log_tail"]))
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load and attacks last")
    parser.add_argument("--rate", type=int, default=2000, help="acks=all records a second, all producers together")
    parser.add_argument("--csv", type=Path, default=Path("soak.csv"), help="where the per-minute rows go")
    parser.add_argument("--work-dir", type=Path, help="keep the broker's data, log and ledgers here "
                                                      "(default: a temporary directory, removed)")
    args = parser.parse_args()
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        outcome = soak(args.minutes, args.rate, args.csv, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="logship-soak-") as tmp:
            outcome = soak(args.minutes, args.rate, args.csv, Path(tmp))
    sys.exit(0 if report(outcome) else 1)


if __name__ == "__main__":
    main()

"""`logship bench --latency`: produce-to-consume latency at fixed request rates.

For each rate, each load and each acks setting, one topic of one partition: a load sends
RATE records a second for SECONDS seconds, each in a request of its own (linger 0), and a
consumer following the topic notes, for every record, how long after its sending it was
read. A record's value begins with the time it was sent (nanoseconds since the epoch, ASCII
digits, then a space) and is padded to SIZE bytes, so the consumer needs nothing else.

Loads: logship's own client (client.Producer, linger_ms=0, one `send` a record); when kcat
is on PATH, `kcat -P -X linger.ms=0` fed one line at a time by a pacer; when the
confluent-kafka package is importable, its Producer with linger.ms=0 (librdkafka pipelines
many such requests on one connection, the hardest case for group commit). The pacer
sends what is due, then sleeps until the next record is due; a load that falls behind
sends late records at once (their wait counts in their latency, as it would for an
application). Latency is the consumer's clock minus the sender's, on one machine.

A run is checked: every record must arrive; the figures are p50, p99, p99.9 and the
largest latency in milliseconds, and the rate really sent.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import click

from ..broker_process import child_env

__all__ = ["measure", "table"]

WARM_UP = 100  # records sent before the measured ones, at the same rate, and not counted


def _value(size: int) -> bytes:
    """A record sent now: the send time, then padding to `size` bytes."""
    stamp = b"%d " % time.time_ns()
    return stamp + b"x" * max(0, size - len(stamp))


def _pace(rate: int, count: int, send) -> float:
    """Call send() `count` times at `rate` a second; returns the seconds it took."""
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send()
    return time.perf_counter() - start


class _Reader(threading.Thread):
    """Follows `topic` partition 0 from its beginning and records each record's latency (ns)."""

    def __init__(self, address: str, topic: str, expected: int, deadline: float):
        super().__init__(name="logship-bench-reader", daemon=True)
        from ..client import Consumer

        self.consumer = Consumer(address, topic, partitions=[0], start="beginning", max_wait_ms=100)
        self.expected, self.deadline = expected, deadline
        self.latencies: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            seen = 0
            while seen < self.expected and time.monotonic() < self.deadline:
                for record in self.consumer.poll(0.2):
                    now = time.time_ns()
                    seen += 1
                    if seen > WARM_UP:
                        self.latencies.append(now - int(record.value.split(b" ", 1)[0]))
        except BaseException as exc:  # noqa: BLE001 - reported by measure()
            self.error = exc
        finally:
            self.consumer.close()


def _logship_load(address: str, topic: str, acks: str, size: int, rate: int, count: int) -> float:
    from ..client import Producer

    with Producer(address, acks=acks, compression="none", linger_ms=0, build_threads=0) as producer:
        producer.partitions(topic)
        elapsed = _pace(rate, count, lambda: producer.send(topic, _value(size), partition=0))
        producer.flush()
    return elapsed


def _kcat_load(kcat: str, address: str, topic: str, acks: str, size: int, rate: int, count: int) -> float:
    cmd = [kcat, "-P", "-b", address, "-t", topic, "-p", "0", "-X", f"acks={acks}", "-X", "linger.ms=0",
           "-X", "compression.codec=none"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())

    def send() -> None:
        proc.stdin.write(_value(size) + b"\n")
        proc.stdin.flush()

    try:
        elapsed = _pace(rate, count, send)
    finally:
        proc.stdin.close()
        stderr = proc.stderr.read().decode(errors="replace").strip()
        proc.wait()
    if proc.returncode:
        raise click.ClickException(f"kcat -P failed (exit {proc.returncode}): {stderr}")
    return elapsed


def _confluent_load(address: str, topic: str, acks: str, size: int, rate: int, count: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "acks": acks, "linger.ms": 0, "compression.type": "none"})
    failures = []

    def send() -> None:
        producer.produce(topic, _value(size), partition=0, on_delivery=lambda err, _: err and failures.append(err))
        producer.poll(0)

    elapsed = _pace(rate, count, send)
    if producer.flush(60) or failures:
        raise click.ClickException(f"confluent-kafka could not deliver to {topic}: {failures[:1] or 'timed out'}")
    return elapsed


def _loads(with_kcat: bool) -> list[tuple[str, object]]:
    """(label, function(address, topic, acks, size, rate, count) -> seconds) of each load there is."""
    import functools
    import importlib.util

    loads = [("logship client", _logship_load)]
    kcat = shutil.which("kcat") if with_kcat else None
    if kcat:
        loads.append(("kcat -P", functools.partial(_kcat_load, kcat)))
    if importlib.util.find_spec("confluent_kafka") is not None:
        loads.append(("confluent-kafka", _confluent_load))
    return loads


def measure(address: str, rates: list[int], seconds: float, acks_list: list[str], size: int,
            with_kcat: bool) -> list[dict]:
    """One row per (rate, load, acks): the latencies' percentiles in ms and the rate sent."""
    from ..client.admin import Admin
    from .options import cluster_for

    loads = _loads(with_kcat)
    tag = f"latency-{time.time():.0f}"
    rows = []
    with Admin(cluster_for(address)) as admin:
        for rate in rates:
            count = WARM_UP + max(1, int(rate * seconds))
            for acks in acks_list:
                for label, load in loads:
                    topic = f"{tag}-{rate}-{acks}-{label.split()[0]}"
                    admin.create_topic(topic, 1, -1)
                    reader = _Reader(address, topic, count, time.monotonic() + count / rate + 60)
                    reader.start()
                    elapsed = load(address, topic, acks, size, rate, count)
                    reader.join()
                    if reader.error is not None:
                        raise click.ClickException(f"reading {topic} failed: {reader.error}")
                    got = len(reader.latencies) + WARM_UP
                    if got < count:
                        raise click.ClickException(f"{topic}: {got:,} of {count:,} records arrived within a minute")
                    rows.append({"load": label, "rate": rate, "acks": acks, "sent_rate": count / elapsed,
                                 **_percentiles(reader.latencies)})
    return rows


def _percentiles(latencies_ns: list[int]) -> dict:
    ordered = sorted(latencies_ns)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6

    return {"records": len(ordered), "p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": ordered[-1] / 1e6}


def table(rows: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate([[r["load"], f"{r['rate']:,}", r["acks"], f"{r['sent_rate']:,.0f}", f"{r['records']:,}",
                      f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['p999']:.2f}", f"{r['max']:.2f}"] for r in rows],
                    headers=["load", "rate/s", "acks", "sent/s", "records", "p50 ms", "p99 ms", "p99.9 ms",
                             "max ms"],
                    colalign=("left", "right", "left") + ("right",) * 6)

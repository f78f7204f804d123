"""`logship bench`: produce and consume throughput on this machine, side by side with kcat.

Both sides run as the commands a user runs (`logship produce FILE`, `kcat -P -l FILE`;
`logship consume -e`, `kcat -C -e`, output to /dev/null), alternately, against one broker,
so a shared, noisy machine slows both alike; the figures that mean something are the
ratios. Wall times include process start-up, as a user sees them.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from . import ExitStatus
from ..broker_process import BrokerProcess, child_env
from .options import cluster_for

__all__ = ["bench", "log_lines"]


def log_lines(count: int, size: int, seed: int = 1) -> bytes:
    """`count` access-log-like lines, each exactly `size` bytes before its newline, the same
    for the same arguments (so compression ratios are comparable between runs)."""
    rng = random.Random(seed)
    paths = ["/", "/api/orders", "/api/users/%d", "/static/app.js", "/login", "/search?q=%d"]
    agents = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "kafka-bench/1.0"]
    out = []
    for i in range(count):
        path = rng.choice(paths)
        if "%d" in path:
            path %= rng.randrange(100000)
        line = (f'10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)} - - '
                f'[24/Nov/2026:10:{i // 60000 % 60:02d}:{i // 1000 % 60:02d} +0000] "GET {path} HTTP/1.1" '
                f'{rng.choice((200, 200, 200, 304, 404, 500))} {rng.randrange(100000)} "{rng.choice(agents)}" ')
        out.append(line.ljust(size, "x")[:size])
    return ("\n".join(out) + "\n").encode()


@click.command()
@click.option("--brokers", "-b", metavar="HOST:PORT[,...]",
              help="Measure against these brokers (Kafka or logship); default: a temporary `logship serve`.")
@click.option("-n", "--records", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Lines in the file produced.")
@click.option("-s", "--size", type=click.IntRange(min=80), default=200, show_default=True,
              help="Bytes per line (without its newline).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs of each command; the median and the best are shown.")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True)
@click.option("-z", "--compression", type=click.Choice(["zstd", "gzip", "lz4", "snappy", "none"]),
              default="zstd", show_default=True)
@click.option("--kcat/--no-kcat", "with_kcat", default=True, show_default=True,
              help="Run kcat side by side (if it is on PATH) and show logship's ratio to it.")
@click.option("--pipe", is_flag=True, help="Also produce the file through a pipe (`cat FILE | ...`).")
@click.option("--latency", is_flag=True,
              help="Measure produce-to-consume latency at fixed rates instead (one record a request).")
@click.option("--rates", default="1000,5000", show_default=True, metavar="N[,N...]",
              help="With --latency: records (requests) a second.")
@click.option("--seconds", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="With --latency: how long each load runs.")
def bench(brokers, records, size, rounds, acks, compression, with_kcat, pipe, latency, rates, seconds) -> int:
    """Measure `logship produce` and `logship consume` throughput, side by side with kcat.

    Writes RECORDS log-like lines of SIZE bytes to a temporary file; runs `logship produce
    FILE` and `kcat -P -l FILE` into the same broker with the same acks and compression,
    then `logship consume -e` and `kcat -C -e` of what logship produced, to /dev/null;
    each ROUNDS times, alternately; with --pipe, also both producers reading the file from
    `cat` through a pipe. Prints the median and best records/s and MB/s of each,
    and logship's ratio to kcat (above 1: logship is faster), median to median and best to
    best. Every topic written is checked to hold RECORDS records.

    With --latency: for each rate of --rates, records of SIZE bytes are sent one a request
    (linger 0) for --seconds by logship's client and, if kcat is on PATH, by kcat fed one line at
    a time; a consumer notes how long after its sending each record was read. Prints p50,
    p99, p99.9 and the largest latency per load, with the chosen --acks and, when it is all,
    with acks=1 beside it (the price of waiting for fdatasync).

    Without -b it starts a temporary `logship serve` on a free loopback port, its data in
    a temporary directory that is deleted afterwards. Topics are named bench-TIME-* (latency-TIME-*).

    \b
    Examples:
      logship bench
      logship bench -n 200000 --rounds 5 --acks 1 --pipe
      logship bench -b kafka1:9092 --no-kcat
      logship bench --latency --rates 1000,5000 --seconds 10
    """
    if latency:
        return _latency(brokers, rates, seconds, acks, size, with_kcat)
    kcat = shutil.which("kcat") if with_kcat else None
    if with_kcat and kcat is None:
        click.echo("logship: kcat is not on PATH; measuring logship alone", err=True)
    with tempfile.TemporaryDirectory(prefix="logship-bench-") as tmp:
        lines = Path(tmp) / "lines.txt"
        lines.write_bytes(log_lines(records, size))
        broker = None if brokers else BrokerProcess(Path(tmp) / "data").start()
        try:
            runs = _run(brokers or broker.address, lines, records, rounds, acks, compression, kcat, pipe)
        finally:
            if broker is not None:
                broker.stop()
    click.echo(f"{records:,} records of {size} bytes, acks={acks}, {compression}, {rounds} rounds, "
               f"wall time per command including start-up")
    click.echo(_table(runs, records, size))
    return ExitStatus.OK


def _latency(brokers, rates: str, seconds: float, acks: str, size: int, with_kcat: bool) -> int:
    from . import bench_latency

    try:
        rate_list = [int(r) for r in rates.split(",")]
    except ValueError:
        raise click.BadParameter(f"{rates!r} is not a list of rates like 1000,5000", param_hint="--rates") from None
    if not rate_list or min(rate_list) < 1:
        raise click.BadParameter("rates must be positive", param_hint="--rates")
    acks_list = [acks] + (["1"] if acks == "all" else [])
    with tempfile.TemporaryDirectory(prefix="logship-bench-") as tmp:
        broker = None if brokers else BrokerProcess(Path(tmp) / "data").start()
        try:
            rows = bench_latency.measure(brokers or broker.address, rate_list, seconds, acks_list, size, with_kcat)
        finally:
            if broker is not None:
                broker.stop()
    click.echo(f"produce-to-consume latency, one record of {size} bytes a request, {seconds:g} s a load")
    click.echo(bench_latency.table(rows))
    return ExitStatus.OK


def _run(address: str, lines: Path, records: int, rounds: int, acks: str, compression: str,
         kcat: str | None, pipe: bool) -> dict[str, list[float]]:
    """Seconds per run of each command, by label."""
    logship = [sys.executable, "-m", "logship"]
    tag = f"bench-{time.time():.0f}-"
    kcat_codec = [] if compression == "none" else ["-z", compression]
    runs: dict[str, list[float]] = {}
    topics = []
    ways = [("", [str(lines)], None)] + ([(" (pipe)", [], lines)] if pipe else [])
    for r in range(rounds):
        for suffix, file_args, feed in ways:
            name = suffix.strip(" ()")
            if kcat:
                topics.append(f"{tag}kcat{name}{r}")
                runs.setdefault(f"kcat -P{suffix}", []).append(_timed(
                    [kcat, "-P", "-b", address, "-t", topics[-1], *kcat_codec, "-X", f"acks={acks}",
                     "-X", "linger.ms=5", "-X", "queue.buffering.max.messages=1000000",
                     *(["-l", *file_args] if file_args else [])], feed))
            topics.append(f"{tag}logship{name}{r}")
            runs.setdefault(f"logship produce{suffix}", []).append(_timed(
                [*logship, "produce", topics[-1], "-b", address, "--acks", acks, "-z", compression, *file_args],
                feed))
    for r in range(rounds):
        if kcat:
            runs.setdefault("kcat -C -e", []).append(_timed(
                [kcat, "-C", "-b", address, "-t", f"{tag}logship0", "-o", "beginning", "-e", "-q"]))
        runs.setdefault("logship consume -e", []).append(_timed(
            [*logship, "consume", f"{tag}logship0", "-b", address, "-e"]))
    _check_counts(address, topics, records)
    return runs


def _timed(cmd: list[str], feed: Path | None = None) -> float:
    """Seconds `cmd` took, with `feed` (if given) written to its standard input by `cat`."""
    start = time.perf_counter()
    cat = subprocess.Popen(["cat", str(feed)], stdout=subprocess.PIPE) if feed is not None else None
    try:
        done = subprocess.run(cmd, stdin=cat.stdout if cat else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=child_env())
    finally:
        if cat is not None:
            cat.stdout.close()
            cat.wait()
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise click.ClickException(f"{' '.join(cmd[:4])} ... failed (exit {done.returncode}): "
                                   f"{done.stderr.decode(errors='replace').strip()}")
    return elapsed


def _check_counts(address: str, topics: list[str], records: int) -> None:
    from ..client.admin import Admin

    with Admin(cluster_for(address)) as admin:
        for topic in topics:
            held = sum(p.records for p in admin.describe_topic(topic))
            if held != records:
                raise click.ClickException(f"topic {topic} holds {held:,} records, not {records:,}: "
                                           "the figures do not count")


def _table(runs: dict[str, list[float]], records: int, size: int) -> str:
    from tabulate import tabulate

    reference = {"logship produce": "kcat -P", "logship consume -e": "kcat -C -e",
                 "logship produce (pipe)": "kcat -P (pipe)"}
    rows = []
    for label, seconds in runs.items():
        median, best = statistics.median(seconds), min(seconds)
        row = [label, f"{records / median:,.0f}", f"{records / best:,.0f}", f"{records * size / best / 1e6:,.0f}"]
        theirs = runs.get(reference.get(label, ""))
        if theirs:
            row += [f"{statistics.median(theirs) / median:.2f}", f"{min(theirs) / best:.2f}"]
        rows.append(row)
    headers = ["command", "records/s (median)", "records/s (best)", "MB/s (best)"]
    if any(len(row) > 4 for row in rows):
        headers += ["ratio to kcat (median)", "ratio (best)"]
    return tabulate(rows, headers=headers, colalign=("left",) + ("right",) * (len(headers) - 1))

"""The cost of Prometheus metrics, side by side in one run: kcat producing into `logship serve`
with `--metrics` scraped every second, against the same broker options without metrics.

    python bench/metrics.py [--records 3000000] [--size 200] [--rounds 3]

Each round starts both brokers afresh (alternating which goes first) and times kcat -P of the
same file of lines (acks=1, linger 5 ms) into each; a thread GETs /metrics once a second while
the metrics broker is loaded. Prints records/s per run and the ratio of the medians (the
issue's goal: at least 0.97).
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.broker import bench_args, lines_file, timed  # noqa: E402
from logship.broker_process import BrokerProcess  # noqa: E402


def scrape_every_second(url: str, stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        urllib.request.urlopen(url, timeout=5).read()
        counts[0] += 1


def run(tmp: Path, lines: Path, with_metrics: bool, label: str) -> float:
    args = ("--metrics", "127.0.0.1:0") if with_metrics else ()
    broker = BrokerProcess(tmp / f"data-{label}", *args).start()
    stop, counts = threading.Event(), [0]
    try:
        if with_metrics:
            url = re.search(r"metrics for Prometheus at (http://\S+)", broker.log()).group(1)
            threading.Thread(target=scrape_every_second, args=(url, stop, counts), daemon=True).start()
        seconds = timed(["kcat", "-P", "-b", broker.address, "-t", "bench", "-l", str(lines), "-X", "linger.ms=5",
                         "-X", "queue.buffering.max.messages=1000000", "-X", "acks=1"])
    finally:
        stop.set()
        broker.stop()
    if with_metrics:
        print(f"  ({counts[0]} scrapes during the run)")
    return seconds


def main() -> None:
    args = bench_args(__doc__.splitlines()[0], 3_000_000)  # a run lasts a few scrapes
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = lines_file(tmp, n, args.size)
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(args.rounds):
            for with_metrics in ((True, False) if round_ % 2 == 0 else (False, True)):
                took = run(tmp, lines, with_metrics, f"{round_}-{with_metrics}")
                seconds[with_metrics].append(took)
                print(f"round {round_ + 1}  {'with --metrics, scraped' if with_metrics else 'without metrics':<26}"
                      f"{n / took:>12,.0f} records/s", flush=True)
        ratio = statistics.median(seconds[False]) / statistics.median(seconds[True])
        print(f"with metrics / without = {ratio:.2f} (medians of {args.rounds})")


if __name__ == "__main__":
    main()

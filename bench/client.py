"""logship's client library against kcat, side by side, into one `logship serve`.

    python bench/client.py [--records 1000000] [--size 200] [--rounds 3]

Produce: the library's Producer.send_values over a file of lines read in 1 MiB chunks (as
`logship produce` would), acks=all, zstd, against `kcat -P -z zstd -X acks=all` of the same
file. Consume: the library's Consumer from the beginning to the end (stop_at_end) against
`kcat -C -o beginning -e` to /dev/null. Each side runs in its own process, alternately,
`--rounds` times; the figures are the median and the best round (a shared machine is noisy),
wall time including process start, and for logship also the time after its imports (Python
and logship's imports cost about 0.3 s that kcat does not pay).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from broker import log_lines  # noqa: E402
from conftest import BrokerProcess  # noqa: E402

PRODUCE = """
import sys, time
from logship.client import Cluster, Producer
path, topic, brokers = sys.argv[1:4]
started = time.perf_counter()
with Producer(Cluster(brokers), acks="all", compression="zstd") as producer, open(path, "rb") as f:
    rest = b""
    while chunk := f.read(1 << 20):
        lines = (rest + chunk).split(b"\\n")
        rest = lines.pop()
        producer.send_values(topic, lines)
    if rest:
        producer.send_values(topic, [rest])
print(time.perf_counter() - started)
"""

CONSUME = """
import sys, time
from logship.client import Cluster, Consumer
topic, brokers = sys.argv[1:3]
out = open("/dev/null", "wb")
started = time.perf_counter()
with Consumer(Cluster(brokers), topic, start="beginning", stop_at_end=True) as consumer:
    while not consumer.finished:
        for chunk in consumer.poll_chunks(1.0):  # what `logship consume` does for -f '%v\\n'
            out.write(b"\\n".join(chunk.values) + b"\\n")
print(time.perf_counter() - started)
"""


def timed(cmd: list[str], inside: list | None = None, **kwargs) -> float:
    """Wall time of `cmd`; with `inside`, the time the command printed (after its imports)
    is appended to it."""
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, **kwargs).stdout
    elapsed = time.perf_counter() - start
    if inside is not None:
        inside.append(float(out.split()[-1]))
    return elapsed


def line(label: str, n: int, size: int, seconds: list[float], reference: list[float] | None = None) -> None:
    median, best = statistics.median(seconds), min(seconds)
    ratio = ""
    if reference:
        ratio = (f"  ratio {statistics.median(reference) / median:.2f} (median), "
                 f"{min(reference) / best:.2f} (best)")
    print(f"{label:<34} median {n / median:>11,.0f} rec/s  best {n / best:>11,.0f} rec/s "
          f"({n * size / best / 1e6:,.0f} MB/s){ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--brokers", help="use this running broker instead of starting one")
    args = parser.parse_args()
    n, size = args.records, args.size
    env = {"PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = tmp / "lines.txt"
        lines.write_bytes(log_lines(n, size))
        broker = None if args.brokers else BrokerProcess(tmp / "data").start()
        try:
            b = args.brokers or broker.address
            tag = f"{time.time():.0f}-"
            ours, theirs, ours_c, theirs_c, ours_in, ours_c_in = [], [], [], [], [], []
            for r in range(args.rounds):
                ours.append(timed([sys.executable, "-c", PRODUCE, str(lines), f"{tag}ours{r}", b], ours_in, env=env))
                theirs.append(timed(["kcat", "-P", "-b", b, "-t", f"{tag}kcat{r}", "-z", "zstd", "-X", "acks=all",
                                     "-X", "linger.ms=5", "-X", "queue.buffering.max.messages=1000000",
                                     "-l", str(lines)]))
            for r in range(args.rounds):
                ours_c.append(timed([sys.executable, "-c", CONSUME, f"{tag}ours0", b], ours_c_in, env=env))
                theirs_c.append(timed(["kcat", "-C", "-b", b, "-t", f"{tag}ours0", "-o", "beginning", "-e", "-q"]))
            print(f"{n:,} records of {size} bytes, acks=all, zstd, {args.rounds} rounds")
            line("kcat -P", n, size, theirs)
            line("logship Producer.send_values", n, size, ours, theirs)
            line("  the same after imports", n, size, ours_in, theirs)
            line("kcat -C -e", n, size, theirs_c)
            line("logship Consumer.poll_chunks", n, size, ours_c, theirs_c)
            line("  the same after imports", n, size, ours_c_in, theirs_c)
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()

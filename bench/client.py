"""`logship produce` and `logship consume` against kcat, side by side, into one `logship serve`.

    python bench/client.py [--records 1000000] [--size 200] [--rounds 3]

Produce: `logship produce TOPIC FILE` (acks=all, zstd: its defaults) against
`kcat -P -z zstd -X acks=all` of the same file of lines. Consume: `logship consume TOPIC -e`
against `kcat -C -o beginning -e`, both to /dev/null. Each side runs as its own process,
alternately, `--rounds` times; the figures are the median and the best round (a shared
machine is noisy), wall time including process start-up (Python and logship's imports cost
about 0.1-0.2 s that kcat does not pay).
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

def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


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
            logship = [sys.executable, "-m", "logship"]
            ours, theirs, ours_c, theirs_c = [], [], [], []
            for r in range(args.rounds):
                ours.append(timed([*logship, "produce", f"{tag}ours{r}", "-b", b, str(lines)], env=env))
                theirs.append(timed(["kcat", "-P", "-b", b, "-t", f"{tag}kcat{r}", "-z", "zstd", "-X", "acks=all",
                                     "-X", "linger.ms=5", "-X", "queue.buffering.max.messages=1000000",
                                     "-l", str(lines)]))
            for r in range(args.rounds):
                ours_c.append(timed([*logship, "consume", f"{tag}ours0", "-b", b, "-e"], env=env))
                theirs_c.append(timed(["kcat", "-C", "-b", b, "-t", f"{tag}ours0", "-o", "beginning", "-e", "-q"]))
            print(f"{n:,} records of {size} bytes, acks=all, zstd, {args.rounds} rounds")
            line("kcat -P", n, size, theirs)
            line("logship produce", n, size, ours, theirs)
            line("kcat -C -e", n, size, theirs_c)
            line("logship consume -e", n, size, ours_c, theirs_c)
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()

"""Broker throughput, side by side in one run: kcat into `logship serve` vs librdkafka's mock.

    python bench/broker.py [--records 1000000] [--size 200]

Prints records/s and MB/s for kcat producing a file of lines into librdkafka's in-process
mock cluster (the ceiling for that client) and into a real `logship serve` (acks=1 and
acks=all), kcat consuming everything back, and bytes on disk per record for batches of
100 records uncompressed and with zstd. The lines look like web server logs, so zstd
figures mean something.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logship.cli.bench import log_lines  # noqa: E402
from logship.broker_process import BrokerProcess  # noqa: E402


def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    return time.perf_counter() - start


def bench_args(description: str, records: int) -> argparse.Namespace:
    """--records, --size and --rounds, the options the side-by-side benches share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=int, default=records)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def lines_file(directory: Path, records: int, size: int) -> Path:
    """A file of `records` log-like lines of `size` bytes in `directory`."""
    path = directory / "lines.txt"
    path.write_bytes(log_lines(records, size))
    return path


def rate(label: str, records: int, size: int, seconds: float, ceiling: float | None = None) -> float:
    per_second = records / seconds
    ratio = f"  ratio {per_second / ceiling:.2f}" if ceiling else ""
    print(f"{label:<44} {per_second:>12,.0f} records/s {per_second * size / 1e6:>8.1f} MB/s{ratio}")
    return per_second


def disk_bytes(data_dir: Path, topic: str) -> int:
    return sum(p.stat().st_size for p in (data_dir / f"{topic}-0").glob("*.log"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    n, size = args.records, args.size

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = tmp / "lines.txt"
        lines.write_bytes(log_lines(n, size))
        produce = ["kcat", "-P", "-l", str(lines), "-X", "linger.ms=5", "-X", "queue.buffering.max.messages=1000000"]

        mock = timed([*produce, "-b", "127.0.0.1:1", "-t", "bench", "-X", "test.mock.num.brokers=1", "-X", "acks=1"])
        broker = BrokerProcess(tmp / "data").start()
        try:
            print(f"{n:,} records of {size} bytes")
            ceiling = rate("kcat -> librdkafka mock cluster (acks=1)", n, size, mock)
            b = ["-b", broker.address]
            rate("kcat -> logship serve, acks=1", n, size, timed([*produce, *b, "-t", "acks1", "-X", "acks=1"]), ceiling)
            rate("kcat -> logship serve, acks=all", n, size, timed([*produce, *b, "-t", "acksall", "-X", "acks=all"]), ceiling)
            # -c rather than -e: -e waits out one empty long-poll (fetch.wait.max.ms) at the end
            consume = timed(["kcat", "-C", *b, "-t", "acks1", "-o", "beginning", "-c", str(n), "-q"],
                            stdout=subprocess.DEVNULL)
            rate("kcat <- logship serve, consume from beginning", n, size, consume)

            batches = ["-X", "batch.num.messages=100", "-X", "linger.ms=50"]
            subprocess.run([*produce, *b, "-t", "plain100", *batches], check=True)
            subprocess.run([*produce, *b, "-t", "zstd100", "-z", "zstd", *batches], check=True)
            plain, packed = disk_bytes(broker.data_dir, "plain100"), disk_bytes(broker.data_dir, "zstd100")
            print(f"bytes on disk per record, batches of 100, uncompressed: {plain / n - size:.2f} overhead "
                  f"({plain / n:.1f} total per {size}-byte record)")
            print(f"bytes on disk, batches of 100, zstd: {packed / (n * size):.3f} of the raw bytes")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()

"""Broker CPU per record, side by side: kcat into two checkouts' `logship serve`, one after the other.

    python bench/broker_cpu.py [OTHER_CHECKOUT] [--records 1000000] [--rounds 3]

Wall-clock throughput on a shared machine swings by a factor of two from run to run; the CPU
seconds the broker process spends taking the same records (from /proc/PID/stat) swing far less,
so this is the figure to compare when a change touches the produce path (such as checking every
record of a produced batch). For each checkout (this one, and OTHER_CHECKOUT if given, e.g. a
`git worktree` of the commit before) and round, kcat produces the same lines three ways: plain,
with a key, and zstd-compressed; the broker's CPU seconds and the wall time are printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logship.cli.bench import log_lines  # noqa: E402

WAYS = (("plain", []), ("keyed", ["-k", "key"]), ("zstd", ["-z", "zstd"]))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(root: Path, lines: Path, tmp: Path) -> list[tuple[str, float, float]]:
    """Start `logship serve` from `root` (its own package first on PYTHONPATH), produce, stop it."""
    data_dir = tmp / f"data-{time.monotonic_ns()}"
    broker = subprocess.Popen([sys.executable, "-m", "logship", "serve", "--data-dir", str(data_dir), "--listen",
                               "127.0.0.1:0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                              cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        for line in broker.stderr:
            if "listening on" in line:
                address = line.rsplit(" ", 1)[1].strip()
                break
        else:
            raise SystemExit(f"logship serve from {root} did not start")
        subprocess.run(["kcat", "-P", "-b", address, "-t", "warm", "-l", str(lines)], check=True)
        found = []
        for name, extra in WAYS:
            cpu, start = cpu_seconds(broker.pid), time.perf_counter()
            subprocess.run(["kcat", "-P", "-b", address, "-t", name, "-l", str(lines), "-X", "linger.ms=5",
                            "-X", "queue.buffering.max.messages=1000000", *extra], check=True)
            found.append((name, cpu_seconds(broker.pid) - cpu, time.perf_counter() - start))
        return found
    finally:
        broker.terminate()
        broker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", nargs="?", type=Path, help="another checkout to compare with")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    roots = [ROOT] + ([args.other.resolve()] if args.other else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = tmp / "lines.txt"
        lines.write_bytes(log_lines(args.records, 200))
        print(f"{args.records:,} records of 200 bytes; broker CPU seconds (wall seconds)")
        for _ in range(args.rounds):
            for root in roots:
                figures = "  ".join(f"{name} {cpu:.2f} ({wall:.2f})" for name, cpu, wall in measure(root, lines, tmp))
                print(f"{str(root):<40} {figures}")


if __name__ == "__main__":
    main()

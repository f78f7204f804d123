"""The broker's check of a produced batch, per batch shape: this checkout against a git revision, side by side.

    python bench/validate.py [--baseline REV] [--records 500] [--batches 200] [--rounds 5]

Times storage/validate.py's validate_batches(client=True) (header, CRC, attributes and every
record against what the header claims) on the same batches with this checkout's code and with
REV's (default `main`), extracted by `git archive` and imported under another package name so
that both run in one process, alternately, round after round. Prints, per shape, the best
microseconds per batch of each and their ratio (new / old; below 1 is faster). The shapes are
what producers send: values of log-line lengths with spread timestamps (plain), with a key
(keyed), with two headers (headers), zstd-compressed (compressed), and values sharing one
timestamp (one-timestamp, what `logship produce` and a burst from kcat send).
"""

from __future__ import annotations

import argparse
import importlib
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logship import records  # noqa: E402
from logship.compression import ZSTD  # noqa: E402
from logship.storage.validate import validate_batches  # noqa: E402

NOW = 1_780_000_000_000
LIMIT = 16 << 20


def baseline(revision: str, into: Path):
    """validate_batches of `revision`'s logship package, imported as package `logship_baseline`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "logship"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "logship").rename(into / "logship_baseline")
    sys.path.insert(0, str(into))
    return importlib.import_module("logship_baseline.storage.validate").validate_batches


def shapes(count: int) -> dict[str, bytes]:
    """One batch of `count` records per shape, from the same pseudo-random log lines."""
    rng = random.Random(12)
    lines = [b"%s host-%d app[%d]: " % (b"2026-12-05T07:%02d:%02d" % (i // 60 % 60, i % 60), rng.randrange(9),
                                          rng.randrange(99999)) + b"x" * rng.randrange(20, 180) for i in range(count)]
    stamps = [NOW + i // 40 for i in range(count)]
    keys = [b"host-%d" % rng.randrange(50) for _ in range(count)]
    headers = [("source", b"agent"), ("line", b"%d")]
    return {
        "plain": records.build_batch([(t, None, v, ()) for t, v in zip(stamps, lines)]),
        "keyed": records.build_batch([(t, k, v, ()) for t, k, v in zip(stamps, keys, lines)]),
        "headers": records.build_batch([(t, None, v, headers) for t, v in zip(stamps, lines)]),
        "compressed": records.build_batch([(t, None, v, ()) for t, v in zip(stamps, lines)], compression=ZSTD),
        "one-timestamp": records.build_batch_values(lines, NOW),
    }


def per_batch(validate, batch: bytearray, batches: int) -> float:
    """Microseconds per batch of one timed run of `batches` validations."""
    start = time.perf_counter()
    for _ in range(batches):
        validate(batch, LIMIT, client=True)
    return (time.perf_counter() - start) / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with (default main)")
    parser.add_argument("--records", type=int, default=500, help="records per batch")
    parser.add_argument("--batches", type=int, default=200, help="validations per timed run")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each, alternately")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = baseline(args.baseline, Path(tmp))
        print(f"{args.records} records per batch; best of {args.rounds} runs of {args.batches} batches; "
              f"old = {args.baseline}")
        print(f"{'shape':<14} {'bytes':>7} {'old us':>9} {'new us':>9} {'new/old':>8}")
        batches = {name: bytearray(batch) for name, batch in shapes(args.records).items()}
        times: dict = {(name, validate): [] for name in batches for validate in (old, validate_batches)}
        for batch in batches.values():
            old(batch, LIMIT, client=True)  # both accept it, and warm their tables
            validate_batches(batch, LIMIT, client=True)
        for _ in range(args.rounds):  # rounds outermost, so that a busy moment hits every figure alike
            for name, batch in batches.items():
                for validate in (old, validate_batches):
                    times[(name, validate)].append(per_batch(validate, batch, args.batches))
        for name, batch in batches.items():
            before, after = min(times[(name, old)]), min(times[(name, validate_batches)])
            print(f"{name:<14} {len(batch):>7} {before:>9.1f} {after:>9.1f} {after / before:>8.2f}")

if __name__ == "__main__":
    main()

"""Storage append throughput beside the machine's own `dd`, measured in the same run.

    python bench/storage.py [--mb 512] [--durable-mb 64] [--threads 4] [--rounds 3] [--dir DIR]

Appends 200-byte records in batches of 100 (prebuilt once and reused: the append is
measured, not the building) into a logship Store, and prints MB/s and records/s for

  page cache   append_batches only, no sync (acks=1);
  durable      --threads threads each appending a batch then sync_to() it (acks=all), so
               concurrent waiters share fdatasyncs (group commit);
  durable/1    one thread, append + sync_to after every batch (no sharing possible);
  flush at end one thread appends everything, then one flush() (fdatasync);

beside dd writing the same number of bytes to a file in the same directory:

  dd bs=1M                       page cache
  dd bs=1M conv=fdatasync        one fdatasync at the end
  dd bs=<batch> conv=fdatasync   the same with batch-sized writes (unaligned, like ours)
  dd bs=<batch> oflag=dsync      a synchronous write per batch-sized block

and the ratio logship/dd. Each measurement runs --rounds times, alternating with the
others, after a dd warm-up (on a VM the first touch of fresh page-cache pages is several
times slower, which would otherwise favour whoever runs second); medians are shown.
The data directory is a temporary one under --dir (default: the
system temp dir), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logship import records  # noqa: E402
from logship.storage import LogConfig, Store  # noqa: E402

RECORDS_PER_BATCH = 100
RECORD_BYTES = 200


def build_batches(count: int) -> list[bytes]:
    """`count` distinct batches of 100 x 200-byte values, as a producer would send them."""
    now = int(time.time() * 1000)
    out = []
    for b in range(count):
        values = [(f"{b:06d}-{i:04d} " * 20).encode()[:RECORD_BYTES] for i in range(RECORDS_PER_BATCH)]
        if hasattr(records, "build_batch_values"):
            out.append(records.build_batch_values(values, now))
        else:
            from kafka.record.default_records import DefaultRecordBatchBuilder
            builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
            for i, value in enumerate(values):
                builder.append(i, timestamp=now, key=None, value=value, headers=[])
            out.append(bytes(builder.build()))
    return out


class CountingSync:
    def __init__(self):
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        os.fdatasync(fd)


def run_store(directory: Path, batches: list[bytes], total: int, threads: int, sync: bool,
              flush_at_end: bool = False) -> tuple[float, int]:
    """(seconds, fdatasyncs) to append `total` batches with `threads` threads, each syncing if `sync`."""
    counter = CountingSync()
    with Store(directory, LogConfig(retention_ms=-1), fdatasync=counter) as store:
        store.create_topic("bench", 1)
        partition = store.partition("bench", 0)
        per_thread = total // threads
        barrier = threading.Barrier(threads + 1)

        def work(k: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                result = partition.append_batches(batches[(k + i) % len(batches)])
                if sync:
                    partition.sync_to(result.log_end_offset)

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        if flush_at_end:
            partition.flush()
        elapsed = time.perf_counter() - start
        assert partition.log_end_offset == per_thread * threads * RECORDS_PER_BATCH
    shutil.rmtree(directory)
    return elapsed, counter.calls


def run_dd(path: Path, block: int, count: int, *flags: str) -> float:
    """Seconds dd reports for writing `count` blocks of `block` bytes of zeros to `path`."""
    cmd = ["dd", "if=/dev/zero", f"of={path}", f"bs={block}", f"count={count}", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"), check=True)
    path.unlink()
    match = re.search(r"copied, ([0-9.e+-]+) s", done.stderr)
    return float(match.group(1))


def report(label: str, nbytes: int, times: list[float], nrecords: int | None = None) -> float:
    """Print the median of `times` (and the spread); returns MB/s at the median."""
    seconds = statistics.median(times)
    mbps = nbytes / seconds / 1e6
    recs = f"{nrecords / seconds:>12,.0f} rec/s" if nrecords else " " * 18
    spread = "/".join(f"{nbytes / t / 1e6:.0f}" for t in times)
    print(f"  {label:<36} {mbps:>9,.1f} MB/s {recs}   (runs: {spread} MB/s)")
    return mbps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=512, help="MB appended in each page-cache run")
    parser.add_argument("--durable-mb", type=int, default=64, help="MB appended in each durable run")
    parser.add_argument("--threads", type=int, default=4, help="appending+syncing threads in the durable run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement, alternated; medians shown")
    parser.add_argument("--dir", default=None, help="where to put the temporary data (same filesystem for dd)")
    args = parser.parse_args()

    batches = build_batches(64)
    batch_bytes = len(batches[0])
    root = Path(tempfile.mkdtemp(prefix="logship-bench-", dir=args.dir))
    try:
        print(f"batches of {RECORDS_PER_BATCH} x {RECORD_BYTES}-byte records: {batch_bytes} bytes each; "
              f"dir {root}; median of {args.rounds} alternated runs")
        n = args.mb * 1_000_000 // batch_bytes // args.threads * args.threads
        nbytes, nrecs = n * batch_bytes, n * RECORDS_PER_BATCH
        run_dd(root / "dd", 1 << 20, nbytes >> 20)  # warm-up: first-touch page costs hit nobody
        ours, dd = [], []
        for _ in range(args.rounds):
            ours.append(run_store(root / "a", batches, n, 1, False)[0])
            dd.append(run_dd(root / "dd", 1 << 20, nbytes >> 20))
        print(f"page cache ({nbytes / 1e6:.0f} MB per run)")
        a = report("logship append_batches", nbytes, ours, nrecs)
        b = report("dd bs=1M", nbytes, dd)
        print(f"  ratio logship/dd: {a / b:.2f}")

        n = args.durable_mb * 1_000_000 // batch_bytes // args.threads * args.threads
        nbytes, nrecs = n * batch_bytes, n * RECORDS_PER_BATCH
        group, single, at_end, dd_end, dd_end_small, dd_sync, rounds = [], [], [], [], [], [], []
        for _ in range(args.rounds):
            at_end.append(run_store(root / "d", batches, n, 1, False, flush_at_end=True)[0])
            seconds, syncs = run_store(root / "b", batches, n, args.threads, True)
            group.append(seconds)
            rounds.append(syncs)
            single.append(run_store(root / "c", batches, n, 1, True)[0])
            dd_end.append(run_dd(root / "dd", 1 << 20, nbytes >> 20, "conv=fdatasync"))
            dd_end_small.append(run_dd(root / "dd", batch_bytes, n, "conv=fdatasync"))
            dd_sync.append(run_dd(root / "dd", batch_bytes, n, "oflag=dsync"))
        print(f"durable ({nbytes / 1e6:.0f} MB per run)")
        g = report(f"logship {args.threads} threads, sync_to each", nbytes, group, nrecs)
        print(f"    ({statistics.median(rounds):.0f} fdatasync rounds for {n} synced appends: group commit)")
        o = report("logship 1 thread, sync_to each", nbytes, single, nrecs)
        f = report("logship 1 thread, one flush() at end", nbytes, at_end, nrecs)
        e = report("dd bs=1M conv=fdatasync", nbytes, dd_end)
        e2 = report(f"dd bs={batch_bytes} conv=fdatasync", nbytes, dd_end_small)
        d = report(f"dd bs={batch_bytes} oflag=dsync", nbytes, dd_sync)
        print(f"  ratio logship flush at end / dd bs=1M conv=fdatasync (one sync at the end, both): {f / e:.2f}")
        print(f"  ratio logship flush at end / dd bs={batch_bytes} conv=fdatasync (same write sizes): {f / e2:.2f}")
        print(f"  ratio logship 1 thread / dd oflag=dsync (a sync per batch, both): {o / d:.2f}")
        print(f"  ratio logship {args.threads} threads / dd oflag=dsync: {g / d:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

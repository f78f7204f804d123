"""The cost of idempotent producing, side by side in one run against one `logship serve`.

    python bench/idempotence.py [--records 1000000] [--size 200] [--rounds 3]

For each round, in alternating order so that a noisy machine hurts both sides alike:
`logship produce` of a file of lines with idempotence on (its default) and with
`--no-idempotence`, and kcat with `-X enable.idempotence=true` and `=false`, each into a
topic of its own. Prints records/s per run and, at the end, the ratio on/off of the medians
for each client (the issue's goal: at least 0.95). kcat runs once more not idempotent with
`max.in.flight=1`: librdkafka's idempotent producer sends one request at a time per partition
(src/rdkafka_broker.c holds rktp_msgs_inflight, a count of messages, to RD_KAFKA_IDEMP_MAX_INFLIGHT,
5 requests), so that is what its idempotent runs can be compared with.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.broker import bench_args, lines_file, timed  # noqa: E402
from logship.broker_process import BrokerProcess, child_env  # noqa: E402


def runs(broker: BrokerProcess, lines: Path, round_: int) -> dict[str, float]:
    """Seconds of each of the four producers for this round, on/off order alternating."""
    logship = [sys.executable, "-m", "logship", "produce", "--brokers", broker.address]
    kcat = ["kcat", "-P", "-b", broker.address, "-l", str(lines), "-X", "linger.ms=5",
            "-X", "queue.buffering.max.messages=1000000", "-X", "acks=all"]
    cases = {
        "logship produce, idempotent": lambda t: timed([*logship, t], stdin=lines.open("rb"), env=child_env()),
        "logship produce, --no-idempotence": lambda t: timed([*logship, "--no-idempotence", t],
                                                             stdin=lines.open("rb"), env=child_env()),
        "kcat, enable.idempotence=true": lambda t: timed([*kcat, "-t", t, "-X", "enable.idempotence=true"]),
        "kcat, enable.idempotence=false": lambda t: timed([*kcat, "-t", t, "-X", "enable.idempotence=false"]),
        # librdkafka's idempotent producer keeps one request in flight per partition (it holds
        # its in-flight *message* count to the limit of 5 *requests*): this is that, without it
        "kcat, not idempotent, max.in.flight=1": lambda t: timed([*kcat, "-t", t, "-X", "enable.idempotence=false",
                                                                  "-X", "max.in.flight=1"]),
    }
    order = list(cases)
    if round_ % 2:  # off before on
        order = [order[1], order[0], order[4], order[3], order[2]]
    return {label: cases[label](f"r{round_}-{i}") for i, label in enumerate(order)}


def main() -> None:
    args = bench_args(__doc__.splitlines()[0], 1_000_000)
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = lines_file(tmp, n, args.size)
        broker = BrokerProcess(tmp / "data").start()
        seconds: dict[str, list[float]] = {}
        try:
            print(f"{n:,} records of {args.size} bytes, acks=all, {args.rounds} rounds")
            for round_ in range(args.rounds):
                for label, took in runs(broker, lines, round_).items():
                    seconds.setdefault(label, []).append(took)
                    print(f"round {round_ + 1}  {label:<36} {n / took:>12,.0f} records/s", flush=True)
        finally:
            broker.stop()
        median = {label: statistics.median(values) for label, values in seconds.items()}
        for client, on, off in (("logship produce", "logship produce, idempotent", "logship produce, --no-idempotence"),
                                ("kcat", "kcat, enable.idempotence=true", "kcat, enable.idempotence=false")):
            print(f"{client}: idempotent / not = {median[off] / median[on]:.2f} (medians)")
        one = median["kcat, not idempotent, max.in.flight=1"]
        print(f"kcat: idempotent / not idempotent with one request in flight = {one / median['kcat, enable.idempotence=true']:.2f}"
              " (librdkafka idempotent against its non-idempotent mode held to the same one request in flight)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

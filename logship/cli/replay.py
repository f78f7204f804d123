"""`logship replay TOPIC --from SPEC [--to SPEC]`: re-read a range, to stdout or into a topic."""

from __future__ import annotations

import re
import sys
import time

import click

from .consume import offset_spec, output_options
from .options import TOPIC, brokers_option, cluster_for, no_idempotence_option, producer_limits
from .output import DEFAULT_FORMAT, record_sink
from .progress import Progress
from .record_writer import write_all


def parse_speed(text: str) -> float | None:
    """`max` -> None (no pacing); `1x`, `10x`, `0.5x` -> the factor."""
    if text == "max":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)x", text)
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a speed (examples: 1x, 10x, max)", param_hint="--speed")
    return float(match.group(1))


class Pacer:
    """Sleeps so records come out spaced as their timestamps were, `speed` times faster."""

    def __init__(self, speed: float | None):
        self.speed = speed
        self.origin: tuple[float, int] | None = None

    def wait_for(self, timestamp_ms: int) -> None:
        if self.speed is None:
            return
        if self.origin is None:
            self.origin = (time.monotonic(), timestamp_ms)
            return
        due = self.origin[0] + (timestamp_ms - self.origin[1]) / 1000 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@click.command()
@click.argument("topic", type=TOPIC)
@brokers_option
@click.option("--from", "start", required=True, metavar="SPEC",
              help="First record: N, -N, beginning, @TIME (@2026-11-24T10:00Z, @-1h).")
@click.option("--to", "end", default=None, metavar="SPEC",
              help="Stop before this offset or time; replay never reads past the end as it was when it started.")
@click.option("--into", type=TOPIC, metavar="TOPIC", help="Produce the records into TOPIC (keys, headers, timestamps kept).")
@click.option("--speed", default="max", show_default=True,
              help="Pace as the records were originally spaced: 1x, 10x ..., or max (no pacing).")
@click.option("-p", "--partition", "partitions", type=click.IntRange(min=0, max=2**31 - 1), multiple=True,
              help="Only this partition (repeatable); default all.")
@click.option("--format", "fmt", default=DEFAULT_FORMAT, show_default=True,
              help="Output format, as `logship consume -f` (%v %k %t %p %o %T %h).")
@no_idempotence_option
@output_options
def replay(topic, brokers, start, end, into, speed, partitions, fmt, as_json, grep, no_idempotence) -> None:
    """Re-read the records of TOPIC in a range of offsets or times.

    Prints them like `logship consume`, or with --into re-produces them into another
    topic. --speed 1x re-creates the original pacing from the record timestamps.

    \b
    Examples:
      logship replay web-logs --from @-1h
      logship replay web-logs --from @2026-11-24T10:00Z --to @2026-11-24T11:00Z --json
      logship replay web-logs --from @-15m --into web-logs-debug --speed 10x
    """
    from ..client.consumer import Consumer

    pacer = Pacer(parse_speed(speed))
    first, last = offset_spec(start, "--from"), offset_spec(end, "--to") if end else None
    sink = record_sink(sys.stdout.buffer, fmt, as_json, grep)
    cluster = cluster_for(brokers)
    with Consumer(cluster, topic, list(partitions) or None,
                  offset_reset="error" if partitions else "clamp", start=first, end=last,
                  stop_at_end=True) as consumer:
        if into:
            _replay_into(consumer, cluster, into, sink.keep, pacer, idempotence=False if no_idempotence else None)
            return
        if pacer.speed is None:
            write_all(consumer, sink)
            return
        while not consumer.finished:
            for record in consumer.poll():
                pacer.wait_for(record.timestamp)
                sink.write([record])


def _replay_into(consumer, cluster, topic: str, keep, pacer: Pacer, idempotence: bool | None = None) -> None:
    from ..client.producer import Producer

    progress = Progress("replayed")
    with Producer(cluster, acks="all", idempotence=idempotence, **producer_limits(0)) as producer:
        while not consumer.finished:
            for record in keep(consumer.poll()):
                pacer.wait_for(record.timestamp)
                producer.send(topic, record.value, record.key, record.headers, timestamp_ms=record.timestamp)
                progress.add(1, len(record.value or b""))
    progress.done()

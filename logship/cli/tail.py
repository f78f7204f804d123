"""`logship tail TOPIC`: the last records across partitions, in timestamp order; `-f` follows."""

from __future__ import annotations

import sys

import click

from .consume import output_options
from .options import TOPIC, brokers_option, cluster_for
from .output import DEFAULT_FORMAT, IDLE_CHECK_S, record_sink


def _order(record) -> tuple[int, int, int]:
    return record.timestamp, record.partition, record.offset


@click.command()
@click.argument("topic", type=TOPIC)
@brokers_option
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the last records to print.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records until interrupted, like tail -f.")
@click.option("-p", "--partition", "partitions", type=click.IntRange(min=0, max=2**31 - 1), multiple=True,
              help="Only this partition (repeatable); default all.")
@click.option("--format", "fmt", default=DEFAULT_FORMAT, show_default=True,
              help="Output format, as `logship consume -f` (%v %k %t %p %o %T %h).")
@output_options
def tail(topic, brokers, count, follow, partitions, fmt, as_json, grep) -> None:
    """Print the last records of TOPIC, merged across partitions in timestamp order.

    Reads the last N records of every partition and prints the N newest of them, oldest
    first. With -f it then prints each new record as it arrives.

    \b
    Examples:
      logship tail web-logs
      logship tail web-logs -n 50 --json
      logship tail -f web-logs --grep ERROR
    """
    from ..client.consumer import Consumer
    from ..errors import DamagedBatchError

    sink = record_sink(sys.stdout.buffer, fmt, as_json, grep)
    with Consumer(cluster_for(brokers), topic, list(partitions) or None,
                  offset_reset="error" if partitions else "clamp", start=f"-{count}",
                  stop_at_end=not follow) as consumer:
        ends = consumer.stop_offsets() if not follow else consumer.end_offsets()
        recent, damaged = [], None
        try:
            while not consumer.finished and any(consumer.positions()[p] < end for p, end in ends.items()):
                recent += consumer.poll(0.5)
        except DamagedBatchError as exc:  # print what came before it, then report it
            damaged = exc
        recent.sort(key=_order)
        sink.write(recent[len(recent) - count:] if count else [])
        if damaged is not None:
            raise damaged
        while follow:
            records = consumer.poll(IDLE_CHECK_S)
            if not records:
                sink.check_reader()
            sink.write(records)

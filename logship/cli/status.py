"""`logship status`: is the cluster healthy? A table per broker, and an exit status for cron
jobs and monitoring checks (0 healthy, 1 degraded, 3 unreachable: client/health.py says what
each means)."""

from __future__ import annotations

import json

import click
from tabulate import tabulate

from .options import brokers_option, cluster_for, json_option
from .units import size_text


@click.command()
@click.pass_context
@brokers_option
@click.option("--min-free", type=click.FloatRange(0, 100), default=10.0, show_default=True,
              help="Percent of a broker's volume that must stay free; less is degraded.")
@json_option
def status(ctx, brokers, min_free, as_json) -> None:
    """Check every broker: does it answer, its version, topics and partitions, disk.

    Exit status: 0 healthy; 1 degraded (a broker does not answer, a partition is offline or
    under-replicated, or a volume has less than --min-free percent free); 3 when no broker
    answers. Works against Apache Kafka too (its disk figures need Kafka 3.3+).

    \b
    Examples:
      logship status
      logship status --brokers 10.0.0.1:9092,10.0.0.2:9092 --json | jq .status
      logship status -b kafka1:9092 >/dev/null || echo "needs a look"
    """
    from ..client.health import check

    with cluster_for(brokers) as cluster:
        health = check(cluster, min_free=min_free / 100)
    if as_json:
        click.echo(json.dumps(health.to_json()))
    else:
        _print(health)
    ctx.exit(int(health.status))


def _print(health) -> None:
    rows = []
    for b in health.brokers:
        free = b.free_fraction
        rows.append([b.node_id, b.address, "up" if b.up else "down", b.version or "-",
                     b.topics if b.up else "-", f"{b.leaders}/{b.partitions}" if b.up else "-",
                     size_text(b.used_bytes) if b.up else "-",
                     "-" if free is None else f"{size_text(b.usable_bytes)} ({free:.0%})"])
    if rows:
        click.echo(tabulate(rows, headers=["broker", "address", "state", "version", "topics",
                                           "led/held", "used", "free"]))
    for problem in health.problems:
        click.echo(f"problem: {problem}")
    click.echo(f"status: {health.status.name.lower()}")

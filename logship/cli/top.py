"""`logship top`: a live view of a cluster's traffic and consumer groups, refreshed every
second, from client/traffic.py (Kafka protocol only). In a terminal: curses, with keys to
switch views and sort; elsewhere (a pipe, a cron job): one snapshot over one interval, as
tables or --json."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import click
from tabulate import tabulate

from .options import brokers_option, cluster_for, json_option
from .top_table import ASCII_BARS, VIEWS, rows

@click.command()
@brokers_option
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--view", type=click.Choice(VIEWS), default="topics", show_default=True, help="The view to start with.")
@click.option("--internal", is_flag=True, help="Show internal topics (__consumer_offsets) too.")
@json_option
def top(brokers, interval, view, internal, as_json) -> None:
    """A live view of topics (records/s and MB/s in and out), partitions and consumer groups.

    Rates come from log end offsets (in), partition sizes (bytes in), and groups' committed
    offsets (out; bytes out estimated from the partitions' bytes per record), so it works
    against Apache Kafka too. Keys: t p g (or Tab) switch views; n i o l s sort by name, in,
    out, lag, size; q quits. Without a terminal, or with --json, it prints one snapshot taken
    over one interval and exits.

    \b
    Examples:
      logship top
      logship top -b kafka1:9092 --view groups
      logship top --json | jq '.topics[] | {name, records_in}'
    """
    from ..client.traffic import Traffic

    with cluster_for(brokers) as cluster:
        traffic = Traffic(cluster, internal=internal)
        traffic.sample()  # the first sample's errors (no broker at all) end the command here
        if as_json or not (sys.stdout.isatty() and sys.stdin.isatty()):
            time.sleep(interval)
            _print_once(traffic.sample(), as_json)
            return
        from .top_screen import run

        run(traffic, interval, view, cluster.brokers)


def _print_once(snapshot, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"time": snapshot.at, "interval": snapshot.interval,
                               "topics": [asdict(t) for t in snapshot.topics],
                               "partitions": [asdict(p) for p in snapshot.partitions],
                               "groups": [asdict(g) for g in snapshot.groups], "errors": snapshot.errors}))
        return
    for view in ("topics", "groups"):
        headers, table = rows(snapshot, view, "n", bars=ASCII_BARS)
        if table:
            click.echo(tabulate(table, headers=headers))
            click.echo()
    for error in snapshot.errors:
        click.echo(f"logship top: {error}", err=True)

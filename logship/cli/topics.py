"""`logship topics list|create|describe|delete`."""

from __future__ import annotations

import json

import click
from tabulate import tabulate

from .options import brokers_option, cluster_for, json_option


def _admin(brokers):
    from ..client.admin import Admin

    return Admin(cluster_for(brokers))


@click.group()
def topics() -> None:
    """List, create, describe and delete topics.

    \b
    Examples:
      logship topics list
      logship topics create web-logs --partitions 3
      logship topics describe web-logs --json
      logship topics delete web-logs
    """


@topics.command("list")
@brokers_option
@json_option
@click.option("--internal", is_flag=True, help="Also list internal topics such as __consumer_offsets.")
def list_topics(brokers, as_json, internal) -> None:
    """List topic names, one per line.

    \b
    Example:
      logship topics list --json | jq -r 'select(.partitions > 1) | .topic'
    """
    with _admin(brokers) as admin:
        found = admin.list_topics(internal=internal)
    for name in sorted(found):
        click.echo(json.dumps({"topic": name, "partitions": found[name]}) if as_json else name)


@topics.command()
@click.argument("name")
@brokers_option
@click.option("-p", "--partitions", type=click.IntRange(min=1), default=None,
              help="Number of partitions (default: the broker's, `logship serve --partitions`).")
@click.option("-r", "--replication-factor", type=click.IntRange(min=1), default=None,
              help="Copies of each partition (default: the broker's).")
def create(name, brokers, partitions, replication_factor) -> None:
    """Create topic NAME.

    \b
    Examples:
      logship topics create web-logs --partitions 3
      logship topics create audit
    """
    with _admin(brokers) as admin:
        admin.create_topic(name, -1 if partitions is None else partitions,
                           -1 if replication_factor is None else replication_factor)
        if partitions is None:
            partitions = _partition_count(admin, name)
    count = "the broker's default number of partitions" if partitions is None else \
        f"{partitions} partition{'s' if partitions != 1 else ''}"
    click.echo(f"created topic {name} with {count}", err=True)


def _partition_count(admin, name: str) -> int | None:
    """How many partitions the broker gave a new topic; None when it does not say yet."""
    from ..errors import LogshipError

    try:
        return len(admin.cluster.topic(name, refresh=True).partitions)
    except LogshipError:
        return None


@topics.command()
@click.argument("name")
@brokers_option
@json_option
def describe(name, brokers, as_json) -> None:
    """Show the partitions of NAME: leader, log start and end offsets, records and size.

    \b
    Example:
      logship topics describe web-logs
    """
    with _admin(brokers) as admin:
        partitions = admin.describe_topic(name)
    rows = [{"topic": name, "partition": p.partition, "leader": p.leader, "log_start_offset": p.log_start_offset,
             "log_end_offset": p.log_end_offset, "records": p.records, "size_bytes": p.size_bytes}
            for p in partitions]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(tabulate([[r["partition"], r["leader"], r["log_start_offset"], r["log_end_offset"], r["records"],
                          _size(r["size_bytes"])] for r in rows],
                        headers=["partition", "leader", "log start", "log end", "records", "size"]))


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return str(nbytes)


@topics.command()
@click.argument("name")
@brokers_option
def delete(name, brokers) -> None:
    """Delete topic NAME and all its records.

    \b
    Example:
      logship topics delete web-logs-debug
    """
    with _admin(brokers) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}", err=True)

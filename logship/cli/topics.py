"""`logship topics list|create|describe|alter|config|delete`."""

from __future__ import annotations

import json

import click
from tabulate import tabulate

from ..errors import ConfigError
from . import CommandGroup
from .options import TOPIC, brokers_option, cluster_for, json_option
from .units import size_text


def _admin(brokers):
    from ..client.admin import Admin

    return Admin(cluster_for(brokers))


@click.group(cls=CommandGroup)
def topics() -> None:
    """List, create, describe, alter and delete topics.

    \b
    Examples:
      logship topics list
      logship topics create web-logs --partitions 3
      logship topics describe web-logs --json
      logship topics config web-logs retention.ms=3600000
      logship topics alter web-logs --partitions 6
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
@click.argument("name", type=TOPIC)
@brokers_option
@click.option("-p", "--partitions", type=click.IntRange(min=1, max=2**31 - 1), default=None,
              help="Number of partitions (default: the broker's, `logship serve --partitions`).")
@click.option("-r", "--replication-factor", type=click.IntRange(min=1, max=2**15 - 1), default=None,
              help="Copies of each partition (default: the broker's).")
@click.option("-c", "--config", "configs", multiple=True, metavar="KEY=VALUE",
              help="A topic config, as kafka-topics --config (repeatable); see `logship topics config`.")
def create(name, brokers, partitions, replication_factor, configs) -> None:
    """Create topic NAME.

    \b
    Examples:
      logship topics create web-logs --partitions 3
      logship topics create audit -c retention.ms=-1 -c cleanup.policy=compact
    """
    settings = _assignments(configs, "--config")
    with _admin(brokers) as admin:
        admin.create_topic(name, -1 if partitions is None else partitions,
                           -1 if replication_factor is None else replication_factor, configs=settings)
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
@click.option("--under-replicated", "under_replicated_only", is_flag=True,
              help="Show only partitions with fewer in-sync replicas than replicas.")
def describe(name, brokers, as_json, under_replicated_only) -> None:
    """Show the partitions of NAME: leader, replicas, in-sync replicas, log start and end
    offsets, records and size. A partition with fewer in-sync replicas than replicas is
    marked under-replicated.

    \b
    Examples:
      logship topics describe web-logs
      logship topics describe web-logs --under-replicated --json
    """
    with _admin(brokers) as admin:
        partitions = admin.describe_topic(name)
    if under_replicated_only:
        partitions = [p for p in partitions if p.under_replicated]
    rows = [{"topic": name, "partition": p.partition, "leader": p.leader, "replicas": list(p.replicas),
             "isr": list(p.isr), "under_replicated": p.under_replicated, "log_start_offset": p.log_start_offset,
             "log_end_offset": p.log_end_offset, "records": p.records, "size_bytes": p.size_bytes}
            for p in partitions]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(tabulate([[r["partition"], r["leader"] if r["leader"] >= 0 else "none", _ids(r["replicas"]),
                          _ids(r["isr"]), "under-replicated" if r["under_replicated"] else "", r["log_start_offset"],
                          r["log_end_offset"], r["records"], size_text(r["size_bytes"])] for r in rows],
                        headers=["partition", "leader", "replicas", "isr", "", "log start", "log end", "records",
                                 "size"]))


def _ids(ids: list[int]) -> str:
    return ",".join(map(str, ids))


def _assignments(pairs, param_hint: str) -> dict[str, str]:
    """KEY=VALUE strings -> {KEY: VALUE}; a usage error (exit 2, one line) for anything else."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{param_hint}: expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@topics.command()
@click.argument("name")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--delete", "deleted", multiple=True, metavar="KEY",
              help="Remove the topic's own value of KEY, back to the broker's (repeatable).")
@click.option("--dry-run", is_flag=True, help="Have the broker check the changes without making them.")
@brokers_option
@json_option
def config(name, settings, deleted, dry_run, brokers, as_json) -> None:
    """Show the configs of topic NAME, or change them with KEY=VALUE and --delete KEY.

    Names are Kafka's topic configs: retention.ms, retention.bytes, segment.bytes, segment.ms,
    max.message.bytes, cleanup.policy (delete, compact or both), message.timestamp.type
    (CreateTime or LogAppendTime), delete.retention.ms, min.cleanable.dirty.ratio,
    flush.messages, flush.ms, index.interval.bytes, segment.index.bytes. SOURCE says where a
    value comes from: topic (set here), static-broker (a `logship serve` option) or default.
    Changes print one line per config that changed; they take effect at once and are kept
    across restarts.

    \b
    Examples:
      logship topics config web-logs
      logship topics config web-logs retention.ms=3600000 segment.bytes=104857600
      logship topics config web-logs --delete retention.ms
      logship topics config audit cleanup.policy=compact --json
    """
    changes = _assignments(settings, "KEY=VALUE")
    clash = sorted(set(changes) & set(deleted))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: both set and deleted")
    with _admin(brokers) as admin:
        before = admin.describe_configs(name)
        if not (changes or deleted):
            _print_configs(name, before, as_json)
            return
        admin.alter_configs(name, set=changes, delete=list(deleted), validate_only=dry_run)
        after = before if dry_run else admin.describe_configs(name)
    for key in sorted(set(changes) | set(deleted)):
        old, new = before.get(key), after.get(key)
        old_value = old.value if old else None
        new_value = (new.value if new else None) if not dry_run else changes.get(key, "(default)")
        if old_value == new_value and not dry_run:
            continue
        if as_json:
            click.echo(json.dumps({"topic": name, "name": key, "old": old_value, "new": new_value,
                                   "source": new.source if new and not dry_run else None, "dry_run": dry_run}))
        else:
            click.echo(f"{key}: {old_value} -> {new_value}" + (" (dry run)" if dry_run else ""))


def _print_configs(name: str, entries: dict, as_json: bool) -> None:
    if as_json:
        for e in entries.values():
            click.echo(json.dumps({"topic": name, "name": e.name, "value": e.value, "source": e.source,
                                   "read_only": e.read_only}))
        return
    click.echo(tabulate([[e.name, e.value, e.source] for e in entries.values()], headers=["name", "value", "source"]))


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


@topics.command()
@click.argument("name")
@brokers_option
@click.option("-p", "--partitions", type=click.IntRange(min=1, max=2**31 - 1), required=True,
              help="The new partition count; it can only grow.")
def alter(name, brokers, partitions) -> None:
    """Grow topic NAME to a larger number of partitions.

    Existing records stay where they are; keyed records may go to other partitions from
    now on. A topic never shrinks: a count that is not larger fails (status 1), an unknown
    topic exits with status 4.

    \b
    Example:
      logship topics alter web-logs --partitions 6
    """
    with _admin(brokers) as admin:
        admin.add_partitions(name, partitions)
    click.echo(f"topic {name} now has {partitions} partition{'s' if partitions != 1 else ''}", err=True)

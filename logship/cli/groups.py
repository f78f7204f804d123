"""`logship groups list|describe|delete`: consumer groups, their members and their lag."""

from __future__ import annotations

import json
import sys
import time

import click
from tabulate import tabulate

from . import CommandGroup
from .options import brokers_option, cluster_for, json_option


@click.group(cls=CommandGroup)
def groups() -> None:
    """List consumer groups, describe their members, committed offsets and lag, delete them.

    \b
    Examples:
      logship groups list
      logship groups describe indexer
      logship groups describe indexer --watch
      logship groups delete old-indexer
    """


@groups.command("list")
@brokers_option
@json_option
def list_groups(brokers, as_json) -> None:
    """List consumer groups with their state and number of members.

    A group that only has committed offsets (no member running) is Empty.

    \b
    Example:
      logship groups list --json | jq -r 'select(.state == "Empty") | .group'
    """
    from ..client.groups_admin import list_groups as list_all

    with cluster_for(brokers) as cluster:
        found = list_all(cluster)
    if as_json:
        for g in found:
            click.echo(json.dumps({"group": g.group_id, "state": g.state, "members": len(g.members),
                                   "protocol_type": g.protocol_type}))
        return
    if not found:
        click.echo("no consumer groups", err=True)
        return
    click.echo(tabulate([[g.group_id, g.state, len(g.members)] for g in found], headers=["group", "state", "members"]))


def _age(ms: int | None) -> str:
    """Milliseconds for people: 0s, 850ms, 42s, 3m12s, 5h03m, 2d04h."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _as_json(description, rows) -> dict:
    return {"group": description.group_id, "state": description.state, "protocol_type": description.protocol_type,
            "protocol": description.protocol,
            "members": [{"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host,
                         "assignment": m.assignment} for m in description.members],
            "total_lag": sum(r.lag for r in rows if r.lag is not None),
            "partitions": [{"topic": r.topic, "partition": r.partition, "log_start_offset": r.log_start_offset,
                            "committed_offset": r.committed_offset, "log_end_offset": r.log_end_offset,
                            "lag": r.lag, "lag_ms": r.lag_ms,
                            "member": None if r.member is None else r.member.label} for r in rows]}


def _render(description, rows) -> str:
    total = sum(r.lag for r in rows if r.lag is not None)
    members = len(description.members)
    protocol = f", assignor {description.protocol}" if description.protocol else ""
    head = (f"group {description.group_id}: {description.state}, {members} member{'s' if members != 1 else ''}"
            f"{protocol}, total lag {total:,} record{'s' if total != 1 else ''}")
    if not rows:
        return head + "\n(no committed offsets or assigned partitions)"
    table = [[r.topic, r.partition, r.log_start_offset, "-" if r.committed_offset is None else r.committed_offset,
              r.log_end_offset, "-" if r.lag is None else r.lag, _age(r.lag_ms),
              "-" if r.member is None else r.member.label] for r in rows]
    return head + "\n\n" + tabulate(table, headers=["topic", "partition", "log start", "committed", "log end",
                                                    "lag", "lag time", "member"], disable_numparse=True)


@groups.command()
@click.argument("group")
@brokers_option
@json_option
@click.option("--watch", type=click.FloatRange(min=0.1, max=86_400), is_flag=False, flag_value=2.0, default=None,
              metavar="[SECONDS]", help="Refresh every SECONDS (default 2) until Ctrl-C.")
def describe(group, brokers, as_json, watch) -> None:
    """Show a group's state, members and lag per partition.

    Per partition: log start, committed offset, log end, lag in records and in time (the
    age of the oldest unconsumed record) and the member that owns it (client id/host).

    A group that does not exist exits with status 4. With --watch the description is
    refreshed until Ctrl-C (the screen is cleared between refreshes only on a terminal;
    --json prints one JSON object per refresh). Put --watch after GROUP.

    \b
    Examples:
      logship groups describe indexer
      logship groups describe indexer --json | jq .total_lag
      logship groups describe indexer --watch 5
    """
    from ..client.groups_admin import group_lag

    with cluster_for(brokers) as cluster:
        while True:
            description, rows = group_lag(cluster, group)
            if as_json:
                click.echo(json.dumps(_as_json(description, rows)))
            else:
                if watch is not None and sys.stdout.isatty():
                    click.clear()
                if watch is not None:
                    click.echo(time.strftime("%Y-%m-%d %H:%M:%S"))
                click.echo(_render(description, rows))
                if watch is not None and not sys.stdout.isatty():
                    click.echo("")
            if watch is None:
                return
            sys.stdout.flush()
            time.sleep(watch)


@groups.command()
@click.argument("group", nargs=-1, required=True)
@brokers_option
@click.pass_context
def delete(ctx, group, brokers) -> None:
    """Delete each GROUP and its committed offsets.

    Only a group without active members can be deleted: stop its consumers first. Every
    GROUP is tried; the exit status is that of the first failure: 4 for a group that does not
    exist, 1 for one that has active members.

    \b
    Examples:
      logship groups delete old-indexer
      logship groups list --json | jq -r 'select(.state == "Empty") | .group' | xargs logship groups delete
    """
    from ..client.groups_admin import delete_groups

    with cluster_for(brokers) as cluster:
        results = delete_groups(cluster, list(group))
    status = 0
    for name, error in results.items():
        if error is None:
            click.echo(f"deleted group {name}", err=True)
        else:
            click.echo(f"logship: {error}", err=True)
            status = status or error.exit_status
    ctx.exit(status)

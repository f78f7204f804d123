"""`logship seek GROUP TOPIC[:P,...] --to SPEC | --shift +N|-N`: move an inactive group's offsets."""

from __future__ import annotations

import json
import re

import click
from tabulate import tabulate

from .options import brokers_option, cluster_for, json_option


def _target(text: str) -> tuple[str, list[int] | None]:
    """TOPIC or TOPIC:P[,P...] -> (topic, partitions or None for all); a colon is never part
    of a topic name, so what follows it must be partition numbers."""
    from ..errors import InvalidTopicError
    from ..topic_names import validate_topic_name

    topic, sep, parts = text.rpartition(":")
    if not sep:
        topic = text
    elif not re.fullmatch(r"\d+(,\d+)*", parts):
        raise click.BadParameter(f"{text!r} is not TOPIC or TOPIC:P[,P...] (partition numbers after the colon, "
                                 f"e.g. {topic or 'TOPIC'}:0,2)", param_hint="TOPIC[:P[,P...]]")
    try:
        validate_topic_name(topic)
    except InvalidTopicError as exc:
        raise click.BadParameter(str(exc), param_hint="TOPIC[:P[,P...]]") from None
    return topic, sorted({int(p) for p in parts.split(",")}) if sep else None


def _shift(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise click.BadParameter(f"{text!r} is not a number of records such as -100 or +50", param_hint="--shift")
    return int(text)


@click.command()
@click.argument("group")
@click.argument("target", metavar="TOPIC[:P[,P...]]")
@brokers_option
@click.option("--to", "to", metavar="SPEC",
              help="New position: beginning, end, N, -N (N before the end), @TIME (@2026-11-24T10:00Z, @-1h).")
@click.option("--shift", "shift", metavar="+N|-N", help="Move the committed offsets N records forward (+N) or back (-N).")
@click.option("--dry-run", is_flag=True, help="Only print the moves; change nothing.")
@json_option
def seek(group, target, brokers, to, shift, dry_run, as_json) -> None:
    """Move the committed offsets of an inactive consumer group, so its consumers restart there.

    GROUP's offsets on TOPIC move for all its partitions, or for those listed after a colon.
    The group must be inactive (no member running: state Empty, or a group that does not
    exist yet); otherwise seek refuses, changes nothing and exits with status 1. @TIME moves
    to the first record at or after TIME (the end if there is none). --shift counts from the
    committed offset (from the log start where nothing is committed). New offsets outside the
    log are clamped to [log start, log end], and the table says so. Prints old -> new offsets.

    \b
    Examples:
      logship seek indexer web-logs --to @-1h
      logship seek indexer web-logs:0,2 --to beginning --dry-run
      logship seek indexer web-logs --shift -100
      logship seek indexer web-logs --to end --json
    """
    from ..client.groups_admin import seek as move

    if (to is None) == (shift is None):
        raise click.UsageError("give exactly one of --to SPEC and --shift +N|-N")
    topic, partitions = _target(target)
    if to is not None:
        from .consume import offset_spec

        spec = offset_spec(to, "--to")
        if spec.kind == "stored":
            raise click.BadParameter("use beginning, end, N, -N or @TIME", param_hint="--to")
    with cluster_for(brokers) as cluster:
        moves = move(cluster, group, topic, partitions, to=to, shift=None if shift is None else _shift(shift),
                     dry_run=dry_run)
    if as_json:
        for m in moves:
            click.echo(json.dumps({"group": group, "topic": m.topic, "partition": m.partition,
                                   "old_offset": m.old_offset, "new_offset": m.new_offset,
                                   "requested_offset": m.requested_offset, "clamped": m.clamped,
                                   "log_start_offset": m.log_start_offset, "log_end_offset": m.log_end_offset,
                                   "dry_run": dry_run}))
    else:
        rows = [[m.topic, m.partition, "-" if m.old_offset is None else m.old_offset, "->", m.new_offset,
                 m.log_start_offset, m.log_end_offset,
                 f"clamped from {m.requested_offset}" if m.clamped else ""] for m in moves]
        click.echo(tabulate(rows, headers=["topic", "partition", "old", "", "new", "log start", "log end", "note"],
                            disable_numparse=True))
    verb = "would move" if dry_run else "moved"
    click.echo(f"{verb} the offsets of group {group} on {len(moves)} partition{'s' if len(moves) != 1 else ''}"
               f"{' (dry run: nothing changed)' if dry_run else ''}", err=True)

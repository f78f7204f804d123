"""`logship promote`: move partition leadership to the most complete other in-sync replica
(static mode's manual failover; the work is in logship/cluster/leadership.py)."""

from __future__ import annotations

import json

import click

from . import ExitStatus
from .options import json_option
from .units import DURATION

_CLUSTER_FILE = click.Path(dir_okay=False, exists=True)


def _partition(text: str) -> tuple[str, int]:
    topic, sep, index = text.rpartition(":")
    if not sep or not topic or not index.isdigit():
        raise click.BadParameter(f"expected TOPIC:PARTITION, got {text!r}", param_hint="TOPIC:PARTITION")
    return topic, int(index)


def open_peers(path: str, timeout_ms: int):
    """The cluster file and admin connections to its brokers (secret from FILE.secret)."""
    from ..cluster.leadership import Peers
    from ..cluster_file import load, secret_path
    from ..errors import ConfigError

    cluster = load(path)
    secret_file = secret_path(path)
    try:
        secret = secret_file.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster secret {secret_file}: {exc.strerror or exc} "
                          f"(`logship cluster up` writes it)") from None
    return cluster, Peers(cluster, secret, timeout=timeout_ms / 1000)


def render_moves(moves, as_json: bool, empty: str) -> int:
    """Print what moved (a table, or JSON lines); the exit status (1 if any partition failed)."""
    if as_json:
        for m in moves:
            click.echo(json.dumps({"topic": m.topic, "partition": m.partition, "old_leader": m.old_leader,
                                   "new_leader": m.new_leader, "leader_epoch": m.leader_epoch,
                                   "log_end_offset": m.log_end_offset, "isr": list(m.isr), "error": m.error}))
    elif moves:
        from tabulate import tabulate

        click.echo(tabulate([[m.topic, m.partition, _leader(m.old_leader), _leader(m.new_leader), m.leader_epoch,
                              ",".join(map(str, m.isr)), "failed" if m.error else "done"] for m in moves],
                            headers=["topic", "partition", "from", "to", "leader epoch", "isr", "status"]))
    else:
        click.echo(empty, err=True)
    for m in moves:
        if m.error:
            click.echo(f"{m.topic}:{m.partition}: {m.error}", err=True)
    return ExitStatus.ERROR if any(m.error for m in moves) else ExitStatus.OK


def _leader(broker_id: int) -> str:
    return "none" if broker_id < 0 else str(broker_id)


@click.command()
@click.argument("partitions", nargs=-1, metavar="[TOPIC:PARTITION]...")
@click.option("--away-from", "away_from", type=click.IntRange(0, 2**31 - 1), default=None, metavar="BROKER",
              help="Move every partition this broker leads (of those named, if any).")
@click.option("--cluster", "cluster_path", type=_CLUSTER_FILE, required=True,
              help="The cluster file; the secret is read from FILE.secret beside it.")
@json_option
@click.option("--timeout", "timeout_ms", type=DURATION.within(100, 600_000), default="10s", show_default=True,
              help="How long to wait for each broker to answer.")
def promote(partitions, away_from, cluster_path, as_json, timeout_ms) -> None:
    """Make another in-sync replica the leader of partitions (manual failover).

    Asks every reachable replica for its log end and last epoch, picks the most complete
    in-sync one other than the current leader (or --away-from BROKER), raises the leader
    epoch there first (durably), then tells the other replicas and every broker. From then
    on the old leader cannot acknowledge acks=all writes. Exit status: 0 when every
    partition moved, 1 when one could not, 3 when no broker answered, 4 for an unknown
    partition.

    \b
    Examples:
      logship promote --away-from 2 --cluster cluster.toml
      logship promote web-logs:0 web-logs:3 --cluster cluster.toml --json
    """
    from ..cluster.leadership import promote as promote_partitions

    wanted = [_partition(text) for text in partitions]
    if not wanted and away_from is None:
        raise click.UsageError("name partitions (TOPIC:PARTITION) or --away-from BROKER")
    cluster, peers = open_peers(cluster_path, timeout_ms)
    if away_from is not None:
        cluster.broker(away_from)  # ConfigError for a broker not in the file
    with peers:
        moves = promote_partitions(peers, wanted or None, away_from)
    raise click.exceptions.Exit(render_moves(moves, as_json, "nothing to move"))

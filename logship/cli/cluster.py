"""`logship cluster up|status|down|trust|remove|add`: brokers launched over SSH from a cluster
file, and taken out of (and back into) the in-sync replicas.

Thin: parse, call logship.cluster, render. Per-broker progress goes to stderr prefixed
`broker ID HOST:`; a failed broker is one line there (and, for a broker that did not
start, its log's last lines, indented). Exit status: 0 when every broker did what was
asked; 3 when the only failures were hosts that could not be reached; else 1. A refused
host key is a failure (1) naming the key's fingerprint.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import click

from . import CommandGroup, ExitStatus, describe_error
from .options import json_option
from .units import DURATION

_CLUSTER_FILE = click.Path(dir_okay=False, exists=True)


def _load(path: str):
    from ..cluster_file import load

    return load(path)


_say_lock = threading.Lock()


def _say(spec, line: str) -> None:
    with _say_lock:
        click.echo(f"broker {spec.id} {spec.ssh_host}: {line}", err=True)


def _failure_status(errors: list[BaseException]) -> int:
    from ..errors import HostUnreachableError

    if not errors:
        return ExitStatus.OK
    return ExitStatus.UNAVAILABLE if all(isinstance(e, HostUnreachableError) for e in errors) else ExitStatus.ERROR


def _describe(exc: BaseException) -> str:
    from ..errors import LogshipError

    if isinstance(exc, LogshipError):
        return describe_error(exc)
    return f"internal error ({type(exc).__name__}: {exc})"


@click.group(cls=CommandGroup)
def cluster() -> None:
    """Start, check and stop the brokers of a cluster file over SSH.

    The cluster file (TOML, see examples/cluster.toml) names each broker's SSH target,
    addresses and data directory. Host keys must be in logship's own known_hosts file
    (`logship cluster trust`); unknown and changed keys are refused.

    \b
    Examples:
      logship cluster trust 10.0.0.1 --cluster cluster.toml
      logship cluster up cluster.toml
      logship cluster status cluster.toml
      logship cluster down cluster.toml
      logship cluster remove 3 --cluster cluster.toml
    """


@cluster.command()
@click.argument("file", type=_CLUSTER_FILE)
@click.option("--install", is_flag=True,
              help="Install this logship in a virtualenv on each host (DATA_DIR/venv) and run it from there.")
@click.option("--wheel", type=click.Path(dir_okay=False, exists=True), default=None,
              help="With --install: the wheel to install (default: built from this logship's source).")
@click.option("--wait", "wait_ms", type=DURATION.within(1000, 3_600_000), default="30s", show_default=True,
              help="How long each broker has to start listening.")
def up(file, install, wheel, wait_ms) -> None:
    """Start every broker of cluster FILE on its host.

    Checks that each host runs this logship's version (`remote_logship --version`),
    writes the cluster file and the cluster's secret (made on first use, kept in
    FILE.secret) into each data directory, starts `logship serve` detached and waits for
    it to listen. A broker already running is reported, not started twice.

    \b
    Examples:
      logship cluster up cluster.toml
      logship cluster up cluster.toml --install
    """
    from ..cluster.launch import StartError, up as start_all

    cluster_file = _load(file)
    if wheel is not None and not install:
        raise click.UsageError("--wheel goes with --install")
    with tempfile.TemporaryDirectory(prefix="logship-wheel-") as build:
        outcomes = start_all(cluster_file, file, wheel=_wheel_once(wheel, Path(build)) if install else None,
                             wait_s=wait_ms / 1000, on_line=_say)
    errors = []
    for outcome in outcomes:
        if outcome.ok:
            _say(outcome.spec, f"up, pid {outcome.value.pid}, {outcome.value.listening.removeprefix('logship: ')}")
            continue
        errors.append(outcome.error)
        _say(outcome.spec, f"FAILED: {_describe(outcome.error)}")
        if isinstance(outcome.error, StartError) and outcome.error.log_tail:
            click.echo("\n".join(f"    {line}" for line in outcome.error.log_tail.splitlines()), err=True)
    if errors:
        click.echo(f"logship: {len(errors)} of {len(outcomes)} brokers did not start", err=True)
    raise click.exceptions.Exit(_failure_status(errors))


def _wheel_once(given: str | None, build_dir: Path):
    """A function giving the wheel to install: `given`, else this logship's, built on the
    first call (by whichever broker's thread needs it first); the wheel, or the error that
    building it raised, is shared by the other calls."""
    if given:
        return lambda: Path(given)
    lock, made = threading.Lock(), []

    def wheel() -> Path:
        from ..cluster.install import local_wheel
        from ..errors import LogshipError

        with lock:
            if not made:
                click.echo("logship: building this logship's wheel", err=True)
                try:
                    made.append(local_wheel(build_dir))
                except LogshipError as exc:
                    made.append(exc)
            if isinstance(made[0], LogshipError):
                raise made[0]
            return made[0]

    return wheel


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _lag_cell(view) -> str:
    """Records behind, summed; "+?" when some leaders have not heard from it in their epoch."""
    if view is None or (view.lag is None and not view.unheard):
        return "-"
    if not view.unheard:
        return str(view.lag)
    return "?" if view.lag is None else f"{view.lag}+?"


def _heard_cell(view) -> str:
    if view is None or (view.last_heard_s is None and not view.unheard):
        return "-"
    return "never" if view.unheard else f"{view.last_heard_s:.1f}s"


def _reason(row) -> str | None:
    """Why the host, or the broker, did not answer fully (both when both failed)."""
    return "; ".join(why for why in (row.reason, row.view.error if row.view else None) if why) or None


def _status_json(row) -> dict:
    view = row.view
    worst = view.worst if view else None
    return {
        "broker": row.spec.id, "host": row.spec.ssh_host, "address": row.spec.address, "state": row.state,
        "pid": row.pid, "partitions_led": view.led if view else None,
        "partitions_followed": view.followed if view else None,
        "replication_lag": view.lag if view else None,
        "last_heard_s": round(view.last_heard_s, 3) if view and view.last_heard_s is not None else None,
        "partitions_unheard": view.unheard if view else 0,
        "worst_partition": None if worst is None else {
            "topic": worst.topic, "partition": worst.partition, "leader": worst.leader, "lag": worst.lag,
            "last_heard_s": None if worst.last_heard_s is None else round(worst.last_heard_s, 3)},
        "reason": _reason(row)}


@cluster.command()
@click.argument("file", type=_CLUSTER_FILE)
@json_option
@click.option("--timeout", "timeout_ms", type=DURATION.within(100, 600_000), default="10s", show_default=True,
              help="How long to wait for each host and broker to answer.")
def status(file, as_json, timeout_ms) -> None:
    """Show each broker of cluster FILE: its process, its share of the partitions and how far
    behind its leaders it is.

    STATE is up (running), dead (a pid file but no such process), stopped (no pid file)
    or unreachable (SSH failed). LED and FOLLOWED count partitions from the broker's own
    Metadata answer. REPLICATION LAG is how many records the partitions it follows are
    behind their leaders' log ends (summed), LAST HEARD how long ago its leaders last heard
    a fetch from it (the worst partition), both as its leaders say (Kafka's DescribeQuorum,
    one request per broker); '-' when it follows nothing or its leaders do not answer;
    "never" (and "+?" on the lag) when a leader has heard no fetch from it since it became
    leader. --json gives one object per broker, with the partition it is furthest behind in
    (worst_partition). Exit status: 0 when every broker is up, 3 when a host cannot be
    reached, else 1.

    \b
    Examples:
      logship cluster status cluster.toml
      logship cluster status cluster.toml --json | jq -r 'select(.state != "up") | .broker'
      logship cluster status cluster.toml --json | jq -c '{broker, replication_lag, worst_partition}'
    """
    from ..cluster.peers import status as broker_status

    rows = broker_status(_load(file), timeout_s=timeout_ms / 1000)
    if as_json:
        for row in rows:
            click.echo(json.dumps(_status_json(row)))
    else:
        from tabulate import tabulate

        table = [[row.spec.id, row.spec.ssh_host, row.spec.address, _dash(row.pid), row.state,
                  _dash(row.view.led if row.view else None), _dash(row.view.followed if row.view else None),
                  _lag_cell(row.view), _heard_cell(row.view)]
                 for row in rows]
        click.echo(tabulate(table, headers=["broker", "host", "address", "pid", "state", "partitions led",
                                            "followed", "replication lag", "last heard"]))
        for row in rows:
            reason = _reason(row)
            if reason:
                click.echo(f"broker {row.spec.id}: {reason}", err=True)
    if any(row.state == "unreachable" for row in rows):
        raise click.exceptions.Exit(ExitStatus.UNAVAILABLE)
    raise click.exceptions.Exit(ExitStatus.OK if all(row.state == "up" for row in rows) else ExitStatus.ERROR)


@cluster.command()
@click.argument("file", type=_CLUSTER_FILE)
@click.option("--timeout", "timeout_ms", type=DURATION.within(0, 3_600_000), default="10s", show_default=True,
              help="How long each broker has to exit after SIGTERM before it is sent SIGKILL.")
def down(file, timeout_ms) -> None:
    """Stop every broker of cluster FILE: SIGTERM, then SIGKILL after --timeout.

    Only a process whose command line is this broker's `logship serve` is signalled; a pid
    file naming anything else is reported stale and removed.

    \b
    Examples:
      logship cluster down cluster.toml
      logship cluster down cluster.toml --timeout 30s
    """
    from ..cluster.peers import down as stop_all

    outcomes = stop_all(_load(file), timeout_s=timeout_ms / 1000)
    errors = []
    said = {"terminated": "stopped (SIGTERM), pid {}", "killed": "killed (SIGKILL after --timeout), pid {}",
            "stale": "stale pid file (pid {} is not this broker): removed", "stopped": "was not running"}
    for outcome in outcomes:
        if outcome.ok:
            _say(outcome.spec, said[outcome.value.how].format(outcome.value.pid))
        else:
            errors.append(outcome.error)
            _say(outcome.spec, f"FAILED: {_describe(outcome.error)}")
    raise click.exceptions.Exit(_failure_status(errors))


def _ssh_target(text: str) -> tuple[str, int]:
    from ..addresses import parse_hostport

    try:
        host, port = parse_hostport(text.rpartition("@")[2], 22)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="HOST[:PORT]") from None
    if not host.strip() or text.strip().startswith(":"):
        raise click.BadParameter(f"{text!r} names no host", param_hint="HOST[:PORT]")
    return host, port


@cluster.command()
@click.argument("target", metavar="[HOST[:PORT]]", required=False)
@click.option("--known-hosts", type=click.Path(dir_okay=False), default=None,
              help="The known_hosts file to add to (default: the --cluster file's, else ~/.config/logship/known_hosts).")
@click.option("--cluster", "cluster_path", type=_CLUSTER_FILE, default=None,
              help="Use this cluster file's known_hosts file; without HOST, trust every broker's host.")
@click.option("--replace", is_flag=True, help="Replace a recorded key that changed (after checking why it did).")
@click.option("--timeout", "timeout_ms", type=DURATION.within(100, 600_000), default="10s", show_default=True,
              help="How long to wait for the host.")
def trust(target, known_hosts, cluster_path, replace, timeout_ms) -> None:
    """Show the SSH host key of HOST (port 22 unless given) and trust it.

    Prints the key's SHA256 fingerprint (compare it with `ssh-keygen -lf
    /etc/ssh/ssh_host_ed25519_key.pub` on the host) and adds it to logship's known_hosts.
    With --cluster and no HOST: every broker's host in that file.

    \b
    Examples:
      logship cluster trust 10.0.0.1 --cluster cluster.toml
      logship cluster trust --cluster cluster.toml
      logship cluster trust [fd00::2]:2222 --known-hosts ~/.config/logship/known_hosts
    """
    from ..cluster.trust import trust as trust_host
    from ..cluster_file import DEFAULT_KNOWN_HOSTS

    if known_hosts and cluster_path:
        raise click.UsageError("give --known-hosts or --cluster, not both")
    if target is None and cluster_path is None:
        raise click.UsageError("name a HOST, or give --cluster FILE to trust all its hosts")
    cluster_file = _load(cluster_path) if cluster_path else None
    path = known_hosts or (cluster_file.known_hosts if cluster_file else DEFAULT_KNOWN_HOSTS)
    if target is not None:
        targets = [_ssh_target(target)]
    else:
        targets = list(dict.fromkeys((spec.ssh_host, spec.ssh_port) for spec in cluster_file.brokers))
    for host, port in targets:
        done = trust_host(host, port, path, replace=replace, timeout=timeout_ms / 1000)
        click.echo(f"{done.name} {done.key.type} {done.key.fingerprint}")
        if done.action == "replaced":
            click.echo(f"logship: {done.name}: replaced the old key {done.replaced.fingerprint} in {path}", err=True)
        else:
            click.echo(f"logship: {done.name}: {done.action} in {path}", err=True)


def _one_file(file: str | None, cluster_path: str | None) -> str:
    if (file is None) == (cluster_path is None):
        raise click.UsageError("give the cluster file once: as FILE or as --cluster FILE")
    return file or cluster_path


def _broker_change(command):
    """The arguments and options of `cluster remove` and `cluster add`."""
    for decorate in reversed((
            cluster.command(),
            click.argument("broker", type=click.IntRange(0, 2**31 - 1)),
            click.argument("file", type=_CLUSTER_FILE, required=False),
            click.option("--cluster", "cluster_path", type=_CLUSTER_FILE, default=None,
                         help="The cluster file (or give it as FILE); the secret is read from FILE.secret "
                              "beside it."),
            json_option,
            click.option("--timeout", "timeout_ms", type=DURATION.within(100, 600_000), default="10s",
                         show_default=True, help="How long to wait for each broker and host to answer."))):
        command = decorate(command)
    return command


@_broker_change
def remove(broker, file, cluster_path, as_json, timeout_ms) -> None:
    """Take BROKER out of the in-sync replicas of every partition, and fence it.

    Writes resume without it (acks=all waits for the in-sync replicas only); partitions it
    led move to the most complete other in-sync replica, as `logship promote` does. Its
    replicas stay assigned. The fence (DATA_DIR/fenced, written over SSH) keeps it from
    leading when it comes back; if its host cannot be reached, that is said and the broker
    is removed all the same (then do not start it before `logship cluster add BROKER`).
    Exit status: 0 when done, 1 when a partition could not be changed, 3 when the host
    could not be fenced or no broker answered.

    \b
    Example:
      logship cluster remove 3 cluster.toml
      logship cluster remove 3 --cluster cluster.toml --json
    """
    from ..cluster.leadership import fence_broker, remove_broker
    from ..errors import SshError
    from .promote import open_peers, render_moves

    cluster_file, peers = open_peers(_one_file(file, cluster_path), timeout_ms)
    cluster_file.broker(broker)  # ConfigError for a broker not in the file
    with peers:
        moves = remove_broker(peers, broker)
    status = render_moves(moves, as_json, f"broker {broker} was in no in-sync replica set")
    spec = cluster_file.broker(broker)
    try:
        fence_broker(cluster_file, broker, max((m.leader_epoch for m in moves), default=0), timeout_ms / 1000)
        _say(spec, f"fenced ({spec.data_dir}/fenced): it will not lead until `logship cluster add {broker}`")
    except SshError as exc:
        _say(spec, f"removed but NOT fenced: {_describe(exc)}; do not start it before `logship cluster add {broker}`")
        status = max(status, ExitStatus.UNAVAILABLE)
    raise click.exceptions.Exit(status)


@_broker_change
@click.option("--wait", "wait_ms", type=DURATION.within(0, 3_600_000), default="30s", show_default=True,
              help="How long to wait for its replicas to catch up with the leaders.")
def add(broker, file, cluster_path, as_json, timeout_ms, wait_ms) -> None:
    """Bring a removed BROKER back: clear its fence, put it back into the in-sync replicas
    of each partition once it has caught up there.

    Its replicas catch up from the leaders (they fetch while out of the in-sync replicas);
    each joins them once its log end reaches the leader's high watermark in the leader's
    epoch, waiting up to --wait; acks=all waits for it from then on. A partition still behind
    (or without a leader) fails, saying how far behind: run it again later. It leads nothing
    by this: a partition left without a leader gets one from `logship promote
    TOPIC:PARTITION` (the most complete in-sync replica). Exit status: 0 when done, 1 when a
    partition could not be changed, 3 when its host could not be reached to clear the fence.

    \b
    Example:
      logship cluster add 3 cluster.toml --wait 2m
    """
    from ..cluster.leadership import add_broker, unfence_broker
    from ..errors import SshError
    from .promote import open_peers, render_moves

    cluster_file, peers = open_peers(_one_file(file, cluster_path), timeout_ms)
    spec = cluster_file.broker(broker)
    status = ExitStatus.OK
    try:
        if unfence_broker(cluster_file, broker, timeout_ms / 1000):
            _say(spec, "fence removed")
    except SshError as exc:
        _say(spec, f"cannot clear its fence: {_describe(exc)} (it will not lead until the fence is gone)")
        status = ExitStatus.UNAVAILABLE
    with peers:
        moves = add_broker(peers, broker, wait=wait_ms / 1000)
    raise click.exceptions.Exit(max(status, render_moves(moves, as_json, f"broker {broker} was in every in-sync "
                                                                          f"replica set already")))

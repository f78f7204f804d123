"""`cluster status` and `cluster down`: the brokers' processes on their hosts, over SSH.

`status(cluster)` gives a BrokerStatus per broker: its process state from the pid file and
/proc (remote.py: up / dead / stopped; "unreachable" when SSH fails, with the reason), and,
for a broker that is up, what its own Metadata answer says about it (replication_view.py).
`down(cluster)` stops each broker: SIGTERM, up to `timeout_s` to exit, then SIGKILL; a pid
file whose process is not this broker's `logship serve` is reported stale and removed, and
nothing is signalled.

The replication columns (lag, last heard) come from the leaders' DescribeQuorum answers:
once every broker answered, each broker's view is filled from what its leaders said of it
(replication_view.with_replication), also for a broker that is not running (its lag and
"last heard" keep growing there). All brokers are asked in parallel, one connection each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..cluster_file import BrokerSpec, ClusterFile
from ..errors import HostUnreachableError, SshError
from . import remote
from .connect import host_of
from .parallel import Outcome, for_each_broker
from .replication_view import BrokerView, view_of, with_replication

__all__ = ["BrokerStatus", "Stopped", "status", "down"]


@dataclass(frozen=True)
class BrokerStatus:
    spec: BrokerSpec
    state: str  # "up", "dead" (pid file, no process), "stopped", "unreachable", "error"
    pid: int | None = None
    reason: str | None = None  # why unreachable or error
    view: BrokerView | None = None


def status(cluster: ClusterFile, timeout_s: float = 10.0) -> list[BrokerStatus]:
    """Every broker's status, in the cluster file's order: each host's SSH answer within
    `timeout_s`, then (for a broker up, or a host unreachable) its Metadata within `timeout_s`."""

    def one(spec: BrokerSpec) -> BrokerStatus:
        try:
            with host_of(cluster, spec, timeout_s) as host:
                result = host.run(remote.status_command(spec.data_dir, spec.id), timeout=timeout_s)
            try:
                process = remote.parse_state(result.stdout)
            except ValueError:
                raise SshError(f"{host.where}: status check failed: {result.output or result.status}") from None
        except HostUnreachableError as exc:
            return BrokerStatus(spec, "unreachable", reason=str(exc), view=view_of(spec, timeout_s))
        except SshError as exc:
            return BrokerStatus(spec, "error", reason=str(exc))
        view = view_of(spec, timeout_s) if process.state == "up" else None
        return BrokerStatus(spec, process.state, process.pid, view=view)

    rows = [outcome.value for outcome in for_each_broker(cluster.brokers, one)]
    # a broker not asked (dead, stopped) still gets what its leaders say of it: how far behind
    views = with_replication({row.spec.id: row.view or BrokerView() for row in rows})
    return [replace(row, view=views[row.spec.id]) for row in rows]


@dataclass(frozen=True)
class Stopped:
    how: str  # "terminated", "killed", "stale" (pid file removed), "stopped" (was not running)
    pid: int | None = None


def down(cluster: ClusterFile, timeout_s: float = 10.0, connect_timeout: float = 10.0) -> list[Outcome]:
    """Stop every broker; an Outcome per broker with a Stopped, or the error that stopped it."""

    def one(spec: BrokerSpec) -> Stopped:
        with host_of(cluster, spec, connect_timeout) as host:
            result = host.run(remote.stop_command(spec.data_dir, spec.id, timeout_s), timeout=timeout_s + 15)
        words = result.stdout.split()
        if result.status == 0 and words and words[0] in ("terminated", "killed", "stale") and len(words) == 2:
            return Stopped(words[0], int(words[1]) if words[1].isdigit() else None)
        if result.status == 0 and words == ["stopped"]:
            return Stopped("stopped")
        raise SshError(f"{host.where}: cannot stop broker {spec.id}: {result.output or f'exit status {result.status}'}")

    return for_each_broker(cluster.brokers, one)

"""Leadership in the static mode, changed by the operator: `logship promote`, `cluster remove`
and `cluster add`, over connections authenticated with the cluster secret (principal `admin`).

What is read: each partition's leader, leader epoch, replicas and in-sync replicas from the
Metadata (v7, which carries leader epochs) of every reachable broker, the highest epoch
winning (a partition state's version equals its leader epoch: broker/cluster_metadata.py);
and, from every reachable replica, its log end offset and the epoch of its last batch
(ListOffsets v4 with replica_id -2, which any replica answers to a peer session).

Promotion (per partition): the candidates are the in-sync replicas that answered, never the
one moved away from (`--away-from`, else the current leader) and never a removed one (they
are not in-sync); the most complete wins: highest last epoch, then highest log end, then
the earlier in the replica list. The new state has that leader, the leader epoch (and
version) one above every epoch seen, the same replicas and in-sync replicas. It is sent in
LeaderAndIsr to the new leader FIRST, which persists it before it answers; only if that
succeeded to the other reachable replicas, then as an UpdateMetadata delta to every reachable
broker (the controller passes it on to the others). From then on the old leader cannot
gather an acknowledgement: acks=all waits for every in-sync replica, and they follow the
new leader's epoch.

Removal takes a broker out of the in-sync replicas of every partition it replicates
(replicas stay: removed = replicas - isr), moving leadership away from it as promotion does
(a partition with no in-sync replica left has no leader), then writes the fence marker in its
data directory over SSH (fence.py). Adding back (`cluster add`) clears the fence and puts the
broker back into the in-sync replicas (its replica catches up from where it was; acks=all
waits for it once it is in). It never makes it a leader: a partition left without one (all
its in-sync replicas removed) stays so until `logship promote TOPIC:PARTITION` picks the most
complete in-sync replica, so adding back a stale replica first cannot lose what another
one acknowledged alone (no unclean election).
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, replace

from ..client.connection import Connection
from ..cluster_file import ClusterFile
from ..errors import BrokerUnavailableError, LogshipError, UnknownTopicError, error_for_code
from ..protocol import ApiKey
from ..protocol.apis.interbroker import leader_and_isr_body, update_metadata_body
from .connect import host_of
from .fence import clear_fence, write_fence

__all__ = ["PartitionView", "Move", "Peers", "promote", "remove_broker", "add_broker", "read_states",
           "fence_broker", "unfence_broker"]

ADMIN = "admin"
NO_LEADER = -1
METADATA_VERSION = 7  # the first with leader epochs
LIST_OFFSETS_VERSION = 4
REPLICA_LOG_END = -2  # ListOffsets replica_id: a replica's log end and last epoch (logship-private)
Key = tuple[str, int]


@dataclass(frozen=True)
class PartitionView:
    """A partition state as promote handles it (broker's PartitionState: version = epoch)."""

    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def version(self) -> int:
        return self.leader_epoch

    @property
    def removed(self) -> tuple[int, ...]:
        return tuple(r for r in self.replicas if r not in self.isr)


@dataclass
class Move:
    """What happened to one partition: `error` is None when the new state took effect."""

    topic: str
    partition: int
    old_leader: int
    new_leader: int
    leader_epoch: int
    log_end_offset: int = -1
    isr: tuple[int, ...] = ()
    error: str | None = None


class Peers:
    """Admin-authenticated connections to the brokers of a cluster file, opened on first use;
    `unreachable` says why a broker could not be used."""

    def __init__(self, cluster: ClusterFile, secret: bytes, timeout: float = 10.0):
        self.cluster, self._secret, self.timeout = cluster, secret, timeout
        self._connections: dict[int, Connection] = {}
        self.unreachable: dict[int, str] = {}

    def __call__(self, broker_id: int) -> Connection | None:
        if broker_id in self.unreachable:
            return None
        if broker_id not in self._connections:
            host, port = self.cluster.broker(broker_id).advertise
            try:
                conn = Connection(host, port, client_id="logship-admin", timeout=self.timeout,
                                  connect_timeout=min(self.timeout, 5.0))
                conn.authenticate(ADMIN, self._secret)
            except LogshipError as exc:
                self.unreachable[broker_id] = str(exc)
                return None
            self._connections[broker_id] = conn
        return self._connections[broker_id]

    def request(self, broker_id: int, api_key: int, body: dict, version: int) -> dict | None:
        """The answer of `broker_id`, or None (then noted unreachable)."""
        conn = self(broker_id)
        if conn is None:
            return None
        try:
            return conn.request(api_key, body, version)
        except LogshipError as exc:
            self.unreachable[broker_id] = str(exc)
            self._connections.pop(broker_id).close()
            return None

    def reachable(self) -> list[int]:
        return [b for b in self.cluster.ids if self(b) is not None]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def __enter__(self) -> "Peers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_states(peers: Peers) -> dict[Key, PartitionView]:
    """Every partition's state, the highest epoch among the reachable brokers' answers."""
    states: dict[Key, PartitionView] = {}
    answered = False
    for broker_id in peers.cluster.ids:
        meta = peers.request(broker_id, ApiKey.METADATA, {"topics": None, "allow_auto_topic_creation": False},
                             METADATA_VERSION)
        if meta is None:
            continue
        answered = True
        for topic in meta["topics"]:
            for p in topic["partitions"] if topic["error_code"] == 0 else ():
                view = PartitionView(p["leader_id"], p["leader_epoch"], tuple(p["replica_nodes"]),
                                     tuple(p["isr_nodes"]))
                key = (topic["name"], p["partition_index"])
                if key not in states or view.leader_epoch > states[key].leader_epoch:
                    states[key] = view
    if not answered:
        reasons = "; ".join(f"broker {b}: {why}" for b, why in sorted(peers.unreachable.items()))
        raise BrokerUnavailableError(f"no broker of the cluster answered ({reasons})")
    return states


def _positions(peers: Peers, states: dict[Key, PartitionView]) -> dict[Key, dict[int, tuple[int, int]]]:
    """(topic, partition) -> replica -> (last batch epoch, log end offset), for those that answered."""
    found: dict[Key, dict[int, tuple[int, int]]] = {key: {} for key in states}
    for broker_id in peers.cluster.ids:
        keys = sorted(k for k, view in states.items() if broker_id in view.replicas)
        if not keys:
            continue
        topics: dict[str, list[dict]] = {}
        for topic, index in keys:
            topics.setdefault(topic, []).append({"partition_index": index, "current_leader_epoch": -1,
                                                 "timestamp": -1})
        answer = peers.request(broker_id, ApiKey.LIST_OFFSETS, {
            "replica_id": REPLICA_LOG_END, "isolation_level": 0,
            "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()]}, LIST_OFFSETS_VERSION)
        for topic in (answer or {}).get("topics", ()):
            for p in topic["partitions"]:
                key = (topic["name"], p["partition_index"])
                if p["error_code"] == 0 and key in found:
                    found[key][broker_id] = (p["leader_epoch"], p["offset"])
    return found


def _choose(view: PartitionView, positions: dict[int, tuple[int, int]], away: int) -> int | None:
    candidates = [r for r in view.isr if r != away and r in positions]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (*positions[r], -view.replicas.index(r)))


def _describe_unreachable(peers: Peers, brokers) -> str:
    down = [b for b in brokers if b in peers.unreachable]
    return ", ".join(f"{b} ({peers.unreachable[b]})" for b in down) or "none"


def _send(peers: Peers, changes: dict[Key, PartitionView], moves: dict[Key, Move], first: dict[Key, int]) -> None:
    """LeaderAndIsr to `first[key]` (the new leader) first; then to the other replicas of what
    took there; then the UpdateMetadata delta to every reachable broker."""
    cluster = peers.cluster
    live = [(b.id, *b.advertise) for b in cluster.brokers]
    for broker_id in sorted(set(first.values())):
        share = {k: changes[k] for k, b in first.items() if b == broker_id}
        answer = peers.request(broker_id, ApiKey.LEADER_AND_ISR, leader_and_isr_body(-1, share, live), 2)
        if answer is None or answer["error_code"]:
            why = peers.unreachable.get(broker_id) or error_for_code(answer["error_code"])
            for key in share:
                moves[key].error = f"broker {broker_id} did not take the new state: {why}"
            continue
        for error in answer["partition_errors"]:
            key = (error["topic_name"], error["partition_index"])
            if error["error_code"] and key in moves:
                moves[key].error = f"broker {broker_id} refused the new state: {error_for_code(error['error_code'])}"
    done = {k: v for k, v in changes.items() if moves[k].error is None}
    for broker_id in cluster.ids:
        share = {k: v for k, v in done.items() if broker_id in v.replicas and first.get(k) != broker_id}
        if share:
            peers.request(broker_id, ApiKey.LEADER_AND_ISR, leader_and_isr_body(-1, share, live), 2)
    if done:
        topics: dict[str, dict[int, PartitionView]] = {}
        for (topic, index), view in done.items():
            topics.setdefault(topic, {})[index] = view
        body = update_metadata_body(-1, -1, topics, live)
        for broker_id in cluster.ids:
            peers.request(broker_id, ApiKey.UPDATE_METADATA, body, 5)


def _targets(states: dict[Key, PartitionView], wanted: list[Key] | None, away_from: int | None) -> list[Key]:
    if wanted:
        missing = [k for k in wanted if k not in states]
        if missing:
            raise UnknownTopicError(f"no partition {missing[0][0]}:{missing[0][1]} in the cluster")
        return [k for k in wanted if away_from is None or states[k].leader == away_from]
    return sorted(k for k, view in states.items() if view.leader == away_from)


def promote(peers: Peers, wanted: list[Key] | None = None, away_from: int | None = None) -> list[Move]:
    """Move the leadership of `wanted` (or of every partition led by `away_from`) to the most
    complete other in-sync replica; a Move per partition (its `error` says what failed)."""
    states = read_states(peers)
    targets = _targets(states, wanted, away_from)
    positions = _positions(peers, {k: states[k] for k in targets})
    moves, changes, first = {}, {}, {}
    for key in targets:
        view = states[key]
        away = view.leader if away_from is None else away_from
        chosen = _choose(view, positions[key], away)
        epoch = max([view.leader_epoch, *(e for e, _ in positions[key].values())]) + 1
        move = Move(key[0], key[1], view.leader, chosen if chosen is not None else NO_LEADER, epoch,
                    positions[key].get(chosen, (-1, -1))[1], view.isr)
        moves[key] = move
        if chosen is None:
            others = [r for r in view.isr if r != away]
            move.error = ("no other in-sync replica (`logship cluster add` one back first)" if not others else
                          f"no other in-sync replica answered (unreachable: {_describe_unreachable(peers, others)})")
            continue
        changes[key] = replace(view, leader=chosen, leader_epoch=epoch)
        first[key] = chosen
    _send(peers, changes, moves, first)
    return [moves[k] for k in targets]


def remove_broker(peers: Peers, broker_id: int) -> list[Move]:
    """Take `broker_id` out of the in-sync replicas of every partition (leaders move away)."""
    peers.cluster.broker(broker_id)  # ConfigError if unknown
    states = read_states(peers)
    targets = sorted(k for k, view in states.items() if broker_id in view.isr)
    positions = _positions(peers, {k: states[k] for k in targets})
    moves, changes, first = {}, {}, {}
    for key in targets:
        view = states[key]
        isr = tuple(r for r in view.isr if r != broker_id)
        epoch = max([view.leader_epoch, *(e for e, _ in positions[key].values())]) + 1
        leader = view.leader
        if leader == broker_id or leader == NO_LEADER:
            chosen = _choose(view, positions[key], broker_id)
            leader = chosen if chosen is not None else NO_LEADER
        new = PartitionView(leader, epoch, view.replicas, isr)
        moves[key] = Move(key[0], key[1], view.leader, leader, epoch, positions[key].get(leader, (-1, -1))[1], isr)
        changes[key] = new
        reachable_isr = [r for r in isr if peers(r) is not None]
        if leader != NO_LEADER:
            first[key] = leader
        elif reachable_isr:
            first[key] = reachable_isr[0]
        elif isr:
            moves[key].error = f"no in-sync replica answered (unreachable: {_describe_unreachable(peers, isr)})"
    _send(peers, changes, moves, first)
    return [moves[k] for k in targets]


def add_broker(peers: Peers, broker_id: int) -> list[Move]:
    """Put `broker_id` back into the in-sync replicas of every partition it replicates."""
    peers.cluster.broker(broker_id)
    states = read_states(peers)
    targets = sorted(k for k, view in states.items() if broker_id in view.replicas and broker_id not in view.isr)
    moves, changes, first = {}, {}, {}
    for key in targets:
        view = states[key]
        isr = tuple(r for r in view.replicas if r in view.isr or r == broker_id)
        new = PartitionView(view.leader, view.leader_epoch + 1, view.replicas, isr)
        moves[key] = Move(key[0], key[1], view.leader, view.leader, new.leader_epoch, isr=isr)
        changes[key] = new
        first[key] = view.leader if view.leader != NO_LEADER else broker_id
    _send(peers, changes, moves, first)
    return [moves[k] for k in targets]


def fence_broker(cluster: ClusterFile, broker_id: int, removed_at_epoch: int, timeout: float = 20.0) -> dict:
    """Write the fence marker in `broker_id`'s data directory over SSH; SshError (or
    HostUnreachableError) if its host cannot be reached or written."""
    spec = cluster.broker(broker_id)
    with host_of(cluster, spec, timeout) as host:
        return write_fence(host, spec.data_dir, removed_at_epoch, _who(), timeout=timeout)


def unfence_broker(cluster: ClusterFile, broker_id: int, timeout: float = 20.0) -> bool:
    """Remove `broker_id`'s fence marker over SSH; True if there was one."""
    spec = cluster.broker(broker_id)
    with host_of(cluster, spec, timeout) as host:
        return clear_fence(host, spec.data_dir, timeout=timeout)


def _who() -> str:
    """Who changed the cluster, as the fence marker records it."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return "unknown"

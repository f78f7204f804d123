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
(replicas stay: removed = replicas - isr), moving leadership away from it as promotion does,
then writes the fence marker in its data directory over SSH (fence.py). It never empties an
ISR: the last member stays in it (it may hold acknowledged records no one else has) and, if
it led, the partition has no leader; promotion then waits for that broker to answer (and be
added back, clearing its fence), it never picks a replica outside the ISR. Adding back
(`cluster add`) clears the fence and puts the broker back into the in-sync replicas of each
partition once its replica there has caught up (add_broker): until then it is a replica
outside the ISR, fetching from the leader, so acks=all does not wait for it and promotion
cannot pick it. It never makes it a leader: a partition without one stays so until `logship
promote TOPIC:PARTITION` picks the most complete in-sync replica.
"""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass, replace

from ..client.connection import Connection
from ..cluster_file import ClusterFile
from ..errors import BrokerUnavailableError, FencedLeaderEpochError, LogshipError, UnknownTopicError, error_for_code
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
LATEST = -1  # ListOffsets timestamp: the log end (the high watermark, asked of a leader)
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
    note: str | None = None  # something the operator should know although the change took


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


def _offsets(peers: Peers, broker_id: int, keys, replica_id: int, timestamp: int) -> dict[Key, tuple[int, int]]:
    """ListOffsets v4 from `broker_id` for `keys`: key -> (leader epoch, offset), for those answered.
    replica_id -2 (any replica): (its last batch's epoch, its log end); -1 with timestamp -1
    (the leader only): (its current epoch, its high watermark)."""
    topics: dict[str, list[dict]] = {}
    for topic, index in sorted(keys):
        topics.setdefault(topic, []).append({"partition_index": index, "current_leader_epoch": -1,
                                             "timestamp": timestamp})
    if not topics:
        return {}
    answer = peers.request(broker_id, ApiKey.LIST_OFFSETS, {
        "replica_id": replica_id, "isolation_level": 0,
        "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()]}, LIST_OFFSETS_VERSION)
    return {(topic["name"], p["partition_index"]): (p["leader_epoch"], p["offset"])
            for topic in (answer or {}).get("topics", ()) for p in topic["partitions"] if p["error_code"] == 0}


def _positions(peers: Peers, states: dict[Key, PartitionView]) -> dict[Key, dict[int, tuple[int, int]]]:
    """(topic, partition) -> replica -> (last batch epoch, log end offset), for those that answered."""
    found: dict[Key, dict[int, tuple[int, int]]] = {key: {} for key in states}
    for broker_id in peers.cluster.ids:
        keys = [k for k, view in states.items() if broker_id in view.replicas]
        for key, position in _offsets(peers, broker_id, keys, REPLICA_LOG_END, -1).items():
            if key in found:
                found[key][broker_id] = position
    return found


def _choose(view: PartitionView, positions: dict[int, tuple[int, int]], away: int) -> int | None:
    candidates = [r for r in view.isr if r != away and r in positions]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (*positions[r], -view.replicas.index(r)))


def _describe_unreachable(peers: Peers, brokers) -> str:
    down = [b for b in brokers if b in peers.unreachable]
    return ", ".join(f"{b} ({peers.unreachable[b]})" for b in down) or "none"


def _send(peers: Peers, changes: dict[Key, PartitionView], moves: dict[Key, Move], first: dict[Key, int],
          retry: bool = True) -> None:
    """LeaderAndIsr to `first[key]` (the new leader) first; then to the other replicas of what
    took there; then the UpdateMetadata delta to every reachable broker. A replica answering
    FENCED_LEADER_EPOCH holds a newer state, or another of the same epoch (a concurrent
    promote, one half-done): those partitions are sent again once, one epoch higher."""
    cluster = peers.cluster
    live = [(b.id, *b.advertise) for b in cluster.brokers]
    fenced: set[Key] = set()

    def lead_and_isr(broker_id: int, share: dict[Key, PartitionView], first_step: bool) -> None:
        answer = peers.request(broker_id, ApiKey.LEADER_AND_ISR, leader_and_isr_body(-1, share, live), 2)
        if answer is None or answer["error_code"]:
            if first_step:
                why = peers.unreachable.get(broker_id) or error_for_code(answer["error_code"])
                for key in share:
                    moves[key].error = f"broker {broker_id} did not take the new state: {why}"
            return
        for error in answer["partition_errors"]:
            key = (error["topic_name"], error["partition_index"])
            if key not in moves or not error["error_code"]:
                continue
            conflict = error["error_code"] == FencedLeaderEpochError.code
            if conflict:
                fenced.add(key)
            if first_step or conflict:
                moves[key].error = (f"broker {broker_id} refused the new state: {error_for_code(error['error_code'])}"
                                    + (" (it holds a newer or conflicting one: another promote at the same time?)"
                                       if conflict else ""))

    for broker_id in sorted(set(first.values())):
        lead_and_isr(broker_id, {k: changes[k] for k, b in first.items() if b == broker_id}, True)
    for broker_id in cluster.ids:
        share = {k: v for k, v in changes.items()
                 if moves[k].error is None and broker_id in v.replicas and first.get(k) != broker_id}
        if share:
            lead_and_isr(broker_id, share, False)
    if fenced and retry:
        again = {k: replace(changes[k], leader_epoch=changes[k].leader_epoch + 1) for k in fenced}
        for key in fenced:
            moves[key].error, moves[key].leader_epoch = None, again[key].leader_epoch
        _send(peers, again, moves, {k: first[k] for k in fenced}, retry=False)
    done = {k: v for k, v in changes.items() if moves[k].error is None and k not in fenced}
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


def promote(peers: Peers, wanted: list[Key] | None = None, away_from: int | None = None,
            unclean: bool = False) -> list[Move]:
    """Move the leadership of `wanted` (or of every partition led by `away_from`) to the most
    complete other in-sync replica; a Move per partition (its `error` says what failed).
    With `unclean`, a partition none of whose other in-sync replicas answered goes to the
    most complete replica that did, which becomes the only in-sync one: the records
    acknowledged past its log end are lost (its Move's `note` says so)."""
    states = read_states(peers)
    targets = _targets(states, wanted, away_from)
    positions = _positions(peers, {k: states[k] for k in targets})
    moves, changes, first = {}, {}, {}
    for key in targets:
        view = states[key]
        away = view.leader if away_from is None else away_from
        chosen, isr = _choose(view, positions[key], away), view.isr
        others = [r for r in view.isr if r != away]
        if chosen is None and unclean:
            chosen = _choose(replace(view, isr=view.replicas), positions[key], away)
            isr = (chosen,)
        epoch = max([view.leader_epoch, *(e for e, _ in positions[key].values())]) + 1
        move = Move(key[0], key[1], view.leader, chosen if chosen is not None else NO_LEADER, epoch,
                    positions[key].get(chosen, (-1, -1))[1], isr)
        moves[key] = move
        if chosen is None:
            move.error = ("no other in-sync replica (`logship cluster add` one back first)" if not others else
                          f"no other in-sync replica answered (unreachable: {_describe_unreachable(peers, others)}); "
                          f"start it again (`--unclean` would pick a replica outside them, losing the records "
                          f"acknowledged past its log end)")
            continue
        if isr != view.isr:
            move.note = (f"UNCLEAN: broker {chosen} was not in-sync; records acknowledged past its log end "
                         f"{move.log_end_offset} are lost (in-sync replicas unreachable: "
                         f"{_describe_unreachable(peers, others)})")
        changes[key] = replace(view, leader=chosen, leader_epoch=epoch, isr=isr)
        first[key] = chosen
    _send(peers, changes, moves, first)
    return [moves[k] for k in targets]


def remove_broker(peers: Peers, broker_id: int) -> list[Move]:
    """Take `broker_id` out of the in-sync replicas of every partition (leaders move away).
    An ISR is never emptied: where `broker_id` is the last member it stays in it (and leads
    no more), so that only it can be promoted there: it may hold records no one else has."""
    peers.cluster.broker(broker_id)  # ConfigError if unknown
    states = read_states(peers)
    targets = sorted(k for k, view in states.items() if broker_id in view.isr)
    positions = _positions(peers, {k: states[k] for k in targets})
    moves, changes, first = {}, {}, {}
    for key in targets:
        view = states[key]
        isr = tuple(r for r in view.isr if r != broker_id) or view.isr
        epoch = max([view.leader_epoch, *(e for e, _ in positions[key].values())]) + 1
        leader = view.leader
        if leader == broker_id or leader == NO_LEADER:
            chosen = _choose(view, positions[key], broker_id)
            leader = chosen if chosen is not None else NO_LEADER
        moves[key] = Move(key[0], key[1], view.leader, leader, epoch, positions[key].get(leader, (-1, -1))[1], isr)
        if isr == view.isr:
            moves[key].note = (f"broker {broker_id} is the last in-sync replica: it stays one (it may hold records "
                               f"no other replica has); no leader until `logship promote {key[0]}:{key[1]}` "
                               f"after `logship cluster add {broker_id}`")
            if leader == view.leader:
                moves[key].leader_epoch = view.leader_epoch
                continue  # nothing changes
        changes[key] = PartitionView(leader, epoch, view.replicas, isr)
        reachable = [r for r in (*isr, *view.replicas) if peers(r) is not None]
        if leader != NO_LEADER:
            first[key] = leader
        elif reachable:
            first[key] = reachable[0]
        else:
            moves[key].error = f"no replica answered (unreachable: {_describe_unreachable(peers, view.replicas)})"
    _send(peers, changes, moves, first)
    return [moves[k] for k in targets]


def add_broker(peers: Peers, broker_id: int, wait: float = 30.0, poll: float = 0.2) -> list[Move]:
    """Put `broker_id` back into the in-sync replicas of every partition it replicates, each
    once it has caught up: its log end (ListOffsets replica_id -2) at or past the leader's
    high watermark, its last batch in the leader's last epoch (the same lineage; unless the
    leader holds nothing). Until then it is a replica out of the ISR, fetching from the leader.
    Those not caught up within `wait` seconds (or without a leader) fail, saying how far behind."""
    peers.cluster.broker(broker_id)
    states = read_states(peers)
    targets = sorted(k for k, view in states.items() if broker_id in view.replicas and broker_id not in view.isr)
    moves = {}
    for key in targets:
        view = states[key]
        isr = tuple(r for r in view.replicas if r in view.isr or r == broker_id)
        moves[key] = Move(key[0], key[1], view.leader, view.leader, view.leader_epoch + 1, isr=isr)
        if view.leader == NO_LEADER:
            moves[key].error = (f"no leader to catch up from: `logship promote {key[0]}:{key[1]}` first "
                                f"(it picks the most complete in-sync replica)")
    pending = {k for k in targets if moves[k].error is None}
    deadline = time.monotonic() + wait
    while pending:
        caught_up = {}
        for key, (why, top_epoch) in _behind(peers, broker_id, {k: states[k] for k in pending}).items():
            if why is None:
                epoch = max(states[key].leader_epoch, top_epoch) + 1
                caught_up[key] = replace(states[key], leader_epoch=epoch, isr=moves[key].isr)
                moves[key].leader_epoch = epoch
            else:
                moves[key].error = why
        pending -= set(caught_up)
        for key in caught_up:
            moves[key].error = None
        _send(peers, caught_up, moves, {k: v.leader for k, v in caught_up.items()})
        if not pending or time.monotonic() >= deadline or broker_id in peers.unreachable:
            break
        time.sleep(poll)
    return [moves[k] for k in targets]


def _behind(peers: Peers, broker_id: int, states: dict[Key, PartitionView]) -> dict[Key, tuple[str | None, int]]:
    """key -> (None if `broker_id` has caught up with the leader (see add_broker), else why
    not; the highest batch epoch the two reported)."""
    mine = _offsets(peers, broker_id, states, REPLICA_LOG_END, -1)
    result: dict[Key, tuple[str | None, int]] = {}
    for leader in sorted({view.leader for view in states.values()}):
        keys = [k for k, view in states.items() if view.leader == leader]
        lineage = _offsets(peers, leader, keys, REPLICA_LOG_END, -1)
        marks = _offsets(peers, leader, keys, -1, LATEST)
        for key in keys:
            if key not in mine:
                why = peers.unreachable.get(broker_id, "no replica there")
                result[key] = (f"broker {broker_id} did not answer for it ({why})", -1)
                continue
            if key not in lineage or key not in marks:
                why = peers.unreachable.get(leader, "not leading it")
                result[key] = (f"its leader {leader} did not answer ({why})", -1)
                continue
            (epoch, end), (last_epoch, leader_end), hw = mine[key], lineage[key], marks[key][1]
            top = max(epoch, last_epoch)
            if end < hw:
                result[key] = (f"broker {broker_id} is {hw - end} records behind (log end {end}, the leader's high "
                               f"watermark {hw}); it is still catching up: run `cluster add` again later", top)
            elif leader_end > 0 and epoch != last_epoch:
                result[key] = (f"broker {broker_id} has not caught up with the leader's epoch {last_epoch} yet "
                               f"(its last batch is of epoch {epoch})", top)
            else:
                result[key] = (None, top)
    return result


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

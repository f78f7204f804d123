"""`GroupMember`: one member of a classic Kafka consumer group, as Kafka's clients are.

    member = GroupMember(cluster, "readers", ["logs"])
    assignment = member.join()          # {"logs": [0, 1]}: blocks through JoinGroup and SyncGroup
    member.committed([("logs", 0)])     # {("logs", 0): 1200} (None: nothing committed)
    member.commit({("logs", 0): 1300})  # OffsetCommit with this generation and member id
    if member.needs_rejoin(): ...       # the group is rebalancing: commit, stop, join() again
    member.close()                      # LeaveGroup

The wire, per reference/kafka-protocol.md §5: FindCoordinator v1 (key type 0) names the
coordinator; JoinGroup v2 (protocol type "consumer", offering range then roundrobin with a
ConsumerProtocolSubscription v0) is held by the broker until the join phase ends; the
member elected leader computes every assignment (assignors.py) and sends them with its
SyncGroup; the others get theirs from SyncGroup. A background thread sends Heartbeat every
heartbeat interval (session timeout / 3) while the member is in a stable generation.

Errors are Kafka's client rules: REBALANCE_IN_PROGRESS and ILLEGAL_GENERATION mean "rejoin";
UNKNOWN_MEMBER_ID means "rejoin as a new member" (the member id is reset); NOT_COORDINATOR,
COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS and lost connections mean
"find the coordinator again and retry" (for up to retry_timeout_ms). A commit refused
because the group moved on raises CommitFailedError and asks for a rejoin. If the owner
stops calling `touch()` (its poll loop) for longer than the rebalance timeout, the heartbeat
thread leaves the group, as Kafka's max.poll.interval.ms does, so the others are not held.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ..errors import BrokerUnavailableError, LogshipError, ProtocolError, error_for_code, explain
from ..protocol import ApiKey
from .assignors import ASSIGNORS, PROTOCOL_TYPE, decode_assignment, decode_subscription, encode_assignment, \
    encode_subscription
from .cluster import Cluster
from .connection import Connection
from .coordinator import COORDINATOR_CODES, ILLEGAL_GENERATION, MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS, \
    UNKNOWN_MEMBER_ID, find_coordinator
from .heartbeat import Heartbeat

__all__ = ["GroupMember", "CommitFailedError"]

log = logging.getLogger(__name__)

_BACKOFF = 0.2
_JOIN_ERRORS = {
    23: "its members use another protocol type or no assignor in common with logship's (range, roundrobin) ",
}


class CommitFailedError(LogshipError):
    """The offsets were not committed because the group rebalanced or dropped this member
    (its partitions may belong to another member now)."""

    code = None


class GroupMember:
    """A member of group `group_id` subscribed to `topics`; see the module docstring.

    `join()`, `commit()`, `committed()` and `close()` belong to one thread (the owner's);
    the heartbeat thread only reads the generation and asks for rejoins. `wakeup_fd` becomes
    readable when a rejoin is needed, so an owner waiting in select() notices at once.
    """

    def __init__(self, cluster: Cluster, group_id: str, topics: list[str], *, session_timeout_ms: int = 10_000,
                 rebalance_timeout_ms: int = 60_000, heartbeat_interval_ms: int | None = None,
                 assignors: tuple[str, ...] = ("range", "roundrobin"), retry_timeout_ms: int = 60_000):
        unknown = [name for name in assignors if name not in ASSIGNORS]
        if unknown or not assignors:
            raise ValueError(f"unknown assignor {unknown[0] if unknown else ''!r}; use {' or '.join(ASSIGNORS)}")
        self.cluster = cluster
        self.group_id = group_id
        self.topics = list(topics)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = (heartbeat_interval_ms or session_timeout_ms // 3) / 1000
        self.assignors = tuple(assignors)
        self.retry_timeout = retry_timeout_ms / 1000
        self.member_id = ""
        self.generation = -1
        self.leader_id = ""
        self.protocol = ""
        self.assignment: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._stable = False
        self._rejoin = False
        self._closed = threading.Event()
        self._last_touch = time.monotonic()
        self._conn: Connection | None = None
        self._heartbeat: Heartbeat | None = None
        self.wakeup_fd, self._wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_fd, False)
        os.set_blocking(self._wakeup_w, False)

    # --- state shared with the heartbeat thread -------------------------------------------------

    def needs_rejoin(self) -> bool:
        with self._lock:
            return self._rejoin or not self._stable

    def heartbeat_state(self) -> tuple[bool, int, str, float]:
        """(in a stable generation, generation, member id, seconds since the owner's last touch)."""
        with self._lock:
            return self._stable, self.generation, self.member_id, time.monotonic() - self._last_touch

    def touch(self) -> None:
        """The owner is alive and polling (see the module docstring)."""
        self._last_touch = time.monotonic()

    def drain_wakeups(self) -> None:
        try:
            while os.read(self.wakeup_fd, 64):
                pass
        except (BlockingIOError, OSError):
            pass

    def ask_rejoin(self, generation: int | None, reset: bool = False, why: str = "") -> None:
        """Mark the member for a rejoin (`reset`: as a new member), unless `generation` is stale
        (None: always), and wake the owner. Called by the heartbeat thread too."""
        with self._lock:
            if generation is not None and (generation != self.generation or not self._stable):
                return
            self._rejoin = True
            if reset:
                self.member_id, self.generation = "", -1
        if why:
            log.info("group %s: rejoining: %s", self.group_id, why)
        try:
            os.write(self._wakeup_w, b"!")
        except OSError:
            pass

    # --- join -----------------------------------------------------------------------------------

    def join(self) -> dict[str, list[int]]:
        """Join (or rejoin) the group and return this member's new assignment: topic ->
        partitions. Blocks for the join and sync phases; the caller must have stopped using
        (and committed) its previous assignment, as Kafka's eager protocol requires."""
        with self._lock:
            self._stable, self._rejoin = False, False
            self.assignment = {}
        self.drain_wakeups()
        metadata = encode_subscription(self.topics)
        started = time.monotonic()
        while True:
            if self._closed.is_set():
                raise LogshipError(f"group member of {self.group_id!r} is closed")
            body = {"group_id": self.group_id, "session_timeout_ms": self.session_timeout_ms,
                    "rebalance_timeout_ms": self.rebalance_timeout_ms, "member_id": self.member_id,
                    "protocol_type": PROTOCOL_TYPE,
                    "protocols": [{"name": name, "metadata": metadata} for name in self.assignors]}
            response = self._request(ApiKey.JOIN_GROUP, body, self.rebalance_timeout_ms / 1000 + 5, started)
            if response is None:
                continue
            code = response["error_code"]
            if code in (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION):
                self.member_id = ""
                continue
            if code == MEMBER_ID_REQUIRED:
                self.member_id = response["member_id"]
                continue
            if code == REBALANCE_IN_PROGRESS:
                continue
            if code:
                raise error_for_code(code, f"joining group {self.group_id!r}: {_JOIN_ERRORS.get(code, '')}"
                                           f"(Kafka error code {code})")
            with self._lock:
                self.member_id, self.generation = response["member_id"], response["generation_id"]
                self.leader_id, self.protocol = response["leader"], response["protocol_name"]
            assignments = self._assign(response["members"]) if self.leader_id == self.member_id else {}
            body = {"group_id": self.group_id, "generation_id": self.generation, "member_id": self.member_id,
                    "assignments": [{"member_id": m, "assignment": a} for m, a in assignments.items()]}
            response = self._request(ApiKey.SYNC_GROUP, body, self.rebalance_timeout_ms / 1000 + 5, started)
            if response is None:
                continue
            code = response["error_code"]
            if code == UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            if code in (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION):
                continue
            if code:
                raise error_for_code(code, f"syncing group {self.group_id!r}: Kafka error code {code}")
            assignment = decode_assignment(bytes(response["assignment"]))
            with self._lock:
                self.assignment = {t: sorted(ps) for t, ps in assignment.items() if t in self.topics and ps}
                self._stable = True
                self._last_touch = time.monotonic()
            log.info("group %s: generation %d, member %s%s, assignment %s", self.group_id, self.generation,
                     self.member_id, " (leader)" if self.leader_id == self.member_id else "", self.assignment)
            if self._heartbeat is None:
                self._heartbeat = Heartbeat(self)
            return dict(self.assignment)

    def _assign(self, members: list[dict]) -> dict[str, bytes]:
        """The leader's job: every member's assignment, by the protocol the group chose."""
        subscriptions = {}
        for member in members:
            try:
                subscriptions[member["member_id"]] = decode_subscription(bytes(member["metadata"])).topics
            except ProtocolError as exc:
                log.warning("group %s: member %s sent a subscription logship cannot read (%s); it gets nothing",
                            self.group_id, member["member_id"], exc)
                subscriptions[member["member_id"]] = []
        topics = sorted({t for wanted in subscriptions.values() for t in wanted})
        found = self.cluster.refresh(topics) if topics else {}
        counts = {name: len(meta.partitions) for name, meta in found.items() if meta.error_code == 0}
        plan = ASSIGNORS[self.protocol](subscriptions, counts)
        return {member: encode_assignment(assignment) for member, assignment in plan.items()}

    # --- offsets --------------------------------------------------------------------------------

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit topic-partition -> next offset to read, in this member's generation.
        CommitFailedError if the group moved on (a rejoin is then due)."""
        if not offsets:
            return
        with self._lock:
            generation, member_id = self.generation, self.member_id
        by_topic: dict[str, list] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append({"partition_index": partition, "committed_offset": offset,
                                                   "committed_leader_epoch": -1, "committed_metadata": ""})
        body = {"group_id": self.group_id, "generation_id_or_member_epoch": generation, "member_id": member_id,
                "retention_time_ms": -1, "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}
        started = time.monotonic()
        while True:
            response = self._request(ApiKey.OFFSET_COMMIT, body, None, started)
            if response is None:
                continue
            codes = {p["error_code"] for t in response["topics"] for p in t["partitions"]} - {0}
            if not codes:
                return
            if codes & COORDINATOR_CODES and time.monotonic() - started <= self.retry_timeout:
                self._lost_coordinator()
                continue
            code = codes.pop()
            if code in (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
                self.ask_rejoin(None, reset=code == UNKNOWN_MEMBER_ID)
                raise CommitFailedError(f"group {self.group_id!r} rebalanced before the offsets of generation "
                                        f"{generation} could be committed ({explain(code)})")
            raise error_for_code(code, f"committing offsets of group {self.group_id!r}: Kafka error code {code}")

    def committed(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """topic-partition -> the group's committed offset (None where there is none)."""
        by_topic: dict[str, list[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic, []).append(partition)
        body = {"group_id": self.group_id, "topics": [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()]}
        started = time.monotonic()
        while True:
            response = self._request(ApiKey.OFFSET_FETCH, body, None, started)
            if response is None:
                continue
            codes = {response.get("error_code", 0)} | {p["error_code"] for t in response["topics"] for p in t["partitions"]}
            if codes & COORDINATOR_CODES and time.monotonic() - started <= self.retry_timeout:
                self._lost_coordinator()
                continue
            if codes - {0}:
                code = max(codes)
                raise error_for_code(code, f"fetching the offsets of group {self.group_id!r}: Kafka error code {code}")
            found = {(t["name"], p["partition_index"]): p["committed_offset"]
                     for t in response["topics"] for p in t["partitions"]}
            return {tp: (found[tp] if found.get(tp, -1) >= 0 else None) for tp in partitions}

    # --- closing --------------------------------------------------------------------------------

    def close(self, leave: bool = True) -> None:
        """Stop heartbeating and (by default) leave the group, so the others rebalance at once."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._heartbeat is not None:
            self._heartbeat.stop(self.session_timeout_ms / 1000)
        if leave and self.member_id:
            try:
                conn = self._connection()
                conn.request(ApiKey.LEAVE_GROUP, {"group_id": self.group_id, "member_id": self.member_id},
                             timeout=5.0)
            except LogshipError as exc:
                log.info("group %s: LeaveGroup failed (%s); the session timeout will remove the member",
                         self.group_id, exc)
        if self._conn is not None:
            self._conn.close()
        for fd in (self.wakeup_fd, self._wakeup_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # --- coordinator connection -----------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is not None and self._conn.in_flight:  # a request was interrupted (a signal)
            self._conn.close()
        if self._conn is None or self._conn.closed:
            _, host, port = find_coordinator(self.cluster, self.group_id, self.retry_timeout)
            self._conn = Connection(host, port, self.cluster.client_id, self.cluster.timeout,
                                    connect_timeout=self.cluster.connect_timeout)
        return self._conn

    def _lost_coordinator(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        time.sleep(_BACKOFF)

    def _request(self, api_key: int, body: dict, timeout: float | None, started: float) -> dict | None:
        """Send to the coordinator; None after a lost connection or a coordinator error code
        at the top level (retry), BrokerUnavailableError once retry_timeout has passed."""
        try:
            response = self._connection().request(api_key, body, timeout=timeout)
        except BrokerUnavailableError:
            if time.monotonic() - started > self.retry_timeout:
                raise
            self._lost_coordinator()
            return None
        if response.get("error_code") in COORDINATOR_CODES:
            if time.monotonic() - started > self.retry_timeout:
                code = response["error_code"]
                raise error_for_code(code, f"group {self.group_id!r}: no coordinator (Kafka error code {code})")
            self._lost_coordinator()
            return None
        return response

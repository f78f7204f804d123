"""Consumer groups for tools: list, describe, lag, committed offsets, and moving them.

    list_groups(cluster)                       # [GroupDescription(group_id="readers", state="Stable", ...)]
    describe_group(cluster, "readers")         # state, protocol, members with their assignments
    committed_offsets(cluster, "readers")      # {("logs", 0): 1200, ...}
    group_lag(cluster, "readers")              # (description, [PartitionLag per partition])
    plan_seek(cluster, "readers", "logs", to="@-1h")   # [SeekMove(old -> new offset, clamped?)]
    commit_offsets_standalone(cluster, "readers", {("logs", 0): 0})
    delete_groups(cluster, ["readers"])         # {"readers": None} (or the error, per group)
    delete_offsets(cluster, "readers", "logs")  # forget the group's offsets of one topic

Requests go to the group's coordinator (FindCoordinator). A group the coordinator does
not know is described as state "Dead" with no members, as Kafka answers; a group that
only has committed offsets is "Empty". Standalone commits use generation -1 and member id
"" (Kafka's rule for tools): the broker accepts them only while the group has no members,
and `seek` checks the state first so it refuses with a clear error, changing nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import DamagedBatchError, GroupIdNotFoundError, LogshipError, UnknownTopicError, error_for_code
from ..protocol import ApiKey
from .admin import EARLIEST, LATEST, list_offsets, resolve_offsets
from .assignors import PROTOCOL_TYPE, decode_assignment
from .cluster import Cluster
from .consumer import Consumer
from .coordinator import COORDINATOR_CODES, UNKNOWN_MEMBER_ID, find_coordinator
from .offsets import parse_offset

__all__ = ["GroupDescription", "MemberDescription", "PartitionLag", "SeekMove", "GroupNotFoundError",
           "GroupActiveError", "list_groups", "describe_group", "committed_offsets", "commit_offsets_standalone",
           "group_lag", "plan_seek", "seek", "delete_groups", "delete_offsets"]

TopicPartition = tuple[str, int]
INACTIVE_STATES = ("Empty", "Dead")


class GroupNotFoundError(GroupIdNotFoundError):
    """The coordinator knows no such group (no members, no committed offsets)."""

    code = 69
    exit_status = 4


class GroupActiveError(LogshipError):
    """The group has active members, so its offsets cannot be moved now."""

    code = None


@dataclass(frozen=True)
class MemberDescription:
    member_id: str
    client_id: str
    client_host: str
    assignment: dict[str, list[int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """client id/host, as tables show a member."""
        return f"{self.client_id}/{self.client_host}"


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: str  # Empty, PreparingRebalance, CompletingRebalance, Stable, Dead
    protocol_type: str
    protocol: str
    members: list[MemberDescription]

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE_STATES

    def owner(self, topic: str, partition: int) -> MemberDescription | None:
        return next((m for m in self.members if partition in m.assignment.get(topic, ())), None)


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    log_start_offset: int
    committed_offset: int | None
    log_end_offset: int
    lag: int | None  # records: log end - committed (None: nothing committed)
    lag_ms: int | None  # age of the oldest unconsumed record (0 when none is waiting)
    member: MemberDescription | None


@dataclass(frozen=True)
class SeekMove:
    topic: str
    partition: int
    old_offset: int | None
    new_offset: int
    requested_offset: int
    log_start_offset: int
    log_end_offset: int

    @property
    def clamped(self) -> bool:
        return self.new_offset != self.requested_offset


# --- requests to the coordinator -----------------------------------------------------------------

def _coordinator_request(cluster: Cluster, group: str, api_key: int, body: dict, codes=lambda r: ()) -> dict:
    """Send to the group's coordinator, looking it up again (a few times) if it moved."""
    for attempt in range(5):
        node = find_coordinator(cluster, group)[0]
        response = cluster.request(api_key, body, node_id=node)
        if not ({response.get("error_code", 0), *codes(response)} & COORDINATOR_CODES):
            return response
        time.sleep(0.2 * (attempt + 1))
    raise error_for_code(15, f"group {group!r}: the coordinator is not available")


def _describe(cluster: Cluster, groups: list[str], node: int | None = None) -> list[GroupDescription]:
    body = {"groups": groups, "include_authorized_operations": False}
    if node is None:
        response = _coordinator_request(cluster, groups[0], ApiKey.DESCRIBE_GROUPS, body,
                                        lambda r: [g["error_code"] for g in r["groups"]])
    else:
        response = cluster.request(ApiKey.DESCRIBE_GROUPS, body, node_id=node)
    result = []
    for entry in response["groups"]:
        if entry["error_code"]:
            raise error_for_code(entry["error_code"], f"describing group {entry['group_id']!r}: "
                                                      f"Kafka error code {entry['error_code']}")
        members = []
        for m in entry["members"]:
            assignment = {}
            if entry["protocol_type"] in (PROTOCOL_TYPE, "") and m["member_assignment"]:
                try:
                    assignment = decode_assignment(bytes(m["member_assignment"]))
                except LogshipError:
                    pass  # not the consumer protocol after all
            members.append(MemberDescription(m["member_id"], m["client_id"], m["client_host"], assignment))
        result.append(GroupDescription(entry["group_id"], entry["group_state"], entry["protocol_type"],
                                       entry["protocol_data"], members))
    return result


def describe_group(cluster: Cluster, group: str, must_exist: bool = False) -> GroupDescription:
    """The group's state, protocol and members (with assignments, which Kafka gives only
    while the group is Stable). `must_exist`: GroupNotFoundError for a Dead group."""
    description = _describe(cluster, [group])[0]
    if must_exist and description.state == "Dead":
        raise GroupNotFoundError(f"group {group!r} does not exist (brokers {cluster.brokers})")
    return description


def list_groups(cluster: Cluster, node: int | None = None) -> list[GroupDescription]:
    """Every group of every broker (or of broker `node`) (ListGroups), described
    (DescribeGroups), by name."""
    if node is not None:
        nodes = [node]
    else:
        brokers = cluster.request(ApiKey.METADATA, {"topics": [], "allow_auto_topic_creation": False})["brokers"]
        nodes = sorted(b["node_id"] for b in brokers) or [None]
    result: list[GroupDescription] = []
    for node in nodes:
        response = cluster.request(ApiKey.LIST_GROUPS, {}, node_id=node)
        if response["error_code"]:
            raise error_for_code(response["error_code"], f"listing groups: Kafka error code {response['error_code']}")
        names = sorted(g["group_id"] for g in response["groups"])
        if names:
            result += _describe(cluster, names, node)
    return sorted(result, key=lambda g: g.group_id)


def committed_offsets(cluster: Cluster, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
    """(topic, partition) -> committed offset of every partition the group has committed
    (of one topic if given). OffsetFetch with a null topic list."""
    response = _coordinator_request(cluster, group, ApiKey.OFFSET_FETCH, {"group_id": group, "topics": None},
                                    lambda r: [p["error_code"] for t in r["topics"] for p in t["partitions"]])
    if response.get("error_code"):
        raise error_for_code(response["error_code"], f"fetching offsets of group {group!r}")
    return {(t["name"], p["partition_index"]): p["committed_offset"] for t in response["topics"]
            for p in t["partitions"] if p["committed_offset"] >= 0 and (topic is None or t["name"] == topic)}


def commit_offsets_standalone(cluster: Cluster, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets as a tool does (generation -1, member id ""). GroupActiveError if the
    group has members (the broker then changes nothing)."""
    by_topic: dict[str, list] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        by_topic.setdefault(topic, []).append({"partition_index": partition, "committed_offset": offset,
                                               "committed_leader_epoch": -1, "committed_metadata": ""})
    body = {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "", "retention_time_ms": -1,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}
    response = _coordinator_request(cluster, group, ApiKey.OFFSET_COMMIT, body,
                                    lambda r: [p["error_code"] for t in r["topics"] for p in t["partitions"]])
    codes = {p["error_code"] for t in response["topics"] for p in t["partitions"]} - {0}
    if UNKNOWN_MEMBER_ID in codes or 22 in codes:
        raise GroupActiveError(f"group {group!r} has active members: its offsets were not changed")
    if codes:
        code = codes.pop()
        raise error_for_code(code, f"committing offsets of group {group!r}: Kafka error code {code}")


# --- lag -------------------------------------------------------------------------------------------

def _oldest_timestamps(cluster: Cluster, topic: str, offsets: dict[int, int], ends: dict[int, int],
                       timeout: float = 5.0) -> dict[int, int]:
    """partition -> timestamp of the first record at or after offsets[p] (below ends[p])."""
    found: dict[int, int] = {}
    with Consumer(cluster, topic, list(offsets), start=offsets, end=ends, offset_reset="clamp", max_wait_ms=100,
                  partition_max_bytes=64 << 10) as consumer:
        deadline = time.monotonic() + timeout
        try:
            while len(found) < len(offsets) and not consumer.finished and time.monotonic() < deadline:
                for chunk in consumer.poll_chunks(0.2):
                    if chunk.partition not in found and chunk.timestamps:
                        found[chunk.partition] = chunk.timestamps[0]
        except DamagedBatchError:  # a damaged batch where a group stopped: the ages not found stay unknown
            pass
    return found


def group_lag(cluster: Cluster, group: str, now_ms: int | None = None) -> tuple[GroupDescription, list[PartitionLag]]:
    """The group's description and one row per partition it has committed or been assigned:
    log start, committed, log end, lag in records, and lag in time (the age of the record
    at the committed offset, read with one small Fetch). GroupNotFoundError for a Dead group."""
    description = describe_group(cluster, group, must_exist=True)
    committed = committed_offsets(cluster, group)
    partitions = set(committed) | {(t, p) for m in description.members for t, ps in m.assignment.items() for p in ps}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rows = []
    for topic in sorted({t for t, _ in partitions}):
        parts = sorted(p for t, p in partitions if t == topic)
        try:
            starts = list_offsets(cluster, topic, {p: EARLIEST for p in parts})
            ends = list_offsets(cluster, topic, {p: LATEST for p in parts})
        except LogshipError:  # the topic was deleted: show what is committed
            starts = ends = {}
        waiting = {p: committed[(topic, p)] for p in parts
                   if p in ends and (topic, p) in committed and committed[(topic, p)] < ends[p][0]}
        stamps = _oldest_timestamps(cluster, topic, waiting, {p: ends[p][0] for p in waiting}) if waiting else {}
        for p in parts:
            offset = committed.get((topic, p))
            end = ends[p][0] if p in ends else -1
            lag = None if offset is None or p not in ends else max(end - offset, 0)
            lag_ms = None if lag is None else 0 if not lag else \
                max(now_ms - stamps[p], 0) if p in stamps else None
            rows.append(PartitionLag(topic, p, starts[p][0] if p in starts else -1, offset, end, lag, lag_ms,
                                     description.owner(topic, p)))
    return description, rows


# --- seek ------------------------------------------------------------------------------------------

def plan_seek(cluster: Cluster, group: str, topic: str, partitions: list[int] | None = None, *,
              to: str | None = None, shift: int | None = None) -> list[SeekMove]:
    """Where `seek` would move the group's offsets of `topic` (all partitions if None):
    `to` an offset spec (beginning, end, N, -N, @TIME: the first record at or after it, or
    the end) or `shift` records from the committed offset (from the log start where nothing
    is committed). New offsets are clamped to [log start, log end]."""
    if (to is None) == (shift is None):
        raise ValueError("give exactly one of `to` and `shift`")
    meta = cluster.topic(topic, refresh=True)
    parts = sorted(meta.partitions) if partitions is None else list(dict.fromkeys(partitions))
    missing = [p for p in parts if p not in meta.partitions]
    if missing:
        raise UnknownTopicError(f"topic {topic!r} has no partition {missing[0]} (it has {len(meta.partitions)})")
    starts = list_offsets(cluster, topic, {p: EARLIEST for p in parts})
    ends = list_offsets(cluster, topic, {p: LATEST for p in parts})
    committed = committed_offsets(cluster, group, topic)
    if to is not None:
        spec = parse_offset(to)
        if spec.kind == "stored":
            raise ValueError("--to stored means no move; use beginning, end, N, -N or @TIME")
        requested = resolve_offsets(cluster, topic, {p: spec for p in parts})
    else:
        requested = {p: committed.get((topic, p), starts[p][0]) + shift for p in parts}
    return [SeekMove(topic, p, committed.get((topic, p)), min(max(requested[p], starts[p][0]), ends[p][0]),
                     requested[p], starts[p][0], ends[p][0]) for p in parts]


def seek(cluster: Cluster, group: str, topic: str, partitions: list[int] | None = None, *,
         to: str | None = None, shift: int | None = None, dry_run: bool = False) -> list[SeekMove]:
    """Move the committed offsets of an inactive group (plan_seek, then a standalone commit).
    GroupActiveError while the group has members; nothing is changed then."""
    description = describe_group(cluster, group)
    if description.active:
        raise GroupActiveError(f"group {group!r} is {description.state} with {len(description.members)} active "
                               f"member{'s' if len(description.members) != 1 else ''}: stop its consumers "
                               f"first; its offsets were not changed")
    moves = plan_seek(cluster, group, topic, partitions, to=to, shift=shift)
    if not dry_run:
        commit_offsets_standalone(cluster, group, {(m.topic, m.partition): m.new_offset for m in moves})
    return moves


# --- deletion --------------------------------------------------------------------------------------

NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 68, 69


def _group_error(group: str, code: int, doing: str) -> LogshipError:
    if code == GROUP_ID_NOT_FOUND:
        return GroupNotFoundError(f"group {group!r} does not exist")
    if code == NON_EMPTY_GROUP:
        return GroupActiveError(f"group {group!r} has active members: stop its consumers first; "
                                f"it was not {doing}")
    return error_for_code(code, f"group {group!r} was not {doing}: Kafka error code {code}")


def delete_groups(cluster: Cluster, groups: list[str]) -> dict[str, LogshipError | None]:
    """Delete groups with no active members, their committed offsets with them (DeleteGroups
    to each group's coordinator). group -> None if deleted, else the error: GroupNotFoundError,
    GroupActiveError (members are running; nothing changed)..."""
    result: dict[str, LogshipError | None] = {}
    for group in dict.fromkeys(groups):
        response = _coordinator_request(cluster, group, ApiKey.DELETE_GROUPS, {"groups_names": [group]},
                                        lambda r: [g["error_code"] for g in r["results"]])
        codes = [g["error_code"] for g in response["results"] if g["group_id"] == group] or [0]
        result[group] = _group_error(group, codes[0], "deleted") if codes[0] else None
    return result


def delete_offsets(cluster: Cluster, group: str, topic: str, partitions: list[int] | None = None) -> None:
    """Forget `group`'s committed offsets of `topic` (all its partitions if None): OffsetDelete.
    GroupNotFoundError; GroupActiveError if a member of the group subscribes to the topic."""
    parts = sorted(cluster.topic(topic, refresh=True).partitions) if partitions is None else partitions
    body = {"group_id": group, "topics": [{"name": topic, "partitions": [{"partition_index": p} for p in parts]}]}
    response = _coordinator_request(cluster, group, ApiKey.OFFSET_DELETE, body)
    if response["error_code"]:
        raise _group_error(group, response["error_code"], "changed")
    codes = {p["error_code"] for t in response["topics"] for p in t["partitions"]} - {0}
    if 86 in codes:  # GROUP_SUBSCRIBED_TO_TOPIC
        raise GroupActiveError(f"group {group!r} has active members subscribed to {topic!r}: "
                               f"its offsets were not deleted")
    if codes:
        code = codes.pop()
        raise error_for_code(code, f"deleting offsets of group {group!r} for topic {topic!r}: Kafka error code {code}")

"""Group APIs: request body -> `Reply`, over the broker's GroupCoordinator.

FindCoordinator names this node for every group (one broker). JoinGroup and SyncGroup
replies carry the coordinator's `Deferred`, which the server awaits before answering.
OffsetCommit appends to `__consumer_offsets` and, like a Produce with acks=all, is answered
only once that append is on stable storage (Reply.sync).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import CoordinatorNotAvailableError, InvalidRequestError, LogshipError, UnknownTopicError
from ...protocol import ApiKey
from ..reply import ClientInfo, DurableWrite, Reply, error_code
from .offsets import OFFSETS_TOPIC, CommittedOffset

if TYPE_CHECKING:
    from ..broker import Broker

GROUP_KEY, TRANSACTION_KEY = 0, 1
MEMBER_ID_REQUIRED_SINCE = 4  # JoinGroup version from which a new member gets its id first


def find_coordinator(broker: Broker, version: int, body: dict) -> Reply:
    response = {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "node_id": -1, "host": "", "port": -1}
    if body.get("key_type", GROUP_KEY) == GROUP_KEY and broker.cluster_metadata is not None:
        spec = broker.cluster_metadata.cluster.broker(broker.cluster_metadata.controller_id)  # groups live there
        response.update(node_id=spec.id, host=spec.advertise[0], port=spec.advertise[1])
    elif body.get("key_type", GROUP_KEY) == GROUP_KEY:
        host, port = broker.address()
        response.update(node_id=broker.config.node_id, host=host, port=port)
    elif body["key_type"] == TRANSACTION_KEY:
        response.update(error_code=CoordinatorNotAvailableError.code, error_message="transactions are not supported")
    else:
        response.update(error_code=InvalidRequestError.code, error_message=f"unknown key type {body['key_type']}")
    return Reply(response)


def join_group(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    protocols = [(p["name"], bytes(p["metadata"])) for p in body["protocols"]]
    deferred = broker.groups.join(body["group_id"], body["member_id"], client, body["session_timeout_ms"],
                                  body.get("rebalance_timeout_ms", -1), body["protocol_type"], protocols,
                                  require_known_member_id=version >= MEMBER_ID_REQUIRED_SINCE)
    return Reply(None, deferred=deferred)


def sync_group(broker: Broker, version: int, body: dict) -> Reply:
    assignments = {a["member_id"]: bytes(a["assignment"]) for a in body["assignments"]}
    return Reply(None, deferred=broker.groups.sync(body["group_id"], body["generation_id"], body["member_id"],
                                                   assignments))


def heartbeat(broker: Broker, version: int, body: dict) -> Reply:
    code = broker.groups.heartbeat(body["group_id"], body["generation_id"], body["member_id"])
    return Reply({"throttle_time_ms": 0, "error_code": code})


def leave_group(broker: Broker, version: int, body: dict) -> Reply:
    if "members" not in body:  # v0-2: one member
        return Reply({"throttle_time_ms": 0, "error_code": broker.groups.leave(body["group_id"], body["member_id"])})
    members = [{"member_id": m["member_id"], "group_instance_id": m.get("group_instance_id"),
                "error_code": broker.groups.leave(body["group_id"], m["member_id"])} for m in body["members"]]
    return Reply({"throttle_time_ms": 0, "error_code": 0, "members": members})


def offset_commit(broker: Broker, version: int, body: dict) -> Reply:
    now = broker.group_offsets.now_ms()
    topics = broker.store.topics()
    responses, entries, offsets = [], {}, []
    for topic in body["topics"]:
        partitions = []
        for p in topic["partitions"]:
            entry = entries[(topic["name"], p["partition_index"])] = {"partition_index": p["partition_index"],
                                                                      "error_code": 0}
            partitions.append(entry)
            if not 0 <= p["partition_index"] < topics.get(topic["name"], 0):
                entry["error_code"] = UnknownTopicError.code
                continue
            offsets.append((topic["name"], p["partition_index"],
                            CommittedOffset(p["committed_offset"], p.get("committed_leader_epoch", -1),
                                            p["committed_metadata"] or "", now)))
        responses.append({"name": topic["name"], "partitions": partitions})
    reply = Reply({"throttle_time_ms": 0, "topics": responses})
    try:
        errors, appended = broker.groups.commit(body["group_id"], body["generation_id_or_member_epoch"],
                                                body["member_id"], offsets)
    except LogshipError as exc:
        errors, appended = {(topic, partition): error_code(exc) for topic, partition, _ in offsets}, None
    for key, code in errors.items():
        entries[key]["error_code"] = code
    if appended is not None:
        broker.on_append(OFFSETS_TOPIC, 0)
        written = [entries[key] for key, code in errors.items() if code == 0]
        reply.sync.append(DurableWrite(broker.group_offsets.partition, appended.log_end_offset, written))
    return reply


def offset_fetch(broker: Broker, version: int, body: dict) -> Reply:
    requested = body.get("topics")
    wanted = None if requested is None else [(t["name"], p) for t in requested for p in t["partition_indexes"]]
    topics: dict[str, list] = {}
    for topic, partition, committed in broker.groups.committed(body["group_id"], wanted):
        topics.setdefault(topic, []).append({
            "partition_index": partition, "error_code": 0,
            "committed_offset": committed.offset if committed else -1,
            "committed_leader_epoch": committed.leader_epoch if committed else -1,
            "metadata": committed.metadata if committed else ""})
    return Reply({"throttle_time_ms": 0, "error_code": 0,
                  "topics": [{"name": name, "partitions": partitions} for name, partitions in topics.items()]})


def describe_groups(broker: Broker, version: int, body: dict) -> Reply:
    return Reply({"throttle_time_ms": 0, "groups": [broker.groups.describe(group_id) for group_id in body["groups"]]})


def list_groups(broker: Broker, version: int, body: dict) -> Reply:
    return Reply({"throttle_time_ms": 0, "error_code": 0,
                  "groups": [{"group_id": group.group_id, "protocol_type": group.protocol_type or ""}
                             for group in broker.groups.list_groups()]})


def delete_groups(broker: Broker, version: int, body: dict) -> Reply:
    """Deletes Empty groups; answered once their tombstones are on stable storage."""
    codes, appended = broker.groups.delete_groups(list(dict.fromkeys(body["groups_names"])))
    results = [{"group_id": group_id, "error_code": code} for group_id, code in codes.items()]
    reply = Reply({"throttle_time_ms": 0, "results": results})
    if appended is not None:
        broker.on_append(OFFSETS_TOPIC, 0)
        reply.sync.append(DurableWrite(broker.group_offsets.partition, appended.log_end_offset,
                                       [r for r in results if r["error_code"] == 0]))
    return reply


def offset_delete(broker: Broker, version: int, body: dict) -> Reply:
    """Deletes committed offsets of a group, except for topics its members subscribe to."""
    topics = broker.store.topics()
    wanted = [(t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"]
              if 0 <= p["partition_index"] < topics.get(t["name"], 0)]  # others: UNKNOWN_TOPIC_OR_PARTITION
    response = {"error_code": 0, "throttle_time_ms": 0, "topics": []}
    reply = Reply(response)
    try:
        code, codes, appended = broker.groups.delete_offsets(body["group_id"], wanted)
    except LogshipError as exc:
        code, codes, appended = error_code(exc), {}, None
    response["error_code"] = code
    if code:
        return reply
    entries = []
    for topic in body["topics"]:
        partitions = [{"partition_index": p["partition_index"],
                       "error_code": codes.get((topic["name"], p["partition_index"]), UnknownTopicError.code)}
                      for p in topic["partitions"]]
        entries += partitions
        response["topics"].append({"name": topic["name"], "partitions": partitions})
    if appended is not None:
        broker.on_append(OFFSETS_TOPIC, 0)
        reply.sync.append(DurableWrite(broker.group_offsets.partition, appended.log_end_offset,
                                       [e for e in entries if e["error_code"] == 0]))
    return reply


HANDLERS = {
    ApiKey.FIND_COORDINATOR: find_coordinator,
    ApiKey.SYNC_GROUP: sync_group,
    ApiKey.HEARTBEAT: heartbeat,
    ApiKey.LEAVE_GROUP: leave_group,
    ApiKey.OFFSET_COMMIT: offset_commit,
    ApiKey.OFFSET_FETCH: offset_fetch,
    ApiKey.DESCRIBE_GROUPS: describe_groups,
    ApiKey.LIST_GROUPS: list_groups,
    ApiKey.DELETE_GROUPS: delete_groups,
    ApiKey.OFFSET_DELETE: offset_delete,
}
CLIENT_HANDLERS = {ApiKey.JOIN_GROUP: join_group}

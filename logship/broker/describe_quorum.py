"""DescribeQuorum (55, v0-1): a leader's view of its followers, per partition it leads.

Kafka answers it for KRaft's metadata partition; logship's leaders answer it for any
partition they lead, with the same meaning (`logship cluster status` reads it, one request per
broker, for the replication lag and "last heard" columns):

* leader_id, leader_epoch, high_watermark: the partition's, as this leader knows them;
* current_voters: the replicas whose fetch offsets count toward the high watermark, i.e. the
  in-sync replicas (this leader first), as KRaft's voters; observers: the other assigned
  replicas (taken out of the ISR by `cluster remove`), which fetch but do not count;
* per replica, log_end_offset: the leader's log end for itself; for a follower, the offset of
  its last fetch in this leader epoch (its durable log end), -1 before its first fetch;
* v1, last_fetch_timestamp and last_caught_up_timestamp: this broker's wall clock (ms) when
  that fetch arrived, and when the follower last fetched at (or past) this log's end then;
  -1 when unknown. As in Kafka, the leader's own entry carries the current time in both, so
  `now - last_fetch_timestamp` is computed with the leader's clock alone: no clock skew between
  hosts enters the follower's "last heard".

A partition this broker does not lead answers NOT_LEADER_OR_FOLLOWER (with the leader and
epoch it knows of, else -1), one it does not know UNKNOWN_TOPIC_OR_PARTITION. Without a
cluster file every local partition is led here and has no other replica.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import NotLeaderError, UnknownTopicError
from .reply import Reply

if TYPE_CHECKING:
    from .broker import Broker


def describe_quorum(broker: Broker, version: int, body: dict) -> Reply:
    now, now_ms = time.monotonic(), int(time.time() * 1000)
    present = broker.store.topics()
    topics = [{"topic_name": topic["topic_name"],
               "partitions": [_partition(broker, topic["topic_name"], p["partition_index"], present, now, now_ms)
                              for p in topic["partitions"]]}
              for topic in body["topics"]]
    return Reply({"error_code": 0, "topics": topics})


def _partition(broker: Broker, topic: str, index: int, present: dict[str, int], now: float, now_ms: int) -> dict:
    entry = {"partition_index": index, "error_code": 0, "leader_id": -1, "leader_epoch": -1, "high_watermark": -1,
             "current_voters": [], "observers": []}
    replicas = broker.replicas
    followers = replicas.followers((topic, index)) if replicas.clustered else {}
    if followers is None:
        state = replicas.state(topic, index)
        if state is None and broker.cluster_metadata is not None:
            state = (broker.cluster_metadata.partitions(topic) or {}).get(index)
        if state is None:
            entry["error_code"] = UnknownTopicError.code
        else:
            entry.update(error_code=NotLeaderError.code, leader_id=state.leader, leader_epoch=state.leader_epoch)
        return entry
    if not 0 <= index < present.get(topic, 0):
        entry["error_code"] = UnknownTopicError.code
        return entry
    partition = broker.store.partition(topic, index)
    state = replicas.state(topic, index)
    isr = state.isr if state is not None else ()

    def stamp(at: float | None) -> int:
        return -1 if at is None else now_ms - round((now - at) * 1000)

    entry.update(leader_id=broker.config.node_id, high_watermark=partition.high_watermark,
                 leader_epoch=state.leader_epoch if state is not None else partition.leader_epoch)
    entry["current_voters"].append({"replica_id": broker.config.node_id, "log_end_offset": partition.log_end_offset,
                                    "last_fetch_timestamp": now_ms, "last_caught_up_timestamp": now_ms})
    for replica, (offset, fetched, caught_up) in sorted(followers.items()):
        entry["current_voters" if replica in isr else "observers"].append({
            "replica_id": replica, "log_end_offset": offset, "last_fetch_timestamp": stamp(fetched),
            "last_caught_up_timestamp": stamp(caught_up)})
    return entry

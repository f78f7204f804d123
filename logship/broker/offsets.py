"""ListOffsets: earliest (-2), latest (-1), the record with the largest timestamp (-3, v7+),
earliest local (-4, v8+: the log start here, there is no remote tier), or the first record at or
after a timestamp.

MAX_TIMESTAMP answers the offset of the first record that carries the partition's largest
timestamp (records need not arrive in time order), found from the segments' largest
timestamps and one decoded batch, as Kafka does; an empty partition answers offset -1.
Other negative timestamps (-5 latest tiered, v9+, is not served) answer INVALID_REQUEST.

Each answer carries a leader epoch as Kafka's does: the current one for latest, otherwise
the epoch the found offset was written in (from the leader-epoch checkpoint). A request
naming another current leader epoch is fenced (fetch.check_leader_epoch). In a cluster only
the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere, UNKNOWN_TOPIC_OR_PARTITION for a partition
the cluster does not have: fetch.require_leader), except a request with replica_id -2 on
a connection authenticated with the cluster secret (`logship promote` choosing a new leader):
any replica hosting the partition answers it, whatever the timestamp, with its log end
offset and the leader epoch of its last batch (-1 when its log is empty).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import records
from ..errors import InvalidRequestError, LogshipError
from ..storage import Partition
from .fetch import check_leader_epoch, require_leader
from .reply import ClientInfo, Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3  # v7+
EARLIEST_LOCAL = -4  # v8+
REPLICA_LOG_END = -2  # replica_id of `logship promote`'s question (logship-private)


def offset_for_time(partition: Partition, timestamp: int) -> tuple[int, int]:
    """(offset, timestamp) of the first record whose timestamp is >= `timestamp`, or (-1, -1).

    The store finds the first batch whose max timestamp reaches the target; that one batch
    is decoded to find the exact record, as Kafka does.
    """
    offset = partition.offset_for_timestamp(timestamp)
    while offset is not None and offset < partition.high_watermark:
        piece = partition.read(offset, 1)
        if piece is None:
            break
        with piece:
            batch = piece.read_bytes()
        header = records.parse_header(batch)
        for record in records.decode_records(batch):
            if record.offset >= offset and record.timestamp >= timestamp:
                return record.offset, record.timestamp
        offset = header.next_offset
    return -1, -1


def offset_of_max_timestamp(partition: Partition) -> tuple[int, int]:
    """(offset, timestamp) of the first record carrying the largest timestamp, or (-1, -1)."""
    found = partition.max_timestamp()
    if found is None:
        return -1, -1
    max_ts, last_offset = found
    try:
        piece = partition.read(last_offset, 1)
    except LogshipError:
        piece = None
    if piece is None:
        return last_offset, max_ts
    with piece:
        batch = piece.read_bytes()
    start = partition.log_start_offset
    for record in records.decode_records(batch):
        if record.offset >= start and record.timestamp == max_ts:
            return record.offset, max_ts
    return last_offset, max_ts


def _lookup(partition: Partition, timestamp: int) -> tuple[int, int, int]:
    """(offset, timestamp, leader epoch) answering one ListOffsets query."""
    if timestamp == LATEST:
        return partition.high_watermark, -1, partition.leader_epoch
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        offset, found = partition.log_start_offset, -1
    elif timestamp == MAX_TIMESTAMP:  # clients send it from v7 on; Kafka does not check the version either
        offset, found = offset_of_max_timestamp(partition)
    elif timestamp < 0:
        raise InvalidRequestError(f"ListOffsets has no special timestamp {timestamp}")
    else:
        offset, found = offset_for_time(partition, timestamp)
    return offset, found, partition.epoch_for_offset(offset) if offset >= 0 else -1


def list_offsets(broker: Broker, version: int, body: dict, client: ClientInfo = ClientInfo()) -> Reply:
    replica_view = body.get("replica_id", -1) == REPLICA_LOG_END and client.principal is not None
    topics = []
    for topic in body["topics"]:
        entries = []
        for request in topic["partitions"]:
            entry = {"partition_index": request["partition_index"], "error_code": 0,
                     "timestamp": -1, "offset": -1, "leader_epoch": -1}
            try:
                if replica_view:
                    broker.replicas.check_hosted(topic["name"], request["partition_index"])
                    partition = broker.store.partition(topic["name"], request["partition_index"])
                    entry["offset"], entry["leader_epoch"] = partition.log_end_offset, partition.last_epoch
                    entries.append(entry)
                    continue
                require_leader(broker, topic["name"], request["partition_index"])
                partition = broker.store.partition(topic["name"], request["partition_index"])
                check_leader_epoch(partition, request.get("current_leader_epoch", -1))
                entry["offset"], entry["timestamp"], entry["leader_epoch"] = _lookup(partition, request["timestamp"])
            except LogshipError as exc:
                entry["error_code"] = error_code(exc)
            entries.append(entry)
        topics.append({"name": topic["name"], "partitions": entries})
    return Reply({"throttle_time_ms": 0, "topics": topics})

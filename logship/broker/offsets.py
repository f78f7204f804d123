"""ListOffsets: earliest (-2), latest (-1), or the first record at or after a timestamp.

Each answer carries a leader epoch as Kafka's does: the current one for latest, otherwise
the epoch the found offset was written in (from the leader-epoch checkpoint). A request
naming another current leader epoch is fenced (fetch.check_leader_epoch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import records
from ..errors import LogshipError
from ..storage import Partition
from .fetch import check_leader_epoch
from .reply import Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

LATEST = -1
EARLIEST = -2


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


def _lookup(partition: Partition, timestamp: int) -> tuple[int, int, int]:
    """(offset, timestamp, leader epoch) answering one ListOffsets query."""
    if timestamp == LATEST:
        return partition.high_watermark, -1, partition.leader_epoch
    if timestamp == EARLIEST:
        return partition.log_start_offset, -1, partition.epoch_for_offset(partition.log_start_offset)
    offset, found = offset_for_time(partition, timestamp)
    return offset, found, partition.epoch_for_offset(offset) if offset >= 0 else -1


def list_offsets(broker: Broker, version: int, body: dict) -> Reply:
    topics = []
    for topic in body["topics"]:
        entries = []
        for request in topic["partitions"]:
            entry = {"partition_index": request["partition_index"], "error_code": 0,
                     "timestamp": -1, "offset": -1, "leader_epoch": -1}
            try:
                partition = broker.store.partition(topic["name"], request["partition_index"])
                check_leader_epoch(partition, request.get("current_leader_epoch", -1))
                entry["offset"], entry["timestamp"], entry["leader_epoch"] = _lookup(partition, request["timestamp"])
            except LogshipError as exc:
                entry["error_code"] = error_code(exc)
            entries.append(entry)
        topics.append({"name": topic["name"], "partitions": entries})
    return Reply({"throttle_time_ms": 0, "topics": topics})

"""CreatePartitions and DeleteRecords: growing a topic and dropping the head of partitions.

CreatePartitions: a topic's partition count only grows (INVALID_PARTITIONS otherwise, with a
message saying the current count), within the broker's partition caps (partition_limits.py: per request, per topic, per broker;
POLICY_VIOLATION);
`validate_only` checks without creating; manual assignments must name this broker only, one
replica each. DeleteRecords: offset -1 means the high watermark;
an offset beyond the high watermark (or another negative one) is OFFSET_OUT_OF_RANGE; the log
start offset moves up durably (store checkpoint) and whole segments below it are removed; the
answer carries the new log start as `low_watermark`. Neither touches `__consumer_offsets`, nor
DeleteRecords a compacted topic (POLICY_VIOLATION), as Kafka refuses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import (InvalidPartitionsError, InvalidReplicaAssignmentError, LogshipError, OffsetOutOfRangeError,
                      PolicyViolationError, RequestTimedOutError, UnknownTopicError)
from ..protocol import ApiKey
from .partition_limits import PartitionBudget
from .reply import Reply, error_code
from .topics import refuse_internal

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("logship.broker")
HIGH_WATERMARK = -1


def _grow(broker: Broker, topic: dict, validate_only: bool, budget: PartitionBudget) -> None:
    name, total = topic["name"], topic["count"]
    refuse_internal(name)
    current = broker.store.partition_count(name)
    if not current:
        raise UnknownTopicError("the topic does not exist")
    if total <= current:
        raise InvalidPartitionsError(f"the topic has {current} partition{'s' if current != 1 else ''} and the "
                                     f"count can only grow (asked for {total})")
    assignments = topic.get("assignments")
    if assignments is not None:
        if len(assignments) != total - current:
            raise InvalidReplicaAssignmentError(f"{len(assignments)} assignments given for {total - current} "
                                                f"new partitions")
        node = broker.config.node_id
        for assignment in assignments:
            if assignment["broker_ids"] != [node]:
                raise InvalidReplicaAssignmentError(f"assignment {assignment['broker_ids']} names brokers other "
                                                    f"than this one ({node}), one replica each")
    budget.take(name, current, total)
    if not validate_only:
        broker.store.add_partitions(name, total)
        log.info("topic %s grew from %d to %d partitions", name, current, total)


def create_partitions(broker: Broker, version: int, body: dict) -> Reply:
    if broker.controller is not None:  # cluster mode: the controller decides (controller.py)
        if broker.cluster_metadata.is_controller:
            return broker.controller.create_partitions(version, body)
        return broker.controller.forward(ApiKey.CREATE_PARTITIONS, version, body, lambda message: {
            "throttle_time_ms": 0, "results": [{"name": t["name"], "error_code": RequestTimedOutError.code,
                                                "error_message": message} for t in body["topics"]]})
    results, seen, budget = [], set(), PartitionBudget(broker)
    for topic in body["topics"]:
        result = {"name": topic["name"], "error_code": 0, "error_message": None}
        try:
            if topic["name"] in seen:
                raise InvalidPartitionsError(f"topic {topic['name']!r} appears twice in the request")
            seen.add(topic["name"])
            _grow(broker, topic, body.get("validate_only", False), budget)
        except LogshipError as exc:
            result.update(error_code=error_code(exc), error_message=str(exc))
        results.append(result)
    return Reply({"throttle_time_ms": 0, "results": results})


def _delete_before(broker: Broker, name: str, index: int, offset: int) -> int:
    refuse_internal(name)
    partition = broker.store.partition(name, index)
    if partition.config.cleanup_policy == "compact":
        raise PolicyViolationError(f"records of the compacted topic {name!r} cannot be deleted")
    if offset == HIGH_WATERMARK:
        offset = partition.high_watermark
    if not 0 <= offset <= partition.high_watermark:
        raise OffsetOutOfRangeError(f"cannot delete {name}-{index} before offset {offset}: the high watermark is "
                                    f"{partition.high_watermark}")
    if offset > partition.log_start_offset:
        partition.delete_before(offset)
        log.info("deleted records of %s-%d before offset %d", name, index, offset)
    return partition.log_start_offset


def delete_records(broker: Broker, version: int, body: dict) -> Reply:
    topics = []
    for topic in body["topics"]:
        entries = []
        for request in topic["partitions"]:
            entry = {"partition_index": request["partition_index"], "low_watermark": -1, "error_code": 0}
            try:
                entry["low_watermark"] = _delete_before(broker, topic["name"], request["partition_index"],
                                                        request["offset"])
            except LogshipError as exc:
                entry["error_code"] = error_code(exc)
            entries.append(entry)
        topics.append({"name": topic["name"], "partitions": entries})
    return Reply({"throttle_time_ms": 0, "topics": topics})

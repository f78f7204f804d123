"""Produce: check each partition's batches and append them as they came.

Records are never decoded into objects here: storage/validate.py checks each batch's header,
CRC, attributes and that its records section holds what the header claims (a batch that
passes the CRC but lies is refused with CORRUPT_MESSAGE or INVALID_RECORD, per partition;
the connection stays open). The reason goes in the response's error_message, which Produce
has from v8 on (advertised: up to v7 so far, so it is dropped on the wire today). Each partition succeeds or fails as a whole: the store
validates every batch of a partition before writing any. With acks=all (-1) the reply
waits for the server to make the appended bytes durable and, in a cluster, for the high
watermark to pass them (every in-sync replica has them durably) within the request's
timeout_ms, else REQUEST_TIMED_OUT; with acks=0 nothing is sent. In a cluster only the
partition's leader takes produces (NOT_LEADER_OR_FOLLOWER elsewhere, UNKNOWN_TOPIC_OR_PARTITION
for a partition the cluster does not have: fetch.require_leader). Batches of idempotent
producers are checked against the partition's producer state (storage/producer_state.py):
OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH; a retry of batches already appended is
answered with their original offsets, once they are as durable (acks=all) as a first
append would have to be, and appends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import logging

from .. import records
from ..compression import ZSTD
from ..errors import (InvalidRecordError, KafkaStorageError, LogshipError,
                      UnsupportedCompression)
from .fetch import require_leader
from .reply import DurableWrite, Reply, error_code
from .topics import produce_partition, refuse_internal

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("logship.broker")

ACKS_ALL = -1
ACKS_NONE = 0
_ZSTD_SINCE = 7


def _check_codec(version: int, data) -> None:
    """Kafka refuses zstd batches in Produce requests older than v7."""
    if version < _ZSTD_SINCE and len(data) >= records.HEADER_SIZE:
        if records.parse_header(data).compression == ZSTD:
            raise UnsupportedCompression("zstd needs Produce v7 or later")


def produce(broker: Broker, version: int, body: dict) -> Reply:
    acks = body["acks"]
    durable: list[DurableWrite] = []
    responses = []
    for topic in body["topic_data"]:
        name = topic["name"]
        partitions = []
        for data in topic["partition_data"]:
            index = data["index"]
            entry = {"index": index, "error_code": 0, "base_offset": -1,
                     "log_append_time_ms": -1, "log_start_offset": -1}
            partitions.append(entry)
            try:
                refuse_internal(name)
                require_leader(broker, name, index)
                partition = produce_partition(broker, name, index)
                if data["records"] is None:
                    raise InvalidRecordError("a produce request carried no records")
                _check_codec(version, data["records"])
                result = partition.append_batches(data["records"], client=True)
            except LogshipError as exc:
                if isinstance(exc, KafkaStorageError):
                    log.error("produce to %s-%d failed: %s", name, index, exc)
                entry["error_code"] = error_code(exc)
                entry["error_message"] = str(exc) or None  # Produce v8+ carries it; older versions drop it
                continue
            entry["base_offset"] = result.base_offset
            entry["log_start_offset"] = partition.log_start_offset
            if not result.duplicate:  # a retry of batches already here is answered as they were, waited for alike
                if partition.config.message_timestamp_type == "LogAppendTime":
                    entry["log_append_time_ms"] = result.max_timestamp  # the stamp the store put on the batches
                broker.on_append(name, index)
                if broker.metrics is not None:
                    broker.metrics.produced(name, result.record_count, result.size)
                broker.replicas.appended(name, partition)
            if acks == ACKS_ALL:
                durable.append(DurableWrite(partition, result.last_offset + 1, entry, body["timeout_ms"]))
        responses.append({"name": name, "partition_responses": partitions})
    if acks == ACKS_NONE:
        return Reply(None, sync=durable)
    return Reply({"responses": responses, "throttle_time_ms": 0}, sync=durable)


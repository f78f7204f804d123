"""Metadata, CreateTopics, DeleteTopics and DescribeLogDirs: what topics exist, who leads them
(this node) and how many bytes they hold."""

from __future__ import annotations

from typing import TYPE_CHECKING

import logging

from ..errors import (InvalidPartitionsError, InvalidReplicationFactorError, InvalidTopicError, LogshipError,
                      TopicAlreadyExistsError, UnknownTopicError)
from ..storage import Partition, topic_config, validate_topic_name
from .configs import create_topic_configs, topic_entries
from .groups.offsets import OFFSETS_TOPIC
from .partition_limits import PartitionBudget
from .reply import Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("logship.broker")


def _ensure_topic(broker: Broker, name: str, allow_create: bool, budget: PartitionBudget | None = None) -> int:
    """Partition count of `name`, creating it when allowed (within the partition caps, `budget`
    being the request's); raises UnknownTopicError otherwise."""
    validate_topic_name(name)
    count = broker.store.partition_count(name)
    if count:
        return count
    if not (allow_create and broker.config.auto_create_topics):
        raise UnknownTopicError(f"unknown topic {name!r}")
    (budget or PartitionBudget(broker)).take(name, 0, broker.config.default_partitions)
    broker.store.create_topic(name, broker.config.default_partitions)
    log.info("created topic %s with %d partition(s) on first use", name, broker.config.default_partitions)
    return broker.config.default_partitions


def refuse_internal(name: str) -> None:
    """Clients may read `__consumer_offsets` but never produce to or delete it (as Kafka)."""
    if name == OFFSETS_TOPIC:
        raise InvalidTopicError(f"{OFFSETS_TOPIC} is an internal topic")


def produce_partition(broker: Broker, name: str, index: int) -> Partition:
    """The partition a produce request writes to; its topic is created on first use when the
    broker allows it. Looked up directly, so producing to an existing topic costs no scan."""
    try:
        return broker.store.partition(name, index)
    except UnknownTopicError:
        if not 0 <= index < _ensure_topic(broker, name, allow_create=True):
            raise UnknownTopicError(f"topic {name!r} has no partition {index}") from None
        return broker.store.partition(name, index)


def _leader_epoch(broker: Broker, name: str, index: int) -> int:
    try:
        return broker.store.leader_epoch(name, index)  # loads no partition that is not loaded yet
    except UnknownTopicError:  # deleted meanwhile
        return -1


def _topic_entry(broker: Broker, name: str, partitions: int) -> dict:
    node = broker.config.node_id
    return {"error_code": 0, "name": name, "is_internal": name.startswith("__"),
            "partitions": [{"error_code": 0, "partition_index": p, "leader_id": node,
                            "leader_epoch": _leader_epoch(broker, name, p),
                            "replica_nodes": [node], "isr_nodes": [node],
                            "offline_replicas": []} for p in range(partitions)]}


def metadata(broker: Broker, version: int, body: dict) -> Reply:
    requested = body.get("topics")
    allow_create = body.get("allow_auto_topic_creation", True)
    if requested is None:
        topics = [_topic_entry(broker, name, count) for name, count in sorted(broker.store.topics().items())]
    else:
        topics, budget = [], PartitionBudget(broker)
        for entry in requested:
            name = entry["name"]
            try:
                topics.append(_topic_entry(broker, name, _ensure_topic(broker, name, allow_create, budget)))
            except LogshipError as exc:
                topics.append({"error_code": error_code(exc), "name": name, "is_internal": False,
                               "partitions": []})
    host, port = broker.address()
    node = broker.config.node_id
    return Reply({"throttle_time_ms": 0,
                  "brokers": [{"node_id": node, "host": host, "port": port, "rack": None}],
                  "cluster_id": broker.config.cluster_id, "controller_id": node, "topics": topics})


def _create_one(broker: Broker, topic: dict, validate_only: bool, budget: PartitionBudget) -> int:
    """Create one CreateTopics entry (or only check it); returns its partition count."""
    name = topic["name"]
    validate_topic_name(name)
    configs = create_topic_configs(broker, topic)
    partitions = topic.get("num_partitions", -1)
    if partitions == -1:
        partitions = broker.config.default_partitions
    if topic.get("assignments"):
        partitions = len(topic["assignments"])
    if partitions < 1:
        raise InvalidPartitionsError(f"a topic needs at least one partition, not {partitions}")
    if topic.get("replication_factor", -1) not in (-1, 1):
        raise InvalidReplicationFactorError(
            f"replication factor {topic['replication_factor']} is larger than the 1 available broker")
    if broker.store.partition_count(name):
        raise TopicAlreadyExistsError(f"topic {name!r} already exists")
    budget.take(name, 0, partitions)
    if validate_only:
        topic_config.apply(broker.store.config, configs)
    else:
        broker.store.create_topic(name, partitions, configs)
        log.info("created topic %s with %d partition(s)%s", name, partitions,
                 "".join(f" {k}={v}" for k, v in sorted(configs.items())))
    return partitions


def create_topics(broker: Broker, version: int, body: dict) -> Reply:
    """Creates each topic with its configs; from v5 the reply carries the topic's configs."""
    results, budget = [], PartitionBudget(broker)
    for topic in body["topics"]:
        try:
            partitions = _create_one(broker, topic, body.get("validate_only", False), budget)
            result = {"name": topic["name"], "error_code": 0, "error_message": None,
                      "num_partitions": partitions, "replication_factor": 1, "configs": None}
            if version >= 5 and not body.get("validate_only", False):
                result["configs"] = [{k: c[k] for k in ("name", "value", "read_only", "config_source", "is_sensitive")}
                                     for c in topic_entries(broker, topic["name"])]
            results.append(result)
        except LogshipError as exc:
            results.append({"name": topic["name"], "error_code": error_code(exc), "error_message": str(exc)})
    return Reply({"throttle_time_ms": 0, "topics": results})


def delete_topics(broker: Broker, version: int, body: dict) -> Reply:
    results = []
    for name in body["topic_names"]:
        try:
            refuse_internal(name)
            broker.store.delete_topic(name)
            log.info("deleted topic %s", name)
            results.append({"name": name, "error_code": 0})
        except LogshipError as exc:
            results.append({"name": name, "error_code": error_code(exc)})
        except Exception as exc:  # noqa: BLE001 - the request is answered whatever happened
            log.error("deleting topic %s failed: %s: %s", name, type(exc).__name__, exc)
            log.debug("deleting topic %s failed", name, exc_info=exc)
            results.append({"name": name, "error_code": -1})
    return Reply({"throttle_time_ms": 0, "responses": results})


def describe_log_dirs(broker: Broker, version: int, body: dict) -> Reply:
    """The size on disk of each requested partition (all when `topics` is null), in one log dir."""
    present = broker.store.topics()
    if body.get("topics") is None:
        wanted = {name: range(count) for name, count in present.items()}
    else:
        wanted = {t["topic"]: [p for p in t["partitions"] if p < present.get(t["topic"], 0)] for t in body["topics"]}
    topics = []
    for name, indexes in sorted(wanted.items()):
        partitions = []
        for index in indexes:
            size, lag = broker.store.size_and_lag(name, index)  # loads no partition
            partitions.append({"partition_index": index, "partition_size": size, "offset_lag": lag,
                               "is_future_key": False})
        if partitions:
            topics.append({"name": name, "partitions": partitions})
    return Reply({"throttle_time_ms": 0, "results": [{"error_code": 0, "log_dir": str(broker.store.data_dir),
                                                      "topics": topics}]})

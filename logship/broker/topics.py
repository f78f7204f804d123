"""Metadata, CreateTopics, DeleteTopics and DescribeLogDirs: what topics exist, who leads them
(this node) and how many bytes they hold.

In cluster mode Metadata answers from this broker's copy of the cluster metadata
(cluster_metadata.py): every broker of the cluster file, each partition's leader, replicas
and in-sync replicas (removed replicas as offline); a topic it does not know yet is asked of
the controller when auto-creation is allowed and answered LEADER_NOT_AVAILABLE meanwhile
(clients retry). CreateTopics and DeleteTopics go to the controller (controller.py): decided
there, forwarded there from the other brokers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import logging
import os

from ..errors import (InvalidPartitionsError, InvalidReplicationFactorError, InvalidTopicError, KafkaStorageError,
                      LeaderNotAvailableError, LogshipError, RequestTimedOutError, TopicAlreadyExistsError,
                      UnknownTopicError)
from ..protocol import ApiKey
from ..storage import Partition, topic_config, validate_topic_name
from .configs import create_topic_configs, created_topic_configs
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
    """One topic of a single broker's Metadata. A partition gone offline has no leader, as
    Kafka's partition whose only replica's log dir failed, this node among its offline replicas,
    and the error KAFKA_STORAGE_ERROR (so clients see why, and do not wait for a leader)."""
    node = broker.config.node_id
    entries = []
    for p in range(partitions):
        down = broker.store.is_offline(name, p)
        entries.append({"error_code": KafkaStorageError.code if down else 0, "partition_index": p,
                        "leader_id": -1 if down else node, "leader_epoch": _leader_epoch(broker, name, p),
                        "replica_nodes": [node], "isr_nodes": [] if down else [node],
                        "offline_replicas": [node] if down else []})
    return {"error_code": 0, "name": name, "is_internal": name.startswith("__"), "partitions": entries}


def _cluster_topic(broker: Broker, name: str, allow_create: bool) -> dict:
    parts = broker.cluster_metadata.partitions(name)
    if parts is None:
        try:
            validate_topic_name(name)
            code = UnknownTopicError.code
            if allow_create and broker.config.auto_create_topics and not name.startswith("__"):
                broker.controller.auto_create(name)
                code = LeaderNotAvailableError.code
        except LogshipError as exc:
            code = error_code(exc)
        return {"error_code": code, "name": name, "is_internal": False, "partitions": []}
    return {"error_code": 0, "name": name, "is_internal": name.startswith("__"),
            "partitions": [_cluster_partition(broker, name, p, s) for p, s in sorted(parts.items())]}


def _cluster_partition(broker: Broker, name: str, index: int, state) -> dict:
    """A partition as the cluster metadata has it, and as this node's own copy stands: an
    offline copy is among the offline replicas and leaves the in-sync ones, and an offline
    leader leaves no leader (KAFKA_STORAGE_ERROR), as Kafka never names an offline replica as
    leader."""
    node, down = broker.config.node_id, broker.store.is_offline(name, index)
    leader = -1 if down and state.leader == node else state.leader
    code = 0 if leader != -1 else KafkaStorageError.code if down else LeaderNotAvailableError.code
    return {"error_code": code, "partition_index": index, "leader_id": leader, "leader_epoch": state.leader_epoch,
            "replica_nodes": list(state.replicas), "isr_nodes": [b for b in state.isr if not down or b != node],
            "offline_replicas": [*state.removed, node] if down and node not in state.removed
            else list(state.removed)}


def _cluster_metadata(broker: Broker, body: dict) -> Reply:
    image = broker.cluster_metadata
    requested = body.get("topics")
    names = sorted(image.topics) if requested is None else [entry["name"] for entry in requested]
    topics = [_cluster_topic(broker, name, body.get("allow_auto_topic_creation", True)) for name in names]
    brokers = [{"node_id": spec.id, "host": spec.advertise[0], "port": spec.advertise[1], "rack": None}
               for spec in image.cluster.brokers]
    return Reply({"throttle_time_ms": 0, "brokers": brokers, "cluster_id": broker.config.cluster_id,
                  "controller_id": image.controller_id, "topics": topics})


def metadata(broker: Broker, version: int, body: dict) -> Reply:
    if broker.cluster_metadata is not None:
        return _cluster_metadata(broker, body)
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


def _unreachable(entries: list[dict], key: str):
    """The answer to a forwarded request when the controller cannot be reached."""
    def failed(message: str) -> dict:
        return {"throttle_time_ms": 0, key: [{**entry, "error_code": RequestTimedOutError.code,
                                              "error_message": message} for entry in entries]}
    return failed


def create_topics(broker: Broker, version: int, body: dict) -> Reply:
    """Creates each topic with its configs; from v5 the reply carries the topic's configs."""
    if broker.controller is not None:
        if broker.cluster_metadata.is_controller:
            return broker.controller.create_topics(version, body)
        return broker.controller.forward(ApiKey.CREATE_TOPICS, version, body, _unreachable(
            [{"name": t["name"]} for t in body["topics"]], "topics"))
    results, budget = [], PartitionBudget(broker)
    for topic in body["topics"]:
        try:
            partitions = _create_one(broker, topic, body.get("validate_only", False), budget)
            result = {"name": topic["name"], "error_code": 0, "error_message": None,
                      "num_partitions": partitions, "replication_factor": 1, "configs": None}
            if version >= 5 and not body.get("validate_only", False):
                result["configs"] = created_topic_configs(broker, topic["name"])
            results.append(result)
        except LogshipError as exc:
            results.append({"name": topic["name"], "error_code": error_code(exc), "error_message": str(exc)})
    return Reply({"throttle_time_ms": 0, "topics": results})


def delete_topics(broker: Broker, version: int, body: dict) -> Reply:
    if broker.controller is not None:
        if broker.cluster_metadata.is_controller:
            return broker.controller.delete_topics(version, body)
        return broker.controller.forward(ApiKey.DELETE_TOPICS, version, body, lambda message: {
            "throttle_time_ms": 0, "responses": [{"name": name, "error_code": RequestTimedOutError.code}
                                                 for name in body["topic_names"]]})
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
    """The size on disk of each requested partition (all when `topics` is null), in one log dir,
    and from v4 the bytes of the volume that holds it and those still free for it (KIP-827:
    statvfs's f_blocks and f_bavail, -1 when statvfs fails)."""
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
    total, usable = _volume_bytes(broker.store.data_dir)
    return Reply({"throttle_time_ms": 0, "error_code": 0,
                  "results": [{"error_code": 0, "log_dir": str(broker.store.data_dir), "topics": topics,
                               "total_bytes": total, "usable_bytes": usable}]})


def _volume_bytes(directory) -> tuple[int, int]:
    try:
        st = os.statvfs(directory)
    except OSError:
        return -1, -1
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

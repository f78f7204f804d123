"""Topic administration and offset lookups.

    admin = Admin(Cluster("127.0.0.1:9092"))
    admin.create_topic("logs", partitions=3)
    admin.list_topics()                  # {"logs": 3}
    admin.describe_topic("logs")         # [PartitionInfo(partition=0, leader=0, log_start_offset=0, ...)]
    admin.list_offsets("logs", {0: "-10", 1: "@-1h"})
    admin.describe_configs("logs")       # {"retention.ms": ConfigEntry("retention.ms", "604800000", "default", ...)}
    admin.alter_configs("logs", set={"retention.ms": "3600000"}, delete=["segment.bytes"])
    admin.add_partitions("logs", 6)      # grow to 6 partitions (never fewer)
    admin.delete_records("logs", {0: 1200})          # {0: 1200}: the new log start per partition
    admin.max_timestamp_offsets("logs")  # {0: (offset, timestamp) of the newest record by time}

`list_offsets` (the module function) and `resolve_offsets` are shared with the consumer:
ListOffsets goes to each partition's leader, earliest (-2), latest (-1) or by timestamp,
and the offset grammar of offsets.py is resolved on top of it. Every call raises typed
errors: UnknownTopicError, TopicAlreadyExistsError, BrokerUnavailableError...
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import KafkaError, LeaderNotAvailableError, UnknownTopicError, UnsupportedVersionError, error_for_code
from ..protocol import ApiKey
from .cluster import Cluster
from .offsets import OffsetSpec, parse_offset

__all__ = ["Admin", "ConfigEntry", "PartitionInfo", "list_offsets", "resolve_offsets", "EARLIEST", "LATEST",
           "MAX_TIMESTAMP", "HIGH_WATERMARK"]

EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3  # ListOffsets v7+: the record with the largest timestamp
MAX_TIMESTAMP_VERSION = 7
HIGH_WATERMARK = -1  # DeleteRecords: everything up to the high watermark


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    log_start_offset: int
    log_end_offset: int
    size_bytes: int | None = None  # None when the broker does not answer DescribeLogDirs
    replicas: tuple[int, ...] = ()  # broker ids, the preferred leader first
    isr: tuple[int, ...] = ()  # the in-sync replicas

    @property
    def under_replicated(self) -> bool:
        """Fewer in-sync replicas than replicas (kafka-topics --under-replicated-partitions)."""
        return len(self.isr) < len(self.replicas)

    @property
    def records(self) -> int:
        """Offsets between start and end (records, plus any control markers)."""
        return self.log_end_offset - self.log_start_offset


TOPIC_RESOURCE = 2
#: Kafka's ConfigSource values, by the names logship prints
CONFIG_SOURCES = {0: "unknown", 1: "topic", 2: "dynamic-broker", 3: "dynamic-default-broker", 4: "static-broker",
                  5: "default", 6: "broker-logger", 7: "client-metrics", 8: "group"}


@dataclass(frozen=True)
class ConfigEntry:
    """One config of a topic as the broker describes it; `source` is "topic" when the topic
    overrides it, "static-broker" when the broker was started with it, "default" otherwise."""

    name: str
    value: str | None
    source: str
    read_only: bool = False
    sensitive: bool = False


def by_leader(meta, topic: str, partitions) -> dict[int, list[int]]:
    """leader node -> the partitions of `partitions` it leads, per topic metadata `meta`;
    UnknownTopicError for a partition the topic does not have."""
    grouped: dict[int, list[int]] = {}
    for partition in partitions:
        info = meta.partitions.get(partition)
        if info is None:
            raise UnknownTopicError(f"topic {topic!r} has no partition {partition}")
        grouped.setdefault(info.leader, []).append(partition)
    return grouped


def list_offsets(cluster: Cluster, topic: str, timestamps: dict[int, int],
                 isolation_level: int = 0) -> dict[int, tuple[int, int]]:
    """partition -> (offset, timestamp) for each partition -> timestamp in `timestamps`
    (EARLIEST, LATEST or epoch ms). A time after the last record gives offset -1, as Kafka."""
    result: dict[int, tuple[int, int]] = {}
    for leader, partitions in by_leader(cluster.topic(topic), topic, timestamps).items():
        body = {"replica_id": -1, "isolation_level": isolation_level, "topics": [
            {"name": topic, "partitions": [{"partition_index": p, "timestamp": timestamps[p]}
                                           for p in partitions]}]}
        response = cluster.request(ApiKey.LIST_OFFSETS, body, node_id=leader)
        for entry in response["topics"]:
            for part in entry["partitions"]:
                code = part["error_code"]
                if code:
                    if code in (3, 6):
                        cluster.invalidate(topic)
                    raise error_for_code(code, f"listing offsets of {topic}-{part['partition_index']}: "
                                               f"Kafka error code {code}")
                result[part["partition_index"]] = (part["offset"], part["timestamp"])
    return result


def resolve_offsets(cluster: Cluster, topic: str, specs: dict[int, OffsetSpec | str | int],
                    isolation_level: int = 0) -> dict[int, int]:
    """partition -> offset for each partition -> offset spec (the DESIGN.md grammar).

    beginning/end are the log start/end; N is N as given (not checked against the log);
    -N is N before the end but never before the start; @time is the first record at or after
    it, or the end if there is none. `stored` needs a consumer group: ValueError.
    """
    parsed = {p: parse_offset(s) for p, s in specs.items()}
    wanted: dict[int, int] = {}
    needs_start = set()
    for partition, spec in parsed.items():
        if spec.kind == "stored":
            raise ValueError("offset 'stored' needs a consumer group, which this command does not use yet; "
                             "use beginning, end, N, -N or @TIME")
        if spec.kind == "beginning":
            wanted[partition] = EARLIEST
        elif spec.kind in ("end", "from_end"):
            wanted[partition] = LATEST
            if spec.kind == "from_end":
                needs_start.add(partition)
        elif spec.kind == "timestamp":
            wanted[partition] = spec.value
    found = list_offsets(cluster, topic, wanted, isolation_level) if wanted else {}
    starts = list_offsets(cluster, topic, {p: EARLIEST for p in needs_start}, isolation_level) if needs_start else {}
    ends: dict[int, tuple[int, int]] = {}
    result = {}
    for partition, spec in parsed.items():
        if spec.kind == "offset":
            result[partition] = spec.value
        elif spec.kind == "from_end":
            result[partition] = max(found[partition][0] - spec.value, starts[partition][0])
        elif spec.kind == "timestamp" and found[partition][0] < 0:
            if not ends:
                ends = list_offsets(cluster, topic, {p: LATEST for p in parsed}, isolation_level)
            result[partition] = ends[partition][0]
        else:
            result[partition] = found[partition][0]
    return result


class Admin:
    """Topic administration over a Cluster; see the module docstring."""

    def __init__(self, cluster: Cluster | str | None = None, timeout_ms: int = 30_000):
        self.cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        self._own_cluster = not isinstance(cluster, Cluster)
        self.timeout_ms = timeout_ms

    def list_topics(self, internal: bool = False) -> dict[str, int]:
        """name -> partition count, sorted by name; internal topics (`__*`) only if asked."""
        topics = self.cluster.refresh(None)
        return {name: len(meta.partitions) for name, meta in sorted(topics.items())
                if meta.error_code == 0 and (internal or not (meta.internal or name.startswith("__")))}

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     configs: dict[str, str] | None = None) -> None:
        """Create a topic; TopicAlreadyExistsError, InvalidPartitionsError... on refusal.
        partitions/replication_factor -1 take the broker's defaults (CreateTopics v4+, KIP-464);
        a broker older than that is sent 1 instead."""
        controller = self._controller()
        if self.cluster.version(ApiKey.CREATE_TOPICS, controller) < 4:
            partitions, replication_factor = (1 if v == -1 else v for v in (partitions, replication_factor))
        body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": replication_factor,
                            "assignments": [], "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}],
                "timeout_ms": self.timeout_ms, "validate_only": False}
        response = self.cluster.request(ApiKey.CREATE_TOPICS, body, node_id=controller)
        self._check(response["topics"], name, "creating")
        self.cluster.invalidate(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic; UnknownTopicError if there is none."""
        body = {"topic_names": [name], "timeout_ms": self.timeout_ms}
        response = self.cluster.request(ApiKey.DELETE_TOPICS, body, node_id=self._controller())
        self._check(response["responses"], name, "deleting")
        self.cluster.invalidate(name)

    def describe_topic(self, name: str) -> list[PartitionInfo]:
        """Each partition's leader, replicas, in-sync replicas, log start and end offsets and
        size (UnknownTopicError if none)."""
        meta = self.cluster.refresh([name]).get(name)
        if meta is None or meta.error_code == UnknownTopicError.code:
            raise UnknownTopicError(f"topic {name!r} does not exist (brokers {self.cluster.brokers})")
        if meta.error_code not in (0, LeaderNotAvailableError.code):
            raise error_for_code(meta.error_code, f"metadata for topic {name!r}: Kafka error code {meta.error_code}")
        partitions = sorted(meta.partitions)
        led = [p for p in partitions if meta.partitions[p].leader >= 0]  # a leaderless one is shown, offsets -1
        starts = list_offsets(self.cluster, name, {p: EARLIEST for p in led}) if led else {}
        ends = list_offsets(self.cluster, name, {p: LATEST for p in led}) if led else {}
        sizes = self._sizes(name, {p: meta.partitions[p].leader for p in led})
        return [PartitionInfo(p, meta.partitions[p].leader, starts.get(p, (-1,))[0], ends.get(p, (-1,))[0],
                              sizes.get(p), meta.partitions[p].replicas, meta.partitions[p].isr) for p in partitions]

    def _sizes(self, topic: str, leaders: dict[int, int]) -> dict[int, int]:
        """partition -> bytes on disk, asked of each leader with DescribeLogDirs; partitions
        whose leader does not support that API are left out."""
        sizes: dict[int, int] = {}
        for node in set(leaders.values()):
            body = {"topics": [{"topic": topic, "partitions": [p for p, n in leaders.items() if n == node]}]}
            try:
                response = self.cluster.request(ApiKey.DESCRIBE_LOG_DIRS, body, node_id=node)
            except UnsupportedVersionError:
                continue
            for result in response["results"]:
                for entry in result["topics"]:
                    if entry["name"] == topic:
                        for p in entry["partitions"]:
                            if not p["is_future_key"]:
                                sizes[p["partition_index"]] = sizes.get(p["partition_index"], 0) + p["partition_size"]
        return sizes

    def list_offsets(self, topic: str, specs: dict[int, OffsetSpec | str | int] | OffsetSpec | str | int
                     ) -> dict[int, int]:
        """partition -> offset for a spec per partition, or one spec for every partition."""
        if not isinstance(specs, dict):
            specs = {p: specs for p in self.cluster.topic(topic).partitions}
        return resolve_offsets(self.cluster, topic, specs)

    def describe_configs(self, topic: str) -> dict[str, ConfigEntry]:
        """name -> ConfigEntry of every config of `topic`, sorted by name (UnknownTopicError)."""
        body = {"resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": topic, "configuration_keys": None}],
                "include_synonyms": False, "include_documentation": False}
        response = self.cluster.request(ApiKey.DESCRIBE_CONFIGS, body)
        entries: dict[str, ConfigEntry] = {}
        for result in response["results"]:
            self._check_resource(result, topic, "describing the configs of")
            for c in result["configs"]:
                source = c.get("config_source", -1)
                if source == -1:  # v0: only is_default
                    source = 5 if c.get("is_default") else 1
                entries[c["name"]] = ConfigEntry(c["name"], c["value"], CONFIG_SOURCES.get(source, str(source)),
                                                 c["read_only"], c["is_sensitive"])
        return dict(sorted(entries.items()))

    def alter_configs(self, topic: str, set: dict[str, str] | None = None, delete: list[str] | tuple = (),
                      validate_only: bool = False) -> None:
        """Set and delete (back to the default) configs of `topic`, all or none; InvalidConfigError
        naming the key when the broker refuses one, UnknownTopicError. Uses IncrementalAlterConfigs,
        or AlterConfigs with the topic's other overrides kept against a broker without it."""
        set = dict(set or {})
        try:
            self.cluster.version(ApiKey.INCREMENTAL_ALTER_CONFIGS)
        except UnsupportedVersionError:
            current = {n: e.value for n, e in self.describe_configs(topic).items() if e.source == "topic"}
            current.update(set)
            for name in delete:
                current.pop(name, None)
            configs = [{"name": n, "value": v} for n, v in current.items()]
            api = ApiKey.ALTER_CONFIGS
        else:
            configs = ([{"name": n, "config_operation": 0, "value": v} for n, v in set.items()]
                       + [{"name": n, "config_operation": 1, "value": None} for n in delete])
            api = ApiKey.INCREMENTAL_ALTER_CONFIGS
        body = {"resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": topic, "configs": configs}],
                "validate_only": validate_only}
        response = self.cluster.request(api, body)
        for result in response["responses"]:
            self._check_resource(result, topic, "changing the configs of")

    @staticmethod
    def _check_resource(result: dict, topic: str, doing: str) -> None:
        code = result.get("error_code", 0)
        if code and result.get("resource_name") == topic:
            message = result.get("error_message") or f"Kafka error code {code}"
            raise error_for_code(code, f"{doing} topic {topic!r}: {message}")

    def add_partitions(self, name: str, total: int, validate_only: bool = False) -> None:
        """Grow topic `name` to `total` partitions (CreatePartitions). InvalidPartitionsError
        unless `total` is above the current count; UnknownTopicError. Existing records stay
        where they are (keys may map to other partitions from now on)."""
        body = {"topics": [{"name": name, "count": total, "assignments": None}],
                "timeout_ms": self.timeout_ms, "validate_only": validate_only}
        response = self.cluster.request(ApiKey.CREATE_PARTITIONS, body, node_id=self._controller())
        self._check(response["results"], name, "adding partitions to")
        self.cluster.invalidate(name)

    def delete_records(self, topic: str, offsets: dict[int, int]) -> dict[int, int]:
        """Delete the records of each partition below its offset (HIGH_WATERMARK: all that is
        there), asking each partition's leader (DeleteRecords); partition -> the new log start.
        OffsetOutOfRangeError beyond the log end; nothing below the log start changes."""
        result: dict[int, int] = {}
        for leader, partitions in by_leader(self.cluster.topic(topic, refresh=True), topic, offsets).items():
            body = {"topics": [{"name": topic, "partitions": [{"partition_index": p, "offset": offsets[p]}
                                                              for p in partitions]}],
                    "timeout_ms": self.timeout_ms}
            response = self.cluster.request(ApiKey.DELETE_RECORDS, body, node_id=leader)
            for entry in response["topics"]:
                for part in entry["partitions"]:
                    code = part["error_code"]
                    if code:
                        raise error_for_code(code, f"deleting records of {topic}-{part['partition_index']} "
                                                   f"before offset {offsets[part['partition_index']]}: "
                                                   f"{_reason(code)}")
                    result[part["partition_index"]] = part["low_watermark"]
        return result

    def max_timestamp_offsets(self, topic: str, partitions: list[int] | None = None) -> dict[int, tuple[int, int]]:
        """partition -> (offset, timestamp) of the first record carrying the partition's largest
        timestamp ((-1, -1) when it is empty): ListOffsets v7 MAX_TIMESTAMP. UnsupportedVersionError
        from a broker older than Kafka 3.0."""
        meta = self.cluster.topic(topic, refresh=True)
        parts = sorted(meta.partitions) if partitions is None else partitions
        result: dict[int, tuple[int, int]] = {}
        for leader, partitions_of_leader in by_leader(meta, topic, parts).items():
            # its own connection: ListOffsets v7 (flexible) only here, set N's v2 everywhere else
            with self.cluster.open_connection(leader) as conn:
                if conn.broker_versions.get(ApiKey.LIST_OFFSETS, (0, -1))[1] < MAX_TIMESTAMP_VERSION:
                    raise UnsupportedVersionError(f"broker {conn.address} cannot look offsets up by largest "
                                                  f"timestamp (that needs ListOffsets v7, Kafka 3.0 or later)")
                body = {"replica_id": -1, "isolation_level": 0, "topics": [{"name": topic, "partitions": [
                    {"partition_index": p, "timestamp": MAX_TIMESTAMP} for p in partitions_of_leader]}]}
                response = conn.request(ApiKey.LIST_OFFSETS, body, MAX_TIMESTAMP_VERSION)
            for entry in response["topics"]:
                for part in entry["partitions"]:
                    if part["error_code"]:
                        raise error_for_code(part["error_code"], f"listing the max-timestamp offset of "
                                             f"{topic}-{part['partition_index']}: {_reason(part['error_code'])}")
                    result[part["partition_index"]] = (part["offset"], part["timestamp"])
        return result

    def close(self) -> None:
        """Close the cluster's connections if this Admin made the cluster."""
        if self._own_cluster:
            self.cluster.close()

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _controller(self) -> int | None:
        """The controller's node id, or None (any broker) when the metadata names no known
        node as controller (librdkafka's mock cluster answers 0 with nodes 1..3)."""
        return self.cluster.controller()

    @staticmethod
    def _check(results: list[dict], name: str, doing: str) -> None:
        for result in results:
            code = result.get("error_code", 0)
            if result.get("name") == name and code:
                message = result.get("error_message") or f"Kafka error code {code}"
                raise error_for_code(code, f"{doing} topic {name!r}: {message}")


def _reason(code: int) -> str:
    """A short reason for an error code, from the exception class's first docstring line."""
    error = error_for_code(code)
    doc = "" if isinstance(error, KafkaError) else (type(error).__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else f"Kafka error code {code}"

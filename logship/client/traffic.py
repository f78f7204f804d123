"""Traffic of a cluster from the outside: rates in and out per topic and partition, and the
consumer groups' lag, measured over the Kafka protocol only (so against Apache Kafka too).

`Traffic(cluster).sample()` asks, each time it is called:
* Metadata (topics, partitions, leaders);
* ListOffsets (latest) of every partition, one request per leader: *records in* is the growth
  of the log end offsets between two samples;
* DescribeLogDirs of every broker: *bytes in* is the growth of the partitions' sizes (retention
  deleting a segment makes a size shrink; such a partition's bytes in are estimated from its
  records in and its bytes per record). A broker that does not answer it leaves sizes unknown;
* ListGroups, DescribeGroups and OffsetFetch of every group: *records out* is the growth of the
  committed offsets (what the groups acknowledged having consumed), *bytes out* that times the
  partition's bytes per record (an estimate: sizes include batch overhead); *lag* is the log
  end minus the committed offset, per partition and summed per group.

Each `sample()` returns a `Snapshot` of rates over the time since the previous sample (zero for
the first) and keeps the last `history` per-topic records-in rates for sparklines. Errors of one
group or one broker leave that part out of the snapshot; `errors` says which.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from ..errors import LogshipError, UnsupportedVersionError
from ..protocol import ApiKey
from .cluster import Cluster
from .groups_admin import committed_offsets, list_groups

__all__ = ["Traffic", "Snapshot", "TopicRates", "PartitionRates", "GroupLag"]

TopicPartition = tuple[str, int]
_LATEST, _EARLIEST = -1, -2


@dataclass
class PartitionRates:
    topic: str
    partition: int
    leader: int
    log_end_offset: int
    size_bytes: int | None
    records_in: float = 0.0    # per second
    bytes_in: float = 0.0


@dataclass
class TopicRates:
    name: str
    partitions: int
    log_end_offset: int              # summed over partitions
    size_bytes: int | None
    records_in: float = 0.0
    bytes_in: float = 0.0
    records_out: float = 0.0
    bytes_out: float = 0.0
    history: list[float] = field(default_factory=list)  # records in per second, oldest first


@dataclass
class GroupLag:
    group: str
    state: str
    members: int
    topics: list[str]
    lag: int                         # records, summed over its partitions
    records_out: float = 0.0
    partitions: dict[str, int] = field(default_factory=dict)  # "topic-p" -> lag


@dataclass
class Snapshot:
    at: float                        # time.time() of the sample
    interval: float                  # seconds since the previous sample (0: the first)
    topics: list[TopicRates]
    partitions: list[PartitionRates]
    groups: list[GroupLag]
    errors: list[str] = field(default_factory=list)


@dataclass
class _Raw:
    at: float
    leaders: dict[TopicPartition, int]
    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    sizes: dict[TopicPartition, int]
    groups: dict[str, object]  # name -> groups_admin.GroupDescription
    committed: dict[str, dict[TopicPartition, int]]


class Traffic:
    """See the module docstring. Not thread-safe: one caller samples."""

    def __init__(self, cluster: Cluster, *, internal: bool = False, history: int = 60):
        self.cluster = cluster
        self.internal = internal
        self._previous: _Raw | None = None
        self._history: dict[str, deque] = {}
        self._length = history

    def sample(self) -> Snapshot:
        errors: list[str] = []
        raw = self._collect(errors)
        snapshot = self._rates(self._previous, raw, errors)
        self._previous = raw
        return snapshot

    # --- collecting ------------------------------------------------------------------------------

    def _collect(self, errors: list[str]) -> _Raw:
        meta = self.cluster.request(ApiKey.METADATA, {"topics": None, "allow_auto_topic_creation": False})
        leaders = {(t["name"], p["partition_index"]): p["leader_id"] for t in meta["topics"]
                   if not t["error_code"] and (self.internal or not t.get("is_internal"))
                   for p in t["partitions"]}
        brokers = sorted(b["node_id"] for b in meta["brokers"])
        groups = {}
        for node in brokers:  # one broker failing ListGroups leaves out only its groups
            try:
                for description in list_groups(self.cluster, node):
                    groups[description.group_id] = description
            except UnsupportedVersionError:  # a broker without groups (librdkafka's mock): none to show
                pass
            except LogshipError as exc:
                errors.append(f"broker {node}: groups: {exc}")
        committed = {}
        for name in groups:
            try:
                committed[name] = committed_offsets(self.cluster, name)
            except LogshipError as exc:
                errors.append(f"group {name}: {exc}")
        return _Raw(time.time(), leaders, self._offsets(leaders, _EARLIEST, errors),
                    self._offsets(leaders, _LATEST, errors), self._sizes(brokers, leaders, errors), groups, committed)

    def _offsets(self, leaders: dict[TopicPartition, int], timestamp: int,
                 errors: list[str]) -> dict[TopicPartition, int]:
        """Every partition's log end (_LATEST) or log start (_EARLIEST): one request per leader."""
        by_leader: dict[int, dict[str, list[int]]] = {}
        for (topic, p), leader in leaders.items():
            if leader >= 0:
                by_leader.setdefault(leader, {}).setdefault(topic, []).append(p)
        found = {}
        for leader, topics in sorted(by_leader.items()):
            body = {"replica_id": -1, "isolation_level": 0, "topics": [
                {"name": t, "partitions": [{"partition_index": p, "timestamp": timestamp} for p in ps]}
                for t, ps in sorted(topics.items())]}
            try:
                response = self.cluster.request(ApiKey.LIST_OFFSETS, body, node_id=leader)
            except LogshipError as exc:
                errors.append(f"broker {leader}: {exc}")
                continue
            for entry in response["topics"]:
                for part in entry["partitions"]:
                    if not part["error_code"]:
                        found[(entry["name"], part["partition_index"])] = part["offset"]
        return found

    def _sizes(self, brokers: list[int], leaders: dict[TopicPartition, int],
               errors: list[str]) -> dict[TopicPartition, int]:
        """Each partition's size on its leader (followers hold the same bytes)."""
        sizes = {}
        for node in brokers:
            try:
                response = self.cluster.request(ApiKey.DESCRIBE_LOG_DIRS, {"topics": None}, node_id=node)
            except UnsupportedVersionError:  # sizes unknown (and bytes in estimated from none): not an error
                continue
            except LogshipError as exc:
                errors.append(f"broker {node}: sizes: {exc}")
                continue
            for result in response["results"]:
                for t in result["topics"]:
                    for p in t["partitions"]:
                        key = (t["name"], p["partition_index"])
                        if leaders.get(key) == node and not p["is_future_key"]:
                            sizes[key] = sizes.get(key, 0) + p["partition_size"]
        return sizes

    # --- rates -----------------------------------------------------------------------------------

    def _rates(self, old: _Raw | None, new: _Raw, errors: list[str]) -> Snapshot:
        interval = new.at - old.at if old is not None else 0.0
        per_second = (1.0 / interval) if interval > 0 else 0.0
        partitions = []
        for key in sorted(new.leaders):
            end, size = new.ends.get(key), new.sizes.get(key)
            rates = PartitionRates(key[0], key[1], new.leaders[key], -1 if end is None else end, size)
            if old is not None and end is not None and key in old.ends:
                records = max(end - old.ends[key], 0)
                rates.records_in = records * per_second
                grown = None if size is None or key not in old.sizes else size - old.sizes[key]
                if grown is not None and grown >= 0:
                    rates.bytes_in = grown * per_second
                else:
                    rates.bytes_in = rates.records_in * _bytes_per_record(size, end - new.starts.get(key, 0))
            partitions.append(rates)
        by_topic: dict[str, list[PartitionRates]] = {}
        for rates in partitions:
            by_topic.setdefault(rates.topic, []).append(rates)
        bpr = {(r.topic, r.partition): _bytes_per_record(r.size_bytes,
                                                         r.log_end_offset - new.starts.get((r.topic, r.partition), 0))
               for r in partitions}

        groups, out_records, out_bytes = [], {}, {}
        for name, description in sorted(new.groups.items()):
            offsets = new.committed.get(name, {})
            before = old.committed.get(name, {}) if old is not None else {}
            lags, out = {}, 0.0
            for key, offset in offsets.items():
                end = new.ends.get(key)
                if end is not None:
                    lags[f"{key[0]}-{key[1]}"] = max(end - offset, 0)
                if key in before and per_second:
                    moved = max(offset - before[key], 0) * per_second
                    out += moved
                    out_records[key[0]] = out_records.get(key[0], 0.0) + moved
                    out_bytes[key[0]] = out_bytes.get(key[0], 0.0) + moved * bpr.get(key, 0.0)
            groups.append(GroupLag(name, description.state, len(description.members),
                                   sorted({t for t, _ in offsets}), sum(lags.values()), out, lags))

        topics = []
        for name, parts in sorted(by_topic.items()):
            sizes = [p.size_bytes for p in parts]
            row = TopicRates(name, len(parts), sum(max(p.log_end_offset, 0) for p in parts),
                             None if None in sizes else sum(sizes),
                             sum(p.records_in for p in parts), sum(p.bytes_in for p in parts),
                             out_records.get(name, 0.0), out_bytes.get(name, 0.0))
            history = self._history.setdefault(name, deque(maxlen=self._length))
            if old is not None:
                history.append(row.records_in)
            row.history = list(history)
            topics.append(row)
        for gone in set(self._history) - set(by_topic):
            del self._history[gone]
        return Snapshot(new.at, interval, topics, partitions, groups, errors)


def _bytes_per_record(size: int | None, records: int) -> float:
    return size / records if size and records > 0 else 0.0

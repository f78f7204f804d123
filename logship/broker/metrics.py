"""`BrokerMetrics`: the broker's figures for Prometheus (prometheus_client, a registry of its own).

Counted where the work is done, once per request or per partition of a request, never per
record:

    logship_records_in_total{topic}, logship_bytes_in_total{topic}   appended by producers
    logship_bytes_out_total{topic}                                   record bytes sent to consumers
    logship_records_out_total{topic}        the same in records, estimated from each partition's
                                            bytes per record (a fetch response is never decoded)
    logship_request_duration_seconds{api}   from a request's decoding to its response being
                                            encoded (waits for fsync, replicas, long polls included)
    logship_sync_duration_seconds           one group-commit round of acks=all (fdatasync included)

Read from the broker's state when Prometheus scrapes (`Snapshot`, taken on the event loop's
thread, so nothing is read while the loop changes it):

    logship_connections, logship_info{version,node_id}
    logship_partition_log_end_offset / _log_start_offset / _high_watermark / _size_bytes
        {topic,partition}: every partition opened since start (the others have not changed)
    logship_partition_in_sync_replicas{topic,partition}, logship_under_replicated_partitions,
        logship_offline_partitions, logship_replica_lag{topic,partition,replica} (records,
        the leader's log end minus the follower's last fetch offset; partitions led here)
    logship_consumer_group_lag{group,topic,partition} (records to the log end) and
        logship_consumer_group_lag_seconds (age of the batch at the committed offset; 0 when
        nothing waits), for the groups this broker coordinates
    process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds... (Linux)
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily

from .. import __version__
from ..errors import LogshipError
from ..protocol import ApiKey

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["BrokerMetrics"]

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    5, 10, 30)
_SCRAPE_WAIT_S = 5.0
_SNAPSHOT_TTL_S = 1.0
_FIRST_TIMESTAMP = struct.Struct(">q")  # a batch's firstTimestamp, bytes 27-34 of its header
_HEADER_BYTES = 61


class BrokerMetrics:
    """See the module docstring. Counting methods run on the event loop's thread."""

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop, connections=lambda: 0):
        self.broker, self.loop, self.connections = broker, loop, connections
        disable_created_metrics()  # no *_created series: dashboards never use them
        self.registry = CollectorRegistry()
        r = self.registry
        self.records_in = Counter("logship_records_in", "Records appended by producers.", ["topic"], registry=r)
        self.bytes_in = Counter("logship_bytes_in", "Record batch bytes appended by producers.", ["topic"],
                                registry=r)
        self.bytes_out = Counter("logship_bytes_out", "Record batch bytes sent to consumers.", ["topic"],
                                 registry=r)
        self.records_out = Counter("logship_records_out", "Records sent to consumers, estimated from bytes out "
                                   "and the partition's bytes per record.", ["topic"], registry=r)
        self.requests = Histogram("logship_request_duration_seconds", "Time from a request's decoding to its "
                                  "response, per API.", ["api"], buckets=_LATENCY_BUCKETS, registry=r)
        self.syncs = Histogram("logship_sync_duration_seconds", "One group-commit round (fdatasync) for acks=all.",
                               buckets=_LATENCY_BUCKETS, registry=r)
        ProcessCollector(registry=r)
        r.register(_StateCollector(self))
        self._topics: dict[str, tuple] = {}  # topic -> its counters' children (labels() is slow)
        self._apis: dict[int, object] = {}
        self._ratios: dict[tuple[str, int], tuple[float, float]] = {}  # (ratio, valid until)

    def _children(self, topic: str) -> tuple:
        children = self._topics.get(topic)
        if children is None:
            children = self._topics[topic] = (self.records_in.labels(topic), self.bytes_in.labels(topic),
                                              self.bytes_out.labels(topic), self.records_out.labels(topic))
        return children

    def produced(self, topic: str, records: int, size: int) -> None:
        children = self._children(topic)
        children[0].inc(records)
        children[1].inc(size)

    def fetched(self, body: dict) -> None:
        """Count a consumer's fetch response about to be sent (its body, slices inside)."""
        store = self.broker.store
        for topic in body["responses"]:
            name, sent, records = topic["topic"], 0, 0.0
            for entry in topic["partitions"]:
                size = len(entry["records"] or b"")
                if size:
                    sent += size
                    records += size * self._ratio(store, name, entry["partition_index"])
            if sent:
                children = self._children(name)
                children[2].inc(sent)
                children[3].inc(records)

    def _ratio(self, store, topic: str, index: int) -> float:
        """_records_per_byte, worked out again at most once a second per partition."""
        now = time.monotonic()
        cached = self._ratios.get((topic, index))
        if cached is None or cached[1] < now:
            cached = self._ratios[(topic, index)] = (_records_per_byte(store, topic, index), now + 1.0)
        return cached[0]

    def answered(self, api_key: int, seconds: float) -> None:
        child = self._apis.get(api_key)
        if child is None:
            child = self._apis[api_key] = self.requests.labels(_api_name(api_key))
        child.observe(seconds)

    def synced(self, seconds: float) -> None:
        self.syncs.observe(seconds)


def _api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name.lower()
    except ValueError:
        return str(api_key)


def _records_per_byte(store, topic: str, index: int) -> float:
    """Records per byte of the partition's log (0 when it is empty or not open)."""
    partition = store.loaded_partition(topic, index)
    if partition is None:
        return 0.0
    size = partition.size_bytes
    return (partition.log_end_offset - partition.log_start_offset) / size if size else 0.0


class _StateCollector:
    """Gauges read at scrape time from a snapshot taken on the event loop, at most one a second
    (concurrent and frequent scrapes share it, so scraping costs the loop a bounded time)."""

    def __init__(self, metrics: BrokerMetrics):
        self.metrics = metrics
        self._lock = threading.Lock()
        self._taken: tuple[float, dict] | None = None

    def _snapshot(self) -> dict:
        m = self.metrics
        with self._lock:
            if self._taken is None or time.monotonic() - self._taken[0] >= _SNAPSHOT_TTL_S:
                snap = asyncio.run_coroutine_threadsafe(_snapshot(m), m.loop).result(_SCRAPE_WAIT_S)
                self._taken = (time.monotonic(), snap)
            return self._taken[1]

    def collect(self):
        m = self.metrics
        try:
            snap = self._snapshot()
        except Exception:  # noqa: BLE001 - a scrape gets the counters at least
            return
        info = GaugeMetricFamily("logship_info", "This broker's version and node id.", labels=["version", "node_id"])
        info.add_metric([__version__, str(m.broker.config.node_id)], 1)
        yield info
        yield GaugeMetricFamily("logship_connections", "Open client connections.", value=snap["connections"])
        names = {"log_end_offset": "Next offset to be written.", "log_start_offset": "First offset kept.",
                 "high_watermark": "Offsets below it are readable by consumers.",
                 "size_bytes": "Bytes of the partition's segment files."}
        for field, doc in names.items():
            family = GaugeMetricFamily(f"logship_partition_{field}", doc, labels=["topic", "partition"])
            for (topic, index), values in snap["partitions"].items():
                family.add_metric([topic, str(index)], values[field])
            yield family
        isr = GaugeMetricFamily("logship_partition_in_sync_replicas", "In-sync replicas of the partition.",
                                labels=["topic", "partition"])
        lag = GaugeMetricFamily("logship_replica_lag", "Records a follower is behind this leader's log end.",
                                labels=["topic", "partition", "replica"])
        for (topic, index), values in snap["partitions"].items():
            isr.add_metric([topic, str(index)], values["isr"])
            for replica, behind in values["followers"].items():
                lag.add_metric([topic, str(index), str(replica)], behind)
        yield isr
        yield lag
        yield GaugeMetricFamily("logship_under_replicated_partitions",
                                "Partitions led here with fewer in-sync replicas than replicas.",
                                value=snap["under_replicated"])
        yield GaugeMetricFamily("logship_offline_partitions", "Partitions gone offline here (a failed fdatasync).",
                                value=snap["offline"])
        records = GaugeMetricFamily("logship_consumer_group_lag", "Records between a group's committed offset "
                                    "and the log end.", labels=["group", "topic", "partition"])
        seconds = GaugeMetricFamily("logship_consumer_group_lag_seconds", "Age of the oldest record a group has "
                                    "not consumed (0 when none waits).", labels=["group", "topic", "partition"])
        for (group, topic, index), (behind, age) in snap["groups"].items():
            records.add_metric([group, topic, str(index)], behind)
            seconds.add_metric([group, topic, str(index)], age)
        yield records
        yield seconds


async def _snapshot(m: BrokerMetrics) -> dict:
    broker = m.broker
    store, replicas = broker.store, broker.replicas
    partitions, under = {}, 0
    for partition in store.loaded():
        key = (partition.topic, partition.index)
        state = replicas.state(*key) if replicas.clustered else None
        followers = replicas.followers(key) if replicas.clustered else None
        end = partition.log_end_offset
        isr = len(state.isr) if state is not None else 1
        if state is not None and state.leader == broker.config.node_id and len(state.isr) < len(state.replicas):
            under += 1
        partitions[key] = {"log_end_offset": end, "log_start_offset": partition.log_start_offset,
                           "high_watermark": partition.high_watermark, "size_bytes": partition.size_bytes,
                           "isr": isr, "followers": {r: max(end - o, 0) if o >= 0 else end
                                                     for r, (o, _, _) in (followers or {}).items()}}
    groups = {}
    now_ms = time.time() * 1000
    for group in broker.group_offsets.groups():
        for (topic, index), committed in broker.group_offsets.committed(group).items():
            partition = store.loaded_partition(topic, index)
            if partition is None:
                continue
            behind = max(partition.high_watermark - committed.offset, 0)
            groups[(group, topic, index)] = (behind, _age_s(partition, committed.offset, now_ms) if behind else 0.0)
    return {"connections": m.connections(), "partitions": partitions, "under_replicated": under,
            "offline": len(store.offline()), "groups": groups}


def _age_s(partition, offset: int, now_ms: float) -> float:
    """Seconds since the first timestamp of the batch holding `offset` (0 when unknown)."""
    try:
        piece = partition.read(offset, _HEADER_BYTES, inline_bytes=0)
    except LogshipError:
        return 0.0
    if piece is None:
        return 0.0
    with piece:
        header = os.pread(piece.fileno(), _HEADER_BYTES, piece.position) if not piece.in_memory else \
            piece.read_bytes()[:_HEADER_BYTES]
    if len(header) < _HEADER_BYTES:
        return 0.0
    return max(now_ms - _FIRST_TIMESTAMP.unpack_from(header, 27)[0], 0) / 1000

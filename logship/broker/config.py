"""Broker settings: identity, advertised address, topic defaults, request limits, groups."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..cluster_file import ClusterFile
from ..storage import LogConfig
from .limits import Limits

DEFAULT_PORT = 9092


@dataclass
class BrokerConfig:
    """What `logship serve` was asked to be.

    `advertised_host`/`advertised_port` are what Metadata and FindCoordinator tell clients to
    connect to; they default to the bound address once it is known (port 0 picks one).

    Group coordinator settings, named after Kafka's broker configs:
    group_initial_rebalance_delay_ms (group.initial.rebalance.delay.ms) — how long a new,
    empty group waits for more members before its first rebalance completes;
    group_min/max_session_timeout_ms (group.min/max.session.timeout.ms) — the session
    timeouts a JoinGroup may ask for; offset_metadata_max_bytes (offset.metadata.max.bytes);
    offsets_segment_bytes (offsets.topic.segment.bytes, smaller than Kafka's 100 MiB so that
    compaction has sealed segments to work on); compaction_check_interval_s
    (log.cleaner.backoff.ms).

    Partition caps (partition_limits.py), refused with POLICY_VIOLATION before anything is
    created: max_partitions_per_request — new partitions one CreateTopics, CreatePartitions or
    Metadata (auto-creation) may ask for, summed over its topics (Kafka's controller bounds one
    operation at 10,000 records; 5,000 here, as creating them blocks the event loop for ~0.2 ms
    each on a slow file system); max_partitions_per_topic; max_broker_partitions — all
    partitions of this broker (KIP-578's max.broker.partitions), `__consumer_offsets` included.

    Cluster mode (`serve --cluster FILE --broker-id N`): `cluster` is the cluster file,
    `node_id` this broker's id in it, and `secret` the cluster's shared secret, which peers
    present to replicate and to send inter-broker requests. Without a cluster file the
    broker is a cluster of one (node 0), as before.
    """

    node_id: int = 0
    listen_host: str = "127.0.0.1"
    listen_port: int = DEFAULT_PORT
    advertised_host: str | None = None
    advertised_port: int | None = None
    cluster_id: str = "logship"
    default_partitions: int = 1
    auto_create_topics: bool = True
    max_frame_bytes: int = 100 << 20
    retention_check_interval_s: float = 60.0
    checkpoint_interval_s: float = 30.0
    log: LogConfig = field(default_factory=LogConfig)
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 30 * 60 * 1000
    offset_metadata_max_bytes: int = 4096
    offsets_segment_bytes: int = 1 << 20
    compaction_check_interval_s: float = 15.0
    max_partitions_per_request: int = 5_000
    max_partitions_per_topic: int = 10_000
    max_broker_partitions: int = 20_000
    limits: Limits = field(default_factory=Limits.defaults_for)  # what one client may make it spend
    cluster: ClusterFile | None = None
    secret: bytes | None = field(default=None, repr=False)
    producer_id_expiration_ms: int = 86_400_000  # Kafka's producer.id.expiration.ms: idle producers forgotten
    metrics_address: tuple[str, int] | None = None  # serve /metrics for Prometheus there (metrics.py)

    def offsets_log_config(self) -> LogConfig:
        """The log settings of `__consumer_offsets`: compacted, never deleted by retention,
        small segments; flushing as the other topics."""
        return replace(self.log, segment_bytes=self.offsets_segment_bytes, retention_ms=-1, retention_bytes=-1,
                       cleanup_policy="compact")

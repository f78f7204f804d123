"""Broker settings: identity, advertised address, topic defaults and request limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..storage import LogConfig

DEFAULT_PORT = 9092


@dataclass
class BrokerConfig:
    """What `logship serve` was asked to be.

    `advertised_host`/`advertised_port` are what Metadata and FindCoordinator tell clients to
    connect to; they default to the bound address once it is known (port 0 picks one).
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

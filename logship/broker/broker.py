"""`Broker`: turns one decoded request into one `Reply` (reply.py), over the store; no sockets here.

This module dispatches to the handler modules; they import reply.py, never this module, so
imports point one way.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from ..errors import UnsupportedVersionError
from ..protocol import ADVERTISED, ApiKey, api_versions_entries
from ..storage import Store
from . import (admin, admin_ops, configs, describe_quorum, fetch, offsets, peer_auth, produce, replica_handlers,
               topic_configs_sync, topics)
from .cluster_metadata import ClusterMetadata, update_metadata
from .controller import controller_for
from .config import BrokerConfig
from .producer_ids import ProducerIds
from .groups import GroupCoordinator, OffsetStore, handlers as group_handlers
from .replication import ReplicaManager
from .reply import ClientInfo, Reply


#: What a connection authenticated with the cluster secret may also use: Fetch v12 (last
#: fetched epoch, diverging epoch) for replica fetches; Metadata v7 (leader epochs) for
#: `logship promote`. Clients are offered ADVERTISED only.
PEER_VERSIONS = {**ADVERTISED, ApiKey.FETCH: (4, 12), ApiKey.METADATA: (1, 7)}

Handler = Callable[["Broker", int, dict], Reply]
ClientHandler = Callable[["Broker", int, dict, ClientInfo], Reply]


class Broker:
    """One node of logship: a store, its settings, and the handlers of every advertised API.

    `on_append(topic, partition)` is called after every successful append, so the server can
    wake long-polling fetches; it runs on the caller's thread.
    """

    def __init__(self, store: Store, config: BrokerConfig, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.config = config
        self.on_append: Callable[[str, int], None] = lambda topic, partition: None
        self.metrics = None  # a metrics.BrokerMetrics while /metrics is served (server.run)
        self._producer_ids = ProducerIds(store.data_dir, config.node_id)
        self.group_offsets = OffsetStore(store, config.offsets_log_config())
        self.groups = GroupCoordinator(self.group_offsets, config, clock)

        self._handlers: dict[int, Handler] = {
            ApiKey.API_VERSIONS: admin.api_versions,
            ApiKey.METADATA: topics.metadata,
            ApiKey.CREATE_TOPICS: topics.create_topics,
            ApiKey.DELETE_TOPICS: topics.delete_topics,
            ApiKey.DESCRIBE_LOG_DIRS: topics.describe_log_dirs,
            ApiKey.DESCRIBE_QUORUM: describe_quorum.describe_quorum,
            ApiKey.INIT_PRODUCER_ID: admin.init_producer_id,
            ApiKey.PRODUCE: produce.produce,
            ApiKey.DESCRIBE_CONFIGS: configs.describe_configs,
            ApiKey.ALTER_CONFIGS: configs.alter_configs,
            ApiKey.INCREMENTAL_ALTER_CONFIGS: configs.incremental_alter_configs,
            ApiKey.CREATE_PARTITIONS: admin_ops.create_partitions,
            ApiKey.DELETE_RECORDS: admin_ops.delete_records,
        }
        self._handlers.update(group_handlers.HANDLERS)
        self._client_handlers: dict[int, ClientHandler] = dict(group_handlers.CLIENT_HANDLERS)
        self._client_handlers.update({ApiKey.FETCH: fetch.fetch, ApiKey.LIST_OFFSETS: offsets.list_offsets})
        if config.cluster is not None:
            self._client_handlers.update(peer_auth.CLIENT_HANDLERS)
            self._client_handlers.update(replica_handlers.CLIENT_HANDLERS)
            for key in topic_configs_sync.CLIENT_HANDLERS:  # the controller decides topic configs
                del self._handlers[key]
            self._client_handlers.update(topic_configs_sync.CLIENT_HANDLERS)
        # cluster mode: this broker's copy of the topic configs the controller decided
        self.topic_configs = topic_configs_sync.TopicConfigImage(store.data_dir) \
            if config.cluster is not None else None
        self.replicas = ReplicaManager(self)
        # cluster mode: this broker's copy of the cluster metadata; the controller, or the way to it
        self.cluster_metadata = ClusterMetadata(store.data_dir, config.cluster, config.node_id) \
            if config.cluster is not None else None
        self.controller = controller_for(self) if config.cluster is not None else None
        if config.cluster is not None:
            self._client_handlers[ApiKey.UPDATE_METADATA] = update_metadata

    @functools.cached_property
    def advertised(self) -> dict[int, tuple[int, int]]:
        """API key -> (min, max) version of every API this broker answers (fixed once built)."""
        return {key: ADVERTISED[key] for key in (*self._handlers, *self._client_handlers)}

    @functools.cached_property
    def api_versions_entries(self) -> list[dict]:
        """ApiVersions' api_keys entries for `advertised`, in key order."""
        return api_versions_entries(self.advertised)

    @functools.cached_property
    def peer_versions(self) -> dict[int, tuple[int, int]]:
        """What a connection authenticated with the cluster secret may use (PEER_VERSIONS)."""
        return {key: PEER_VERSIONS[key] for key in self.advertised}

    def versions(self, principal: str | None) -> dict[int, tuple[int, int]]:
        """The versions a request may use: peer_versions once its connection authenticated."""
        return self.advertised if principal is None else self.peer_versions

    def handle(self, api_key: int, api_version: int, body: dict, client: ClientInfo | None = None) -> Reply:
        """The reply to one request; raises UnsupportedVersionError for what is not advertised.

        `client` says who asked; the group APIs that record members (JoinGroup) use it.
        """
        low, high = (PEER_VERSIONS if client is not None and client.principal is not None
                     else ADVERTISED).get(api_key, (0, -1))
        handler = self._handlers.get(api_key)
        if handler is not None and low <= api_version <= high:
            return handler(self, api_version, body)
        client_handler = self._client_handlers.get(api_key)
        if client_handler is not None and low <= api_version <= high:
            return client_handler(self, api_version, body, client or ClientInfo())
        raise UnsupportedVersionError(f"API {api_key} v{api_version} is not supported")

    def next_producer_id(self) -> int:
        return self._producer_ids.next()

    def address(self) -> tuple[str, int]:
        """The host and port that clients are told to connect to."""
        return (self.config.advertised_host or self.config.listen_host,
                self.config.advertised_port or self.config.listen_port)

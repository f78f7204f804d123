"""`Broker`: turns one decoded request into one `Reply`, over the store; no sockets here.

A `Reply` says what to send and what must happen first: `sync` lists partitions that must
be durable up to an offset before the response goes out (acks=all), and `fetch` carries a
long-poll that the server re-plans until enough bytes are there or the wait is over. A
reply whose `body` is None sends nothing (acks=0).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import LogshipError, UnsupportedVersionError
from ..protocol import ADVERTISED, ApiKey
from ..storage import Partition, Store
from .config import BrokerConfig


@dataclass
class DurableWrite:
    """`partition` must be synced up to `offset`; on failure `response["error_code"]` is set."""

    partition: Partition
    offset: int
    response: dict


@dataclass
class Reply:
    body: dict | None
    sync: list[DurableWrite] = field(default_factory=list)
    fetch: object | None = None  # a fetch.FetchWait when the server must long-poll


Handler = Callable[["Broker", int, dict], Reply]


class Broker:
    """One node of logship: a store, its settings, and the handlers of every advertised API.

    `on_append(topic, partition)` is called after every successful append, so the server can
    wake long-polling fetches; it runs on the caller's thread.
    """

    def __init__(self, store: Store, config: BrokerConfig):
        self.store = store
        self.config = config
        self.on_append: Callable[[str, int], None] = lambda topic, partition: None
        self._producer_ids = itertools.count((int(time.time() * 1000) & 0xFFFF_FFFF_FFFF) << 8)
        from . import admin, fetch, offsets, produce, topics

        self._handlers: dict[int, Handler] = {
            ApiKey.API_VERSIONS: admin.api_versions,
            ApiKey.METADATA: topics.metadata,
            ApiKey.CREATE_TOPICS: topics.create_topics,
            ApiKey.DELETE_TOPICS: topics.delete_topics,
            ApiKey.INIT_PRODUCER_ID: admin.init_producer_id,
            ApiKey.PRODUCE: produce.produce,
            ApiKey.FETCH: fetch.fetch,
            ApiKey.LIST_OFFSETS: offsets.list_offsets,
        }

    @property
    def advertised(self) -> dict[int, tuple[int, int]]:
        """API key -> (min, max) version of every API this broker answers."""
        return {key: ADVERTISED[key] for key in self._handlers}

    def handle(self, api_key: int, api_version: int, body: dict) -> Reply:
        """The reply to one request; raises UnsupportedVersionError for what is not advertised."""
        handler = self._handlers.get(api_key)
        low, high = ADVERTISED.get(api_key, (0, -1))
        if handler is None or not low <= api_version <= high:
            raise UnsupportedVersionError(f"API {api_key} v{api_version} is not supported")
        return handler(self, api_version, body)

    def next_producer_id(self) -> int:
        return next(self._producer_ids)

    def address(self) -> tuple[str, int]:
        """The host and port that clients are told to connect to."""
        return (self.config.advertised_host or self.config.listen_host,
                self.config.advertised_port or self.config.listen_port)


def error_code(exc: BaseException) -> int:
    """The Kafka error code to answer for an exception raised while handling a request."""
    if isinstance(exc, LogshipError) and exc.code is not None:
        return exc.code
    return -1

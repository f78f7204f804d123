"""`Broker`: turns one decoded request into one `Reply`, over the store; no sockets here.

A `Reply` says what to send and what must happen first: `sync` lists partitions that must
be durable up to an offset before the response goes out (acks=all, offset commits), `fetch`
carries a long-poll that the server re-plans until enough bytes are there or the wait is
over, and `deferred` is a body the group coordinator decides later (a held JoinGroup or
SyncGroup). A reply whose `body` is None, without `fetch` or `deferred`, sends nothing (acks=0).
"""

from __future__ import annotations

import functools
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
    """`partition` must be synced up to `offset`; on failure the `error_code` of `response`
    (one response entry, or a list of them) is set."""

    partition: Partition
    offset: int
    response: dict | list[dict]

    def fail(self, code: int) -> None:
        for entry in self.response if isinstance(self.response, list) else (self.response,):
            entry["error_code"] = code


class Deferred:
    """A response body that is decided later: a JoinGroup or SyncGroup the coordinator holds.

    Sans-IO: the coordinator calls `resolve(body)` once (later calls are ignored) and the
    server, told through `add_done_callback`, sends the body then. A callback added after
    the body is known runs at once. Every Deferred the coordinator hands out has a deadline
    on the coordinator's clock by which it is resolved.
    """

    __slots__ = ("body", "_callbacks")

    def __init__(self, body: dict | None = None):
        self.body = body
        self._callbacks: list[Callable[[dict], None]] = []

    @property
    def done(self) -> bool:
        return self.body is not None

    def resolve(self, body: dict) -> None:
        if self.body is not None:
            return
        self.body = body
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(body)

    def add_done_callback(self, callback: Callable[[dict], None]) -> None:
        if self.body is not None:
            callback(self.body)
        else:
            self._callbacks.append(callback)


@dataclass
class Reply:
    body: dict | None
    sync: list[DurableWrite] = field(default_factory=list)
    fetch: object | None = None  # a fetch.FetchWait when the server must long-poll
    deferred: Deferred | None = None  # the body, once the group coordinator decides it


@dataclass(frozen=True)
class ClientInfo:
    """Who sent a request: the header's client id and the peer's host (group membership)."""

    client_id: str = ""
    host: str = ""


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
        self._producer_ids = itertools.count((int(time.time() * 1000) & 0xFFFF_FFFF_FFFF) << 8)
        from . import admin, fetch, offsets, produce, topics
        from .groups import GroupCoordinator, OffsetStore, handlers as group_handlers

        self.group_offsets = OffsetStore(store, config.offsets_log_config())
        self.groups = GroupCoordinator(self.group_offsets, config, clock)

        self._handlers: dict[int, Handler] = {
            ApiKey.API_VERSIONS: admin.api_versions,
            ApiKey.METADATA: topics.metadata,
            ApiKey.CREATE_TOPICS: topics.create_topics,
            ApiKey.DELETE_TOPICS: topics.delete_topics,
            ApiKey.DESCRIBE_LOG_DIRS: topics.describe_log_dirs,
            ApiKey.INIT_PRODUCER_ID: admin.init_producer_id,
            ApiKey.PRODUCE: produce.produce,
            ApiKey.FETCH: fetch.fetch,
            ApiKey.LIST_OFFSETS: offsets.list_offsets,
        }
        self._handlers.update(group_handlers.HANDLERS)
        self._client_handlers: dict[int, ClientHandler] = dict(group_handlers.CLIENT_HANDLERS)

    @functools.cached_property
    def advertised(self) -> dict[int, tuple[int, int]]:
        """API key -> (min, max) version of every API this broker answers (fixed once built)."""
        return {key: ADVERTISED[key] for key in (*self._handlers, *self._client_handlers)}

    def handle(self, api_key: int, api_version: int, body: dict, client: ClientInfo | None = None) -> Reply:
        """The reply to one request; raises UnsupportedVersionError for what is not advertised.

        `client` says who asked; the group APIs that record members (JoinGroup) use it.
        """
        low, high = ADVERTISED.get(api_key, (0, -1))
        handler = self._handlers.get(api_key)
        if handler is not None and low <= api_version <= high:
            return handler(self, api_version, body)
        client_handler = self._client_handlers.get(api_key)
        if client_handler is not None and low <= api_version <= high:
            return client_handler(self, api_version, body, client or ClientInfo())
        raise UnsupportedVersionError(f"API {api_key} v{api_version} is not supported")

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

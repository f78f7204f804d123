"""The cluster as the client sees it: bootstrap addresses, metadata, leaders, connections.

`Cluster("host:port,host:port")` connects lazily: nothing touches the network until the
first call that needs the broker. Metadata (brokers, topics, partition leaders) is cached
and refreshed on demand: callers invalidate a topic when a broker says
NOT_LEADER_OR_FOLLOWER (6), UNKNOWN_TOPIC_OR_PARTITION (3) or LEADER_NOT_AVAILABLE (5), or
when a connection is lost, and the next lookup asks again. A topic that is not ready yet
(being auto-created, or without a leader) is asked for again for a bounded time
(`topic_wait`, see `topic()`), so a first produce into a new topic succeeds against
Apache Kafka too; `on_wait(topic, what)` (if set) is called once per lookup that has waited
`WAIT_NOTICE_AFTER` seconds, so a command can say what it is waiting for.

Two kinds of connections:
- shared ones, owned by the cluster, one per node, used by `request()` under the
  cluster's lock (metadata, admin calls, offsets lookups: one request at a time);
- private ones from `open_connection(node_id)`, owned by the caller (the producer's sender
  thread and the consumer pipeline requests on them).

Reconnects back off per address (100 ms doubling to 1 s) so a retry loop cannot spin.
Every method is thread-safe. Failures raise BrokerUnavailableError (no broker reachable),
UnknownTopicError, or the typed error of the Kafka code the broker answered.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import BrokerUnavailableError, LeaderNotAvailableError, LogshipError, UnknownTopicError, error_for_code
from ..protocol import ApiKey
from .connection import Connection

__all__ = ["Cluster", "PartitionMetadata", "TopicMetadata", "DEFAULT_BROKERS", "default_brokers",
           "parse_brokers", "RETRIABLE_CODES", "METADATA_CODES"]

DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_PORT = 9092

#: Kafka error codes after which a request may be retried (after a metadata refresh for
#: METADATA_CODES): leadership moved, topic being created, storage or replica trouble.
METADATA_CODES = frozenset({3, 5, 6, 74, 75})
RETRIABLE_CODES = METADATA_CODES | {7, 13, 19, 20, 56}

_IDEMPOTENT = frozenset({ApiKey.METADATA, ApiKey.LIST_OFFSETS, ApiKey.API_VERSIONS})
_BACKOFF_START, _BACKOFF_MAX = 0.1, 1.0
_TOPIC_BACKOFF_START, _TOPIC_BACKOFF_MAX = 0.02, 0.5
#: How long `topic()` keeps asking for a topic that is not ready yet (see there).
DEFAULT_TOPIC_WAIT = 10.0
#: After how long a waiting `topic()` calls `on_wait`.
WAIT_NOTICE_AFTER = 1.0


def default_brokers(brokers: str | list[str] | None = None) -> str:
    """The broker list to use: `brokers` if given, else $LOGSHIP_BROKERS, else 127.0.0.1:9092."""
    if isinstance(brokers, (list, tuple)):
        brokers = ",".join(brokers)
    return (brokers or "").strip() or os.environ.get("LOGSHIP_BROKERS", "").strip() or DEFAULT_BROKERS


def parse_brokers(spec: str | list[str]) -> list[tuple[str, int]]:
    """"HOST:PORT[,HOST:PORT...]" (IPv6 as [::1]:9092; the port defaults to 9092) as pairs;
    ValueError on anything else."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    result = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        host, port = item, str(DEFAULT_PORT)
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"invalid broker address {item!r}; expected HOST:PORT")
                port = rest[1:]
        elif item.count(":") == 1:
            host, port = item.split(":")
        elif ":" in item:
            raise ValueError(f"invalid broker address {item!r}; write IPv6 addresses as [::1]:9092")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid broker address {item!r}; expected HOST:PORT, e.g. 127.0.0.1:9092")
        result.append((host, int(port)))
    if not result:
        raise ValueError("no broker address given; expected HOST:PORT[,HOST:PORT]")
    return result


@dataclass(frozen=True)
class PartitionMetadata:
    topic: str
    partition: int
    leader: int  # node id, -1 when there is none
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    error_code: int = 0


@dataclass(frozen=True)
class TopicMetadata:
    name: str
    error_code: int
    internal: bool = False
    partitions: dict[int, PartitionMetadata] = field(default_factory=dict)


class Cluster:
    """Metadata and connections for one cluster; see the module docstring."""

    def __init__(self, brokers: str | list[str] | None = None, client_id: str = "logship", *,
                 timeout: float = 30.0, connect_timeout: float = 5.0, topic_wait: float | None = None,
                 on_wait: Callable[[str, str], None] | None = None):
        self.brokers = default_brokers(brokers)
        self.topic_wait = min(timeout, DEFAULT_TOPIC_WAIT) if topic_wait is None else topic_wait
        self.bootstrap = parse_brokers(self.brokers)
        self.client_id = client_id
        self.on_wait = on_wait
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.cluster_id: str | None = None
        self.controller_id = -1
        self._lock = threading.RLock()
        self._nodes: dict[int, tuple[str, int]] = {}
        self._topics: dict[str, TopicMetadata] = {}
        self._shared: dict[object, Connection] = {}
        self._backoff: dict[tuple[str, int], tuple[float, float]] = {}  # addr -> (not before, delay)

    # --- connections ---------------------------------------------------------------------------

    def node_address(self, node_id: int) -> tuple[str, int]:
        with self._lock:
            if node_id not in self._nodes:
                self.refresh()
            address = self._nodes.get(node_id)
        if address is None:
            raise BrokerUnavailableError(f"broker node {node_id} is not in the metadata of {self.brokers}")
        return address

    def nodes(self) -> dict[int, tuple[str, int]]:
        """node id -> (host, port) of each broker the last metadata named."""
        with self._lock:
            return dict(self._nodes)

    def open_connection(self, node_id: int | None = None, timeout: float | None = None) -> Connection:
        """A new private connection to `node_id` (any reachable broker if None)."""
        if node_id is None:
            return self._connect_any(timeout)[1]
        return self._connect(self.node_address(node_id), timeout)

    def _connect(self, address: tuple[str, int], timeout: float | None = None) -> Connection:
        with self._lock:
            not_before, delay = self._backoff.get(address, (0.0, 0.0))
        wait = not_before - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            conn = Connection(address[0], address[1], self.client_id, timeout or self.timeout,
                              connect_timeout=self.connect_timeout)
        except BrokerUnavailableError:
            delay = min(max(delay * 2, _BACKOFF_START), _BACKOFF_MAX)
            with self._lock:
                self._backoff[address] = (time.monotonic() + delay, delay)
            raise
        with self._lock:
            self._backoff.pop(address, None)
        return conn

    def _connect_any(self, timeout: float | None = None) -> tuple[object, Connection]:
        """(key, connection) to the first reachable broker: known nodes, then bootstrap."""
        with self._lock:
            candidates = [(node, addr) for node, addr in sorted(self._nodes.items())]
        candidates += [(("bootstrap", addr), addr) for addr in self.bootstrap
                       if addr not in {a for _, a in candidates}]
        last: LogshipError | None = None
        for key, address in candidates:
            try:
                return key, self._connect(address, timeout)
            except BrokerUnavailableError as exc:
                last = exc
        error = BrokerUnavailableError(f"no broker reachable at {self.brokers}: {last}")
        error.unanswered = getattr(last, "unanswered", False)
        raise error

    def _shared_connection(self, node_id: int | None) -> tuple[object, Connection]:
        if node_id is None:
            for key, conn in self._shared.items():
                if not conn.closed:
                    return key, conn
            key, conn = self._connect_any()
        else:
            key = node_id
            conn = self._shared.get(key)
            if conn is not None and not conn.closed:
                return key, conn
            conn = self._connect(self.node_address(node_id))
        old = self._shared.pop(key, None)
        if old is not None:
            old.close()
        self._shared[key] = conn
        return key, conn

    def request(self, api_key: int, body: dict, node_id: int | None = None,
                timeout: float | None = None) -> dict:
        """Send one request to `node_id` (any broker if None) on a shared connection and
        return the response body. Idempotent reads are retried once on a fresh connection."""
        with self._lock:
            for attempt in (0, 1):
                key, conn = self._shared_connection(node_id)
                try:
                    return conn.request(api_key, body, timeout=timeout)
                except BrokerUnavailableError:
                    self._shared.pop(key, None)
                    if attempt or api_key not in _IDEMPOTENT:
                        raise
        raise AssertionError("unreachable")

    def version(self, api_key: int, node_id: int | None = None) -> int:
        """The version a shared connection uses for `api_key`."""
        with self._lock:
            return self._shared_connection(node_id)[1].version(api_key)

    # --- metadata ------------------------------------------------------------------------------

    def refresh(self, topics: list[str] | None = (), allow_create: bool = False) -> dict[str, TopicMetadata]:
        """Ask for metadata of `topics` (all topics if None; brokers only if empty) and cache it."""
        body = {"topics": None if topics is None else [{"name": t} for t in topics],
                "allow_auto_topic_creation": allow_create}
        with self._lock:
            response = self.request(ApiKey.METADATA, body)
            self._nodes = {b["node_id"]: (b["host"], b["port"]) for b in response["brokers"]}
            self.cluster_id = response.get("cluster_id")
            self.controller_id = response.get("controller_id", -1)
            result = {}
            for entry in response["topics"]:
                parts = {p["partition_index"]: PartitionMetadata(
                    entry["name"], p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]),
                    tuple(p["isr_nodes"]), p["error_code"]) for p in entry["partitions"]}
                meta = TopicMetadata(entry["name"], entry["error_code"], entry.get("is_internal", False), parts)
                result[meta.name] = meta
                if meta.error_code == 0:
                    self._topics[meta.name] = meta
                else:
                    self._topics.pop(meta.name, None)
            return result

    def topic(self, name: str, allow_create: bool = False, refresh: bool = False, wait: bool = True) -> TopicMetadata:
        """Metadata of one topic, from the cache unless missing or `refresh`.

        A topic that is not ready yet is asked for again, backing off from 20 ms to 500 ms,
        for up to `topic_wait` seconds: one with partitions without a leader (leader -1 or
        LEADER_NOT_AVAILABLE, a topic being created or a leader being elected) and, when
        `allow_create`, one that does not exist yet (Apache Kafka answers the Metadata
        request that creates a topic with UNKNOWN_TOPIC_OR_PARTITION until it is ready).
        Then: UnknownTopicError if it still does not exist, LeaderNotAvailableError if no
        partition has a leader; a topic where only some partitions lack one is returned.
        Without `allow_create` an unknown topic raises UnknownTopicError at once; with
        wait=False the first answer decides (for callers that retry on their own). A lookup
        that has waited WAIT_NOTICE_AFTER seconds calls `on_wait(name, what)` once, `what`
        being "be created" or "get a leader".
        """
        started = time.monotonic()
        delay = _TOPIC_BACKOFF_START
        noticed = False
        while True:
            with self._lock:
                meta = None if refresh else self._topics.get(name)
                if meta is None:
                    meta = self.refresh([name], allow_create).get(name) or TopicMetadata(name, 3)
            code = meta.error_code
            if code not in (0, 3, 5):
                raise error_for_code(code, f"metadata for topic {name!r}: Kafka error code {code}")
            # a partition whose storage failed (KAFKA_STORAGE_ERROR) gets no leader by waiting
            leaderless = sorted(p.partition for p in meta.partitions.values() if p.leader < 0 and p.error_code != 56)
            if code == 0 and meta.partitions and not leaderless:
                return meta
            if code == 3 and not allow_create:
                raise UnknownTopicError(f"topic {name!r} does not exist (brokers {self.brokers})")
            waited = time.monotonic() - started
            if not wait or waited + delay > self.topic_wait:
                if code == 0 and len(leaderless) < len(meta.partitions):
                    return meta  # some partitions are led: usable, the others are retried on use
                raise self._not_ready(name, meta, leaderless, waited if wait else None)
            if not noticed and waited >= WAIT_NOTICE_AFTER and self.on_wait is not None:
                noticed = True
                self.on_wait(name, "be created" if code == 3 else "get a leader")
            refresh = True
            time.sleep(delay)
            delay = min(delay * 2, _TOPIC_BACKOFF_MAX)

    def _not_ready(self, name: str, meta: TopicMetadata, leaderless: list[int], waited: float | None) -> LogshipError:
        after = f" after {waited:.1f}s" if waited is not None else ""
        if meta.error_code == 3:
            if waited is None:
                return UnknownTopicError(f"topic {name!r} does not exist yet (brokers {self.brokers})")
            return self.not_created_error(name)
        which = f"partition {leaderless[0]}" if len(leaderless) == 1 else "any partition"
        return LeaderNotAvailableError(f"topic {name!r} has no leader for {which} yet{after} (brokers {self.brokers})")

    def not_created_error(self, name: str) -> UnknownTopicError:
        """The error for a topic that was asked for with creation allowed for `topic_wait`
        seconds and still does not exist; its `not_created` names the topic (the CLI says
        how to create it)."""
        error = UnknownTopicError(f"topic {name!r} does not exist and the broker did not create it within "
                                  f"{self.topic_wait:g} s (brokers {self.brokers})")
        error.not_created = name
        return error

    def partitions(self, name: str, allow_create: bool = False) -> int:
        """How many partitions topic `name` has (UnknownTopicError if none)."""
        return len(self.topic(name, allow_create).partitions)

    def leader(self, topic: str, partition: int) -> int | None:
        """The node leading (topic, partition) per the cached metadata, or None if unknown."""
        with self._lock:
            meta = self._topics.get(topic)
        part = meta.partitions.get(partition) if meta is not None else None
        return part.leader if part is not None and part.leader >= 0 else None

    def controller(self) -> int | None:
        """The controller's node id per the metadata, or None if it names no known node."""
        with self._lock:
            if self.controller_id not in self._nodes:
                self.refresh()
            return self.controller_id if self.controller_id in self._nodes else None

    def invalidate(self, topic: str | None = None) -> None:
        """Forget cached metadata of `topic` (of every topic if None), so the next lookup asks."""
        with self._lock:
            if topic is None:
                self._topics.clear()
            else:
                self._topics.pop(topic, None)

    def close(self) -> None:
        with self._lock:
            for conn in self._shared.values():
                conn.close()
            self._shared.clear()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Cluster {self.brokers}>"

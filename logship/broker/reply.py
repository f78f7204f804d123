"""What the broker's handlers share with it and with the server: a `Reply` says what to send and
what must happen first: `sync` lists partitions that must be durable up to an offset before the
response goes out (acks=all, offset commits), `fetch` carries a long-poll that the server re-plans
until enough bytes are there or the wait is over, and `deferred` is a body the group coordinator
decides later (a held JoinGroup or SyncGroup). A reply whose `body` is None, without `fetch` or
`deferred`, sends nothing (acks=0).

Handlers import this module, never broker.py, so that imports point one way: broker.py
dispatches to the handlers, the handlers build replies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import LogshipError
from ..storage import Partition

__all__ = ["DurableWrite", "Deferred", "Reply", "ClientInfo", "Session", "error_code"]


@dataclass
class DurableWrite:
    """`partition` must be synced up to `offset`; on failure the `error_code` of `response`
    (one response entry, or a list of them) is set. With `replicated_within_ms` (acks=all in
    a cluster) the high watermark must also pass `offset` within that time (replication/)."""

    partition: Partition
    offset: int
    response: dict | list[dict]
    replicated_within_ms: int | None = None

    def fail(self, code: int, message: str | None = None) -> None:
        for entry in self.response if isinstance(self.response, list) else (self.response,):
            entry["error_code"] = code
            if message is not None:
                entry["error_message"] = message  # where the response has one (Produce v8+)


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


class Session:
    """What one connection has proved about itself: `principal` is None until a SASL PLAIN
    exchange with the cluster's secret succeeds (peer_auth.py), then the name it gave
    (`broker-N` for a peer broker, `admin` for an operator's tool). Replica fetches and the
    inter-broker APIs are refused on a connection without one."""

    __slots__ = ("principal", "mechanism")

    def __init__(self) -> None:
        self.principal: str | None = None
        self.mechanism: str | None = None  # chosen by SaslHandshake, awaiting SaslAuthenticate

    @property
    def peer_broker(self) -> int | None:
        """The broker id this connection authenticated as, if it is a peer broker."""
        if self.principal and self.principal.startswith("broker-"):
            return int(self.principal[len("broker-"):])
        return None


@dataclass(frozen=True)
class ClientInfo:
    """Who sent a request: the header's client id, the peer's host (group membership) and
    the connection's `Session` (None where no connection exists, as in unit tests)."""

    client_id: str = ""
    host: str = ""
    session: Session | None = field(default=None, compare=False)

    @property
    def principal(self) -> str | None:
        return self.session.principal if self.session is not None else None



def error_code(exc: BaseException) -> int:
    """The Kafka error code to answer for an exception raised while handling a request."""
    if isinstance(exc, LogshipError) and exc.code is not None:
        return exc.code
    return -1

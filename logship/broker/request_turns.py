"""Whose request the broker handles next, when more than one client is waiting: `RequestTurns`.

The broker handles requests on one event loop, so its time is the resource clients compete
for. Without a scheduler, asyncio runs whatever is ready in arrival order, and a client with a
thousand connections pipelining tiny requests gets a thousand turns for every one of a client
with one connection: good clients starved (1,000 attacking connections took a producer and
consumer from 360,000 to 600 records/s).

Kafka's answer is the request quota, whose entity without authentication is the client id:
the share of request-handler time one client id may take. logship applies it without
configuration, as weighted fair queueing of handler time (start-time fair queueing):

- A *client* is the pair (address, client id) of a request, Kafka's quota entity within one
  address. Each client has a virtual time: the handler seconds it has used, counted from the
  moment it last became busy (it starts at the floor, the virtual time of the latest turn
  served, so time spent idle is not saved up).
- While nobody waits, a connection handles its request at once (no scheduling cost).
- Otherwise a connection waits for its turn. When a turn ends, the next goes to the waiting
  client with the lowest virtual time, and within a client to its connections in turn (round
  robin). A client under its share is served next, however many connections others have; a
  client over it waits while others are behind.
- A turn is one request, or several while the connection has more ready and the turn is
  shorter than TURN_S (fewer hand-overs when one client is alone).

The broker is work-conserving: a client alone gets the whole loop. What it does not stop is
a client that uses many client ids (each is a client, as for Kafka's client-id quotas); that
needs authenticated principals. A turn is charged from its grant to its release (splitting
frames, decoding, the broker's work, encoding), plus the connection's socket reads since its
last turn and the writes of its responses (server.py). The controller's requests take no
turn at all (server.CONTROL_PLANE).
"""

from __future__ import annotations

import asyncio
import collections
import time

TURN_S = 0.0005  # a connection may go on handling requests within one turn up to this long
PRUNE_MIN = 1024  # clients remembered before idle ones are forgotten
KEY_MAX_BYTES = 256  # of a client id, in a client's key: longer ones are cut

__all__ = ["KEY_MAX_BYTES", "RequestTurns", "TURN_S"]

_FREE = object()  # the holder of a turn taken while nobody waited


class _Client:
    __slots__ = ("key", "vtime", "waiting")

    def __init__(self, key, vtime: float):
        self.key, self.vtime = key, vtime
        self.waiting: collections.deque = collections.deque()  # futures, one per waiting connection


class RequestTurns:
    """The turn to handle requests: one holder at a time, the next chosen fairly (see above).

    A connection with a request to handle calls `take(key)`: when nobody holds the turn or
    waits, it holds it at once (a *free* turn, which ends with the batch of callbacks the event
    loop is running, so that every connection that becomes ready in that batch waits and is
    then chosen fairly); otherwise `take` returns a future to await, done once the turn is
    granted. It then handles requests and calls `release()` before it waits for anything else
    (no await in between), or once its turn is long enough; `done(key, seconds)` counts what
    the turn, or a response's write, cost.
    """

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self._clients: dict = {}  # key -> _Client, for clients with history (pruned when idle)
        self._waiting: dict = {}  # key -> _Client with waiting connections, in no order
        self._holder = None  # None, _FREE, or the future granted the turn, until released
        self._floor = 0.0  # the virtual time of the latest turn served: where a client that comes starts
        self._prune_at = PRUNE_MIN

    def take(self, key) -> asyncio.Future | None:
        """Hold the turn now (None), or a future done once this connection holds it."""
        client = self._client(key)
        if self._holder is None and not self._waiting:
            self._holder = _FREE
            self._floor = max(self._floor, client.vtime)  # the floor is the start of the turn served
            asyncio.get_running_loop().call_soon(self._free_over)
            return None
        future = asyncio.get_running_loop().create_future()
        if not client.waiting:
            self._waiting[key] = client
        client.waiting.append(future)
        if self._holder is None:
            self._grant()
        return future

    def done(self, key, seconds: float) -> None:
        """Count `seconds` of handling against client `key`."""
        (self._clients.get(key) or self._client(key)).vtime += seconds

    def release(self) -> None:
        """The turn ends: grant it to the next waiting connection, if any. A free turn ends
        with its batch of callbacks instead."""
        if self._holder is not _FREE:
            self._holder = None
            if self._waiting:
                self._grant()

    def _free_over(self) -> None:
        if self._holder is _FREE:
            self._holder = None
            if self._waiting:
                self._grant()

    def abandon(self, future: asyncio.Future) -> None:
        """The task awaiting `future` (from `take`) was cancelled: if the turn was granted to it,
        pass it on. (A cancelled future still waiting is skipped when its turn comes.)"""
        if self._holder is future:
            self.release()

    def _client(self, key) -> _Client:
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= self._prune_at:
                self._prune()
                self._prune_at = max(PRUNE_MIN, 2 * len(self._clients))  # pruning costs O(1) a client
            client = self._clients[key] = _Client(key, self._floor)
        elif not client.waiting and client.vtime < self._floor:
            client.vtime = self._floor  # idle time is not saved up
        return client

    def _grant(self) -> None:
        while self._waiting:
            client = min(self._waiting.values(), key=_vtime)
            self._floor = max(self._floor, client.vtime)
            future = client.waiting.popleft()
            if not client.waiting:
                del self._waiting[client.key]
            if not future.done():
                self._holder = future
                future.set_result(None)
                return

    def _prune(self) -> None:
        """Forget the clients that wait for nothing (one that comes back starts at the floor)."""
        self._clients = {key: client for key, client in self._clients.items() if client.waiting}


def _vtime(client: _Client) -> float:
    return client.vtime

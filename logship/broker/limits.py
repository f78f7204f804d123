"""What one client may make the broker spend: the settings, and the pools that enforce them.

Named after Kafka's broker configs:

- socket.request.max.bytes (`BrokerConfig.max_frame_bytes`): the largest frame; checked on
  the length prefix, before anything is allocated.
- `queued_max_request_bytes` (queued.max.request.bytes): a `MemoryPool` for the bytes of
  requests being read or waiting to be handled. Bytes are charged as they really arrive, so a
  length prefix alone costs nothing. Connections that have completed a request before and
  whose current one began less than 2 s ago may fill the pool, others three quarters of it; a connection that must wait stops
  being read (paused) until memory is released (`MemoryPool` says how far it can overshoot).
- `request_timeout_ms`: a frame must arrive whole within this time of its first byte (time
  spent paused by the broker does not count), else its connection is closed.
- `max_connections` (max.connections) and `max_connections_per_ip` (max.connections.per.ip):
  at either cap, the connection quiet for longest (no request in progress, none received for
  at least `EVICTABLE_AFTER_S`) is closed to make room; if there is none the new connection
  is refused. Clients that are working are never evicted by a flood from their own address.
- `connections_max_idle_ms` (connections.max.idle.ms): a connection that moves no byte for
  this long is closed.
- `fetch_max_bytes` (fetch.max.bytes, broker side): record bytes in one Fetch response.
- `fetch_max_files`: segment slices (each a duplicated descriptor) in one Fetch response;
  partitions beyond get no records this time, as beyond the byte budget.
- `max_response_files`: descriptors held by all Fetch responses at once (a `Budget`).
- `max_response_memory_bytes`: record bytes read into memory (small slices, fileslice.py) by
  all Fetch responses at once (a `Budget`); one response reads at most
  `max_queued_response_bytes` so. Beyond either, a slice holds a descriptor instead (and is
  read piece by piece as the client takes the response, write_parts.py).
- `max_queued_response_bytes` (per connection) and `max_total_queued_response_bytes`: encoded
  response bytes waiting to be written. A connection over either stops being read until its
  client takes its responses (backpressure); each connection builds one Fetch response at a
  time, when it is its turn to be written.
- `write_timeout_ms`: a connection whose writes make no progress for this long is closed.

Defaults keep a broker under a few hundred MB and a few thousand descriptors whatever its
clients send; `Limits.defaults_for(nofile)` fits the descriptor caps to the process limit.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

#: A connection quiet for less than this is never evicted to make room for a new one.
EVICTABLE_AFTER_S = 1.0
#: While the request pool is used up, a partly received request whose client sent nothing for
#: this long (and has nothing waiting in the kernel) is given up, its connection closed.
STALLED_AFTER_S = 0.3


@dataclass
class Limits:
    queued_max_request_bytes: int = 64 << 20
    request_timeout_ms: int = 30_000
    max_connections: int = 4000
    max_connections_per_ip: int = 4000
    connections_max_idle_ms: int = 600_000
    fetch_max_bytes: int = 55 << 20
    fetch_max_files: int = 64
    max_response_files: int = 4000
    max_response_memory_bytes: int = 32 << 20
    max_queued_response_bytes: int = 4 << 20
    max_total_queued_response_bytes: int = 64 << 20
    write_timeout_ms: int = 30_000

    @classmethod
    def defaults_for(cls, nofile: int | None = None) -> "Limits":
        """Defaults with connections and response descriptors each at most a fifth of the
        process's descriptor limit (RLIMIT_NOFILE), so that segment files keep the rest."""
        if nofile is None:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limits = cls()
        if nofile > 0:
            share = max(64, nofile // 5)
            limits.max_connections = min(limits.max_connections, share)
            limits.max_connections_per_ip = min(limits.max_connections_per_ip, share)
            limits.max_response_files = min(limits.max_response_files, share)
        return limits


class MemoryPool:
    """Bytes counted against a capacity; what is already received is always charged.

    Connections that completed a request before and whose current one is young (`active`)
    may fill it; the others only three quarters of it, so that clients that keep finishing
    their requests always find room left by those that do not. Beyond the capacity an active connection
    holding less than half a fair share (capacity / connections holding some) goes on, and
    the only holder always does (nobody else would free memory): the pool never exceeds
    one and a half times its capacity, or one frame. Waiting callbacks run (once each) when
    a release brings the pool below their level.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.holders = 0  # connections holding some of it
        self._waiting: list = []  # (level, callback)
        self._waiting_max = 0  # the highest level in _waiting

    @property
    def available(self) -> int:
        return self.capacity - self.used

    @property
    def exhausted(self) -> bool:
        return self.used >= self.capacity

    @property
    def pressed(self) -> bool:
        """Used beyond what connections that are not active may fill."""
        return self.used >= self._level(False)

    def _level(self, active: bool) -> int:
        return self.capacity if active else self.capacity - self.capacity // 4

    def charge(self, nbytes: int) -> None:
        """Count `nbytes` as in use (they are already received: this cannot fail)."""
        self.used += nbytes

    def must_wait(self, held: int, active: bool = False) -> bool:
        """Whether a connection holding `held` bytes must stop reading now."""
        if self.holders <= 1 or self.used < self._level(active):
            return False
        return not active or held * 2 * self.holders >= self.capacity

    def release(self, nbytes: int) -> None:
        self.used = max(0, self.used - nbytes)
        if self._waiting and self.used < self._waiting_max:
            waiting, self._waiting = self._waiting, []
            for level, callback in waiting:
                if self.used < level:
                    callback()
                else:
                    self._waiting.append((level, callback))
            self._waiting_max = max((level for level, _ in self._waiting), default=0)

    def when_available(self, callback, active: bool = True) -> None:
        """Call `callback()` once the pool is below the level of an active connection (all of
        it) or of one that is not (three quarters); at once if it is."""
        level = self._level(active)
        if self.used < level:
            callback()
            return
        self._waiting_max = max(self._waiting_max, level) if self._waiting else level
        self._waiting.append((level, callback))

    def forget(self, callback) -> None:
        self._waiting = [(level, cb) for level, cb in self._waiting if cb is not callback]
        self._waiting_max = max((level for level, _ in self._waiting), default=0)


class Budget:
    """A count of things (descriptors) taken and given back, up to `capacity`."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0

    def take(self, wanted: int) -> int:
        """Take up to `wanted`; returns how many were granted (0 when none are left)."""
        granted = max(0, min(wanted, self.capacity - self.used))
        self.used += granted
        return granted

    def give_back(self, count: int) -> None:
        self.used = max(0, self.used - count)

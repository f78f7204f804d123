"""`Admission`: the books of a listener's connections, and the caps on them.

It admits or refuses each new connection (max.connections, max.connections.per.ip), making
room first by evicting the connection that has been quiet longest (no request received and
unanswered; quiet for at least EVICTABLE_AFTER_S), so that a flood of connections from one
address pushes out its own idle sockets, not the clients that are working. Periodically
`sweep()` closes connections idle for connections.max.idle.ms and those whose frame has not
arrived whole within request_timeout_ms. It owns the request memory pool, the response
descriptor budget and the count of queued response bytes, and logs every refusal through a
`RateLimitedLog`: one line per reason and address per interval.

While the pool is pressed (used beyond what inactive connections may fill), the sweep (run every SWEEP_INTERVAL_S) also closes connections
that hold its memory in a request their client has stopped sending (nothing received for
STALLED_AFTER_S, nothing waiting in the kernel), then those whose request began 2 s ago or
more, the oldest first, until half the pool is free: a few thousand half-sent requests
cannot hold the pool and pause every other client, and a good client's request, younger
than theirs, goes on once they are gone.

A connection is anything with `host`, `last_io`, `last_read`, `frame_started` (None when no
frame is partly read or while the broker itself pauses it), `frame_began`, `partial_bytes`, `unread_bytes()`
and `abort(reason)`.
"""

from __future__ import annotations

import collections
import logging
import time

from .limits import EVICTABLE_AFTER_S, STALLED_AFTER_S, Budget, Limits, MemoryPool
from .ratelog import RateLimitedLog

log = logging.getLogger("logship.broker")


class Admission:
    def __init__(self, limits: Limits, clock=time.monotonic, interval_s: float = 10.0):
        self.limits = limits
        self.clock = clock
        self.pool = MemoryPool(limits.queued_max_request_bytes)
        self.response_files = Budget(limits.max_response_files)
        self.response_memory = Budget(limits.max_response_memory_bytes)
        self.queued_response_bytes = 0
        self.refusals = RateLimitedLog(log, interval_s, clock)
        self._all: set = set()
        self._per_ip: collections.Counter = collections.Counter()
        self._quiet: collections.OrderedDict = collections.OrderedDict()  # conn -> quiet since
        self._quiet_per_ip: dict[str, collections.OrderedDict] = {}

    def __len__(self) -> int:
        return len(self._all)

    def count(self, host: str) -> int:
        return self._per_ip[host]

    # --- connections come and go --------------------------------------------------------------

    def admit(self, conn) -> bool:
        """Book `conn`, evicting a quiet one at a cap; False (and one log line per interval)
        if it must be refused."""
        host = conn.host
        if len(self._all) >= self.limits.max_connections:
            if not self._evict(self._quiet, "max.connections", self.limits.max_connections):
                self._refuse(conn, "max.connections", self.limits.max_connections)
                return False
        if self._per_ip[host] >= self.limits.max_connections_per_ip:
            if not self._evict(self._quiet_per_ip.get(host), "max.connections.per.ip",
                               self.limits.max_connections_per_ip):
                self._refuse(conn, "max.connections.per.ip", self.limits.max_connections_per_ip)
                return False
        self._all.add(conn)
        self._per_ip[host] += 1
        self.quiet(conn)
        return True

    def gone(self, conn) -> None:
        """Forget `conn` (closed, evicted or refused); safe to call more than once."""
        if conn not in self._all:
            return
        self._all.discard(conn)
        self._per_ip[conn.host] -= 1
        if self._per_ip[conn.host] <= 0:
            del self._per_ip[conn.host]
        self.busy(conn)

    def busy(self, conn) -> None:
        """`conn` has a request in progress: not evictable."""
        self._quiet.pop(conn, None)
        per_ip = self._quiet_per_ip.get(conn.host)
        if per_ip is not None:
            per_ip.pop(conn, None)
            if not per_ip:
                del self._quiet_per_ip[conn.host]

    def quiet(self, conn) -> None:
        """`conn` has answered everything it received: evictable once quiet long enough."""
        if conn not in self._all:
            return
        now = self.clock()
        self._quiet[conn] = now
        self._quiet.move_to_end(conn)
        per_ip = self._quiet_per_ip.setdefault(conn.host, collections.OrderedDict())
        per_ip[conn] = now
        per_ip.move_to_end(conn)

    def _evict(self, quiet: collections.OrderedDict | None, limit: str, value: int) -> bool:
        if not quiet:
            return False
        victim, since = next(iter(quiet.items()))
        if self.clock() - since < EVICTABLE_AFTER_S:
            return False
        self.gone(victim)
        victim.abort(None)
        self.refusals.note(("evicted", limit, victim.host),
                           f"closed a connection from {victim.host} quiet for {self.clock() - since:.0f} s "
                           f"to make room for a new one: {limit} {value}",
                           f"closed {{count}} quiet connections from {victim.host} in the last {{seconds}} s "
                           f"to make room for new ones: {limit} {value}")
        return True

    def _refuse(self, conn, limit: str, value: int) -> None:
        conn.abort(None)
        self.refusals.note(("refused", limit, conn.host),
                           f"refused a connection from {conn.host}: {limit} {value}",
                           f"refused {{count}} connections from {conn.host} in the last {{seconds}} s: "
                           f"{limit} {value}")

    # --- periodically --------------------------------------------------------------------------

    def sweep(self) -> None:
        """Close idle connections and those whose frame is late; log the summaries due."""
        now = self.clock()
        idle_s = self.limits.connections_max_idle_ms / 1000
        frame_s = self.limits.request_timeout_ms / 1000
        for conn in list(self._all):
            if now - conn.last_io > idle_s:
                self.close(conn, "idle", f"connections.max.idle.ms {self.limits.connections_max_idle_ms}")
            elif conn.frame_started is not None and now - conn.frame_started > frame_s:
                self.close(conn, "slow frame", f"a request not received whole within request.timeout.ms "
                                               f"{self.limits.request_timeout_ms}")
        if self.pool.pressed:
            self._relieve(now)
        self.refusals.flush(now)

    def _relieve(self, now: float) -> None:
        """The request pool is pressed: close the connections holding its memory in a request
        their clients have stopped sending, then those whose request began 2 s ago or more
        (the oldest first) until half the pool is free."""
        why = f"a request not received whole while queued.max.request.bytes " \
              f"{self.limits.queued_max_request_bytes} is used up"
        holders = [conn for conn in self._all if conn.partial_bytes > 0 and now - conn.last_read >= STALLED_AFTER_S]
        used, old = self.pool.used, []
        for conn in holders:
            if not conn.unread_bytes():
                used -= conn.partial_bytes
                self.close(conn, "memory", why)
            elif now - conn.frame_began >= 2 * EVICTABLE_AFTER_S:
                old.append(conn)
        for conn in sorted(old, key=lambda c: c.frame_began):
            if used <= self.pool.capacity // 2:
                break
            used -= conn.partial_bytes
            self.close(conn, "memory", why)

    def close(self, conn, kind: str, why: str) -> None:
        """Close `conn` for `why`, logged once per kind, address and interval."""
        self.gone(conn)
        conn.abort(None)
        self.refusals.note((kind, conn.host), f"closed a connection from {conn.host}: {why}",
                           f"closed {{count}} connections from {conn.host} in the last {{seconds}} s: {why}")

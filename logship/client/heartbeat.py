"""The heartbeat thread of a group member (group.py).

Every heartbeat interval, while the member is in a stable generation, it sends Heartbeat
on its own connection to the coordinator. It keeps beating while a rejoin is pending (the
broker counts those heartbeats as liveness until the member's JoinGroup arrives), and it
acts on the answer only by asking the member to rejoin: REBALANCE_IN_PROGRESS (rejoin),
ILLEGAL_GENERATION (rejoin), UNKNOWN_MEMBER_ID (rejoin as a new member). Coordinator errors
and lost connections make it look the coordinator up again at the next beat.

If the member's owner has not polled for the rebalance timeout (Kafka's
max.poll.interval.ms), it sends LeaveGroup so the other members are not held, and the
owner rejoins as a new member when it polls again.
"""

from __future__ import annotations

import logging
import threading

from ..errors import LogshipError, explain
from ..protocol import ApiKey
from .connection import Connection
from .coordinator import COORDINATOR_CODES, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, \
    find_coordinator

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Heartbeats for `member` (a GroupMember) until stop()."""

    def __init__(self, member):
        super().__init__(name=f"heartbeat-{member.group_id}", daemon=True)
        self.member = member
        self._stop_event = threading.Event()
        self._conn: Connection | None = None
        self.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop_event.set()
        self.join(timeout)

    def run(self) -> None:
        member = self.member
        try:
            while not self._stop_event.wait(member.heartbeat_interval):
                stable, generation, member_id, idle = member.heartbeat_state()
                if not stable or not member_id:
                    continue
                if idle > member.rebalance_timeout_ms / 1000:
                    self._leave(generation, member_id)
                    continue
                code = self._beat(generation, member_id)
                if code == REBALANCE_IN_PROGRESS:
                    member.ask_rejoin(generation, why="the group is rebalancing")
                elif code in (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
                    member.ask_rejoin(generation, reset=code == UNKNOWN_MEMBER_ID,
                                      why=f"heartbeat answered {explain(code)}")
                elif code and code not in COORDINATOR_CODES:
                    log.warning("group %s: heartbeat answered %s", member.group_id, explain(code))
        finally:
            if self._conn is not None:
                self._conn.close()

    def _beat(self, generation: int, member_id: str) -> int | None:
        """The Heartbeat's error code, or None when the coordinator could not be reached."""
        member = self.member
        try:
            if self._conn is None or self._conn.closed:
                _, host, port = find_coordinator(member.cluster, member.group_id, member.heartbeat_interval)
                self._conn = Connection(host, port, member.cluster.client_id, member.session_timeout_ms / 1000,
                                        connect_timeout=member.cluster.connect_timeout)
            code = self._conn.request(ApiKey.HEARTBEAT, {"group_id": member.group_id, "generation_id": generation,
                                                         "member_id": member_id})["error_code"]
        except LogshipError as exc:
            log.info("group %s: heartbeat failed (%s); retrying", member.group_id, exc)
            code = None
        if (code is None or code in COORDINATOR_CODES) and self._conn is not None:
            self._conn.close()
        return code

    def _leave(self, generation: int, member_id: str) -> None:
        member = self.member
        log.warning("group %s: not polled for %d ms (the rebalance timeout); leaving the group",
                    member.group_id, member.rebalance_timeout_ms)
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.request(ApiKey.LEAVE_GROUP, {"group_id": member.group_id, "member_id": member_id},
                                   timeout=5.0)
        except LogshipError:
            pass
        member.ask_rejoin(generation, reset=True)

"""`Member`: one consumer in a group, as the coordinator knows it (never persisted)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..reply import Deferred


@dataclass(eq=False)
class Member:
    """A member of a classic group.

    `protocols` are (name, opaque metadata) pairs in the member's order of preference; the
    broker never looks inside metadata or `assignment` (the leader member computes the
    assignment). `last_seen` (coordinator clock, seconds) moves on every JoinGroup,
    SyncGroup, Heartbeat and OffsetCommit; the session expires `session_timeout_ms` after it.
    `joining`/`syncing` hold the member's parked JoinGroup/SyncGroup response, if any.
    """

    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    last_seen: float
    assignment: bytes = b""
    joining: Deferred | None = None
    syncing: Deferred | None = None
    group_instance_id: str | None = None  # static membership (KIP-345) is not supported

    @property
    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    @property
    def session_deadline(self) -> float:
        return self.last_seen + self.session_timeout_ms / 1000

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise KeyError(protocol)

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among `candidates`."""
        return next(name for name in self.protocol_names if name in candidates)

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def subscribed_topics(self) -> set[str]:
        """Topics named by the member's subscriptions, read as the consumer protocol's
        ConsumerProtocolSubscription (int16 version, int32 count, int16-length strings, ...):
        the union over every protocol it offered. Metadata that does not parse names none."""
        topics: set[str] = set()
        for _, metadata in self.protocols:
            topics |= _subscription_topics(metadata)
        return topics


def _subscription_topics(metadata: bytes) -> set[str]:
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        pos, found = 6, set()
        for _ in range(max(count, 0)):
            (size,) = struct.unpack_from(">h", metadata, pos)
            if size < 0 or pos + 2 + size > len(metadata):
                return set()
            found.add(bytes(metadata[pos + 2:pos + 2 + size]).decode("utf-8"))
            pos += 2 + size
        return found
    except (struct.error, UnicodeDecodeError):
        return set()

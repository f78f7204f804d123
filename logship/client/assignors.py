"""The "consumer" protocol of Kafka's classic groups, client side: what a member says it
wants in JoinGroup, what the leader hands out in SyncGroup, and how it decides.

The broker never looks inside these bytes (reference/kafka-protocol.md §5.1); every
client of a group must agree on them, so the layouts are Kafka's:

    ConsumerProtocolSubscription v0: int16 version, [string] topics, nullable bytes user_data
    ConsumerProtocolAssignment v0:   int16 version, [(string topic, [int32] partitions)],
                                     nullable bytes user_data

logship writes version 0 and reads any version, ignoring the fields that later versions
append (owned partitions, generation, rack), as Kafka's own clients do.

The assignors are Kafka's RangeAssignor and RoundRobinAssignor, computed by the member
the coordinator elects leader:

* range: per topic, the members subscribed to it in member-id order take consecutive
  ranges of partitions; the first (partitions % members) get one extra.
* roundrobin: every subscribed (topic, partition), sorted, dealt out to the members in
  member-id order, cycling, skipping a member not subscribed to the partition's topic.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import ProtocolError

__all__ = ["PROTOCOL_TYPE", "ASSIGNORS", "Subscription", "encode_subscription", "decode_subscription",
           "encode_assignment", "decode_assignment", "range_assign", "roundrobin_assign"]

PROTOCOL_TYPE = "consumer"

_INT16, _INT32 = struct.Struct(">h"), struct.Struct(">i")

Assignment = dict[str, list[int]]  # topic -> partitions


class Subscription(NamedTuple):
    version: int
    topics: list[str]
    user_data: bytes | None


# --- bytes ---------------------------------------------------------------------------------------

def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _INT16.pack(len(data)) + data


def _nullable_bytes(data: bytes | None) -> bytes:
    return _INT32.pack(-1) if data is None else _INT32.pack(len(data)) + data


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = memoryview(data), 0, what

    def take(self, size: int) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise ProtocolError(f"{self.what} is truncated at byte {self.pos}")
        piece = self.data[self.pos:self.pos + size]
        self.pos += size
        return piece

    def int16(self) -> int:
        return _INT16.unpack(self.take(2))[0]

    def int32(self) -> int:
        return _INT32.unpack(self.take(4))[0]

    def string(self) -> str:
        size = self.int16()
        if size < 0:
            raise ProtocolError(f"{self.what} has a null string at byte {self.pos}")
        return bytes(self.take(size)).decode("utf-8", errors="replace")

    def count(self) -> int:
        size = self.int32()
        if size < 0 or size > len(self.data):
            raise ProtocolError(f"{self.what} has an array of {size} entries")
        return size

    def nullable_bytes(self) -> bytes | None:
        if self.pos == len(self.data):
            return None  # some clients leave user data out altogether
        size = self.int32()
        return None if size < 0 else bytes(self.take(size))


def encode_subscription(topics: list[str], user_data: bytes | None = b"") -> bytes:
    """ConsumerProtocolSubscription v0 for the topics a member subscribes to."""
    return (_INT16.pack(0) + _INT32.pack(len(topics)) + b"".join(_string(t) for t in topics)
            + _nullable_bytes(user_data))


def decode_subscription(data: bytes) -> Subscription:
    """A member's subscription (any version; fields after user_data are ignored)."""
    reader = _Reader(data, "consumer protocol subscription")
    version = reader.int16()
    topics = [reader.string() for _ in range(reader.count())]
    return Subscription(version, topics, reader.nullable_bytes())


def encode_assignment(assignment: Assignment, user_data: bytes | None = b"") -> bytes:
    """ConsumerProtocolAssignment v0: topics in name order, partitions in the order given."""
    topics = sorted(assignment.items())
    return (_INT16.pack(0) + _INT32.pack(len(topics))
            + b"".join(_string(topic) + _INT32.pack(len(parts)) + b"".join(_INT32.pack(p) for p in parts)
                       for topic, parts in topics)
            + _nullable_bytes(user_data))


def decode_assignment(data: bytes) -> Assignment:
    """topic -> partitions of a member's assignment; empty bytes are an empty assignment."""
    if not data:
        return {}
    reader = _Reader(data, "consumer protocol assignment")
    reader.int16()
    assignment: Assignment = {}
    for _ in range(reader.count()):
        topic = reader.string()
        assignment.setdefault(topic, []).extend(reader.int32() for _ in range(reader.count()))
    return assignment


# --- assignors -----------------------------------------------------------------------------------

def range_assign(subscriptions: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, Assignment]:
    """Kafka's RangeAssignor. `subscriptions`: member id -> topics; `partitions`: topic ->
    partition count (topics missing from it are skipped). Returns member id -> assignment,
    with an entry (maybe empty) for every member."""
    result: dict[str, Assignment] = {member: {} for member in subscriptions}
    for topic in sorted({t for topics in subscriptions.values() for t in topics}):
        count = partitions.get(topic)
        if not count:
            continue
        members = sorted(m for m, topics in subscriptions.items() if topic in topics)
        each, extra = divmod(count, len(members))
        for i, member in enumerate(members):
            start = each * i + min(i, extra)
            length = each + (1 if i < extra else 0)
            if length:
                result[member][topic] = list(range(start, start + length))
    return result


def roundrobin_assign(subscriptions: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, Assignment]:
    """Kafka's RoundRobinAssignor; arguments and result as range_assign."""
    result: dict[str, Assignment] = {member: {} for member in subscriptions}
    members = sorted(subscriptions)
    wanted = {member: set(topics) for member, topics in subscriptions.items()}
    every = sorted((topic, p) for topic in {t for topics in subscriptions.values() for t in topics}
                   for p in range(partitions.get(topic) or 0))
    turn = 0
    for topic, partition in every:
        while topic not in wanted[members[turn % len(members)]]:
            turn += 1
        result[members[turn % len(members)]].setdefault(topic, []).append(partition)
        turn += 1
    return result


#: Assignor name -> function, in logship's order of preference (Kafka clients offer these two).
ASSIGNORS = {"range": range_assign, "roundrobin": roundrobin_assign}

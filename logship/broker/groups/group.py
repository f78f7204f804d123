"""`Group`: the state of one classic consumer group, and the transitions it allows.

    Empty -> PreparingRebalance          a member joins
    PreparingRebalance -> CompletingRebalance   every member rejoined, or the join deadline
    PreparingRebalance -> Empty          ... with no member left
    CompletingRebalance -> Stable        the leader's SyncGroup brought the assignments
    CompletingRebalance, Stable -> PreparingRebalance   a join, leave or expiry
    any -> Dead                          forgotten: no members and no committed offsets

The coordinator (coordinator.py) drives it; this module holds the data and the pure
decisions: which protocol wins the vote, who leads, whether everyone has rejoined.
"""

from __future__ import annotations

from collections import Counter
from enum import Enum

from .member import Member


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_ALLOWED_FROM = {
    GroupState.EMPTY: {GroupState.PREPARING_REBALANCE},
    GroupState.PREPARING_REBALANCE: {GroupState.EMPTY, GroupState.COMPLETING_REBALANCE, GroupState.STABLE},
    GroupState.COMPLETING_REBALANCE: {GroupState.PREPARING_REBALANCE},
    GroupState.STABLE: {GroupState.COMPLETING_REBALANCE},
    GroupState.DEAD: set(GroupState),
}


class Group:
    """One group: members, generation, chosen protocol, leader, and the deadlines of its
    current phase (coordinator clock, seconds).

    `pending_members` are member ids handed out with MEMBER_ID_REQUIRED (JoinGroup v4+)
    that have not joined yet, with their deadline; `awaiting_sync` are the members of the
    current generation that have not sent SyncGroup yet. `initial_rebalance` is set while a
    new group waits group.initial.rebalance.delay.ms for more members, with
    `initial_remaining_ms` of the rebalance timeout left to extend that wait.
    """

    def __init__(self, group_id: str, state: GroupState = GroupState.EMPTY):
        self.group_id = group_id
        self.state = state
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.pending_members: dict[str, float] = {}
        self.awaiting_sync: set[str] = set()
        self.join_deadline: float | None = None
        self.sync_deadline: float | None = None
        self.initial_rebalance = False
        self.initial_remaining_ms = 0
        self.joined_during_delay = False

    def __repr__(self) -> str:
        return f"Group({self.group_id!r}, {self.state.value}, generation {self.generation}, {len(self.members)} members)"

    def transition(self, state: GroupState) -> None:
        if self.state not in _ALLOWED_FROM[state]:
            raise AssertionError(f"group {self.group_id!r}: no transition {self.state.value} -> {state.value}")
        self.state = state

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    # ------------------------------------------------------------------ members

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        self.awaiting_sync.discard(member_id)
        if member_id == self.leader_id:
            rejoined = [m for m in self.members.values() if m.joining is not None]
            successor = rejoined[0] if rejoined else next(iter(self.members.values()), None)
            self.leader_id = successor.member_id if successor else None
        return member

    def all_joined(self) -> bool:
        """Every known member has rejoined (and no member id handed out is still on its way)."""
        return not self.pending_members and all(m.joining is not None for m in self.members.values())

    def max_rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # ------------------------------------------------------------------ protocols

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        members = iter(self.members.values())
        first = next(members, None)
        if first is None:
            return set()
        candidates = set(first.protocol_names)
        for member in members:
            candidates &= set(member.protocol_names)
        return candidates

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]], ignoring: str | None = None) -> bool:
        """Whether a member with these protocols may (re)join: same protocol type as the
        group and at least one protocol in common with every other member."""
        if not protocol_type or not protocols:
            return False
        others = [m for m in self.members.values() if m.member_id != ignoring]
        if not others:
            return True
        if protocol_type != self.protocol_type:
            return False
        common = {name for name, _ in protocols}
        for member in others:
            common &= set(member.protocol_names)
        return bool(common)

    def join_result(self, member_id: str) -> dict:
        """The JoinGroup response body of a member once the join phase completed: the leader's
        lists every member with its metadata for the chosen protocol, the others' none."""
        members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                    "metadata": m.metadata(self.protocol_name)} for m in self.members.values()
                   ] if member_id == self.leader_id else []
        return {"throttle_time_ms": 0, "error_code": 0, "generation_id": self.generation,
                "protocol_name": self.protocol_name, "leader": self.leader_id, "member_id": member_id,
                "members": members}

    def describe(self) -> dict:
        """The group's DescribeGroups entry: member metadata and assignments only when Stable,
        as Kafka does."""
        stable = self.state is GroupState.STABLE
        members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": m.metadata(self.protocol_name) if stable else b"",
                    "member_assignment": m.assignment if stable else b""} for m in self.members.values()]
        return {"error_code": 0, "group_id": self.group_id, "group_state": self.state.value,
                "protocol_type": self.protocol_type or "", "protocol_data": self.protocol_name if stable else "",
                "members": members}

    def select_protocol(self) -> str:
        """Kafka's vote: each member votes for its first preference among the protocols all
        support; most votes wins (ties: the leader's preference order)."""
        candidates = self.candidate_protocols()
        votes = Counter(member.vote(candidates) for member in self.members.values())
        order = self.members[self.leader_id].protocol_names if self.leader_id in self.members else sorted(candidates)
        return max(order, key=lambda name: (votes.get(name, 0), -order.index(name)))

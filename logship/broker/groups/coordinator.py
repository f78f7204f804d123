"""`GroupCoordinator`: Kafka's classic group protocol, sans-IO, over a clock you give it.

Requests come in as calls (join, sync, heartbeat, leave, commit, ...). JoinGroup and
SyncGroup answer with a `Deferred` that is resolved at once or later, when the phase the
member waits for ends; every other call answers at once. Time only moves through `tick()`,
which the server calls at `next_deadline()` (it is told of earlier deadlines through
`on_wakeup`); tests call it with a fake clock. Rules, from Kafka's GroupCoordinator
(reference/kafka-protocol.md §5.1):

* join phase (PreparingRebalance): every JoinGroup is held until all known members have
  rejoined, or until the largest rebalance timeout of the members passes (members that did
  not rejoin are removed). A new, empty group first waits group_initial_rebalance_delay_ms,
  and again each time someone joined meanwhile, up to its rebalance timeout. At the end:
  generation + 1, protocol by vote, leader kept or chosen, CompletingRebalance; the leader's
  response lists every member's metadata.
* sync phase (CompletingRebalance): SyncGroups are held until the leader's, which carries
  the assignments; then Stable. Members that send no SyncGroup within the rebalance timeout
  are removed and the group rebalances (this also bounds every held SyncGroup).
* sessions: a member not heard from (JoinGroup, SyncGroup, Heartbeat, OffsetCommit) within
  its session timeout is removed and the group rebalances; a member parked in a join or
  sync phase is alive until that phase's own deadline.
* Heartbeat answers REBALANCE_IN_PROGRESS during the join phase: that is how members learn
  they must rejoin.
* commits: generation -1 into an Empty (or unknown) group is a standalone commit and is
  accepted; otherwise the member must be known, the generation current, and the group not
  in CompletingRebalance.

A group with no members and no committed offsets is forgotten (Dead). DeleteGroups deletes
only Empty groups (NON_EMPTY_GROUP otherwise), writing tombstones for its offsets;
OffsetDelete refuses topics an active member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC).
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections.abc import Callable

from ...errors import (GroupIdNotFoundError, GroupSubscribedToTopicError, IllegalGenerationError,
                       InconsistentGroupProtocolError, InvalidGroupIdError, InvalidSessionTimeoutError, LogshipError,
                       MemberIdRequiredError, NonEmptyGroupError, OffsetMetadataTooLargeError,
                       RebalanceInProgressError, UnknownMemberIdError)
from ...storage import AppendResult
from ..config import BrokerConfig
from ..reply import ClientInfo, Deferred, error_code
from .group import Group, GroupState
from .member import Member
from .offsets import CommittedOffset, OffsetStore

EMPTY, PREPARING, COMPLETING, STABLE = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE,
                                        GroupState.COMPLETING_REBALANCE, GroupState.STABLE)
NO_ERROR = 0


def join_response(code: int, member_id: str = "") -> dict:
    """A failed JoinGroup's response body (Group.join_result gives the successful ones)."""
    return {"throttle_time_ms": 0, "error_code": code, "generation_id": -1, "protocol_name": "",
            "leader": "", "member_id": member_id, "members": []}


def sync_response(code: int, assignment: bytes = b"") -> dict:
    return {"throttle_time_ms": 0, "error_code": code, "assignment": assignment}


class GroupCoordinator:
    """Every consumer group of this broker; see the module docstring. Not thread-safe: call
    it from one thread (the server's event loop)."""

    def __init__(self, offsets: OffsetStore, config: BrokerConfig, clock: Callable[[], float] = time.monotonic):
        self.offsets = offsets
        self.config = config
        self.clock = clock
        self.on_wakeup: Callable[[float], None] = lambda deadline: None
        self._groups: dict[str, Group] = {group_id: Group(group_id) for group_id in offsets.groups()}
        self._timers: list[tuple[float, int, tuple]] = []
        self._seq = itertools.count()

    def group(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When tick() must run next (coordinator clock), or None; may be early, never late."""
        return self._timers[0][0] if self._timers else None

    def tick(self) -> None:
        """Handle every deadline that has passed: join and sync phases, sessions."""
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, (kind, group_id, arg) = heapq.heappop(self._timers)
            group = self._groups.get(group_id)
            if group is not None:
                getattr(self, "_on_" + kind)(group, now, arg)

    def _at(self, when: float, kind: str, group: Group, arg=None) -> None:
        """Call _on_<kind>(group, now, arg) at `when`; handlers re-check, so nothing is cancelled."""
        earliest = not self._timers or when < self._timers[0][0]
        heapq.heappush(self._timers, (when, next(self._seq), (kind, group.group_id, arg)))
        if earliest:
            self.on_wakeup(when)

    def release_held(self, code: int) -> None:
        """Answer every held JoinGroup and SyncGroup with error `code` now (the broker is
        stopping; Kafka answers NOT_COORDINATOR when it unloads a group). Members rejoin."""
        for group in self._groups.values():
            for member in group.members.values():
                if member.joining is not None:
                    member.joining.resolve(join_response(code, member.member_id))
                if member.syncing is not None:
                    member.syncing.resolve(sync_response(code))

    # ------------------------------------------------------------------ JoinGroup

    def join(self, group_id: str, member_id: str, client: ClientInfo, session_timeout_ms: int,
             rebalance_timeout_ms: int, protocol_type: str, protocols: list[tuple[str, bytes]],
             require_known_member_id: bool = False) -> Deferred:
        """JoinGroup. `rebalance_timeout_ms` < 0 (v0) means the session timeout;
        `require_known_member_id` (v4+) answers a new member MEMBER_ID_REQUIRED first."""
        if not group_id:
            return Deferred(join_response(InvalidGroupIdError.code, member_id))
        if not self.config.group_min_session_timeout_ms <= session_timeout_ms <= self.config.group_max_session_timeout_ms:
            return Deferred(join_response(InvalidSessionTimeoutError.code, member_id))
        if rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms
        group = self._groups.get(group_id)
        if group is None and member_id:
            return Deferred(join_response(UnknownMemberIdError.code, member_id))
        if not (group or Group(group_id)).supports(protocol_type, protocols, ignoring=member_id):
            return Deferred(join_response(InconsistentGroupProtocolError.code, member_id))
        if group is None:
            group = self._groups[group_id] = Group(group_id)
        now = self.clock()
        if not member_id or member_id in group.pending_members:
            if not member_id and require_known_member_id:
                member_id = f"{client.client_id or 'member'}-{uuid.uuid4()}"
                group.pending_members[member_id] = now + session_timeout_ms / 1000
                self._at(group.pending_members[member_id], "pending", group, member_id)
                return Deferred(join_response(MemberIdRequiredError.code, member_id))
            member = Member(member_id or f"{client.client_id or 'member'}-{uuid.uuid4()}", client.client_id,
                            client.host, session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols, now)
            group.pending_members.pop(member.member_id, None)
            if group.is_(PREPARING) and group.initial_rebalance:
                group.joined_during_delay = True
            group.add(member)
            self._at(member.session_deadline, "session", group, member.member_id)
            return self._park_join(group, member, now)
        member = group.members.get(member_id)
        if member is None:
            return Deferred(join_response(UnknownMemberIdError.code, member_id))
        member.last_seen = now
        unchanged = member.matches(protocols)
        member.protocols, member.session_timeout_ms = protocols, session_timeout_ms
        member.rebalance_timeout_ms = rebalance_timeout_ms
        if group.is_(COMPLETING) and unchanged or group.is_(STABLE) and unchanged and member_id != group.leader_id:
            # it lost our answer, or merely resent: the current generation stands
            return Deferred(group.join_result(member_id))
        return self._park_join(group, member, now)

    def _park_join(self, group: Group, member: Member, now: float) -> Deferred:
        parked = Deferred()
        if member.joining is not None:  # a retried JoinGroup supersedes the one held
            member.joining.resolve(join_response(RebalanceInProgressError.code, member.member_id))
        member.joining = parked
        if group.is_(EMPTY, COMPLETING, STABLE):
            self._prepare_rebalance(group, now)
        else:
            self._maybe_complete_join(group)
        return parked

    def _prepare_rebalance(self, group: Group, now: float) -> None:
        if group.is_(COMPLETING):
            for member in group.members.values():
                member.assignment = b""
                if member.syncing is not None:
                    member.syncing.resolve(sync_response(RebalanceInProgressError.code))
                    member.syncing = None
        group.initial_rebalance = group.is_(EMPTY)
        group.transition(PREPARING)
        if group.initial_rebalance:
            delay = self.config.group_initial_rebalance_delay_ms
            group.initial_remaining_ms = max(group.max_rebalance_timeout_ms() - delay, 0)
            group.joined_during_delay = False
        else:
            delay = group.max_rebalance_timeout_ms()
        group.join_deadline = now + delay / 1000
        self._at(group.join_deadline, "join", group)
        self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if group.is_(PREPARING) and not group.initial_rebalance and group.all_joined():
            self._complete_join(group, self.clock())

    def _on_join(self, group: Group, now: float, _) -> None:
        if not group.is_(PREPARING) or group.join_deadline is None or now < group.join_deadline:
            return
        if group.initial_rebalance and group.joined_during_delay and group.initial_remaining_ms > 0:
            step = min(self.config.group_initial_rebalance_delay_ms, group.initial_remaining_ms)
            group.initial_remaining_ms -= step
            group.joined_during_delay = False
            group.join_deadline = now + step / 1000
            self._at(group.join_deadline, "join", group)
            return
        self._complete_join(group, now)

    def _complete_join(self, group: Group, now: float) -> None:
        for member in [m for m in group.members.values() if m.joining is None]:
            self._drop(group, member)  # did not rejoin in time
        group.pending_members.clear()
        group.join_deadline, group.initial_rebalance = None, False
        group.generation += 1
        if not group.members:
            group.protocol_name = group.leader_id = None
            group.transition(EMPTY)
            self._maybe_forget(group)
            return
        group.protocol_name = group.select_protocol()
        group.transition(COMPLETING)
        group.awaiting_sync = set(group.members)
        group.sync_deadline = now + group.max_rebalance_timeout_ms() / 1000
        self._at(group.sync_deadline, "sync", group, group.generation)
        for member in group.members.values():
            member.last_seen, member.assignment = now, b""
            parked, member.joining = member.joining, None
            parked.resolve(group.join_result(member.member_id))

    # ------------------------------------------------------------------ SyncGroup, Heartbeat, LeaveGroup

    def sync(self, group_id: str, generation: int, member_id: str, assignments: dict[str, bytes]) -> Deferred:
        """SyncGroup: the leader hands in every member's assignment; the others wait for it."""
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        if member is None:
            return Deferred(sync_response(UnknownMemberIdError.code))
        if generation != group.generation:
            return Deferred(sync_response(IllegalGenerationError.code))
        if group.is_(PREPARING):
            return Deferred(sync_response(RebalanceInProgressError.code))
        member.last_seen = self.clock()
        group.awaiting_sync.discard(member_id)
        if group.is_(STABLE):
            return Deferred(sync_response(NO_ERROR, member.assignment))
        if member.syncing is not None:
            member.syncing.resolve(sync_response(RebalanceInProgressError.code))
        member.syncing = parked = Deferred()
        if member_id == group.leader_id:
            for each in group.members.values():
                each.assignment = assignments.get(each.member_id, b"")
            group.transition(STABLE)
            for each in group.members.values():
                if each.syncing is not None:
                    each.syncing.resolve(sync_response(NO_ERROR, each.assignment))
                    each.syncing = None
        return parked

    def _on_sync(self, group: Group, now: float, generation: int) -> None:
        if generation != group.generation or not group.is_(COMPLETING, STABLE) or not group.awaiting_sync:
            return
        for member_id in list(group.awaiting_sync):
            self._drop(group, group.members[member_id])
        self._prepare_rebalance(group, now)

    def heartbeat(self, group_id: str, generation: int, member_id: str) -> int:
        """Heartbeat: the error code to answer (REBALANCE_IN_PROGRESS: rejoin)."""
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        if member is None:
            return UnknownMemberIdError.code
        if generation != group.generation:
            return IllegalGenerationError.code
        member.last_seen = self.clock()
        return RebalanceInProgressError.code if group.is_(PREPARING) else NO_ERROR

    def leave(self, group_id: str, member_id: str) -> int:
        """LeaveGroup of one member: the error code to answer."""
        group = self._groups.get(group_id)
        if group is not None and group.pending_members.pop(member_id, None) is not None:
            self._maybe_complete_join(group)
            return NO_ERROR
        member = group.members.get(member_id) if group is not None else None
        if member is None:
            return UnknownMemberIdError.code
        self._remove(group, member, self.clock())
        return NO_ERROR

    def _on_session(self, group: Group, now: float, member_id: str) -> None:
        member = group.members.get(member_id)
        if member is None:
            return
        if member.joining is not None or member.syncing is not None:
            member.last_seen = now  # parked: its phase has its own deadline
        if now < member.session_deadline:
            self._at(member.session_deadline, "session", group, member_id)
            return
        self._remove(group, member, now)

    def _on_pending(self, group: Group, now: float, member_id: str) -> None:
        deadline = group.pending_members.get(member_id)
        if deadline is not None and deadline <= now:
            del group.pending_members[member_id]
            self._maybe_complete_join(group)
            self._maybe_forget(group)

    def _remove(self, group: Group, member: Member, now: float) -> None:
        """Remove a member that left or expired, and rebalance the rest."""
        self._drop(group, member)
        if group.is_(STABLE, COMPLETING):
            self._prepare_rebalance(group, now)
        else:
            self._maybe_complete_join(group)

    def _drop(self, group: Group, member: Member) -> None:
        group.remove(member.member_id)
        if member.joining is not None:
            member.joining.resolve(join_response(UnknownMemberIdError.code, member.member_id))
        if member.syncing is not None:
            member.syncing.resolve(sync_response(UnknownMemberIdError.code))
        member.joining = member.syncing = None

    def _maybe_forget(self, group: Group) -> None:
        if (group.is_(EMPTY) and not group.members and not group.pending_members
                and not self.offsets.committed(group.group_id)):
            del self._groups[group.group_id]
            group.state = GroupState.DEAD

    # ------------------------------------------------------------------ offsets

    def commit(self, group_id: str, generation: int, member_id: str,
               offsets: list[tuple[str, int, CommittedOffset]]) -> tuple[dict[tuple[str, int], int], AppendResult | None]:
        """OffsetCommit: (error code per (topic, partition), the append to make durable or None).

        Raises what the append raises (KafkaStorageError); nothing is committed then."""
        error = self._commit_error(group_id, generation, member_id)
        errors = {(topic, partition): error for topic, partition, _ in offsets}
        if error:
            return errors, None
        accepted = []
        for topic, partition, committed in offsets:
            if len(committed.metadata.encode("utf-8")) > self.config.offset_metadata_max_bytes:
                errors[(topic, partition)] = OffsetMetadataTooLargeError.code
            else:
                accepted.append((topic, partition, committed))
        result = self.offsets.commit(group_id, accepted)
        if result is not None and group_id not in self._groups:
            self._groups[group_id] = Group(group_id)  # a standalone commit made the group exist
        return errors, result

    def _commit_error(self, group_id: str, generation: int, member_id: str) -> int:
        group = self._groups.get(group_id)
        if group is None:
            return NO_ERROR if generation < 0 else IllegalGenerationError.code
        if generation < 0 and group.is_(EMPTY):
            return NO_ERROR
        member = group.members.get(member_id)
        if member is None:
            return UnknownMemberIdError.code
        if generation != group.generation:
            return IllegalGenerationError.code
        if group.is_(COMPLETING):
            return RebalanceInProgressError.code
        member.last_seen = self.clock()
        return NO_ERROR

    def committed(self, group_id: str, partitions: list[tuple[str, int]] | None = None
                  ) -> list[tuple[str, int, CommittedOffset | None]]:
        """OffsetFetch: the committed offset of each partition (None if none), or with
        `partitions` None every partition the group has committed."""
        table = self.offsets.committed(group_id)
        if partitions is None:
            return [(topic, partition, committed) for (topic, partition), committed in sorted(table.items())]
        return [(topic, partition, table.get((topic, partition))) for topic, partition in partitions]

    # ------------------------------------------------------------------ ListGroups, DescribeGroups

    def list_groups(self) -> list[Group]:
        return sorted(self._groups.values(), key=lambda group: group.group_id)

    def describe(self, group_id: str) -> dict:
        """A DescribeGroups entry; an unknown group is Dead (as Kafka answers)."""
        return (self._groups.get(group_id) or Group(group_id, GroupState.DEAD)).describe()

    # ------------------------------------------------------------------ DeleteGroups, OffsetDelete

    def _deletion_error(self, group_id: str) -> int:
        if not group_id:
            return InvalidGroupIdError.code
        group = self._groups.get(group_id)
        if group is None:
            return GroupIdNotFoundError.code
        if group.members or group.pending_members or not group.is_(EMPTY):
            return NonEmptyGroupError.code
        return NO_ERROR

    def delete_groups(self, group_ids: list[str]) -> tuple[dict[str, int], AppendResult | None]:
        """DeleteGroups: (error code per group, the last append to make durable or None).
        Only Empty groups go: tombstones for their offsets and metadata, then they are Dead."""
        codes: dict[str, int] = {}
        appended = None
        for group_id in group_ids:
            code = self._deletion_error(group_id)
            if not code:
                try:
                    appended = self.offsets.delete(group_id, list(self.offsets.committed(group_id)),
                                                   whole_group=True) or appended
                except LogshipError as exc:
                    code = error_code(exc)
                else:
                    self._groups.pop(group_id).state = GroupState.DEAD
            codes[group_id] = code
        return codes, appended

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]
                       ) -> tuple[int, dict[tuple[str, int], int], AppendResult | None]:
        """OffsetDelete: (group error code, error code per partition, the append or None).

        A group with members keeps the offsets of topics they subscribe to
        (GROUP_SUBSCRIBED_TO_TOPIC); a non-consumer group with members refuses entirely."""
        if not group_id:
            return InvalidGroupIdError.code, {}, None
        group = self._groups.get(group_id)
        if group is None:
            return GroupIdNotFoundError.code, {}, None
        subscribed: set[str] = set()
        if not group.is_(EMPTY):
            if group.protocol_type != "consumer":
                return NonEmptyGroupError.code, {}, None
            for member in group.members.values():
                subscribed |= member.subscribed_topics()
        codes = {tp: GroupSubscribedToTopicError.code if tp[0] in subscribed else NO_ERROR for tp in partitions}
        committed = self.offsets.committed(group_id)
        doomed = [tp for tp, code in codes.items() if not code and tp in committed]
        appended = self.offsets.delete(group_id, doomed) if doomed else None
        self._maybe_forget(group)
        return NO_ERROR, codes, appended

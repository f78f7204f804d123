"""`GroupConsumer`: read the partitions a consumer group assigns to this member.

    with GroupConsumer(Cluster(), "readers", "logs") as consumer:
        for chunk in consumer.poll_chunks(1.0):      # PartitionRecords of assigned partitions
            handle(chunk)
        consumer.commit()                            # what poll returned, or commit({tp: offset})

A member (group.py) joins the group on the first poll; each assigned partition is read from
the group's committed offset, or from `start` (the offset grammar; default beginning) where
nothing is committed. A committed offset the log no longer holds is clamped to the log.

Rebalances follow Kafka's eager protocol: when the heartbeat thread learns the group is
rebalancing (or a commit finds the generation gone), the next poll stops fetching every
partition, commits the positions of what poll has returned so far (`commit_on_revoke`),
rejoins, and starts again on the new assignment from the committed offsets. So a partition
that moves to another member continues where this one stopped; only records returned after
the last commit and before a crash (SIGKILL, lost session) are read twice.

`commit(positions)` commits what the caller has really finished with, so a command that
writes to stdout commits only what it wrote: positions of partitions this member does not own
(any more), or outside what it has read in its current ownership, are ignored, so stale
positions can never move a partition back. `stop_at_end=True` notes every partition's end
offset at construction; the member is finished once its assigned partitions reach them.
"""

from __future__ import annotations

import logging
import select
import time

from ..errors import LogshipError
from .admin import LATEST, list_offsets
from .cluster import Cluster
from .consumer import Consumer
from .fetched import ConsumedRecord, PartitionRecords
from .group import CommitFailedError, GroupMember
from .offsets import OffsetSpec, parse_offset

__all__ = ["GroupConsumer"]

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
_MAX_SLEEP = 0.2  # longest select() between checks of retries and rebalances


class GroupConsumer:
    """A consumer-group member that reads its assigned partitions; see the module docstring.

    Options not listed are passed to each partition set's Consumer (max_wait_ms, isolation,
    check_crcs ...). `on_assign(assignment)` is called after every join with topic -> partitions.
    """

    def __init__(self, cluster: Cluster | str | None, group: str, topics: str | list[str], *,
                 start: OffsetSpec | str | int = "beginning", stop_at_end: bool = False,
                 session_timeout_ms: int = 10_000, rebalance_timeout_ms: int = 60_000,
                 heartbeat_interval_ms: int | None = None, assignors: tuple[str, ...] = ("range", "roundrobin"),
                 commit_on_revoke: bool = True, on_assign=None, **consumer_options):
        self.cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        self._own_cluster = not isinstance(cluster, Cluster)
        self.group = group
        self.topics = [topics] if isinstance(topics, str) else list(dict.fromkeys(topics))
        self.start = parse_offset(start)
        if self.start.kind == "stored":  # the committed offset is what a group starts from anyway
            self.start = parse_offset("beginning")
        self.commit_on_revoke = commit_on_revoke
        self.on_assign = on_assign
        self._options = {"offset_reset": "clamp", **consumer_options}
        self._isolation = consumer_options.get("isolation", "read_uncommitted")
        partitions = {topic: sorted(self.cluster.topic(topic).partitions) for topic in self.topics}  # UnknownTopicError
        self._ends: dict[TopicPartition, int] | None = None
        if stop_at_end:
            self._ends = {}
            for topic, parts in partitions.items():
                found = list_offsets(self.cluster, topic, {p: LATEST for p in parts},
                                     1 if self._isolation in (1, "read_committed") else 0)
                self._ends.update({(topic, p): offset for p, (offset, _) in found.items()})
        self.member = GroupMember(self.cluster, group, self.topics, session_timeout_ms=session_timeout_ms,
                                  rebalance_timeout_ms=rebalance_timeout_ms,
                                  heartbeat_interval_ms=heartbeat_interval_ms, assignors=assignors)
        self._consumers: dict[str, Consumer] = {}
        self._assignment: dict[str, list[int]] = {}
        self._began: dict[TopicPartition, int] = {}  # where this ownership of each partition started
        self._committed: dict[TopicPartition, int] = {}  # what this member last committed
        self._joined = False
        self._closed = False

    # --- public ---------------------------------------------------------------------------------

    @property
    def assignment(self) -> dict[str, list[int]]:
        """topic -> partitions this member owns now (empty before the first join)."""
        return {topic: list(parts) for topic, parts in self._assignment.items()}

    @property
    def finished(self) -> bool:
        """With stop_at_end: joined, and every assigned partition reached its noted end."""
        return (self._ends is not None and self._joined and not self.member.needs_rejoin()
                and all(consumer.finished for consumer in self._consumers.values()))

    def positions(self) -> dict[TopicPartition, int]:
        """(topic, partition) -> the offset after the last record returned, for owned partitions."""
        return {(topic, p): offset for topic, consumer in self._consumers.items()
                for p, offset in consumer.positions().items()}

    def poll_chunks(self, timeout: float | None = None) -> list[PartitionRecords]:
        """Records of the assigned partitions, waiting up to `timeout` seconds (None: until
        some come or the consumer is finished); [] when none came. Joins and rebalances
        happen inside (the first call blocks until the group has assigned partitions)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.member.touch()
            if not self._joined or self.member.needs_rejoin():
                self._rebalance()
            chunks = [chunk for consumer in self._consumers.values() for chunk in consumer.poll_chunks(0)]
            if chunks or self.finished:
                return chunks
            left = _MAX_SLEEP if deadline is None else min(deadline - time.monotonic(), _MAX_SLEEP)
            if left <= 0:
                return []
            fds = [fd for consumer in self._consumers.values() for fd in consumer.waiting_fds()]
            ready = select.select(fds + [self.member.wakeup_fd], [], [], left)[0]
            if self.member.wakeup_fd in ready:
                self.member.drain_wakeups()

    def poll(self, timeout: float | None = None) -> list[ConsumedRecord]:
        """Like poll_chunks(), as a list of records."""
        return [record for chunk in self.poll_chunks(timeout) for record in chunk]

    def __iter__(self):
        while True:
            chunks = self.poll_chunks()
            if not chunks and self.finished:
                return
            for chunk in chunks:
                yield from chunk

    def commit(self, positions: dict[TopicPartition, int] | None = None) -> bool:
        """Commit (topic, partition) -> next offset to read; default: positions(). Only
        partitions owned now, at offsets this ownership has read, and changed since the last
        commit are sent. False if the group rebalanced first (nothing was committed; the
        revoked positions were committed by the rebalance itself if they were returned).

        A member the group dropped (its session expired, or the coordinator restarted and
        forgot its members) commits as a tool does (generation -1), which the broker accepts
        only while the group has no members, and only for partitions whose committed offset
        is still the one this member last knew: nobody else has read them since."""
        if not self._joined:
            return True
        read = self.positions()
        wanted = read if positions is None else positions
        valid = {tp: offset for tp, offset in wanted.items()
                 if tp in read and self._began[tp] <= offset <= read[tp] and self._committed.get(tp) != offset}
        if valid and self.member.generation < 0:
            valid = self._unclaimed(valid)
        if not valid:
            return True
        try:
            self.member.commit(valid)
        except CommitFailedError as exc:
            # UNKNOWN_MEMBER_ID reset the member (generation -1): the coordinator forgot it,
            # e.g. it restarted (a clean close gives no other sign before the next heartbeat).
            # Commit once more as a dropped member does: accepted only if the group has no
            # members and nobody else committed these partitions since.
            if self.member.generation >= 0 or not self._commit_unclaimed(valid):
                log.warning("group %s: %s", self.group, exc)
                return False
            return True
        self._committed.update(valid)
        return True

    def _commit_unclaimed(self, positions: dict[TopicPartition, int]) -> bool:
        unclaimed = self._unclaimed(positions)
        if unclaimed != positions:
            return False
        try:
            self.member.commit(unclaimed)
        except LogshipError:
            return False
        self._committed.update(unclaimed)
        return True

    def _unclaimed(self, positions: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        try:
            current = self.member.committed(list(positions))
        except LogshipError:
            return {}
        return {tp: offset for tp, offset in positions.items() if current[tp] == self._committed.get(tp)}

    def close(self, leave: bool = True) -> None:
        """Stop fetching and leave the group (others take the partitions at once). Does not
        commit: call commit() first."""
        if self._closed:
            return
        self._closed = True
        self._stop_consumers()
        self.member.close(leave=leave)
        if self._own_cluster:
            self.cluster.close()

    def __enter__(self) -> "GroupConsumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- rebalancing ----------------------------------------------------------------------------

    def _rebalance(self) -> None:
        if self._joined:
            if self.commit_on_revoke:
                self.commit()
            self._stop_consumers()
        assignment = self.member.join()
        self._assignment = {topic: assignment[topic] for topic in self.topics if assignment.get(topic)}
        wanted = [(topic, p) for topic, parts in self._assignment.items() for p in parts]
        committed = self.member.committed(wanted) if wanted else {}
        self._committed = {tp: offset for tp, offset in committed.items() if offset is not None}
        try:
            for topic, parts in self._assignment.items():
                starts = {p: self.start if committed[(topic, p)] is None else OffsetSpec.at_offset(committed[(topic, p)])
                          for p in parts}
                ends = None if self._ends is None else {p: self._ends.get((topic, p)) for p in parts}
                self._consumers[topic] = Consumer(self.cluster, topic, parts, start=starts, end=ends, **self._options)
        except LogshipError:
            self._stop_consumers()
            raise
        self._began = self.positions()
        self._joined = True
        log.info("group %s: assigned %s, starting at %s", self.group, self._assignment, self._began)
        if self.on_assign is not None:
            self.on_assign(self.assignment)

    def _stop_consumers(self) -> None:
        consumers, self._consumers = self._consumers, {}
        for consumer in consumers.values():
            consumer.close()
        self._assignment, self._began = {}, {}

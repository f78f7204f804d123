"""`ReplicaManager`: this broker's replicas, the role of each, and the leader's high watermark.

Single-broker mode (no cluster file): it manages nothing; every local partition is led here,
its high watermark follows its log end, as before replication existed.

Cluster mode: a partition is hosted here when it holds a `PartitionState` (storage's
`partition-state` file) naming this broker among its replicas; anything else is not hosted
and answers NOT_LEADER_OR_FOLLOWER. `apply(topic, partition, state)` takes a state that
supersedes the one held (a newer `version`, or the same state repeated: a no-op); an older
version, or an equal one with other content, is refused with FENCED_LEADER_EPOCH,
writes it durably BEFORE acting, then becomes leader (the partition's leader epoch set to the
state's) or follower (fetched from the leader by that leader's `ReplicaFetcher`, which
truncates by leader epoch, KIP-101).

On a leader the high watermark is min(the leader's durable offset, the fetch offset of every
in-sync follower); it never goes back while this broker leads. Each append starts a
background fdatasync (one in flight per partition) so that the durable offset keeps up even
with acks=1. A follower's fetch reports its durable log end (its fetch offset, or the
smaller durable_offset of a fetch sent while its last append still syncs: fetch.py). It also
notes when each follower last fetched, and last fetched at its log end (`followers(key)`,
answered in DescribeQuorum for `logship cluster status`). When the high watermark moves,
long-polling fetches are woken (`broker.on_append`) and acks=all produces waiting for it
(`until_replicated`) are answered; those not reached within the request's timeout_ms answer
REQUEST_TIMED_OUT.

High watermarks are checkpointed in `<data_dir>/replication-offset-checkpoint` (Kafka's
name and layout: version, count, "topic partition offset" lines) every
CHECKPOINT_INTERVAL_S and on close, so a restarted replica starts from them rather than from
its log end (which may hold records never acknowledged) or from zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ...errors import (FencedLeaderEpochError, KafkaStorageError, LogshipError, NotLeaderError,
                       RequestTimedOutError, StaleControllerEpochError, UnknownTopicError)
from ...storage import Partition
from ...storage.checkpoint import MalformedCheckpoint, read_offsets, write_offsets
from ...storage.partition_state import FILE_NAME as STATE_FILE, PartitionState, read_state, write_state
from ..cluster_metadata import fence_marker
from .fetcher import ReplicaFetcher

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("logship.replication")

HW_CHECKPOINT = "replication-offset-checkpoint"
CHECKPOINT_INTERVAL_S = 5.0
INELIGIBLE_REPLICA = 107  # a fenced broker asked to lead
Key = tuple[str, int]


class ReplicaManager:
    def __init__(self, broker: Broker):
        self.broker = broker
        self.store = broker.store
        self.node_id = broker.config.node_id
        self.clustered = broker.config.cluster is not None
        self._states: dict[Key, PartitionState] = {}
        self._follower_offsets: dict[Key, dict[int, int]] = {}  # leader side: follower -> fetch offset
        self._follower_heard: dict[Key, dict[int, tuple[float, float | None]]] = {}  # -> (fetched, caught up)
        self._waiters: dict[Key, list[tuple[int, asyncio.Future]]] = {}
        self._syncing: set[Key] = set()
        self._fetchers: dict[int, ReplicaFetcher] = {}
        self._controller_epoch = -1
        self._checkpointer: asyncio.Task | None = None
        self._saved_hw: dict[Key, int] = {}
        if self.clustered:
            self._load_states()

    # ------------------------------------------------------------------ the contract

    def state(self, topic: str, partition: int) -> PartitionState | None:
        return self._states.get((topic, partition))

    def hosted(self) -> Iterable[Key]:
        return list(self._states)

    def apply(self, topic: str, partition: int, state: PartitionState) -> int:
        """Take `state` for this partition (see the module docstring); a Kafka error code."""
        key = (topic, partition)
        held = self._states.get(key)
        if state == held:
            return 0
        if not state.supersedes(held):
            log.warning("%s-%d: refusing state version %d (leader %d, epoch %d): this broker holds version %d "
                        "(leader %d, epoch %d)", topic, partition, state.version, state.leader, state.leader_epoch,
                        held.version, held.leader, held.leader_epoch)
            return FencedLeaderEpochError.code
        if self.node_id not in state.replicas:
            self.stop(topic, partition, delete=False)
            return 0
        if state.leader == self.node_id and fence_marker(self.store.data_dir) is not None:
            log.warning("%s-%d: refusing to lead: this broker is fenced (`logship cluster add %d` first)",
                        topic, partition, self.node_id)
            return INELIGIBLE_REPLICA
        try:
            image = getattr(self.broker, "topic_configs", None)  # a new replica's topic gets the cluster's configs
            log_partition = self.store.ensure_partition(topic, partition, image.overrides(topic) if image else None)
            write_state(log_partition.directory, state)
        except (LogshipError, OSError) as exc:
            log.error("%s-%d: cannot take partition state version %d: %s", topic, partition, state.version, exc)
            return KafkaStorageError.code
        self._states[key] = state
        if held is None or held.leader_epoch != state.leader_epoch:
            self._follower_offsets.pop(key, None)  # a new epoch: followers report afresh
            self._follower_heard.pop(key, None)
        try:
            self._act(key, log_partition, state)
        except (LogshipError, ValueError) as exc:
            log.error("%s-%d: cannot act on partition state version %d: %s", topic, partition, state.version, exc)
            return KafkaStorageError.code
        log.info("%s-%d: %s in leader epoch %d (leader %d, isr %s, version %d)", topic, partition,
                 "leader" if state.leader == self.node_id else "follower", state.leader_epoch, state.leader,
                 list(state.isr), state.version)
        return 0

    def stop(self, topic: str, partition: int, delete: bool) -> None:
        """Stop hosting this partition: no more fetching or leading, its state file removed (a
        restart does not resume it); with `delete` its log is emptied too (the topic's
        directories go once none of its partitions is hosted)."""
        key = (topic, partition)
        self._unfollow(key)
        held = self._states.pop(key, None)
        self._follower_offsets.pop(key, None)
        self._follower_heard.pop(key, None)
        self._fail_waiters(key, NotLeaderError(f"{topic}-{partition} is no longer led by broker {self.node_id}"))
        directory = self.store.partition_directory(topic, partition)
        try:
            if held is not None or delete:
                (directory / STATE_FILE).unlink(missing_ok=True)
        except OSError as exc:
            log.error("%s-%d: cannot remove %s: %s", topic, partition, directory / STATE_FILE, exc)
        if not delete:
            return
        try:
            if not any(t == topic for t, _ in self._states):
                self.store.delete_topic(topic)
            else:
                log_partition = self.store.partition(topic, partition)
                log_partition.truncate_fully_and_start_at(log_partition.log_end_offset)
        except UnknownTopicError:
            pass  # deleted already (DeleteTopics)
        except (LogshipError, OSError) as exc:
            log.error("%s-%d: cannot delete the stopped replica: %s", topic, partition, exc)

    def check_controller_epoch(self, epoch: int) -> None:
        """StaleControllerEpochError if a controller of a later epoch was already heard from."""
        if epoch < self._controller_epoch:
            raise StaleControllerEpochError(f"controller epoch {epoch} is older than {self._controller_epoch}")
        self._controller_epoch = epoch

    # ------------------------------------------------------------------ roles

    def check_leader(self, topic: str, partition: int) -> None:
        """In cluster mode, NotLeaderError unless this broker leads the partition."""
        if not self.clustered:
            return
        state = self._states.get((topic, partition))
        if state is None or state.leader != self.node_id:
            raise NotLeaderError(f"broker {self.node_id} does not lead {topic}-{partition}")

    def check_hosted(self, topic: str, partition: int) -> None:
        """In cluster mode, NotLeaderError unless this broker hosts a replica of the partition."""
        if self.clustered and (topic, partition) not in self._states:
            raise NotLeaderError(f"broker {self.node_id} hosts no replica of {topic}-{partition}")

    def _act(self, key: Key, log_partition: Partition, state: PartitionState) -> None:
        log_partition.hw_follows_log_end = False
        if state.leader == self.node_id:
            self._unfollow(key)
            log_partition.set_leader_epoch(state.leader_epoch)
            self._follower_offsets.setdefault(key, {})  # kept when only the ISR changed
            self._update_hw(key, log_partition)
        else:
            self._follower_offsets.pop(key, None)
            self._follower_heard.pop(key, None)
            self._fail_waiters(key, NotLeaderError(f"{key[0]}-{key[1]} is now led by broker {state.leader}"))
            self._unfollow(key)
            if state.leader >= 0:
                self._fetcher(state.leader).add(key, state.leader_epoch)

    def _fetcher(self, leader: int) -> ReplicaFetcher:
        fetcher = self._fetchers.get(leader)
        if fetcher is None:
            spec = self.broker.config.cluster.broker(leader)
            host, port = spec.advertise
            fetcher = self._fetchers[leader] = ReplicaFetcher(self, leader, host, port)
        return fetcher

    def _unfollow(self, key: Key) -> None:
        for fetcher in self._fetchers.values():
            fetcher.remove(key)

    # ------------------------------------------------------------------ leader side

    def appended(self, topic: str, partition: Partition) -> None:
        """A led partition was appended to: make it durable in the background (one sync in
        flight per partition), then recompute its high watermark."""
        key = (topic, partition.index)
        if not self.clustered or key not in self._states or key in self._syncing:
            return
        self._syncing.add(key)
        job = asyncio.get_running_loop().run_in_executor(None, partition.sync_to, partition.log_end_offset)
        job.add_done_callback(lambda done: self._synced(key, partition, done))

    def _synced(self, key: Key, partition: Partition, job: asyncio.Future) -> None:
        self._syncing.discard(key)
        failure = None if job.cancelled() else job.exception()
        if failure is not None:
            log.error("%s-%d: sync failed: %s", key[0], key[1], failure)
            self._fail_waiters(key, failure)
            return
        self._update_hw(key, partition)
        if partition.recovery_point < partition.log_end_offset:
            self.appended(key[0], partition)

    def follower_fetched(self, key: Key, partition: Partition, follower: int, fetch_offset: int) -> None:
        """A replica fetch from `follower` at `fetch_offset` (its durable log end): record it."""
        offsets = self._follower_offsets.get(key)
        if offsets is None:
            return
        if fetch_offset > partition.log_end_offset:
            return  # beyond this log: the fetch is answered OFFSET_OUT_OF_RANGE
        offsets[follower] = fetch_offset
        heard, now = self._follower_heard.setdefault(key, {}), time.monotonic()
        heard[follower] = (now, now if fetch_offset >= partition.log_end_offset else heard.get(follower, (0, None))[1])
        self._update_hw(key, partition)

    def followers(self, key: Key) -> dict[int, tuple[int, float | None, float | None]] | None:
        """For a partition led here, each other replica -> (its last fetch offset in this leader
        epoch, -1 if none yet; time.monotonic() of that fetch; of the last fetch that reached
        this log's end then, None if none did); None when this broker does not lead it."""
        state = self._states.get(key)
        if state is None or state.leader != self.node_id:
            return None
        offsets, heard = self._follower_offsets.get(key, {}), self._follower_heard.get(key, {})
        return {replica: (offsets[replica], *heard[replica]) if replica in offsets else (-1, None, None)
                for replica in state.replicas if replica != self.node_id}

    def _update_hw(self, key: Key, partition: Partition) -> None:
        state = self._states.get(key)
        if state is None or state.leader != self.node_id:
            return
        offsets = self._follower_offsets.get(key, {})
        current = partition.high_watermark
        candidate = partition.recovery_point
        for replica in state.isr:
            if replica != self.node_id:
                candidate = min(candidate, offsets.get(replica, current))
        if candidate > current:
            partition.set_high_watermark(candidate)
            self._hw_moved(key, partition)

    def _hw_moved(self, key: Key, partition: Partition) -> None:
        self.broker.on_append(*key)
        hw = partition.high_watermark
        waiting = []
        for offset, future in self._waiters.pop(key, []):
            if future.done():
                continue
            if offset <= hw:
                future.set_result(None)
            else:
                waiting.append((offset, future))
        if waiting:
            self._waiters[key] = waiting

    def _fail_waiters(self, key: Key, exc: BaseException) -> None:
        for _, future in self._waiters.pop(key, []):
            if not future.done():
                future.set_exception(exc)

    def until_replicated(self, partition: Partition, offset: int, timeout_ms: int) -> asyncio.Future | None:
        """acks=all in a cluster: a future done once the high watermark reaches `offset` (which
        implies durable here: the high watermark never passes this broker's durable offset);
        it fails with RequestTimedOutError after `timeout_ms`, NotLeaderError if leadership
        moves meanwhile, KafkaStorageError if the local sync fails. None where replication
        has no say (single-broker mode, a partition not hosted): wait for durability alone."""
        key = (partition.topic, partition.index)
        if not self.clustered or key not in self._states:
            return None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if partition.high_watermark >= offset:
            future.set_result(None)
            return future
        self._waiters.setdefault(key, []).append((offset, future))
        timer = loop.call_later(max(timeout_ms, 0) / 1000, self._time_out, key, offset, timeout_ms, future)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    def _time_out(self, key: Key, offset: int, timeout_ms: int, future: asyncio.Future) -> None:
        if future.done():
            return
        state = self._states.get(key)
        offsets = self._follower_offsets.get(key, {})
        lagging = sorted(r for r in (state.isr if state else ()) if r != self.node_id and offsets.get(r, -1) < offset)
        future.set_exception(RequestTimedOutError(
            f"{key[0]}-{key[1]}: not replicated to every in-sync replica within {timeout_ms} ms "
            f"(lagging: {', '.join(f'broker {r}' for r in lagging) or 'this broker'})"))

    # ------------------------------------------------------------------ follower side

    def follower_state(self, key: Key) -> PartitionState | None:
        """The state of a partition this broker follows, None if it no longer does."""
        state = self._states.get(key)
        return state if state is not None and state.leader != self.node_id else None

    # ------------------------------------------------------------------ lifetime

    def _load_states(self) -> None:
        try:
            self._saved_hw = read_offsets(self.store.data_dir / HW_CHECKPOINT)
        except (MalformedCheckpoint, OSError) as exc:
            log.warning("ignoring unreadable %s (%s): high watermarks restart from zero", HW_CHECKPOINT, exc)
        for topic, count in self.store.topics().items():
            for index in range(count):
                state = read_state(self.store.partition_directory(topic, index))
                if state is not None and self.node_id in state.replicas:
                    if state.leader == self.node_id and fence_marker(self.store.data_dir) is not None:
                        state = replace(state, leader=-1)  # fenced: leads nothing (in memory only)
                    self._states[(topic, index)] = state

    def start(self) -> None:
        """Resume the roles read from the state files (on the event loop, once it runs)."""
        for key, state in list(self._states.items()):
            try:
                partition = self.store.partition(*key)
                partition.hw_follows_log_end = False
                partition.set_high_watermark(self._saved_hw.get(key, 0))
                self._act(key, partition, state)
            except (LogshipError, ValueError) as exc:
                log.error("%s-%d: cannot resume its replica: %s", key[0], key[1], exc)
        if self.clustered:
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            await asyncio.get_running_loop().run_in_executor(None, self.checkpoint_hw)

    def checkpoint_hw(self) -> None:
        """Write every hosted partition's high watermark (when one moved since the last time)."""
        marks = {}
        for key in list(self._states):
            try:
                marks[key] = self.store.partition(*key).high_watermark
            except LogshipError:
                continue
        if marks == self._saved_hw:
            return
        try:
            write_offsets(self.store.data_dir / HW_CHECKPOINT, marks)
            self._saved_hw = marks
        except OSError as exc:
            log.error("cannot write %s: %s", os.path.join(self.store.data_dir, HW_CHECKPOINT), exc)

    async def close(self) -> None:
        """Stop every fetcher, answer the acks=all waits, checkpoint the high watermarks."""
        if self._checkpointer is not None:
            self._checkpointer.cancel()
        await asyncio.gather(*(fetcher.close() for fetcher in self._fetchers.values()), return_exceptions=True)
        for key in list(self._waiters):
            self._fail_waiters(key, NotLeaderError("the broker is shutting down"))
        if self.clustered:
            self.checkpoint_hw()

"""`ReplicaFetcher`: this broker's follower fetcher for every partition one leader broker leads.

One asyncio task per (this broker, leader broker), over one `PeerLink` authenticated as
`broker-<own id>`. Each round is one Fetch v12 with replica_id = own id and, per partition,
fetch_offset = the local log end, last_fetched_epoch = the epoch of the local log's last
batch, current_leader_epoch = the epoch the follower was told (LeaderAndIsr). Then, per
partition of the answer:

* records: appended unchanged (`append_replica_batch`: offsets, epochs, timestamps as the
  leader wrote them; the batches' CRCs checked by storage, a corrupt one is not appended),
  then every partition that got records is fdatasynced (one sync per partition per fetch).
  What a fetch tells the leader is durable here (the leader's high watermark counts on it) is
  min(log end, recovery point), never an offset the follower does not hold durably: that is
  its fetch_offset, except while catching up (below). A partition whose sync could not start
  (SyncNotStarted) is synced again before the next fetch and left out of it until that
  succeeds; one whose fdatasync failed is offline for good (groupcommit.py): it is dropped
  from the fetcher and logged, never reported again;
* catching up (pipelined): when an answer shows the leader holds more (the follower is still
  below the leader's high watermark, or the answer filled half of PARTITION_MAX_BYTES or
  cut a batch short), the sync runs in a thread while the next fetch is already out, with
  fetch_offset = the log end (where to read from) and a durable offset = min(log end,
  recovery point) as of sending (a logship tagged field: the leader counts the smaller of the
  two, fetch.py `durable_offset`) and max_wait_ms 0 (so the answer, and the fetch after it
  that reports the synced offset, come at once). That answer is applied only once the sync
  is done (its failures handled as above: a partition whose sync failed takes nothing from it);
* diverging_epoch (epoch E, end offset O): the local log is cut at min(O, the end of the
  local largest epoch <= E); when there is no such local epoch, every local batch is of an
  epoch above E, none matching the leader's below O, so it is cut at min(O, the local log
  start) (KIP-101, never by high watermark alone; never moved ahead of what it holds, as an
  emptied log restarting at O would report offsets it does not have); the next fetch tells
  the leader the new last epoch;
* OFFSET_OUT_OF_RANGE below the leader's log start: the local log is emptied and restarts
  at the leader's log start; above the leader's log with no epoch to compare (an emptied
  log, so diverging_epoch cannot say): it restarts at the leader's high watermark;
* the follower's high watermark becomes min(the leader's, the local durable log end), and
  its log start follows the leader's (up to that high watermark).

Any other partition error (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH:
the controller has yet to tell one side) and a lost link back off (BACKOFF_S, doubling up to
MAX_BACKOFF_S) and retry; a link failure reconnects. Failures are logged once per kind until
the fetcher succeeds again. A fetcher whose partitions are all removed (StopReplica, another
leader) idles until `add`; `close()` (shutdown) ends its task and its link.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ...errors import KafkaStorageError, LogshipError, OffsetOutOfRangeError
from ...protocol import ApiKey
from ..fetch import durable_offset_field
from ..peer_link import PeerLink

if TYPE_CHECKING:
    from .manager import ReplicaManager

log = logging.getLogger("logship.replication")

FETCH_VERSION = 12
MAX_WAIT_MS = 500
MAX_BYTES = 32 << 20
PARTITION_MAX_BYTES = 8 << 20
BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


class ReplicaFetcher:
    def __init__(self, manager: ReplicaManager, leader: int, host: str, port: int):
        self.manager = manager
        self.leader = leader
        self.host, self.port = host, port
        self.partitions: dict[tuple[str, int], int] = {}  # (topic, partition) -> current leader epoch
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._link: PeerLink | None = None
        self._complaint: str | None = None
        self._sync: asyncio.Future | None = None  # a pipelined sync in flight (catching up)
        self._sync_partitions: dict[tuple[str, int], object] = {}  # what it syncs

    def add(self, key: tuple[str, int], leader_epoch: int) -> None:
        self.partitions[key] = leader_epoch
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, key: tuple[str, int]) -> None:
        if self.partitions.pop(key, None) is not None:
            self._changed.set()

    async def close(self) -> None:
        self.partitions.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it logged what it had to
                pass
        if self._link is not None:
            await self._link.close()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        backoff = BACKOFF_S
        while True:
            if not self.partitions:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                if self._link is None or self._link.closed:
                    config = self.manager.broker.config
                    self._link = PeerLink(self.host, self.port, principal=f"broker-{config.node_id}",
                                          secret=config.secret, client_id=f"logship-replica-{config.node_id}")
                    await self._link.connect()
                retry = await self._round()
            except LogshipError as exc:
                self._complain(f"cannot fetch from leader broker {self.leader}: {exc}")
                retry = True
            if retry:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                backoff = BACKOFF_S

    def _complain(self, message: str) -> None:
        if message != self._complaint:
            log.warning("%s", message)
            self._complaint = message

    async def _round(self) -> bool:
        """One fetch and what follows it; True when the fetcher should back off."""
        store = self.manager.store
        backoff = False
        if self._sync is not None and self._sync.done():
            backoff = await self._settle()
        syncing = set(self._sync_partitions)
        if await self._make_durable([key for key in self.partitions
                                     if key not in syncing and _not_durable(store.partition(*key))]):
            backoff = True
        asked = {key: epoch for key, epoch in self.partitions.items()
                 if key in syncing or not _not_durable(store.partition(*key))}
        if not asked:
            return True
        topics: dict[str, list[dict]] = {}
        for (topic, index), epoch in asked.items():
            partition = store.partition(topic, index)
            durable_end = min(partition.log_end_offset, partition.recovery_point)
            request = {"partition": index, "current_leader_epoch": epoch, "fetch_offset": durable_end,
                       "last_fetched_epoch": partition.last_epoch, "log_start_offset": partition.log_start_offset,
                       "partition_max_bytes": PARTITION_MAX_BYTES}
            if (topic, index) in syncing:  # its last append still syncs: read on, report what is durable
                request.update(durable_offset_field(durable_end), fetch_offset=partition.log_end_offset)
            topics.setdefault(topic, []).append(request)
        body = {"replica_id": self.manager.node_id, "max_wait_ms": 0 if syncing else MAX_WAIT_MS, "min_bytes": 1,
                "max_bytes": MAX_BYTES, "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                "topics": [{"topic": t, "partitions": p} for t, p in topics.items()],
                "forgotten_topics_data": [], "rack_id": ""}
        response = await self._link.request(ApiKey.FETCH, FETCH_VERSION, body, timeout=MAX_WAIT_MS / 1000 + 30)
        if self._sync is not None and await self._settle():
            backoff = True
        if response.get("error_code"):
            self._complain(f"leader broker {self.leader} refused replica fetches (error {response['error_code']})")
            return True
        appended, more = [], False
        for topic in response["responses"]:
            for entry in topic["partitions"]:
                key = (topic["topic"], entry["partition_index"])
                if self.partitions.get(key) != asked.get(key):
                    continue  # removed or moved to another epoch while the fetch was out
                if key in syncing and _not_durable(store.partition(*key)):
                    continue  # its sync failed: synced again before it fetches anything more
                try:
                    got = self._take(key, entry)
                    if got:
                        appended.append(key)
                        more = more or got > 1
                except LogshipError as exc:
                    self._complain(f"{key[0]}-{key[1]}: replica fetch from broker {self.leader}: {exc}")
                    backoff = True
                if entry["error_code"] not in (0, OffsetOutOfRangeError.code):
                    backoff = True
        if appended and more and not backoff:
            self._start_sync(appended)  # catching up: the next fetch goes out while this syncs
        elif appended and await self._make_durable(appended):
            backoff = True
        for topic in response["responses"]:
            for entry in topic["partitions"]:
                key = (topic["topic"], entry["partition_index"])
                if key in self.partitions and entry["high_watermark"] >= 0:
                    partition = self.manager.store.partition(*key)
                    partition.set_high_watermark(min(entry["high_watermark"], partition.recovery_point))
                    if partition.log_start_offset < entry["log_start_offset"]:  # DeleteRecords, retention
                        partition.delete_before(min(entry["log_start_offset"], partition.high_watermark))
        if not backoff:
            self._complaint = None
        return backoff

    def _take(self, key: tuple[str, int], entry: dict) -> int:
        """Apply one partition's answer: 0 when no records were appended, 1 when some were,
        2 when some were and the leader holds more (catching up, see the module docstring)."""
        partition = self.manager.store.partition(*key)
        code = entry["error_code"]
        diverging = entry.get("diverging_epoch") or {}
        if code == OffsetOutOfRangeError.code:
            leader_start = entry["log_start_offset"]
            if leader_start >= 0 and partition.log_end_offset < leader_start:
                log.info("%s-%d: behind the leader's log start %d; restarting the log there", *key, leader_start)
                partition.truncate_fully_and_start_at(leader_start)
                return 0
            if partition.last_epoch < 0 and 0 <= entry["high_watermark"] < partition.log_end_offset:
                # beyond the leader's log with no epoch to compare (an emptied log): what is
                # below the leader's high watermark is committed everywhere, nothing above it is
                log.info("%s-%d: beyond the leader's log; restarting at its high watermark %d", *key,
                         entry["high_watermark"])
                partition.truncate_to(entry["high_watermark"])
                return 0
            raise OffsetOutOfRangeError(f"fetch offset {partition.log_end_offset} is outside the leader's log")
        if code:
            self._complain(f"{key[0]}-{key[1]}: leader broker {self.leader} answered error {code}")
            return 0
        if diverging.get("epoch", -1) >= 0 or diverging.get("end_offset", -1) >= 0:
            self._truncate(key, partition, diverging["epoch"], diverging["end_offset"])
            return 0
        data = entry.get("records")
        if not data:
            return 0
        whole = _whole_batches(data)
        if not whole:
            return 0
        partition.append_replica_batch(whole)
        cut = len(whole) < len(data) or len(data) >= PARTITION_MAX_BYTES // 2
        return 2 if cut or partition.log_end_offset < entry["high_watermark"] else 1

    def _truncate(self, key: tuple[str, int], partition, epoch: int, end_offset: int) -> None:
        local_epoch, local_end = partition.epoch_end_offset(epoch) if epoch >= 0 else (-1, -1)
        if local_epoch >= 0:
            target = min(end_offset, local_end)
            log.info("%s-%d: diverged from leader broker %d at epoch %d; truncating to %d", *key, self.leader,
                     epoch, target)
            partition.truncate_to(target)
        else:
            # every local batch is of an epoch above E, so none matches the leader's below O
            target = min(max(end_offset, 0), partition.log_start_offset)
            log.info("%s-%d: no epoch in common with leader broker %d; truncating to %d", *key, self.leader, target)
            partition.truncate_to(target)

    async def _make_durable(self, keys: list[tuple[str, int]]) -> bool:
        """fdatasync these partitions; True when one failed (see `_synced`)."""
        if not keys:
            return False
        partitions = {key: self.manager.store.partition(*key) for key in keys}
        failed = await asyncio.get_running_loop().run_in_executor(None, _sync_all, partitions)
        return self._synced(partitions, failed)

    def _start_sync(self, keys: list[tuple[str, int]]) -> None:
        """fdatasync these partitions in a thread, settled by `_settle` (catching up)."""
        self._sync_partitions = {key: self.manager.store.partition(*key) for key in keys}
        self._sync = asyncio.get_running_loop().run_in_executor(None, _sync_all, self._sync_partitions)

    async def _settle(self) -> bool:
        """Wait for the sync `_start_sync` started; True when one failed (see `_synced`)."""
        job, partitions = self._sync, self._sync_partitions
        try:
            failed = await job
        finally:
            if job.done():
                self._sync, self._sync_partitions = None, {}
        return self._synced(partitions, failed)

    def _synced(self, partitions: dict, failed: dict) -> bool:
        """After a sync: one whose fdatasync failed is offline (groupcommit.py: never retried):
        it leaves the fetcher, logged once; True when any failed."""
        for key, exc in failed.items():
            if partitions[key].offline:
                if self.partitions.pop(key, None) is not None:
                    log.error("%s-%d: offline, no longer replicated from leader broker %d: %s", *key, self.leader, exc)
            else:
                self._complain(f"{key[0]}-{key[1]}: cannot sync the replicated records: {exc}")
        return bool(failed)


def _sync_all(partitions: dict) -> dict:
    """fdatasync each partition (in a thread); the KafkaStorageError of each that failed."""
    failed = {}
    for key, partition in partitions.items():
        try:
            partition.flush()
        except KafkaStorageError as exc:
            failed[key] = exc
    return failed


def _not_durable(partition) -> bool:
    """Holds records that are not durable yet (a sync that failed), or is offline."""
    return partition.offline or partition.recovery_point < partition.log_end_offset


def _whole_batches(data) -> memoryview:
    """The whole record batches at the front of `data` (a fetch may cut the last one short)."""
    view = memoryview(data)
    position = 0
    while position + 12 <= len(view):
        size = 12 + int.from_bytes(view[position + 8:position + 12], "big")
        if position + size > len(view):
            break
        position += size
    return view[:position]

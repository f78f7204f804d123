"""The consumer: explicitly assigned partitions of one topic, read from a start position.

    with Consumer(Cluster(), "logs", start="-100", stop_at_end=True) as consumer:
        for record in consumer:                  # ConsumedRecord(topic, partition, offset, ...)
            ...

Start and end positions use the offset grammar (offsets.py), resolved once, at
construction, with ListOffsets on each partition's leader; either may also be a dict
{partition: spec} (a group consumer starts each partition at its committed offset). `end` is exclusive (the first
offset *not* returned; for a time, the first record at or after it). `stop_at_end=True`
notes each partition's end offset at construction and stops there, so it finishes even while
producers keep writing (kcat's -e does not). Without either, the consumer follows the topic.

Fetching is single-threaded and pipelined: one long-polling Fetch in flight per leader
(max_wait_ms, min_bytes); when its response arrives the next fetch offsets are read from
the batch headers and the next Fetch is sent *before* the records are decoded, so the
broker works while this thread decodes. Records come back in offset order per partition
(partitions interleave). `poll(timeout)` returns a list (empty on timeout); iteration
yields records until the consumer is finished (forever when following).

Errors: a missing topic or partition raises UnknownTopicError at construction (topics are
never auto-created by consuming). NOT_LEADER / UNKNOWN_TOPIC / LEADER_NOT_AVAILABLE and
lost connections lead to a metadata refresh and a retry with backoff; a broker that stays
unreachable for retry_timeout_ms raises BrokerUnavailableError. OFFSET_OUT_OF_RANGE follows
`offset_reset`: "error" (default; OffsetOutOfRangeError naming the range), "earliest",
"latest" or "clamp" (the nearest end of the log: what a command wants for `-o N` on every
partition of a topic whose partitions hold different ranges). A batch that cannot be read
(damaged on disk, or written before the broker checked batches) ends the consumer there:
poll returns the records before it, and the next poll raises DamagedBatchError (a
CorruptRecordError) naming the batch and where the next one starts; the partition's
position stays at the damaged batch.
"""

from __future__ import annotations

import select
import time

from ..errors import BrokerUnavailableError, DamagedBatchError, MessageTooLargeError, OffsetOutOfRangeError, ProtocolError, \
    LeaderNotAvailableError, UnknownTopicError, error_for_code
from ..protocol import ApiKey
from .admin import EARLIEST, LATEST, list_offsets, resolve_offsets
from .cluster import METADATA_CODES, RETRIABLE_CODES, Cluster
from .fetched import ConsumedRecord, PartitionRecords, scan
from .offsets import OffsetSpec, parse_offset
from .undecoded import Undecoded

__all__ = ["Consumer", "ConsumedRecord", "PartitionRecords", "Undecoded"]

_ISOLATION = {"read_uncommitted": 0, "read_committed": 1, 0: 0, 1: 1}
_RESETS = ("error", "earliest", "latest", "clamp")
_BACKOFF = 0.1


class _Partition:
    __slots__ = ("partition", "fetch_offset", "position", "stop", "leader", "max_bytes", "retry_at")

    def __init__(self, partition: int, offset: int, stop: int | None, leader: int | None, max_bytes: int):
        self.partition = partition
        self.fetch_offset = offset  # next offset to fetch
        self.position = offset  # next offset to return
        self.stop = stop
        self.leader = leader
        self.max_bytes = max_bytes
        self.retry_at = 0.0

    @property
    def fetching(self) -> bool:
        return self.stop is None or self.fetch_offset < self.stop


class Consumer:
    """Reads assigned partitions of one topic; see the module docstring."""

    def __init__(self, cluster: Cluster | str | None, topic: str, partitions: list[int] | None = None,
                 start: OffsetSpec | str | int | dict = "beginning", end: OffsetSpec | str | int | dict | None = None,
                 *,
                 stop_at_end: bool = False, isolation: str | int = "read_uncommitted",
                 max_wait_ms: int = 500, min_bytes: int = 1, max_bytes: int = 16 << 20,
                 partition_max_bytes: int = 1 << 20, check_crcs: bool = True, offset_reset: str = "error",
                 retry_timeout_ms: int = 60_000):
        if isolation not in _ISOLATION:
            raise ValueError(f"invalid isolation {isolation!r}; use read_uncommitted or read_committed")
        if offset_reset not in _RESETS:
            raise ValueError(f"invalid offset_reset {offset_reset!r}; use one of {', '.join(_RESETS)}")
        self.cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        self._own_cluster = not isinstance(cluster, Cluster)
        self.topic = topic
        self.isolation_level = _ISOLATION[isolation]
        self.max_wait_ms, self.min_bytes, self.max_bytes = max_wait_ms, min_bytes, max_bytes
        self.check_crcs = check_crcs
        self.offset_reset = offset_reset
        self.retry_timeout = retry_timeout_ms / 1000
        self._conns: dict = {}
        self._in_flight: dict[int, tuple[float, dict[int, int]]] = {}  # node -> (sent, {partition: offset})
        self._ready: list[tuple[_Partition, PartitionRecords]] = []  # decoded, not yet returned
        self._damaged: DamagedBatchError | None = None  # raised by the next poll
        self._outage: float | None = None
        meta = self.cluster.topic(topic)
        chosen = sorted(meta.partitions) if partitions is None else list(dict.fromkeys(partitions))
        missing = [p for p in chosen if p not in meta.partitions]
        if missing:
            raise UnknownTopicError(f"topic {topic!r} has no partition {missing[0]} "
                                    f"(it has {len(meta.partitions)})")
        self.start = {p: parse_offset(s) for p, s in start.items()} if isinstance(start, dict) else parse_offset(start)
        starts = {p: self.start[p] if isinstance(start, dict) else self.start for p in chosen}
        offsets = resolve_offsets(self.cluster, topic, starts, self.isolation_level)
        offsets = {p: self._check_range(p, o) if starts[p].kind == "offset" else o for p, o in offsets.items()}
        stops: dict[int, int | None] = {p: None for p in chosen}
        if stop_at_end:
            stops = {p: o for p, (o, _) in list_offsets(self.cluster, topic, {p: LATEST for p in chosen},
                                                         self.isolation_level).items()}
        ends_wanted = {p: end[p] for p in chosen if end.get(p) is not None} if isinstance(end, dict) \
            else {p: end for p in chosen} if end is not None else {}
        if ends_wanted:
            ends = resolve_offsets(self.cluster, topic, ends_wanted, self.isolation_level)
            stops = {p: stops[p] if p not in ends else ends[p] if stops[p] is None else min(stops[p], ends[p])
                     for p in chosen}
        self._partitions = {p: _Partition(p, offsets[p], stops[p], meta.partitions[p].leader, partition_max_bytes)
                            for p in chosen}

    # --- public ---------------------------------------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        return list(self._partitions)

    @property
    def finished(self) -> bool:
        """True once every partition reached its stop offset and everything was returned
        (never while a damaged batch is still to be reported)."""
        return self._damaged is None and not self._ready and all(not s.fetching for s in self._partitions.values())

    def positions(self) -> dict[int, int]:
        """partition -> the offset after the last record returned (where to resume)."""
        return {p: s.position for p, s in self._partitions.items()}

    def stop_offsets(self) -> dict[int, int | None]:
        """partition -> the exclusive offset this consumer stops at (None: it follows)."""
        return {p: s.stop for p, s in self._partitions.items()}

    def end_offsets(self) -> dict[int, int]:
        """partition -> the current log end offset (a fresh ListOffsets)."""
        found = list_offsets(self.cluster, self.topic, {p: LATEST for p in self._partitions}, self.isolation_level)
        return {p: o for p, (o, _) in found.items()}

    def waiting_fds(self) -> list[int]:
        """File descriptors of the connections with a fetch in flight: a caller reading several
        consumers select()s on these (then calls poll_chunks(0)) to wait for any of them."""
        return [self._conns[node].fileno() for node in self._in_flight if node in self._conns]

    def poll(self, timeout: float | None = None) -> list[ConsumedRecord]:
        """Records fetched so far, waiting up to `timeout` seconds (None: until there are
        some or the consumer is finished) for the first ones; [] when none came."""
        chunks = self.poll_chunks(timeout)
        if len(chunks) == 1:
            return list(chunks[0])
        return [record for chunk in chunks for record in chunk]

    def poll_chunks(self, timeout: float | None = None) -> list[PartitionRecords]:
        """Like poll(), as PartitionRecords (columns; one per partition fetched): the fast
        path, e.g. `b"\\n".join(chunk.values)` makes no per-record object. Positions move
        only once everything fetched decoded (a CorruptRecordError leaves them). At a damaged
        batch, what came before it is returned and the next call raises DamagedBatchError."""
        if self._damaged is not None:
            raise self._damaged
        self._await(timeout)
        decoded = []
        for _, chunk in self._ready:
            decoded.append(chunk.decode(partial=True))
            if decoded[-1].damaged is not None:
                break
        ready = self._ready
        self._take()
        if decoded and decoded[-1].damaged is not None:
            self._stop_at_damage(ready[:len(decoded)], ready[len(decoded):], decoded[-1].damaged)
        return [chunk for chunk in decoded if chunk.values]

    def _stop_at_damage(self, returned: list, dropped: list, damaged: DamagedBatchError) -> None:
        """Positions after a damaged batch: none past it, none past chunks not returned."""
        for state, chunk in reversed(dropped):
            state.position = chunk.start
        state, chunk = returned[-1]
        state.position = max(chunk.start, damaged.offset)
        self._damaged = damaged

    def poll_undecoded(self, timeout: float | None = None) -> list[Undecoded]:
        """Like poll_chunks(), before decoding: the caller decodes each (perhaps elsewhere),
        in order per partition. Positions move as if they were decoded; a chunk may decode
        to no records (only control batches, say)."""
        self._await(timeout)
        return self._take()

    def _await(self, timeout: float | None) -> None:
        """Fetch until something is ready, the consumer is finished, or `timeout` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready and not self.finished:
            now = time.monotonic()
            self._refresh_leaders(now)
            for node in {s.leader for s in self._partitions.values() if s.leader is not None} - set(self._in_flight):
                self._fetch(node, now)
            left = None if deadline is None else max(deadline - now, 0.0)
            self._wait(left)
            if left == 0.0:
                break

    def __iter__(self):
        """Every record until the consumer is finished (forever when following). Records
        are made one at a time, as they are asked for."""
        while True:
            chunks = self.poll_chunks()
            if not chunks and self.finished:
                return
            for chunk in chunks:
                yield from chunk

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._in_flight.clear()
        if self._own_cluster:
            self.cluster.close()

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- fetching -------------------------------------------------------------------------------

    def _fetch(self, node: int, now: float) -> None:
        """Send a Fetch to `node` for its partitions that are due, if any."""
        due = [s for s in self._partitions.values() if s.leader == node and s.fetching and s.retry_at <= now]
        if not due:
            return
        body = {"replica_id": -1, "max_wait_ms": self.max_wait_ms, "min_bytes": self.min_bytes,
                "max_bytes": self.max_bytes, "isolation_level": self.isolation_level,
                "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
                "topics": [{"topic": self.topic, "partitions": [
                    {"partition": s.partition, "current_leader_epoch": -1, "fetch_offset": s.fetch_offset,
                     "log_start_offset": -1, "partition_max_bytes": s.max_bytes} for s in due]}]}
        try:
            conn = self._conns.get(node)
            if conn is None or conn.closed:
                conn = self._conns[node] = self.cluster.open_connection(node)
            conn.send(ApiKey.FETCH, body)
        except (BrokerUnavailableError, ProtocolError) as exc:
            self._lost(node, exc)
            return
        self._in_flight[node] = (now, {s.partition: s.fetch_offset for s in due})

    def _wait(self, timeout: float | None) -> None:
        """Wait for a response (or the next retry time) and handle what arrived."""
        waiting = {self._conns[node].fileno(): node for node in self._in_flight}
        retry = [s.retry_at for s in self._partitions.values() if s.fetching and s.retry_at > time.monotonic()]
        if retry or not waiting:
            soonest = (min(retry) - time.monotonic()) if retry else _BACKOFF
            timeout = soonest if timeout is None else min(timeout, soonest)
        if not waiting:
            time.sleep(max(timeout, 0))
            return
        patience = self.max_wait_ms / 1000 + self.cluster.timeout
        if timeout is None or timeout > patience:
            timeout = patience
        readable = select.select(list(waiting), [], [], max(timeout, 0))[0]
        for fd in readable:
            self._receive(waiting[fd])
        now = time.monotonic()
        for node, (sent, _) in list(self._in_flight.items()):
            if now - sent > patience:
                self._lost(node, BrokerUnavailableError(f"broker node {node} did not answer a fetch within "
                                                        f"{patience:g} s"))

    def _receive(self, node: int) -> None:
        conn = self._conns[node]
        try:
            _, body = conn.receive()
        except (BrokerUnavailableError, ProtocolError) as exc:
            self._lost(node, exc)
            return
        _, sent = self._in_flight.pop(node)
        self._outage = None
        if body.get("error_code"):
            raise error_for_code(body["error_code"], f"fetch from {conn.address} failed "
                                                     f"(Kafka error code {body['error_code']})")
        now = time.monotonic()
        chunks = []
        for topic in body["responses"]:
            for data in topic["partitions"]:
                state = self._partitions.get(data["partition_index"])
                if topic["topic"] != self.topic or state is None or state.partition not in sent:
                    continue
                if data["error_code"]:
                    self._partition_error(state, data["error_code"], now)
                    continue
                records = data["records"]
                if not records or state.fetch_offset != sent[state.partition]:
                    continue
                next_offset, whole = scan(records, state.fetch_offset)
                if not whole:
                    if state.max_bytes >= self.max_bytes:
                        raise MessageTooLargeError(f"a batch of {self.topic}-{state.partition} at offset "
                                                   f"{state.fetch_offset} exceeds max_bytes={self.max_bytes}")
                    state.max_bytes = min(state.max_bytes * 2, self.max_bytes)
                    continue
                chunks.append((state, records[:whole], state.fetch_offset, data.get("aborted_transactions")))
                state.fetch_offset = next_offset
        self._fetch(node, now)  # the broker works on the next fetch while this thread decodes
        for state, records, offset, aborted in chunks:
            self._ready.append((state, Undecoded(
                self.topic, state.partition, records, offset, state.stop,
                state.fetch_offset if state.stop is None else min(state.fetch_offset, state.stop),
                self.check_crcs, [(a["producer_id"], a["first_offset"]) for a in aborted]
                if self.isolation_level and aborted else None)))

    def _take(self) -> list[Undecoded]:
        ready, self._ready = self._ready, []
        for state, chunk in ready:
            state.position = chunk.next_offset
        return [chunk for _, chunk in ready]

    # --- trouble --------------------------------------------------------------------------------

    def _partition_error(self, state: _Partition, code: int, now: float) -> None:
        if code == OffsetOutOfRangeError.code:
            state.fetch_offset = state.position = self._check_range(state.partition, state.fetch_offset)
        elif code in METADATA_CODES:
            self.cluster.invalidate(self.topic)
            state.leader = None
            state.retry_at = now + _BACKOFF
        elif code in RETRIABLE_CODES:
            state.retry_at = now + _BACKOFF
        else:
            raise error_for_code(code, f"fetching {self.topic}-{state.partition}: Kafka error code {code}")

    def _check_range(self, partition: int, offset: int) -> int:
        """`offset` if the log holds it (or it is the end), else what offset_reset says."""
        found = list_offsets(self.cluster, self.topic, {partition: EARLIEST}, self.isolation_level)
        first = found[partition][0]
        last = list_offsets(self.cluster, self.topic, {partition: LATEST}, self.isolation_level)[partition][0]
        if first <= offset <= last:
            return offset
        if self.offset_reset == "earliest" or (self.offset_reset == "clamp" and offset < first):
            return first
        if self.offset_reset in ("latest", "clamp"):
            return last
        raise OffsetOutOfRangeError(f"offset {offset} is out of range for {self.topic}-{partition}: "
                                    f"the log holds offsets {first} to {last}")

    def _lost(self, node: int, error: BaseException) -> None:
        conn = self._conns.pop(node, None)
        if conn is not None:
            conn.close()
        self._in_flight.pop(node, None)
        now = time.monotonic()
        if self._outage is None:
            self._outage = now
        elif now - self._outage > self.retry_timeout:
            raise BrokerUnavailableError(f"{error} (retried for {self.retry_timeout:g} s)")
        self.cluster.invalidate(self.topic)
        for state in self._partitions.values():
            if state.leader == node:
                state.leader = None
                state.retry_at = now + _BACKOFF

    def _refresh_leaders(self, now: float) -> None:
        orphans = [s for s in self._partitions.values() if s.leader is None and s.fetching and s.retry_at <= now]
        if not orphans:
            return
        try:
            meta = self.cluster.topic(self.topic, refresh=True, wait=False)  # this loop retries itself
        except LeaderNotAvailableError:
            for state in orphans:
                state.retry_at = now + _BACKOFF
            return
        except BrokerUnavailableError as exc:
            for state in orphans:
                state.retry_at = now + _BACKOFF
            self._lost(-1, exc)
            return
        for state in orphans:
            info = meta.partitions.get(state.partition)
            if info is None:
                raise UnknownTopicError(f"topic {self.topic!r} no longer has partition {state.partition}")
            state.leader = info.leader if info.leader >= 0 else None
            if state.leader is None:
                state.retry_at = now + _BACKOFF

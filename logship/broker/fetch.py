"""Fetch: plan byte ranges of segment files for each requested partition.

A plan lists every requested partition (clients discard a full fetch response that leaves
one out), each with its watermarks and a `FileSlice` of at most one segment, or empty
records. The response is sent with the slices spliced in by sendfile; cutting the last
batch at the byte budget is allowed, as in Kafka. Fetch sessions (KIP-227) are declined
with session_id 0, so every request is a full fetch. A partition whose request names
another leader epoch than the current one answers FENCED_LEADER_EPOCH (older) or
UNKNOWN_LEADER_EPOCH (newer) with the current leader and epoch, as Kafka does (KIP-320).
In a cluster only the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere, UNKNOWN_TOPIC_OR_PARTITION
for a partition the cluster does not have: require_leader); consumers read below
the high watermark, followers (replica fetches, Fetch v12 on peer connections) up to the log
end, and are told where their log diverged (diverging_epoch) instead of records when it did.
What a replica fetch reports as held durably (the high watermark counts on it) is its
fetch_offset, or less when a partition carries logship's tagged field DURABLE_OFFSET_TAG (an
int64; not in Kafka's schema, which ignores unknown tags): `durable_offset`.

A response carries at most the broker's fetch.max.bytes of records (`Limits.fetch_max_bytes`,
below the client's max_bytes if that is smaller; the first batch may exceed it, KIP-74) and
at most `Limits.fetch_max_files` slices holding a descriptor, each taken from the broker-wide
`files` budget; partitions beyond either get no records this time, as in Kafka a partition
beyond the byte budget does. A small slice read into memory (`FileSlice.in_memory`) holds no
descriptor: its unit of `files` is given back at once and it does not count toward
fetch_max_files. So one response never nears the 2 GiB a frame allows.

Memory: a slice is read into memory only if it fits in what is left (at most INLINE_BYTES)
of its response's share (`Limits.max_queued_response_bytes`) and of the broker-wide `memory`
budget (`Limits.max_response_memory_bytes`; the unused part given back at once, the rest by
`FetchPlan.close`); otherwise it holds a descriptor as a large one does.
So what responses hold in memory for clients that do not read them is bounded whatever
they ask for (before, 20 connections asking 4,000 x 64 KiB each held 1.2 GB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

from ..errors import ClusterAuthorizationError, FencedLeaderEpochError, LogshipError, UnknownLeaderEpochError
from ..protocol.codec import TAGGED_FIELDS_KEY
from ..storage import Partition
from ..storage.fileslice import INLINE_BYTES
from .limits import Budget
from .reply import ClientInfo, Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

DURABLE_OFFSET_TAG = 1000  # FetchPartition: what a follower holds durably, when below fetch_offset


@dataclass
class FetchPlan:
    """One planned response: its body (slices inside), the record bytes it carries, and
    whether a partition answered with an error (errors are answered at once).

    Invariant until `close`: `files` counts one unit per entry of `slices`, and `memory` counts
    `in_memory` bytes, the sum of the lengths of `inline` (the slices read into memory)."""

    body: dict
    size: int = 0
    failed: bool = False
    slices: list = field(default_factory=list)  # only the slices holding a descriptor
    files: Budget | None = None  # where the descriptors of `slices` were taken from
    inline: list = field(default_factory=list)  # the slices read into memory
    in_memory: int = 0  # their bytes
    memory: Budget | None = None  # where `in_memory` was taken from

    def close(self) -> None:
        """Release the file descriptors held by the slices of this plan and the memory of
        those read into it (their bytes are dropped: close once the response is written)."""
        for piece in self.slices:
            piece.close()
        if self.files is not None:
            self.files.give_back(len(self.slices))
        self.slices.clear()
        for piece in self.inline:
            piece.close()
        if self.memory is not None:
            self.memory.give_back(self.in_memory)
        self.inline.clear()
        self.in_memory = 0


class FetchWait:
    """A fetch request that the server may hold until `min_bytes` arrive or `max_wait_ms` passes.

    `partitions` are the (topic, partition) pairs whose appends should wake it. `replica` is
    the follower's broker id for a replica fetch (read up to the log end), else -1 (read up to
    the high watermark).
    """

    def __init__(self, broker: Broker, body: dict, replica: int = -1):
        self.broker = broker
        self.body = body
        self.replica = replica
        self.min_bytes = body.get("min_bytes", 1)
        self.max_wait_ms = body.get("max_wait_ms", 0)
        self.partitions = [(t["topic"], p["partition"]) for t in body["topics"] for p in t["partitions"]]

    def ready(self, plan: FetchPlan) -> bool:
        return plan.failed or plan.size >= self.min_bytes or self.max_wait_ms <= 0

    def plan(self, files: Budget | None = None, memory: Budget | None = None) -> FetchPlan:
        """Read what the request asks for now, within the limits; slices' descriptors are
        taken from `files`, the bytes of those read into memory from `memory` (each unbounded
        when None), and given back by `FetchPlan.close`."""
        limits = self.broker.config.limits
        remaining = min(self.body.get("max_bytes", 0x7FFFFFFF), limits.fetch_max_bytes)
        plan = FetchPlan({"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": []},
                         files=files, memory=memory)
        try:
            for topic in self.body["topics"]:
                entries = []
                for request in topic["partitions"]:
                    entry = _partition_entry(request["partition"])
                    entries.append(entry)
                    try:
                        remaining -= self._read_into(plan, entry, topic["topic"], request, remaining)
                    except LogshipError as exc:
                        entry["error_code"] = error_code(exc)
                        plan.failed = True
                        if isinstance(exc, (FencedLeaderEpochError, UnknownLeaderEpochError)):
                            entry["current_leader"] = {"leader_id": self.broker.config.node_id,
                                                       "leader_epoch": exc.leader_epoch}
                plan.body["responses"].append({"topic": topic["topic"], "partitions": entries})
        except BaseException:  # an OSError reading a segment...: what was taken goes back
            plan.close()
            raise
        return plan

    def _read_into(self, plan: FetchPlan, entry: dict, topic: str, request: dict, remaining: int) -> int:
        require_leader(self.broker, topic, request["partition"])
        partition = self.broker.store.partition(topic, request["partition"])
        check_leader_epoch(partition, request.get("current_leader_epoch", -1))
        bound = high_watermark = partition.high_watermark
        if self.replica >= 0:
            diverging = _diverging_epoch(partition, request)
            if diverging is not None:
                entry["diverging_epoch"] = diverging
                plan.failed = True  # answered at once: the follower must truncate first
                return 0
            self.broker.replicas.follower_fetched((topic, partition.index), partition, self.replica,
                                                  durable_offset(request))
            bound, high_watermark = partition.log_end_offset, partition.high_watermark
        entry.update(high_watermark=high_watermark, last_stable_offset=high_watermark,
                     log_start_offset=partition.log_start_offset)
        if remaining <= 0 and plan.size:
            return 0
        if len(plan.slices) >= self.broker.config.limits.fetch_max_files:
            return 0
        budget = min(request["partition_max_bytes"], max(remaining, 0)) or request["partition_max_bytes"]
        if plan.files is not None and not plan.files.take(1):
            return 0
        inline = self._take_memory(plan)
        piece = None
        try:
            piece = partition.read(request["fetch_offset"], budget, max_offset=bound, inline_bytes=inline)
        finally:
            kept = piece.length if piece is not None and piece.in_memory else 0
            if plan.memory is not None:
                plan.memory.give_back(inline - kept)
            if (piece is None or piece.length == 0) and plan.files is not None:
                plan.files.give_back(1)
        if piece is None or piece.length == 0:
            if piece is not None:
                piece.close()
            return 0
        entry["records"] = piece
        if piece.in_memory:  # holds no descriptor: neither a unit of `files` nor a fetch_max_files place
            if plan.files is not None:
                plan.files.give_back(1)
            plan.inline.append(piece)
            plan.in_memory += piece.length
        else:
            plan.slices.append(piece)
        plan.size += piece.length
        return piece.length

    def _take_memory(self, plan: FetchPlan) -> int:
        """How long the next slice may be to be read into memory: up to INLINE_BYTES, within
        what is left of the plan's share (max_queued_response_bytes) and of the broker's
        budget (taken from `plan.memory`; what the slice does not use is given back). A budget
        nearly used up still serves small slices from memory."""
        wanted = min(INLINE_BYTES, self.broker.config.limits.max_queued_response_bytes - plan.in_memory)
        if wanted <= 0:
            return 0
        return wanted if plan.memory is None else plan.memory.take(wanted)


def require_leader(broker: Broker, topic: str, index: int) -> None:
    """For a client's Produce, Fetch or ListOffsets in cluster mode: UnknownTopicError when the
    partition is neither in this broker's copy of the cluster metadata nor hosted here, else
    NotLeaderError unless this broker leads it. Nothing in single-broker mode (the caller's
    own lookup answers for a missing topic; Produce may create it)."""
    if broker.replicas.clustered:
        if index not in (broker.cluster_metadata.partitions(topic) or {}):
            broker.store.partition(topic, index)  # UnknownTopicError when not hosted here either
        broker.replicas.check_leader(topic, index)


def check_leader_epoch(partition: Partition, requested: int) -> None:
    """Refuse a request that names another leader epoch than the partition's (KIP-320):
    FencedLeaderEpochError when older, UnknownLeaderEpochError when newer; -1 names none.
    The error carries the partition's epoch (`leader_epoch`) for the response."""
    current = partition.leader_epoch
    if requested < 0 or requested == current:
        return
    cls = FencedLeaderEpochError if requested < current else UnknownLeaderEpochError
    exc = cls(f"{partition.topic}-{partition.index}: leader epoch {requested} requested, "
              f"the current one is {current}")
    exc.leader_epoch = current
    raise exc


def _diverging_epoch(partition: Partition, request: dict) -> dict | None:
    """For a replica fetch: where the follower's log left the leader's (KIP-101), or None.

    The follower's last fetched epoch must end, on the leader, at or after its fetch offset;
    otherwise it is told the largest epoch <= its own and where that ended here (when the
    leader holds no such epoch: epoch -1 and the leader's log start, to restart from)."""
    last = request.get("last_fetched_epoch", -1)
    if last < 0:
        return None
    epoch, end = partition.epoch_end_offset(last)
    if epoch < 0:
        return {"epoch": -1, "end_offset": partition.log_start_offset}
    if epoch < last or end < request["fetch_offset"]:
        return {"epoch": epoch, "end_offset": end}
    return None


def durable_offset(request: dict) -> int:
    """What a follower's replica fetch says it holds durably (what the high watermark may count
    on): its fetch_offset, or the offset in its DURABLE_OFFSET_TAG tagged field when smaller
    (a follower catching up reads on from its log end while its last append still syncs,
    replication/fetcher.py)."""
    tagged = (request.get(TAGGED_FIELDS_KEY) or {}).get(DURABLE_OFFSET_TAG)
    if tagged is None or len(tagged) != 8:
        return request["fetch_offset"]
    return max(0, min(int.from_bytes(tagged, "big", signed=True), request["fetch_offset"]))


def durable_offset_field(offset: int) -> dict:
    """The FetchPartition entries that tell the leader `offset` is what is durable (the
    tagged field `durable_offset` reads)."""
    return {TAGGED_FIELDS_KEY: {DURABLE_OFFSET_TAG: offset.to_bytes(8, "big", signed=True)}}


def _partition_entry(index: int) -> dict:
    return {"partition_index": index, "error_code": 0, "high_watermark": -1, "last_stable_offset": -1,
            "log_start_offset": -1, "aborted_transactions": None, "preferred_read_replica": -1,
            "records": b""}


def fetch(broker: Broker, version: int, body: dict, client: ClientInfo = ClientInfo()) -> Reply:
    """A consumer's fetch, or a follower's (replica_id >= 0: only on a connection
    authenticated as that peer broker, else CLUSTER_AUTHORIZATION_FAILED for all of it)."""
    replica = body.get("replica_id", -1)
    if replica >= 0 and (client.session is None or client.session.peer_broker != replica
                         or not broker.replicas.clustered):
        code = ClusterAuthorizationError.code
        responses = [{"topic": t["topic"], "partitions": [dict(_partition_entry(p["partition"]), error_code=code)
                                                          for p in t["partitions"]]} for t in body["topics"]]
        return Reply({"throttle_time_ms": 0, "error_code": code, "session_id": 0, "responses": responses})
    return Reply(None, fetch=FetchWait(broker, body, max(replica, -1)))

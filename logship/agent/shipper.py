"""Delivery: record batches to the broker with acks=all, in order, retried until acknowledged.

The `Shipper` is a thread that owns the connections (logship.client's Cluster for
metadata and leaders, one client Connection per leader). The agent's loop `submit()`s
closed batches; the shipper compresses each one (zstd by default, off the tailing thread:
zstandard releases the GIL, so that work runs on the second core), sends Produce requests
with acks=-1, up to `max_in_flight` per connection, and hands every batch back through
`take_done()` once the broker acknowledged it. Only then does the agent move the files'
checkpoints.

Why not client.Producer: the agent must know *which* lines each acknowledgement covers
(to checkpoint exactly those), and the producer reports delivery only as a whole, at
flush(); and building records line by line through `Producer.send()` with per-record
headers runs at about 18 MB/s here, while `linerecords.encode` builds whole chunks at
over 200 MB/s. So the agent builds its own batches and this module sends them, over the
client library's connections and metadata.

Failures. A failed connection (refused, reset, timed out) is closed and every batch that
was in flight on it goes back in the queue, in order, to be sent again after a backoff
that doubles from 100 ms to `backoff_max` (each resend counts as a retry). A batch the
broker answers with a retriable error (NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR...)
goes back alone, after the same backoff, while the batches behind it on the connection
are answered as usual: none is written twice, but a batch retried that way may land after
the ones that followed it (ordering within a partition holds except across such a retry,
as with any Kafka producer that pipelines without idempotence). Batches stay in
memory until acknowledged, which is what bounds memory: the agent stops reading files once
`queue_bytes` are waiting (`room()` is False), so while the broker is down the log files
themselves are the buffer. A resend after a lost connection may duplicate a batch the
broker had written but not acknowledged: delivery is at-least-once, duplicates bounded by
the batches in flight.

Errors that retrying cannot fix: MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE split the batch
in two and send the halves (down to a single record); a single record still too large,
or a batch refused as corrupt or invalid three times, is dropped: it is logged, counted as
rejected, and its checkpoint steps still complete, so one bad batch never blocks a file
for ever (reference/agents.md scenario 13). A topic that does not exist (auto-creation
off) is retried, with an error logged every 30 s, since creating it fixes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from ..client import Cluster
from ..client.cluster import RETRIABLE_CODES
from ..client.wakeup import Wakeup
from ..errors import BrokerUnavailableError, LogshipError, ProtocolError, UnknownTopicError, error_for_code
from ..protocol import ApiKey
from ..records import build_batch, decode_records
from .batches import OutgoingBatch

__all__ = ["Shipper"]

log = logging.getLogger("logship.agent")

_TOO_LARGE = {10, 18}  # MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE
_MAX_ATTEMPTS_NON_RETRIABLE = 3
_BACKOFF_START = 0.1
_TOPIC_ERROR_EVERY = 30.0


class Shipper(threading.Thread):
    """See the module docstring. Methods other than run() are called by the agent's thread."""

    def __init__(self, cluster: Cluster, *, compression: int, max_in_flight: int = 4,
                 queue_bytes: int = 16 << 20, request_timeout: float = 30.0, backoff_max: float = 2.0,
                 wake: threading.Event | None = None):
        super().__init__(name="logship-agent-shipper", daemon=True)
        self.cluster = cluster
        self.compression = compression
        self.max_in_flight = max_in_flight
        self.queue_bytes = queue_bytes
        self.request_timeout = request_timeout
        self.backoff_max = backoff_max
        self.agent_wake = wake or threading.Event()
        self.retries = 0
        self._lock = threading.Lock()
        self._unacked: list[OutgoingBatch] = []  # in submission order
        self._queued = 0
        self._done: deque = deque()
        self._partitions: dict[str, int] = {}
        self._wanted: set[str] = set()
        self._stopping = False
        self._abort = False
        self._conns: dict = {}
        self._inflight: dict = {}  # node -> deque of (batch, sent at)
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._down_since: float | None = None
        self._topic_errors: dict[str, float] = {}
        self._wakeup = Wakeup()

    # --- the agent's side ----------------------------------------------------------------------

    def partitions(self, topic: str) -> int | None:
        """The partition count of `topic`, or None while unknown (then it is asked for)."""
        with self._lock:
            count = self._partitions.get(topic)
            if count is None and topic not in self._wanted:
                self._wanted.add(topic)
                self._wake()
        return count

    def submit(self, batches: list[OutgoingBatch]) -> None:
        if not batches:
            return
        with self._lock:
            self._unacked += batches
            self._queued += sum(batch.size for batch in batches)
        self._wake()

    def room(self) -> bool:
        """Whether the agent may read more: fewer than `queue_bytes` await acknowledgement."""
        return self._queued < self.queue_bytes

    @property
    def queued_bytes(self) -> int:
        return self._queued

    @property
    def pending(self) -> int:
        """Batches not acknowledged yet."""
        return len(self._unacked)

    @property
    def down_since(self) -> float | None:
        return self._down_since

    def take_done(self) -> list:
        """(batch, error) pairs finished since the last call: error None if acknowledged,
        else the reason it was dropped."""
        done = []
        while self._done:
            done.append(self._done.popleft())
        return done

    def close(self, timeout: float) -> bool:
        """Deliver what is queued for up to `timeout` seconds, then stop. True if everything
        was acknowledged."""
        with self._lock:
            self._stopping = True
        self._wake()
        self.join(timeout)
        if self.is_alive():
            self._abort = True
            self._wake()
            self.join(max(self.request_timeout, 5.0))
        for conn in self._conns.values():
            conn.close()
        self._wakeup.close()
        return not self._unacked

    def _wake(self) -> None:
        self._wakeup.wake()

    # --- the shipper's thread ------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._abort or (self._stopping and not self._unacked):
                        return
                    wanted = list(self._wanted)
                now = time.monotonic()
                if now >= self._backoff_until:
                    if wanted:
                        self._refresh(wanted)
                    if time.monotonic() >= self._backoff_until:
                        self._send_ready()
                self._poll()
        except Exception:  # a bug: say so loudly rather than stall silently
            log.exception("the shipper thread failed; stopping the agent")
            self._abort = True
            self.agent_wake.set()

    def _refresh(self, topics: list[str]) -> None:
        for topic in topics:
            try:
                meta = self.cluster.topic(topic, allow_create=True, refresh=True)
            except UnknownTopicError as exc:
                now = time.monotonic()
                if now - self._topic_errors.get(topic, -_TOPIC_ERROR_EVERY) >= _TOPIC_ERROR_EVERY:
                    self._topic_errors[topic] = now
                    log.error("%s; lines for it wait until it is created", exc)
                self._failed(None, exc, quiet=True)
                return
            except LogshipError as exc:
                self._failed(None, exc)
                return
            with self._lock:
                self._partitions[topic] = len(meta.partitions)
                self._wanted.discard(topic)
            self.agent_wake.set()

    def _send_ready(self) -> None:
        with self._lock:
            queue = [batch for batch in self._unacked if not batch.sent]
        blocked: set = set()
        for batch in queue:
            key = (batch.topic, batch.partition)
            if key in blocked:
                continue
            leader = self.cluster.leader(batch.topic, batch.partition)
            if leader is None:
                try:
                    self.cluster.topic(batch.topic, allow_create=True, refresh=True)
                except LogshipError as exc:
                    self._failed(None, exc)
                    return
                leader = self.cluster.leader(batch.topic, batch.partition)
                if leader is None:
                    blocked.add(key)
                    continue
            inflight = self._inflight.setdefault(leader, deque())
            if len(inflight) >= self.max_in_flight:
                blocked.add(key)
                continue
            conn = self._conns.get(leader)
            try:
                if conn is None or conn.closed:
                    conn = self._conns[leader] = self.cluster.open_connection(leader, timeout=self.request_timeout)
                data = batch.build(self.compression)
                conn.send(ApiKey.PRODUCE, {
                    "transactional_id": None, "acks": -1, "timeout_ms": int(self.request_timeout * 1000),
                    "topic_data": [{"name": batch.topic, "partition_data": [{"index": batch.partition,
                                                                             "records": data}]}]})
            except (BrokerUnavailableError, ProtocolError) as exc:
                self._failed(leader, exc)
                return
            batch.sent = True
            batch.node = leader
            batch.attempts += 1
            if batch.attempts > 1:
                self.retries += 1
            inflight.append((batch, time.monotonic()))

    def _poll(self) -> None:
        now = time.monotonic()
        timeout = 0.5
        if now < self._backoff_until:
            timeout = min(timeout, self._backoff_until - now)
        waiting = {conn.fileno(): node for node, conn in self._conns.items()
                   if self._inflight.get(node) and not conn.closed}
        for node in self._wakeup.wait(waiting, timeout):
            self._receive(node)
        now = time.monotonic()
        for node, inflight in list(self._inflight.items()):
            if inflight and now - inflight[0][1] > self.request_timeout:
                self._failed(node, BrokerUnavailableError(
                    f"broker node {node} did not acknowledge a batch within {self.request_timeout:g} s"))

    def _receive(self, node: int) -> None:
        conn = self._conns.get(node)
        inflight = self._inflight.get(node)
        if conn is None or not inflight:
            return
        try:
            _, body = conn.receive()
        except (BrokerUnavailableError, ProtocolError) as exc:
            self._failed(node, exc)
            return
        batch, _ = inflight.popleft()
        code = None
        for topic in body.get("responses", ()):
            for part in topic["partition_responses"]:
                if topic["name"] == batch.topic and part["index"] == batch.partition:
                    code = part["error_code"]
        if code == 0:
            self._finished(batch, None)
            return
        if code is None:
            error: LogshipError = ProtocolError(f"broker {conn.address} did not answer for "
                                                f"{batch.topic}-{batch.partition}")
        else:
            error = error_for_code(code, f"broker {conn.address} refused {batch.count} records for "
                                         f"{batch.topic}-{batch.partition} (Kafka error code {code})")
        # The connection is fine: the batches behind this one on it are answered as usual
        # (closing it would send again those the broker wrote). This one goes again later.
        batch.sent = False
        if code in _TOO_LARGE:
            self._split(batch, error)
        elif code in RETRIABLE_CODES or batch.attempts < _MAX_ATTEMPTS_NON_RETRIABLE:
            self._failed(None, error)
        else:
            self._finished(batch, error)

    def _split(self, batch: OutgoingBatch, error: LogshipError) -> None:
        """Replace a batch the broker found too large by its two halves (same order)."""
        if batch.count < 2:
            self._finished(batch, error)
            return
        records = list(decode_records(batch.data))
        half = len(records) // 2
        halves = []
        for part in (records[:half], records[half:]):
            piece = OutgoingBatch(batch.topic, batch.partition)
            piece.data = build_batch(part, compression=self.compression)
            piece.count = len(part)
            piece.size = len(piece.data)
            piece.value_bytes = sum(len(r.value or b"") for r in part)
            halves.append(piece)
        halves[1].steps = batch.steps
        log.warning("broker refused a batch of %d records for %s-%d as too large; sending it in two halves",
                    batch.count, batch.topic, batch.partition)
        with self._lock:
            index = self._unacked.index(batch)
            self._unacked[index:index + 1] = halves
            self._queued += sum(h.size for h in halves) - batch.size

    def _finished(self, batch: OutgoingBatch, error: LogshipError | None) -> None:
        with self._lock:
            self._unacked.remove(batch)
            self._queued -= batch.size
            self._done.append((batch, error))
        if error is not None:
            log.error("dropped %d records for %s-%d that the broker refused for good: %s",
                      batch.count, batch.topic, batch.partition, error)
        elif self._down_since is not None:
            log.info("delivering again after %.1f s; %d batches still to send",
                     time.monotonic() - self._down_since, len(self._unacked))
            self._down_since = None
            self._backoff = 0.0
        else:
            self._backoff = 0.0
        self.agent_wake.set()

    def _failed(self, node, error: BaseException, quiet: bool = False) -> None:
        """A connection (or a metadata request) failed: resend its batches after a backoff."""
        if node is not None:
            conn = self._conns.pop(node, None)
            if conn is not None:
                conn.close()
            for batch, _ in self._inflight.pop(node, ()):
                batch.sent = False
        self.cluster.invalidate()
        now = time.monotonic()
        self._backoff = min(max(self._backoff * 2, _BACKOFF_START), self.backoff_max)
        self._backoff_until = now + self._backoff
        if self._down_since is None and not quiet:
            self._down_since = now
            log.warning("cannot deliver to %s: %s; holding %d batches and retrying "
                        "(reading pauses once %d bytes wait)", self.cluster.brokers, error,
                        len(self._unacked), self.queue_bytes)

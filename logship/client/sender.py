"""The producer's sender thread: builds batches, pipelines Produce requests, retries.

The thread owns one private connection per leader node. Each turn of its loop it
(1) runs the callbacks completed batches left, (2) fails batches past their delivery
timeout, (3) picks, per partition, the next batch that may go (full, lingered, or
flushing; within the in-flight limits; leader known), (4) refreshes the metadata of
topics that need it, (5) builds and compresses the picked batches outside the lock and
sends one Produce request per node holding at most one batch per partition (Kafka's rule
for Produce v3+), and (6) waits with select() for responses, a wake-up from a caller, or
the next timer.

Ordering and retries. Batches of a partition are numbered (`seq`) in the order their
records were given and sent in that order; a connection returns responses in request
order. Retriable failures (a lost connection, a timeout, NOT_LEADER_OR_FOLLOWER, a
storage error...) are retried, up to `retries` times within `delivery_timeout_ms`, after a
backoff per partition that doubles from `retry_backoff_ms` to `retry_backoff_max_ms`:
- a failed batch is *held* until no batch of its partition is in flight, then all held
  batches go back to the front of the queue in seq order, and the partition sends one
  batch at a time until one succeeds;
- with `strict_order`, a batch is never retried once a later batch of its partition has
  been written (that retry would land after it): it fails instead, and flush() reports it.
  So every record is either in the log in the order given, or counted as failed. Without
  it such a batch is retried anyway and lands after the later one.
A batch refused with a non-retriable code is sent up to `refused_attempts` times in all,
except one refused as too large (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE), which fails at
once or, with `split_too_large` and several records, is replaced by its two halves,
retried the same way (and split again if need be). Metadata lookups never wait inside
the thread (one topic being created must not stall every other topic's batches): a topic
that does not exist is asked for again on later turns for the cluster's `topic_wait`, then
fails its batches, or with
`wait_for_topics` holds them and is asked for again every `retry_backoff_max_ms`; a
partition it lacks likewise. Without idempotence a retry after a lost connection may
duplicate a batch that had in fact been written (at-least-once).

Idempotence (the producer's `idempotent`). Before sending anything the thread gets a
producer id and epoch (InitProducerId). Each partition stamps its batches with an id and
epoch of its own (`stamp_id`) and its Kafka base sequence, `(seq - seq_base) mod 2^31`,
when they are first sent, and a retry resends those very bytes. The broker answers a batch
it already holds with its first offsets, so retries never duplicate, and may go back past
later acknowledged batches (strict_order then fails nothing). OUT_OF_ORDER_SEQUENCE_NUMBER
for a batch with an earlier one of its partition waiting to be retried is retried after it.
With none (an earlier batch failed for good, so the broker will never see the sequence it
waits for) and after UNKNOWN_PRODUCER_ID, the producer starts that partition over: nothing
more is sent until every request in flight is answered, then the epoch is bumped by one on
the client, as the Java producer does for an idempotent producer (a broker takes a newer
epoch that starts at sequence 0), and the partition's sequences restart at 0 from its oldest
unacknowledged batch (`seq_base`), under the new epoch. INVALID_PRODUCER_EPOCH (another
holds a newer epoch of this id) and an epoch at its maximum (32767) take a new id from
InitProducerId instead. Every other partition keeps its id, epoch and sequences while it
has a batch pending that was sent under them (it may be in the log already: restamped it
would be stored twice), and moves to the current ones at sequence 0 when it has none. With
strict_order a batch older than an acknowledged one fails instead of starting over (it would
land after it). A broker that refuses InitProducerId for good (authorization) is produced to
without idempotence, after one warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from .. import records
from ..errors import BrokerUnavailableError, InvalidRecordError, LogshipError, ProtocolError, RequestTimedOutError, \
    UnknownTopicError, UnsupportedVersionError, error_for_code
from ..protocol import ApiKey
from .cluster import METADATA_CODES, RETRIABLE_CODES

__all__ = ["Sender"]

log = logging.getLogger(__name__)

TOO_LARGE_CODES = frozenset({10, 18})  # MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE
OUT_OF_ORDER, INVALID_EPOCH, UNKNOWN_PRODUCER = 45, 47, 59  # ..._SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, ..._ID
MAX_EPOCH = 2**15 - 1
SEQUENCES = 2**31


class _HookFailed(Exception):
    """The producer's on_stamped hook raised (its exception is the cause): stop sending."""


class _Request:
    __slots__ = ("batches", "sent")

    def __init__(self, batches: list, sent: float):
        self.batches = batches
        self.sent = sent


class Sender(threading.Thread):
    """The background half of a Producer (which it reads and updates under its lock)."""

    def __init__(self, producer):
        super().__init__(name="logship-producer", daemon=True)
        self.p = producer
        self.conns: dict = {}  # node id -> Connection
        self.requests: dict[int, deque[_Request]] = {}
        self.stale: dict[str, float] = {}  # topics whose metadata must be refreshed -> not before
        self.unborn: dict[str, float] = {}  # topics asked for but not there yet -> since when
        self.id_not_before = 0.0  # idempotence: the next InitProducerId after a failed one
        self.id_backoff = 0.0
        self.fresh_id = False  # idempotence: the next reset takes a new id (fenced), not a bumped epoch
        self.rewrite: set[tuple[str, int]] = set()  # idempotence: partitions whose sequences restart

    def run(self) -> None:
        try:
            self._loop()
        except _HookFailed as exc:
            log.error("the producer stops: recording batches before sending them failed: %s", exc.__cause__)
            self.p._sender_died(exc.__cause__, [b for requests in self.requests.values() for r in requests
                                                for b in r.batches])
        except BaseException as exc:  # a bug: never leave flush() waiting for a dead thread
            log.exception("the producer's sender thread failed; what it held fails with the error")
            self.p._sender_died(exc, [b for requests in self.requests.values() for r in requests for b in r.batches])
        finally:
            self.p._report()
            for conn in self.conns.values():
                conn.close()

    def _loop(self) -> None:
        p = self.p
        while True:
            p._report()
            with p._cond:
                now = time.monotonic()
                if p._closing:
                    self._abandon()
                    return
                self._expire(now)
                needs_id = p.idempotent and p._new_id_needed
                plan = {} if needs_id else self._collect(now)
                timeout = 0.0 if plan else self._next_wakeup(now)
                p._sender_idle = not plan
            if needs_id and not any(self.requests.values()):
                if now >= self.id_not_before:
                    self._new_producer_id()
                    continue
                timeout = min(timeout, self.id_not_before - now)
            if self.stale:
                self._refresh(time.monotonic())
            for node, batches in plan.items():
                self._send(node, batches)
            p._report()
            self._poll(timeout)

    # --- choosing what to send (under the lock) --------------------------------------------------

    def _collect(self, now: float) -> dict[int, list]:
        p = self.p
        plan: dict[int, list] = {}
        linger_over = p._flushing or p._closing
        for topic in p._wanted:
            self.stale.setdefault(topic, 0.0)
        p._wanted.clear()
        for queue in p._queues.values():
            if queue.retrying and queue.in_flight:
                continue
            if queue.in_flight >= (1 if queue.retrying else p.max_in_flight) or now < queue.not_before:
                continue
            if queue.ready and queue.ready[0].claimed and queue.ready[0].data is None:
                continue  # a builder thread is on it and wakes us when done
            if not queue.ready:
                batch = queue.open
                if batch is None or not batch.count or not (
                        linger_over or now - batch.created >= p.linger or batch.size >= p._batch_limit):
                    continue
            leader = p.cluster.leader(queue.topic, queue.partition)
            if leader is None:
                self.stale.setdefault(queue.topic, 0.0)
                continue
            if leader not in plan and len(self.requests.get(leader, ())) >= p.max_in_flight:
                continue
            if not queue.ready:
                p._close_batch(queue)
            batch = queue.ready.popleft()
            if p.idempotent and batch.stamp is None and queue.stamp_id != (p.producer_id, p.producer_epoch) \
                    and not queue.in_flight and not any(b.stamp is not None for b in queue.batches()):
                # Nothing of this partition is left under its old id or epoch: its next
                # batches start at sequence 0 under the current one.
                queue.stamp_id = (p.producer_id, p.producer_epoch)
                queue.seq_base = min(batch.seq, queue.first_unsent_seq())
            batch.claimed = True
            batch.attempts += 1
            if batch.attempts > 1:
                p.resent += 1
            queue.in_flight += 1
            plan.setdefault(leader, []).append(batch)
        return plan

    def _expire(self, now: float) -> None:
        p = self.p
        for queue in p._queues.values():
            while queue.ready and queue.ready[0].deadline <= now:
                self._fail(queue.ready.popleft())
            if queue.open is not None and queue.open.count and queue.open.deadline <= now:
                self._fail(queue.open)
                queue.open = None

    def _fail(self, batch, error: BaseException | None = None) -> None:
        if error is None:
            error = batch.last_error or RequestTimedOutError(
                f"records for {batch.topic}-{batch.partition} not delivered within "
                f"{self.p.delivery_timeout * 1000:g} ms")
        self.p._complete(batch, error)

    def _abandon(self) -> None:
        """The producer is closing with records still pending (its flush timed out)."""
        error = RequestTimedOutError("the producer was closed before these records were delivered")
        for queue in self.p._queues.values():
            for batch in list(queue.batches()):
                self._fail(batch, error)
            queue.held, queue.open = [], None
            queue.ready.clear()
        for requests in self.requests.values():
            for request in requests:
                for batch in request.batches:
                    self._fail(batch, error)
        self.requests.clear()

    def _next_wakeup(self, now: float) -> float:
        p = self.p
        when = now + 1.0
        for queue in p._queues.values():
            # Timers only: a batch held back by the in-flight limits waits for a response
            # (select watches the sockets), never by spinning.
            if queue.open is not None and queue.open.count:
                lingered = queue.open.created + p.linger
                when = min(when, lingered if lingered > now else when, queue.open.deadline)
            if queue.ready:
                when = min(when, queue.not_before if queue.not_before > now else when, queue.ready[0].deadline)
        for requests in self.requests.values():
            if requests:
                when = min(when, requests[0].sent + p.request_timeout)
        if self.stale:
            when = min(when, min(self.stale.values()))
        return max(when - now, 0.0)

    # --- I/O (without the lock) ------------------------------------------------------------------

    def _send(self, node: int, batches: list) -> None:
        p = self.p
        topics: dict[str, list] = {}
        built, stamped = [], []
        for batch in batches:
            try:
                data = batch.build(p.compression)
            except Exception as exc:  # it would fail again: fail it for good
                if not isinstance(exc, LogshipError):
                    exc = InvalidRecordError(f"cannot build a batch for {batch.topic}-{batch.partition}: {exc!r}")
                with p._cond:
                    self._outcome(batch, exc, retriable=False)
                continue
            if p.idempotent:
                old = batch.stamp
                data = self._stamped(batch, data)
                if batch.stamp != old and p.on_stamped is not None:
                    # a split's first piece stands for the batch it replaces, whatever the stamp
                    stamped.append((batch, old if old is not None else batch.replaces))
                    # the later pieces of a split batch are stamped (journaled) with the first
                    # one: a caller that records batches never holds a part of one alone
                    piece = batch.next_piece
                    while piece is not None and piece.stamp is None and piece.data is not None:
                        self._stamped(piece, piece.data)
                        stamped.append((piece, None))
                        piece = piece.next_piece
            topics.setdefault(batch.topic, []).append({"index": batch.partition, "records": data})
            built.append(batch)
        if not built:
            return
        if stamped:
            try:
                p.on_stamped(stamped)
            except Exception as exc:
                raise _HookFailed() from exc
        body = {"transactional_id": None, "acks": p.acks, "timeout_ms": int(p.request_timeout * 1000),
                "topic_data": [{"name": name, "partition_data": parts} for name, parts in topics.items()]}
        try:
            conn = self.conns.get(node)
            if conn is None or conn.closed:
                conn = self.conns[node] = p.cluster.open_connection(node, timeout=p.request_timeout)
            conn.send(ApiKey.PRODUCE, body)
        except (BrokerUnavailableError, ProtocolError) as exc:
            self._lost(node, exc, built)
            return
        if p.acks == 0:
            with p._cond:
                for batch in built:
                    self._outcome(batch, None)
        else:
            self.requests.setdefault(node, deque()).append(_Request(built, time.monotonic()))

    def _stamped(self, batch, data: bytes) -> bytes:
        """The batch's bytes carrying the producer id, epoch and its base sequence."""
        queue = self.p._queues[(batch.topic, batch.partition)]
        stamp = (*queue.stamp_id, (batch.seq - queue.seq_base) % SEQUENCES)
        if batch.stamp != stamp:
            batch.data = data = bytes(records.with_producer(data, *stamp))
            batch.stamp = stamp
        return data

    def _new_producer_id(self) -> None:
        """With nothing in flight: the epoch bumped by one (as the Java producer bumps an
        idempotent producer's epoch itself), or a new id and epoch from InitProducerId (none
        yet, fenced, or the epoch at its maximum); the partitions in `rewrite` restart their
        sequences at 0 from their oldest batch not yet acknowledged (the others move over in
        _collect once nothing of theirs is pending under the old stamp)."""
        p = self.p
        if p.producer_id >= 0 and not self.fresh_id and p.producer_epoch < MAX_EPOCH:
            log.info("producer %d starts its sequences over under epoch %d", p.producer_id, p.producer_epoch + 1)
            with p._cond:
                self._restart_sequences(p.producer_id, p.producer_epoch + 1)
            return
        try:
            answer = p.cluster.request(ApiKey.INIT_PRODUCER_ID, {"transactional_id": None,
                                                                 "transaction_timeout_ms": 60_000})
            if answer["error_code"]:
                raise error_for_code(answer["error_code"], f"the broker gave no producer id (Kafka error code "
                                                           f"{answer['error_code']})")
        except UnsupportedVersionError as exc:
            log.warning("the broker does not hand out producer ids (%s): producing without idempotence, so a "
                        "retry may store a batch twice", exc)
            with p._cond:
                p.idempotent, p._new_id_needed = False, False
            return
        except LogshipError as exc:
            if not isinstance(exc, BrokerUnavailableError) and exc.code not in RETRIABLE_CODES:
                log.warning("the broker refuses a producer id (%s): producing without idempotence, so a retry "
                            "may store a batch twice", exc)
                with p._cond:
                    p.idempotent, p._new_id_needed = False, False
                return
            self.id_backoff = min(max(self.id_backoff * 2, p.retry_backoff), p.retry_backoff_max)
            self.id_not_before = time.monotonic() + self.id_backoff
            with p._cond:
                p._retrying(exc)
            return
        self.id_backoff, self.fresh_id = 0.0, False
        with p._cond:
            self._restart_sequences(answer["producer_id"], answer["producer_epoch"])

    def _restart_sequences(self, producer_id: int, epoch: int) -> None:
        p = self.p
        p.producer_id, p.producer_epoch = producer_id, epoch
        for key in self.rewrite:
            queue = p._queues[key]
            queue.stamp_id, queue.seq_base = (producer_id, epoch), queue.first_unsent_seq()
        self.rewrite.clear()
        p._new_id_needed = False

    def _poll(self, timeout: float) -> None:
        """Wait up to `timeout` for a response or a wake-up, and handle what arrived."""
        waiting = {conn.fileno(): node for node, conn in self.conns.items()
                   if self.requests.get(node) and not conn.closed}
        ready = self.p.wakeup.wait(waiting, timeout)
        self.p._sender_idle = False
        for node in ready:
            self._receive(node)
        now = time.monotonic()
        for node, requests in list(self.requests.items()):
            if requests and now - requests[0].sent > self.p.request_timeout:
                self._lost(node, BrokerUnavailableError(
                    f"broker node {node} did not answer a produce request within "
                    f"{self.p.request_timeout:g} s"))

    def _receive(self, node: int) -> None:
        conn = self.conns[node]
        try:
            _, body = conn.receive()
        except (BrokerUnavailableError, ProtocolError) as exc:
            self._lost(node, exc)
            return
        request = self.requests[node].popleft()
        codes = {(topic["name"], part["index"]): part["error_code"]
                 for topic in body["responses"] for part in topic["partition_responses"]}
        reasons = {(topic["name"], part["index"]): part.get("error_message")  # Produce v8+
                   for topic in body["responses"] for part in topic["partition_responses"]}
        with self.p._cond:
            for batch in request.batches:
                code = codes.get((batch.topic, batch.partition))
                if code == 0:
                    self._outcome(batch, None)
                elif code is None:
                    self._outcome(batch, ProtocolError(
                        f"broker {conn.address} did not answer for {batch.topic}-{batch.partition}"),
                        batch.attempts < self.p.refused_attempts)
                else:
                    size = f", a batch of {len(batch.data):,} bytes," if code in TOO_LARGE_CODES and batch.data else ""
                    reason = reasons.get((batch.topic, batch.partition))
                    error = error_for_code(code, f"broker {conn.address} refused {batch.count} records{size} "
                                                 f"for {batch.topic}-{batch.partition} (Kafka error code {code})"
                                                 + (f": {reason}" if reason else ""))
                    if code in METADATA_CODES:
                        self._mark_stale(batch.topic)
                    if self.p.idempotent and code in (OUT_OF_ORDER, INVALID_EPOCH, UNKNOWN_PRODUCER):
                        queue = self.p._queues[(batch.topic, batch.partition)]
                        if self.p.strict_order and batch.seq < queue.acked_seq:
                            self._outcome(batch, error)  # restarted it would land after a later one
                        else:
                            if code != OUT_OF_ORDER or not any(b.seq < batch.seq for b in queue.batches()):
                                self.p._new_id_needed = True  # no earlier batch will fill the gap: start over
                                self.fresh_id = self.fresh_id or code == INVALID_EPOCH
                                self.rewrite.add((batch.topic, batch.partition))
                            self._outcome(batch, error, retriable=True)
                    elif code in TOO_LARGE_CODES:  # the same bytes would be refused again
                        split = self.p.split_too_large and batch.count > 1
                        self._outcome(batch, error, split, split)
                    else:
                        self._outcome(batch, error, code in RETRIABLE_CODES
                                      or batch.attempts < self.p.refused_attempts)

    def _lost(self, node: int, error: BaseException, unsent: list = ()) -> None:
        """The connection to `node` failed: everything on it failed retriably, in order."""
        conn = self.conns.pop(node, None)
        if conn is not None:
            conn.close()
        requests = self.requests.pop(node, deque())
        with self.p._cond:
            for batch in [b for request in requests for b in request.batches] + list(unsent):
                self._mark_stale(batch.topic)
                self._outcome(batch, error, retriable=True)

    def _mark_stale(self, topic: str) -> None:
        self.p.cluster.invalidate(topic)
        self.stale.setdefault(topic, 0.0)

    def _refresh(self, now: float) -> None:
        p = self.p
        for topic, not_before in list(self.stale.items()):
            if now < not_before:
                continue
            try:
                # never block the thread that serves every topic on one topic: a topic being
                # created is asked for again on a later turn, for up to the cluster's topic_wait
                meta = p.cluster.topic(topic, allow_create=True, refresh=True, wait=False)
            except UnknownTopicError as exc:
                since = self.unborn.setdefault(topic, now)
                backoff = min(max(p.retry_backoff, 0.05), 0.5)
                if not p.wait_for_topics and time.monotonic() - since + backoff <= p.cluster.topic_wait:
                    self.stale[topic] = time.monotonic() + backoff
                    continue
                self.unborn.pop(topic, None)
                self._missing(topic, None, exc if p.wait_for_topics else p.cluster.not_created_error(topic))
                continue
            except LogshipError as exc:
                self.stale[topic] = time.monotonic() + max(p.retry_backoff, 0.05)
                with p._cond:
                    p._retrying(exc)
                continue
            del self.stale[topic]
            self.unborn.pop(topic, None)
            with p._cond:
                p._counts.setdefault(topic, len(meta.partitions))
                lacking = {q.partition for q in p._queues.values()
                           if q.topic == topic and q.partition not in meta.partitions and q.has_work()}
            if lacking:
                self._missing(topic, lacking, UnknownTopicError(
                    f"topic {topic!r} has no partition {min(lacking)} (it has {len(meta.partitions)})"))

    def _missing(self, topic: str, partitions: set | None, error: LogshipError) -> None:
        """`topic` does not exist (or lacks `partitions`): its records wait for it
        (wait_for_topics) or fail."""
        p = self.p
        with p._cond:
            if p.wait_for_topics:
                self.stale[topic] = time.monotonic() + p.retry_backoff_max
                p._retrying(error)
                return
            self.stale.pop(topic, None)
            for queue in p._queues.values():
                if queue.topic == topic and (partitions is None or queue.partition in partitions):
                    for batch in list(queue.batches()):
                        self._fail(batch, error)
                    queue.held, queue.open = [], None
                    queue.ready.clear()

    # --- outcomes (under the lock) ---------------------------------------------------------------

    def _outcome(self, batch, error: BaseException | None, retriable: bool = False, split: bool = False) -> None:
        """`batch` was acknowledged (error None) or failed: complete it, or hold it (its
        halves, if `split`) for a retry."""
        p = self.p
        queue = p._queues[(batch.topic, batch.partition)]
        queue.in_flight -= 1
        now = time.monotonic()
        if error is None:
            queue.acked_seq = max(queue.acked_seq, batch.seq)
            queue.backoff = 0.0
            p._complete(batch, None)
        elif (retriable and batch.attempts <= p.retries and now < batch.deadline
              and (batch.seq > queue.acked_seq or not p.strict_order or p.idempotent)):
            if split:
                log.warning("broker refused a batch of %d records for %s-%d as too large; sending it in two "
                            "halves", batch.count, batch.topic, batch.partition)
                pieces = batch.split(p.compression)
            else:
                pieces = [batch]
                p._retrying(error)
            for piece in pieces:
                piece.last_error = error
            queue.held += pieces
            queue.retrying = True
        else:
            self._fail(batch, error)
        if p.strict_order and not p.idempotent:
            # Held batches older than a written one can no longer be retried in order: they
            # fail with the error that stopped them (an idempotent retry is found in the log).
            for held in [b for b in queue.held if b.seq < queue.acked_seq]:
                queue.held.remove(held)
                self._fail(held)
        if error is None:
            queue.retrying = bool(queue.held)
        if not queue.in_flight and queue.held:
            if not split:  # halves go at once: they are not the same bytes again
                queue.backoff = min(max(queue.backoff * 2, p.retry_backoff), p.retry_backoff_max)
                queue.not_before = now + queue.backoff
            queue.requeue_held()

"""Delivery: record batches to the broker with acks=all, retried until acknowledged.

The `Shipper` hands the agent's batches to a client.Producer and tells the agent which
of them are done. The agent's loop `submit()`s closed OutgoingBatches; each goes to the
producer whole, its records already encoded (`Producer.send_encoded`: linerecords.encode
builds whole chunks of lines far faster than records one by one), and the producer's
builder thread compresses it (zstd by default: off the tailing thread, and zstandard
releases the GIL, so that work runs on another core; one builder, as a second one
competed with the tailing thread and the broker for two cores and cost a third of
bench/agent.py's throughput there). Its sender thread sends it with
acks=-1, up to `max_in_flight` requests per connection, and calls back for that batch;
the batch is then handed back through `take_done()`, and only then does the agent move
the checkpoints of exactly the lines it holds.

The producer is set up for a shipper whose files are the buffer, and never gives up:
- no delivery timeout and no limit on retries: a lost connection, a retriable error
  (NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR...), an unreachable broker all mean the
  batch goes again after a backoff that doubles from 100 ms to `backoff_max`. Batches
  stay in memory until acknowledged, which is what bounds memory: the agent stops
  reading files once `queue_bytes` wait (`room()` is False), so while the broker is down
  the log files themselves are the buffer;
- idempotent (unless the config says `idempotence = false`): batches carry a producer id
  and sequences, so a resend after a lost connection is stored once and retries keep the
  order within a partition. Without it (strict_order=False) a batch that failed while later
  ones were being written goes again all the same and may land after them, a resend may
  duplicate a batch the broker had written but not acknowledged, and a restart of the agent
  re-reads the lines of batches in flight (at-least-once);
- with a `journal` (journal.py; idempotence on): each batch is journaled, durably, with its
  producer id, epoch, sequence, bytes and checkpoint steps before it is first sent (the
  producer's on_stamped hook, one fdatasync for the batches of a request), and its
  acknowledgement after (on_reported: one fdatasync per run of acknowledgements, before the
  producer picks the next batch); `resend()` starts the next run with the journaled producer
  id and sends the batches still unacknowledged again, the same bytes under the same
  sequences, before anything new: the broker answers those it holds with their offsets, so
  every line is stored once across the agent's own kill -9. A batch split as too large is
  journaled as its pieces, all in one write, in its place (the first under its key, the last
  with its steps), and each piece's acknowledgement is journaled as it comes;
- errors that retrying cannot fix: a batch refused as too large is split in halves and
  sent again (down to a single record, split_too_large); a single record still too large,
  or a batch refused as corrupt or invalid three times (refused_attempts=3), is dropped:
  it is logged, reported with its error (counted as rejected) and its checkpoint steps
  still complete, so one bad batch never blocks a file for ever (reference/agents.md
  scenario 13);
- a topic that does not exist (auto-creation off) is waited for (wait_for_topics), with
  an error logged every 30 s, since creating it fixes it.

`down_since` is when delivery started failing (None while it works): the first failure
logs a warning, the next acknowledgement logs "delivering again". close(timeout) delivers
what is queued for up to `timeout` seconds; batches still unacknowledged then are not
reported: their checkpoints stay, and the next start reads their lines again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from functools import partial

from ..client import Cluster, Producer
from ..client.sender import SEQUENCES
from ..errors import DeliveryError, UnknownTopicError
from .batches import OutgoingBatch
from .journal import Journal, Recovery, SentEntry

__all__ = ["Shipper"]

log = logging.getLogger("logship.agent")

_TOPIC_ERROR_EVERY = 30.0


class Shipper:
    """See the module docstring. The agent's thread calls every method; the callbacks
    (`_delivered`, `_retrying`) run on the producer's sender thread."""

    def __init__(self, cluster: Cluster, *, compression: int, max_in_flight: int = 4,
                 queue_bytes: int = 16 << 20, request_timeout: float = 30.0, backoff_max: float = 2.0,
                 wake: threading.Event | None = None, idempotence: bool = True, journal: Journal | None = None,
                 recovery: Recovery | None = None):
        self.cluster = cluster
        self.compression = compression
        self.max_in_flight = max_in_flight
        self.queue_bytes = queue_bytes
        self.request_timeout = request_timeout
        self.backoff_max = backoff_max
        self.idempotence = idempotence
        self.journal = journal if idempotence else None
        self.recovery = recovery
        self.journal_error: BaseException | None = None
        self._acked_keys: list[tuple] = []  # acknowledgements for the journal's next write
        self.agent_wake = wake or threading.Event()
        self.producer: Producer | None = None
        self._lock = threading.Lock()
        self._pending = 0  # batches submitted, not done
        self._queued = 0  # their bytes
        self._done: deque = deque()
        self._stopping = False
        self._down_since: float | None = None
        self._topic_errors: dict[str, float] = {}

    def start(self) -> None:
        journal, rec = self.journal, self.recovery
        pid, epoch = rec.producer if journal is not None and rec is not None and rec.producer else (-1, -1)
        self.producer = Producer(
            self.cluster, acks=-1, compression=self.compression, max_in_flight=self.max_in_flight,
            request_timeout_ms=self.request_timeout * 1000, retry_backoff_max_ms=self.backoff_max * 1000,
            delivery_timeout_ms=None, strict_order=False, refused_attempts=3, split_too_large=True,
            wait_for_topics=True, on_retry=self._retrying, build_threads=1, idempotence=self.idempotence,
            producer_id=pid, producer_epoch=epoch, on_stamped=self._journal_sent if journal is not None else None,
            on_reported=self._journal_acked if journal is not None else None,
            on_piece_acked=self._piece_acked if journal is not None else None)

    def resend(self, plan: dict) -> list[OutgoingBatch]:
        """Go on where the journal's run stopped: each partition it stamped continues its
        sequences, after its batches still unacknowledged, sent again as they were (`plan`:
        journal.restore_steps' steps of each, completed when it is acknowledged). Returns the
        batches that go again (take_done reports them); call before submitting anything."""
        rec = self.recovery
        if self.journal is None or rec is None or not self.producer.idempotent:
            return []
        again = []
        unacked: dict[tuple, list[SentEntry]] = {}
        for entry in rec.unacked:
            unacked.setdefault((entry.topic, entry.partition), []).append(entry)
        current = rec.producer
        nexts = dict(rec.next_sequences) if current else {}
        for key in sorted(set(unacked) | set(nexts)):
            entries = unacked.get(key, [])
            stamps = [(e.pid, e.epoch) for e in entries]
            # the partition's stamp: the producer's if it has batches under it (an epoch bump
            # caught half way leaves older ones, which go after them, stamped anew), else theirs
            stamp = current if current in stamps or not entries else stamps[-1]
            ours = [e for e in entries if (e.pid, e.epoch) == stamp]
            nxt = nexts.get(key) if stamp == current and key in nexts else \
                (ours[-1].seq + ours[-1].count) % SEQUENCES if ours else 0
            resend = []
            for e in ours + [e for e in entries if (e.pid, e.epoch) != stamp]:
                batch = OutgoingBatch(e.topic, e.partition)
                batch.count, batch.size, batch.steps = e.count, len(e.data or b""), plan.get(e.key, [])
                batch.journal_keys, batch.journal_steps = [e.key], e.steps
                resend.append(((e.pid, e.epoch, e.seq), e.data, e.count, partial(self._delivered, batch), batch))
            with self._lock:
                self._pending += len(resend)
                self._queued += sum(r[4].size for r in resend)
            self.producer.resume(key[0], key[1], stamp, nxt, resend)
            again += [r[4] for r in resend]
        if again:
            log.info("sending again %d batches the last run had not seen acknowledged (producer id %d)",
                     len(again), current[0] if current else -1)
        return again

    # --- the agent's side ----------------------------------------------------------------------

    def partitions(self, topic: str) -> int | None:
        """The partition count of `topic`, or None while unknown (then it is asked for)."""
        return self.producer.partitions(topic, wait=False)

    def submit(self, batches: list[OutgoingBatch]) -> None:
        with self._lock:
            self._pending += len(batches)
            self._queued += sum(batch.size for batch in batches)
        for batch in batches:
            pieces, batch.pieces = batch.pieces, []
            if self.journal is not None:
                batch.journal_steps = [step.to_json() for step in batch.steps]
            try:
                self.producer.send_encoded(batch.topic, batch.partition, pieces, batch.count,
                                           timestamp_ms=batch.timestamp_ms, on_delivery=partial(self._delivered, batch),
                                           context=batch)
            except DeliveryError:  # the producer failed (is_alive() says so): read again at the next start
                pass

    def room(self) -> bool:
        """Whether the agent may read more: fewer than `queue_bytes` await acknowledgement."""
        return self._queued < self.queue_bytes

    @property
    def queued_bytes(self) -> int:
        return self._queued

    @property
    def pending(self) -> int:
        """Batches not acknowledged yet."""
        return self._pending

    @property
    def retries(self) -> int:
        """Batches sent again."""
        return self.producer.resent if self.producer is not None else 0

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

    def is_alive(self) -> bool:
        return self.producer is not None and not self._stopping and self.producer.fatal_error is None \
            and self.journal_error is None

    def close(self, timeout: float) -> bool:
        """Deliver what is queued for up to `timeout` seconds, then stop. True if everything
        was acknowledged."""
        if self.producer is None:
            return not self._pending
        try:
            self.producer.flush(timeout)
        except DeliveryError:  # refusals were reported batch by batch; a timeout leaves some pending
            pass
        self._stopping = True  # from here on a failed batch was not refused: it stays pending
        try:
            self.producer.close(0)
        except DeliveryError:
            pass
        return not self._pending

    # --- the producer's callbacks --------------------------------------------------------------

    def _journal_sent(self, stamped: list) -> None:
        """on_stamped: journal the batches about to go under a new stamp (durable on return)."""
        journal, p = self.journal, self.producer
        if p.producer_id >= 0 and journal.producer != (p.producer_id, p.producer_epoch):
            journal.set_producer(p.producer_id, p.producer_epoch)
        groups = []  # (key replaced or None, entries), for journal.append_stamped
        for pbatch, old in stamped:
            batch: OutgoingBatch = pbatch.context
            # a batch's steps complete with its last record: a split's earlier pieces have none
            entry = SentEntry(pbatch.topic, pbatch.partition, *pbatch.stamp, pbatch.count,
                              batch.journal_steps if pbatch.ends_batch else [], pbatch.data)
            keys = batch.journal_keys
            # stamped again (new id or epoch), or the first piece of a batch split as too large
            # (`old`: the whole's stamp): it takes the place of the entry it replaces, and the
            # pieces stamped with it (the rest of the split) follow it there
            replaced = (pbatch.topic, pbatch.partition, *old) if old is not None else entry.key
            if replaced in keys:
                groups.append((replaced, [entry]))
                keys[keys.index(replaced)] = entry.key
            elif old is None and groups and groups[-1][1][-1].key in keys:
                groups[-1][1].append(entry)  # a later piece of the batch just journaled
                keys.insert(keys.index(groups[-1][1][-2].key) + 1, entry.key)
            else:
                groups.append((None, [entry]))
                keys.append(entry.key)
        journal.append_stamped(groups)

    def _piece_acked(self, pbatch) -> None:
        """on_piece_acked: a piece of a split batch was acknowledged: journaled with the
        next acknowledgements (the whole batch is reported once all its pieces are)."""
        self._acked_keys.append((pbatch.topic, pbatch.partition, *pbatch.stamp))

    def _journal_acked(self) -> None:
        """on_reported: journal the acknowledgements the callbacks just saw (durable on return)."""
        keys, self._acked_keys = self._acked_keys, []
        if keys and self.journal_error is None:
            try:
                self.journal.append_acked(keys)
            except OSError as exc:
                self.journal_error = exc
                log.error("cannot journal acknowledgements in %s: %s; stopping", self.journal.state_dir, exc)
                self.agent_wake.set()

    def _delivered(self, batch: OutgoingBatch, error: BaseException | None) -> None:
        if error is not None and (self._stopping or self.producer.fatal_error is not None):
            self.agent_wake.set()  # not delivered because delivery stopped
            return
        self._acked_keys += batch.journal_keys  # refused for good counts too: its steps complete
        with self._lock:
            self._pending -= 1
            self._queued -= batch.size
            self._done.append((batch, error))
        if error is not None:
            log.error("dropped %d records for %s-%d that the broker refused for good: %s",
                      batch.count, batch.topic, batch.partition, error)
        elif self._down_since is not None:
            log.info("delivering again after %.1f s; %d batches still to send",
                     time.monotonic() - self._down_since, self._pending)
            self._down_since = None
        self.agent_wake.set()

    def _retrying(self, error: BaseException) -> None:
        now = time.monotonic()
        if isinstance(error, UnknownTopicError):
            key = str(error)
            if now - self._topic_errors.get(key, -_TOPIC_ERROR_EVERY) >= _TOPIC_ERROR_EVERY:
                self._topic_errors[key] = now
                log.error("%s; lines for it wait until it is created", error)
        elif self._down_since is None:
            self._down_since = now
            log.warning("cannot deliver to %s: %s; holding %d batches and retrying "
                        "(reading pauses once %d bytes wait)", self.cluster.brokers, error,
                        self._pending, self.queue_bytes)

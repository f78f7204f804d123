"""The producer: batching, linger, partitioning, compression, acks, retries.

    producer = Producer(Cluster("127.0.0.1:9092"), acks="all", compression="zstd")
    producer.send("logs", b"a line", key=b"host-1", headers=[("source", b"nginx")])
    producer.send_values("logs", [b"line 1", b"line 2"])      # fast path for keyless lines
    producer.send_batch("logs", build_batch_values(lines, now_ms, ZSTD), len(lines))  # built here
    producer.send_encoded("logs", 0, section, 2, timestamp_ms=now_ms,
                          on_delivery=report)                 # a batch encoded by the caller
    producer.flush()                                          # raises DeliveryError if any failed
    producer.close()

Threads: `send`/`send_values` run on the caller's thread and only append records to the
open batch of their partition (blocking while more than `buffer_memory` bytes are
buffered). `build_threads` builder threads encode and compress closed batches (codecs
release the GIL, so they compress in parallel); one sender thread (sender.py) owns every
connection: it pipelines Produce requests (at most `max_in_flight` per connection and per
partition), handles responses and retries, and builds a batch itself when no builder has
taken it yet (so build_threads=0 works too). A batch is sent once it holds `batch_size`
bytes (estimated, uncompressed, header included, so an uncompressed batch of the default
1 MiB passes Kafka's default message.max.bytes) or is `linger_ms` old, or at flush.
`send_encoded` hands over a whole batch whose records section the caller encoded
(record_codec's layout); it goes out as given, after what was sent before to its
partition, and says how it ended through its own `on_delivery(error)`.
`send*`, `partitions`, `flush` and `close` may be called from any thread.

Delivery: with acks=all (-1) or 1 a record counts as `acknowledged` when the broker says so;
with acks=0 when its request was written to the socket. A record that cannot be delivered
within `delivery_timeout_ms` (None: no limit), after `retries` retries, or because the
broker refused it for good (`refused_attempts` times), counts as `failed`, and the next
`flush()` raises DeliveryError(failed, first_error). Records are never dropped silently and,
with `strict_order` (the default), never reordered within a partition: see sender.py for
the retry rules. `resent` counts batches sent again.

Idempotence (`idempotence`; by default on with acks=all, as Kafka's Java producer; True with
other acks is a ValueError): the sender gets a producer id (InitProducerId) before it sends,
and every batch carries it with its epoch and the Kafka sequence of its first record, so a
broker that de-duplicates (logship, Kafka) stores a retried batch once and keeps the order
across retries; at most 5 requests are in flight per connection. Against a broker without
InitProducerId the producer goes on without it, after one warning.

Callbacks run on the sender thread, outside the producer's lock, and must not block:
`on_delivery(error)` of a send_encoded batch once, with None or the error that failed
it (flush() returns only after the callbacks of what it waited for have run);
`on_retry(error)` with each error after which records wait to be sent again, or a
metadata lookup they need failed (a lost connection, a retriable error code, a missing
topic with `wait_for_topics`...). Options for a log shipper that must never give up
(logship agent): delivery_timeout_ms=None, strict_order=False (a retried batch may land
after later ones instead of failing), refused_attempts=3, split_too_large=True (a batch
refused as too large goes again in two halves, down to one record), wait_for_topics=True
(records for a missing topic wait for it instead of failing).

A caller that must record what it sends before it is sent (logship agent's journal) gives
`on_stamped(stamped)`: called on the sender thread, outside the lock, with [(batch, old stamp)]
for the batches about to be sent under a new stamp (the first, or a new producer id or epoch:
`batch.stamp`, `batch.data`, `batch.context` as given to send_encoded), before they are sent;
it may block, and if it raises, nothing more is sent (the producer fails, fatal_error says why).
The pieces of a batch split as too large come to it as new stamps, all in the same call
(the first with the whole's stamp as its old one, and under the same stamp unless the
producer id or epoch changed meanwhile; `batch.ends_batch` marks the one holding its last
record), and `on_piece_acked(piece)` is called with each piece acknowledged (the batch's
on_delivery runs once, when all are done), so that acknowledgements of pieces are recorded
like those of batches. Such a caller starts a later run with the `producer_id` and
`producer_epoch` it recorded and `resume()`s each partition.
Callbacks of acknowledgements run before the next batch is picked, and after each run of them
`on_reported()` (to record them together), so a slot in flight is free only once the
acknowledgement is recorded.

Partitioning: an explicit `partition`, else Kafka's murmur2 of the key, else sticky
(partitioner.py). `partitioner(key, partitions) -> int` replaces the keyed rule.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate
from typing import Callable, Iterable

from ..compression import CODEC_NAMES, codec_by_name
from ..errors import DeliveryError, InvalidRecordError, UnknownTopicError
from .batches import RECORD_OVERHEAD, PartitionQueue, ProducerBatch, SplitDelivery, batch_limit
from .cluster import Cluster
from .partitioner import StickyPartitioner, partition_for_key
from .sender import SEQUENCES, Sender
from .wakeup import Wakeup

__all__ = ["Producer", "parse_acks"]

log = logging.getLogger(__name__)

_ACKS = {"all": -1, "-1": -1, "1": 1, "0": 0, "leader": 1, "none": 0}


def parse_acks(acks: int | str) -> int:
    """-1/"all", 1 or 0 as the Produce request's int16; ValueError otherwise."""
    value = _ACKS.get(str(acks).strip().lower())
    if value is None:
        raise ValueError(f"invalid acks {acks!r}; use 0, 1 or all")
    return value


class Producer:
    """Sends records to a cluster; see the module docstring. Use as a context manager or
    call close() (which flushes): records still buffered when the process exits are lost."""

    def __init__(self, cluster: Cluster | str | None = None, *, acks: int | str = -1,
                 compression: str | int = "zstd", linger_ms: float = 5, batch_size: int = 1 << 20,
                 max_in_flight: int = 5, retries: int = 2**31 - 1, retry_backoff_ms: float = 100,
                 retry_backoff_max_ms: float = 1000, delivery_timeout_ms: float | None = 120_000,
                 request_timeout_ms: float = 30_000, buffer_memory: int = 64 << 20,
                 partitioner: Callable[[bytes, int], int] | None = None, build_threads: int = 2,
                 strict_order: bool = True, refused_attempts: int = 1, split_too_large: bool = False,
                 wait_for_topics: bool = False, on_retry: Callable[[BaseException], None] | None = None,
                 idempotence: bool | None = None, producer_id: int = -1, producer_epoch: int = -1,
                 on_stamped: Callable[[list], None] | None = None, on_reported: Callable[[], None] | None = None,
                 on_piece_acked: Callable[[ProducerBatch], None] | None = None):
        self.cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        self._own_cluster = not isinstance(cluster, Cluster)
        self.acks = parse_acks(acks)
        if idempotence and self.acks != -1:
            raise ValueError("an idempotent producer needs acks=all")
        self.idempotent = self.acks == -1 if idempotence is None else idempotence
        self.compression = compression if isinstance(compression, int) else codec_by_name(compression)
        if self.compression not in CODEC_NAMES:
            raise ValueError(f"unknown compression codec {compression!r}")
        if batch_size < 1 or max_in_flight < 1 or buffer_memory < 1 or refused_attempts < 1 or retries < 0:
            raise ValueError("batch_size, max_in_flight, buffer_memory and refused_attempts must be positive, "
                             "retries >= 0")
        self.linger = linger_ms / 1000
        self.batch_size = batch_size
        self._batch_limit = batch_limit(batch_size)
        self.max_in_flight = min(max_in_flight, 5) if self.idempotent else max_in_flight
        self.retries = retries
        self.retry_backoff = retry_backoff_ms / 1000
        self.retry_backoff_max = retry_backoff_max_ms / 1000
        self.delivery_timeout = math.inf if delivery_timeout_ms is None else delivery_timeout_ms / 1000
        self.request_timeout = request_timeout_ms / 1000
        self.buffer_memory = buffer_memory
        self.partitioner = partitioner or partition_for_key
        self.strict_order = strict_order
        self.refused_attempts = refused_attempts
        self.split_too_large = split_too_large
        self.wait_for_topics = wait_for_topics
        self.on_retry = on_retry
        # idempotence: set by the sender (InitProducerId), or a previous run's to go on with (resume)
        self.producer_id, self.producer_epoch = (producer_id, producer_epoch) if self.idempotent else (-1, -1)
        self._new_id_needed = self.idempotent and producer_id < 0
        self.on_stamped, self.on_reported, self.on_piece_acked = on_stamped, on_reported, on_piece_acked
        self.acknowledged = 0
        self.failed = 0
        self.resent = 0
        # Everything below is guarded by _cond (the sender thread shares it).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._builds = threading.Condition(self._lock)
        self._build_queue: deque[ProducerBatch] = deque()
        self._queues: dict[tuple[str, int], PartitionQueue] = {}
        self._counts: dict[str, int] = {}
        self._wanted: set[str] = set()  # topics partitions(wait=False) asks the sender to look up
        self._reports: list = []  # (callback, argument) for the sender to call outside the lock
        self._unreported = 0  # callbacks queued or running: flush() waits for them
        self._sticky = StickyPartitioner()
        self._buffered = 0
        self._pending = 0
        self._unflushed_failed = 0
        self._first_error: BaseException | None = None
        self._flushing = 0
        self._closing = False
        self._closed = False
        self._fatal: BaseException | None = None
        self._sender_idle = False
        self._builders: list[threading.Thread] = []
        self.wakeup = Wakeup()
        self._sender = Sender(self)
        self._sender.start()
        self._builders = [threading.Thread(target=self._build_loop, name="logship-builder", daemon=True)
                          for _ in range(build_threads)]
        for builder in self._builders:
            builder.start()

    # --- sending -------------------------------------------------------------------------------

    def partitions(self, topic: str, wait: bool = True) -> int | None:
        """The partition count of `topic` (auto-created if the broker allows); cached.
        With wait=False: the cached count, or None after asking the sender thread to look
        it up (again after a backoff while that fails; failures go to on_retry)."""
        count = self._counts.get(topic)
        if count is None:
            if not wait:
                with self._cond:
                    self._wanted.add(topic)
                    self._wake_sender()
                return None
            count = self._counts[topic] = self.cluster.partitions(topic, allow_create=True)
        return count

    def send(self, topic: str, value: bytes | None, key: bytes | None = None,
             headers: Iterable[tuple[str, bytes | None]] = (), partition: int | None = None,
             timestamp_ms: int | None = None) -> None:
        """Queue one record. Returns at once unless the buffer is full; errors of delivery
        surface at flush(). Raises UnknownTopicError for a topic or partition that does not
        exist, InvalidRecordError for a malformed header."""
        count = self.partitions(topic)
        if partition is None:
            if key is not None:
                partition = self.partitioner(key, count)
        elif not 0 <= partition < count:
            raise UnknownTopicError(f"topic {topic!r} has no partition {partition} (it has {count})")
        size = RECORD_OVERHEAD + (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if headers:
            headers = tuple(headers)
            for name, data in headers:
                if not isinstance(name, (str, bytes)):
                    raise InvalidRecordError(f"a header key must be str or bytes, not {name!r}")
                size += len(name) + (len(data) if data is not None else 0) + 2
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        with self._cond:
            self._wait_for_room(size)
            if partition is None:
                partition = self._sticky.partition(topic, count)
            queue = self._queue(topic, partition)
            batch = queue.open_batch(False, self.delivery_timeout)
            if batch.count and batch.size + size > self._batch_limit:
                self._close_batch(queue)
                batch = queue.open_batch(False, self.delivery_timeout)
            batch.add_record(timestamp_ms, key, value, headers)
            self._added(queue, batch, 1, size)

    def send_values(self, topic: str, values: list[bytes], partition: int | None = None) -> None:
        """Queue keyless, headerless records (bytes each) in order: the fast path for lines.
        They share the timestamp of the batch they land in (taken when it was opened)."""
        if not values:
            return
        count = self.partitions(topic)
        if partition is not None and not 0 <= partition < count:
            raise UnknownTopicError(f"topic {topic!r} has no partition {partition} (it has {count})")
        ends = list(accumulate(map(RECORD_OVERHEAD.__add__, map(len, values))))
        start, total = 0, len(values)
        with self._cond:
            while start < total:
                base = ends[start - 1] if start else 0
                self._wait_for_room(min(ends[-1] - base, self._batch_limit))
                target = self._sticky.partition(topic, count) if partition is None else partition
                queue = self._queue(topic, target)
                batch = queue.open_batch(True, self.delivery_timeout)
                stop = bisect_right(ends, base + self._batch_limit - batch.size, start)
                if stop == start:
                    if batch.count:
                        self._close_batch(queue)
                        continue
                    stop = start + 1  # a value larger than batch_size gets a batch of its own
                batch.values += values[start:stop]
                self._added(queue, batch, stop - start, ends[stop - 1] - base)
                start = stop

    def send_encoded(self, topic: str, partition: int, records: bytes | list[bytes], count: int, *,
                     timestamp_ms: int, max_timestamp: int | None = None,
                     on_delivery: Callable[[BaseException | None], None] | None = None, context=None) -> None:
        """Queue one batch of `count` records that the caller encoded: `records` is its
        records section (uncompressed; offset deltas 0..count-1, timestamp deltas from
        `timestamp_ms`; max_timestamp defaults to it), whole or in pieces to be joined. It
        is compressed, sent after what was given before for the partition, and retried
        like any batch (split in halves if refused as too large, with split_too_large);
        `on_delivery(error)` is called once, on the sender thread, with None when every
        record was acknowledged, else the error that failed them. Never waits for buffer
        room (it counts towards buffer_memory): the caller bounds what it queues. The
        partition is not checked here: one the topic lacks fails at sending (or waits,
        with wait_for_topics)."""
        parts = [records] if isinstance(records, (bytes, bytearray, memoryview)) else list(records)
        with self._cond:
            if self._fatal is not None or self._closing or self._closed:
                raise DeliveryError(count, self._fatal or InvalidRecordError("the producer is closed"))
            queue = self._queue(topic, partition)
            self._close_batch(queue)  # records sent before go first
            batch = queue.append_encoded(parts, count, timestamp_ms,
                                         timestamp_ms if max_timestamp is None else max_timestamp,
                                         self.delivery_timeout)
            batch.on_delivery, batch.context = on_delivery, context
            self._buffered += batch.size
            self._pending += count
            if self._builders:
                self._build_queue.append(batch)
                self._builds.notify()
            self._wake_sender()

    def resume(self, topic: str, partition: int, stamp_id: tuple[int, int], next_sequence: int,
               resend: Iterable[tuple] = ()) -> None:
        """Go on with a previous run's idempotent producer on one partition, before anything
        else is sent to it: its batches carry `stamp_id` (producer id, epoch) and Kafka
        sequences from `next_sequence`, after `resend`: (stamp, data, count, on_delivery,
        context) of batches that run stamped and may not have had acknowledged. Those under
        `stamp_id`, oldest first, go again as the same bytes (the broker answers one it holds
        with its offsets; a gap is one it acknowledged); any under an older stamp come after
        them, stamped anew (on_stamped sees them) with the sequences that follow. Sequences
        wrap at 2^31 as Kafka's do."""
        stamp_id = tuple(stamp_id)
        with self._cond:
            queue = self._queue(topic, partition)
            if not self.idempotent or queue.has_work() or queue.next_seq:
                raise ValueError(f"cannot resume {topic}-{partition}: not idempotent, or batches were given before")
            queue.stamp_id, queue.seq_base = stamp_id, 0
            here = last = None  # the next unwrapped seq, and the Kafka sequence it stands for
            for stamp, data, count, on_delivery, context in resend:
                if tuple(stamp[:2]) == stamp_id:
                    here = stamp[2] if here is None else here + (stamp[2] - last) % SEQUENCES
                    last = stamp[2]
                elif here is None:
                    here = last = next_sequence
                batch = queue.append_stamped(data, count, here, tuple(stamp), self.delivery_timeout)
                batch.on_delivery, batch.context = on_delivery, context
                self._buffered += batch.size
                self._pending += count
                here, last = here + count, (last + count) % SEQUENCES
            if here is None:
                queue.next_seq = next_sequence
            else:  # after what went again (next_sequence may lie beyond: batches it acknowledged)
                ahead = (next_sequence - last) % SEQUENCES
                queue.next_seq = here + (ahead if ahead < SEQUENCES // 2 else 0)
            self._wake_sender()

    def send_batch(self, topic: str, data: bytes, count: int, partition: int | None = None) -> None:
        """Queue a whole record batch of `count` records that the caller built and sealed
        (records.build_batch_values or build_batch, compressed as the caller chose; its
        offsets and producer fields are the broker's to set). It goes out as given, after
        the records sent before to its partition: `partition`, or the keyless records'
        sticky one, which then moves on. Waits for buffer room like send(); delivery
        errors surface at flush()."""
        partitions = self.partitions(topic)
        if partition is not None and not 0 <= partition < partitions:
            raise UnknownTopicError(f"topic {topic!r} has no partition {partition} (it has {partitions})")
        with self._cond:
            self._wait_for_room(len(data))
            target = self._sticky.partition(topic, partitions) if partition is None else partition
            queue = self._queue(topic, target)
            self._close_batch(queue)  # records sent before go first
            queue.append_built(data, count, self.delivery_timeout)
            self._sticky.next_batch(topic, partitions, target)
            self._buffered += len(data)
            self._pending += count
            self._wake_sender()

    def _queue(self, topic: str, partition: int) -> PartitionQueue:
        queue = self._queues.get((topic, partition))
        if queue is None:
            queue = self._queues[(topic, partition)] = PartitionQueue(topic, partition)
        return queue

    def _added(self, queue: PartitionQueue, batch: ProducerBatch, count: int, size: int) -> None:
        """Account for records just added to `batch`; close it once full."""
        batch.count += count
        batch.size += size
        self._buffered += size
        self._pending += count
        if batch.size >= self._batch_limit:
            self._close_batch(queue)
        elif batch.count == count:
            self._wake_sender()  # a new batch: the sender must time its linger

    def _close_batch(self, queue: PartitionQueue) -> None:
        """Close the open batch of `queue` (it becomes sendable); keyless records move on."""
        batch = queue.close_open()
        if batch is not None:
            count = self._counts.get(queue.topic)
            if count:
                self._sticky.next_batch(queue.topic, count, queue.partition)
            if self._builders:
                self._build_queue.append(batch)
                self._builds.notify()
            self._wake_sender()

    def _build_loop(self) -> None:
        """A builder thread: build (encode, compress) closed batches before the sender needs
        them. zstd and the other codecs release the GIL, so builders compress in parallel
        with each other, with the sender's I/O and with the caller."""
        while True:
            with self._builds:
                while not self._build_queue and not self._closing:
                    self._builds.wait()
                if not self._build_queue:
                    return
                batch = self._build_queue.popleft()
                if batch.claimed:
                    continue  # the sender took it first
                batch.claimed = True
            try:
                batch.build(self.compression)
            except Exception:  # the sender builds it again and fails it with the error
                with self._cond:
                    batch.claimed = False
            with self._cond:
                self._wake_sender()

    def _wait_for_room(self, size: int) -> None:
        while True:
            if self._fatal is not None or self._closing or self._closed:
                raise DeliveryError(self._unflushed_failed, self._fatal or
                                    InvalidRecordError("the producer is closed"))
            if self._buffered == 0 or self._buffered + size <= self.buffer_memory:
                return
            self._flushing += 1  # send what is there rather than wait for linger
            self._wake_sender()
            self._cond.wait(1.0)
            self._flushing -= 1

    def _wake_sender(self) -> None:
        if self._sender_idle:
            self._sender_idle = False
            self.wakeup.wake()

    # --- completion (called by the sender thread with _cond held) ---------------------------

    def _complete(self, batch: ProducerBatch, error: BaseException | None) -> None:
        self._buffered -= batch.size
        self._pending -= batch.count
        if error is None:
            self.acknowledged += batch.count
        else:
            self.failed += batch.count
            self._unflushed_failed += batch.count
            if self._first_error is None:
                self._first_error = error
        callback = batch.on_delivery
        if isinstance(callback, SplitDelivery):
            if error is None and self.on_piece_acked is not None:
                self._reports.append((self.on_piece_acked, batch))
                self._unreported += 1
            callback, error = callback.piece_done(batch.count, error) or (None, None)
        if callback is not None:
            self._reports.append((callback, error))
            self._unreported += 1
        self._cond.notify_all()

    def _retrying(self, error: BaseException) -> None:
        """Records wait to be sent again because of `error`: tell on_retry."""
        if self.on_retry is not None:
            self._reports.append((self.on_retry, error))
            self._unreported += 1

    def _report(self) -> None:
        """Run the queued callbacks (the sender thread, without the lock)."""
        if not self._reports:
            return
        with self._cond:
            reports, self._reports = self._reports, []
        try:
            for callback, argument in reports:
                try:
                    callback(argument)
                except Exception:  # the caller's bug must not stop delivery
                    log.exception("a producer callback failed")
            if self.on_reported is not None:
                self.on_reported()
        finally:
            with self._cond:
                self._unreported -= len(reports)
                self._cond.notify_all()

    def _sender_died(self, error: BaseException, in_flight: list) -> None:
        with self._cond:
            self._fatal = error
            for queue in self._queues.values():
                for batch in list(queue.batches()):
                    self._complete(batch, error)
                queue.held, queue.open = [], None
                queue.ready.clear()
            for batch in in_flight:
                self._complete(batch, error)
            if self._pending:  # batches it was sending when it failed
                self.failed += self._pending
                self._unflushed_failed += self._pending
                self._pending = 0
            self._cond.notify_all()

    # --- flush and close -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued and wait until each record is acknowledged or failed.
        Raises DeliveryError (with how many failed since the previous flush) if any failed,
        or if `timeout` seconds pass first (then `failed` counts the records still pending)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._wake_sender()
            try:
                while (self._pending or self._unreported) and self._fatal is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        from ..errors import RequestTimedOutError
                        raise DeliveryError(self._pending, RequestTimedOutError(
                            f"{self._pending} records still unacknowledged after {timeout:g} s"))
                    self._cond.wait(min(left, 1.0) if left is not None else 1.0)
            finally:
                self._flushing -= 1
            failed, error = self._unflushed_failed, self._first_error or self._fatal
            self._unflushed_failed, self._first_error = 0, None
        if failed or self._fatal is not None:
            raise DeliveryError(failed, error)

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the sender thread and close connections (and the cluster, if the
        producer made it). Raises DeliveryError like flush(); closing twice does nothing."""
        if self._closed:
            return
        try:
            if self._fatal is None:
                self.flush(timeout)
        finally:
            with self._cond:
                self._closing = True
                self._sender_idle = True
                self._wake_sender()
                self._cond.notify_all()
                self._builds.notify_all()
            self._sender.join(10)
            for builder in self._builders:
                builder.join(10)
            self._closed = True
            self.wakeup.close()
            if self._own_cluster:
                self.cluster.close()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the exception that is propagating
            try:
                self.close()
            except DeliveryError:
                pass

    @property
    def pending(self) -> int:
        """Records queued or in flight, neither acknowledged nor failed yet."""
        return self._pending

    @property
    def fatal_error(self) -> BaseException | None:
        """What stopped the sender thread (a bug; every pending record failed with it), or None."""
        return self._fatal

"""The producer's record accumulator: open batches per partition and the queues behind them.

A `ProducerBatch` collects records for one partition until it is full (`batch_size`
estimated uncompressed bytes) or lingered, or arrives whole with its records already
encoded (Producer.send_encoded); it is built (encoded, compressed) once, by a builder or
the sender thread, and the same bytes are sent again on a retry. `seq` is the position
of the batch's first record among the records given for its partition (Kafka's base
sequence), so batches sort in the order they must reach the log, and the two halves of a
batch split as too large (`split`) sort where it stood.

A `PartitionQueue` holds, in order: `ready` (closed batches, retries first), then `open`
(the batch still being filled). `in_flight` counts batches sent and not answered; `held`
keeps batches that failed retriably while later batches of the partition were still in
flight (see sender.py for why). Nothing here locks: the producer's lock guards it all.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate

from ..errors import DeliveryError
from ..record_codec import encode_record, encode_values
from ..records import build_batch, decode_records, seal_batch

__all__ = ["ProducerBatch", "PartitionQueue", "SplitDelivery", "RECORD_OVERHEAD", "batch_limit", "runs_that_fit"]

#: Estimated bytes a record adds to a batch besides its key, value and headers.
RECORD_OVERHEAD = 12
#: Bytes of batch_size kept for the batch header (61) and estimate error.
BATCH_HEADER_ALLOWANCE = 128


def batch_limit(batch_size: int) -> int:
    """The estimated record bytes (value, key, headers, RECORD_OVERHEAD each) that a batch of
    `batch_size` bytes holds: the rest is kept for its header."""
    return max(batch_size - BATCH_HEADER_ALLOWANCE, 1)


def runs_that_fit(values: list, limit: int, value_bytes: int | None = None) -> list[list]:
    """`values` cut, in order, into runs of at most `limit` estimated bytes each (a value's
    length + RECORD_OVERHEAD); a value that alone is larger gets a run of its own.
    `value_bytes`, if the caller knows it, is the sum of the values' lengths."""
    if value_bytes is None:
        value_bytes = sum(map(len, values))
    if value_bytes + RECORD_OVERHEAD * len(values) <= limit:
        return [values] if values else []
    ends = list(accumulate(map(RECORD_OVERHEAD.__add__, map(len, values))))
    runs, start = [], 0
    while start < len(values):
        stop = max(bisect_right(ends, (ends[start - 1] if start else 0) + limit, start), start + 1)
        runs.append(values[start:stop])
        start = stop
    return runs


class ProducerBatch:
    """Records bound for one partition, built into one record batch when sent.

    A fast batch holds `values` (keyless, headerless, one timestamp: build_batch_values'
    layout); a general one holds `parts`, its records already encoded as they were added
    (timestamp deltas from the first record's timestamp, as Kafka's producer does), or as
    the caller of send_encoded gave them. `data` is the sealed batch, built once.
    `on_delivery(error)` is called once the batch is acknowledged (None) or failed.
    A piece of a batch split as too large links to the piece after it (`next_piece`),
    `ends_batch` says whether it holds the last record of the batch as it was given, and the
    first piece keeps the stamp of the batch it replaces (`replaces`) until it is stamped.
    """

    __slots__ = ("topic", "partition", "seq", "fast", "values", "parts", "size", "count",
                 "created", "timestamp_ms", "max_timestamp", "deadline", "data", "attempts", "last_error",
                 "claimed", "on_delivery", "stamp", "context", "next_piece", "ends_batch", "replaces")

    def __init__(self, topic: str, partition: int, seq: int, fast: bool, delivery_timeout: float):
        self.topic = topic
        self.partition = partition
        self.seq = seq
        self.fast = fast
        self.values: list | None = [] if fast else None
        self.parts: list | None = None if fast else []
        self.size = 0
        self.count = 0
        self.created = time.monotonic()
        self.timestamp_ms = self.max_timestamp = int(time.time() * 1000)
        self.deadline = self.created + delivery_timeout
        self.data: bytes | None = None
        self.attempts = 0
        self.last_error: BaseException | None = None
        self.claimed = False  # a builder thread or the sender builds it (set under the producer's lock)
        self.on_delivery = None
        self.stamp: tuple[int, int, int] | None = None  # (producer id, epoch, base sequence) in `data`
        self.context = None  # the caller's, for the producer's on_stamped hook
        self.next_piece: ProducerBatch | None = None
        self.ends_batch = True
        self.replaces: tuple[int, int, int] | None = None

    def add_record(self, timestamp: int, key, value, headers) -> None:
        """Encode one record into a general batch (the caller counts it)."""
        if not self.count:
            self.timestamp_ms = self.max_timestamp = timestamp
        elif timestamp > self.max_timestamp:
            self.max_timestamp = timestamp
        encode_record(self.parts, self.count, timestamp - self.timestamp_ms, key, value, headers)

    def build(self, compression: int) -> bytes:
        """The batch's bytes, built on the first call; the records are then released."""
        if self.data is None:
            body = encode_values(self.values) if self.fast else b"".join(self.parts)
            self.data = seal_batch(body, self.count, self.timestamp_ms, self.max_timestamp, compression=compression,
                              base_offset=0, producer_id=-1, producer_epoch=-1, base_sequence=-1,
                              partition_leader_epoch=-1, attributes=0)
            self.values = self.parts = None
        return self.data

    def split(self, compression: int) -> list[ProducerBatch]:
        """The first and second half of this built batch's records as two built batches,
        in its place (seq), with its deadline, sharing its delivery callback (SplitDelivery),
        the first linked to the second and the second to what this one linked to."""
        records = decode_records(self.data)
        half = len(records) // 2
        callback = self.on_delivery
        if callback is not None:
            if not isinstance(callback, SplitDelivery):
                callback = SplitDelivery(callback, self.count)
            callback.pieces += 1
        pieces = []
        for start, part in ((0, records[:half]), (half, records[half:])):
            piece = ProducerBatch(self.topic, self.partition, self.seq + start, False, 0.0)
            piece.data = build_batch(part, compression=compression)
            piece.parts = None
            piece.count = len(part)
            piece.size = self.size * len(part) // self.count
            piece.deadline = self.deadline
            piece.claimed = True
            piece.on_delivery, piece.context = callback, self.context
            pieces.append(piece)
        pieces[1].size = self.size - pieces[0].size
        pieces[0].next_piece, pieces[1].next_piece = pieces[1], self.next_piece
        pieces[0].ends_batch, pieces[1].ends_batch = False, self.ends_batch
        pieces[0].replaces = self.stamp or self.replaces
        return pieces

    def __repr__(self) -> str:
        return f"<ProducerBatch {self.topic}-{self.partition} #{self.seq} {self.count} records>"


class PartitionQueue:
    """Batches of one partition, oldest first; see the module docstring."""

    __slots__ = ("topic", "partition", "open", "ready", "in_flight", "held", "retrying",
                 "not_before", "backoff", "next_seq", "acked_seq", "seq_base", "stamp_id")

    def __init__(self, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.open: ProducerBatch | None = None
        self.ready: deque[ProducerBatch] = deque()
        self.in_flight = 0
        self.held: list[ProducerBatch] = []
        self.retrying = False  # after a retriable error: one batch in flight until a success
        self.not_before = 0.0  # retry backoff: nothing is sent before this monotonic time
        self.backoff = 0.0
        self.next_seq = 0  # records given for the partition before the open batch
        self.acked_seq = -1  # highest seq written to the log: nothing older may be retried
        self.seq_base = 0  # idempotence: the seq sent as Kafka sequence 0 under `stamp_id`
        self.stamp_id: tuple[int, int] | None = None  # idempotence: (producer id, epoch) of its batches

    def open_batch(self, fast: bool, delivery_timeout: float) -> ProducerBatch:
        """The batch to append to, closing the open one if it is of the other kind."""
        batch = self.open
        if batch is not None and batch.fast is not fast:
            self.close_open()
            batch = None
        if batch is None:
            batch = self.open = ProducerBatch(self.topic, self.partition, self.next_seq, fast, delivery_timeout)
        return batch

    def close_open(self) -> ProducerBatch | None:
        batch, self.open = self.open, None
        if batch is not None and batch.count:
            self.next_seq = batch.seq + batch.count
            self.ready.append(batch)
            return batch
        return None

    def append_encoded(self, parts: list, count: int, timestamp_ms: int, max_timestamp: int,
                       delivery_timeout: float) -> ProducerBatch:
        """A closed batch of `count` records already encoded in `parts`, after the others
        (close the open batch first)."""
        batch = self._append_closed(count, sum(map(len, parts)), delivery_timeout)
        batch.parts = parts
        batch.timestamp_ms, batch.max_timestamp = timestamp_ms, max_timestamp
        return batch

    def append_built(self, data: bytes, count: int, delivery_timeout: float) -> ProducerBatch:
        """A closed batch whose bytes (`count` records) the caller built, after the others
        (close the open batch first)."""
        batch = self._append_closed(count, len(data), delivery_timeout)
        batch.parts = None
        batch.data = data
        return batch

    def append_stamped(self, data: bytes, count: int, seq: int, stamp: tuple[int, int, int],
                       delivery_timeout: float) -> ProducerBatch:
        """A batch already sealed and stamped with `stamp` (a resend of a previous run's, kept
        on disk by its caller) at `seq` (>= next_seq: a later seq may skip batches the broker
        has); the sender stamps it again if its queue's stamp says otherwise."""
        self.next_seq = seq
        batch = self.append_built(data, count, delivery_timeout)
        batch.stamp = stamp
        return batch

    def _append_closed(self, count: int, size: int, delivery_timeout: float) -> ProducerBatch:
        batch = ProducerBatch(self.topic, self.partition, self.next_seq, False, delivery_timeout)
        batch.count = count
        batch.size = size
        self.next_seq += count
        self.ready.append(batch)
        return batch

    def requeue_held(self) -> list[ProducerBatch]:
        """Once nothing is in flight: put held batches back in front, in their original order."""
        held = sorted(self.held, key=lambda b: b.seq)
        self.held = []
        self.ready.extendleft(reversed(held))
        return held

    def first_unsent_seq(self) -> int:
        """The lowest seq of the batches not acknowledged and not in flight (next_seq if none)."""
        return min((batch.seq for batch in self.batches()), default=self.next_seq)

    def has_work(self) -> bool:
        return bool(self.ready or self.in_flight or self.held or (self.open is not None and self.open.count))

    def batches(self):
        """Every batch not in flight: held, ready, open."""
        yield from self.held
        yield from self.ready
        if self.open is not None and self.open.count:
            yield self.open


class SplitDelivery:
    """The delivery callback of a batch split into pieces (ProducerBatch.split; pieces may
    split again): it runs once, when the last piece is done, with None if every piece was
    acknowledged, the error if every record failed, else DeliveryError(records failed,
    first error)."""

    __slots__ = ("on_delivery", "count", "pieces", "failed", "error")

    def __init__(self, on_delivery, count: int):
        self.on_delivery = on_delivery
        self.count = count  # records of the batch as it was given
        self.pieces = 1  # pieces not done yet
        self.failed = 0
        self.error: BaseException | None = None

    def piece_done(self, count: int, error: BaseException | None):
        """(callback, error) once the last piece is done, else None."""
        self.pieces -= 1
        if error is not None:
            self.failed += count
            self.error = self.error or error
        if self.pieces:
            return None
        if self.failed and self.failed < self.count:
            return self.on_delivery, DeliveryError(self.failed, self.error)
        return self.on_delivery, self.error

"""Record batches on their way to the broker, and the open batch of each partition.

An `OutgoingBatch` collects the encoded records of one partition (from one or several
files: `pieces` that together are the batch's records section, offset deltas 0..count-1,
all with timestamp delta 0 from `timestamp_ms`) and the checkpoint steps
(checkpoint.Progress) those records complete; when the broker acknowledges the batch,
the steps are marked acked and the files' checkpoints move. `OpenBatches` keeps one
batch being filled per (topic, partition) and closes it when it is full (`batch_bytes`
of encoded records) or `linger` seconds old; closed batches wait in `closed` until the
agent hands them to the shipper (`take_closed()`).

`add_lines()` packs a file's lines into those batches: each record is encoded once
(linerecords.encode, whole runs of lines at a time), and each run that goes into a batch
appends to it the checkpoint step (FileState.add) that its last line completes, so a
file's offset moves only past lines whose batch was acknowledged. A file's lines always
go to one partition (its Route's), so they stay in order; lines that carry no record
(none complete, only a held-back line moved the resume point) make a step that is
acknowledged at once.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from itertools import accumulate

from .linerecords import encode

__all__ = ["OutgoingBatch", "OpenBatches", "RECORD_SLACK"]

RECORD_SLACK = 32  # bytes a record may take besides its value and the file's fixed part


class OutgoingBatch:
    __slots__ = ("topic", "partition", "pieces", "count", "size", "value_bytes", "created", "timestamp_ms",
                 "steps", "origins", "journal_keys", "journal_steps")

    def __init__(self, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.pieces: list[bytes] = []
        self.count = 0
        self.size = 0
        self.value_bytes = 0
        self.created = time.monotonic()
        self.timestamp_ms = int(time.time() * 1000)
        self.steps: list = []
        self.origins: dict[str, list[int]] = {}  # input label -> [lines, bytes] (for the metrics)
        self.journal_keys: list[tuple] = []  # its entries in the journal, once stamped (shipper.py)
        self.journal_steps: list[dict] | None = None  # its steps as the journal keeps them

    def add(self, body: bytes, count: int, value_bytes: int, origin: str = "") -> None:
        self.pieces.append(body)
        self.count += count
        self.size += len(body)
        self.value_bytes += value_bytes
        counts = self.origins.get(origin)
        if counts is None:
            self.origins[origin] = [count, value_bytes]
        else:
            counts[0] += count
            counts[1] += value_bytes

    def __repr__(self) -> str:
        return f"<OutgoingBatch {self.topic}-{self.partition} {self.count} records {self.size} bytes>"


class OpenBatches:
    """The batch being filled for each (topic, partition)."""

    def __init__(self, batch_bytes: int, linger: float):
        self.batch_bytes = batch_bytes
        self.linger = linger
        self.open: dict[tuple[str, int], OutgoingBatch] = {}
        self.closed: list[OutgoingBatch] = []  # closed, not yet handed to the shipper

    def take_closed(self) -> list[OutgoingBatch]:
        """The batches closed since the last call."""
        closed, self.closed = self.closed, []
        return closed

    def batch_for(self, topic: str, partition: int, size: int) -> OutgoingBatch:
        """The open batch that `size` more bytes fit in; a full one is closed."""
        batch = self.open.get((topic, partition))
        if batch is not None and batch.count and batch.size + size > self.batch_bytes:
            self.closed.append(self.open.pop((topic, partition)))
            batch = None
        if batch is None:
            batch = self.open[(topic, partition)] = OutgoingBatch(topic, partition)
        return batch

    def close(self, topic: str, partition: int) -> None:
        batch = self.open.pop((topic, partition), None)
        if batch is not None and batch.count:
            self.closed.append(batch)

    def close_due(self, now: float, everything: bool = False) -> None:
        for key, batch in list(self.open.items()):
            if batch.count and (everything or now - batch.created >= self.linger or batch.size >= self.batch_bytes):
                self.closed.append(self.open.pop(key))

    def next_due(self) -> float | None:
        """When the oldest open batch lingers out (monotonic time), or None."""
        times = [b.created for b in self.open.values() if b.count]
        return min(times) + self.linger if times else None

    def add_lines(self, state, route, lines, marker_of=None) -> None:
        """Records of `lines` (lines.Lines of the file whose checkpoint.FileState is `state`)
        into the open batches of `route` (route.Route, its partition known), with the
        checkpoint steps they complete (`marker_of(offset)`, if given, their markers)."""
        values = lines.values
        if not values:
            if lines.end > state.resume_point[0]:
                state.add(lines.end, acked=True, marker=marker_of(lines.end) if marker_of is not None else None)
            return
        template = route.template
        limit = self.batch_bytes
        overhead = template.fixed + RECORD_SLACK
        ends = list(accumulate(map(overhead.__add__, map(len, values))))
        count, index = len(values), 0
        while index < count:
            batch = self.batch_for(route.topic, route.partition, ends[index] - (ends[index - 1] if index else 0))
            base = ends[index - 1] if index else 0
            stop = bisect_right(ends, base + limit - batch.size, index)
            if stop == index:
                stop = index + 1  # cannot happen: max_line_bytes leaves room for one record
            truncated = [t - index for t in lines.truncated if index <= t < stop] if lines.truncated else []
            part = values if index == 0 and stop == count else values[index:stop]
            body = encode(part, lines.starts[index:stop], truncated, batch.count, template)
            batch.add(body, stop - index, ends[stop - 1] - base - overhead * (stop - index), route.label)
            end = lines.end if stop == count else lines.starts[stop]
            batch.steps.append(state.add(end, marker=marker_of(end) if marker_of is not None else None))
            index = stop
            if batch.size >= limit - overhead:
                self.close(route.topic, route.partition)

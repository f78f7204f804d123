"""Record batches on their way to the broker, and the open batch of each partition.

An `OutgoingBatch` collects the encoded records of one partition (from one or several
files: `pieces` that together are the batch's records section, offset deltas 0..count-1,
all with timestamp delta 0 from `timestamp_ms`) and the checkpoint steps
(checkpoint.Progress) those records complete; when the broker acknowledges the batch,
the steps are marked acked and the files' checkpoints move. `OpenBatches` keeps one
batch being filled per (topic, partition) and closes it when it is full (`batch_bytes`
of encoded records) or `linger` seconds old.
"""

from __future__ import annotations

import time

__all__ = ["OutgoingBatch", "OpenBatches"]


class OutgoingBatch:
    __slots__ = ("topic", "partition", "pieces", "count", "size", "value_bytes", "created", "timestamp_ms",
                 "steps")

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

    def add(self, body: bytes, count: int, value_bytes: int) -> None:
        self.pieces.append(body)
        self.count += count
        self.size += len(body)
        self.value_bytes += value_bytes

    def __repr__(self) -> str:
        return f"<OutgoingBatch {self.topic}-{self.partition} {self.count} records {self.size} bytes>"


class OpenBatches:
    """The batch being filled for each (topic, partition)."""

    def __init__(self, batch_bytes: int, linger: float):
        self.batch_bytes = batch_bytes
        self.linger = linger
        self.open: dict[tuple[str, int], OutgoingBatch] = {}

    def batch_for(self, topic: str, partition: int, size: int, closed: list) -> OutgoingBatch:
        """The open batch that `size` more bytes fit in; a full one is moved to `closed`."""
        batch = self.open.get((topic, partition))
        if batch is not None and batch.count and batch.size + size > self.batch_bytes:
            closed.append(self.open.pop((topic, partition)))
            batch = None
        if batch is None:
            batch = self.open[(topic, partition)] = OutgoingBatch(topic, partition)
        return batch

    def close(self, topic: str, partition: int, closed: list) -> None:
        batch = self.open.pop((topic, partition), None)
        if batch is not None and batch.count:
            closed.append(batch)

    def close_due(self, now: float, closed: list, everything: bool = False) -> None:
        for key, batch in list(self.open.items()):
            if batch.count and (everything or now - batch.created >= self.linger or batch.size >= self.batch_bytes):
                closed.append(self.open.pop(key))

    def next_due(self) -> float | None:
        """When the oldest open batch lingers out (monotonic time), or None."""
        times = [b.created for b in self.open.values() if b.count]
        return min(times) + self.linger if times else None

"""Stand-ins for the producer and the progress line, for tests of workers/file_producer.py."""

from __future__ import annotations

from logship.records import build_batch_values, decode_records


def records_of(data: bytes, separator: bytes) -> list[bytes]:
    """What the serial path makes of a file: split at separators, a last one without one kept."""
    pieces = data.split(separator)
    if pieces[-1] == b"":
        pieces.pop()
    return pieces


class CollectingProducer:
    """Stands in for Producer: keeps what send_batch and send_values are given, in order."""

    def __init__(self, on_send=None):
        self.batches: list[tuple[str, bytes, int, int | None]] = []
        self.on_send = on_send

    def send_batch(self, topic, data, count, partition=None):
        self.batches.append((topic, data, count, partition))
        if self.on_send:
            self.on_send(len(self.batches))

    def send_values(self, topic, values, partition=None):
        """Kept as a batch, in the same sequence as send_batch's."""
        self.send_batch(topic, build_batch_values(values, 0), len(values), partition)

    def values(self) -> list[bytes]:
        out = []
        for _, data, count, _ in self.batches:
            records = decode_records(data)
            assert len(records) == count
            out += [r.value for r in records]
        return out


class Counting:
    def __init__(self):
        self.records = self.bytes = 0

    def add(self, records, nbytes):
        self.records += records
        self.bytes += nbytes


class MixedProducer(CollectingProducer):
    """Counts the send_values calls (records sent from the producing process)."""

    small = 0

    def send_values(self, topic, values, partition=None):
        self.small += 1
        super().send_values(topic, values, partition)

"""The good load of bench/soak.py and its ledger: confluent-kafka producers (acks=all) at a fixed
rate, a consumer reading every partition from the beginning, and the check that every
acknowledged record was consumed exactly once, at the offset it was acknowledged at.

A record's value is b"<producer> <seq> " padded with "x" to VALUE_BYTES; its id is
producer * ID_BASE + seq, seq counting from 0 in each producer. Each producer appends one line
"partition offset id" per acknowledged record to its own file, acked-<producer>.txt in the work
directory, so the ledger's memory does not grow with the run; the consumer keeps, per
partition, an array of the id read at each offset (-1: not read).
"""

from __future__ import annotations

import threading
import time
from array import array
from pathlib import Path

VALUE_BYTES = 100
ID_BASE = 10 ** 12


class Producers:
    """`count` threads, each with its own confluent-kafka Producer (acks=all), sending `rate`
    records a second between them into `topic` until `stop()`; `acked` and `failed` count
    delivery reports."""

    def __init__(self, address: str, topic: str, rate: int, count: int, work_dir: Path):
        self.address, self.topic, self.count = address, topic, count
        self.rate_each = rate / count
        self.work_dir = work_dir
        self._acked = [0] * count
        self._failed = [0] * count
        self.errors: list[str] = []  # the first few delivery errors, for the summary
        self.unflushed = 0
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    @property
    def acked(self) -> int:
        return sum(self._acked)

    @property
    def failed(self) -> int:
        return sum(self._failed)

    def start(self) -> "Producers":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop sending, then wait for every delivery report (at most 120 s)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(180)

    def _run(self, me: int) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.address, "acks": "all", "linger.ms": 5,
                             "message.timeout.ms": 120_000, "client.id": f"soak-{me}", "log.connection.close": False})
        with open(self.work_dir / f"acked-{me}.txt", "w") as ledger:
            def delivered(err, msg) -> None:
                if err is None:
                    self._acked[me] += 1
                    number = int(msg.value().split(b" ", 2)[1])
                    ledger.write(f"{msg.partition()} {msg.offset()} {me * ID_BASE + number}\n")
                else:
                    self._failed[me] += 1
                    if len(self.errors) < 5:
                        self.errors.append(str(err))

            start, seq = time.monotonic(), 0
            while not self._stopping.is_set():
                due = int((time.monotonic() - start) * self.rate_each)
                while seq < due:
                    head = b"%d %d " % (me, seq)
                    try:
                        producer.produce(self.topic, head + b"x" * (VALUE_BYTES - len(head)), callback=delivered)
                    except BufferError:
                        producer.poll(0.05)
                        continue
                    seq += 1
                producer.poll(0.01)
            self.unflushed += producer.flush(120)


class Consumer(threading.Thread):
    """Reads every partition of `topic` from the beginning until `stop()`, recording which id it
    read at which offset; `duplicates` counts offsets read twice and ids read at two offsets."""

    def __init__(self, address: str, topic: str, partitions: int, producers: int):
        super().__init__(daemon=True)
        self.address, self.topic, self.partitions = address, topic, partitions
        self.ids = [array("q") for _ in range(partitions)]
        self.seen = [bytearray() for _ in range(producers)]  # per producer, 1 at each seq read
        self.consumed = self.duplicates = self.errors = 0
        self.error_texts: list[str] = []
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(60)

    def read_through(self, ends: dict[int, int], timeout: float) -> bool:
        """Wait until every partition is read up to `ends` (partition -> next offset)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._read_up_to(p) >= end for p, end in ends.items()):
                return True
            time.sleep(0.2)
        return False

    def _read_up_to(self, partition: int) -> int:
        ids = self.ids[partition]
        return ids.index(-1) if -1 in ids else len(ids)

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.address, "group.id": "soak", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 100, "client.id": "soak-consumer", "log.connection.close": False})
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        try:
            while not self._stopping.is_set():
                for msg in consumer.consume(500, 0.5):
                    if msg.error():
                        self.errors += 1
                        if len(self.error_texts) < 5:
                            self.error_texts.append(str(msg.error()))
                        continue
                    self._record(msg.partition(), msg.offset(), msg.value())
        finally:
            consumer.close()

    def _record(self, partition: int, offset: int, value: bytes) -> None:
        producer, seq = (int(field) for field in value.split(b" ", 2)[:2])
        ids = self.ids[partition]
        if offset >= len(ids):
            ids.extend([-1] * (offset + 1 - len(ids)))
        self.consumed += 1
        if ids[offset] != -1:
            self.duplicates += 1  # the same offset delivered twice
            return
        ids[offset] = producer * ID_BASE + seq
        seen = self.seen[producer]
        if seq >= len(seen):
            seen.extend(bytes(seq + 1 - len(seen) + 4096))
        elif seen[seq]:
            self.duplicates += 1  # the same record at another offset
        seen[seq] = 1


def check(work_dir: Path, producers: int, consumer: Consumer) -> dict:
    """Every line of the acked-*.txt files against what `consumer` read: "lost" counts
    acknowledged records not read at their offset (or another id there), "duplicated" the
    consumer's duplicates, "unacked_read" records read that no acknowledgement names (sent
    but reported failed: not an error of the broker)."""
    lost = acked = 0
    examples: list[str] = []
    for me in range(producers):
        with open(work_dir / f"acked-{me}.txt") as ledger:
            for line in ledger:
                partition, offset, id_ = (int(field) for field in line.split())
                acked += 1
                ids = consumer.ids[partition]
                if offset >= len(ids) or ids[offset] != id_:
                    lost += 1
                    if len(examples) < 5:
                        got = ids[offset] if offset < len(ids) else None
                        examples.append(f"id {id_} acked at {partition}/{offset}, read there: {got}")
    return {"acked": acked, "consumed": consumer.consumed, "lost": lost, "duplicated": consumer.duplicates,
            "unacked_read": consumer.consumed - consumer.duplicates - (acked - lost), "lost_examples": examples}


def acked_ends(work_dir: Path, producers: int, partitions: int) -> dict[int, int]:
    """partition -> one past the highest acknowledged offset (0 where none)."""
    ends = dict.fromkeys(range(partitions), 0)
    for me in range(producers):
        with open(work_dir / f"acked-{me}.txt") as ledger:
            for line in ledger:
                partition, offset, _ = line.split(" ", 2)
                ends[int(partition)] = max(ends[int(partition)], int(offset) + 1)
    return ends

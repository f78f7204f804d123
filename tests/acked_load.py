"""Bounded acks=all loads whose acknowledgements are logged, and reading a topic back, for the
replication tests' acknowledgement checks (tests/ack_log.py).

Every record's value is `PAYLOAD.PADDING`: PAYLOAD is `PREFIX-NNNNNNN`, unique per record
produced (the producer's prefix and its sequence number), PADDING makes the value
`size` bytes; neither holds blanks or newlines, so a value survives kcat's line formats.

* `AckedProducer`: a confluent-kafka (librdkafka) producer in a thread, acks=all, retries
  for as long as `message_timeout_s`; each successful delivery report appends
  (topic, partition, offset, payload) to its acknowledgement log; failed ones are counted by
  error name (and partition); with `client_log`, librdkafka's own debug log of metadata,
  topics, brokers and requests goes to that file. It sends at most `rate` records a second (None: as fast as it can), stops
  after `count` records or at `stop()`, whichever comes first, then waits (bounded) for
  what is in flight. `with running(*producers):` starts them and, on leaving, stops and
  joins them (giving up on what is in flight at once when the block failed).
* `kcat_produce`: kcat -P with acks=all; kcat reports neither partitions nor offsets, so an
  exit status of 0 with no "Delivery failed" acknowledges every payload (partition and
  offset unknown).
* `read_back`: kcat -C -e from the beginning of every partition up to the end a consumer
  sees (the high watermark), as `Position`s; `read_back_confluent` the same with a
  confluent-kafka consumer (until it has `count` records or `timeout` passes).
* `topic_metadata`: confluent-kafka's Metadata view of a topic's partitions (leader,
  replicas, isrs); `fully_replicated` that view once every partition has a leader and
  all its in-sync replicas.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
from contextlib import contextmanager
import time
from pathlib import Path

from ack_log import AckWriter, Position


def payload(prefix: str, number: int) -> str:
    return f"{prefix}-{number:07d}"


def value(prefix: str, number: int, size: int = 40) -> bytes:
    """The record value for `payload(prefix, number)`, padded with dots to `size` bytes."""
    text = payload(prefix, number).encode() + b"."
    return text + b"x" * max(0, size - len(text))


def payload_of(raw: bytes) -> str:
    return raw.split(b".", 1)[0].decode()


class AckedProducer(threading.Thread):
    """An acks=all confluent-kafka producer logging every acknowledgement (see above)."""

    def __init__(self, bootstrap: str, topic: str, ack_path: Path, prefix: str, count: int,
                 message_timeout_s: float = 60, config: dict | None = None, size: int = 40,
                 rate: float | None = None, client_log: Path | None = None):
        super().__init__(name=f"producer-{prefix}", daemon=True)
        self.topic, self.prefix, self.count, self.size, self.rate = topic, prefix, count, size, rate
        self.log = AckWriter(ack_path)
        self.config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                       "message.timeout.ms": int(message_timeout_s * 1000), "retry.backoff.ms": 100,
                       "retry.backoff.max.ms": 500, "topic.metadata.refresh.interval.ms": 1000,
                       "queue.buffering.max.messages": 200_000, **(config or {})}
        self.client_log = client_log
        if client_log is not None:
            self.config.update({"debug": "metadata,topic,broker,protocol", "log_level": 7})
        self.flush_s = message_timeout_s + 10
        self.sent = 0
        self.acked_in: collections.Counter[int] = collections.Counter()  # partition -> acknowledged
        self.errors: collections.Counter[str] = collections.Counter()  # error name -> failed deliveries
        self.failed_in: collections.Counter[int] = collections.Counter()  # partition -> failed deliveries
        self.unflushed = 0
        self._stopping = threading.Event()
        self._acked = threading.Condition()

    @property
    def acked(self) -> int:
        return self.log.count

    def stop(self, flush_s: float | None = None) -> None:
        """Send nothing more; wait up to `flush_s` (default: the message timeout and 10 s) for
        what is in flight (a failed test gives up on it sooner)."""
        if flush_s is not None:
            self.flush_s = flush_s
        self._stopping.set()

    def wait_acked(self, at_least: int, timeout: float, partition: int | None = None) -> bool:
        """Wait until `at_least` records are acknowledged in all (or in `partition`); False
        after `timeout`."""
        def reached():
            return (self.log.count if partition is None else self.acked_in[partition]) >= at_least

        with self._acked:
            return self._acked.wait_for(reached, timeout)

    def _delivered(self, err, msg) -> None:
        if err is None:
            with self._acked:
                self.log.ack(msg.topic(), msg.partition(), msg.offset(), payload_of(msg.value()))
                self.acked_in[msg.partition()] += 1
                self._acked.notify_all()
        else:
            self.errors[err.name()] += 1
            self.failed_in[msg.partition()] += 1

    def _logger(self) -> logging.Logger:
        logger = logging.getLogger(f"librdkafka.{self.name}.{id(self)}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(logging.FileHandler(self.client_log))
        return logger

    def client_log_tail(self, words: str, lines: int = 15) -> str:
        """The last `lines` lines of the client log holding `words` (for failure messages)."""
        if self.client_log is None or not self.client_log.exists():
            return ""
        found = [line for line in self.client_log.read_text(errors="replace").splitlines() if words in line]
        return f"librdkafka ({self.client_log}), last lines with {words!r}:\n" + "\n".join(found[-lines:])

    def run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(self.config, **({"logger": self._logger()} if self.client_log else {}))
        started = time.monotonic()
        try:
            for number in range(self.count):
                if self.rate and number % 100 == 0:  # pace: never ahead of `rate` records a second
                    self._stopping.wait(max(0.0, started + number / self.rate - time.monotonic()))
                if self._stopping.is_set():
                    break
                record = value(self.prefix, number, self.size)
                while not self._stopping.is_set():
                    try:
                        producer.produce(self.topic, record, on_delivery=self._delivered)
                        self.sent += 1
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            self.unflushed = producer.flush(self.flush_s)
        finally:
            self.log.close()


@contextmanager
def running(*producers: AckedProducer):
    for producer in producers:
        producer.start()
    try:
        yield producers
    except BaseException:
        for producer in producers:
            producer.stop(flush_s=1)
        raise
    finally:
        for producer in producers:
            producer.stop()
        for producer in producers:
            producer.join(producer.flush_s + 30)


def kcat_produce(bootstrap: str, topic: str, prefix: str, count: int, timeout: float = 120,
                 size: int = 40) -> list[Position]:
    """Produce `count` records with kcat (acks=all); their acknowledgements (see above)."""
    lines = b"".join(value(prefix, n, size) + b"\n" for n in range(count))
    done = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-X", "acks=all", "-X", "linger.ms=5",
                           "-X", "message.timeout.ms=60000"], input=lines, capture_output=True, timeout=timeout)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0 and "Delivery failed" not in stderr, f"kcat -P: {stderr[-2000:]}"
    return [Position(topic, None, None, payload(prefix, n)) for n in range(count)]


def read_back(bootstrap: str, topic: str, timeout: float = 120) -> list[Position]:
    """Every record of `topic` a consumer sees now, from the beginning of each partition."""
    done = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                           "-f", "%p %o %s\n"], capture_output=True, timeout=timeout)
    assert done.returncode == 0, f"kcat -C: {done.stderr.decode(errors='replace')[-2000:]}"
    found = []
    for line in done.stdout.splitlines():
        partition, offset, raw = line.split(b" ", 2)
        found.append(Position(topic, int(partition), int(offset), payload_of(raw)))
    return found


def read_back_confluent(bootstrap: str, topic: str, count: int, timeout: float = 120) -> list[Position]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-back", "enable.auto.commit": False,
                         "enable.partition.eof": False})
    try:
        partitions = sorted(topic_metadata(bootstrap, topic))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found, deadline = [], time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                assert msg.error() is None, msg.error()
                found.append(Position(topic, msg.partition(), msg.offset(), payload_of(msg.value())))
        return found
    finally:
        consumer.close()


def topic_metadata(bootstrap: str, topic: str) -> dict:
    """{partition: confluent_kafka PartitionMetadata} of `topic`; {} while it is unknown."""
    from confluent_kafka.admin import AdminClient

    found = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics.get(topic)
    return {} if found is None or found.error is not None else found.partitions


def fully_replicated(bootstrap: str, topic: str, partitions: int, replicas: int) -> dict | None:
    """`topic_metadata` once `topic` has `partitions` partitions, each with a leader and
    `replicas` in-sync replicas; None before."""
    found = topic_metadata(bootstrap, topic)
    ready = len(found) == partitions and all(p.leader >= 0 and len(p.isrs) == replicas and not p.error
                                             for p in found.values())
    return found if ready else None

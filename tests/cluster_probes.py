"""What the failover tests probe a cluster with, beside the loads of tests/acked_load.py:

* `RawProduce`: one Produce v7 request on a connection of its own, its answer read later (a
  broker can be SIGSTOPped between the connection and the request);
* `RacingConsumer`: a consumer reading a partition as it grows, checking every record it gets
  against the replicas' files (tests/replica_compare.py's `log_bounds`): a consumer must never
  see a record above the high watermark.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

from ack_log import Position
from acked_load import payload_of
from logship import records
from logship.protocol import ApiKey, framing
from replica_compare import log_bounds


class RawProduce:
    """One Produce v7 request on a connection of its own, its answer read later: the
    connection can be made before a broker is SIGSTOPped and the request written while it
    sleeps (it lies in the socket until the broker runs again)."""

    def __init__(self, address: str, timeout_s: float = 30):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)

    def send(self, topic: str, partition: int, values: list[bytes], acks: int = -1,
             timeout_ms: int = 3000) -> "RawProduce":
        batch = records.build_batch([(int(time.time() * 1000), None, v, ()) for v in values])
        body = {"transactional_id": None, "acks": acks, "timeout_ms": timeout_ms,
                "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}]}
        self.sock.sendall(framing.encode_request(ApiKey.PRODUCE, 7, 1, "raw-produce", body))
        return self

    def error_code(self) -> int:
        """The partition's error code in the answer (the socket's timeout bounds the wait)."""
        try:
            size = struct.unpack(">i", self._exactly(4))[0]
            _, response = framing.decode_response(ApiKey.PRODUCE, 7, self._exactly(size))
        finally:
            self.sock.close()
        return response["responses"][0]["partition_responses"][0]["error_code"]

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the broker closed the connection without answering"
            data += chunk
        return data


class RacingConsumer(threading.Thread):
    """A confluent-kafka consumer of partition 0 from the beginning, checking each record it
    gets against the replicas' files: a record below the high watermark is on every in-sync
    replica, so when it arrives every replica's log end is already above its offset (log ends
    only grow while nothing is truncated)."""

    def __init__(self, bootstrap: str, topic: str, dirs: dict[int, Path]):
        super().__init__(name="racing-consumer", daemon=True)
        self.bootstrap, self.topic, self.dirs = bootstrap, topic, dirs
        self.consumed: list[Position] = []
        self.violations: list[str] = []
        self.checks = 0
        self._stopping = threading.Event()

    @property
    def count(self) -> int:
        return len(self.consumed)

    @property
    def max_offset(self) -> int:
        return self.consumed[-1].offset if self.consumed else -1

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "racer", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 50, "topic.metadata.refresh.interval.ms": 1000})
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            while not self._stopping.is_set():
                messages = [m for m in consumer.consume(10_000, 0.1) if m.error() is None]
                if not messages:
                    continue
                self.consumed += [Position(self.topic, 0, m.offset(), payload_of(m.value())) for m in messages]
                top = messages[-1].offset()
                ends = {b: log_bounds(d)[1] for b, d in self.dirs.items()}
                self.checks += 1
                if any(end <= top for end in ends.values()):
                    self.violations.append(f"read offset {top} while the replicas end at {ends}")
        finally:
            consumer.close()

"""SIGTERM under acks=all load: the broker stops reading, answers every request it has read,
then exits within --shutdown-timeout. After a restart every acknowledged record is there and
no record the client was told had failed is (that one would be a duplicate on a retry)."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import wait_until
from kafka_clients import Message, consume, create_topic, produce

pytestmark = pytest.mark.integration

TOPIC = "load"
SHUTDOWN_TIMEOUT_S = 10


class Load:
    """A producer thread with acks=all and no retries, sending numbered records until told to
    stop; every record ends in `acked` or `failed`."""

    def __init__(self, client: str, address: str, limit: int = 200_000, config: dict | None = None):
        self.client, self.address, self.limit, self.config = client, address, limit, config or {}
        self.sent = 0
        self.acked: set[int] = set()
        self.failed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=getattr(self, "_run_" + client.replace("-", "_")), daemon=True)

    def start(self) -> "Load":
        self._thread.start()
        return self

    def stop(self, timeout: float = 60) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the producer did not finish"

    def _outcome(self, i: int, error) -> None:
        with self._lock:
            if error is None:
                self.acked.add(i)
            else:
                self.failed[i] = str(error)

    def _run_confluent(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.address, "acks": "all", "retries": 0, "linger.ms": 1,
                             "batch.num.messages": 50, "max.in.flight.requests.per.connection": 5,
                             "message.timeout.ms": 8000, "enable.idempotence": False,
                             "reconnect.backoff.ms": 100, "compression.type": "none", **self.config})
        while self.sent < self.limit and not self._stop.is_set():
            try:
                producer.produce(TOPIC, b"%08d" % self.sent,
                                 on_delivery=lambda err, msg, i=self.sent: self._outcome(i, err))
                self.sent += 1
            except BufferError:
                producer.poll(0.01)
            if self.sent % 100 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0

    def _run_kafka_python(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.address, acks="all", retries=0, linger_ms=1,
                                 batch_size=4096, max_in_flight_requests_per_connection=5,
                                 request_timeout_ms=5000, delivery_timeout_ms=8000, max_block_ms=2000,
                                 reconnect_backoff_ms=100)
        while self.sent < self.limit and not self._stop.is_set():
            i = self.sent
            try:
                future = producer.send(TOPIC, b"%08d" % i)
            except Exception as exc:  # noqa: BLE001 - a send refused at once is a failure too
                self._outcome(i, exc)
            else:
                future.add_callback(lambda _, i=i: self._outcome(i, None))
                future.add_errback(lambda exc, i=i: self._outcome(i, exc))
            self.sent += 1
        producer.flush(30)
        producer.close(0)


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_sigterm_under_acks_all_load_answers_what_it_read(start_broker, tmp_path, client):
    data = tmp_path / "data"
    broker = start_broker("--shutdown-timeout", f"{SHUTDOWN_TIMEOUT_S}s", data_dir=data)
    load = Load(client, broker.address).start()
    assert wait_until(lambda: len(load.acked) >= 5000, 60), f"only {len(load.acked)} acknowledged"

    stopping = time.monotonic()
    broker.proc.send_signal(15)
    code = broker.proc.wait(SHUTDOWN_TIMEOUT_S + 10)
    exit_s = time.monotonic() - stopping
    time.sleep(0.5)  # the producer keeps trying against the stopped broker for a moment
    load.stop()

    assert code == 0, broker.log()[-3000:]
    assert exit_s < SHUTDOWN_TIMEOUT_S + 3, f"the broker took {exit_s:.1f} s to exit"
    assert len(load.acked) + len(load.failed) == load.sent, "some records got no outcome"
    assert load.failed, "the load ended before the broker stopped: nothing was tested"
    log = broker.log()
    assert "Traceback" not in log, log[-3000:]
    assert "shutting down" in log

    restarted = start_broker(data_dir=data)
    assert "not closed cleanly" not in restarted.log()
    stored = [int(r.value) for r in consume("confluent", restarted.address, TOPIC, len(load.acked), timeout=60)]
    present = set(stored)
    assert len(stored) == len(present), f"{len(stored) - len(present)} records stored twice"
    lost = load.acked - present
    assert not lost, f"{len(lost)} acknowledged records are missing, e.g. {sorted(lost)[:5]}"
    unanswered = present - load.acked
    assert not unanswered, (f"{len(unanswered)} records were stored but their request failed "
                            f"(a retry would duplicate them), e.g. "
                            f"{[(i, load.failed.get(i)) for i in sorted(unanswered)[:3]]}")


def test_a_restart_under_load_with_retries_duplicates_nothing(start_broker, tmp_path):
    """The agent's case: a producer that retries, the broker stopped with SIGTERM and started
    again on the same port. Every record arrives, once."""
    data = tmp_path / "data"
    broker = start_broker("--shutdown-timeout", f"{SHUTDOWN_TIMEOUT_S}s", data_dir=data)
    load = Load("confluent", broker.address, limit=40_000,
                config={"retries": 1000, "retry.backoff.ms": 100, "message.timeout.ms": 60_000,
                        "queue.buffering.max.messages": 2000}).start()
    assert wait_until(lambda: len(load.acked) >= 5000, 60), f"only {len(load.acked)} acknowledged"
    broker.proc.send_signal(15)
    acked_before_stop = len(load.acked)
    assert broker.proc.wait(SHUTDOWN_TIMEOUT_S + 10) == 0
    restarted = start_broker("--listen", broker.address, data_dir=data)
    assert wait_until(lambda: load.sent >= load.limit, 60), f"only {load.sent} sent"
    load.stop(timeout=90)  # flush: waits for every outcome
    assert acked_before_stop < load.limit - 5000, "the load ended before the broker stopped: nothing was tested"
    assert not load.failed, list(load.failed.items())[:3]
    assert len(load.acked) == load.sent
    stored = [int(r.value) for r in consume("confluent", restarted.address, TOPIC, load.sent, timeout=60)]
    duplicated = len(stored) - len(set(stored))
    assert duplicated == 0, f"{duplicated} records stored twice"
    assert set(stored) == set(range(load.sent))


def _read_response(sock, api_key: int, version: int) -> tuple[int, dict]:
    import struct

    from logship.protocol import framing

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the broker closed the connection without an answer"
            data += chunk
        return data

    size = struct.unpack(">i", exactly(4))[0]
    return framing.decode_response(api_key, version, exactly(size))


def test_sigterm_answers_long_polls_and_held_joins_at_once(start_broker, tmp_path):
    import socket

    from logship.protocol import ApiKey, framing

    broker = start_broker("--shutdown-timeout", "20s", "--group-initial-rebalance-delay", "30s",
                          data_dir=tmp_path / "data")
    create_topic(broker.address, "idle", 1)
    fetch = {"max_wait_ms": 30_000, "min_bytes": 1 << 20, "max_bytes": 1 << 20, "isolation_level": 0,
             "topics": [{"topic": "idle", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                          "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}]}
    join = {"group_id": "waiting", "session_timeout_ms": 30_000, "rebalance_timeout_ms": 60_000, "member_id": "",
            "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]}
    with socket.create_connection((broker.host, broker.port), timeout=15) as fetcher, \
            socket.create_connection((broker.host, broker.port), timeout=15) as joiner:
        fetcher.sendall(framing.encode_request(ApiKey.FETCH, 5, 7, "fetcher", fetch))
        joiner.sendall(framing.encode_request(ApiKey.JOIN_GROUP, 2, 8, "joiner", join))
        time.sleep(0.5)  # both are held by the broker now (30 s wait, 30 s rebalance delay)
        stopping = time.monotonic()
        broker.proc.send_signal(15)
        correlation, body = _read_response(fetcher, ApiKey.FETCH, 5)
        assert correlation == 7 and body["responses"][0]["partitions"][0]["error_code"] == 0
        correlation, body = _read_response(joiner, ApiKey.JOIN_GROUP, 2)
        assert correlation == 8 and body["error_code"] == 16  # NOT_COORDINATOR: find it again, rejoin
        answered_s = time.monotonic() - stopping
        assert fetcher.recv(1) == b"" and joiner.recv(1) == b""  # then the broker closes them
    assert broker.proc.wait(20) == 0
    exit_s = time.monotonic() - stopping
    assert answered_s < 2 and exit_s < 5, (answered_s, exit_s)
    assert "Traceback" not in broker.log()


@pytest.mark.parametrize("signals", [1, 2])
def test_a_client_that_reads_nothing_is_cut_at_the_deadline_or_the_second_signal(start_broker, tmp_path, signals):
    import socket

    from logship.protocol import ApiKey, framing

    broker = start_broker("--shutdown-timeout", "2s" if signals == 1 else "60s", data_dir=tmp_path / "data")
    produce("confluent", broker.address, "big", [Message(None, b"%06d" % i + b"x" * 4000, ()) for i in range(8000)])
    fetch = {"max_wait_ms": 0, "min_bytes": 1, "max_bytes": 64 << 20, "isolation_level": 0,
             "topics": [{"topic": "big", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                         "log_start_offset": -1, "partition_max_bytes": 64 << 20}]}]}
    with socket.socket() as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect((broker.host, broker.port))
        stuck.sendall(b"".join(framing.encode_request(ApiKey.FETCH, 5, cid, "stuck", fetch) for cid in range(3)))
        time.sleep(0.5)  # ~32 MB of responses, none read
        stopping = time.monotonic()
        broker.proc.send_signal(15)
        if signals == 2:
            time.sleep(0.5)
            broker.proc.send_signal(15)
        assert broker.proc.wait(15) == 0
        exit_s = time.monotonic() - stopping
    log = broker.log()
    if signals == 1:
        assert 1.5 < exit_s < 5, exit_s
        assert "shutdown: cutting 1 connection(s) not done within 2 s" in log, log[-2000:]
    else:
        assert exit_s < 3, exit_s
        assert "shutting down at once" in log
    assert "Traceback" not in log, log[-3000:]

"""logship's commands keep asking while a topic they may auto-create is not ready yet, as
Apache Kafka makes them do: its Metadata answers UNKNOWN_TOPIC_OR_PARTITION (or
LEADER_NOT_AVAILABLE, or partitions without a leader) until the new topic is ready.

`SlowCreation` stands between the commands and a real `logship serve`: it forwards every
request, except that Metadata about the topics it was told to hold back answers "not ready"
the first N times a request allows auto-creation (without passing that topic on, so the
real broker creates it only afterwards). Each command must succeed on its first try; a topic
that never appears ends with one clear line and exit 4 within the bound."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from agent_processes import AgentProcess, write_config
from agent_processes import consume as agent_consume
from conftest import ROOT
from fake_broker import ScriptedServer
from logship.client import Cluster
from logship.client.cluster import DEFAULT_TOPIC_WAIT
from logship.client.connection import Connection
from logship.errors import DeliveryError, LeaderNotAvailableError, UnknownTopicError
from logship.protocol import ApiKey, encode_response

pytestmark = pytest.mark.integration

UNKNOWN, NO_LEADER_CODE, NO_LEADER = "unknown topic", "leader not available", "leader -1"


class SlowCreation(ScriptedServer):
    """A forwarding proxy to `upstream` that holds back the topics in `held` (see the module
    docstring): `mode` says how it answers, `times` how often (None: for ever); with
    `lookups` also requests that do not allow creation are held (a topic without leaders)."""

    def __init__(self, upstream: str, held: set[str], mode: str, times: int | None, lookups: bool = False):
        super().__init__({})
        self.upstream = upstream.rsplit(":", 1)
        self.held, self.mode, self.times, self.lookups = held, mode, times, lookups
        self.not_ready_answers = 0
        self.asked_without_creation: list[str] = []
        self._lock = threading.Lock()

    def serve(self, conn):
        up = Connection(self.upstream[0], int(self.upstream[1]), None)
        try:
            for request in self.incoming(conn):
                conn.sendall(self.forward(up, request))
        finally:
            up.close()

    def forward(self, up: Connection, request) -> bytes:
        key, version, body = request.api_key, request.api_version, request.body
        assert not (key == ApiKey.PRODUCE and body["acks"] == 0), "acks=0 is not proxied"
        if key == ApiKey.METADATA:
            answer = self._metadata(up, version, body)
        else:
            answer = up.request(key, body, version=version)
        if key == ApiKey.FIND_COORDINATOR:
            for entry in [answer, *answer.get("coordinators", ())]:
                if "port" in entry:
                    entry.update(host="127.0.0.1", port=self.port)
        return encode_response(key, version, request.correlation_id, answer)

    def _holding(self, name: str, creating: bool) -> bool:
        if name not in self.held:
            return False
        with self._lock:
            if not creating:
                self.asked_without_creation.append(name)
                if not self.lookups:
                    return False
            if self.times is not None and self.not_ready_answers >= self.times:
                return False
            self.not_ready_answers += 1
            return True

    def _metadata(self, up: Connection, version: int, body: dict) -> dict:
        asked = body["topics"]
        creating = body.get("allow_auto_topic_creation", True)
        holding = {t["name"] for t in asked or () if self._holding(t["name"], creating)}
        forwarded = dict(body)
        if self.mode == UNKNOWN and asked is not None:
            forwarded["topics"] = [t for t in asked if t["name"] not in holding]  # not created upstream yet
        answer = up.request(ApiKey.METADATA, forwarded, version=version)
        for broker in answer["brokers"]:
            broker.update(host="127.0.0.1", port=self.port)
        topics = [t for t in answer["topics"] if t["name"] not in holding or self.mode != UNKNOWN]
        for entry in topics:
            if entry["name"] in holding and self.mode == NO_LEADER_CODE:
                entry.update(error_code=5, partitions=[])
            elif entry["name"] in holding:
                for partition in entry["partitions"]:
                    partition.update(leader_id=-1, error_code=5)
        if self.mode == UNKNOWN:
            topics += [{"error_code": 3, "name": name, "is_internal": False, "partitions": []} for name in holding]
        answer["topics"] = topics
        return answer


@pytest.fixture
def slow(broker):
    made = []

    def make(held, mode=UNKNOWN, times=3, lookups=False):
        proxy = SlowCreation(broker.address, set(held), mode, times, lookups)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def logship(*args, input: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", *map(str, args)], input=input, capture_output=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def values(address: str, topic: str, count: int) -> list[bytes]:
    out = subprocess.run(["kcat", "-C", "-b", address, "-t", topic, "-o", "beginning", "-e", "-q", "-c", str(count)],
                         capture_output=True, check=True, timeout=60).stdout
    return out.splitlines()


@pytest.mark.parametrize("mode", [UNKNOWN, NO_LEADER_CODE, NO_LEADER])
def test_produce_into_a_topic_being_created_succeeds_first_time(broker, slow, mode):
    proxy = slow({"fresh"}, mode)
    lines = [b"line-%d" % i for i in range(50)]
    result = logship("produce", "fresh", "-b", proxy.address, input=b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    assert proxy.not_ready_answers == 3 and proxy.asked_without_creation == []
    assert values(broker.address, "fresh", 50) == lines


def test_produce_json_into_a_topic_being_created_succeeds_first_time(broker, slow):
    proxy = slow({"fresh-json"}, UNKNOWN, times=4)
    result = logship("produce", "fresh-json", "-b", proxy.address, "--json",
                     input=b"".join(b'{"key": "k", "value": "v%d"}\n' % i for i in range(10)))
    assert result.returncode == 0, result.stderr
    assert proxy.not_ready_answers == 4 and proxy.asked_without_creation == []
    assert values(broker.address, "fresh-json", 10) == [b"v%d" % i for i in range(10)]


def test_replay_into_a_topic_being_created_succeeds_first_time(broker, slow):
    source = [b"old-%d" % i for i in range(30)]
    assert logship("produce", "source", "-b", broker.address, input=b"\n".join(source) + b"\n").returncode == 0
    proxy = slow({"copy"}, UNKNOWN, times=3)
    result = logship("replay", "source", "-b", proxy.address, "--from", "beginning", "--into", "copy")
    assert result.returncode == 0, result.stderr
    assert proxy.not_ready_answers == 3 and proxy.asked_without_creation == []
    assert sorted(values(broker.address, "copy", 30)) == sorted(source)


def test_the_agent_ships_into_a_topic_being_created(broker, slow, tmp_path):
    proxy = slow({"agent-logs"}, UNKNOWN, times=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b"".join(b"agent-%d\n" % i for i in range(20)))
    agent = AgentProcess(write_config(tmp_path, SimpleNamespace(address=proxy.address), [str(logs / "*.log")],
                                      topic="agent-logs", retry_backoff_max="200ms"))
    try:
        got = agent_consume(broker.address, "agent-logs", 20, timeout=30, idle=0.5)
        assert sorted(value for value, _ in got) == sorted(b"agent-%d" % i for i in range(20)), agent.log()
    finally:
        assert agent.stop() == 0, agent.log()
    assert proxy.not_ready_answers == 3 and proxy.asked_without_creation == []


def test_a_topic_that_never_appears_ends_with_one_line_and_exit_4(broker, slow):
    proxy = slow({"never"}, UNKNOWN, times=None)
    started = time.monotonic()
    result = logship("produce", "never", "-b", proxy.address, input=b"x\n")
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert lines[0] == "logship: waiting for topic 'never' to be created...", lines  # after a second
    assert len(lines) == 2 and "'never'" in lines[1] and "does not exist" in lines[1], lines
    assert proxy.not_ready_answers > 3  # it kept asking ...
    assert DEFAULT_TOPIC_WAIT - 1 < elapsed < DEFAULT_TOPIC_WAIT + 10  # ... for the bound, not for ever


def test_the_library_waits_for_leaders_but_not_for_unknown_topics_it_may_not_create(broker, slow):
    assert logship("produce", "led", "-b", broker.address, input=b"x\n").returncode == 0
    proxy = slow({"absent"}, UNKNOWN, times=None)
    with Cluster(proxy.address, topic_wait=5) as cluster:
        started = time.monotonic()
        with pytest.raises(UnknownTopicError, match="'absent' does not exist"):
            cluster.topic("absent")  # a consumer's look-up: no creation allowed, no waiting
        assert time.monotonic() - started < 1 and proxy.not_ready_answers == 0
    for mode in (NO_LEADER, NO_LEADER_CODE):
        proxy = slow({"led"}, mode, times=3, lookups=True)
        with Cluster(proxy.address, topic_wait=5) as cluster:
            meta = cluster.topic("led")  # exists, no leader yet: a consumer waits too
            assert proxy.not_ready_answers == 3 and meta.partitions[0].leader >= 0
    proxy = slow({"led"}, NO_LEADER, times=None, lookups=True)
    with Cluster(proxy.address, topic_wait=1) as cluster:
        started = time.monotonic()
        with pytest.raises(LeaderNotAvailableError, match="'led' has no leader for partition 0 yet after"):
            cluster.topic("led")
        assert 0.5 < time.monotonic() - started < 3


def test_produce_into_a_missing_topic_without_auto_creation_says_it_waits_and_what_to_do(start_broker, tmp_path):
    closed = start_broker("--no-auto-create", data_dir=tmp_path / "closed")
    started = time.monotonic()
    result = logship("produce", "nope", "-b", closed.address, "--timeout", "2.5", input=b"x\n")
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr.decode(), lines
    assert lines[0] == "logship: waiting for topic 'nope' to be created...", lines
    assert "'nope' does not exist and the broker did not create it within 2.5 s" in lines[1], lines
    assert "logship topics create nope" in lines[1] and "auto-creation" in lines[1], lines
    assert elapsed < 2.5 + 4  # --timeout bounds the wait


def test_the_sender_thread_does_not_wait_on_one_topic_while_others_have_batches(broker, slow):
    from logship.client.producer import Producer
    from logship.record_codec import encode_values

    assert logship("produce", "led", "-b", broker.address, input=b"x\n").returncode == 0
    proxy = slow({"never"}, UNKNOWN, times=None)
    outcomes: dict[str, tuple[float, object]] = {}
    with Cluster(proxy.address, topic_wait=4) as cluster:
        producer = Producer(cluster, linger_ms=0)
        producer.partitions("led")
        started = time.monotonic()
        for topic in ("never", "led"):
            records = encode_values([b"v"])
            producer.send_encoded(topic, 0, records, 1, timestamp_ms=int(time.time() * 1000),
                                  on_delivery=lambda error, t=topic: outcomes.setdefault(
                                      t, (time.monotonic() - started, error)))
        deadline = time.monotonic() + 10
        while "never" not in outcomes and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(DeliveryError):
            producer.close(timeout=1)
    assert outcomes["led"][1] is None and outcomes["led"][0] < 1.5, outcomes  # not held up by "never"
    waited, error = outcomes["never"]
    assert isinstance(error, UnknownTopicError) and "did not create it within 4 s" in str(error), error
    assert 3.5 < waited < 8, waited

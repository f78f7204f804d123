"""Client library pieces without a broker: offset grammar, partitioner, broker lists, acks,
the fetch decoder against records.iter_records, and connections to fake brokers."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from datetime import datetime, timezone

import pytest
from fake_broker import recv_exactly
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from logship import records
from logship.client import OffsetSpec, default_brokers, murmur2, parse_acks, parse_brokers, parse_offset
from logship.client.connection import Connection
from logship.client.fetched import ConsumedRecord, decode, scan
from logship.client.partitioner import StickyPartitioner, partition_for_key
from logship.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from logship.errors import BrokerUnavailableError, CorruptRecordError, FrameTooLargeError, ProtocolError
from logship.protocol import ApiKey, encode_response

NOW = 1_800_000_000_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# --- offset grammar ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("beginning", OffsetSpec("beginning")), ("earliest", OffsetSpec("beginning")), ("end", OffsetSpec("end")),
    ("latest", OffsetSpec("end")), ("stored", OffsetSpec("stored")), ("0", OffsetSpec("offset", 0)),
    ("42", OffsetSpec("offset", 42)), (" 7 ", OffsetSpec("offset", 7)), ("-100", OffsetSpec("from_end", 100)),
    (12, OffsetSpec("offset", 12)), (-3, OffsetSpec("from_end", 3)),
    ("@2026-11-24T10:00:00Z", OffsetSpec("timestamp", ms("2026-11-24T10:00:00+00:00"))),
    ("@2026-11-24T10:00Z", OffsetSpec("timestamp", ms("2026-11-24T10:00:00+00:00"))),
    ("@2026-11-24T10:00:00.250Z", OffsetSpec("timestamp", ms("2026-11-24T10:00:00+00:00") + 250)),
    ("@2026-11-24T11:00:00+01:00", OffsetSpec("timestamp", ms("2026-11-24T10:00:00+00:00"))),
    ("@1764000000000", OffsetSpec("timestamp", 1764000000000)),
    ("@-1h", OffsetSpec("timestamp", NOW - 3_600_000)), ("@-15m", OffsetSpec("timestamp", NOW - 900_000)),
    ("@-30s", OffsetSpec("timestamp", NOW - 30_000)), ("@-2d", OffsetSpec("timestamp", NOW - 172_800_000)),
    ("@-1h30m", OffsetSpec("timestamp", NOW - 5_400_000)), ("@-250ms", OffsetSpec("timestamp", NOW - 250)),
])
def test_offset_grammar(text, expected):
    assert parse_offset(text, now_ms=NOW) == expected


def test_times_without_a_zone_are_local_and_dates_are_midnight():
    local = datetime(2026, 11, 24, 10, 0).astimezone()
    assert parse_offset("@2026-11-24T10:00").value == int(local.timestamp() * 1000)
    midnight = datetime(2026, 11, 24).astimezone()
    assert parse_offset("@2026-11-24").value == int(midnight.timestamp() * 1000)


def test_relative_times_are_relative_to_now():
    before = int(time.time() * 1000)
    spec = parse_offset("@-1m")
    assert before - 60_000 <= spec.value <= int(time.time() * 1000) - 60_000


@pytest.mark.parametrize("text", ["", "begining", "1.5", "--5", "@", "@yesterday", "@-1x", "@2026-13-01", "+5", "@-h"])
def test_bad_offsets_say_what_is_valid(text):
    with pytest.raises(ValueError, match=r"@2026-11-24T10:00|beginning"):
        parse_offset(text)


def test_offset_spec_round_trips_through_str():
    for text in ("beginning", "end", "stored", "42", "-5", "@1764000000000"):
        assert str(parse_offset(text)) == text


# --- partitioner, brokers, acks ------------------------------------------------------------------

def test_murmur2_matches_kafka_python_for_every_length_and_tail():
    for length in range(0, 70):
        for seed in range(20):
            data = os.urandom(length) if seed else bytes(length)
            assert murmur2(data) == kafka_python_murmur2(data) & 0xFFFFFFFF, data


def test_murmur2_known_java_values():
    # The cases of Apache Kafka's UtilsTest.testMurmur2 (Java ints).
    assert murmur2(b"21") - (1 << 32) == -973932308
    assert murmur2(b"foobar") - (1 << 32) == -790332482
    assert murmur2(b"a-little-bit-long-string") - (1 << 32) == -985981536
    assert murmur2(b"a-little-bit-longer-string") - (1 << 32) == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") - (1 << 32) == -58897971
    assert murmur2(b"abc") == 479470107


def test_partition_for_key_is_kafkas_default():
    for i in range(500):
        key = b"key-%d" % i
        for partitions in (1, 3, 7, 12):
            expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions
            assert partition_for_key(key, partitions) == expected
            assert partition_for_key(bytearray(key), partitions) == expected


def test_sticky_partitioner_moves_on_when_a_batch_closes():
    sticky = StickyPartitioner()
    first = sticky.partition("t", 3)
    assert sticky.partition("t", 3) == first
    sticky.next_batch("t", 3, (first + 1) % 3)  # another partition's batch: no move
    assert sticky.partition("t", 3) == first
    seen = []
    for _ in range(6):
        seen.append(sticky.partition("t", 3))
        sticky.next_batch("t", 3, seen[-1])
    assert seen == [(first + i) % 3 for i in range(6)]


def test_broker_lists(monkeypatch):
    monkeypatch.delenv("LOGSHIP_BROKERS", raising=False)
    assert default_brokers() == "127.0.0.1:9092"
    monkeypatch.setenv("LOGSHIP_BROKERS", "10.0.0.1:9093")
    assert default_brokers() == "10.0.0.1:9093"
    assert default_brokers("h:1") == "h:1"
    assert default_brokers(["a:1", "b:2"]) == "a:1,b:2"
    assert parse_brokers("a:1, b:2,[::1]:9093,c") == [("a", 1), ("b", 2), ("::1", 9093), ("c", 9092)]
    for bad in ("a:b", "a:0", ":9092", "::1:9092", "a:99999", ","):
        with pytest.raises(ValueError):
            parse_brokers(bad)


def test_acks():
    assert [parse_acks(a) for a in ("all", "-1", -1, "1", 1, "0", 0)] == [-1, -1, -1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="0, 1 or all"):
        parse_acks("2")


# --- fetch decoding ------------------------------------------------------------------------------

def _expected(buf, start=0, stop=None):
    return [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records.iter_records(buf)
            if r.offset >= start and (stop is None or r.offset < stop)]


def _got(chunk):
    return [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in chunk]


def _mixed_batches(codec: int) -> bytes:
    """Simple batches, keyed ones, headers, big values and timestamps, a compacted batch."""
    now = NOW
    out = [records.build_batch_values([b"v%d" % i for i in range(100)], now, codec, base_offset=0),
           records.build_batch([(now + i * 7, b"k%d" % i if i % 2 else None, b"x" * (i * 97), [("h", b"1"), ("n", None)])
                                for i in range(30)], compression=codec, base_offset=100),
           records.build_batch([(now - 5, None, None, ()), (now + 10**6, b"", b"", ())], compression=codec,
                               base_offset=130),
           records.build_batch_values([b"w" * 20000], now, codec, base_offset=132)]
    return b"".join(out)


@pytest.mark.parametrize("codec", [NONE, GZIP, SNAPPY, LZ4, ZSTD])
def test_decode_matches_iter_records(codec):
    buf = _mixed_batches(codec)
    chunk = decode(memoryview(buf), "t", 3, 0, None)
    assert _got(chunk) == _expected(buf)
    assert all(isinstance(r, ConsumedRecord) and r.topic == "t" and r.partition == 3 for r in chunk)
    assert scan(buf, 0) == (133, len(buf))


@pytest.mark.parametrize("sizes", [[0, 1, 31, 32, 63, 64, 65, 8190, 8191, 8192] * 8, [5] * 9000, [100] * 64, [7] * 65])
def test_decode_at_varint_size_boundaries(sizes):
    values = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    buf = records.build_batch_values(values, NOW, ZSTD, base_offset=10)
    assert [(r.offset, r.value) for r in decode(buf, "t", 0, 0, None)] == list(enumerate(values, 10))
    assert [r.value for r in decode(buf, "t", 0, 70, 75)] == values[60:65]


@pytest.mark.parametrize("start, stop", [(0, None), (50, None), (99, 101), (115, 131), (131, 132), (133, None), (0, 0)])
def test_decode_skips_records_outside_start_and_stop(start, stop):
    buf = _mixed_batches(ZSTD)
    assert _got(decode(buf, "t", 0, start, stop)) == _expected(buf, start, stop)


def test_decode_ignores_a_truncated_last_batch_and_scan_says_where_to_resume():
    buf = _mixed_batches(NONE)
    ends = [pos + header.size for pos, header in records.iter_batches(buf)]
    for cut in (ends[0], ends[0] + 1, ends[0] + 61, ends[1] + 5, len(buf) - 1, len(buf)):
        whole = max(end for end in [0, *ends] if end <= cut)
        assert _got(decode(buf[:cut], "t", 0, 0, None)) == _expected(buf[:whole])
        assert scan(buf[:cut], 0)[1] == whole
    assert scan(buf[:ends[0] + 10], 0) == (100, ends[0])
    assert scan(b"", 17) == (17, 0)


def test_decode_skips_control_batches_and_columns_stay_aligned():
    control = records.build_batch([(NOW, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00", ())], base_offset=2,
                                  control=True, transactional=True, producer_id=9)
    buf = (records.build_batch_values([b"a", b"b"], NOW) + control
           + records.build_batch([(NOW, b"k", b"c", [("h", b"v")])], base_offset=3))
    chunk = decode(buf, "t", 0, 0, None)
    assert [(r.offset, r.key, r.value, r.headers) for r in chunk] == [
        (0, None, b"a", ()), (1, None, b"b", ()), (3, b"k", b"c", (("h", b"v"),))]
    assert scan(buf, 0)[0] == 4


def test_compacted_batches_with_offset_gaps_and_empty_batches():
    if not hasattr(records, "rebuild_batch"):
        pytest.skip("records.rebuild_batch (log compaction) is not there yet")
    plain = records.build_batch_values([b"v%d" % i for i in range(10)], NOW, ZSTD, base_offset=50)
    header = records.parse_header(plain)
    kept = records.rebuild_batch(header, [r for r in records.decode_records(plain) if (r.offset - 50) % 3 == 0])
    empty = records.rebuild_batch(records.parse_header(plain, 0), [])
    buf = kept + records.build_batch_values([b"x"], NOW, base_offset=60)
    assert [(r.offset, r.value) for r in decode(buf, "t", 0, 0, None)] == [
        (50, b"v0"), (53, b"v3"), (56, b"v6"), (59, b"v9"), (60, b"x")]
    assert [r.offset for r in decode(buf, "t", 0, 54, 60)] == [56, 59]
    assert list(decode(empty, "t", 0, 0, None)) == [] and scan(empty, 0) == (60, len(empty))


def test_read_committed_skips_aborted_transactions():
    def txn(base, pid, values):
        return records.build_batch([(NOW, None, v, ()) for v in values], base_offset=base, producer_id=pid,
                                   producer_epoch=0, base_sequence=0, transactional=True)

    abort = records.build_batch([(NOW, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00", ())], base_offset=4,
                                control=True, transactional=True, producer_id=7)
    buf = txn(0, 7, [b"x1", b"x2"]) + txn(2, 8, [b"ok1", b"ok2"]) + abort + txn(5, 7, [b"later"])
    chunk = decode(buf, "t", 0, 0, None, aborted=[(7, 0)])
    assert [r.value for r in chunk] == [b"ok1", b"ok2", b"later"]
    assert [r.value for r in decode(buf, "t", 0, 0, None)] == [b"x1", b"x2", b"ok1", b"ok2", b"later"]


def test_log_append_time_batches_use_the_brokers_time():
    batch = bytearray(records.build_batch([(5, None, b"a", ()), (6, None, b"b", ())], timestamp_type_log_append=True))
    struct.pack_into(">q", batch, 35, NOW)  # maxTimestamp carries the append time
    struct.pack_into(">I", batch, 17, records.crc32c(memoryview(batch)[21:]))
    assert [r.timestamp for r in decode(bytes(batch), "t", 0, 0, None)] == [NOW, NOW]


def test_corrupt_batches_raise():
    good = records.build_batch_values([b"abc"] * 10, NOW)
    bad_crc = bytearray(good)
    bad_crc[-2] ^= 1
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode(bytes(bad_crc), "t", 0, 0, None)
    assert len(decode(bytes(bad_crc), "t", 0, 0, None, check_crcs=False)) == 10
    bad_magic = bytearray(good)
    bad_magic[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        decode(bytes(bad_magic), "t", 0, 0, None)
    lying_count = bytearray(good)
    struct.pack_into(">i", lying_count, 57, 11)
    struct.pack_into(">I", lying_count, 17, records.crc32c(memoryview(lying_count)[21:]))
    with pytest.raises(CorruptRecordError):
        decode(bytes(lying_count), "t", 0, 0, None)


# --- connections to fake brokers -----------------------------------------------------------------

class FakeBroker:
    """A listening socket whose connection handler is `serve(conn)`, on a thread."""

    def __init__(self, serve):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[int, int]] = []
        self.thread = threading.Thread(target=self._run, args=(serve,), daemon=True)
        self.thread.start()

    def _run(self, serve):
        conn, _ = self.sock.accept()
        with conn:
            serve(self, conn)

    def read_request(self, conn) -> tuple[int, int, int]:
        size = struct.unpack(">i", recv_exactly(conn, 4))[0]
        frame = recv_exactly(conn, size)
        api_key, version, correlation_id = struct.unpack_from(">hhi", frame)
        self.requests.append((api_key, version))
        return api_key, version, correlation_id

    def close(self):
        self.sock.close()


def _api_versions(correlation_id: int, version: int = 2, ranges=None, error: int = 0) -> bytes:
    ranges = ranges or {0: (0, 9), 1: (4, 13), 2: (1, 8), 3: (0, 12), 18: (0, 3), 19: (2, 7), 20: (1, 6), 22: (0, 5)}
    keys = [{"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in sorted(ranges.items())]
    body = {"error_code": error, "api_keys": keys, "throttle_time_ms": 0}
    return encode_response(ApiKey.API_VERSIONS, version, correlation_id, body)


def test_versions_are_negotiated_and_capped_at_set_n():
    def serve(fake, conn):
        _, version, cid = fake.read_request(conn)
        conn.sendall(_api_versions(cid, version))
        time.sleep(0.5)

    fake = FakeBroker(serve)
    with Connection("127.0.0.1", fake.port) as conn:
        assert conn.versions[ApiKey.PRODUCE] == 8 and conn.versions[ApiKey.FETCH] == 10
        assert conn.versions[ApiKey.LIST_OFFSETS] == 2 and conn.versions[ApiKey.METADATA] == 4
        assert conn.versions[ApiKey.CREATE_TOPICS] == 5 and conn.versions[ApiKey.DELETE_TOPICS] == 3  # KIP-464
        assert conn.versions[ApiKey.INIT_PRODUCER_ID] == 0
    assert fake.requests == [(ApiKey.API_VERSIONS, 2)]
    fake.close()


def test_unsupported_api_versions_falls_back_to_what_the_broker_lists():
    def serve(fake, conn):
        _, version, cid = fake.read_request(conn)
        conn.sendall(_api_versions(cid, 0, {18: (0, 1)}, error=35))  # a v0 body, as Kafka answers
        _, version, cid = fake.read_request(conn)
        conn.sendall(_api_versions(cid, version, {0: (3, 5), 18: (0, 1)}))
        time.sleep(0.5)

    fake = FakeBroker(serve)
    with Connection("127.0.0.1", fake.port) as conn:
        assert conn.versions == {ApiKey.PRODUCE: 5, ApiKey.API_VERSIONS: 1}
    assert fake.requests == [(ApiKey.API_VERSIONS, 2), (ApiKey.API_VERSIONS, 1)]
    fake.close()


def test_a_huge_frame_length_is_refused_before_allocation():
    def serve(fake, conn):  # while negotiating: not a Kafka broker at all
        _, version, cid = fake.read_request(conn)
        conn.sendall(b"\xff\xff\xff\xf0" + b"\0" * 100)  # 4 GB (negative as int32)
        time.sleep(0.5)

    fake = FakeBroker(serve)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="does not speak the Kafka protocol"):
        Connection("127.0.0.1", fake.port)
    assert time.monotonic() - started < 2
    fake.close()

    def serve_big(fake, conn):  # after negotiating: a frame too large
        _, version, cid = fake.read_request(conn)
        conn.sendall(_api_versions(cid, version))
        fake.read_request(conn)
        conn.sendall(b"\x7f\xff\xff\xf0")  # 2 GB
        time.sleep(0.5)

    fake = FakeBroker(serve_big)
    with Connection("127.0.0.1", fake.port) as conn:
        started = time.monotonic()
        with pytest.raises(FrameTooLargeError, match="127.0.0.1"):
            conn.request(ApiKey.METADATA, {"topics": [], "allow_auto_topic_creation": False})
        assert time.monotonic() - started < 2
    fake.close()


def test_a_silent_broker_times_out_and_a_closed_port_is_refused():
    def serve(fake, conn):
        fake.read_request(conn)
        time.sleep(2)

    fake = FakeBroker(serve)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{fake.port} accepted the connection but did not answer within 0.3 s"):
        Connection("127.0.0.1", fake.port, timeout=0.3)
    assert time.monotonic() - started < 1.5
    fake.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerUnavailableError, match=f"cannot connect to broker 127.0.0.1:{port}: Connection refused"):
        Connection("127.0.0.1", port)


def test_responses_must_come_back_in_order():
    def serve(fake, conn):
        _, version, cid = fake.read_request(conn)
        conn.sendall(_api_versions(cid, version))
        _, version, cid = fake.read_request(conn)
        conn.sendall(_api_versions(cid + 5, 2))
        time.sleep(0.5)

    fake = FakeBroker(serve)
    conn = Connection("127.0.0.1", fake.port)
    with pytest.raises(ProtocolError, match="out of order"):
        conn.request(ApiKey.API_VERSIONS, {})
    assert conn.closed
    fake.close()


def test_now_is_utc_safe():
    # parse_time's epoch arithmetic is exact to the millisecond (no float rounding).
    assert parse_offset("@1970-01-01T00:00:00.001Z").value == 1
    assert parse_offset("@2026-11-24T10:00:00.999Z").value == ms("2026-11-24T10:00:00+00:00") + 999
    assert datetime.fromtimestamp(parse_offset("@2026-11-24T10:00Z").value / 1000, timezone.utc).hour == 10


def test_create_topic_sends_the_brokers_defaults_only_to_a_broker_that_takes_them():
    """-1 partitions/replicas mean "the broker's default" from CreateTopics v4 (KIP-464): the
    client uses up to v5, and sends 1 to a broker whose CreateTopics stops before v4."""
    from fake_broker import ScriptedServer
    from logship.client import Cluster
    from logship.client.admin import Admin
    from logship.protocol import ADVERTISED, api_versions_entries, encode_response

    class Broker(ScriptedServer):
        def __init__(self, create_max):
            super().__init__({})
            self.table = {**ADVERTISED, ApiKey.CREATE_TOPICS: (2, create_max)}
            self.created = []

        def answer(self, request):
            if request.api_key == ApiKey.API_VERSIONS:
                return encode_response(request.api_key, request.api_version, request.correlation_id, {
                    "error_code": 0, "api_keys": api_versions_entries(self.table), "throttle_time_ms": 0})
            return super().answer(request)

        def answer_other(self, request):
            assert request.api_key == ApiKey.CREATE_TOPICS
            topic = request.body["topics"][0]
            self.created.append((request.api_version, topic["num_partitions"], topic["replication_factor"]))
            return encode_response(request.api_key, request.api_version, request.correlation_id, {
                "throttle_time_ms": 0, "topics": [{"name": topic["name"], "error_code": 0, "error_message": None,
                                                   "num_partitions": 3, "replication_factor": 1, "configs": []}]})

    for create_max, expected in ((5, (5, -1, -1)), (3, (3, 1, 1))):
        broker = Broker(create_max)
        with Admin(Cluster(broker.address)) as admin:
            admin.create_topic("t", -1, -1)
            admin.create_topic("u", 2, 1)
        assert broker.created == [expected, (expected[0], 2, 1)], broker.created
        broker.close()

"""CreatePartitions, DeleteRecords, DeleteGroups, OffsetDelete and ListOffsets v7/v8 through the
broker, bytes in and bytes out, at every advertised version (no sockets): error codes, durability
across a reopen of the store, and what consumers see afterwards."""

from __future__ import annotations

import struct

import pytest

from logship import records
from logship.broker import admin_ops
from logship.broker.broker import Broker, ClientInfo
from logship.broker.config import BrokerConfig
from logship.broker.groups import OFFSETS_TOPIC
from logship.protocol import ADVERTISED, ApiKey, framing
from logship.storage import LogConfig, Store

NONE, OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC, INVALID_REQUEST = 0, 1, 3, 42
INVALID_TOPIC, INVALID_PARTITIONS, INVALID_REPLICA_ASSIGNMENT, POLICY_VIOLATION = 17, 37, 39, 44
INVALID_GROUP_ID, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC = 24, 68, 69, 86


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def open_broker(path) -> Broker:
    store = Store(path)
    return Broker(store, BrokerConfig(group_initial_rebalance_delay_ms=0), Clock())


@pytest.fixture
def broker(tmp_path):
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 2)
    yield broker
    broker.store.close()


def call(broker, api_key, version, body, client="tester"):
    """Encode, decode, handle, encode and decode the response; returns the response body."""
    frame = framing.encode_request(api_key, version, 7, client, body)[4:]
    request = framing.decode_request(frame, broker.advertised)
    reply = broker.handle(request.api_key, request.api_version, request.body, ClientInfo(client, "10.0.0.1"))
    if reply.deferred is not None and not reply.deferred.done:
        broker.groups.tick()
    for write in reply.sync:
        write.partition.sync_to(write.offset)
    out = reply.deferred.body if reply.deferred is not None else reply.body
    correlation, decoded = framing.decode_response(api_key, version, framing.encode_response(api_key, version, 7, out)[4:])
    assert correlation == 7
    return decoded


def versions(api_key):
    low, high = ADVERTISED[api_key]
    return range(low, high + 1)


def produce(broker, topic, partition, timestamps):
    batch = records.build_batch([(ts, None, b"v%d" % ts, ()) for ts in timestamps])
    return broker.store.partition(topic, partition).append_batches(bytearray(batch))


def test_advertised_versions(broker):
    advertised = broker.advertised
    assert advertised[ApiKey.CREATE_PARTITIONS] == (0, 3)
    assert advertised[ApiKey.DELETE_RECORDS] == (0, 2)
    assert advertised[ApiKey.DELETE_GROUPS] == (0, 2)
    assert advertised[ApiKey.OFFSET_DELETE] == (0, 0)
    assert advertised[ApiKey.LIST_OFFSETS] == (1, 8)
    assert advertised[ApiKey.API_VERSIONS] == (0, 4)


@pytest.mark.parametrize("version", versions(ApiKey.API_VERSIONS))
def test_api_versions_lists_the_new_apis(broker, version):
    body = call(broker, ApiKey.API_VERSIONS, version, {})
    keys = {entry["api_key"]: (entry["min_version"], entry["max_version"]) for entry in body["api_keys"]}
    assert keys[ApiKey.CREATE_PARTITIONS] == (0, 3) and keys[ApiKey.OFFSET_DELETE] == (0, 0)


# --- CreatePartitions ------------------------------------------------------------------------------

def _create_partitions(broker, version, topics, validate_only=False):
    body = call(broker, ApiKey.CREATE_PARTITIONS, version,
                {"topics": topics, "timeout_ms": 1000, "validate_only": validate_only})
    return {r["name"]: (r["error_code"], r["error_message"]) for r in body["results"]}


@pytest.mark.parametrize("version", versions(ApiKey.CREATE_PARTITIONS))
def test_create_partitions_grows_and_refuses_the_rest(broker, version):
    results = _create_partitions(broker, version, [
        {"name": "t", "count": 4, "assignments": None},
        {"name": "missing", "count": 4, "assignments": None},
        {"name": OFFSETS_TOPIC, "count": 4, "assignments": None}])
    assert results["t"] == (NONE, None)
    assert results["missing"][0] == UNKNOWN_TOPIC
    assert results[OFFSETS_TOPIC][0] == INVALID_TOPIC
    assert broker.store.topics()["t"] == 4
    for count in (4, 3):
        code, message = _create_partitions(broker, version, [{"name": "t", "count": count, "assignments": None}])["t"]
        assert code == INVALID_PARTITIONS and "has 4 partitions" in message and f"asked for {count}" in message
    assert broker.store.topics()["t"] == 4


def test_create_partitions_validate_only_and_assignments(broker):
    assert _create_partitions(broker, 2, [{"name": "t", "count": 3, "assignments": None}], validate_only=True) \
        == {"t": (NONE, None)}
    assert broker.store.topics()["t"] == 2
    assert _create_partitions(broker, 2, [{"name": "t", "count": 1, "assignments": None}],
                              validate_only=True)["t"][0] == INVALID_PARTITIONS
    bad = _create_partitions(broker, 3, [{"name": "t", "count": 4, "assignments": [{"broker_ids": [0]}]}])
    assert bad["t"][0] == INVALID_REPLICA_ASSIGNMENT
    other_node = _create_partitions(broker, 3, [{"name": "t", "count": 3, "assignments": [{"broker_ids": [7]}]}])
    assert other_node["t"][0] == INVALID_REPLICA_ASSIGNMENT
    assert _create_partitions(broker, 3, [{"name": "t", "count": 3, "assignments": [{"broker_ids": [0]}]}]) \
        == {"t": (NONE, None)}
    assert broker.store.topics()["t"] == 3


def test_create_partitions_is_bounded_per_request(broker, monkeypatch):
    huge = _create_partitions(broker, 3, [{"name": "t", "count": 0x7FFFFFFF, "assignments": None}])
    assert huge["t"][0] == POLICY_VIOLATION and broker.store.topics()["t"] == 2
    monkeypatch.setattr(admin_ops, "MAX_NEW_PARTITIONS", 5)
    broker.store.create_topic("u", 1)
    split = _create_partitions(broker, 3, [{"name": "t", "count": 5, "assignments": None},
                                           {"name": "u", "count": 4, "assignments": None}])
    assert split["t"] == (NONE, None) and split["u"][0] == POLICY_VIOLATION and "5" in split["u"][1]
    assert broker.store.topics() == {"t": 5, "u": 1, OFFSETS_TOPIC: 1}


def test_create_partitions_never_scans_the_store_per_topic(broker, monkeypatch):
    broker.store.create_topic("big", 300)
    scans = []
    real_topics = Store.topics
    monkeypatch.setattr(Store, "topics", lambda self: scans.append(1) or real_topics(self))
    topics = [{"name": f"nope{i}", "count": 2, "assignments": None} for i in range(2000)]
    results = _create_partitions(broker, 3, topics + [{"name": "t", "count": 3, "assignments": None}])
    assert results["t"] == (NONE, None) and results["nope7"][0] == UNKNOWN_TOPIC
    assert scans == [] and broker.store.partition_count("t") == 3 and broker.store.partition_count("nope7") == 0


def test_new_partitions_take_records_and_survive_a_reopen(tmp_path):
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 1)
    assert _create_partitions(broker, 3, [{"name": "t", "count": 3, "assignments": None}])["t"][0] == NONE
    produce(broker, "t", 2, [5, 6])
    broker.store.close()
    broker = open_broker(tmp_path / "data")
    try:
        assert broker.store.topics()["t"] == 3
        assert broker.store.partition("t", 2).log_end_offset == 2
    finally:
        broker.store.close()


# --- DeleteRecords ---------------------------------------------------------------------------------

def _delete_records(broker, version, partitions, topic="t"):
    body = call(broker, ApiKey.DELETE_RECORDS, version, {"topics": [{"name": topic, "partitions": [
        {"partition_index": p, "offset": o} for p, o in partitions]}], "timeout_ms": 1000})
    return {p["partition_index"]: (p["error_code"], p["low_watermark"]) for p in body["topics"][0]["partitions"]}


@pytest.mark.parametrize("version", versions(ApiKey.DELETE_RECORDS))
def test_delete_records(broker, version):
    for _ in range(5):
        produce(broker, "t", 0, [1, 2])  # offsets 0-9
    produce(broker, "t", 1, [1, 2, 3])
    assert _delete_records(broker, version, [(0, 4), (1, -1)]) == {0: (NONE, 4), 1: (NONE, 3)}
    assert _delete_records(broker, version, [(0, 2)]) == {0: (NONE, 4)}  # below the start: nothing moves
    assert _delete_records(broker, version, [(0, 11)])[0][0] == OFFSET_OUT_OF_RANGE
    assert _delete_records(broker, version, [(0, -7)])[0][0] == OFFSET_OUT_OF_RANGE
    assert _delete_records(broker, version, [(5, 1)])[5][0] == UNKNOWN_TOPIC
    assert _delete_records(broker, version, [(0, 1)], topic="nope")[0][0] == UNKNOWN_TOPIC
    assert _delete_records(broker, version, [(0, 0)], topic=OFFSETS_TOPIC)[0][0] == INVALID_TOPIC
    assert broker.store.partition("t", 0).log_start_offset == 4


def test_delete_records_on_a_full_disk_is_a_storage_error_and_moves_nothing(tmp_path, monkeypatch):
    import errno
    from logship.storage import checkpoint
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 1)
    broker.store.set_topic_config("t", LogConfig(segment_bytes=200))
    partition = broker.store.partition("t", 0)
    for _ in range(5):
        produce(broker, "t", 0, [1, 2, 3])  # offsets 0-14, a segment per batch
    segments = len(partition.segments)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_atomic", full)  # the log-start and epoch checkpoints
    try:
        assert _delete_records(broker, 2, [(0, 7)]) == {0: (56, -1)}  # KAFKA_STORAGE_ERROR
        assert partition.log_start_offset == 0 and len(partition.segments) == segments
        assert _fetch(broker, 0) == (NONE, 0)
        monkeypatch.undo()
        assert _delete_records(broker, 2, [(0, 7)]) == {0: (NONE, 7)}
        broker.store.close()
        broker = open_broker(tmp_path / "data")
        assert broker.store.partition("t", 0).log_start_offset == 7
    finally:
        broker.store.close()


def test_delete_records_refuses_compacted_topics(broker):
    broker.store.create_topic("compacted", 1)
    broker.store.set_topic_config("compacted", LogConfig(cleanup_policy="compact"))
    produce(broker, "compacted", 0, [1])
    assert _delete_records(broker, 2, [(0, 1)], topic="compacted")[0][0] == POLICY_VIOLATION


def _fetch(broker, offset, partition=0):
    body = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
            "session_id": 0, "session_epoch": -1, "topics": [{"topic": "t", "partitions": [
                {"partition": partition, "fetch_offset": offset, "log_start_offset": -1,
                 "partition_max_bytes": 1 << 20}]}], "forgotten_topics_data": [], "rack_id": ""}
    plan = broker.handle(ApiKey.FETCH, 10, body).fetch.plan()
    try:
        entry = plan.body["responses"][0]["partitions"][0]
        return entry["error_code"], entry["log_start_offset"]
    finally:
        plan.close()


def test_deleted_records_are_unreadable_and_stay_deleted(tmp_path):
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 1)
    broker.store.set_topic_config("t", LogConfig(segment_bytes=200))
    for i in range(12):
        produce(broker, "t", 0, [i])
    before = len(broker.store.partition("t", 0).segments)
    assert _delete_records(broker, 2, [(0, 7)]) == {0: (NONE, 7)}
    assert len(broker.store.partition("t", 0).segments) < before  # whole segments below 7 are gone
    assert _fetch(broker, 3) == (OFFSET_OUT_OF_RANGE, 7)
    assert _fetch(broker, 7) == (NONE, 7)
    broker.store.close()  # a crash would do too: the log start is checkpointed at once
    broker = open_broker(tmp_path / "data")
    try:
        assert broker.store.partition("t", 0).log_start_offset == 7
        assert _fetch(broker, 6) == (OFFSET_OUT_OF_RANGE, 7)
        body = call(broker, ApiKey.LIST_OFFSETS, 2, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": "t", "partitions": [{"partition_index": 0, "timestamp": -2}]}]})
        assert body["topics"][0]["partitions"][0]["offset"] == 7
    finally:
        broker.store.close()


# --- ListOffsets v7 (max timestamp) and v8 (earliest local) -----------------------------------------

def _list(broker, version, timestamp, partition=0):
    body = call(broker, ApiKey.LIST_OFFSETS, version, {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": "t", "partitions": [{"partition_index": partition, "timestamp": timestamp}]}]})
    entry = body["topics"][0]["partitions"][0]
    return entry["error_code"], entry["offset"], entry["timestamp"]


@pytest.mark.parametrize("version", [7, 8])
def test_max_timestamp_finds_the_record_with_the_largest_timestamp(broker, version):
    assert _list(broker, version, -3) == (NONE, -1, -1)  # empty
    produce(broker, "t", 0, [1000, 5000, 3000])      # offsets 0-2
    produce(broker, "t", 0, [2000, 5000, 4000])      # a tie later: the first one wins
    produce(broker, "t", 0, [1500])
    assert _list(broker, version, -3) == (NONE, 1, 5000)
    produce(broker, "t", 0, [900, 7000, 7000, 100])  # offsets 7-10
    assert _list(broker, version, -3) == (NONE, 8, 7000)


def test_earliest_local_and_unknown_specials(broker):
    produce(broker, "t", 0, [1, 2, 3])
    broker.store.partition("t", 0).delete_before(2)
    assert _list(broker, 8, -4) == (NONE, 2, -1)
    assert _list(broker, 8, -2) == (NONE, 2, -1)
    assert _list(broker, 8, -5)[0] == INVALID_REQUEST  # latest tiered (v9) is not served
    assert _list(broker, 2, -7)[0] == INVALID_REQUEST


def test_max_timestamp_across_segments_and_after_deletion(tmp_path):
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 1)
    broker.store.set_topic_config("t", LogConfig(segment_bytes=150))
    stamps = [10, 90, 20, 80, 30, 70, 40, 60, 50]
    for ts in stamps:
        produce(broker, "t", 0, [ts])
    assert len(broker.store.partition("t", 0).segments) > 3
    assert _list(broker, 7, -3) == (NONE, 1, 90)
    broker.store.partition("t", 0).delete_before(2)
    assert _list(broker, 7, -3) == (NONE, 3, 80)
    broker.store.close()
    broker = open_broker(tmp_path / "data")  # from the time indexes on disk
    try:
        assert _list(broker, 7, -3) == (NONE, 3, 80)
    finally:
        broker.store.close()


# --- DeleteGroups and OffsetDelete -----------------------------------------------------------------

def _commit(broker, group, offsets, generation=-1, member=""):
    body = {"group_id": group, "generation_id_or_member_epoch": generation, "member_id": member,
            "retention_time_ms": -1, "topics": [{"name": t, "partitions": [
                {"partition_index": p, "committed_offset": o, "committed_metadata": ""}]} for (t, p), o in offsets.items()]}
    response = call(broker, ApiKey.OFFSET_COMMIT, 3, body)
    assert {p["error_code"] for t in response["topics"] for p in t["partitions"]} == {NONE}


def _subscription(*topics):
    data = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        data += struct.pack(">h", len(topic)) + topic.encode()
    return data + struct.pack(">i", -1)


def _join(broker, group, topics):
    body = {"group_id": group, "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
            "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": _subscription(*topics)}]}
    response = call(broker, ApiKey.JOIN_GROUP, 2, body)
    assert response["error_code"] == NONE
    return response["member_id"]


def _delete_groups(broker, version, names):
    body = call(broker, ApiKey.DELETE_GROUPS, version, {"groups_names": names})
    return {r["group_id"]: r["error_code"] for r in body["results"]}


def _offset_fetch(broker, group):
    body = call(broker, ApiKey.OFFSET_FETCH, 3, {"group_id": group, "topics": None})
    return {(t["name"], p["partition_index"]): p["committed_offset"] for t in body["topics"] for p in t["partitions"]}


@pytest.mark.parametrize("version", versions(ApiKey.DELETE_GROUPS))
def test_delete_groups(broker, version):
    _commit(broker, "idle", {("t", 0): 5, ("t", 1): 3})
    _commit(broker, "busy", {("t", 0): 1})
    _join(broker, "busy", ["t"])
    assert _delete_groups(broker, version, ["idle", "busy", "never", ""]) == {
        "idle": NONE, "busy": NON_EMPTY_GROUP, "never": GROUP_ID_NOT_FOUND, "": INVALID_GROUP_ID}
    assert _offset_fetch(broker, "idle") == {}
    assert _offset_fetch(broker, "busy") == {("t", 0): 1}
    assert _delete_groups(broker, version, ["idle"]) == {"idle": GROUP_ID_NOT_FOUND}
    listed = call(broker, ApiKey.LIST_GROUPS, 2, {})
    assert [g["group_id"] for g in listed["groups"]] == ["busy"]


def test_deleted_groups_stay_deleted_after_a_restart(tmp_path):
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 2)
    _commit(broker, "gone", {("t", 0): 5, ("t", 1): 3})
    _commit(broker, "kept", {("t", 0): 9})
    assert _delete_groups(broker, 2, ["gone"]) == {"gone": NONE}
    broker.store.close()
    broker = open_broker(tmp_path / "data")
    try:
        assert _offset_fetch(broker, "gone") == {}
        assert _offset_fetch(broker, "kept") == {("t", 0): 9}
        assert [g["group_id"] for g in call(broker, ApiKey.LIST_GROUPS, 2, {})["groups"]] == ["kept"]
    finally:
        broker.store.close()


def _offset_delete(broker, group, partitions):
    body = call(broker, ApiKey.OFFSET_DELETE, 0, {"group_id": group, "topics": [
        {"name": t, "partitions": [{"partition_index": p} for p in ps]} for t, ps in partitions.items()]})
    return body["error_code"], {(t["name"], p["partition_index"]): p["error_code"]
                                for t in body["topics"] for p in t["partitions"]}


def test_offset_delete(broker, tmp_path):
    broker.store.create_topic("other", 1)
    _commit(broker, "g", {("t", 0): 5, ("t", 1): 3, ("other", 0): 2})
    member = _join(broker, "g", ["t"])
    assert member
    code, codes = _offset_delete(broker, "g", {"t": [0, 2], "other": [0, 1, -1], "nope": [0]})
    assert code == NONE
    assert codes == {("t", 0): GROUP_SUBSCRIBED_TO_TOPIC, ("other", 0): NONE, ("nope", 0): UNKNOWN_TOPIC,
                     ("t", 2): UNKNOWN_TOPIC, ("other", 1): UNKNOWN_TOPIC, ("other", -1): UNKNOWN_TOPIC}
    assert _offset_fetch(broker, "g") == {("t", 0): 5, ("t", 1): 3}
    assert _offset_delete(broker, "never", {"t": [0]})[0] == GROUP_ID_NOT_FOUND
    assert _offset_delete(broker, "", {"t": [0]})[0] == INVALID_GROUP_ID


def test_offset_delete_of_an_empty_group_and_restart(tmp_path):
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("t", 2)
    _commit(broker, "g", {("t", 0): 5, ("t", 1): 3})
    assert _offset_delete(broker, "g", {"t": [1]}) == (NONE, {("t", 1): NONE})
    broker.store.close()
    broker = open_broker(tmp_path / "data")
    try:
        assert _offset_fetch(broker, "g") == {("t", 0): 5}
        assert _offset_delete(broker, "g", {"t": [0, 1]}) == (NONE, {("t", 0): NONE, ("t", 1): NONE})
        assert call(broker, ApiKey.LIST_GROUPS, 2, {})["groups"] == []  # nothing left: forgotten
    finally:
        broker.store.close()


def test_offset_delete_of_a_non_consumer_group_with_members(broker):
    body = {"group_id": "conn", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
            "protocol_type": "connect", "protocols": [{"name": "default", "metadata": b"x"}]}
    assert call(broker, ApiKey.JOIN_GROUP, 2, body)["error_code"] == NONE
    assert _offset_delete(broker, "conn", {"t": [0]})[0] == NON_EMPTY_GROUP


def test_delete_groups_v2_wire_layout():
    """Flexible v2: request header v2 (tag byte), compact array of compact strings, tag sections;
    the response header v1 carries its own tag byte (unlike ApiVersions')."""
    frame = framing.encode_request(ApiKey.DELETE_GROUPS, 2, 3, "c", {"groups_names": ["ab", "c"]})
    assert frame[4:12] == struct.pack(">hhi", 42, 2, 3) and frame[12:15] == b"\x00\x01c"
    assert frame[15:] == b"\x00" + b"\x03" + b"\x03ab" + b"\x02c" + b"\x00"
    response = framing.encode_response(ApiKey.DELETE_GROUPS, 2, 3, {"throttle_time_ms": 0, "results": [
        {"group_id": "ab", "error_code": 69}]})
    assert response[4:] == struct.pack(">i", 3) + b"\x00" + struct.pack(">i", 0) + b"\x02" + b"\x03ab" \
        + struct.pack(">h", 69) + b"\x00" + b"\x00"


def test_groups_with_many_offsets_can_be_deleted(tmp_path):
    # their tombstones (50 keys of 30 KB: group ids are long) are more than one batch may
    # hold: several batches, never MESSAGE_TOO_LARGE
    from logship.broker.groups import CommittedOffset
    broker = open_broker(tmp_path / "data")
    broker.store.create_topic("many", 50)
    g, h = "g" * 30000, "h" * 30000
    for group in (g, h):
        for start in range(0, 50, 10):
            broker.group_offsets.commit(group, [("many", p, CommittedOffset(1)) for p in range(start, start + 10)])
    broker.store.close()
    broker = open_broker(tmp_path / "data")
    try:
        assert _delete_groups(broker, 2, [g]) == {g: NONE}
        code, codes = _offset_delete(broker, h, {"many": list(range(50))})
        assert code == NONE and set(codes.values()) == {NONE}
        assert _offset_fetch(broker, g) == {} and _offset_fetch(broker, h) == {}
    finally:
        broker.store.close()

"""Group APIs through the broker, bytes in and bytes out: every advertised version is encoded
as a request, decoded, handled, and its response encoded and decoded back (no sockets)."""

from __future__ import annotations

import pytest

from logship import records
from logship.broker.broker import Broker, ClientInfo
from logship.broker.config import BrokerConfig
from logship.broker.groups import OFFSETS_TOPIC
from logship.protocol import ADVERTISED, ApiKey, framing
from logship.storage import Store


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def broker(tmp_path):
    store = Store(tmp_path / "data")
    config = BrokerConfig(group_initial_rebalance_delay_ms=0, advertised_host="broker.test", advertised_port=9999)
    broker = Broker(store, config, Clock())
    store.create_topic("t", 2)
    yield broker
    store.close()


def call(broker, api_key, version, body, client="tester"):
    """Encode, decode, handle; returns (decoded response body, Reply). Held replies are ticked."""
    frame = framing.encode_request(api_key, version, 7, client, body)[4:]
    request = framing.decode_request(frame, broker.advertised)
    reply = broker.handle(request.api_key, request.api_version, request.body, ClientInfo(client, "10.0.0.1"))
    if reply.deferred is not None and not reply.deferred.done:
        broker.groups.tick()
    out = reply.deferred.body if reply.deferred is not None else reply.body
    correlation, decoded = framing.decode_response(api_key, version, framing.encode_response(api_key, version, 7, out)[4:])
    assert correlation == 7
    return decoded, reply


def versions(api_key):
    low, high = ADVERTISED[api_key]
    return range(low, high + 1)


def test_group_apis_are_advertised_with_the_versions_of_set_n(broker):
    advertised = broker.advertised
    assert advertised[ApiKey.FIND_COORDINATOR] == (0, 1) and advertised[ApiKey.JOIN_GROUP] == (0, 2)
    assert advertised[ApiKey.SYNC_GROUP] == (0, 1) and advertised[ApiKey.HEARTBEAT] == (0, 1)
    assert advertised[ApiKey.LEAVE_GROUP] == (0, 1) and advertised[ApiKey.OFFSET_COMMIT] == (2, 3)
    assert advertised[ApiKey.OFFSET_FETCH] == (1, 3) and advertised[ApiKey.DESCRIBE_GROUPS] == (0, 4)
    assert advertised[ApiKey.LIST_GROUPS] == (0, 2)
    assert 68 not in advertised  # no KIP-848


@pytest.mark.parametrize("version", versions(ApiKey.FIND_COORDINATOR))
def test_find_coordinator_names_this_node(broker, version):
    body, _ = call(broker, ApiKey.FIND_COORDINATOR, version, {"key": "g", "key_type": 0})
    assert (body["error_code"], body["node_id"], body["host"], body["port"]) == (0, 0, "broker.test", 9999)
    if version >= 1:
        body, _ = call(broker, ApiKey.FIND_COORDINATOR, version, {"key": "tx", "key_type": 1})
        assert body["error_code"] == 15


@pytest.mark.parametrize("join_v", versions(ApiKey.JOIN_GROUP))
@pytest.mark.parametrize("sync_v", versions(ApiKey.SYNC_GROUP))
def test_join_sync_heartbeat_leave_at_every_version(broker, join_v, sync_v):
    join = {"group_id": "g", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000, "member_id": "",
            "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b"m"}]}
    body, _ = call(broker, ApiKey.JOIN_GROUP, join_v, join)
    assert body["error_code"] == 0 and body["generation_id"] == 1 and body["protocol_name"] == "range"
    member = body["member_id"]
    assert member.startswith("tester-") and body["leader"] == member
    assert body["members"] == [{"member_id": member, "metadata": b"m"}]
    sync = {"group_id": "g", "generation_id": 1, "member_id": member,
            "assignments": [{"member_id": member, "assignment": b"assignment"}]}
    body, _ = call(broker, ApiKey.SYNC_GROUP, sync_v, sync)
    assert (body["error_code"], body["assignment"]) == (0, b"assignment")
    for version in versions(ApiKey.HEARTBEAT):
        body, _ = call(broker, ApiKey.HEARTBEAT, version, {"group_id": "g", "generation_id": 1, "member_id": member})
        assert body["error_code"] == 0
        body, _ = call(broker, ApiKey.HEARTBEAT, version, {"group_id": "g", "generation_id": 2, "member_id": member})
        assert body["error_code"] == 22
    for version in versions(ApiKey.DESCRIBE_GROUPS):
        body, _ = call(broker, ApiKey.DESCRIBE_GROUPS, version, {"groups": ["g", "nope"],
                                                                 "include_authorized_operations": False})
        described, unknown = body["groups"]
        assert described["group_state"] == "Stable" and described["protocol_data"] == "range"
        assert described["members"][0]["client_id"] == "tester"
        assert described["members"][0]["client_host"] == "10.0.0.1"
        assert described["members"][0]["member_assignment"] == b"assignment"
        assert unknown["group_state"] == "Dead" and unknown["error_code"] == 0
    for version in versions(ApiKey.LIST_GROUPS):
        body, _ = call(broker, ApiKey.LIST_GROUPS, version, {})
        assert body["groups"] == [{"group_id": "g", "protocol_type": "consumer"}]
    body, _ = call(broker, ApiKey.LEAVE_GROUP, 1, {"group_id": "g", "member_id": member})
    assert body["error_code"] == 0
    body, _ = call(broker, ApiKey.LEAVE_GROUP, 0, {"group_id": "g", "member_id": member})
    assert body["error_code"] == 25


def test_a_held_join_is_answered_when_the_coordinator_ticks(broker):
    join = {"group_id": "g", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000, "member_id": "",
            "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]}
    frame = framing.encode_request(ApiKey.JOIN_GROUP, 2, 1, "c", join)[4:]
    request = framing.decode_request(frame, broker.advertised)
    reply = broker.handle(request.api_key, request.api_version, request.body)
    assert reply.body is None and reply.deferred is not None and not reply.deferred.done
    answered = []
    reply.deferred.add_done_callback(answered.append)
    assert broker.groups.next_deadline() <= broker.groups.clock()
    broker.groups.tick()
    assert answered and answered[0]["error_code"] == 0


@pytest.mark.parametrize("commit_v", versions(ApiKey.OFFSET_COMMIT))
@pytest.mark.parametrize("fetch_v", versions(ApiKey.OFFSET_FETCH))
def test_standalone_commit_then_fetch(broker, commit_v, fetch_v):
    commit = {"group_id": "solo", "generation_id_or_member_epoch": -1, "member_id": "", "retention_time_ms": -1,
              "topics": [{"name": "t", "partitions": [
                  {"partition_index": 0, "committed_offset": 42, "committed_metadata": "hello"},
                  {"partition_index": 1, "committed_offset": 7, "committed_metadata": None},
                  {"partition_index": 5, "committed_offset": 7, "committed_metadata": ""}]},
                  {"name": "missing", "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                      "committed_metadata": ""}]}]}
    body, reply = call(broker, ApiKey.OFFSET_COMMIT, commit_v, commit)
    codes = {(t["name"], p["partition_index"]): p["error_code"] for t in body["topics"] for p in t["partitions"]}
    assert codes == {("t", 0): 0, ("t", 1): 0, ("t", 5): 3, ("missing", 0): 3}
    [durable] = reply.sync  # answered only once the commit is on disk
    assert durable.partition is broker.group_offsets.partition and durable.offset == durable.partition.log_end_offset
    assert len(durable.response) == 2
    fetch = {"group_id": "solo", "topics": [{"name": "t", "partition_indexes": [0, 1]},
                                            {"name": "other", "partition_indexes": [3]}]}
    body, _ = call(broker, ApiKey.OFFSET_FETCH, fetch_v, fetch)
    got = {(t["name"], p["partition_index"]): (p["committed_offset"], p["metadata"], p["error_code"])
           for t in body["topics"] for p in t["partitions"]}
    assert got == {("t", 0): (42, "hello", 0), ("t", 1): (7, "", 0), ("other", 3): (-1, "", 0)}
    if fetch_v >= 2:
        body, _ = call(broker, ApiKey.OFFSET_FETCH, fetch_v, {"group_id": "solo", "topics": None})
        assert body["error_code"] == 0
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in body["topics"]] == [("t", [0, 1])]


def test_commit_from_a_stale_member_is_refused_and_nothing_is_written(broker):
    before = broker.group_offsets.partition.log_end_offset
    commit = {"group_id": "g", "generation_id_or_member_epoch": 3, "member_id": "ghost", "retention_time_ms": -1,
              "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                      "committed_metadata": ""}]}]}
    body, reply = call(broker, ApiKey.OFFSET_COMMIT, 3, commit)
    assert body["topics"][0]["partitions"][0]["error_code"] == 22
    assert reply.sync == [] and broker.group_offsets.partition.log_end_offset == before


def test_offsets_topic_is_internal_readable_but_not_writable(broker):
    body, _ = call(broker, ApiKey.METADATA, 4, {"topics": None, "allow_auto_topic_creation": False})
    internal = {t["name"]: t["is_internal"] for t in body["topics"]}
    assert internal == {OFFSETS_TOPIC: True, "t": False}
    batch = records.build_batch([(0, b"k", b"v", ())])
    produce = {"transactional_id": None, "acks": -1, "timeout_ms": 1000,
               "topic_data": [{"name": OFFSETS_TOPIC, "partition_data": [{"index": 0, "records": batch}]}]}
    body, _ = call(broker, ApiKey.PRODUCE, 7, produce)
    assert body["responses"][0]["partition_responses"][0]["error_code"] == 17
    body, _ = call(broker, ApiKey.DELETE_TOPICS, 3, {"topic_names": [OFFSETS_TOPIC], "timeout_ms": 1000})
    assert body["responses"][0]["error_code"] == 17
    assert OFFSETS_TOPIC in broker.store.topics()

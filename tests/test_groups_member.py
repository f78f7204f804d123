"""The group member's error rules against a scripted fake coordinator: rediscovery after
COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR, a new member id after UNKNOWN_MEMBER_ID, the
leader's assignment, heartbeats that ask for a rejoin, commits refused by the generation."""

from __future__ import annotations

from collections import defaultdict

import pytest
from conftest import wait_until
from fake_broker import ScriptedServer

from logship.client.assignors import decode_assignment, decode_subscription, encode_assignment, encode_subscription
from logship.client.cluster import Cluster
from logship.client.group import CommitFailedError, GroupMember
from logship.errors import InconsistentGroupProtocolError
from logship.protocol import ApiKey, encode_response


class FakeCoordinator(ScriptedServer):
    """A broker that answers ApiVersions and Metadata itself and every group API with the
    next answer scripted for it (`script[api_key]`: a list of functions body -> response body;
    the last one repeats). Every request body is kept in `seen[api_key]`."""

    def __init__(self, script):
        super().__init__({"logs": 4, "other": 2})
        self.script = script
        self.seen = defaultdict(list)

    def answer_other(self, request):
        self.seen[request.api_key].append(request.body)
        answers = self.script[request.api_key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return encode_response(request.api_key, request.api_version, request.correlation_id,
                               {"throttle_time_ms": 0, **answer(request.body)})


def coordinator(port, code=0):
    return lambda body: {"error_code": code, "error_message": None, "node_id": 1, "host": "127.0.0.1", "port": port}


def joined(member_id, generation, leader, members=()):
    return lambda body: {"error_code": 0, "generation_id": generation, "protocol_name": "range", "leader": leader,
                         "member_id": member_id, "members": [
                             {"member_id": m, "group_instance_id": None, "metadata": encode_subscription(topics)}
                             for m, topics in members]}


def error(code, **extra):
    return lambda body: {"error_code": code, "generation_id": -1, "protocol_name": "", "leader": "", "member_id": "",
                         "members": [], "assignment": b"", **extra}


def synced(assignment):
    return lambda body: {"error_code": 0, "assignment": encode_assignment(assignment)}


@pytest.fixture
def fake():
    brokers = []

    def make(script):
        broker = FakeCoordinator(script)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.close()


def test_leader_join_survives_coordinator_errors_and_assigns_everyone(fake):
    port_box = []
    broker = fake({
        ApiKey.FIND_COORDINATOR: [lambda b: coordinator(port_box[0], 15)(b), lambda b: coordinator(port_box[0])(b)],
        ApiKey.JOIN_GROUP: [error(16), error(25), joined("me-1", 3, "me-1", [("me-1", ["logs"]), ("zz-2", ["logs"]),
                                                                              ("aa-0", ["logs", "other"])])],
        ApiKey.SYNC_GROUP: [synced({"logs": [2]})],
        ApiKey.HEARTBEAT: [lambda b: {"error_code": 0}],
        ApiKey.LEAVE_GROUP: [lambda b: {"error_code": 0}],
    })
    port_box.append(broker.port)
    member = GroupMember(Cluster(broker.address), "g", ["logs"], session_timeout_ms=6000)
    try:
        assert member.join() == {"logs": [2]}
        assert (member.generation, member.member_id, member.leader_id) == (3, "me-1", "me-1")
        joins = broker.seen[ApiKey.JOIN_GROUP]
        assert [j["member_id"] for j in joins] == ["", "", ""]
        assert joins[0]["protocol_type"] == "consumer" and [p["name"] for p in joins[0]["protocols"]] == ["range",
                                                                                                          "roundrobin"]
        assert decode_subscription(joins[0]["protocols"][0]["metadata"]).topics == ["logs"]
        assert joins[0]["session_timeout_ms"] == 6000 and joins[0]["rebalance_timeout_ms"] == 60000
        [sync] = broker.seen[ApiKey.SYNC_GROUP]
        plan = {a["member_id"]: decode_assignment(a["assignment"]) for a in sync["assignments"]}
        # range, members in id order: aa-0 gets logs 0-1 and all of "other"; me-1 logs 2; zz-2 logs 3
        assert plan == {"aa-0": {"logs": [0, 1], "other": [0, 1]}, "me-1": {"logs": [2]}, "zz-2": {"logs": [3]}}
        assert wait_until(lambda: broker.seen[ApiKey.HEARTBEAT], timeout=5)
        assert broker.seen[ApiKey.HEARTBEAT][0]["generation_id"] == 3
        assert len(broker.seen[ApiKey.FIND_COORDINATOR]) >= 2
    finally:
        member.close()
    assert broker.seen[ApiKey.LEAVE_GROUP] == [{"group_id": "g", "member_id": "me-1"}]


@pytest.mark.parametrize("code,reset", [(27, False), (22, False), (25, True)])
def test_heartbeat_errors_ask_for_a_rejoin(fake, code, reset):
    broker = fake({
        ApiKey.FIND_COORDINATOR: [lambda b: coordinator(broker.port)(b)],
        ApiKey.JOIN_GROUP: [joined("m-1", 1, "other")],
        ApiKey.SYNC_GROUP: [synced({"logs": [0, 1]})],
        ApiKey.HEARTBEAT: [lambda b: {"error_code": 0}, lambda b: {"error_code": code}],
        ApiKey.LEAVE_GROUP: [lambda b: {"error_code": 0}],
    })
    member = GroupMember(Cluster(broker.address), "g", ["logs"], session_timeout_ms=600)
    try:
        assert member.join() == {"logs": [0, 1]}
        assert not member.needs_rejoin()
        assert wait_until(member.needs_rejoin, timeout=5)
        assert member.member_id == ("" if reset else "m-1")
        assert member.wakeup_fd  # select() on it wakes the owner
    finally:
        member.close()


@pytest.mark.parametrize("code", [22, 25, 27])
def test_a_commit_refused_by_the_generation_raises_and_asks_for_a_rejoin(fake, code):
    broker = fake({
        ApiKey.FIND_COORDINATOR: [lambda b: coordinator(broker.port)(b)],
        ApiKey.JOIN_GROUP: [joined("m-1", 5, "other")],
        ApiKey.SYNC_GROUP: [synced({"logs": [0]})],
        ApiKey.HEARTBEAT: [lambda b: {"error_code": 0}],
        ApiKey.OFFSET_COMMIT: [lambda b: {"topics": [{"name": "logs", "partitions": [
            {"partition_index": 0, "error_code": 16}]}]}, lambda b: {"topics": [{"name": "logs", "partitions": [
                {"partition_index": 0, "error_code": code}]}]}],
        ApiKey.LEAVE_GROUP: [lambda b: {"error_code": 0}],
    })
    member = GroupMember(Cluster(broker.address), "g", ["logs"])
    try:
        member.join()
        with pytest.raises(CommitFailedError):
            member.commit({("logs", 0): 42})
        first, second = broker.seen[ApiKey.OFFSET_COMMIT]  # NOT_COORDINATOR: found again, sent again
        assert first == second and first["generation_id_or_member_epoch"] == 5 and first["member_id"] == "m-1"
        assert first["topics"][0]["partitions"][0]["committed_offset"] == 42
        assert member.needs_rejoin()
    finally:
        member.close(leave=False)


def test_committed_reads_offsets_and_none_where_nothing_is_committed(fake):
    broker = fake({
        ApiKey.FIND_COORDINATOR: [lambda b: coordinator(broker.port)(b)],
        ApiKey.OFFSET_FETCH: [lambda b: {"error_code": 0, "topics": [{"name": "logs", "partitions": [
            {"partition_index": 0, "committed_offset": 17, "metadata": "", "error_code": 0},
            {"partition_index": 1, "committed_offset": -1, "metadata": "", "error_code": 0}]}]}],
    })
    member = GroupMember(Cluster(broker.address), "g", ["logs"])
    try:
        assert member.committed([("logs", 0), ("logs", 1)]) == {("logs", 0): 17, ("logs", 1): None}
        assert broker.seen[ApiKey.OFFSET_FETCH] == [{"group_id": "g", "topics": [
            {"name": "logs", "partition_indexes": [0, 1]}]}]
    finally:
        member.close()


def test_no_common_assignor_is_a_clear_error(fake):
    broker = fake({
        ApiKey.FIND_COORDINATOR: [lambda b: coordinator(broker.port)(b)],
        ApiKey.JOIN_GROUP: [error(23)],
    })
    member = GroupMember(Cluster(broker.address), "g", ["logs"])
    try:
        with pytest.raises(InconsistentGroupProtocolError, match="no assignor in common"):
            member.join()
    finally:
        member.close()

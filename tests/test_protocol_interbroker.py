"""The inter-broker APIs (LeaderAndIsr v2, StopReplica v1, UpdateMetadata v5) against bytes
laid out by hand from Kafka's JSON schemas (kafka-python no longer carries them), and SASL's
two APIs the same way."""

from __future__ import annotations

import struct

from logship.protocol import ApiKey, message_codec


def _s(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _ints(values) -> bytes:
    return struct.pack(">i", len(values)) + b"".join(struct.pack(">i", v) for v in values)


def _check(api_key, version, response, body, expected: bytes):
    codec = message_codec(api_key, version, response)
    decoded, end = codec.decode(memoryview(expected), 0)
    assert end == len(expected)
    assert decoded == body


def test_leader_and_isr_v2_request():
    body = {"controller_id": 1, "controller_epoch": 2, "broker_epoch": -1,
            "topic_states": [{"topic_name": "logs", "partition_states": [
                {"partition_index": 3, "controller_epoch": 2, "leader": 2, "leader_epoch": 7, "isr": [2, 1],
                 "zk_version": 9, "replicas": [2, 1], "is_new": True}]}],
            "live_leaders": [{"broker_id": 2, "host_name": "h2", "port": 9092}]}
    expected = (struct.pack(">iiq", 1, 2, -1) + struct.pack(">i", 1) + _s("logs") + struct.pack(">i", 1)
                + struct.pack(">iiii", 3, 2, 2, 7) + _ints([2, 1]) + struct.pack(">i", 9) + _ints([2, 1]) + b"\x01"
                + struct.pack(">i", 1) + struct.pack(">i", 2) + _s("h2") + struct.pack(">i", 9092))
    _check(ApiKey.LEADER_AND_ISR, 2, False, body, expected)
    response = {"error_code": 0, "partition_errors": [{"topic_name": "logs", "partition_index": 3, "error_code": 6}]}
    _check(ApiKey.LEADER_AND_ISR, 2, True, response,
           struct.pack(">h", 0) + struct.pack(">i", 1) + _s("logs") + struct.pack(">ih", 3, 6))


def test_stop_replica_v1_request():
    body = {"controller_id": 1, "controller_epoch": 2, "broker_epoch": 5, "delete_partitions": True,
            "topics": [{"name": "logs", "partition_indexes": [0, 4]}]}
    expected = struct.pack(">iiq", 1, 2, 5) + b"\x01" + struct.pack(">i", 1) + _s("logs") + _ints([0, 4])
    _check(ApiKey.STOP_REPLICA, 1, False, body, expected)


def test_update_metadata_v5_request():
    body = {"controller_id": 1, "controller_epoch": 2, "broker_epoch": -1,
            "topic_states": [{"topic_name": "t", "partition_states": [
                {"partition_index": 0, "controller_epoch": 2, "leader": 1, "leader_epoch": 0, "isr": [1],
                 "zk_version": 0, "replicas": [1], "offline_replicas": []}]}],
            "live_brokers": [{"id": 1, "endpoints": [{"port": 9092, "host": "h", "listener": "PLAINTEXT",
                                                      "security_protocol": 0}], "rack": None}]}
    expected = (struct.pack(">iiq", 1, 2, -1) + struct.pack(">i", 1) + _s("t") + struct.pack(">i", 1)
                + struct.pack(">iiii", 0, 2, 1, 0) + _ints([1]) + struct.pack(">i", 0) + _ints([1]) + _ints([])
                + struct.pack(">i", 1) + struct.pack(">i", 1) + struct.pack(">i", 1) + struct.pack(">i", 9092)
                + _s("h") + _s("PLAINTEXT") + struct.pack(">h", 0) + struct.pack(">h", -1))
    _check(ApiKey.UPDATE_METADATA, 5, False, body, expected)
    _check(ApiKey.UPDATE_METADATA, 5, True, {"error_code": 0}, struct.pack(">h", 0))


def test_sasl_messages():
    _check(ApiKey.SASL_HANDSHAKE, 1, False, {"mechanism": "PLAIN"}, _s("PLAIN"))
    _check(ApiKey.SASL_HANDSHAKE, 1, True, {"error_code": 0, "mechanisms": ["PLAIN"]},
           struct.pack(">h", 0) + struct.pack(">i", 1) + _s("PLAIN"))
    token = b"\0broker-1\0secret"
    _check(ApiKey.SASL_AUTHENTICATE, 1, False, {"auth_bytes": token}, struct.pack(">i", len(token)) + token)
    _check(ApiKey.SASL_AUTHENTICATE, 1, True,
           {"error_code": 58, "error_message": "no", "auth_bytes": b"", "session_lifetime_ms": 0},
           struct.pack(">h", 58) + _s("no") + struct.pack(">i", 0) + struct.pack(">q", 0))

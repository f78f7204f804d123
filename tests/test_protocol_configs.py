"""The config APIs' wire format where kafka-python (Kafka 4.x schemas) cannot be the oracle:
DescribeConfigs v0 (removed in Kafka 4.0) checked byte by byte against the 3.x schema, and the
flexible versions (DescribeConfigs v4, AlterConfigs v2, IncrementalAlterConfigs v1) checked on
hand-written bytes too. tests/test_protocol_golden.py cross-checks every other version."""

from __future__ import annotations

import struct

from logship.protocol import ApiKey, decode_request, decode_response, encode_request, encode_response
from logship.protocol.primitives import Writer
from logship.protocol import message_codec


def _body(key, version, response, value) -> bytes:
    out = Writer()
    message_codec(key, version, response).encode(out, value)
    return bytes(out)


def _s(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _cs(text: str) -> bytes:  # compact string: length + 1 as an unsigned varint (< 128 here)
    return bytes([len(text) + 1]) + text.encode()


def test_describe_configs_v0_request_and_response_bytes():
    request = {"resources": [{"resource_type": 2, "resource_name": "logs", "configuration_keys": None}]}
    wire = struct.pack(">i", 1) + b"\x02" + _s("logs") + struct.pack(">i", -1)
    assert _body(ApiKey.DESCRIBE_CONFIGS, 0, False, request) == wire
    frame = encode_request(ApiKey.DESCRIBE_CONFIGS, 0, 5, "t", request)
    assert decode_request(frame[4:]).body == request

    response = {"throttle_time_ms": 0, "results": [{
        "error_code": 0, "error_message": None, "resource_type": 2, "resource_name": "logs",
        "configs": [{"name": "retention.ms", "value": "1000", "read_only": False, "is_default": False,
                     "is_sensitive": False}]}]}
    wire = (struct.pack(">ii", 0, 1) + struct.pack(">h", 0) + struct.pack(">h", -1) + b"\x02" + _s("logs")
            + struct.pack(">i", 1) + _s("retention.ms") + _s("1000") + b"\x00\x00\x00")
    assert _body(ApiKey.DESCRIBE_CONFIGS, 0, True, response) == wire
    _, decoded = decode_response(ApiKey.DESCRIBE_CONFIGS, 0, encode_response(ApiKey.DESCRIBE_CONFIGS, 0, 5, response)[4:])
    assert decoded == response


def test_describe_configs_v4_is_flexible():
    request = {"resources": [{"resource_type": 4, "resource_name": "0", "configuration_keys": ["a"]}],
               "include_synonyms": True, "include_documentation": False}
    wire = b"\x02" + b"\x04" + _cs("0") + b"\x02" + _cs("a") + b"\x00" + b"\x01\x00" + b"\x00"
    assert _body(ApiKey.DESCRIBE_CONFIGS, 4, False, request) == wire
    frame = encode_request(ApiKey.DESCRIBE_CONFIGS, 4, 9, "c", request)
    assert decode_request(frame[4:]).body == request

    response = {"throttle_time_ms": 0, "results": [{
        "error_code": 0, "error_message": None, "resource_type": 2, "resource_name": "t",
        "configs": [{"name": "k", "value": None, "read_only": True, "config_source": 5, "is_sensitive": False,
                     "synonyms": [{"name": "s", "value": "v", "source": 4}], "config_type": 7,
                     "documentation": "d"}]}]}
    wire = (struct.pack(">i", 0) + b"\x02" + struct.pack(">h", 0) + b"\x00" + b"\x02" + _cs("t")
            + b"\x02" + _cs("k") + b"\x00" + b"\x01" + b"\x05" + b"\x00"
            + b"\x02" + _cs("s") + _cs("v") + b"\x04" + b"\x00"
            + b"\x07" + _cs("d") + b"\x00" + b"\x00" + b"\x00")
    assert _body(ApiKey.DESCRIBE_CONFIGS, 4, True, response) == wire


def test_incremental_alter_configs_v1_and_alter_configs_v2_are_flexible():
    request = {"resources": [{"resource_type": 2, "resource_name": "t", "configs": [
        {"name": "cleanup.policy", "config_operation": 2, "value": "compact"}]}], "validate_only": True}
    wire = (b"\x02" + b"\x02" + _cs("t") + b"\x02" + _cs("cleanup.policy") + b"\x02" + _cs("compact") + b"\x00"
            + b"\x00" + b"\x01" + b"\x00")
    assert _body(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, False, request) == wire
    assert decode_request(encode_request(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, 1, "c", request)[4:]).body == request
    v0 = (struct.pack(">i", 1) + b"\x02" + _s("t") + struct.pack(">i", 1) + _s("cleanup.policy") + b"\x02"
          + _s("compact") + b"\x01")
    assert _body(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, False, request) == v0

    response = {"throttle_time_ms": 0, "responses": [
        {"error_code": 40, "error_message": "bad", "resource_type": 2, "resource_name": "t"}]}
    wire = struct.pack(">i", 0) + b"\x02" + struct.pack(">h", 40) + _cs("bad") + b"\x02" + _cs("t") + b"\x00\x00"
    assert _body(ApiKey.ALTER_CONFIGS, 2, True, response) == wire
    assert _body(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, True, response) == wire

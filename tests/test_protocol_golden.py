"""Golden cross-checks of logship.protocol against kafka-python 3.0.12's independent codec
(test-only oracle), for every API, every implemented version, requests and responses:

* our tables agree with Kafka's JSON schemas that kafka-python embeds;
* random messages encoded by us decode identically with kafka-python, kafka-python's encoding is
  byte-for-byte ours, and we decode kafka-python's bytes back to the same message;
* whole frames (size prefix + request header v1/v2, response header v0/v1) agree too.
"""

from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # kafka-python reads its schemas with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.protocol.admin  # noqa: F401  (registers the classes)
    import kafka.protocol.consumer  # noqa: F401
    import kafka.protocol.metadata  # noqa: F401
    import kafka.protocol.producer  # noqa: F401
    from kafka.protocol.api_message import ApiMessage
    from kafka.protocol.schemas import load_json

from logship.protocol import (
    APIS, ApiKey, decode_request, decode_response, encode_request, encode_response, message_codec,
)
from logship.protocol.primitives import Writer
from logship.protocol.schema import Field, parse_versions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CASES = [(api.key, v) for api in APIS.values() for v in range(api.versions[0], api.versions[1] + 1)]
IDS = [f"{APIS[k].name}-v{v}" for k, v in CASES]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


ORACLE = {(c.API_KEY, c.type == "response"): c for c in _subclasses(ApiMessage)
          if c._class_version is None and getattr(c, "_json", None) is not None}

# kafka-python renames and retypes these INT32 fields as a set of bits (None for INT32_MIN).
BITFIELDS = {
    (ApiKey.METADATA, "topic_authorized_operations"): "authorized_operations",
    (ApiKey.METADATA, "cluster_authorized_operations"): "authorized_operations",
    (ApiKey.DESCRIBE_GROUPS, "authorized_operations"): "authorized_operations",
}


# --- tables vs Kafka's JSON ----------------------------------------------------------------------

def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return out.lstrip("_")


def _from_json(entry: dict) -> Field:
    fields = entry.get("fields")
    return Field(_snake(entry["name"]), entry["type"], entry["versions"],
                 nullable=entry.get("nullableVersions"), default=entry.get("default"),
                 tag=entry.get("tag"), tagged=entry.get("taggedVersions"),
                 fields=None if fields is None else [_from_json(f) for f in fields])


def _layout(fields, version, path=""):
    out = []
    for f in fields:
        if not f.exists_in(version):
            continue
        out.append((path + f.name, f.type, f.nullable_in(version), f.tagged_in(version) and f.tag,
                    f.default))
        if f.is_struct:
            out.extend(_layout(f.fields, version, path + f.name + "."))
    return out


# versions logship serves that kafka-python's (Kafka 4.x) schemas no longer have; checked elsewhere
ORACLE_GAPS = {
    (ApiKey.DESCRIBE_CONFIGS, 0): "removed in Kafka 4.0; tests/test_protocol_configs.py checks it by hand",
    **{(key, version): "ZooKeeper-era inter-broker API, removed in Kafka 4.0; "
                       "tests/test_protocol_interbroker.py checks it by hand"
       for key, version in ((ApiKey.LEADER_AND_ISR, 2), (ApiKey.STOP_REPLICA, 1), (ApiKey.UPDATE_METADATA, 5))},
}


def _skip_gap(key, version):
    if (key, version) in ORACLE_GAPS:
        pytest.skip(ORACLE_GAPS[(key, version)])


KNOWN_DEVIATIONS = {
    # consumer default, as kafka-python patches it; Kafka's generated code says 0
    (ApiKey.LIST_OFFSETS, False, "replica_id"): (-1, 0),
}


@pytest.mark.parametrize("key,version", CASES, ids=IDS)
@pytest.mark.parametrize("response", [False, True], ids=["request", "response"])
def test_tables_match_kafka_json_schemas(key, version, response):
    _skip_gap(key, version)
    api = APIS[key]
    raw = load_json(api.name + ("Response" if response else "Request"))
    lo, hi = parse_versions(raw["validVersions"])
    assert lo <= version <= hi, f"Kafka's schema has no {api.name} v{version}"
    flex = int(raw["flexibleVersions"].rstrip("+")) if raw["flexibleVersions"] != "none" else None
    assert api.is_flexible(version) == (flex is not None and version >= flex)
    theirs = _layout([_from_json(f) for f in raw["fields"]], version)
    ours = _layout(api.response if response else api.request, version)
    for (k, resp, name), (mine, kafka) in KNOWN_DEVIATIONS.items():
        if k == key and resp == response:
            ours = [(n, t, nu, tg, kafka if n == name and d == mine else d) for n, t, nu, tg, d in ours]
    assert ours == theirs


# --- random messages from our schema -------------------------------------------------------------

_INT = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


def _scalar(kind: str):
    if kind in _INT:
        bits = _INT[kind]
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return {"bool": st.booleans(), "string": _TEXT, "bytes": st.binary(max_size=8),
            "records": st.binary(max_size=24)}[kind]


def struct_strategy(fields, version, overrides=None):
    spec = {}
    for f in fields:
        if not f.exists_in(version):
            continue
        item = struct_strategy(f.fields, version) if f.is_struct else _scalar(f.item_type)
        s = st.lists(item, max_size=3) if f.is_array else item
        if f.nullable_in(version) or f.type == "records":
            s = st.none() | s
        spec[f.name] = s
    spec.update(overrides or {})
    return st.fixed_dictionaries(spec)


def message_strategy(key, version, response):
    api = APIS[key]
    overrides = {}
    if key == ApiKey.API_VERSIONS and response and version > 0:
        overrides["error_code"] = st.just(0)  # kafka-python decodes error replies as v0
    return struct_strategy(api.response if response else api.request, version, overrides)


# --- conversion to and from kafka-python objects -------------------------------------------------
_THEIR_BITFIELDS = {("authorized_operations", ApiKey.METADATA),
                    ("authorized_operations", ApiKey.DESCRIBE_GROUPS)}


def _to_bits(value):
    bits = {i for i in range(32) if (value & 0xFFFFFFFF) >> i & 1}
    return None if bits == {31} else bits


def _from_bits(bits):
    if bits is None:
        return -(1 << 31)
    value = sum(1 << b for b in bits)
    return value - (1 << 32) if value >= 1 << 31 else value


def to_oracle(key, data_class, value: dict, version):
    kwargs = {}
    for name, v in value.items():
        their = BITFIELDS.get((key, name))
        if their:
            kwargs[their] = _to_bits(v)
            continue
        field = data_class.fields[name]
        if field.is_struct_array() and v is not None:
            v = [to_oracle(key, field.data_class, item, version) for item in v]
        elif field.is_struct() and v is not None:
            v = to_oracle(key, field.data_class, v, version)
        kwargs[name] = v
    return data_class(version=version, **kwargs)


def normalize(value, key=None):
    if isinstance(value, dict):
        out = {}
        for name, v in value.items():
            if (key, name) in BITFIELDS or (name, key) in _THEIR_BITFIELDS:
                continue
            out[name] = normalize(v, key)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(v, key) for v in value]
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    return value


def _bitfield_values(value, key, ours=True, path=()):
    """The bitfield fields of a message, as ints, keyed by path (for a separate comparison)."""
    found = {}
    if isinstance(value, dict):
        for name, v in value.items():
            if ours and (key, name) in BITFIELDS:
                found[path] = v
            elif not ours and name == "authorized_operations" and key in (ApiKey.METADATA,
                                                                           ApiKey.DESCRIBE_GROUPS):
                found[path] = _from_bits(v)
            else:
                found.update(_bitfield_values(v, key, ours, path + (name,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.update(_bitfield_values(v, key, ours, path + (i,)))
    return found


def body_bytes(key, version, response, value):
    out = Writer()
    message_codec(key, version, response).encode(out, value)
    return bytes(out)


# --- the cross-checks ----------------------------------------------------------------------------

def _check(key, version, response, value):
    cls = ORACLE[(key, response)]
    ours = body_bytes(key, version, response, value)

    # ours -> kafka-python
    theirs_decoded = cls.decode(ours, version=version).to_dict(json=False)
    assert normalize(theirs_decoded, key) == normalize(value, key)
    assert _bitfield_values(theirs_decoded, key, ours=False) == _bitfield_values(value, key)

    # kafka-python -> bytes identical to ours
    theirs = bytes(to_oracle(key, cls[None], value, version).encode(version=version))
    assert theirs == ours

    # whole frames
    if response:
        frame = encode_response(key, version, 77, value)
        decoded = cls.decode(frame, version=version, header=True, framed=True)
        assert decoded.header.correlation_id == 77
        assert normalize(decoded.to_dict(json=False), key) == normalize(value, key)
        correlation_id, body = decode_response(key, version, frame[4:])
    else:
        frame = encode_request(key, version, 77, "logship-test", value)
        obj = to_oracle(key, cls[None], value, version)
        obj.with_header(correlation_id=77, client_id="logship-test")
        assert bytes(obj.encode(header=True, framed=True)) == frame
        request = decode_request(frame[4:])
        assert (request.api_key, request.api_version, request.client_id) == (key, version, "logship-test")
        correlation_id, body = request.correlation_id, request.body
    assert correlation_id == 77
    assert normalize(body, key) == normalize(value, key)
    assert _bitfield_values(body, key) == _bitfield_values(value, key)


@pytest.mark.parametrize("key,version", CASES, ids=IDS)
@pytest.mark.parametrize("response", [False, True], ids=["request", "response"])
def test_cross_check_with_kafka_python(key, version, response):
    _skip_gap(key, version)
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(message_strategy(key, version, response))
    def run(value):
        _check(key, version, response, value)

    run()


@pytest.mark.parametrize("key,version", CASES, ids=IDS)
@pytest.mark.parametrize("response", [False, True], ids=["request", "response"])
def test_defaults_agree_with_kafka_python(key, version, response):
    """An empty dict encodes to Kafka's defaults, exactly as kafka-python's default object."""
    _skip_gap(key, version)
    cls = ORACLE[(key, response)]
    ours = body_bytes(key, version, response, {})
    assert ours == bytes(cls[version]().encode())


def test_produce_v7_request_example():
    batch = bytes(range(256)) * 80
    body = {"transactional_id": None, "acks": -1, "timeout_ms": 30000,
            "topic_data": [{"name": "logs", "partition_data": [{"index": 3, "records": batch}]}]}
    frame = encode_request(ApiKey.PRODUCE, 7, 1, "kcat", body)
    theirs = ORACLE[(0, False)].decode(frame, version=7, header=True, framed=True)
    assert theirs.topic_data[0].partition_data[0].records == batch
    assert theirs.header.client_id == "kcat"
    request = decode_request(frame[4:])
    records = request.body["topic_data"][0]["partition_data"][0]["records"]
    assert isinstance(records, memoryview) and records.obj is not None and records == batch


def test_fetch_v12_tagged_fields_cross_check():
    value = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [{
        "topic": "t", "partitions": [{
            "partition_index": 0, "error_code": 0, "high_watermark": 10, "last_stable_offset": 10,
            "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
            "records": b"xyz", "current_leader": {"leader_id": 1, "leader_epoch": 5},
            "diverging_epoch": {"epoch": -1, "end_offset": -1},
            "snapshot_id": {"end_offset": 7, "epoch": 2}}]}]}
    ours = body_bytes(ApiKey.FETCH, 12, True, value)
    theirs = ORACLE[(1, True)].decode(ours, version=12)
    partition = theirs.responses[0].partitions[0]
    assert (partition.current_leader.leader_id, partition.current_leader.leader_epoch) == (1, 5)
    assert (partition.snapshot_id.end_offset, partition.snapshot_id.epoch) == (7, 2)
    # two tags present (1 and 2): the default diverging_epoch is not written
    assert ours[ours.index(b"xyz") + 3] == 2


def test_api_versions_v3_flexible_frame():
    """ApiVersions v3: header v2 on the request; the response header stays v0 (KIP-511)."""
    request = encode_request(ApiKey.API_VERSIONS, 3, 9, "rdkafka",
                             {"client_software_name": "librdkafka", "client_software_version": "2.0.2"})
    # size, key 18, version 3, correlation 9, client id "rdkafka" (int16 length), empty tags,
    # then compact strings and an empty tag section
    assert request[4:8] == b"\x00\x12\x00\x03"
    assert request[12:14] == b"\x00\x07" and request[21] == 0
    assert request[22:] == b"\x0blibrdkafka\x062.0.2\x00"
    decoded = decode_request(request[4:])
    assert decoded.body == {"client_software_name": "librdkafka", "client_software_version": "2.0.2"}

    body = {"error_code": 0, "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 3}],
            "throttle_time_ms": 0, "finalized_features_epoch": 4, "zk_migration_ready": True}
    frame = encode_response(ApiKey.API_VERSIONS, 3, 9, body)
    assert frame[4:8] == struct.pack(">i", 9) and frame[8:10] == b"\x00\x00"  # no header tags
    theirs = ORACLE[(18, True)].decode(frame, version=3, header=True, framed=True)
    assert theirs.finalized_features_epoch == 4 and theirs.zk_migration_ready is True
    assert theirs.api_keys[0].max_version == 3
    _, ours = decode_response(ApiKey.API_VERSIONS, 3, frame[4:])
    assert ours["finalized_features_epoch"] == 4 and ours["supported_features"] == []

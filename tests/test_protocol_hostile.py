"""Hostile input: the codec answers garbage with ProtocolError subclasses only (never
struct.error, IndexError, UnicodeDecodeError or MemoryError), refuses impossible lengths before
allocating, and does so quickly."""

from __future__ import annotations

import struct
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logship import errors
from logship.protocol import (
    ADVERTISED, APIS, ApiKey, FrameReader, UnsupportedRequestError, decode_request,
    decode_request_header, decode_response, encode_request, encode_response, read_frame_length,
)
from logship.protocol.primitives import read_uvarint


def sample(fields, version, seed=1):
    """A deterministic message with every field of `version` set to a non-default value."""
    ints = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
    value = {}
    for i, f in enumerate(fields):
        if not f.exists_in(version):
            continue
        n = seed * 7 + i
        if f.is_struct:
            item = sample(f.fields, version, n)
        elif f.item_type in ints:
            item = (n * 977) % (1 << (ints[f.item_type] - 1))
        else:
            item = {"bool": True, "string": f"s{n}-é", "bytes": bytes([n % 256]) * 3,
                    "records": b"R" * (n % 50 + 1)}[f.item_type]
        value[f.name] = [item, item] if f.is_array else item
    return value


CASES = [(api.key, v) for api in APIS.values() for v in range(api.versions[0], api.versions[1] + 1)]
IDS = [f"{APIS[k].name}-v{v}" for k, v in CASES]


def request_frame(key, version):
    return encode_request(key, version, 7, "hostile", sample(APIS[key].request, version))[4:]


def response_frame(key, version):
    body = sample(APIS[key].response, version)
    if key == ApiKey.API_VERSIONS:
        body["error_code"] = 0  # error replies may legitimately be v0 bodies (see decode_response)
    return encode_response(key, version, 7, body)[4:]


@pytest.mark.parametrize("key,version", CASES, ids=IDS)
def test_every_truncation_is_a_protocol_error(key, version):
    for frame, decode in ((request_frame(key, version), decode_request),
                          (response_frame(key, version), lambda f: decode_response(key, version, f))):
        decode(frame)  # the whole frame is fine
        for cut in range(len(frame)):
            with pytest.raises(errors.ProtocolError):
                decode(frame[:cut])
        with pytest.raises(errors.ProtocolError, match="trailing"):
            decode(frame + b"\x00")


@pytest.mark.parametrize("key,version", CASES, ids=IDS)
def test_mutated_frames_never_escape(key, version):
    frames = request_frame(key, version), response_frame(key, version)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 1), st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                                       min_size=1, max_size=4))
    def run(which, edits):
        frame = bytearray(frames[which])
        for position, byte in edits:
            frame[position % len(frame)] = byte
        try:
            if which == 0:
                decode_request(bytes(frame))
            else:
                decode_response(key, version, bytes(frame))
        except errors.ProtocolError:
            pass

    run()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    for decode in (decode_request, decode_request_header):
        try:
            decode(data)
        except errors.ProtocolError:
            pass
    for key, version in ((0, 7), (1, 10), (3, 9), (18, 3)):
        try:
            decode_response(key, version, data)
        except errors.ProtocolError:
            pass


def _timed_protocol_error(decode, frame, limit=0.05):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(errors.ProtocolError):
            decode(frame)
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < limit, f"took {elapsed:.3f}s"
    assert peak < 1 << 20, f"allocated {peak} bytes"


def _header(key, version, client_id=b"c"):
    return struct.pack(">hhih", key, version, 1, len(client_id)) + client_id


def test_huge_array_count_with_few_bytes_left():
    # Produce v7: transactional_id null, acks, timeout, then topic_data count 2^31-1
    frame = _header(0, 7) + struct.pack(">hhii", -1, 1, 1000, 0x7FFFFFFF) + b"\x00" * 10
    _timed_protocol_error(decode_request, frame)
    # Metadata v4 request: topics count 2^31-1 with 10 bytes left
    _timed_protocol_error(decode_request, _header(3, 4) + struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 10)
    # an int32 array (Metadata response replica_nodes) claiming 2^30 entries
    _timed_protocol_error(lambda f: decode_response(3, 1, f), struct.pack(">ii", 1, 0x40000000) + b"\0" * 10)


def test_huge_compact_counts():
    # Metadata v9 (flexible): compact topics array with uvarint count 2^32-1
    body = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10
    _timed_protocol_error(decode_request, _header(3, 9) + b"\x00" + body)
    # ApiVersions v3 response: compact api_keys count near 2^32
    _timed_protocol_error(lambda f: decode_response(18, 3, f), struct.pack(">ih", 1, 0) + body)
    # a tagged-field section claiming 2^32-1 fields
    _timed_protocol_error(decode_request, _header(18, 3) + b"\xff\xff\xff\xff\x0f" + b"\x00" * 8)
    # a tagged field whose size runs past the frame
    _timed_protocol_error(decode_request, _header(18, 3) + b"\x01\x00\xff\xff\x03" + b"\x00" * 8)


def test_string_and_bytes_lengths_beyond_the_frame():
    _timed_protocol_error(decode_request, struct.pack(">hhih", 18, 0, 1, 0x7FFF) + b"abc")
    # Produce v7 records length 2^31-1 with 3 bytes present
    frame = (_header(0, 7) + struct.pack(">hhii", -1, 1, 1000, 1) + struct.pack(">h", 1) + b"t"
             + struct.pack(">iii", 1, 0, 0x7FFFFFFF) + b"abc")
    _timed_protocol_error(decode_request, frame)
    # negative length for a non-nullable string (topic name)
    frame = (_header(0, 7) + struct.pack(">hhii", -1, 1, 1000, 1) + struct.pack(">h", -5))
    _timed_protocol_error(decode_request, frame)
    # JoinGroup v0 response member metadata (bytes) with length far beyond the frame
    frame = struct.pack(">ihi", 1, 0, 1) + b"\x00\x00" * 3 + struct.pack(">i", 1) + b"\x00\x00" + struct.pack(">i", 1 << 30)
    _timed_protocol_error(lambda f: decode_response(11, 0, f), frame)


def test_invalid_utf8():
    with pytest.raises(errors.ProtocolError, match="UTF-8"):
        decode_request_header(_header(18, 0, b"\xff\xfe"))
    with pytest.raises(errors.ProtocolError, match="UTF-8"):
        decode_request(_header(3, 4) + struct.pack(">ih", 1, 2) + b"\xc3\x28" + b"\x01")


def test_overlong_varint():
    with pytest.raises(errors.ProtocolError):
        read_uvarint(memoryview(b"\xff\xff\xff\xff\xff\x01"), 0)
    with pytest.raises(errors.ProtocolError):
        read_uvarint(memoryview(b"\xff\xff\xff\xff\x7f"), 0)  # 35 bits
    with pytest.raises(errors.ProtocolError):
        decode_request(_header(3, 9) + b"\x00" + b"\x80" * 12)


@pytest.mark.parametrize("size", [0x7FFFFFFF, 2 ** 31 - 2, -1, -(2 ** 31), MAX := 100 * 1024 * 1024 + 1])
def test_frame_size_prefix_refused_before_allocation(size):
    prefix = struct.pack(">i", size)
    with pytest.raises(errors.FrameTooLargeError):
        read_frame_length(prefix)
    reader = FrameReader()
    with pytest.raises(errors.FrameTooLargeError):
        reader.feed(prefix + b"\x00" * 16)


@pytest.mark.parametrize("key,version", [(99, 0), (-1, 0), (0, 2), (1, 3), (1, 13), (18, 5), (32767, -1)])
def test_unknown_key_or_version(key, version):
    frame = _header(key, version) + b"\x00" * 32
    with pytest.raises(UnsupportedRequestError) as info:
        decode_request(frame)
    assert isinstance(info.value, errors.ProtocolError)
    assert (info.value.header.api_key, info.value.header.api_version, info.value.header.correlation_id) == (
        key, version, 1)
    with pytest.raises(UnsupportedRequestError):
        decode_response(key, version, b"\x00" * 8)


def test_advertised_versions_outside_the_supported_table():
    frame = request_frame(ApiKey.FETCH, 12)
    with pytest.raises(UnsupportedRequestError):
        decode_request(frame, supported=ADVERTISED)


def test_decoding_hostile_frames_is_fast():
    frames = [request_frame(k, v) for k, v in CASES]
    start = time.perf_counter()
    count = 0
    for frame in frames:
        for cut in range(0, len(frame), 3):
            try:
                decode_request(frame[:cut])
            except errors.ProtocolError:
                count += 1
    elapsed = time.perf_counter() - start
    assert count > 1000
    assert elapsed / count < 200e-6, f"{elapsed / count * 1e6:.1f} µs per hostile frame"

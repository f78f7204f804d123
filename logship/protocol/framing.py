"""Frames and headers: the size prefix, request header v1/v2, response header v0/v1, and the
public encode/decode entry points for whole requests and responses.

A *frame* here is the bytes after the 4-byte size prefix (what a server reads once it knows the
size); the ``encode_*`` functions return complete frames *with* the prefix, ready to write.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping

from logship import errors

from .api_keys import ADVERTISED, ApiKey, api_versions_entries
from .apis import APIS
from .codec import StructCodec, compile_struct
from .primitives import DECODE_ERRORS, EncodeError, Writer, read_nullable_string, write_nullable_string

__all__ = [
    "MAX_FRAME_BYTES", "UnsupportedRequestError", "RequestHeader", "Request", "FrameReader",
    "read_frame_length", "REQUEST_HEADER_BYTES", "decode_request_header", "decode_request", "encode_request",
    "encode_request_parts", "decode_response", "encode_response", "encode_response_parts",
    "encode_unsupported_api_versions", "response_expected", "is_flexible", "message_codec",
]

#: Default ceiling for a frame's size prefix; larger (or negative) prefixes are refused.
MAX_FRAME_BYTES = 100 * 1024 * 1024

_SIZE = struct.Struct(">i")
_REQUEST_HEADER = struct.Struct(">hhi")
REQUEST_HEADER_BYTES = _REQUEST_HEADER.size  # api_key, api_version, correlation_id: the least a request holds
_INT16 = struct.Struct(">h")
_KEYS = {int(key): key for key in ApiKey}
_UNSUPPORTED_VERSION = errors.UnsupportedVersionError.code
_TAGS_ONLY = compile_struct((), 0, True)  # a header's tagged-field section (no known tags)


class UnsupportedRequestError(errors.UnsupportedVersionError, errors.ProtocolError):
    """Unknown API key, or a version the codec does not implement (or the caller does not
    support). `header` (a RequestHeader, when decoding a request) gives the broker the
    correlation id and API key to answer with UNSUPPORTED_VERSION (35)."""

    def __init__(self, message: str, header: "RequestHeader | None" = None):
        super().__init__(message)
        self.header = header


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int  # an ApiKey when known, else the raw int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: dict

    @property
    def header(self) -> RequestHeader:
        return RequestHeader(self.api_key, self.api_version, self.correlation_id, self.client_id)

    @property
    def expects_response(self) -> bool:
        return response_expected(self.api_key, self.body)


def response_expected(api_key: int, body: Mapping) -> bool:
    """False only for Produce with acks=0, which Kafka never answers."""
    return not (api_key == ApiKey.PRODUCE and body.get("acks") == 0)


# --- frame size ----------------------------------------------------------------------------------

def read_frame_length(prefix, max_bytes: int = MAX_FRAME_BYTES, min_bytes: int = 0) -> int:
    """The size in the first 4 bytes of `prefix`; FrameTooLargeError if it is negative or above
    `max_bytes` (checked before anyone allocates for the frame), ProtocolError if it is below
    `min_bytes` (a request frame holds at least REQUEST_HEADER_BYTES) or the prefix is short."""
    if len(prefix) < 4:
        raise errors.ProtocolError(f"frame size prefix needs 4 bytes, got {len(prefix)}")
    size = _SIZE.unpack_from(prefix, 0)[0]
    if size < 0 or size > max_bytes:
        raise errors.FrameTooLargeError(f"frame size {size} is outside 0..{max_bytes}")
    if size < min_bytes:
        raise errors.ProtocolError(f"frame size {size} is below the {min_bytes}-byte request header")
    return size


class FrameReader:
    """Sans-IO reassembly of frames from a byte stream: `feed(data)`, then take complete frames
    (without their prefix, as bytes) from `next_frame()` or by iterating."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES):
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data) -> None:
        self._buf += data
        if len(self._buf) >= 4:
            read_frame_length(self._buf, self.max_bytes)

    def next_frame(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 4:
            return None
        size = read_frame_length(buf, self.max_bytes)
        if len(buf) < 4 + size:
            return None
        frame = bytes(buf[4:4 + size])
        del buf[:4 + size]
        if len(buf) >= 4:
            read_frame_length(buf, self.max_bytes)
        return frame

    def __iter__(self):
        while (frame := self.next_frame()) is not None:
            yield frame

    @property
    def buffered(self) -> int:
        return len(self._buf)


# --- compiled codecs -----------------------------------------------------------------------------

_CODECS: dict[tuple[int, int, bool], tuple[StructCodec, bool]] = {}


def _compile(api_key: int, version: int, response: bool) -> tuple[StructCodec, bool]:
    api = APIS.get(api_key)
    if api is None:
        raise UnsupportedRequestError(f"unknown API key {api_key}")
    if not api.has_version(version):
        low, high = api.versions
        raise UnsupportedRequestError(f"{api.name} v{version} is not supported (the codec "
                                      f"implements v{low}-v{high})")
    flexible = api.is_flexible(version)
    codec = compile_struct(api.response if response else api.request, version, flexible)
    _CODECS[(api_key, version, response)] = (codec, flexible)
    return codec, flexible


def message_codec(api_key: int, version: int, response: bool) -> StructCodec:
    """The compiled body codec of one API version (compiled on first use, then cached)."""
    entry = _CODECS.get((api_key, version, response)) or _compile(api_key, version, response)
    return entry[0]


def is_flexible(api_key: int, version: int) -> bool:
    api = APIS.get(api_key)
    return api is not None and api.is_flexible(version)


def _view(frame) -> memoryview:
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _malformed(what: str, exc: Exception, size: int) -> errors.ProtocolError:
    """The one-line error for a frame that fails to decode: struct's text (offsets into a
    buffer) becomes "ends early", which is what a short read means."""
    if isinstance(exc, struct.error):
        return errors.ProtocolError(f"malformed {what}: the {size}-byte frame ends before its last field")
    return errors.ProtocolError(f"malformed {what}: {exc}")


def _check_end(buf, pos: int, what: str) -> None:
    if pos != len(buf):
        raise errors.ProtocolError(f"{len(buf) - pos} trailing bytes after the {what}")


# --- requests ------------------------------------------------------------------------------------

def _parse_request_header(buf):
    if len(buf) < _REQUEST_HEADER.size:
        raise errors.ProtocolError(f"a {len(buf)}-byte frame is shorter than a request header (8 bytes: "
                                   "api key, api version, correlation id)")
    api_key, api_version, correlation_id = _REQUEST_HEADER.unpack_from(buf, 0)
    client_id, pos = read_nullable_string(buf, 8)
    return _KEYS.get(api_key, api_key), api_version, correlation_id, client_id, pos


def decode_request_header(frame) -> RequestHeader:
    """Only the header (api key, version, correlation id, client id): enough to answer a request
    whose body cannot be decoded. Raises ProtocolError if even that is malformed."""
    try:
        api_key, api_version, correlation_id, client_id, _ = _parse_request_header(_view(frame))
    except errors.ProtocolError:
        raise
    except DECODE_ERRORS as exc:
        raise _malformed("request header", exc, len(frame)) from None
    return RequestHeader(api_key, api_version, correlation_id, client_id)


def request_client_key(frame) -> bytes:
    """The client id field of a request frame as raw bytes (b"" when null, empty or cut short),
    without decoding anything else: what a scheduler groups requests by."""
    if len(frame) < 10:
        return b""
    size = int.from_bytes(frame[8:10], "big", signed=True)
    return bytes(frame[10:10 + size]) if size > 0 else b""


def decode_request(frame, supported: Mapping[int, tuple[int, int]] | None = None) -> Request:
    """Decode one request frame (without its size prefix).

    Raises UnsupportedRequestError (carrying the header) for an unknown key, a version the codec
    does not implement, or one outside `supported` (e.g. ADVERTISED) when given; ProtocolError
    for anything malformed. `records` fields are memoryview slices of `frame`.
    """
    buf = _view(frame)
    try:
        api_key, api_version, correlation_id, client_id, pos = _parse_request_header(buf)
        entry = _CODECS.get((api_key, api_version, False))
        if supported is not None:
            allowed = supported.get(api_key)
            if allowed is None or not allowed[0] <= api_version <= allowed[1]:
                entry = None
        if entry is None:
            entry = _request_entry(api_key, api_version, correlation_id, client_id, supported)
        codec, flexible = entry
        if flexible:
            pos = _TAGS_ONLY.decode(buf, pos)[1]
        body, pos = codec.decode(buf, pos)
        if not (api_key == ApiKey.METADATA and flexible and body.get("topics") is None):
            _check_end(buf, pos, "request")
        # else librdkafka's Metadata v9+ for all topics: it writes the null array as 4 zero
        # bytes (an int32 count it never finishes), which reads as null and three false flags,
        # then its flags and tags as tags, and leaves a byte over; Kafka ignores it (and the
        # flags, which a request for every topic does not need)
    except errors.ProtocolError:
        raise
    except DECODE_ERRORS as exc:
        raise _malformed("request", exc, len(buf)) from None
    return Request(api_key, api_version, correlation_id, client_id, body)


def _request_entry(api_key, api_version, correlation_id, client_id, supported):
    header = RequestHeader(api_key, api_version, correlation_id, client_id)
    if supported is not None:
        low, high = supported.get(api_key, (0, -1))
        if not low <= api_version <= high:
            raise UnsupportedRequestError(f"API {api_key} v{api_version} is not supported", header)
    try:
        return _CODECS.get((api_key, api_version, False)) or _compile(api_key, api_version, False)
    except UnsupportedRequestError as exc:
        exc.header = header
        raise


def _finish(out: Writer, what: str) -> list:
    """Write the size prefix and cut `out` into parts around its spliced objects."""
    splices = out.splices
    size = len(out) - 4
    if splices:
        size += sum(obj.length for _, obj in splices)
    if size > 0x7FFFFFFF:
        raise EncodeError(f"{what} of {size} bytes is too large for a frame")
    _SIZE.pack_into(out, 0, size)
    if not splices:
        return [bytes(out)]
    parts = []
    view = memoryview(out)
    start = 0
    for position, obj in splices:
        if position > start:
            parts.append(bytes(view[start:position]))
        parts.append(obj)
        start = position
    if start < len(out):
        parts.append(bytes(view[start:]))
    view.release()
    return parts


def _encode(what: str, api_key: int, version: int, header: bytes, flexible_header: bool,
            codec: StructCodec, body, splices: list | None) -> list:
    out = Writer(header, splices)
    if flexible_header:
        out.append(0)
    try:
        codec.encode(out, body)
    except EncodeError as exc:
        name = getattr(APIS.get(api_key), "name", api_key)
        path = f"{exc.field_path}: " if exc.field_path else ""
        raise EncodeError(f"{name} v{version} {what}: {path}{exc}") from None
    return _finish(out, what)


def _request_parts(api_key, version, correlation_id, client_id, body, splices) -> list:
    codec, flexible = _CODECS.get((api_key, version, False)) or _compile(api_key, version, False)
    try:
        header = Writer(b"\0\0\0\0" + _REQUEST_HEADER.pack(api_key, version, correlation_id))
        write_nullable_string(header, client_id)
    except (struct.error, EncodeError) as exc:
        raise EncodeError(f"bad request header: {exc}") from None
    return _encode("request", api_key, version, header, flexible, codec, body, splices)


def encode_request(api_key: int, version: int, correlation_id: int, client_id: str | None,
                   body: Mapping[str, Any]) -> bytes:
    """A complete request frame, size prefix included (header v1, or v2 if flexible)."""
    return _request_parts(api_key, version, correlation_id, client_id, body, None)[0]


def encode_request_parts(api_key: int, version: int, correlation_id: int, client_id: str | None,
                         body: Mapping[str, Any]) -> list:
    """Like encode_request, as a list of bytes and spliced records objects in wire order."""
    return _request_parts(api_key, version, correlation_id, client_id, body, [])


# --- responses -----------------------------------------------------------------------------------

def _response_parts(api_key, version, correlation_id, body, splices) -> list:
    codec, flexible = _CODECS.get((api_key, version, True)) or _compile(api_key, version, True)
    try:
        header = b"\0\0\0\0" + _SIZE.pack(correlation_id)
    except struct.error as exc:
        raise EncodeError(f"bad correlation id: {exc}") from None
    # KIP-511: the ApiVersions response header is always v0, even for flexible versions.
    flexible_header = flexible and api_key != ApiKey.API_VERSIONS
    return _encode("response", api_key, version, header, flexible_header, codec, body, splices)


def encode_response(api_key: int, version: int, correlation_id: int, body: Mapping[str, Any]) -> bytes:
    """A complete response frame, size prefix included. Records must be bytes-like or None."""
    return _response_parts(api_key, version, correlation_id, body, None)[0]


def encode_response_parts(api_key: int, version: int, correlation_id: int,
                          body: Mapping[str, Any]) -> list:
    """The response as a list of parts in wire order: bytes, and the spliced records objects
    (anything with an int `length`, e.g. a storage FileSlice) exactly as they were given.
    The size prefix (in the first part) counts the spliced lengths; no part is empty bytes."""
    return _response_parts(api_key, version, correlation_id, body, [])


def encode_fixed_response(api_key: int, version: int, correlation_id: int, body: Mapping[str, Any],
                          cache: dict) -> bytearray:
    """encode_response for a body that is the same in every answer (ApiVersions without error):
    encoded once per (api key, version) into `cache`; each answer is a copy with its
    correlation id (bytes 4-8 of the frame) set."""
    frame = cache.get((api_key, version))
    if frame is None:
        frame = cache[(api_key, version)] = encode_response(api_key, version, 0, body)
    out = bytearray(frame)
    try:
        out[4:8] = _SIZE.pack(correlation_id)
    except struct.error as exc:
        raise EncodeError(f"bad correlation id: {exc}") from None
    return out


def encode_unsupported_api_versions(correlation_id: int,
                                    advertised: Mapping[int, tuple[int, int]] = ADVERTISED) -> bytes:
    """The answer to an ApiVersions request of a version the broker does not support: a v0 body
    with UNSUPPORTED_VERSION (35) and the advertised key list, header v0 (what Kafka sends)."""
    body = {"error_code": _UNSUPPORTED_VERSION, "api_keys": api_versions_entries(advertised)}
    return encode_response(ApiKey.API_VERSIONS, 0, correlation_id, body)


def decode_response(api_key: int, version: int, frame) -> tuple[int, dict]:
    """Decode one response frame (without its size prefix) -> (correlation_id, body).

    An ApiVersions response carrying UNSUPPORTED_VERSION, or another error and a body that does
    not parse at `version`, is decoded as v0, as Kafka's clients do (its body then has v0 fields
    only)."""
    buf = _view(frame)
    try:
        codec, flexible = _CODECS.get((api_key, version, True)) or _compile(api_key, version, True)
        correlation_id = _SIZE.unpack_from(buf, 0)[0]
        pos = 4
        error_code = _INT16.unpack_from(buf, pos)[0] if api_key == ApiKey.API_VERSIONS else 0
        if error_code and version > 0:
            if error_code == _UNSUPPORTED_VERSION:
                codec = message_codec(api_key, 0, True)
            try:
                body, end = codec.decode(buf, pos)
                _check_end(buf, end, "response")
            except (errors.ProtocolError, *DECODE_ERRORS):
                body, end = message_codec(api_key, 0, True).decode(buf, pos)
        else:
            if flexible and api_key != ApiKey.API_VERSIONS:  # KIP-511: that header is always v0
                pos = _TAGS_ONLY.decode(buf, pos)[1]
            body, end = codec.decode(buf, pos)
        _check_end(buf, end, "response")
    except errors.ProtocolError:
        raise
    except DECODE_ERRORS as exc:
        raise _malformed("response", exc, len(buf)) from None
    return correlation_id, body

"""One blocking TCP connection to one broker, with version negotiation and pipelining.

`Connection(host, port)` connects (TCP_NODELAY), then asks ApiVersions which versions the
broker speaks and picks, per API, the highest version in the intersection of the broker's
range, the codec's range and CLIENT_MAX_VERSIONS (set N of reference/kafka-protocol.md, so
logship talks to Apache Kafka 3.x/4.x the way it talks to `logship serve`).

Requests are pipelined: `send()` writes a request and returns its correlation id;
`receive()` returns the responses in the order the requests were sent (Kafka guarantees
that order on one connection). Produce with acks=0 has no response and is never waited
for. `request()` is send + receive for callers that pipeline nothing.

Invariants: a connection is used by one thread at a time (callers lock if they share
one). Any I/O failure (refused, reset, timeout, EOF) closes the connection and raises
BrokerUnavailableError naming the address; a malformed or oversized frame closes it and
raises ProtocolError (FrameTooLargeError before anything is allocated for the frame).
A closed connection stays closed: make a new one.

Something that is not a Kafka broker is told apart while negotiating: the ApiVersions
request's correlation id is "\\r\\n\\r\\n" (Kafka echoes any id), so a line-based server
(HTTP, Redis, SMTP) sees a line end and answers instead of waiting; any answer that is not a
well-formed ApiVersions response (a length prefix that is text or absurd for ApiVersions,
a wrong correlation id, as an echo server or a TLS alert gives, a body that does not
decode) raises BrokerUnavailableError saying the address "does not speak the Kafka
protocol" and quoting what it said (text, or its first bytes in hex). After the
negotiation, malformed frames are ProtocolErrors. A server that
accepts and never answers is reported after `connect_timeout` (the whole negotiation's
budget), not the longer request timeout.
"""

from __future__ import annotations

import socket
import struct
from collections import deque

from ..errors import (BrokerUnavailableError, LogshipError, ProtocolError, UnsupportedVersionError, error_for_code,
                      explain)
from ..protocol import CODEC_VERSIONS, ApiKey, decode_response, encode_request, read_frame_length

__all__ = ["Connection", "CLIENT_MAX_VERSIONS", "DEFAULT_MAX_FRAME_BYTES"]

#: The highest version logship's client sends per API: set N (non-flexible everywhere), and the
#: admin and config APIs below.
CLIENT_MAX_VERSIONS = {
    ApiKey.PRODUCE: 8, ApiKey.FETCH: 10, ApiKey.LIST_OFFSETS: 2, ApiKey.METADATA: 4,
    ApiKey.OFFSET_COMMIT: 3, ApiKey.OFFSET_FETCH: 3, ApiKey.FIND_COORDINATOR: 1,
    ApiKey.JOIN_GROUP: 2, ApiKey.HEARTBEAT: 1, ApiKey.LEAVE_GROUP: 1, ApiKey.SYNC_GROUP: 1,
    ApiKey.DESCRIBE_GROUPS: 4, ApiKey.LIST_GROUPS: 2, ApiKey.API_VERSIONS: 2,
    ApiKey.CREATE_TOPICS: 5, ApiKey.DELETE_TOPICS: 3, ApiKey.INIT_PRODUCER_ID: 0, ApiKey.DESCRIBE_LOG_DIRS: 4,
    # admin and config APIs at the versions current Kafka prefers
    ApiKey.DESCRIBE_CONFIGS: 4, ApiKey.ALTER_CONFIGS: 2, ApiKey.INCREMENTAL_ALTER_CONFIGS: 1,
    ApiKey.CREATE_PARTITIONS: 3, ApiKey.DELETE_RECORDS: 2, ApiKey.DELETE_GROUPS: 2, ApiKey.OFFSET_DELETE: 0,
    ApiKey.DESCRIBE_QUORUM: 1,
}

#: Largest response frame accepted; a bigger length prefix is refused before allocation.
DEFAULT_MAX_FRAME_BYTES = 128 * 1024 * 1024

_CORRELATION = struct.Struct(">i")
_UNSUPPORTED_VERSION = UnsupportedVersionError.code
#: The correlation id of the ApiVersions request that opens a connection: "\r\n\r\n".
PROBE_CORRELATION_ID = 0x0D0A0D0A
#: No ApiVersions answer is this big; a length prefix above it is something else talking.
_MAX_API_VERSIONS_BYTES = 1 << 20


class Connection:
    """A blocking, pipelining connection; see the module docstring.

    `versions` maps each API key both sides speak to the version this connection uses.
    """

    def __init__(self, host: str, port: int, client_id: str | None = "logship", timeout: float = 30.0,
                 *, connect_timeout: float | None = None, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.host, self.port = host, int(port)
        self.client_id = client_id
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self.versions: dict[int, int] = {}
        self.broker_versions: dict[int, tuple[int, int]] = {}
        self._in_flight: deque[tuple[int, int, int]] = deque()  # (correlation id, api key, version)
        self._next_id = 1
        self._prefix = bytearray(4)
        self._sock: socket.socket | None = None
        self.connect_timeout = connect_timeout or min(timeout, 10.0)
        self._negotiating = False
        try:
            sock = socket.create_connection((host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise BrokerUnavailableError(f"cannot connect to broker {self.address}: {_reason(exc)}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        self._sock = sock
        try:
            self._negotiate()
        except BaseException:
            self.close()
            raise

    # --- public --------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._sock is None

    @property
    def in_flight(self) -> int:
        """Requests sent whose responses have not been received yet."""
        return len(self._in_flight)

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def version(self, api_key: int) -> int:
        """The version used for `api_key`; UnsupportedVersionError if the two sides share none."""
        version = self.versions.get(api_key)
        if version is None:
            raise UnsupportedVersionError(
                f"broker {self.address} and logship share no version of API {_name(api_key)}")
        return version

    def send(self, api_key: int, body: dict, version: int | None = None) -> int:
        """Write one request; returns its correlation id. Does not wait for the response."""
        if self._sock is None:
            raise BrokerUnavailableError(f"connection to broker {self.address} is closed")
        if version is None:
            version = self.version(api_key)
        correlation_id = self._next_id
        self._next_id = correlation_id + 1 if correlation_id < 0x7FFFFFFF else 1
        frame = encode_request(api_key, version, correlation_id, self.client_id, body)
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            self._fail(f"lost connection to broker {self.address} while sending: {_reason(exc)}")
        if not (api_key == ApiKey.PRODUCE and body.get("acks") == 0):
            self._in_flight.append((correlation_id, api_key, version))
        return correlation_id

    def receive(self, timeout: float | None = None) -> tuple[int, dict]:
        """The response to the oldest request in flight: (correlation id, body).

        Waits at most `timeout` seconds (default: the connection's timeout) for it to start
        and the same again between its pieces.
        """
        if not self._in_flight:
            raise ProtocolError(f"no request in flight on the connection to {self.address}")
        sock = self._sock
        if sock is None:
            raise BrokerUnavailableError(f"connection to broker {self.address} is closed")
        if timeout is not None:
            sock.settimeout(timeout)
        try:
            self._recv_into(memoryview(self._prefix))
            if self._negotiating and _not_a_kafka_length(self._prefix):
                self._not_kafka(bytes(self._prefix))
            try:
                size = read_frame_length(self._prefix, self.max_frame_bytes)
            except ProtocolError as exc:
                self.close()
                raise type(exc)(f"broker {self.address}: {exc}") from None
            frame = bytearray(size)
            self._recv_into(memoryview(frame))
        finally:
            if timeout is not None and self._sock is not None:
                self._sock.settimeout(self.timeout)
        expected_id, api_key, version = self._in_flight.popleft()
        if size < 4 or _CORRELATION.unpack_from(frame)[0] != expected_id:
            if self._negotiating:  # not an answer to ApiVersions: something else talking
                self._in_flight.clear()
                self._not_kafka(bytes(self._prefix) + bytes(frame))
            self.close()
            raise ProtocolError(f"broker {self.address} answered out of order "
                                f"(expected correlation id {expected_id})")
        try:
            return decode_response(api_key, version, frame)
        except LogshipError as exc:
            self.close()
            if self._negotiating:
                raise BrokerUnavailableError(f"{self.address} does not speak the Kafka protocol "
                                             f"(its answer to ApiVersions does not decode: {exc})") from None
            raise

    def request(self, api_key: int, body: dict, version: int | None = None,
                timeout: float | None = None) -> dict:
        """Send one request and return its response body (nothing else may be in flight)."""
        if self._in_flight:
            raise ProtocolError("request() needs a connection with nothing in flight")
        self.send(api_key, body, version)
        return self.receive(timeout)[1]

    def authenticate(self, principal: str, secret: bytes) -> None:
        """SASL PLAIN with a logship cluster's shared secret (SaslHandshake v1, then one
        SaslAuthenticate v1 carrying `NUL principal NUL secret`, RFC 4616): the connection
        becomes a peer session (`admin` for operators' tools such as `logship promote`).
        Raises the broker's error (SASL_AUTHENTICATION_FAILED, ...) as a one-line LogshipError."""
        handshake = self.request(ApiKey.SASL_HANDSHAKE, {"mechanism": "PLAIN"}, version=1)
        if handshake["error_code"]:
            raise error_for_code(handshake["error_code"], f"broker {self.address} does not take PLAIN "
                                                          f"authentication (is it a broker of this cluster?)")
        token = b"\0" + principal.encode("ascii") + b"\0" + secret
        answer = self.request(ApiKey.SASL_AUTHENTICATE, {"auth_bytes": token}, version=1)
        if answer["error_code"]:
            raise error_for_code(answer["error_code"], f"broker {self.address} refused the cluster secret: "
                                                       f"{answer.get('error_message') or 'authentication failed'}")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._in_flight.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.address}{' closed' if self.closed else ''}>"

    # --- internals -----------------------------------------------------------------------------

    def _recv_into(self, view: memoryview) -> None:
        sock, got, want = self._sock, 0, len(view)
        try:
            while got < want:
                n = sock.recv_into(view[got:], want - got)
                if n == 0:
                    self._fail(f"broker {self.address} closed the connection")
                got += n
        except socket.timeout:
            if self._negotiating:
                self._fail(f"{self.address} accepted the connection but did not answer within "
                           f"{sock.gettimeout():g} s (is it a Kafka broker?)", unanswered=True)
            self._fail(f"broker {self.address} did not answer within {sock.gettimeout():g} s", unanswered=True)
        except OSError as exc:
            self._fail(f"lost connection to broker {self.address}: {_reason(exc)}")

    def _fail(self, message: str, unanswered: bool = False):
        """Close and raise BrokerUnavailableError; `unanswered` (set on the error) says the
        broker was reached but did not answer in time (the CLI says how to wait longer)."""
        self.close()
        error = BrokerUnavailableError(message)
        error.unanswered = unanswered
        raise error

    def _not_kafka(self, start: bytes):
        """The peer answered ApiVersions with something that is not a Kafka frame: quote
        the first line of what it said (waiting briefly for the rest of it) and give up."""
        said = bytearray(start)
        self._sock.settimeout(0.2)
        try:
            while len(said) < 200 and b"\n" not in said:
                more = self._sock.recv(200 - len(said))
                if not more:
                    break
                said += more
        except OSError:
            pass
        line = bytes(said).split(b"\n", 1)[0].rstrip(b"\r")
        text = line.decode("ascii") if line.isascii() and line.decode("ascii").isprintable() else None
        quoted = f"it answered {text[:80]!r}" if text else f"its answer begins with {bytes(said[:16]).hex(' ')}"
        self._fail(f"{self.address} does not speak the Kafka protocol ({quoted})")

    def _negotiate(self) -> None:
        """ApiVersions v2 (or lower after an UNSUPPORTED_VERSION answer), then intersect."""
        version = min(CLIENT_MAX_VERSIONS[ApiKey.API_VERSIONS], CODEC_VERSIONS[ApiKey.API_VERSIONS][1])
        self._negotiating = True
        try:
            body, ranges = self._api_versions(version)
        finally:
            self._negotiating = False
        if body["error_code"]:
            raise ProtocolError(f"broker {self.address} refused ApiVersions: {explain(body['error_code'])}")
        self.broker_versions = ranges
        for key, (low, high) in ranges.items():
            codec = CODEC_VERSIONS.get(key)
            cap = CLIENT_MAX_VERSIONS.get(key)
            if codec is None or cap is None:
                continue
            top = min(high, codec[1], cap)
            if top >= max(low, codec[0]):
                self.versions[key] = top

    def _api_versions(self, version: int) -> tuple[dict, dict[int, tuple[int, int]]]:
        """The ApiVersions answer (retried at a lower version after UNSUPPORTED_VERSION) and the
        broker's ranges, all within connect_timeout."""
        for _ in range(3):
            self._next_id = PROBE_CORRELATION_ID
            body = self.request(ApiKey.API_VERSIONS, {}, version, timeout=self.connect_timeout)
            ranges = {entry["api_key"]: (entry["min_version"], entry["max_version"])
                      for entry in body.get("api_keys") or ()}
            if body["error_code"] != _UNSUPPORTED_VERSION:
                break
            broker_max = ranges.get(ApiKey.API_VERSIONS, (0, 0))[1]
            retry = min(version - 1, broker_max) if version > 0 else -1
            if retry < 0:
                break
            version = retry
        self._next_id = 1
        return body, ranges


def _not_a_kafka_length(prefix: bytearray) -> bool:
    """True when an ApiVersions answer's length prefix shows another protocol talking: text
    ("HTTP", "SSH-", "-ERR") or a length no ApiVersions answer has (under a correlation id,
    over 1 MiB, negative: a TLS alert's 15 03 03 00 reads as 352518912)."""
    if bytes(prefix).isascii() and bytes(prefix).decode("ascii").isprintable():
        return True
    return not 4 <= _CORRELATION.unpack(prefix)[0] <= _MAX_API_VERSIONS_BYTES


def _name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return str(api_key)


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__

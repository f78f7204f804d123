"""`PeerLink`: one authenticated asyncio connection from this broker to another broker.

Replica fetchers and the controller's inter-broker requests use it; it speaks the Kafka
protocol through protocol/framing.py and knows nothing of what the requests mean.
`connect()` opens the TCP connection (TCP_NODELAY) and authenticates with SASL PLAIN and
the cluster secret (peer_auth.py: SaslHandshake v1, then SaslAuthenticate v1), all within
`connect_timeout`. `request()` may be called by several tasks at once: requests are written
in call order and answered in that order (Kafka's per-connection guarantee), each awaited
with its own timeout, which covers sending it too (the writer is drained: what a slow peer
has not read stays bounded by the transport's buffer limits plus the requests in flight). Versions are the caller's choice: peers run the same logship version.

Each response frame is received straight into a bytearray of its size (asyncio's
BufferedProtocol: recv_into, no intermediate buffer, no copy after), so the records of a
Fetch response are writable memoryviews into it that storage appends without copying them.

Invariants: any failure (refused, reset, EOF, a timeout, a malformed or oversized frame)
closes the link and fails every request in flight with BrokerUnavailableError naming the
peer; a closed link stays closed (make a new one). A response frame above
`max_frame_bytes` is refused on its length prefix, before anything is allocated for it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import socket

from ..errors import BrokerUnavailableError, LogshipError, ProtocolError
from ..protocol import ApiKey, decode_response, encode_request, read_frame_length
from .peer_auth import MECHANISM, plain_token

__all__ = ["PeerLink", "PeerAuthenticationError"]

DEFAULT_MAX_FRAME_BYTES = 128 << 20


class PeerAuthenticationError(BrokerUnavailableError):
    """The peer refused this broker's secret (a cluster file or secret that differs)."""


class PeerLink:
    def __init__(self, host: str, port: int, *, principal: str, secret: bytes, client_id: str = "logship-peer",
                 connect_timeout: float = 5.0, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.host, self.port = host, port
        self.principal = principal
        self._secret = secret
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes
        self._transport: asyncio.Transport | None = None
        self._protocol: _FrameProtocol | None = None
        self._pending: collections.deque[tuple[int, int, int, asyncio.Future]] = collections.deque()
        self._ids = itertools.count(1)
        self.closed = False
        self._failure: BaseException | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"PeerLink({self.address}, as {self.principal})"

    async def connect(self) -> "PeerLink":
        try:
            await asyncio.wait_for(self._open(), self.connect_timeout)
        except asyncio.TimeoutError:
            self._fail(BrokerUnavailableError(f"peer {self.address} did not answer within {self.connect_timeout:g} s"))
            raise self._failure from None
        except OSError as exc:
            self._fail(BrokerUnavailableError(f"cannot connect to peer {self.address}: {exc.strerror or exc}"))
            raise self._failure from None
        except LogshipError as exc:
            self._fail(exc)
            raise
        return self

    async def _open(self) -> None:
        self._transport, self._protocol = await asyncio.get_running_loop().create_connection(
            lambda: _FrameProtocol(self), self.host, self.port)
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake = await self.request(ApiKey.SASL_HANDSHAKE, 1, {"mechanism": MECHANISM})
        if handshake["error_code"]:
            raise PeerAuthenticationError(f"peer {self.address} does not take PLAIN authentication "
                                          f"(is it a logship broker of this cluster?)")
        answer = await self.request(ApiKey.SASL_AUTHENTICATE, 1,
                                    {"auth_bytes": plain_token(self.principal, self._secret)})
        if answer["error_code"]:
            raise PeerAuthenticationError(f"peer {self.address} refused this broker's cluster secret: "
                                          f"{answer.get('error_message') or 'authentication failed'}")

    async def request(self, api_key: int, version: int, body: dict, timeout: float | None = 30.0) -> dict:
        """The response body to one request; BrokerUnavailableError if the link fails or the
        answer takes longer than `timeout` seconds (the link is then closed: a late answer
        would arrive out of turn)."""
        if self.closed:
            raise self._failure or BrokerUnavailableError(f"link to peer {self.address} is closed")
        correlation_id = next(self._ids) & 0x7FFF_FFFF
        future = asyncio.get_running_loop().create_future()
        self._pending.append((correlation_id, api_key, version, future))
        try:
            self._transport.write(encode_request(api_key, version, correlation_id, self.client_id, body))
        except (OSError, RuntimeError) as exc:
            self._fail(BrokerUnavailableError(f"lost the connection to peer {self.address}: {exc}"))

        async def sent_then_answered() -> dict:
            await self._protocol.drain()  # a peer that does not read holds the caller, not this process's memory
            return await asyncio.shield(future)

        try:
            return await asyncio.wait_for(sent_then_answered(), timeout)
        except asyncio.TimeoutError:
            self._fail(BrokerUnavailableError(f"peer {self.address} did not answer within {timeout:g} s"))
            raise self._failure from None
        except (OSError, RuntimeError) as exc:  # drain on a connection that failed
            self._fail(BrokerUnavailableError(f"lost the connection to peer {self.address}: {exc}"))
            raise self._failure from None

    def _frame_received(self, frame: bytearray) -> None:
        """One whole response frame (without its size prefix), from `_FrameProtocol`."""
        if not self._pending:
            self._fail(BrokerUnavailableError(f"peer {self.address} sent a response nobody asked for"))
            return
        correlation_id, api_key, version, future = self._pending[0]
        try:
            got, body = decode_response(api_key, version, frame)
            if got != correlation_id:
                raise ProtocolError(f"peer {self.address} answered out of turn")
        except LogshipError as exc:
            self._fail(BrokerUnavailableError(f"peer {self.address}: {exc}"))  # its caller's future too
            return
        self._pending.popleft()
        if not future.done():
            future.set_result(body)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self.closed = True
        while self._pending:
            future = self._pending.popleft()[3]
            if not future.done():
                future.set_exception(self._failure)
                future.exception()  # marked retrieved: a caller that timed out is gone
        if self._transport is not None:
            self._transport.abort()  # what is unsent is dropped: a peer that reads nothing cannot hold close()

    async def close(self) -> None:
        if not self.closed:
            self._fail(BrokerUnavailableError(f"link to peer {self.address} is closed"))
        if self._protocol is not None:
            await self._protocol.closed


class _FrameProtocol(asyncio.BufferedProtocol):
    """A PeerLink's connection: reads each frame's 4-byte size, then receives the frame into a
    bytearray of that size (refused on the size first: FrameTooLargeError above the link's
    max_frame_bytes) and hands it to `PeerLink._frame_received`; end of stream, a reset or a
    bad size fail the link. `drain()` waits while the transport's write buffer is above its
    high-water mark (asyncio's pause_writing / resume_writing)."""

    def __init__(self, link: PeerLink):
        self._link = link
        self._prefix = bytearray(4)
        self._frame: bytearray | None = None  # None while reading a size prefix
        self._got = 0
        self._paused = False
        self._drainers: list[asyncio.Future] = []
        self._lost = False
        self.closed = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._prefix if self._frame is None else self._frame)[self._got:]

    def buffer_updated(self, nbytes: int) -> None:
        self._got += nbytes
        if self._frame is None:
            if self._got < 4:
                return
            try:
                size = read_frame_length(self._prefix, self._link.max_frame_bytes)
            except LogshipError as exc:
                self._got = 0  # nothing more is read: the link is closed
                self._link._fail(BrokerUnavailableError(f"peer {self._link.address}: {exc}"))
                return
            self._frame, self._got = bytearray(size), 0
        if self._got == len(self._frame):
            frame, self._frame, self._got = self._frame, None, 0
            self._link._frame_received(frame)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._link._fail(BrokerUnavailableError(f"lost the connection to peer {self._link.address}: "
                                                f"{exc or 'closed'}"))
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_result(None)
        self._drainers.clear()

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        if self._paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drainers.append(waiter)
            await waiter
            if self._lost:
                raise ConnectionResetError("connection lost")

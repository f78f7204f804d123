"""`PeerLink`: one authenticated asyncio connection from this broker to another broker.

Replica fetchers and the controller's inter-broker requests use it; it speaks the Kafka
protocol through protocol/framing.py and knows nothing of what the requests mean.
`connect()` opens the TCP connection (TCP_NODELAY) and authenticates with SASL PLAIN and
the cluster secret (peer_auth.py: SaslHandshake v1, then SaslAuthenticate v1), all within
`connect_timeout`. `request()` may be called by several tasks at once: requests are written
in call order and answered in that order (Kafka's per-connection guarantee), each awaited
with its own timeout, which covers sending it too (the writer is drained: what a slow peer
has not read stays bounded by the transport's buffer limits plus the requests in flight). Versions are the caller's choice: peers run the same logship version.

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
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: collections.deque[tuple[int, int, int, asyncio.Future]] = collections.deque()
        self._ids = itertools.count(1)
        self._receiver: asyncio.Task | None = None
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
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._receiver = asyncio.get_running_loop().create_task(self._receive())
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
            self._writer.write(encode_request(api_key, version, correlation_id, self.client_id, body))
        except (OSError, RuntimeError) as exc:
            self._fail(BrokerUnavailableError(f"lost the connection to peer {self.address}: {exc}"))

        async def sent_then_answered() -> dict:
            await self._writer.drain()  # a peer that does not read holds the caller, not this process's memory
            return await asyncio.shield(future)

        try:
            return await asyncio.wait_for(sent_then_answered(), timeout)
        except asyncio.TimeoutError:
            self._fail(BrokerUnavailableError(f"peer {self.address} did not answer within {timeout:g} s"))
            raise self._failure from None
        except (OSError, RuntimeError) as exc:  # drain on a connection that failed
            self._fail(BrokerUnavailableError(f"lost the connection to peer {self.address}: {exc}"))
            raise self._failure from None

    async def _receive(self) -> None:
        try:
            while True:
                prefix = await self._reader.readexactly(4)
                frame = await self._reader.readexactly(read_frame_length(prefix, self.max_frame_bytes))
                if not self._pending:
                    raise ProtocolError(f"peer {self.address} sent a response nobody asked for")
                correlation_id, api_key, version, future = self._pending.popleft()
                got, body = decode_response(api_key, version, frame)
                if got != correlation_id:
                    raise ProtocolError(f"peer {self.address} answered out of turn")
                if not future.done():
                    future.set_result(body)
        except asyncio.CancelledError:
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._fail(BrokerUnavailableError(f"lost the connection to peer {self.address}: "
                                              f"{'closed' if isinstance(exc, asyncio.IncompleteReadError) else exc}"))
        except LogshipError as exc:
            self._fail(BrokerUnavailableError(f"peer {self.address}: {exc}"))

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self.closed = True
        while self._pending:
            future = self._pending.popleft()[3]
            if not future.done():
                future.set_exception(self._failure)
                future.exception()  # marked retrieved: a caller that timed out is gone
        if self._writer is not None:
            self._writer.close()
        if self._receiver is not None and self._receiver is not asyncio.current_task():
            self._receiver.cancel()

    async def close(self) -> None:
        if not self.closed:
            self._fail(BrokerUnavailableError(f"link to peer {self.address} is closed"))
        if self._writer is not None:
            try:
                await self._writer.wait_closed()
            except (OSError, ConnectionError):
                pass

"""`Connection`: the bytes side of one client connection, as an asyncio BufferedProtocol.

Frames (a 4-byte big-endian length, then that many bytes) are received straight into a
bytearray of their own, so the broker decodes them and the store appends their record
batches in place, with no stream buffer and no copy in between. The length is checked
against the broker's maximum before anything is allocated; frames up to DIRECT_MAX_BYTES
get their whole buffer at once, larger ones grow as their bytes arrive, so memory follows
what a client really sent. Received frames wait in `next_frame()`'s queue; reading pauses
while MAX_QUEUED of them wait. Writes go to `transport`; `drain()` waits while the
transport's buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import collections
import socket

from ..errors import ProtocolError
from ..protocol import framing

DIRECT_MAX_BYTES = 2 << 20
MAX_QUEUED = 64
_SCRATCH_BYTES = 256 << 10


class Connection(asyncio.BufferedProtocol):
    def __init__(self, max_frame_bytes: int, on_connected):
        self.max_frame_bytes = max_frame_bytes
        self._on_connected = on_connected
        self.transport: asyncio.Transport | None = None
        self._queue: collections.deque = collections.deque()  # frames, a ProtocolError, or None (EOF)
        self._waiter: asyncio.Future | None = None
        self._prefix = bytearray(4)
        self._frame: bytearray | None = None
        self._size = 0  # of the frame being received
        self._filled = 0
        self._scratch: bytearray | None = None
        self._reading_paused = False
        self._ended = False  # EOF or a malformed frame: reading never resumes
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = False

    # --- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._frame is None:
            return memoryview(self._prefix)[self._filled:]
        if self._size <= DIRECT_MAX_BYTES:
            return memoryview(self._frame)[self._filled:]
        if self._scratch is None:
            self._scratch = bytearray(_SCRATCH_BYTES)
        return memoryview(self._scratch)[:min(_SCRATCH_BYTES, self._size - self._filled)]

    def buffer_updated(self, nbytes: int) -> None:
        if self._frame is None:
            self._filled += nbytes
            if self._filled < 4:
                return
            try:
                self._size = framing.read_frame_length(self._prefix, self.max_frame_bytes)
            except ProtocolError as exc:
                self._push(exc)
                return
            self._frame = bytearray(self._size) if self._size <= DIRECT_MAX_BYTES else bytearray()
            self._filled = 0
        elif self._size <= DIRECT_MAX_BYTES:
            self._filled += nbytes
        else:
            self._frame += memoryview(self._scratch)[:nbytes]
            self._filled += nbytes
        if self._filled == self._size:
            frame, self._frame, self._filled = self._frame, None, 0
            self._push(frame)

    def eof_received(self) -> bool:
        self._push(None)
        return True  # keep the transport open to write the answers still due; the server closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._push(None)
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- for the request loop ---------------------------------------------------------------------

    async def next_frame(self) -> bytearray | None:
        """The next whole frame, None at end of stream; raises the ProtocolError that ended it."""
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = self._queue.popleft()
        if self._reading_paused and len(self._queue) < MAX_QUEUED and not (self.closed or self._ended):
            self._reading_paused = False
            self.transport.resume_reading()
        if isinstance(item, ProtocolError):
            raise item
        return item

    async def drain(self) -> None:
        """Wait until the transport can take more; ConnectionResetError once it is closed."""
        await self._writable.wait()
        if self.closed:
            raise ConnectionResetError("the client closed the connection")

    def _push(self, item) -> None:
        if self._queue and self._queue[-1] is None:
            return  # the stream already ended
        self._queue.append(item)
        if item is None or isinstance(item, ProtocolError):
            self._ended = True
        if (self._ended or len(self._queue) >= MAX_QUEUED) and not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

"""`Connection`: the bytes side of one client connection, as an asyncio BufferedProtocol.

Frames (a 4-byte big-endian length, then that many bytes) are received into a bytearray of
their own, so the broker decodes them and the store appends their record batches in place.
The length is checked against socket.request.max.bytes before anything is allocated. Frames
up to DIRECT_MAX_BYTES get their whole buffer at once; larger ones are read through one
scratch buffer shared by all connections and grow as their bytes arrive, so memory follows
what a client really sent, and those bytes are charged to the request memory pool
(queued.max.request.bytes) of `Admission` until the server has handled the frame; every frame
is charged FRAME_OVERHEAD_BYTES more (its objects cost memory too, however small its body),
and a length prefix below the request header (REQUEST_HEADER_BYTES) ends the stream. While the
pool says this connection must wait (`MemoryPool.must_wait`: it is used up for connections
that are not `_active`, or for all), or MAX_QUEUED frames wait in `next_frame()`'s queue,
reading is paused; a read in a round where others filled the pool takes one byte.
At a frame boundary (and while the pool has room) up to READ_AHEAD_BYTES are read at once
into the shared scratch buffer and split: each whole frame there is copied into its own
bytearray and queued, so a client pipelining small requests costs one read, not two per
request; a frame left partial goes on as above. Splitting stops at MAX_QUEUED frames: the
bytes left are kept (`_rest`, charged to the pool, reading paused) and split as the server
takes frames, so a connection never holds more than MAX_QUEUED frames plus one read.
A frame must arrive whole within request.timeout.ms of its first byte, not counting time
paused by the broker (`frame_started` is what `Admission.sweep` checks).

Writes go to `transport`; `drain()` waits while the transport's buffer is over its high-water
mark, and gives up (closing the connection) when the client takes nothing for write_timeout_ms.
`Outgoing` gathers the responses that are ready one after another into one transport write,
those wholly in memory and at most COALESCE_MAX_BYTES each; any other (one with a slice of a
file) is written by write_parts.py piece by piece as the client takes them, and the server
waits for the transport's buffer to drain below its high-water mark between writes, so what
a client does not read never piles up in the transport (bytes written there no longer count
toward the bounds on queued responses).
`pending` counts requests received and not yet answered; `Admission` is told when it leaves
or reaches zero (a connection with nothing pending may be evicted at the connection caps).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import socket
import struct
import termios
import time

from ..errors import ProtocolError
from ..protocol import framing

DIRECT_MAX_BYTES = 16 << 10
READ_AHEAD_BYTES = 8 << 10  # read at a frame boundary: the small frames already there come in one read
# (small: what is read ahead beyond MAX_QUEUED frames stays held while they wait for their turns)
SENDFILE_MIN_BYTES = 256 << 10  # smaller slices of segment files are cheaper as pread + write
COALESCE_MAX_BYTES = 256 << 10  # responses gathered for one transport write, at most (about)
WRITE_BYTES = 64 << 10  # write_parts.py: a response not gathered is written in pieces of about this
MAX_QUEUED = 64
FRAME_OVERHEAD_BYTES = 128  # charged to the pool per frame besides its bytes (a bytearray and a queue slot)
ACTIVE_S = 2.0  # see Connection._active
_SCRATCH_BYTES = 256 << 10
_scratch = bytearray(_SCRATCH_BYTES)  # one for all: get_buffer and buffer_updated run back to back


class WriteStalledError(ConnectionError):
    """The client took no bytes for write_timeout_ms."""


class Connection(asyncio.BufferedProtocol):
    def __init__(self, max_frame_bytes: int, admission, on_connected):
        self.admission = admission
        self.max_frame_bytes = max_frame_bytes
        self._pool = admission.pool
        self._on_connected = on_connected
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.peer = None
        self._queue: collections.deque = collections.deque()  # frames, a ProtocolError, or None (EOF)
        self._waiter: asyncio.Future | None = None
        self._prefix = bytearray(4)
        self._ahead = False  # get_buffer gave the read-ahead buffer
        self._frame: bytearray | None = None
        self._size = 0  # of the frame being received
        self._filled = 0
        self._charged = 0  # bytes of the frame being received charged to the pool
        self._rest: bytes | None = None  # read ahead, not yet split (MAX_QUEUED frames wait); charged
        self._rest_pos = 0
        self._paused_for: set[str] = set()  # why the broker stopped reading: "queue", "pool"
        self._ended = False  # EOF or a malformed frame: reading never resumes
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = False
        self.last_io = self.last_read = time.monotonic()
        self.frame_started: float | None = None
        self.frame_began = self.last_io  # when the first byte of the latest frame came
        self.last_completed = 0.0  # when the latest frame came whole (0: none yet)
        self.held_bytes = 0  # charged to the pool: the frame being read and those not yet handled
        self._aborted = False
        self.pending = 0
        self.queued_response_bytes = 0
        self.client_key = ("", b"")  # whose requests these are, for request_turns.py (set by the server)
        self._read_began = self._read_seconds = 0.0
        self._sent: asyncio.Future | None = None

    # --- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.host = self.peer[0] if isinstance(self.peer, tuple) else ""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self.admission.admit(self):
            self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        self._read_began = time.perf_counter()
        self._ahead = False
        if self._frame is None:
            if self._filled or self._pool.must_wait(self.held_bytes, self._active()):
                return memoryview(self._prefix)[self._filled:]
            self._ahead = True
            return memoryview(_scratch)[:READ_AHEAD_BYTES]
        if self._size <= DIRECT_MAX_BYTES:
            return memoryview(self._frame)[self._filled:]
        if self._pool.must_wait(self.held_bytes, self._active()):
            return memoryview(_scratch)[:1]  # others filled the pool in this round of reads: pause after one byte
        return memoryview(_scratch)[:min(_SCRATCH_BYTES, self._size - self._filled)]

    def _active(self) -> bool:
        """Whether this connection has completed a request before and its current one began
        less than ACTIVE_S ago: such connections may fill the whole request pool."""
        return self.last_completed > 0 and self.last_io - self.frame_began < ACTIVE_S

    def buffer_updated(self, nbytes: int) -> None:
        self.last_io = self.last_read = time.monotonic()
        if self._frame is None and self._filled == 0:
            self.frame_began = self.last_io
        if self.frame_started is None and not self._paused_for:
            self.frame_started = self.last_io
        if self._ahead:
            data = memoryview(_scratch)[:nbytes]
            taken = self._split(data)
            if taken < nbytes:
                self._rest, self._rest_pos = bytes(data[taken:]), 0
                self._hold(nbytes - taken)
            if (self._frame is not None or self._filled) and self.frame_started is None and not self._paused_for:
                self.frame_started = self.last_io  # the frame left partial
        elif self._frame is None:
            self._filled += nbytes
            if self._filled == 4:
                self._begin(self._prefix)
        elif self._size <= DIRECT_MAX_BYTES:
            self._filled += nbytes
        else:
            self._frame += memoryview(_scratch)[:nbytes]
            self._filled += nbytes
            self._charge(nbytes)
        if self._frame is not None and self._filled == self._size:
            self._complete()
        self._read_seconds += time.perf_counter() - self._read_began

    def take_read_seconds(self) -> float:
        """Seconds spent receiving since the last call (request_turns.py counts them)."""
        seconds, self._read_seconds = self._read_seconds, 0.0
        return seconds

    def _split(self, data: memoryview) -> int:
        """Bytes read ahead from a frame boundary: every whole frame in them is queued; a frame
        they begin is started (the rest comes through get_buffer); a short prefix is kept.
        Returns how many bytes it took: all, unless MAX_QUEUED frames wait in the queue."""
        pos, end = 0, len(data)
        while not self._ended and end - pos >= 4:
            if len(self._queue) >= MAX_QUEUED:
                return pos
            self.frame_began = self.last_io
            if not self._begin(data[pos:pos + 4]):
                return end
            pos += 4
            take = min(self._size, end - pos)
            if self._size <= DIRECT_MAX_BYTES:
                self._frame[:take] = data[pos:pos + take]
            else:
                self._frame += data[pos:pos + take]
                self._charge(take)
            self._filled, pos = take, pos + take
            if take < self._size:
                return end
            self._complete()
        if not self._ended:
            self._prefix[:end - pos] = data[pos:]
            self._filled = end - pos
        return end

    def _split_rest(self) -> None:
        """Split more of what was read ahead, now that the queue has room."""
        data = memoryview(self._rest)[self._rest_pos:]
        taken = self._split(data)
        self._release(taken)
        if taken < len(data):
            self._rest_pos += taken
        else:
            self._rest, self._rest_pos = None, 0

    def _begin(self, prefix) -> bool:
        """Start the frame whose length prefix this is; False (the stream ended) if it is refused."""
        try:
            self._size = framing.read_frame_length(prefix, self.max_frame_bytes, framing.REQUEST_HEADER_BYTES)
        except ProtocolError as exc:
            self._push(exc)
            return False
        if self._size <= DIRECT_MAX_BYTES:
            self._frame = bytearray(self._size)
            self._charge(self._size + FRAME_OVERHEAD_BYTES)
        else:
            self._frame = bytearray()
            self._charge(FRAME_OVERHEAD_BYTES)
        self._filled = 0
        return True

    def _complete(self) -> None:
        frame, self._frame, self._filled, self._charged = self._frame, None, 0, 0
        self.frame_started = None
        self.last_completed = self.last_io
        self._push(frame)

    def eof_received(self) -> bool:
        self._push(None)
        return True  # keep the transport open to write the answers still due; the server closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.frame_started = None
        self.admission.gone(self)
        self._pool.forget(self._pool_available)
        if self._aborted:  # what was received is dropped unanswered
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, bytearray):
                    self._release(len(item) + FRAME_OVERHEAD_BYTES)
        if self._charged:
            self._release(self._charged)
            self._charged = 0
        if self._rest is not None:
            self._release(len(self._rest) - self._rest_pos)
            self._rest = None
        self._frame = None
        self._push(None)
        self._writable.set()
        self._notify_sent()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- for the server -------------------------------------------------------------------------

    def abort(self, reason) -> None:
        """Close at once, dropping what is unsent (a refused, evicted or late connection)."""
        self.frame_started = None
        self._aborted = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def partial_bytes(self) -> int:
        """Bytes charged to the pool for the frame being received."""
        return self._charged

    def unread_bytes(self) -> int:
        """Bytes the client sent that wait in the kernel (0 if unknown)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or self.closed:
            return 0
        try:
            return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    async def next_frame(self) -> bytearray | None:
        """The next whole frame, None at end of stream; raises the ProtocolError that ended it.
        The frame stays charged to the pool until `handled(frame_size)`."""
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = self._queue.popleft()
        if self._rest is not None and len(self._queue) <= MAX_QUEUED // 2 and not self.closed:
            self._split_rest()  # in batches: one split per MAX_QUEUED / 2 frames taken
        if len(self._queue) < MAX_QUEUED and self._rest is None:
            self._resume("queue")
        if isinstance(item, ProtocolError):
            raise item
        return item

    def handled(self, frame_size: int, answered: bool) -> None:
        """The server is done with a frame; `answered` if it queued no response for it."""
        self._release(frame_size + FRAME_OVERHEAD_BYTES)
        if answered:
            self.answered()

    def answered(self) -> None:
        """One pending request has its response written (or needs none)."""
        self.pending -= 1
        if self.pending == 0:
            self.admission.quiet(self)

    @property
    def writable(self) -> bool:
        """Whether the transport's buffer is below its high-water mark (drain() would not wait)."""
        return self._writable.is_set()

    async def drain(self) -> None:
        """Wait until the transport can take more; ConnectionResetError once it is closed,
        WriteStalledError when the client takes nothing for write_timeout_ms."""
        if not self._writable.is_set():
            timeout = self.admission.limits.write_timeout_ms / 1000
            try:
                await asyncio.wait_for(self._writable.wait(), timeout)
            except TimeoutError:
                raise WriteStalledError(f"the client read nothing for {timeout:g} s "
                                        f"(write.timeout.ms {self.admission.limits.write_timeout_ms})") from None
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        self.last_io = time.monotonic()

    # --- queued responses (backpressure) ------------------------------------------------------

    def queue_response_bytes(self, nbytes: int) -> None:
        self.queued_response_bytes += nbytes
        self.admission.queued_response_bytes += nbytes

    def sent_response_bytes(self, nbytes: int) -> None:
        self.queued_response_bytes -= nbytes
        self.admission.queued_response_bytes -= nbytes
        self._notify_sent()

    def frame_ready(self) -> bool:
        """Whether `next_frame()` would return at once."""
        return bool(self._queue)

    def over_response_bound(self) -> bool:
        """Whether this connection's unsent responses are over its bound, or over the broker's
        bound for all connections (then only connections that have some count)."""
        limits = self.admission.limits
        return not self.closed and self.queued_response_bytes > 0 and (
            self.queued_response_bytes > limits.max_queued_response_bytes
            or self.admission.queued_response_bytes > limits.max_total_queued_response_bytes)

    async def room_for_responses(self) -> None:
        """Wait while `over_response_bound()`."""
        while self.over_response_bound():
            self._sent = asyncio.get_running_loop().create_future()
            await self._sent

    def _notify_sent(self) -> None:
        if self._sent is not None and not self._sent.done():
            self._sent.set_result(None)

    # --- reading ------------------------------------------------------------------------------

    def _charge(self, nbytes: int) -> None:
        """Charge bytes of the frame being received."""
        self._charged += nbytes
        self._hold(nbytes)

    def _hold(self, nbytes: int) -> None:
        if not nbytes:
            return
        if not self.held_bytes:
            self._pool.holders += 1
        self._pool.charge(nbytes)
        self.held_bytes += nbytes
        active = self._active()
        if self._pool.must_wait(self.held_bytes, active) and "pool" not in self._paused_for:
            self._pause("pool")  # one callback per connection waits in the pool, however many frames
            self._pool.when_available(self._pool_available, active)

    def _release(self, nbytes: int) -> None:
        if not nbytes:
            return
        self.held_bytes -= nbytes
        if not self.held_bytes:
            self._pool.holders -= 1
        self._pool.release(nbytes)

    def _pool_available(self) -> None:
        self._resume("pool")

    def _pause(self, why: str) -> None:
        if not self._paused_for and not self.closed:
            self.transport.pause_reading()
        self._paused_for.add(why)
        self.frame_started = None

    def _resume(self, why: str) -> None:
        if why not in self._paused_for:
            return
        self._paused_for.discard(why)
        if not self._paused_for and not (self.closed or self._ended):
            self.transport.resume_reading()
            if self._frame is not None or self._filled:
                self.frame_started = time.monotonic()

    def _push(self, item) -> None:
        if self._queue and self._queue[-1] is None:
            return  # the stream already ended
        self._queue.append(item)
        if isinstance(item, bytearray):
            self._charged = 0  # from now on the server releases it
            self.pending += 1
            if self.pending == 1:
                self.admission.busy(self)
        if item is None or isinstance(item, ProtocolError):
            self._ended = True
            self.frame_started = None
            if not self.closed and "ended" not in self._paused_for:
                self._pause("ended")
        elif len(self._queue) >= MAX_QUEUED:
            self._pause("queue")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Outgoing:
    """Responses gathered for one transport write, and what to tell the connection once it is
    done: their queued bytes (for the bounds) and how many requests they answer. `charge`, if
    given, is told the seconds each write took (request_turns.py counts them)."""

    __slots__ = ("conn", "parts", "size", "queued", "answers", "charge")

    def __init__(self, conn: Connection, charge=None):
        self.conn, self.charge = conn, charge
        self.parts: list = []
        self.size = self.queued = self.answers = 0

    def add(self, parts: list) -> bool:
        """Gather a response that is all in memory and at most COALESCE_MAX_BYTES long; else
        False, nothing is gathered, and the caller writes it with write_parts.py, which
        reads slices of files only as the client takes what came before (gathering them
        here would read a whole response into memory, however little the client reads)."""
        size = 0
        for part in parts:
            if not isinstance(part, (bytes, bytearray, memoryview)) and not part.in_memory:
                return False
            size += len(part)
        if size > COALESCE_MAX_BYTES:
            return False
        for part in parts:
            part = part if isinstance(part, (bytes, bytearray, memoryview)) else part.read_bytes()
            self.parts.append(part)
        self.size += size
        if self.size >= COALESCE_MAX_BYTES:
            self.flush()
        return True

    def sent(self, queued: int) -> None:
        """One more response is gathered or written."""
        self.queued += queued
        self.answers += 1
        if not self.parts:
            self.flush()

    def flush(self) -> None:
        conn = self.conn
        if self.parts:
            start = time.perf_counter() if self.charge is not None else 0.0
            conn.transport.write(self.parts[0] if len(self.parts) == 1 else b"".join(self.parts))
            self.parts, self.size = [], 0
            if self.charge is not None:
                self.charge(time.perf_counter() - start)
        if self.queued:
            conn.sent_response_bytes(self.queued)
        for _ in range(self.answers):
            conn.answered()
        self.queued = self.answers = 0

"""Read-ahead in the broker's `Connection` stays within MAX_QUEUED frames and the request
memory pool: whole frames found in one read are queued up to MAX_QUEUED, the bytes beyond are
kept charged to the pool (reading paused) and split as the server takes frames; every frame
costs at least FRAME_OVERHEAD_BYTES; a length prefix below the request header ends the stream."""

from __future__ import annotations

import asyncio
import struct

import pytest

from logship import errors
from logship.broker import connection as c
from logship.broker.admission import Admission
from logship.broker.limits import Limits
from logship.protocol import ApiKey, encode_request, read_frame_length
from logship.protocol.framing import REQUEST_HEADER_BYTES


class Transport:
    def __init__(self):
        self.paused = False

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def abort(self):
        pass

    def get_extra_info(self, key):
        return None


def connection() -> tuple[c.Connection, Transport]:
    conn = c.Connection(1 << 20, Admission(Limits()), lambda _: None)
    conn.transport = Transport()
    return conn, conn.transport


def receive(conn: c.Connection, data: bytes) -> None:
    """One read of `data` at a frame boundary, as the event loop does it."""
    buf = conn.get_buffer(-1)
    assert len(buf) >= len(data)  # the read-ahead buffer
    buf[:len(data)] = data
    conn.buffer_updated(len(data))


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_a_length_prefix_below_the_request_header_is_refused():
    assert REQUEST_HEADER_BYTES == 8
    assert read_frame_length(struct.pack(">i", 0)) == 0  # responses and other streams: no minimum
    with pytest.raises(errors.ProtocolError, match="below the 8-byte request header"):
        read_frame_length(struct.pack(">i", 7), min_bytes=REQUEST_HEADER_BYTES)
    conn, transport = connection()
    receive(conn, frame(b"") * 1000)
    assert len(conn._queue) == 1 and isinstance(conn._queue[0], errors.ProtocolError)
    assert transport.paused and conn.admission.pool.used == 0


def test_pipelined_small_frames_come_from_one_read_and_stay_within_max_queued_and_the_pool():
    request = encode_request(ApiKey.API_VERSIONS, 0, 7, None, {})  # 10 bytes after the prefix
    assert len(request) == 14
    conn, transport = connection()
    pool = conn.admission.pool
    count = c.READ_AHEAD_BYTES // len(request)
    data = request * count
    receive(conn, data)
    assert len(conn._queue) == c.MAX_QUEUED and transport.paused
    rest = len(data) - c.MAX_QUEUED * len(request)
    assert pool.used == c.MAX_QUEUED * (10 + c.FRAME_OVERHEAD_BYTES) + rest

    async def drain() -> list:
        frames = []
        while len(frames) < count:
            got = await conn.next_frame()
            assert len(conn._queue) <= c.MAX_QUEUED
            assert transport.paused or (conn._rest is None and len(conn._queue) < c.MAX_QUEUED)
            conn.handled(len(got), answered=True)
            frames.append(bytes(got))
        return frames

    frames = asyncio.run(drain())
    assert frames == [request[4:]] * count and not transport.paused
    assert pool.used == 0 and conn.held_bytes == 0 and conn._rest is None
    assert conn.pending == 0


def test_a_frame_left_partial_by_the_kept_bytes_goes_on_through_get_buffer():
    small = frame(b"h" * 10)
    big = frame(b"B" * 20000)  # above DIRECT_MAX_BYTES: read through the scratch buffer
    conn, transport = connection()
    head = small * (c.MAX_QUEUED + 3) + big[:3000]
    receive(conn, head)
    assert len(conn._queue) == c.MAX_QUEUED

    async def take(n: int) -> list:
        out = []
        for _ in range(n):
            got = await conn.next_frame()
            conn.handled(len(got), answered=True)
            out.append(bytes(got))
        return out

    assert asyncio.run(take(c.MAX_QUEUED)) == [small[4:]] * c.MAX_QUEUED
    assert conn._rest is None and len(conn._queue) == 3 and not transport.paused
    rest = big[3000:]
    while rest:
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(rest))
        buf[:n] = rest[:n]
        conn.buffer_updated(n)
        rest = rest[n:]
    assert asyncio.run(take(4)) == [small[4:]] * 3 + [big[4:]]
    assert conn.admission.pool.used == 0


def test_kept_bytes_are_given_back_when_the_connection_is_lost():
    conn, _ = connection()
    receive(conn, frame(b"x" * 8) * (c.READ_AHEAD_BYTES // 12))
    assert conn._rest is not None
    conn.abort(None)
    conn.connection_lost(None)
    assert conn.admission.pool.used == 0 and conn.held_bytes == 0

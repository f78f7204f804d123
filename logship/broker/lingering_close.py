"""Closing a connection without losing the responses already written ("lingering close").

Closing a TCP socket that still has unread bytes from the client makes the kernel reset the
connection; a client that is writing its next request then gets ECONNRESET and may drop the
responses it had not read yet, and so does a client that reads the end of the stream in the
same read as its last responses (kafka-python 3.0 drops those): records stored and answered
then count as failed, and a retry duplicates them. So, when the broker stops, after the last
response: read and drop whatever the client still sends; give it SETTLE_S to read what it was
sent; then send FIN and keep dropping until it closes its side (it does once it has read up
to our FIN) or `timeout` passes; then close. The connection's own protocol is swapped out
for the discarding one, so `on_lost` (its connection_lost) is called when the connection ends,
to give back what it held (admission counts, pooled bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

SETTLE_S = 0.5

class _Discard(asyncio.Protocol):
    """Drops what arrives; `done` once the client closes its side or the connection is gone."""

    def __init__(self, done: asyncio.Future, on_lost: Callable[[Exception | None], None] | None):
        self.done = done
        self.on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost(exc)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def close_gently(transport: asyncio.Transport, timeout: float,
                       on_lost: Callable[[Exception | None], None] | None = None) -> None:
    """Drop what the client sends, FIN after SETTLE_S, wait until the client closes or
    `timeout` seconds pass, then close `transport` (see the module docstring)."""
    if transport.is_closing():
        return
    done = asyncio.get_running_loop().create_future()
    transport.set_protocol(_Discard(done, on_lost))
    try:
        transport.resume_reading()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), min(SETTLE_S, timeout))
        if not done.done() and transport.can_write_eof():
            transport.write_eof()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, timeout)
    finally:
        transport.close()

"""Writing one response to a client connection: its bytes, and slices of segment files.

A response is a list of parts: bytes, or `FileSlice`s (a descriptor, a position, a length).
Slices of at least SENDFILE_MIN_BYTES leave with sendfile (zero-copy), in chunks of
SENDFILE_CHUNK_BYTES, each of which must leave within write.timeout.ms; smaller ones are read
and written. Writing waits whenever the transport's buffer is full, so what a client does
not read stays in its socket, not in the broker's memory.
"""

from __future__ import annotations

import asyncio
import time

from .connection import SENDFILE_MIN_BYTES, Connection, WriteStalledError

SENDFILE_CHUNK_BYTES = 4 << 20  # each must leave within write.timeout.ms

__all__ = ["write_parts", "SENDFILE_CHUNK_BYTES"]


class _SpliceFile:
    """The file object `loop.sendfile` wants, for a descriptor whose offset must not move.

    asyncio seeks the file after sending; segment descriptors are shared, so seeking is a no-op.
    """

    mode = "rb"

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, *args) -> int:
        return 0


async def write_parts(loop: asyncio.AbstractEventLoop, conn: Connection, parts: list) -> None:
    """Write one response; waits whenever the transport's buffer is full, so that what a
    client does not read stays in its socket, not in the broker's memory."""
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            conn.transport.write(part)
        elif part.in_memory or part.length < SENDFILE_MIN_BYTES:
            conn.transport.write(part.read_bytes())
        else:
            await conn.drain()
            timeout = conn.admission.limits.write_timeout_ms / 1000
            for position in range(part.position, part.position + part.length, SENDFILE_CHUNK_BYTES):
                count = min(SENDFILE_CHUNK_BYTES, part.position + part.length - position)
                try:
                    await asyncio.wait_for(loop.sendfile(conn.transport, _SpliceFile(part.fd), position, count),
                                           timeout)
                except TimeoutError:
                    raise WriteStalledError(f"the client read nothing for {timeout:g} s "
                                            f"(write.timeout.ms {conn.admission.limits.write_timeout_ms})") from None
                conn.last_io = time.monotonic()
        await conn.drain()

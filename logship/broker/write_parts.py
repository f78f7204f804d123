"""Writing one response to a client connection: its bytes, and slices of segment files.

A response is a list of parts: bytes, or `FileSlice`s (a descriptor, a position, a length).
Slices of at least SENDFILE_MIN_BYTES leave with sendfile (zero-copy), in chunks of
SENDFILE_CHUNK_BYTES, each of which must leave within write.timeout.ms. Everything else
(bytes, slices already in memory, smaller slices read with pread) is gathered into writes
of about WRITE_BYTES, and each write waits until the transport's buffer is below its
high-water mark (`Connection.drain`).

Invariant: while one response is written, the broker holds at most the transport's
high-water mark, one write (< 2 x WRITE_BYTES) and one piece being gathered beyond the
response's own parts, whatever the response's size; a file slice not yet reached holds no
memory (it is read in pieces of at most WRITE_BYTES, each once the client took the writes
before it). So what a client does not read stays in its socket and in the segment files,
not in the broker's memory: a Fetch answered with 64 slices of 256 KiB - 1 (just below
sendfile) to a client that never reads holds about 128 KiB, not 16 MiB.
"""

from __future__ import annotations

import asyncio
import time

from ..storage.fileslice import SliceCutShortError
from .connection import SENDFILE_MIN_BYTES, WRITE_BYTES, Connection, WriteStalledError

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


def _sends_by_file(part) -> bool:
    return (not isinstance(part, (bytes, bytearray, memoryview)) and not part.in_memory
            and part.length >= SENDFILE_MIN_BYTES)


async def write_parts(loop: asyncio.AbstractEventLoop, conn: Connection, parts: list) -> None:
    """Write one response, never more than about WRITE_BYTES beyond the transport's high-water
    mark at a time (see the module docstring); WriteStalledError when the client takes
    nothing for write.timeout.ms."""
    pending: list = []
    size = 0

    async def write_pending() -> None:
        nonlocal pending, size
        if pending:
            await conn.drain()
            conn.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            pending, size = [], 0

    for part in parts:
        if _sends_by_file(part):
            await write_pending()
            await _sendfile(loop, conn, part)
            continue
        # a slice's pieces are each read once the writes before it are taken
        pieces = (part,) if isinstance(part, (bytes, bytearray, memoryview)) else part.read_pieces(WRITE_BYTES)
        for piece in pieces:
            pending.append(piece)
            size += len(piece)
            if size >= WRITE_BYTES:
                await write_pending()
    await write_pending()
    await conn.drain()


async def _sendfile(loop: asyncio.AbstractEventLoop, conn: Connection, part) -> None:
    await conn.drain()
    timeout = conn.admission.limits.write_timeout_ms / 1000
    for position in range(part.position, part.position + part.length, SENDFILE_CHUNK_BYTES):
        count = min(SENDFILE_CHUNK_BYTES, part.position + part.length - position)
        try:
            # no fallback: asyncio's reads through the file object (which has no readinto);
            # native sendfile fails before sending a byte only when the client is gone
            sent = await asyncio.wait_for(loop.sendfile(conn.transport, _SpliceFile(part.fd), position, count,
                                                        fallback=False), timeout)
        except asyncio.SendfileNotAvailableError as exc:
            raise ConnectionError(f"sendfile failed: {exc}") from None
        except TimeoutError:
            raise WriteStalledError(f"the client read nothing for {timeout:g} s "
                                    f"(write.timeout.ms {conn.admission.limits.write_timeout_ms})") from None
        if sent != count:  # the segment was cut since the response was planned
            raise SliceCutShortError(part.length, position - part.position + sent)
        conn.last_io = time.monotonic()

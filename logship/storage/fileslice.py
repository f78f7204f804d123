"""`FileSlice`: a byte range of one segment file, ready for os.sendfile.

The slice owns a duplicate (os.dup) of the segment's file descriptor, so it stays valid when
retention or truncation closes and unlinks the segment meanwhile (POSIX keeps an unlinked
file's data until its last descriptor closes). Close it when done; it is a context manager.
The bytes it names were whole, committed and immutable when the slice was made, except that
a later truncate_to (replication) may cut them.
"""

from __future__ import annotations

import os


class FileSlice:
    """`length` bytes of the file behind `fd`, starting at `position`."""

    __slots__ = ("fd", "position", "length")

    def __init__(self, fd: int, position: int, length: int):
        self.fd = fd
        self.position = position
        self.length = length

    def fileno(self) -> int:
        return self.fd

    def read_bytes(self) -> bytes:
        """The slice's bytes, read with os.pread (for tests and callers that cannot sendfile)."""
        if self.fd < 0:
            raise ValueError("read from a closed FileSlice")
        parts, position, left = [], self.position, self.length
        while left > 0:
            chunk = os.pread(self.fd, left, position)
            if not chunk:
                break
            parts.append(chunk)
            position += len(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> "FileSlice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            try:
                self.close()
            except OSError:
                pass

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"FileSlice(fd={self.fd}, position={self.position}, length={self.length})"

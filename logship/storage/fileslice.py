"""`FileSlice`: a byte range of one segment file, ready for os.sendfile.

The slice holds a reference to the segment's shared descriptor (filecache.SharedFd; or owns
a plain descriptor given as an int), so it stays valid when the file cache evicts the file or
retention or truncation closes and unlinks the segment meanwhile (POSIX keeps an unlinked
file's data until its last descriptor closes), and the descriptor's number is never reused
for another file while the slice names it. Many slices of one file share one descriptor, and
read with positional calls only (pread, sendfile with an offset). Close it when done; it is a
context manager. The bytes it names were whole, committed and immutable when the slice was
made, except that a later truncate_to (replication) may cut them.

A small slice (at most INLINE_BYTES, far below the size the server sends with sendfile) is
read into memory when it is made (`FileSlice.of_bytes`) and holds no descriptor at all (`fd`
is -1; read_bytes() gives its bytes): a fetch response of 10,000 small partitions then pins
no descriptor while it waits to be sent, and only large slices, few per response, hold one.
"""

from __future__ import annotations

import os

from .filecache import SharedFd

#: Slices up to this size are read into memory when made (see the module docstring).
INLINE_BYTES = 64 << 10


class FileSlice:
    """`length` bytes of the file behind `fd`, starting at `position`.

    `fd` is a SharedFd reference (released by close) or a plain descriptor (closed by close).
    """

    __slots__ = ("fd", "position", "length", "_shared", "_data")

    def __init__(self, fd: int | SharedFd, position: int, length: int):
        if isinstance(fd, SharedFd):
            self._shared, self.fd = fd, fd.fd
        else:
            self._shared, self.fd = None, fd
        self.position = position
        self.length = length
        self._data: bytes | None = None

    @classmethod
    def of_bytes(cls, data: bytes, position: int = 0) -> "FileSlice":
        """A slice already read into memory from `position` of its file: no descriptor (fd -1)."""
        piece = cls(-1, position, len(data))
        piece._data = data
        return piece

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    def fileno(self) -> int:
        return self.fd

    def read_bytes(self) -> bytes:
        """The slice's bytes, read with os.pread (for tests and callers that cannot sendfile)."""
        if self._data is not None:
            return self._data
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

    def read_pieces(self, size: int):
        """The slice's bytes in pieces of at most `size`, each read with os.pread when the
        caller asks for it (so a writer holds one piece at a time, not the whole slice)."""
        if self._data is not None:
            yield self._data
            return
        position, left = self.position, self.length
        while left > 0:
            if self.fd < 0:
                raise ValueError("read from a closed FileSlice")
            chunk = os.pread(self.fd, min(size, left), position)
            if not chunk:
                raise SliceCutShortError(self.length, position - self.position)
            position += len(chunk)
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._data = None
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            shared, self._shared = self._shared, None
            if shared is not None:
                shared.release()
            else:
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
        if self._data is not None:
            return f"FileSlice(in memory, length={self.length})"
        return f"FileSlice(fd={self.fd}, position={self.position}, length={self.length})"


class SliceCutShortError(OSError):
    """The segment ended before the slice did (cut since it was planned): a frame that
    promised the slice's length cannot be finished, so its connection must be closed."""

    def __init__(self, length: int, got: int):
        super().__init__(f"segment slice cut short: {got} of {length} bytes")

"""What makes a file the same file: device, inode, inode generation, and its first bytes.

A path says nothing (rotation renames files, editors replace them) and an inode number
alone is not enough either: ext4 hands a deleted file's inode to the next file created,
at once. So a file is identified by

* `FileId(dev, ino, gen)`: the device and inode, plus the inode's generation number where
  the filesystem has one (ioctl FS_IOC_GETVERSION: ext2/3/4, btrfs...). A reused inode gets
  a new generation, so on those filesystems inode reuse is caught without reading a byte.
  Elsewhere `gen` is None and the fingerprint does that job.
* a `Fingerprint`: a hash of the first min(size, 1 KiB) bytes. It is *progressive*: a file
  shorter than 1 KiB is fingerprinted over what it has, so it ships at once (Filebeat waits
  for 1 KiB, Vector for a whole first line), and each time it grows the agent checks that
  the old, shorter fingerprint still matches the file's first bytes before extending it
  (tailer.py). A fingerprint of length n therefore always means "these were the first n
  bytes", and two fingerprints compare over the shorter length.
* a *marker*: a hash of the 32 bytes before a saved offset (Fluent Bit's offset marker).
  On restart, a file whose head still matches but whose marker does not was rewritten in
  place (truncated and refilled past the old offset while the agent was away, or copied
  over) and is read again from 0, instead of being resumed in the middle of other data.

Only a *complete* (1 KiB) fingerprint is trusted to recognise a file by content alone,
without its inode: a copy made by copytruncate, or a file whose device number changed.
A short fingerprint is too likely to be shared by unrelated files (an empty file, a
common header line), and mistaking a new file for an old one would skip its first lines,
while the opposite mistake only ships a few hundred bytes twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from dataclasses import dataclass

__all__ = ["FileId", "Fingerprint", "FINGERPRINT_BYTES", "MARKER_BYTES", "file_id", "generation",
           "read_fingerprint", "digest", "head_matches", "read_before", "read_marker", "marker_of",
           "marker_within"]

FINGERPRINT_BYTES = 1024
MARKER_BYTES = 32

_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long) on 64-bit Linux
_LONG = struct.Struct("l")


@dataclass(frozen=True, slots=True)
class FileId:
    dev: int
    ino: int
    gen: int | None = None

    @property
    def inode(self) -> tuple[int, int]:
        return self.dev, self.ino

    def same_inode(self, other: "FileId") -> bool:
        """Same device and inode, and no sign that the inode was reused in between."""
        return (self.dev, self.ino) == (other.dev, other.ino) and (
            self.gen is None or other.gen is None or self.gen == other.gen)

    def __str__(self) -> str:
        return f"{self.dev}:{self.ino}" + (f":{self.gen}" if self.gen is not None else "")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    length: int
    digest: str

    @property
    def complete(self) -> bool:
        return self.length >= FINGERPRINT_BYTES


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def generation(fd: int) -> int | None:
    """The inode generation of an open file, or None where the filesystem has none."""
    try:
        return _LONG.unpack(fcntl.ioctl(fd, _FS_IOC_GETVERSION, b"\0" * _LONG.size))[0]
    except OSError:
        return None


def file_id(fd: int, st: os.stat_result | None = None) -> FileId:
    st = st or os.fstat(fd)
    return FileId(st.st_dev, st.st_ino, generation(fd))


def read_fingerprint(fd: int, size: int) -> Fingerprint:
    """The fingerprint of the first min(size, 1 KiB) bytes of an open file."""
    head = os.pread(fd, min(size, FINGERPRINT_BYTES), 0)
    return Fingerprint(len(head), digest(head))


def head_matches(fd: int, fingerprint: Fingerprint) -> bool:
    """Whether the file still begins with the bytes `fingerprint` was taken of."""
    head = os.pread(fd, fingerprint.length, 0)
    return len(head) == fingerprint.length and digest(head) == fingerprint.digest


def marker_of(before: bytes) -> str:
    """The marker of an offset, given (at least) the bytes just before it."""
    return digest(before[-MARKER_BYTES:])


def marker_within(before: bytes, start: int, data: bytes, offset: int) -> str | None:
    """The marker of `offset` from bytes in memory: `data`, read at `start`, and `before`,
    the (up to MARKER_BYTES) bytes just before `start`; None if they do not reach back far
    enough. Unlike `read_marker` it cannot see a file changed since those bytes were read."""
    rel = offset - start
    need = min(offset, MARKER_BYTES)
    if rel < 0 or rel > len(data) or need - rel > len(before):
        return None
    if rel >= need:
        return digest(data[rel - need:rel])
    return digest(before[len(before) - (need - rel):] + data[:rel])


def read_before(fd: int, offset: int) -> bytes:
    """The (up to MARKER_BYTES) bytes just before `offset` in an open file: fewer if the
    file is shorter than `offset`."""
    start = max(0, offset - MARKER_BYTES)
    return os.pread(fd, offset - start, start)


def read_marker(fd: int, offset: int) -> str | None:
    """The marker of `offset` in an open file; None if the file is shorter than that."""
    data = read_before(fd, offset)
    return digest(data) if len(data) == min(offset, MARKER_BYTES) else None

"""Reading a pipe in blocks of whole records, into memory that forked workers share.

`PipeBlocks` maps an anonymous shared region of `slots` slots (before the fork, so worker
processes see it) and reads a pipe into one slot after another, each read straight into
the slot: a block is the whole records read, and the record cut at its end is carried to
the start of the next slot. A worker reads a block from the region (`data`), so a block's
bytes are copied once from the pipe and once into the worker's records; sending blocks
over a socket would copy them four times more.

Slots are used in turn. Reading block i writes slot i (mod slots) and, with the record cut
at its end, the start of slot i + 1: whoever hands blocks out must be done with a block
before it is `slots - 1` blocks old (at most slots - 2 outstanding while reading). A record
longer than a slot cannot be carried: `read` then gives that block as bytes, read outside
the region one read a call (so that the caller can deliver what is ready between reads).
"""

from __future__ import annotations

import mmap
import os
import select
import time

__all__ = ["PipeBlocks", "readable", "widen_pipe"]

PIPE_SIZE = 1 << 20  # what a pipe we read is widened to hold (Linux's default maximum)
_OVERFLOW_READ = 1 << 16


class PipeBlocks:
    def __init__(self, slots: int, slot_bytes: int, separator: bytes):
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.separator = separator
        self.region = mmap.mmap(-1, slots * slot_bytes)  # anonymous and shared with forked children
        self._slot = 0
        self._carry = 0  # bytes of a cut record at the start of the current slot
        self._long: list[bytes] | None = None  # a record longer than a slot, as read so far

    def read(self, fd: int, target: int, linger: float) -> tuple[int | bytes, int, bool]:
        """The next block: (offset in the region, length, whether the input ended) or, for a
        record longer than a slot, (its bytes, length, ended). Waits for the first read as
        long as it takes, then reads until the slot holds `target` bytes or `linger` seconds
        have passed since. Length 0 (and not ended): no whole record yet, what was read is
        kept for the next call (which waits again: deliver what is ready before calling).
        The last block of an input may lack a separator."""
        start = self._slot * self.slot_bytes
        if self._long is not None:
            return self._read_long(fd, start)
        size, ended = self._fill(fd, start, min(target, self.slot_bytes), linger)
        cut = size if ended else self.region.rfind(self.separator, start, start + size) - start + 1
        if cut > 0 or ended:
            carried = size - cut
            self._slot = (self._slot + 1) % self.slots
            following = self._slot * self.slot_bytes
            self.region[following:following + carried] = self.region[start + cut:start + size]
            self._carry = carried
            return start, cut, ended
        if size == self.slot_bytes:  # a record longer than a slot: read on outside the region
            self._long = [self.region[start:start + size]]
            size = 0
        self._carry = size  # part of a record: the rest is read into the same slot
        return start, 0, False

    def data(self, offset: int, length: int) -> bytes:
        return self.region[offset:offset + length]

    def close(self) -> None:
        self.region.close()

    def _fill(self, fd: int, start: int, target: int, linger: float) -> tuple[int, bool]:
        view = memoryview(self.region)[start:start + self.slot_bytes]
        try:
            size, deadline = self._carry, None
            while True:
                read = os.readv(fd, [view[size:target if size < target else self.slot_bytes]])
                if not read:
                    return size, True
                size += read
                if deadline is None:
                    deadline = time.monotonic() + linger
                left = deadline - time.monotonic()
                if size >= target or left <= 0 or not readable(fd, left):
                    return size, False
        finally:
            view.release()

    def _read_long(self, fd: int, start: int) -> tuple[int | bytes, int, bool]:
        """One read more of a record longer than a slot: the whole records read once its
        separator comes (what follows is carried into the slot), else length 0."""
        data = os.read(fd, _OVERFLOW_READ)
        cut = data.rfind(self.separator) + 1 if data else len(data)
        if data and not cut:
            self._long.append(data)
            return start, 0, False
        self._long.append(data[:cut])
        block, self._long = b"".join(self._long), None
        self.region[start:start + len(data) - cut] = data[cut:]
        self._carry = len(data) - cut
        return block, len(block), not data


def readable(fd: int, timeout: float = 0.0) -> bool:
    """Whether `fd` has something to read (or its end) within `timeout` seconds."""
    return bool(select.select([fd], [], [], timeout)[0])


def widen_pipe(fd: int) -> None:
    """Let the writer put PIPE_SIZE bytes in the pipe (64 KiB by default), so each read
    takes more at once; where that cannot be done, nothing changes."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass

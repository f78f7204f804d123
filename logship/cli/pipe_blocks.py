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
the region.
"""

from __future__ import annotations

import mmap
import os
import select

__all__ = ["PipeBlocks", "widen_pipe"]

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

    def read(self, fd: int, target: int, linger: float) -> tuple[int | bytes, int, bool]:
        """The next block: (offset in the region, length, whether the input ended) or, for a
        record longer than a slot, (its bytes, length, ended). Reads until the slot holds
        `target` bytes or the pipe has had nothing for `linger` seconds, waiting as long as
        it takes for the first read. Length 0 (and not ended): no whole record yet, the part
        read is kept for the next call. The last block of an input may lack a separator."""
        start = self._slot * self.slot_bytes
        size, ended = self._fill(fd, start, min(target, self.slot_bytes), linger)
        cut = size if ended else self.region.rfind(self.separator, start, start + size) - start + 1
        if cut > 0 or ended:
            carried = size - cut
            self._slot = (self._slot + 1) % self.slots
            following = self._slot * self.slot_bytes
            self.region[following:following + carried] = self.region[start + cut:start + size]
            self._carry = carried
            return start, cut, ended
        if size < self.slot_bytes:
            self._carry = size  # part of a record: the rest is read into the same slot
            return start, 0, False
        return self._long_record(fd, start)

    def data(self, offset: int, length: int) -> bytes:
        return self.region[offset:offset + length]

    def close(self) -> None:
        self.region.close()

    def _fill(self, fd: int, start: int, target: int, linger: float) -> tuple[int, bool]:
        view = memoryview(self.region)[start:start + self.slot_bytes]
        try:
            size = self._carry
            while True:
                read = os.readv(fd, [view[size:target if size < target else self.slot_bytes]])
                if not read:
                    return size, True
                size += read
                if size >= target or not _readable(fd, linger):
                    return size, False
        finally:
            view.release()

    def _long_record(self, fd: int, start: int) -> tuple[bytes, int, bool]:
        """A full slot without a separator: read on, outside the region, to the end of that
        record; return the whole records read, and carry what follows into the slot."""
        parts = [self.region[start:start + self.slot_bytes]]
        while True:
            data = os.read(fd, _OVERFLOW_READ)
            if not data:
                block = b"".join(parts)
                self._carry = 0
                return block, len(block), True
            cut = data.rfind(self.separator) + 1
            if cut:
                parts.append(data[:cut])
                block = b"".join(parts)
                self.region[start:start + len(data) - cut] = data[cut:]
                self._carry = len(data) - cut
                return block, len(block), False
            parts.append(data)


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def widen_pipe(fd: int) -> None:
    """Let the writer put PIPE_SIZE bytes in the pipe (64 KiB by default), so each read
    takes more at once; where that cannot be done, nothing changes."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass

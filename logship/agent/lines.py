"""Cutting a file's bytes into lines, with bounded memory.

A `LineSplitter` is fed the bytes of one file in order and returns `Lines`: the complete
lines found (without their "\\n"), the file offset where each begins, and `end`, the offset
to resume from after a crash without losing anything (the start of the incomplete line
still held back). Rules:

* A line is shipped once its "\\n" has been read. The bytes after the last "\\n" (a line
  still being written) are held back; `flush_partial()` ships them when the caller decides
  the writer is done with them (no new byte for `partial_line_timeout`, or the file was
  deleted or rotated away). A restart resumes at the start of a held-back line, so such a
  line is never cut in two by a restart.
* A line longer than `max_line_bytes` is shipped truncated to that length and listed in
  `truncated` (the shipper flags it with a `truncated` header); the rest of it, up to its
  "\\n", is read and dropped. Only `max_line_bytes` of one line is ever held in memory,
  so a 10 MB line costs no more than a short one. While the rest of a long line is being
  skipped, `end` stays at the line's start: a crash there ships the truncated line again
  (a duplicate), never loses the next line.
* Bytes are not decoded: a line is whatever lies between two "\\n", invalid UTF-8 and NUL
  bytes included, and is shipped as those bytes. "\\r" before "\\n" is kept.

The common case (no held-back bytes, no long line) is a handful of C-level calls per
chunk: one rfind, one split, one max, one accumulate.
"""

from __future__ import annotations

from itertools import accumulate, chain

__all__ = ["Lines", "LineSplitter"]

_ONE = (1).__add__


class Lines:
    """Lines of one file: `values[i]` starts at file offset `starts[i]`; `truncated` lists
    the indices of values that were cut at the maximum length (or is empty); `end` is the
    resume offset once these are delivered."""

    __slots__ = ("values", "starts", "truncated", "end")

    def __init__(self, values: list, starts: list, truncated: list, end: int):
        self.values = values
        self.starts = starts
        self.truncated = truncated
        self.end = end

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"<Lines {len(self.values)} end={self.end} truncated={self.truncated}>"


def line_starts(base: int, lengths: list) -> list:
    """File offsets of lines of these lengths (each followed by one "\\n"), the first at `base`."""
    if not lengths:
        return []
    return list(accumulate(chain((base,), map(_ONE, lengths[:-1]))))


class LineSplitter:
    """Splits one file's bytes into lines; see the module docstring."""

    __slots__ = ("offset", "partial", "skipping", "line_start", "max_line_bytes", "partial_since")

    def __init__(self, offset: int, max_line_bytes: int):
        # Not skipping: `partial` holds the file's bytes from `offset` on (a line begun).
        # Skipping: the bytes up to `offset` were consumed, inside a long line that began
        # at `line_start` and was shipped truncated.
        self.offset = offset
        self.partial = b""
        self.skipping = False
        self.line_start = offset
        self.max_line_bytes = max_line_bytes
        self.partial_since: float | None = None

    @property
    def resume(self) -> int:
        """Where to start reading again to lose nothing not yet shipped."""
        return self.line_start if self.skipping else self.offset

    @property
    def position(self) -> int:
        """The file offset of the next byte to feed."""
        return self.offset if self.skipping else self.offset + len(self.partial)

    def feed(self, data: bytes, now: float = 0.0) -> Lines:
        """Lines completed by `data` (the next bytes of the file)."""
        values: list = []
        starts: list = []
        truncated: list = []
        if self.skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self.offset += len(data)
                return Lines(values, starts, truncated, self.line_start)
            self.offset += newline + 1
            data = data[newline + 1:]
            self.skipping = False
        last = data.rfind(b"\n")
        if last >= 0:
            block = self.partial + data[:last + 1] if self.partial else data[:last + 1]
            rest = data[last + 1:]
            values = block.split(b"\n")
            values.pop()
            lengths = list(map(len, values))
            starts = line_starts(self.offset, lengths)
            limit = self.max_line_bytes
            if max(lengths) > limit:
                for index, length in enumerate(lengths):
                    if length > limit:
                        values[index] = values[index][:limit]
                        truncated.append(index)
            self.offset += len(block)
            self.partial = b""
            self.partial_since = None
        else:
            rest = self.partial + data if self.partial else data
            self.partial = b""
        if rest:
            if len(rest) > self.max_line_bytes:  # a long line: ship its head now, drop the rest
                values.append(rest[:self.max_line_bytes])
                starts.append(self.offset)
                truncated.append(len(values) - 1)
                self.skipping = True
                self.line_start = self.offset
                self.offset += len(rest)
                self.partial_since = None
            else:
                self.partial = rest
                self.partial_since = now
        return Lines(values, starts, truncated, self.resume)

    def flush_partial(self) -> Lines:
        """Ship the held-back bytes of an unfinished line as a line of their own."""
        if self.skipping or not self.partial:
            return Lines([], [], [], self.resume)
        value, start = self.partial, self.offset
        self.offset += len(value)
        self.partial = b""
        self.partial_since = None
        return Lines([value], [start], [], self.offset)

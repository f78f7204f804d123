"""Cutting a file's bytes into lines, with bounded memory.

A splitter is fed the bytes of one file in order and returns `Lines`: the complete lines
found (without their line ending), the file offset where each begins, and `end`, the
offset to resume from after a crash without losing anything (the start of the incomplete
line still held back). Offsets are always offsets in the file as stored (source bytes),
whatever the encoding, so checkpoints and the `offset` header point into the file itself.

`LineSplitter` reads UTF-8 (and anything ASCII-compatible); `Utf16LineSplitter` reads
UTF-16; `new_splitter()` picks one for an input's `encoding`. Rules common to both:

* A line is shipped once its newline has been read. The bytes after the last newline (a
  line still being written) are held back; `flush_partial()` ships them when the caller
  decides the writer is done with them (no new byte for `partial_line_timeout`, or the
  file was deleted or rotated away). A restart resumes at the start of a held-back line,
  so such a line is never cut in two by a restart.
* Line endings (`line_terminator`): "auto" (the default, as Filebeat's) takes "\\n" and
  "\\r\\n" as line endings: one "\\r" just before the "\\n" is stripped, and so is one "\\r"
  ending a partial line that `flush_partial()` ships. "lf": only "\\n" ends a line, and a
  "\\r" before it is kept as part of the line.
* `max_line_bytes` bounds the *shipped* value: a longer line is shipped truncated to that
  length and listed in `truncated` (the shipper flags it with a `truncated` header); the
  rest of it, up to its newline, is read and dropped. Memory held for one line is bounded
  (max_line_bytes of it in UTF-8; at most 2 x max_line_bytes + 4 source bytes in UTF-16,
  where one 2-byte code unit yields at least one UTF-8 byte), so a 10 MB line costs no
  more than a short one. While the rest of a long line is being skipped, `end` stays at
  the line's start: a crash there ships the truncated line again (a duplicate), never
  loses the next line.

UTF-8 (`LineSplitter`): bytes are not decoded nor validated. A line is whatever lies
between two "\\n", invalid UTF-8 and NUL bytes included, and is shipped as those bytes; a
long line is cut at exactly `max_line_bytes` bytes. The common case (no held-back bytes,
no long line, no "\\r") is a handful of C-level calls per chunk: one rfind, one split, one
max, one accumulate, and one memchr for "\\r"; lines ending in "\\r\\n" add one C-level map.

UTF-16 (`Utf16LineSplitter`): the file is a sequence of 2-byte code units from file
offset 0, little-endian ("utf-16le"), big-endian ("utf-16be"), or ("utf-16") as its
byte-order mark says: FF FE little-endian, FE FF big-endian, no mark little-endian.

* A line ends at the encoded newline U+000A ("\\n\\0" in LE, "\\0\\n" in BE) at an even
  file offset; the same two bytes at an odd offset (parts of two other code units) are
  not a newline. Every line starts, and every `end` lies, at an even offset.
* The byte-order mark (U+FEFF at offset 0) is skipped, never shipped: the first line
  starts at offset 2. A splitter that starts past the mark (resuming from a checkpoint)
  with "utf-16" is given the file's first two bytes (`head`) to know the byte order.
* Each line is decoded and shipped as UTF-8. Malformed data (a lone surrogate, a
  trailing odd byte) becomes U+FFFD, never an error. A line truncated at
  `max_line_bytes` is cut on a character boundary (so it may be a little shorter).
* A code unit or a surrogate pair cut between two reads is held back until complete;
  a partial line shipped by `flush_partial()` keeps back an odd byte and a high
  surrogate still waiting for its pair, unless `final` (the file is let go).
* A splitter started at an odd offset (a checkpoint written while the input was read as
  UTF-8) drops that one byte to get back in step with the code units.
"""

from __future__ import annotations

from itertools import accumulate, chain, repeat

__all__ = ["Lines", "LineSplitter", "Utf16LineSplitter", "new_splitter", "ENCODINGS", "LINE_TERMINATORS",
           "cut_utf8"]

#: The values of an input's `encoding` option.
ENCODINGS = ("utf-8", "utf-16le", "utf-16be", "utf-16")
#: The values of an input's `line_terminator` option.
LINE_TERMINATORS = ("auto", "lf")

_ONE = (1).__add__
_TWO = (2).__add__
_ODD = (1).__and__


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

    def then(self, more: "Lines") -> "Lines":
        """These lines followed by `more` (the next ones of the same file)."""
        return Lines(self.values + more.values, self.starts + more.starts,
                     self.truncated + [i + len(self.values) for i in more.truncated], more.end)

    def __repr__(self) -> str:
        return f"<Lines {len(self.values)} end={self.end} truncated={self.truncated}>"


def line_starts(base: int, lengths: list, newline: int = 1) -> list:
    """File offsets of lines of these lengths (each followed by a newline of `newline`
    bytes), the first at `base`."""
    if not lengths:
        return []
    step = _ONE if newline == 1 else newline.__add__
    return list(accumulate(chain((base,), map(step, lengths[:-1]))))


def cut_utf8(value: bytes, limit: int) -> bytes:
    """`value` cut to at most `limit` bytes without splitting a UTF-8 character."""
    if len(value) <= limit:
        return value
    end = limit
    while end > 0 and value[end] & 0xC0 == 0x80:  # value[end] continues the character before it
        end -= 1
    return value[:end]


def new_splitter(offset: int, max_line_bytes: int, encoding: str = "utf-8", line_terminator: str = "auto",
                 head: bytes = b""):
    """The splitter for an input's `encoding` and `line_terminator`, starting at file
    offset `offset`; `head` is the file's first two bytes, which decide the byte order of
    "utf-16" when `offset` is past them."""
    if encoding == "utf-8":
        return LineSplitter(offset, max_line_bytes, line_terminator)
    return Utf16LineSplitter(offset, max_line_bytes, encoding, line_terminator, head)


def _ship_head_and_skip(splitter, values: list, starts: list, truncated: list, head: bytes, consumed: int,
                        kept: bytes) -> None:
    """A line too long to hold: ship `head` (truncated, flagged) and skip the rest of the
    line; `consumed` bytes from the splitter's offset are used up, `kept` stays partial."""
    values.append(head)
    starts.append(splitter.offset)
    truncated.append(len(values) - 1)
    splitter.skipping = True
    splitter.line_start = splitter.offset
    splitter.offset += consumed
    splitter.partial = kept
    splitter.partial_since = None


class LineSplitter:
    """Splits one file's bytes (UTF-8, not decoded) into lines; see the module docstring."""

    __slots__ = ("offset", "partial", "skipping", "line_start", "max_line_bytes", "partial_since", "strip_cr")

    def __init__(self, offset: int, max_line_bytes: int, line_terminator: str = "auto"):
        # Not skipping: `partial` holds the file's bytes from `offset` on (a line begun).
        # Skipping: the bytes up to `offset` were consumed, inside a long line that began
        # at `line_start` and was shipped truncated.
        if line_terminator not in LINE_TERMINATORS:
            raise ValueError(f"line_terminator: {line_terminator!r} is not one of {', '.join(LINE_TERMINATORS)}")
        self.offset = offset
        self.partial = b""
        self.skipping = False
        self.line_start = offset
        self.max_line_bytes = max_line_bytes
        self.partial_since: float | None = None
        self.strip_cr = line_terminator == "auto"

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
            if self.strip_cr and b"\r" in block:  # one memchr; CRLF lines cost one more C-level map
                values = list(map(bytes.removesuffix, values, repeat(b"\r")))
                lengths = list(map(len, values))
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
            # a long line: ship its head now, drop the rest (but a line of exactly the
            # limit whose "\r" has come and whose "\n" has not is not long)
            if len(rest) > self.max_line_bytes + (self.strip_cr and rest[-1] == 13):
                _ship_head_and_skip(self, values, starts, truncated, rest[:self.max_line_bytes], len(rest), b"")
            else:
                self.partial = rest
                self.partial_since = now
        return Lines(values, starts, truncated, self.resume)

    def flush_partial(self, final: bool = False) -> Lines:
        """Ship the held-back bytes of an unfinished line as a line of their own (`final`:
        the file is let go; makes no difference in UTF-8)."""
        if self.skipping or not self.partial:
            return Lines([], [], [], self.resume)
        value, start = self.partial, self.offset
        self.offset += len(value)
        self.partial = b""
        self.partial_since = None
        if self.strip_cr and value[-1] == 13:
            value = value[:-1]  # (what may exceed max_line_bytes by one byte is this "\r")
        return Lines([value], [start], [], self.offset)


_BYTE_ORDERS = {"utf-16le": "utf-16-le", "utf-16be": "utf-16-be"}
_BOM = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}
_NEWLINE = {"utf-16-le": b"\n\x00", "utf-16-be": b"\x00\n"}
_CR = {"utf-16-le": b"\r\x00", "utf-16-be": b"\x00\r"}


def byte_order(head: bytes) -> str:
    """The codec of a "utf-16" file that begins with `head`: its byte-order mark decides;
    without one, little-endian."""
    return "utf-16-be" if head[:2] == b"\xfe\xff" else "utf-16-le"


class Utf16LineSplitter:
    """Splits one UTF-16 file into lines shipped as UTF-8; see the module docstring.
    `encoding` is "utf-16le", "utf-16be" or "utf-16" (the byte-order mark decides)."""

    __slots__ = ("offset", "partial", "skipping", "line_start", "max_line_bytes", "partial_since", "strip_cr",
                 "codec", "newline", "cr", "bom", "at_start", "drop")

    def __init__(self, offset: int, max_line_bytes: int, encoding: str = "utf-16", line_terminator: str = "auto",
                 head: bytes = b""):
        # `partial` holds the file's bytes from `offset` on that are not consumed yet: a line
        # begun, or (skipping: the rest of a long line, from `line_start`, was shipped
        # truncated and is being dropped up to `offset`) at most an odd byte.
        if line_terminator not in LINE_TERMINATORS:
            raise ValueError(f"line_terminator: {line_terminator!r} is not one of {', '.join(LINE_TERMINATORS)}")
        if encoding not in ("utf-16", "utf-16le", "utf-16be"):
            raise ValueError(f"encoding: {encoding!r} is not a UTF-16 encoding")
        self.drop = offset & 1
        self.offset = offset + self.drop
        self.partial = b""
        self.skipping = False
        self.line_start = self.offset
        self.max_line_bytes = max_line_bytes
        self.partial_since: float | None = None
        self.strip_cr = line_terminator == "auto"
        self.at_start = offset == 0  # a byte-order mark may come first
        if encoding != "utf-16":
            self._use(_BYTE_ORDERS[encoding])
        elif not self.at_start:
            self._use(byte_order(head))
        else:
            self._use(None)  # decided by the first two bytes fed

    def _use(self, codec: str | None) -> None:
        self.codec = codec
        self.newline = _NEWLINE.get(codec)
        self.cr = _CR.get(codec)
        self.bom = _BOM.get(codec)

    @property
    def resume(self) -> int:
        """Where to start reading again to lose nothing not yet shipped."""
        return self.line_start if self.skipping else self.offset

    @property
    def position(self) -> int:
        """The file offset of the next byte to feed."""
        return self.offset + len(self.partial) - self.drop

    def _find(self, data: bytes, start: int = 0) -> int:
        """The first newline at an even position of `data` from `start` (even), or -1."""
        newline = self.newline
        found = data.find(newline, start)
        while found & 1:  # -1 is odd too: & 1 == 1, so test it first
            if found < 0:
                return -1
            found = data.find(newline, found + 1)
        return found

    def _rfind(self, data: bytes) -> int:
        """The last newline at an even position of `data`, or -1."""
        newline = self.newline
        found = data.rfind(newline)
        while found > 0 and found & 1:
            found = data.rfind(newline, 0, found + 1)
        return found

    def _decode(self, pieces: list) -> list:
        """UTF-8 of these lines (their line endings stripped as configured)."""
        if self.strip_cr:
            pieces = map(bytes.removesuffix, pieces, repeat(self.cr))
        return list(map(str.encode, map(bytes.decode, pieces, repeat(self.codec), repeat("replace"))))

    def _truncate(self, values: list, truncated: list, first: int = 0) -> None:
        limit = self.max_line_bytes
        if values and max(map(len, values)) > limit:
            for index, value in enumerate(values):
                if len(value) > limit:
                    values[index] = cut_utf8(value, limit)
                    truncated.append(first + index)

    def feed(self, data: bytes, now: float = 0.0) -> Lines:
        """Lines completed by `data` (the next bytes of the file)."""
        values: list = []
        starts: list = []
        truncated: list = []
        if self.drop and data:
            data = data[1:]
            self.drop = 0
        data = self.partial + data if self.partial else data
        self.partial = b""
        if self.at_start:
            if len(data) < 2:
                self.partial = data
                self.partial_since = None  # nothing to ship before the second byte
                return Lines(values, starts, truncated, self.resume)
            if self.codec is None:
                self._use(byte_order(data))
            if data[:2] == self.bom:
                data = data[2:]
                self.offset = self.line_start = 2
            self.at_start = False
        if self.skipping:
            newline = self._find(data)
            if newline < 0:
                whole = len(data) & ~1
                self.offset += whole
                self.partial = data[whole:]
                return Lines(values, starts, truncated, self.line_start)
            self.offset += newline + 2
            data = data[newline + 2:]
            self.skipping = False
        last = self._rfind(data)
        if last >= 0:
            pieces = data[:last].split(self.newline)
            lengths = list(map(len, pieces))
            if any(map(_ODD, lengths)):  # a "newline" at an odd position: not one; join it back
                pieces = _rejoin(pieces, self.newline)
                lengths = list(map(len, pieces))
            starts = line_starts(self.offset, lengths, 2)
            values = self._decode(pieces)
            self._truncate(values, truncated)
            self.offset += last + 2
            rest = data[last + 2:]
            self.partial_since = None
        else:
            rest = data
        if rest:
            # Each code unit gives at least one UTF-8 byte: past this many source bytes (an
            # odd byte and a "\r" aside), the line is sure to be too long. Ship its head.
            limit = self.max_line_bytes
            if len(rest) > 2 * limit + 4:
                head = rest[:2 * limit + 2].decode(self.codec, "replace").encode()
                whole = len(rest) & ~1
                _ship_head_and_skip(self, values, starts, truncated, cut_utf8(head, limit), whole, rest[whole:])
            else:
                self.partial = rest
                self.partial_since = now
        return Lines(values, starts, truncated, self.resume)

    def flush_partial(self, final: bool = False) -> Lines:
        """Ship the held-back bytes of an unfinished line as a line of their own. Unless
        `final` (the file is let go), an odd byte and an unpaired high surrogate at the end
        stay held back, so that the rest of their character can still come."""
        value, start = self.partial, self.offset
        if not final and value and not self.skipping:
            whole = len(value) & ~1
            if whole >= 2 and 0xD8 <= value[whole - 2 + (self.codec == "utf-16-le")] <= 0xDB:
                whole -= 2  # a high surrogate: its low half is still to come
            value = value[:whole]
        if self.skipping or not value:
            self.partial_since = None  # what is held back waits for more bytes, not for time
            return Lines([], [], [], self.resume)
        if self.codec is None:  # fewer than two bytes in the whole file
            self._use("utf-16-le")
        self.partial = self.partial[len(value):]
        self.offset += len(value)
        self.partial_since = None
        self.at_start = False
        values = self._decode([value])
        truncated: list = []
        self._truncate(values, truncated)
        return Lines(values, [start], truncated, self.offset)


def _rejoin(pieces: list, newline: bytes) -> list:
    """Pieces of a split on `newline` joined again where the separator was at an odd
    position: a piece of odd length ends in the middle of a code unit."""
    out: list = []
    current = None
    for piece in pieces:
        current = piece if current is None else current + newline + piece
        if not len(current) & 1:
            out.append(current)
            current = None
    if current is not None:  # cannot happen: the pieces and separators add up to whole units
        out.append(current)
    return out

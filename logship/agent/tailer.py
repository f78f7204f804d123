"""Following one open file: read from an offset, cut lines, notice what happened to it.

A `Tailer` holds one open descriptor per file (per inode, so a renamed file is still
read through the descriptor opened before the rename) and reads it with pread from its
offset, `read_bytes` at a time. Each look at a file starts with fstat of that descriptor
(`check()`), which tells, whatever watchdog said or missed:

* size < read offset: the file was **truncated** (`: > app.log`, copytruncate). The
  agent retires the generation being read and starts again at 0 (fileset.py).
* the first bytes no longer match the fingerprint, or the 32 bytes before the read offset
  no longer match what was read there: the file was **rewritten in place** (truncated and
  refilled past the old offset between two looks): handled like a truncation.
* st_nlink == 0: the file was **deleted**; it is read to its end, then closed at once so
  its disk space is freed (or after `close_removed_after` if reading is paused).
* otherwise, more bytes than the read offset: read them.

Whether the path still leads to this inode (rename rotation, symlink moved) is the
periodic scan's business (discovery.py); a file no scan finds any more is read to its
end and let go once it has not grown for `close_renamed_after`.

A `LineReader` turns the bytes into lines (lines.py: UTF-8 as read, or UTF-16 decoded to
UTF-8, line endings as the input's `line_terminator` says) and, if configured, multi-line
events (multiline.py). It is separate from the Tailer because it belongs to the content,
not to the descriptor: when a copytruncate copy is recognised, the retired generation's
reader (with its held-back partial line) carries on reading from the copy.
"""

from __future__ import annotations

import os

from .config import InputConfig
from .identity import FINGERPRINT_BYTES, FileId, Fingerprint, MARKER_BYTES, digest, marker_of
from .lines import Lines, new_splitter
from .multiline import MultilineJoiner

__all__ = ["LineReader", "Tailer", "OK", "TRUNCATED", "REWRITTEN"]

OK, TRUNCATED, REWRITTEN = "ok", "truncated", "rewritten"


class LineReader:
    """Bytes of one content stream -> lines or events, starting at `offset`. `head` is the
    first two bytes of the file: with encoding "utf-16", its byte-order mark decides the
    byte order when reading starts past it (resuming from a checkpoint)."""

    __slots__ = ("splitter", "joiner", "partial_timeout")

    def __init__(self, offset: int, config: InputConfig, head: bytes = b""):
        self.splitter = new_splitter(offset, config.max_line_bytes, config.encoding, config.line_terminator, head)
        self.partial_timeout = config.partial_line_timeout
        ml = config.multiline
        self.joiner = MultilineJoiner(ml.compile(), ml.timeout, ml.max_lines, config.max_line_bytes,
                                      text=config.encoding != "utf-8") if ml else None
        if self.joiner is not None:
            self.joiner.upstream_end = offset

    @property
    def position(self) -> int:
        return self.splitter.position

    @property
    def resume(self) -> int:
        return self.joiner.resume if self.joiner is not None else self.splitter.resume

    @property
    def holding(self) -> bool:
        """Whether bytes or lines are held back waiting for more."""
        return bool(self.splitter.partial) or (self.joiner is not None and self.joiner.pending)

    def feed(self, data: bytes, now: float) -> Lines:
        lines = self.splitter.feed(data, now)
        return self.joiner.feed(lines, now) if self.joiner is not None else lines

    def due(self, now: float) -> bool:
        """Whether something held back has waited long enough to be shipped as it is."""
        since = self.splitter.partial_since
        if self.splitter.partial and since is not None and now - since >= self.partial_timeout:
            return True
        return self.joiner is not None and self.joiner.due(now)

    def flush_due(self, now: float) -> Lines:
        """Ship what has waited its timeout: a line without its newline, an event."""
        since = self.splitter.partial_since
        lines = None
        if self.splitter.partial and since is not None and now - since >= self.partial_timeout:
            lines = self.splitter.flush_partial()
            if self.joiner is not None:
                lines = self.joiner.feed(lines, now)
        if self.joiner is not None and self.joiner.due(now):
            flushed = self.joiner.flush()
            lines = lines.then(flushed) if lines is not None and lines.values else flushed
        return lines if lines is not None else Lines([], [], [], self.resume)

    def flush_all(self) -> Lines:
        """The file is let go: ship everything held back."""
        lines = self.splitter.flush_partial(final=True)
        if self.joiner is not None:
            lines = self.joiner.feed(lines, 0.0)
            lines = lines.then(self.joiner.flush())
        return lines


class Tailer:
    """One open file; see the module docstring. `state` is the checkpoint.FileState of the
    generation being read, `route` where its lines go (route.Route)."""

    def __init__(self, fd: int, fid: FileId, path: str, state, route, reader: LineReader,
                 size: int, now: float, tail: bytes = b""):
        self.fd = fd
        self.id = fid
        self.path = path
        self.state = state
        self.route = route
        self.reader = reader
        self.size = size
        self.checked_size = size
        self.last_good_size = size
        self.tail = tail  # the bytes just before the read position (up to MARKER_BYTES)
        self.deleted_at: float | None = None
        self.seen_at = now
        self.grew_at = now
        self.at_eof = False

    @property
    def position(self) -> int:
        return self.reader.position

    @property
    def marker(self) -> str | None:
        """The marker (identity.py) of the read position; None before a byte was read."""
        return marker_of(self.tail) if self.tail else None

    def check(self, now: float) -> tuple[str, os.stat_result]:
        """fstat the descriptor and say whether the content is still the one being read."""
        st = os.fstat(self.fd)
        size = st.st_size
        if size > self.size:
            self.grew_at = now
        self.size = size
        position = self.position
        if size < position:
            return TRUNCATED, st
        if size != self.checked_size:
            if not self._content_unchanged(size, position):
                return REWRITTEN, st
            self.checked_size = size
        self.last_good_size = size
        return OK, st

    def _content_unchanged(self, size: int, position: int) -> bool:
        """The file still begins with the fingerprinted bytes, and the bytes before the read
        position are still those read there (one pread of <= 1 KiB and one of 32 bytes)."""
        fp: Fingerprint = self.state.fingerprint
        head = os.pread(self.fd, min(size, FINGERPRINT_BYTES), 0)
        if len(head) < fp.length or digest(head[:fp.length]) != fp.digest:
            return False
        if len(head) > fp.length:  # progressive fingerprint: extend it as the file grows
            self.state.fingerprint = Fingerprint(len(head), digest(head))
        tail = self.tail
        if tail and position > len(head):
            if os.pread(self.fd, len(tail), position - len(tail)) != tail:
                return False
        return True

    def read(self, limit: int) -> bytes:
        position = self.position
        data = os.pread(self.fd, limit, position)
        if data:
            self.tail = (self.tail + data)[-MARKER_BYTES:] if len(data) < MARKER_BYTES else data[-MARKER_BYTES:]
        self.at_eof = position + len(data) >= self.size
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"<Tailer {self.path} {self.id} at {self.position}/{self.size}>"

"""Joining lines into multi-line events (a Java stack trace is one record, not forty).

A line that matches the start pattern (re.match: at the beginning of the line) begins an
event; every other line is appended to the current event with "\\n" between them. A
continuation line with no event before it (the top of a file that begins mid-trace)
begins an event of its own. An event is complete, and shipped, when the next start line
arrives, when no line has come for `timeout` seconds (`due()`/`flush()`), or when the
file is let go.

Limits: an event longer than `max_bytes` is cut there and flagged truncated, as is one
with more than `max_lines` lines; the dropped lines are still consumed (their offsets are
covered by the event), so memory stays bounded by `max_bytes`. With `text` (lines decoded
to UTF-8 from another encoding), the cut falls on a character boundary.

Checkpoints land on event boundaries: `end` of the output is the start of the event still
being collected, so a restart reads that event again from its first line instead of
starting in the middle of a trace.
"""

from __future__ import annotations

import re

from .lines import Lines, cut_utf8

__all__ = ["MultilineJoiner"]


class MultilineJoiner:
    __slots__ = ("pattern", "timeout", "max_lines", "max_bytes", "parts", "size", "lines", "start",
                 "truncated", "last_time", "upstream_end", "text")

    def __init__(self, pattern: re.Pattern, timeout: float, max_lines: int, max_bytes: int, text: bool = False):
        self.pattern = pattern
        self.timeout = timeout
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.parts: list[bytes] = []
        self.size = 0
        self.lines = 0
        self.start = 0
        self.truncated = False
        self.last_time = 0.0
        self.upstream_end = 0
        self.text = text

    @property
    def pending(self) -> bool:
        return bool(self.lines)

    @property
    def resume(self) -> int:
        return min(self.start, self.upstream_end) if self.lines else self.upstream_end

    def feed(self, lines: Lines, now: float) -> Lines:
        values, starts, truncated = [], [], []
        match = self.pattern.match
        cut = set(lines.truncated)
        for index, (value, start) in enumerate(zip(lines.values, lines.starts)):
            if self.lines and match(value):
                self._emit(values, starts, truncated)
            if not self.lines:
                self.start = start
            self._append(value, index in cut)
        if lines.values:
            self.last_time = now
        self.upstream_end = lines.end
        return Lines(values, starts, truncated, self.resume)

    def _append(self, value: bytes, was_truncated: bool) -> None:
        self.lines += 1
        if was_truncated:
            self.truncated = True
        if self.lines > self.max_lines:
            self.truncated = True
            return
        room = self.max_bytes - self.size - (1 if self.parts else 0)
        if room < len(value):
            self.truncated = True
            if room <= 0:
                return
            value = cut_utf8(value, room) if self.text else value[:room]
        if self.parts:
            self.size += 1
        self.parts.append(value)
        self.size += len(value)

    def _emit(self, values: list, starts: list, truncated: list) -> None:
        if self.truncated:
            truncated.append(len(values))
        values.append(b"\n".join(self.parts))
        starts.append(self.start)
        self.parts = []
        self.size = self.lines = 0
        self.truncated = False

    def due(self, now: float) -> bool:
        """Whether the event being collected has waited its timeout."""
        return bool(self.lines) and now - self.last_time >= self.timeout

    def flush(self) -> Lines:
        """Ship the event being collected, complete or not."""
        values, starts, truncated = [], [], []
        if self.lines:
            self._emit(values, starts, truncated)
        return Lines(values, starts, truncated, self.upstream_end)

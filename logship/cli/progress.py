"""Progress and rates on stderr, only when stderr is a terminal (never in pipelines or logs)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts records and bytes; redraws one stderr line at most twice a second."""

    def __init__(self, verb: str, enabled: bool | None = None):
        self.verb = verb
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.records = 0
        self.bytes = 0
        self._start = self._shown = time.monotonic()

    def add(self, records: int, nbytes: int) -> None:
        self.records += records
        self.bytes += nbytes
        if self.enabled:
            now = time.monotonic()
            if now - self._shown >= 0.5:
                self._shown = now
                self._draw(now, "\r")

    def done(self) -> None:
        if self.enabled:
            self._draw(time.monotonic(), "\r")
            sys.stderr.write("\n")

    def _draw(self, now: float, end: str) -> None:
        elapsed = max(now - self._start, 1e-9)
        sys.stderr.write(f"{end}{self.verb} {self.records:,} records, {self.bytes / 1e6:,.1f} MB "
                         f"({self.records / elapsed:,.0f} records/s, {self.bytes / 1e6 / elapsed:,.1f} MB/s)")
        sys.stderr.flush()

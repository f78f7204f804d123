"""`RateLimitedLog`: one log line per kind of event and interval, however often it happens.

The first event of a kind (a key such as ("max.connections.per.ip", "127.0.0.1")) is logged
at once, with its own message; later ones within `interval_s` are only counted, and `flush()`
(called periodically, and by every `note`) logs one summary per key whose interval has
passed, e.g. "refused 1,234 connections from 127.0.0.1 in the last 10 s:
max.connections.per.ip 100". A key that stays quiet for a whole interval starts afresh.
"""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, clock=time.monotonic,
                 level: int = logging.WARNING):
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self.level = level
        self._windows: dict = {}  # key -> [window start, count since the last line, summary format]

    def note(self, key, message: str, summary: str) -> None:
        """One event of kind `key`. `message` is logged if it is the first in an interval;
        `summary` is the periodic line, where "{count}" and "{seconds}" are replaced (any
        other braces, as in an error message, are left as they are)."""
        now = self.clock()
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = [now, 0, summary]
            self.logger.log(self.level, "%s", message)
            return
        window[1] += 1
        window[2] = summary
        self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log the summaries that are due; forget keys quiet for a whole interval."""
        now = self.clock() if now is None else now
        for key, window in list(self._windows.items()):
            start, count, summary = window
            if now - start < self.interval_s:
                continue
            if count:
                line = summary.replace("{count}", f"{count:,}").replace("{seconds}", f"{now - start:.0f}")
                self.logger.log(self.level, "%s", line)
                self._windows[key] = [now, 0, summary]
            else:
                del self._windows[key]

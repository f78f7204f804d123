"""What the agent did, as counters: printed on SIGUSR1 and when it exits.

    lines, bytes      lines (records) and their bytes acknowledged by the broker
    batches           record batches acknowledged
    retries           batches sent again after a failure (broker down, timeout, error)
    lines_truncated   lines (or multi-line events) cut at max_line_bytes and flagged
    bytes_skipped     bytes that existed in a file but were never read: a file truncated,
                      or deleted and let go, before the agent got to them. Only data really
                      lost counts; re-reading never does.
    records_rejected  records the broker refused for good (e.g. too large) and were dropped
    files             files being tailed now
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Counters"]


@dataclass
class Counters:
    lines: int = 0
    bytes: int = 0
    batches: int = 0
    retries: int = 0
    lines_truncated: int = 0
    bytes_skipped: int = 0
    records_rejected: int = 0
    files: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return " ".join(f"{name}={value}" for name, value in asdict(self).items())

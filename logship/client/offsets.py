"""The offset/time grammar of DESIGN.md, parsed into an `OffsetSpec`.

    beginning | earliest       the first offset still in the log
    end | latest               the log end offset (the next record to be written)
    stored                     the consumer group's committed offset (groups come later)
    N                          the absolute offset N
    -N                         N records before the end (never before the beginning)
    @2026-11-24T10:00:00Z      the first record whose timestamp is at or after that time;
    @2026-11-24T10:00+01:00    ISO 8601 with Z or an offset; seconds and the time are optional
    @2026-11-24                (a time without a zone is local time, as `journalctl --since`)
    @-1h  @-15m  @-30s  @-2d   relative to now; units ms s m h d w, combinable (@-1h30m)
    @1764000000000             epoch milliseconds (digits only)

Times are resolved to epoch milliseconds when parsed, so a relative time means "that long
before the parse". Bad input raises ValueError with an example, which the CLI turns into a
usage error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = ["OffsetSpec", "parse_offset", "parse_time", "BEGINNING", "END", "STORED"]

_KINDS = ("beginning", "end", "stored", "offset", "from_end", "timestamp")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE = re.compile(r"-((?:\d+(?:ms|s|m|h|d|w))+)")
_PIECE = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
_EXAMPLES = "beginning, end, 42, -100, @2026-11-24T10:00:00Z, @-1h or @1764000000000"


@dataclass(frozen=True, slots=True)
class OffsetSpec:
    """Where to start (or stop) reading a partition.

    `kind` is one of beginning, end, stored, offset (value = absolute offset), from_end
    (value = how many records before the end) or timestamp (value = epoch ms).
    """

    kind: str
    value: int = 0

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"unknown offset kind {self.kind!r}")
        if self.value < 0:
            raise ValueError(f"offset spec value must not be negative, not {self.value}")

    @classmethod
    def at_offset(cls, offset: int) -> "OffsetSpec":
        return cls("offset", offset)

    @classmethod
    def at_time(cls, timestamp_ms: int) -> "OffsetSpec":
        return cls("timestamp", timestamp_ms)

    def __str__(self) -> str:
        if self.kind == "offset":
            return str(self.value)
        if self.kind == "from_end":
            return f"-{self.value}"
        if self.kind == "timestamp":
            return f"@{self.value}"
        return self.kind


BEGINNING = OffsetSpec("beginning")
END = OffsetSpec("end")
STORED = OffsetSpec("stored")


def parse_offset(text: str | int | OffsetSpec, now_ms: int | None = None) -> OffsetSpec:
    """Parse one offset or time of the grammar above; an OffsetSpec passes through and an int
    is an absolute offset. `now_ms` anchors relative times (default: the current time)."""
    if isinstance(text, OffsetSpec):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        return OffsetSpec("offset", text) if text >= 0 else OffsetSpec("from_end", -text)
    if not isinstance(text, str):
        raise ValueError(f"an offset must be a string or an int, not {type(text).__name__}")
    spec = text.strip()
    word = spec.lower()
    if word in ("beginning", "earliest", "oldest"):
        return BEGINNING
    if word in ("end", "latest", "newest"):
        return END
    if word == "stored":
        return STORED
    if spec.startswith("@"):
        return OffsetSpec("timestamp", parse_time(spec[1:], now_ms))
    if re.fullmatch(r"\d+", spec):
        return OffsetSpec("offset", int(spec))
    if re.fullmatch(r"-\d+", spec):
        return OffsetSpec("from_end", int(spec[1:]))
    raise ValueError(f"invalid offset {text!r}; use one of {_EXAMPLES}")


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds for the part after '@': ISO 8601, -DURATION or epoch ms."""
    spec = text.strip()
    if not spec:
        raise ValueError("a time is missing after '@'; e.g. @2026-11-24T10:00:00Z or @-1h")
    relative = _RELATIVE.fullmatch(spec)
    if relative:
        delta = sum(int(n) * _UNITS_MS[unit] for n, unit in _PIECE.findall(relative.group(1)))
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return max(now - delta, 0)
    if spec.isdigit():
        return int(spec)
    iso = spec[:-1] + "+00:00" if spec[-1:] in ("Z", "z") else spec
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"invalid time {text!r}; use ISO 8601 (@2026-11-24T10:00:00Z, "
                         f"@2026-11-24T10:00+01:00, @2026-11-24), a duration ago (@-1h, @-15m, "
                         f"@-30s, @-2d) or epoch milliseconds (@1764000000000)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as journalctl --since
    return (moment - _EPOCH) // _MS

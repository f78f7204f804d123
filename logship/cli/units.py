"""click parameter types for sizes, durations and host:port addresses.

Sizes: a number with an optional binary suffix, `512`, `64K`, `100M`, `10G`, `1T` (`KiB`,
`MB` and the like are accepted too; all are powers of 1024). Durations: a number with a
unit, `500ms`, `30s`, `15m`, `6h`, `7d`, `2w`; a bare number is seconds. `-1` means
"unlimited" where the option says so.
"""

from __future__ import annotations

import re

import click

from ..addresses import parse_hostport, parse_metrics_address

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_size(text: str) -> int:
    """Bytes in a size like `100M`; -1 stays -1 (unlimited)."""
    match = re.fullmatch(r"\s*(-1|\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 4096, 64K, 100M, 10G)")
    number, unit = match.groups()
    if number == "-1":
        return -1
    return int(float(number) * _SIZE_UNITS[unit.lower()])


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration like `7d` or `500ms`; a bare number is seconds; -1 stays -1."""
    match = re.fullmatch(r"\s*(-1|\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 30s, 15m, 6h, 7d)")
    number, unit = match.groups()
    if number == "-1":
        return -1
    return int(float(number) * _DURATION_MS[(unit or "s").lower()])


INT32_MAX = 2**31 - 1


class _Parsed(click.ParamType):
    """A type parsed by `parse`, optionally bounded: `SIZE.within(1, INT32_MAX)`; with
    `unlimited`, -1 passes too. Out of range is a usage error naming the option."""

    def __init__(self, name: str, parse, low: int | None = None, high: int | None = None,
                 unlimited: bool = False):
        self.name = name
        self._parse = parse
        self.low, self.high, self.unlimited = low, high, unlimited

    def within(self, low: int | None = None, high: int | None = None, unlimited: bool = False) -> "_Parsed":
        return _Parsed(self.name, self._parse, low, high, unlimited)

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            try:
                value = self._parse(value)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if isinstance(value, int) and not (value == -1 and self.unlimited):
            too_low = self.low is not None and value < self.low
            if too_low or (self.high is not None and value > self.high):
                bounds = f"{'' if self.low is None else self.low}..{'' if self.high is None else self.high}"
                unit = {"size": " bytes", "duration": " ms"}.get(self.name, "")
                extra = " (or -1: unlimited)" if self.unlimited else ""
                self.fail(f"{value}{unit} is not within {bounds}{unit}{extra}", param, ctx)
        return value


SIZE = _Parsed("size", parse_size)
DURATION = _Parsed("duration", parse_duration_ms)
HOSTPORT = _Parsed("host:port", parse_hostport)
METRICS_ADDRESS = _Parsed("host:port", parse_metrics_address)


def size_text(nbytes: int | None) -> str:
    """Bytes for people, in powers of 1024: 512 B, 3.2 MiB; "?" when unknown."""
    if nbytes is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return str(nbytes)

"""click parameter types for sizes, durations and host:port addresses.

Sizes: a number with an optional binary suffix, `512`, `64K`, `100M`, `10G`, `1T` (`KiB`,
`MB` and the like are accepted too; all are powers of 1024). Durations: a number with a
unit, `500ms`, `30s`, `15m`, `6h`, `7d`, `2w`; a bare number is seconds. `-1` means
"unlimited" where the option says so.
"""

from __future__ import annotations

import re

import click

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


def parse_hostport(text: str, default_port: int = 9092) -> tuple[str, int]:
    """(host, port) from `HOST:PORT`, `HOST`, `:PORT` or `[V6]:PORT`."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]*)(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not HOST:PORT")
    host = match.group(1) or match.group(3) or "127.0.0.1"
    port = match.group(2) or match.group(4)
    port_number = int(port) if port else default_port
    if not 0 <= port_number <= 65535:
        raise ValueError(f"port {port_number} is out of range")
    return host, port_number


class _Parsed(click.ParamType):
    def __init__(self, name: str, parse):
        self.name = name
        self._parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _Parsed("size", parse_size)
DURATION = _Parsed("duration", parse_duration_ms)
HOSTPORT = _Parsed("host:port", parse_hostport)

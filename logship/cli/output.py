"""Turning consumed records into output bytes: kcat-style `-f` formats, JSON lines, `--grep`.

Format tokens (as kcat's `-f`): `%v` value (`%s` is an alias), `%k` key, `%t` topic,
`%p` partition, `%o` offset, `%T` timestamp (ms), `%h` headers as `k=v,k2=v2`, `%%` a
percent sign; the escapes `\\n`, `\\t`, `\\r`, `\\0` and `\\\\` are understood. A null key or
value prints as nothing. Output is bytes: values are written exactly as stored. Any other
`%` sequence, and an empty format, is refused (ValueError; `record_sink` makes it a usage
error), as is --json together with a format.
"""

from __future__ import annotations

import json
import re
import select
from collections.abc import Callable, Iterable

import click

from .render import record_as_json

DEFAULT_FORMAT = "%v\\n"
IDLE_CHECK_S = 0.5  # while no records come, how often to check that stdout still has a reader

_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "0": b"\0", "\\": b"\\"}
_TOKEN = re.compile(r"%[vsktpoTh%]|\\[ntr0\\]|%.?", re.DOTALL)
_TOKENS_HELP = "%v (or %s) value, %k key, %t topic, %p partition, %o offset, %T timestamp, %h headers, %% a percent sign"


def _headers(record) -> bytes:
    return b",".join(name.encode() + b"=" + (value or b"") for name, value in record.headers)


_FIELDS: dict[str, Callable[[object], bytes]] = {
    "%v": lambda r: r.value or b"",
    "%s": lambda r: r.value or b"",
    "%k": lambda r: r.key or b"",
    "%t": lambda r: r.topic.encode(),
    "%p": lambda r: b"%d" % r.partition,
    "%o": lambda r: b"%d" % r.offset,
    "%T": lambda r: b"%d" % r.timestamp,
    "%h": _headers,
}


def compile_format(fmt: str) -> Callable[[Iterable], bytes]:
    """A function rendering a list of records into one chunk of bytes, per `fmt`; ValueError
    for an empty format or an unknown `%` token."""
    if not fmt:
        raise ValueError(f"the format is empty; use tokens such as {_TOKENS_HELP}")
    pieces: list[bytes | Callable] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        if match.start() > pos:
            pieces.append(fmt[pos:match.start()].encode())
        token = match.group()
        if token == "%%":
            pieces.append(b"%")
        elif token.startswith("\\"):
            pieces.append(_ESCAPES[token[1]])
        elif token not in _FIELDS:
            raise ValueError(f"unknown token {token!r} in format {fmt!r}; the tokens are {_TOKENS_HELP}")
        else:
            pieces.append(_FIELDS[token])
        pos = match.end()
    if pos < len(fmt):
        pieces.append(fmt[pos:].encode())
    if len(pieces) == 2 and pieces[0] in (_FIELDS["%v"], _FIELDS["%s"]) and isinstance(pieces[1], bytes):
        separator = pieces[1]
        return lambda records: b"".join([(r.value or b"") + separator for r in records])

    def render(records: Iterable) -> bytes:
        return b"".join([b"".join([p if isinstance(p, bytes) else p(r) for p in pieces]) for r in records])

    return render


def render_json(records: Iterable) -> bytes:
    """One compact JSON object per record and line (the format of cli/render.py)."""
    return b"".join([json.dumps(record_as_json(r, r.topic, r.partition), separators=(",", ":"),
                                ensure_ascii=False).encode() + b"\n" for r in records])


def value_filter(pattern: str | None) -> Callable[[list], list]:
    """Keep the records whose value matches `pattern` (a regular expression; bytes-wise)."""
    if pattern is None:
        return lambda records: records
    try:
        regex = re.compile(pattern.encode())
    except re.error as exc:
        raise ValueError(f"--grep {pattern!r}: {exc}") from None
    search = regex.search
    return lambda records: [r for r in records if r.value is not None and search(r.value)]


def record_sink(stream, fmt: str = DEFAULT_FORMAT, as_json: bool = False, grep: str | None = None,
                limit: int | None = None) -> "RecordSink":
    """A RecordSink for a command's options (its format parameter is named `fmt`): a usage
    error (exit status 2) for a bad format or --grep, or for --json with a format."""
    ctx = click.get_current_context(silent=True)
    param = next((p for p in ctx.command.params if p.name == "fmt"), None) if ctx is not None else None
    hint = "/".join(param.opts) if param is not None else "--format"
    given = ctx is not None and param is not None and ctx.get_parameter_source("fmt") not in (
        None, click.core.ParameterSource.DEFAULT)
    if as_json and given:
        raise click.UsageError(f"--json and {hint} cannot be combined: --json writes whole records")
    try:
        compile_format(fmt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    try:
        return RecordSink(stream, fmt, as_json, grep, limit)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grep") from None


class RecordSink:
    """Writes records to a binary stream in one of the output formats, at most `limit` of them.

    `write` takes a list of records and returns False once the limit is reached. The stream
    is flushed after every call, so followers see records as they come.
    """

    def __init__(self, stream, fmt: str = DEFAULT_FORMAT, as_json: bool = False, grep: str | None = None,
                 limit: int | None = None):
        self.stream = stream
        self.render = render_json if as_json else compile_format(fmt)
        self.keep = value_filter(grep)
        self.remaining = limit
        self.written = 0
        self._plain = not as_json and grep is None and fmt in ("%v\\n", "%s\\n")

    def write(self, records: list) -> bool:
        records = self.keep(records)
        if self.remaining is not None:
            records = records[: self.remaining]
            self.remaining -= len(records)
        if records:
            self.stream.write(self.render(records))
            self.stream.flush()
            self.written += len(records)
        return self.remaining is None or self.remaining > 0

    def check_reader(self) -> None:
        """Raise BrokenPipeError if whoever reads the stream has gone (`| head` exited), so an
        idle follower notices without waiting for its next record."""
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
            raise BrokenPipeError("the reader of standard output has gone")

    def render_chunk(self, chunk) -> tuple[bytes, int]:
        """(output, number of records in it) for a client PartitionRecords, with --grep applied
        and the limit not: the default format makes no record objects."""
        values = chunk.values
        if self._plain and None not in values:
            count = len(values)
            values.append(b"")  # the last newline, without copying the joined output again
            output = b"\n".join(values) if count else b""
            values.pop()
            return output, count
        records = self.keep(list(chunk))
        return self.render(records), len(records)

    def write_rendered(self, output: bytes, count: int) -> None:
        """Write what render_chunk() gave (no limit may be set)."""
        if count:
            self.stream.write(output)
            self.stream.flush()
            self.written += count

    def write_chunk(self, chunk) -> bool:
        """Write a client PartitionRecords."""
        if self.remaining is None:
            self.write_rendered(*self.render_chunk(chunk))
            return True
        return self.write(list(chunk))

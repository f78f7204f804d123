"""Rendering records and values for people (text) and for scripts (JSON lines).

JSON form of a record (one compact object per line):

    {"topic": "t", "partition": 0, "offset": 5, "timestamp": 1764000000000,
     "key": "k" | null, "value": <see below>, "headers": [["name", "value"], ...]}

A value (or key, or header value) that is UTF-8 text is a JSON string, except that text
which is itself a compact JSON object or array (it re-serialises to the very same bytes)
is embedded as JSON, so `jq .value.field` works and the bytes still round-trip. Bytes that
are not UTF-8 are base64-encoded and the object gains `"value_encoding": "base64"` (or
`key_encoding`, or a third element "base64" in a header pair).
"""

from __future__ import annotations

import base64
import json

import click

from ..records import Record

_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


def printable(data: bytes | None) -> str:
    """Bytes shown to a person on one line: text as is, other bytes escaped; None as `null`."""
    if data is None:
        return "null"
    return bytes(data).decode("utf-8", errors="backslashreplace")


def _json_text(data: bytes) -> tuple[object, bool]:
    """(JSON value, is_base64) for a byte string."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True
    if text[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text, False
        if json.dumps(parsed, **_COMPACT) == text:
            return parsed, False
    return text, False


def record_as_json(record: Record, topic: str | None = None, partition: int | None = None) -> dict:
    """The JSON-lines object for one record (format in the module docstring)."""
    obj: dict = {}
    if topic is not None:
        obj["topic"] = topic
    if partition is not None:
        obj["partition"] = partition
    obj["offset"] = record.offset
    obj["timestamp"] = record.timestamp
    for name in ("key", "value"):
        data = getattr(record, name)
        if data is None:
            obj[name] = None
            continue
        obj[name], is_b64 = _json_text(data)
        if is_b64:
            obj[f"{name}_encoding"] = "base64"
    headers = []
    for hkey, hvalue in record.headers:
        if hvalue is None:
            headers.append([hkey, None])
            continue
        try:
            headers.append([hkey, bytes(hvalue).decode("utf-8")])
        except UnicodeDecodeError:
            headers.append([hkey, base64.b64encode(hvalue).decode("ascii"), "base64"])
    obj["headers"] = headers
    return obj


def echo_json(obj: object) -> None:
    """Write one compact JSON line to stdout."""
    click.echo(json.dumps(obj, **_COMPACT))


def _from_json_text(value: object, encoding: str | None) -> bytes | None:
    if value is None:
        return None
    if encoding == "base64":
        return base64.b64decode(value, validate=True)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, **_COMPACT).encode("utf-8")


def record_from_json(obj: dict) -> dict:
    """The inverse of `record_as_json`: {key, value, headers, timestamp, partition} as bytes.

    Accepts exactly what `record_as_json` writes (embedded JSON values come back as the same
    compact bytes, base64 fields are decoded); `timestamp` and `partition` are None when absent.
    Raises ValueError for anything else.
    """
    if not isinstance(obj, dict) or "value" not in obj:
        raise ValueError('a JSON record is an object with at least a "value"')
    headers = []
    for entry in obj.get("headers") or []:
        if not isinstance(entry, list) or len(entry) not in (2, 3) or not isinstance(entry[0], str):
            raise ValueError(f"a header is [name, value] or [name, value, \"base64\"], not {entry!r}")
        headers.append((entry[0], _from_json_text(entry[1], entry[2] if len(entry) == 3 else None)))
    timestamp, partition = obj.get("timestamp"), obj.get("partition")
    for name, number in (("timestamp", timestamp), ("partition", partition)):
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise ValueError(f'"{name}" must be an integer, not {number!r}')
    return {"key": _from_json_text(obj.get("key"), obj.get("key_encoding")),
            "value": _from_json_text(obj["value"], obj.get("value_encoding")),
            "headers": tuple(headers), "timestamp": timestamp, "partition": partition}

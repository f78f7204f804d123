"""Per-topic configuration under Apache Kafka's names, and the file that keeps it.

`TOPIC_CONFIGS` maps each topic config logship honours (Kafka's name, e.g. "retention.ms") to
its LogConfig field, its Kafka type, its broker-wide synonym (e.g. "log.retention.ms") and a
line of documentation. A topic's *overrides* are a {name: value string} dict, as Kafka keeps
them; `apply(base, overrides)` gives the LogConfig they make on top of the broker's default,
and raises InvalidConfigError (Kafka's INVALID_CONFIG, 40) naming the key and what it allows,
for an unknown name or a bad value. `normalize` returns overrides with values in canonical form
("compact, delete" -> "compact,delete", "1e3" refused). `value_of(config, name)` is the value
a LogConfig has for a name, as a string (Kafka's Long.MAX_VALUE for "never" flushes).

The overrides of every topic live in one file of the data directory, replaced atomically
(checkpoint.write_atomic: temp file, fsync, rename, fsync the directory):

    <data_dir>/topic-config-overrides     JSON:
    {"version": 0, "topics": {"orders": {"retention.ms": "3600000", "cleanup.policy": "compact"}}}

A topic without overrides has no entry. `read_overrides` returns {} when the file is absent;
a file it cannot read is renamed `topic-config-overrides.unreadable-<unix time>` by the Store
(with an error line), so that the next write does not silently drop what it held.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError, InvalidConfigError
from .checkpoint import write_atomic
from .config import LogConfig

OVERRIDES_FILE = "topic-config-overrides"
FILE_VERSION = 0
LONG_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DOUBLE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: Longest number text parsed: a long has 19 digits; longer text is refused before int() or
#: float() (Python's int() refuses over 4300 digits with a ValueError, and would cost time).
MAX_NUMBER_CHARS = 32


@dataclass(frozen=True)
class ConfigDef:
    """One topic config: Kafka's `name`, the LogConfig `field`, Kafka's `type` (long, int,
    double, string, list), the values allowed (`choices` for strings and lists, `low`/`high`
    for numbers), the broker config it defaults to (`broker_name`) and `doc`."""

    name: str
    field: str
    type: str
    broker_name: str
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    never: bool = False  # Long.MAX_VALUE means None ("never"), as for flush.messages

    def allowed(self) -> str:
        """What this config accepts, for error messages."""
        if self.choices:
            what = ", ".join(self.choices)
            return f"a comma-separated list of {what}" if self.type == "list" else f"one of {what}"
        kind = {"long": "an integer", "int": "an integer", "double": "a number"}[self.type]
        if self.low is not None and self.high is not None:
            return f"{kind} in {_num(self.low)}..{_num(self.high)}"
        if self.low is not None:
            return f"{kind} >= {_num(self.low)}"
        return kind


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in (
    ConfigDef("cleanup.policy", "cleanup_policy", "list", "log.cleanup.policy",
              "delete: drop segments past retention; compact: keep the latest record per key.",
              choices=("delete", "compact")),
    ConfigDef("delete.retention.ms", "delete_retention_ms", "long", "log.cleaner.delete.retention.ms",
              "How long compaction keeps a tombstone (a record with a null value).", low=0, high=LONG_MAX),
    ConfigDef("flush.messages", "flush_messages", "long", "log.flush.interval.messages",
              "fdatasync after this many records (9223372036854775807: leave it to the OS).",
              low=1, high=LONG_MAX, never=True),
    ConfigDef("flush.ms", "flush_ms", "long", "log.flush.interval.ms",
              "fdatasync when the last sync is older than this (0: every append; 9223372036854775807: never).",
              low=0, high=LONG_MAX, never=True),
    ConfigDef("index.interval.bytes", "index_interval_bytes", "int", "log.index.interval.bytes",
              "Bytes of batches between two entries of the sparse offset index.", low=0, high=INT_MAX),
    ConfigDef("max.message.bytes", "max_batch_bytes", "int", "message.max.bytes",
              "Largest record batch a producer may append.", low=0, high=INT_MAX),
    ConfigDef("message.timestamp.type", "message_timestamp_type", "string", "log.message.timestamp.type",
              "CreateTime: keep the producer's timestamps; LogAppendTime: stamp batches with the append time.",
              choices=("CreateTime", "LogAppendTime")),
    ConfigDef("min.cleanable.dirty.ratio", "min_cleanable_dirty_ratio", "double", "log.cleaner.min.cleanable.ratio",
              "Compact once this share of the sealed bytes is not yet compacted.", low=0, high=1),
    ConfigDef("retention.bytes", "retention_bytes", "long", "log.retention.bytes",
              "Per partition, delete the oldest segments beyond this size (negative, e.g. -1: no limit).",
              low=-LONG_MAX - 1, high=LONG_MAX),
    ConfigDef("retention.ms", "retention_ms", "long", "log.retention.ms",
              "Delete segments whose newest record is older than this (-1: keep forever).", low=-1, high=LONG_MAX),
    ConfigDef("segment.bytes", "segment_bytes", "int", "log.segment.bytes",
              "Roll to a new segment at this size.", low=14, high=INT_MAX),
    ConfigDef("segment.index.bytes", "max_index_bytes", "int", "log.index.size.max.bytes",
              "Largest offset or time index file; the segment rolls instead.", low=4, high=INT_MAX),
    ConfigDef("segment.ms", "segment_ms", "long", "log.roll.ms",
              "Roll the active segment when its first append is older than this.", low=1, high=LONG_MAX),
)}


def config_def(name: str) -> ConfigDef:
    """The definition of topic config `name`; InvalidConfigError if logship has none."""
    found = TOPIC_CONFIGS.get(name)
    if found is None:
        raise InvalidConfigError(f"unknown topic config {name!r}; known: {', '.join(sorted(TOPIC_CONFIGS))}")
    return found


def parse_value(name: str, text) -> object:
    """The LogConfig value of `name` = `text`; InvalidConfigError naming the key otherwise."""
    d = config_def(name)
    if text is None:
        raise InvalidConfigError(f"{name} needs a value: {d.allowed()}")
    text = str(text).strip()
    shown = text if len(text) <= 64 else f"{text[:40]}... ({len(text)} characters)"
    bad = InvalidConfigError(f"invalid value {shown!r} for {name}: expected {d.allowed()}")
    if d.type == "list":
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items or any(item not in d.choices for item in items):
            raise bad
        return ",".join(sorted(set(items)))
    if d.type == "string":
        if text not in d.choices:
            raise bad
        return text
    if len(text) > MAX_NUMBER_CHARS or not (_DOUBLE if d.type == "double" else _INTEGER).fullmatch(text):
        raise bad
    try:
        value = float(text) if d.type == "double" else int(text, 10)
    except (ValueError, OverflowError):
        raise bad from None
    if (d.low is not None and value < d.low) or (d.high is not None and value > d.high):
        raise bad
    if d.never and value == LONG_MAX:
        return None
    return value


def format_value(name: str, value) -> str:
    """A LogConfig value of `name` as Kafka writes it."""
    d = TOPIC_CONFIGS[name]
    if value is None and d.never:
        return str(LONG_MAX)
    if d.type == "double":
        return repr(float(value))
    return str(value)


def value_of(config: LogConfig, name: str) -> str:
    return format_value(name, getattr(config, TOPIC_CONFIGS[name].field))


def normalize(overrides: dict[str, str]) -> dict[str, str]:
    """`overrides` checked one by one, values in canonical form (InvalidConfigError)."""
    return {name: format_value(name, parse_value(name, value)) for name, value in overrides.items()}


def apply(base: LogConfig, overrides: dict[str, str]) -> LogConfig:
    """`base` with `overrides` applied; InvalidConfigError for a bad name, value or mix."""
    fields = {TOPIC_CONFIGS[name].field if name in TOPIC_CONFIGS else name: parse_value(name, value)
              for name, value in overrides.items()}
    try:
        return replace(base, **fields)
    except ConfigError as exc:
        raise InvalidConfigError(f"invalid topic config: {exc}") from None


# ------------------------------------------------------------------ the file

def read_overrides(data_dir: str | os.PathLike) -> dict[str, dict[str, str]]:
    """{topic: overrides} from the data directory; {} when there are none.

    Raises ValueError when the file is not what this module writes."""
    path = Path(data_dir) / OVERRIDES_FILE
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION or not isinstance(doc.get("topics"), dict):
        raise ValueError(f"{path}: expected version {FILE_VERSION} and a topics object")
    topics = {}
    for topic, overrides in doc["topics"].items():
        if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
            raise ValueError(f"{path}: the overrides of {topic!r} are not name -> string")
        topics[topic] = dict(overrides)
    return topics


def write_overrides(data_dir: str | os.PathLike, topics: dict[str, dict[str, str]]) -> None:
    """Replace the file atomically with `topics` (topics without overrides left out)."""
    doc = {"version": FILE_VERSION,
           "topics": {topic: dict(sorted(o.items())) for topic, o in sorted(topics.items()) if o}}
    write_atomic(Path(data_dir) / OVERRIDES_FILE, json.dumps(doc, indent=1) + "\n")

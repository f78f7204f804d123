"""The agent's configuration: a TOML file (read with the standard library's tomllib) or the
quick form of the command line, both turned into one `AgentConfig`.

    state_dir = "/var/lib/logship/agent"      # default $XDG_STATE_HOME/logship/agent
    brokers = "10.0.0.5:9092"                 # default $LOGSHIP_BROKERS, else 127.0.0.1:9092

    [[inputs]]
    paths = ["/var/log/nginx/*.log"]          # globs; ** matches directories recursively
    exclude = ["*.gz"]                        # fnmatch patterns on the full path
    topic = "nginx"
    key = "{host}"                            # key template: {host} {path} {filename} {<field>}
    fields = { service = "nginx" }            # extra headers on every record
    start_position = "beginning"              # or "end": files found at the very first start
    max_line_bytes = "512K"                   # of the shipped (UTF-8) line
    partial_line_timeout = "5s"
    multiline = { start_pattern = '^\\d{4}-', timeout = "2s", max_lines = 500 }
    encoding = "utf-8"                        # or "utf-16le", "utf-16be", "utf-16" (BOM decides)
    line_terminator = "auto"                  # "\\n" or "\\r\\n" end a line; "lf": only "\\n" ends one

Input encodings: "utf-8" (the default) ships the bytes exactly as read, not validated
(anything ASCII-compatible works); "utf-16le", "utf-16be" and "utf-16" (byte-order mark
FF FE little-endian, FE FF big-endian, none little-endian) are decoded and shipped as
UTF-8, malformed data as U+FFFD; the mark itself is never shipped. Offsets (checkpoints,
the `offset` header) are always byte offsets in the file as stored. `max_line_bytes`
counts the bytes shipped (UTF-8), whatever the file's encoding. See lines.py.

Top-level options and their defaults (every one optional):

    host = <hostname>            the `host` header
    compression = "zstd"         none, gzip, snappy, lz4, zstd
    scan_interval = "1s"         rescan the globs (watchdog events trigger one sooner)
    poll_interval = "250ms"      look at idle files (fstat) at least this often
    watch = true                 use watchdog as a cue (false: scans and polls only)
    read_bytes = "256K"          read at most this much of one file per turn
    batch_bytes = 1047552        records section of a batch (under Kafka's 1 MiB default)
    linger = "100ms"             send a batch that is not full after this long
    max_in_flight = 4            Produce requests awaiting an answer per connection (at most 5)
    idempotence = true           a producer id and sequences: the broker stores a retry once, and
                                 a journal of batches in flight: each line once across kill -9
    metrics = ""                 [HOST:]PORT to serve Prometheus metrics at /metrics (off when empty)
    queue_bytes = "16M"          stop reading while this much awaits acknowledgement
    request_timeout = "30s"      a Produce not answered by then: the connection is dropped
    retry_backoff_max = "2s"     retry backoff doubles from 100 ms up to this
    checkpoint_interval = "1s"   write checkpoints at most this often (0: after every ack)
    shutdown_timeout = "10s"     on SIGTERM, wait this long for acknowledgements
    close_renamed_after = "30s"  let go of a file no glob matches once idle this long
    close_removed_after = "5m"   let go of a deleted file after this even if unread
    close_inactive = "5m"        close a file read to its end and idle this long (it is
                                 reopened when a scan sees its size change): bounds the
                                 open descriptors when many files sit idle
    copytruncate_wait = "5s"     how long a truncated file's old content waits for its copy
    forget_after = "1h"          drop the checkpoint of a file not seen for this long

Memory is bounded by about queue_bytes + read_bytes (plus the headers of the records
built from one read) + one open batch per partition: the agent does not read while the
broker is behind, so the files are the buffer.

Every key is checked: a misspelt option is an error (ConfigError), never silently ignored.
Durations are seconds (a number) or a string with a unit ("250ms", "5s", "2m", "1h");
sizes are bytes or a string with a binary suffix ("64K", "1M").
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..client import default_brokers, parse_brokers
from ..compression import CODEC_NAMES, codec_by_name
from ..errors import ConfigError, InvalidTopicError
from ..addresses import parse_metrics_address
from ..topic_names import validate_topic_name
from .lines import ENCODINGS, LINE_TERMINATORS

__all__ = ["AgentConfig", "InputConfig", "MultilineConfig", "load_config", "default_state_dir",
           "parse_duration", "parse_size", "KEY_VARIABLES"]

#: Variables every key template may use besides the input's own fields.
KEY_VARIABLES = ("host", "path", "filename")

#: The largest records section the agent builds: under Kafka's default message.max.bytes
#: (1 MiB + 12), which also bounds a compressed batch of incompressible lines.
MAX_BATCH_BYTES = (1 << 20) - 1024


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/logship/agent, i.e. ~/.local/state/logship/agent by default."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "logship" / "agent"


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)
_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_duration(value, name: str = "duration") -> float:
    """Seconds from a number (seconds) or a string such as "250ms", "5s", "2m"."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a duration such as 5 or \"250ms\", not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{name}: a duration cannot be negative ({value})")
        return float(value)
    match = _DURATION.fullmatch(str(value))
    if not match:
        raise ConfigError(f"{name}: {value!r} is not a duration (examples: 250ms, 5s, 2m, 1h)")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def parse_size(value, name: str = "size") -> int:
    """Bytes from an int or a string such as "512K", "1M"."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a size such as 65536 or \"64K\", not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{name}: a size cannot be negative ({value})")
        return value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ConfigError(f"{name}: {value!r} is not a size (examples: 4096, 64K, 1M)")
    return int(float(match.group(1)) * _BYTES[match.group(2).lower()])


@dataclass(frozen=True)
class MultilineConfig:
    """Join lines into events: a line matching `start_pattern` (at its start) begins an
    event; other lines are appended to the current one, joined by "\\n". An event ends at
    the next start line, after `timeout` seconds without a new line, or at `max_lines`."""

    start_pattern: str
    timeout: float = 2.0
    max_lines: int = 500

    def compile(self) -> re.Pattern:
        return re.compile(self.start_pattern.encode("utf-8"))


@dataclass(frozen=True)
class InputConfig:
    """One set of files shipped to one topic with the same options."""

    paths: tuple[str, ...]
    topic: str
    exclude: tuple[str, ...] = ()
    key: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    start_position: str = "beginning"
    max_line_bytes: int = 512 * 1024
    partial_line_timeout: float = 5.0
    multiline: MultilineConfig | None = None
    encoding: str = "utf-8"
    line_terminator: str = "auto"

    def render_key(self, host: str, path: str) -> bytes | None:
        """The record key of every line of the file at `path` (None without a template)."""
        if not self.key:
            return None
        values = dict(self.fields)
        values.update(host=host, path=path, filename=os.path.basename(path))
        return self.key.format_map(values).encode("utf-8")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs; build it with load_config() or AgentConfig(inputs=...)."""

    inputs: tuple[InputConfig, ...]
    state_dir: Path = field(default_factory=default_state_dir)
    brokers: str = ""
    host: str = field(default_factory=socket.gethostname)
    compression: str = "zstd"
    # discovery and tailing
    scan_interval: float = 1.0
    poll_interval: float = 0.25
    read_bytes: int = 256 * 1024
    close_renamed_after: float = 30.0
    close_removed_after: float = 300.0
    close_inactive: float = 300.0
    copytruncate_wait: float = 5.0
    forget_after: float = 3600.0
    watch: bool = True
    # shipping
    batch_bytes: int = MAX_BATCH_BYTES
    linger: float = 0.1
    max_in_flight: int = 4
    idempotence: bool = True
    metrics: str = ""  # [HOST:]PORT of the Prometheus endpoint (agent/metrics.py), "" for none
    queue_bytes: int = 16 << 20
    request_timeout: float = 30.0
    retry_backoff_max: float = 2.0
    checkpoint_interval: float = 1.0
    shutdown_timeout: float = 10.0

    def __post_init__(self):
        if not self.inputs:
            raise ConfigError("no inputs: give at least one [[inputs]] table with paths and a topic")
        object.__setattr__(self, "brokers", default_brokers(self.brokers))
        try:
            parse_brokers(self.brokers)
        except ValueError as exc:
            raise ConfigError(f"brokers: {exc}") from None
        try:
            codec_by_name(self.compression)
        except ValueError as exc:
            raise ConfigError(f"compression: {exc}") from None
        if not 1024 <= self.batch_bytes <= MAX_BATCH_BYTES:
            raise ConfigError(f"batch_bytes must be between 1K and {MAX_BATCH_BYTES} bytes")
        if self.read_bytes < 4096:
            raise ConfigError("read_bytes must be at least 4K")
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        if self.metrics:
            try:
                parse_metrics_address(self.metrics)
            except ValueError as exc:
                raise ConfigError(f"metrics: {exc}") from None
        if self.queue_bytes < self.batch_bytes:
            raise ConfigError("queue_bytes must be at least batch_bytes")
        for inp in self.inputs:
            if inp.max_line_bytes > self.batch_bytes - 4096:
                raise ConfigError(f"max_line_bytes ({inp.max_line_bytes}) must leave room for headers "
                                  f"in a batch (batch_bytes - 4K = {self.batch_bytes - 4096})")


_AGENT_KEYS = {f.name for f in fields(AgentConfig)} - {"inputs"}
_DURATIONS = {"scan_interval", "poll_interval", "close_renamed_after", "close_removed_after", "close_inactive",
              "copytruncate_wait", "forget_after", "linger", "request_timeout", "retry_backoff_max",
              "checkpoint_interval", "shutdown_timeout", "partial_line_timeout", "timeout"}
_SIZES = {"read_bytes", "batch_bytes", "queue_bytes", "max_line_bytes"}
_INPUT_KEYS = {f.name for f in fields(InputConfig)}


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}; valid options: {', '.join(sorted(allowed))}")


def _strings(value, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name}: expected a string or a list of strings")
    return tuple(value)


def _convert(key: str, value, where: str):
    name = f"{where}.{key}"
    if key in _DURATIONS:
        return parse_duration(value, name)
    if key in _SIZES:
        return parse_size(value, name)
    return value


def make_input(table: dict, where: str = "inputs") -> InputConfig:
    """An InputConfig from one [[inputs]] table (or the quick form's options), validated."""
    _check_keys(table, _INPUT_KEYS, where)
    if "paths" not in table:
        raise ConfigError(f"{where}: paths is required (a glob or a list of globs)")
    if not isinstance(table.get("topic"), str) or not table["topic"]:
        raise ConfigError(f"{where}: topic is required (a string)")
    try:
        validate_topic_name(table["topic"])  # a name the broker refuses would be retried for ever
    except InvalidTopicError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    kwargs = {key: _convert(key, value, where) for key, value in table.items()}
    kwargs["paths"] = tuple(os.path.expanduser(p) for p in _strings(table["paths"], f"{where}.paths"))
    kwargs["exclude"] = _strings(table.get("exclude", []), f"{where}.exclude") if table.get("exclude") else ()
    raw_fields = table.get("fields", {})
    if isinstance(raw_fields, (list, tuple)):
        raw_fields = dict(raw_fields)
    if not isinstance(raw_fields, dict) or not all(isinstance(v, (str, int, float, bool)) for v in raw_fields.values()):
        raise ConfigError(f"{where}.fields: expected a table of names to strings")
    for name in raw_fields:
        if name in ("host", "path", "offset", "truncated"):
            raise ConfigError(f"{where}.fields: {name!r} is a header the agent sets itself")
    kwargs["fields"] = tuple((str(k), str(v)) for k, v in raw_fields.items())
    if kwargs.get("start_position", "beginning") not in ("beginning", "end"):
        raise ConfigError(f"{where}.start_position: expected \"beginning\" or \"end\", "
                          f"not {kwargs['start_position']!r}")
    if "encoding" in table:
        kwargs["encoding"] = _encoding(table["encoding"], f"{where}.encoding")
    if "line_terminator" in table:
        kwargs["line_terminator"] = _line_terminator(table["line_terminator"], f"{where}.line_terminator")
    if "multiline" in table:
        kwargs["multiline"] = _multiline(table["multiline"], f"{where}.multiline")
    if not isinstance(kwargs.get("key", ""), str):
        raise ConfigError(f"{where}.key: expected a template string such as \"{{host}}\"")
    inp = InputConfig(**kwargs)
    if inp.max_line_bytes < 16:
        raise ConfigError(f"{where}.max_line_bytes must be at least 16 bytes")
    try:  # a template naming an unknown variable fails now, not at the first line
        inp.render_key("host", "/dir/file.log")
    except (KeyError, IndexError, ValueError) as exc:
        variables = ", ".join("{%s}" % v for v in KEY_VARIABLES + tuple(k for k, _ in inp.fields))
        raise ConfigError(f"{where}.key: {inp.key!r} is not a valid template ({exc}); "
                          f"variables: {variables}") from None
    return inp


# Other spellings of the encodings: any case, "_" for "-", the "-" left out, Filebeat's
# "plain" (bytes as they are) and "-bom" names (the byte-order mark is skipped anyway).
_ENCODING_NAMES = {name.replace("-", ""): name for name in ENCODINGS}
_ENCODING_NAMES.update({"plain": "utf-8", "utf16bom": "utf-16", "utf16lebom": "utf-16le", "utf16bebom": "utf-16be"})
_TERMINATOR_NAMES = {"auto": "auto", "lf": "lf", "line_feed": "lf"}  # line_feed: Filebeat's name for lf


def _encoding(value, where: str) -> str:
    if isinstance(value, str):
        name = _ENCODING_NAMES.get(value.strip().lower().replace("_", "").replace("-", ""))
        if name is not None:
            return name
    raise ConfigError(f"{where}: {value!r} is not a supported encoding; expected one of {', '.join(ENCODINGS)} "
                      f"(\"utf-16\": the byte-order mark decides, little-endian without one)")


def _line_terminator(value, where: str) -> str:
    if isinstance(value, str):
        name = _TERMINATOR_NAMES.get(value.strip().lower())
        if name is not None:
            return name
    raise ConfigError(f"{where}: expected \"auto\" (a line ends at \"\\n\" or \"\\r\\n\", the \"\\r\" "
                      f"stripped) or \"lf\" (only \"\\n\" ends a line, a \"\\r\" before it is kept), "
                      f"not {value!r}")


def _multiline(table, where: str) -> MultilineConfig | None:
    if table is None or table == {}:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table such as {{ start_pattern = '^\\\\d{{4}}-' }}")
    _check_keys(table, {"start_pattern", "timeout", "max_lines"}, where)
    if not isinstance(table.get("start_pattern"), str) or not table["start_pattern"]:
        raise ConfigError(f"{where}.start_pattern is required (a regular expression)")
    kwargs = {key: _convert(key, value, where) for key, value in table.items()}
    config = MultilineConfig(**kwargs)
    if not isinstance(config.max_lines, int) or config.max_lines < 1:
        raise ConfigError(f"{where}.max_lines must be a positive integer")
    try:
        config.compile()
    except re.error as exc:
        raise ConfigError(f"{where}.start_pattern: {exc}") from None
    return config


def config_from_dict(data: dict, where: str = "config", **overrides) -> AgentConfig:
    """An AgentConfig from a parsed TOML document; `overrides` (not None) win over it."""
    data = dict(data)
    inputs = data.pop("inputs", None)
    _check_keys(data, _AGENT_KEYS, where)
    if not isinstance(inputs, list) or not inputs:
        raise ConfigError(f"{where}: no inputs; add at least one [[inputs]] table with paths and topic")
    kwargs = {key: _convert(key, value, where) for key, value in data.items()}
    for key, value in overrides.items():
        if value is not None:
            kwargs[key] = value
    if "state_dir" in kwargs:
        kwargs["state_dir"] = Path(os.path.expanduser(str(kwargs["state_dir"])))
    if isinstance(kwargs.get("brokers"), list):
        kwargs["brokers"] = ",".join(kwargs["brokers"])
    if "compression" in kwargs and kwargs["compression"] not in CODEC_NAMES.values():
        raise ConfigError(f"{where}.compression: expected one of {', '.join(CODEC_NAMES.values())}")
    for key in ("max_in_flight",):
        if key in kwargs and (not isinstance(kwargs[key], int) or isinstance(kwargs[key], bool)):
            raise ConfigError(f"{where}.{key}: expected an integer")
    for key in ("watch", "idempotence"):
        if key in kwargs and not isinstance(kwargs[key], bool):
            raise ConfigError(f"{where}.{key}: expected true or false")
    built = tuple(make_input(table, f"inputs[{i}]") if isinstance(table, dict) else
                  _not_a_table(i) for i, table in enumerate(inputs))
    try:
        return AgentConfig(inputs=built, **kwargs)
    except TypeError as exc:  # a value of the wrong type that slipped through
        raise ConfigError(f"{where}: {exc}") from None


def _not_a_table(index: int):
    raise ConfigError(f"inputs[{index}]: expected a table ([[inputs]])")


def load_config(path: str | os.PathLike, **overrides) -> AgentConfig:
    """Read and validate a TOML config file; ConfigError says what is wrong and where."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, str(path), **overrides)

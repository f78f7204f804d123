"""Logging for the long-running commands (`serve`, `agent`): --log-level and --log-format.

`text` (the default) writes `TIME LEVEL LOGGER: MESSAGE` lines on stderr. `json` writes one
JSON object per line, for log shippers (logship's own agent, Filebeat, Vector):

    {"time": "2026-12-05T17:40:01.123+00:00", "level": "warning", "logger": "logship.broker",
     "message": "...", "error": "Traceback ..."}

`time` is ISO 8601 in UTC with milliseconds; `error` is there only when the event carries an
exception. Each object is one line whatever the message holds (json escapes newlines).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import click

__all__ = ["log_options", "configure_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def log_options(command):
    """--log-level and --log-format (passed as `log_level` and `log_format`)."""
    command = click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                           help="Log lines as text, or as one JSON object each (time, level, logger, "
                                "message).")(command)
    return click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
                        show_default=True, help="Least severe event to log on stderr.")(command)

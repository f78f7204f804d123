"""`--log-format json` (issue #15): one JSON object per log line, from a real `logship serve`,
and the formatter's shape for events that carry an exception."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from conftest import wait_until
from local_cluster import run_logship
from logship.cli.log_setup import JsonFormatter


@pytest.mark.integration
def test_serve_writes_one_json_object_per_line(start_broker):
    broker = start_broker("--log-format", "json")
    assert run_logship("produce", "-b", broker.address, "made-on-first-use", input="x\n").returncode == 0
    wait_until(lambda: "made-on-first-use" in broker.log(), timeout=10)
    broker.stop()
    lines = [line for line in broker.log().splitlines() if not line.startswith("logship: listening on")]
    assert lines
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    created = [e for e in entries if "created topic made-on-first-use" in e["message"]]
    assert created and created[0]["level"] == "info" and created[0]["logger"] == "logship.broker"
    assert created[0]["time"].endswith("+00:00") and "T" in created[0]["time"]


def test_an_exception_stays_on_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("logship.broker", logging.ERROR, __file__, 1, "failed: %s", ("x",),
                                   exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed: x" and entry["level"] == "error"
    assert "ValueError: bad\nthing" in entry["error"]

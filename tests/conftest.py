"""Shared fixtures: real `logship serve` subprocesses on loopback, port 0."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from logship.broker_process import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent
__all__ = ["BrokerProcess", "ROOT", "wait_until"]

# A run started in the background by a script (`.ci/run &`) inherits SIGINT ignored, and so would
# every command a test starts: the Ctrl-C tests need it delivered (exec resets a handler, not SIG_IGN).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def start_broker(tmp_path):
    """Factory: start_broker(*args, data_dir=None) -> a started BrokerProcess; all stopped at the end."""
    started: list[BrokerProcess] = []

    def start(*args: str, data_dir: Path | None = None, env: dict | None = None) -> BrokerProcess:
        broker = BrokerProcess(data_dir or tmp_path / "data", *args, env=env).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(start_broker):
    """One running broker with default settings."""
    return start_broker()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll `predicate` until it returns a true value or `timeout` passes; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)

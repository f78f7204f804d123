"""Shared fixtures: real `logship serve` subprocesses on loopback, port 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class BrokerProcess:
    """A `python -m logship serve` subprocess; `address` is HOST:PORT once it listens."""

    def __init__(self, data_dir: Path, *args: str, env: dict | None = None):
        self.data_dir = data_dir
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.address = ""
        self.stderr_lines: list[str] = []

    def start(self, timeout: float = 20.0) -> "BrokerProcess":
        cmd = [sys.executable, "-m", "logship", "serve", "--data-dir", str(self.data_dir),
               "--listen", "127.0.0.1:0", *self.args]
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(self.env or {}))
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                if line.startswith("logship: listening on "):
                    self.address = line.split()[-1]
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or not self.address:
            self.kill()
            raise RuntimeError("broker did not start:\n" + "".join(self.stderr_lines))
        return self

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL if it is still there. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return "".join(self.stderr_lines)


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

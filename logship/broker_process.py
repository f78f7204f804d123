"""A `logship serve` child process on a free loopback port, for `logship bench`, the bench/
scripts and the test suite.

The child is `python -m logship serve --listen 127.0.0.1:0 --data-dir DIR [ARGS]`, run by
this interpreter with this logship importable (its parent directory goes first on
PYTHONPATH), and `address` is HOST:PORT once it has printed its "listening on" line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import logship

__all__ = ["BrokerProcess", "child_env"]

_LISTENING = "logship: listening on "


def child_env(extra: dict | None = None) -> dict:
    """The environment for a child `python -m logship`: this one, with this logship first
    on PYTHONPATH (so a source checkout runs itself, not an installed copy)."""
    root = str(Path(logship.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""), **(extra or {}))


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
        """Start it and wait until it listens; RuntimeError with its output if it does not."""
        cmd = [sys.executable, "-m", "logship", "serve", "--data-dir", str(self.data_dir),
               "--listen", "127.0.0.1:0", *self.args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=child_env(self.env), text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                if line.startswith(_LISTENING):
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

    def __enter__(self) -> "BrokerProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

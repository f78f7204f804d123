"""A logship cluster on loopback for tests: a cluster file naming N brokers on 127.0.0.1,
each with its own data directory and a fixed free port, and the shared secret beside it.

    cluster = LocalCluster(tmp_path, 3)            # writes cluster.toml and its .secret
    brokers = cluster.start_all()                  # BrokerProcess per id, all listening
    cluster.stop_all()

No SSH here: the brokers are started directly (`serve --cluster FILE --broker-id N`), as
`logship cluster up` starts them on real hosts. `started(root)` is the same as a context
manager (what the cluster tests' fixtures use); `run_logship(...)` runs the CLI under test.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from logship.broker_process import BrokerProcess, child_env


def run_logship(*args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """`logship ARGS` as a user runs it, with the logship under test (`input` on its stdin)."""
    return subprocess.run([sys.executable, "-m", "logship", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), input=input)


@contextlib.contextmanager
def started(root: Path, size: int = 3, no_tracebacks: bool = False) -> Iterator["LocalCluster"]:
    """A LocalCluster of `size` brokers, all listening; afterwards every broker is stopped (one a
    test left SIGSTOPped is resumed first, so SIGTERM ends it) and, with `no_tracebacks`, their
    logs are checked for none."""
    cluster = LocalCluster(root, size)
    try:
        cluster.start_all()
        yield cluster
    finally:
        for process in cluster.brokers.values():
            if process.proc is not None and process.proc.poll() is None:
                process.proc.send_signal(signal.SIGCONT)
        cluster.stop_all()
    if no_tracebacks:
        for broker_id, process in cluster.brokers.items():
            assert "Traceback" not in process.log(), f"broker {broker_id}:\n{process.log()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalCluster:
    def __init__(self, root: Path, size: int = 3, replication_factor: int | None = None, first_id: int = 1,
                 extra: str = ""):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ids = list(range(first_id, first_id + size))
        self.ports = {broker_id: free_port() for broker_id in self.ids}
        self.path = self.root / "cluster.toml"
        self.secret = secrets.token_urlsafe(32).encode()
        rf = replication_factor or min(3, size)
        lines = ["[cluster]", 'name = "test"', f"replication_factor = {rf}", extra, ""]
        for broker_id in self.ids:
            lines += ["[[broker]]", f"id = {broker_id}", 'ssh = "127.0.0.1"',
                      f'listen = "127.0.0.1:{self.ports[broker_id]}"',
                      f'data_dir = "{self.data_dir(broker_id)}"', ""]
        self.path.write_text("\n".join(lines))
        secret_file = self.root / "cluster.toml.secret"
        secret_file.write_bytes(self.secret)
        secret_file.chmod(0o600)
        self.brokers: dict[int, BrokerProcess] = {}

    def data_dir(self, broker_id: int) -> Path:
        return self.root / f"broker-{broker_id}"

    def address(self, broker_id: int) -> str:
        return f"127.0.0.1:{self.ports[broker_id]}"

    @property
    def bootstrap(self) -> str:
        return ",".join(self.address(broker_id) for broker_id in self.ids)

    def start(self, broker_id: int, *args: str, timeout: float = 30.0) -> BrokerProcess:
        process = BrokerProcess(self.data_dir(broker_id), "--cluster", str(self.path), "--broker-id",
                                str(broker_id), "--listen", self.address(broker_id), *args)
        self.brokers[broker_id] = process.start(timeout)
        return process

    def start_all(self, *args: str) -> dict[int, BrokerProcess]:
        for broker_id in self.ids:
            self.start(broker_id, *args)
        return self.brokers

    def stop_all(self) -> None:
        for process in self.brokers.values():
            process.stop()

"""`logship top` (issue #15): in a real terminal (tmux) against a broker under load, and against
librdkafka's mock cluster (not logship); without a terminal, one snapshot as JSON.

The load is bounded: a producer thread sending at most 400,000 records for at most 60 s, ended
by the test. A group that consumed 1,000 records and stopped gives a known lag.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid

import pytest

import kafka_clients
from conftest import wait_until
from local_cluster import run_logship
from logship.broker_process import child_env
from logship.client import Producer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=10).stdout


class TopInTmux:
    """`logship top ARGS` in a detached tmux session of 160x40; its exit status lands in a file."""

    def __init__(self, tmp_path, *args: str):
        if subprocess.run(["which", "tmux"], capture_output=True).returncode:
            pytest.skip("tmux is not installed")
        self.name = f"top-{uuid.uuid4().hex[:8]}"
        self.status = tmp_path / f"{self.name}.status"
        env = child_env({"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
        exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in ("PYTHONPATH", "TERM", "LANG", "LC_ALL"))
        command = (f"env {exports} {shlex.quote(sys.executable)} -m logship top {' '.join(map(shlex.quote, args))}; "
                   f"echo $? > {shlex.quote(str(self.status))}")
        _tmux("new-session", "-d", "-s", self.name, "-x", "160", "-y", "40", command)

    def screen(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        _tmux("send-keys", "-t", self.name, *keys)

    def exit_status(self, timeout: float = 15) -> int:
        wait_until(lambda: self.status.exists() and self.status.read_text().strip(), timeout=timeout)
        return int(self.status.read_text())

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _row(screen: str, first: str) -> list[str] | None:
    for line in screen.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells
    return None


def _rate_in(screen: str, topic: str) -> float:
    cells = _row(screen, topic)
    return float(cells[2].replace(",", "")) if cells and len(cells) > 2 and re.fullmatch(r"[\d,]+", cells[2]) else 0.0


@pytest.fixture
def loaded_broker(start_broker):
    """A broker with topic `web`, a group `idx` 1,000 records in, and a producer feeding `web`."""
    broker = start_broker()
    assert run_logship("produce", "-b", broker.address, "web", input="".join(f"{i}\n" for i in range(5000))).returncode == 0
    assert run_logship("consume", "web", "-b", broker.address, "-g", "idx", "-c", "1000").returncode == 0
    stop = threading.Event()

    def feed():
        with Producer(broker.address, acks=1, linger_ms=5) as producer:
            deadline = time.monotonic() + 60
            for i in range(400_000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                producer.send("web", b"line %d" % i)
                if i % 1000 == 999:
                    time.sleep(0.05)  # ~20,000 records/s at most: a steady rate, not a flood

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield broker
    stop.set()
    feeder.join(30)


def test_top_in_a_terminal_shows_rates_and_lag_and_quits_on_q(loaded_broker, tmp_path):
    top = TopInTmux(tmp_path, "-b", loaded_broker.address)
    try:
        wait_until(lambda: _rate_in(top.screen(), "web") > 0, timeout=30)
        screen = top.screen()
        assert "logship top" in screen and "in rec/s" in screen and "t/p/g views" in screen
        top.keys("g")
        wait_until(lambda: _row(top.screen(), "idx") is not None, timeout=15)
        group = _row(top.screen(), "idx")
        assert group[1] == "Empty" and int(group[4]) >= 4000, group  # lag: everything after its 1,000
        top.keys("p")
        wait_until(lambda: "partition" in top.screen() and "leader" in top.screen(), timeout=15)
        top.keys("q")
        assert top.exit_status() == 0
    finally:
        top.close()


def test_top_against_librdkafka_mock_shows_its_topics(tmp_path):
    with kafka_clients.mock_cluster(1) as address:
        assert run_logship("produce", "-b", address, "mocked", "-p", "0", input="a\nb\nc\n").returncode == 0
        top = TopInTmux(tmp_path, "-b", address)
        try:
            wait_until(lambda: _row(top.screen(), "mocked") is not None, timeout=30)
            top.keys("q")
            assert top.exit_status() == 0
        finally:
            top.close()


def test_top_without_a_terminal_prints_one_snapshot(loaded_broker):
    done = run_logship("top", "-b", loaded_broker.address, "--json", "--interval", "1")
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    (web,) = [t for t in snapshot["topics"] if t["name"] == "web"]
    assert web["records_in"] > 0 and web["bytes_in"] > 0 and web["log_end_offset"] >= 5000
    (idx,) = [g for g in snapshot["groups"] if g["group"] == "idx"]
    assert idx["lag"] >= 4000 and idx["partitions"]["web-0"] == idx["lag"]
    table = run_logship("top", "-b", loaded_broker.address)  # not a terminal: tables
    assert table.returncode == 0 and "web" in table.stdout and "idx" in table.stdout


def test_top_with_no_broker_is_one_line_and_exit_3():
    done = run_logship("top", "-b", "127.0.0.1:1", "--timeout", "2")
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

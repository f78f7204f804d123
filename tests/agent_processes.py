"""`logship agent` as a real subprocess for the integration tests: the process and its log,
its config file, and the records it shipped read back with confluent-kafka (librdkafka).
Shared by test_agent_integration.py and test_agent_encoding.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_until


class AgentProcess:
    """`python -m logship agent --config FILE`, its stderr collected line by line."""

    def __init__(self, config: Path, *args: str):
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "logship", "agent", "--config", str(config), *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20) -> bool:
        return wait_until(lambda: re.search(pattern, self.log()), timeout)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            self.proc.wait(10)
            self._pump.join(5)
            pytest.fail(f"the agent did not stop within {timeout} s of SIGTERM:\n{self.log()}")
        self._pump.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._pump.join(5)

    def counters(self) -> dict[str, int]:
        found = re.findall(r"(?:stopped|counters): (.*)", self.log())
        assert found, self.log()
        return {k: int(v) for k, v in (item.split("=") for item in found[-1].split())}

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def open_deleted_files(self) -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if target.endswith(" (deleted)"):
                out.append(target)
        return out


def toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(tmp_path: Path, broker, paths: list[str], topic: str = "logs", **options) -> Path:
    inputs = options.pop("input", {})
    settings = {"scan_interval": "200ms", "poll_interval": "50ms", "linger": "50ms", "close_renamed_after": "1s",
                "copytruncate_wait": "3s", "checkpoint_interval": "200ms", "shutdown_timeout": "20s", **options}
    text = [f"brokers = {toml(broker.address)}", f"state_dir = {toml(tmp_path / 'state')}"]
    text += [f"{key} = {toml(value)}" for key, value in settings.items()]
    text += ["[[inputs]]", f"paths = {toml([str(p) for p in paths])}", f"topic = {toml(topic)}"]
    text += [f"{key} = {toml(value)}" for key, value in inputs.items()]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(text) + "\n")
    return path


def consume(address: str, topic: str, count: int, timeout: float = 60, idle: float = 3.0):
    """(value, headers dict) of every record of `topic`, stopping at `count` records, or
    when nothing came for `idle` seconds after `count` (to see duplicates), or at `timeout`."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": address, "group.id": "agent-tests", "enable.auto.commit": False,
                         "enable.partition.eof": False, "fetch.max.bytes": 64 << 20})
    try:
        deadline = time.monotonic() + timeout
        while True:
            topics = consumer.list_topics(topic, timeout=10).topics
            if topics[topic].partitions or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(topics[topic].partitions)])
        result, last = [], time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.consume(10000, 0.2)
            for msg in batch:
                assert msg.error() is None, msg.error()
                result.append((msg.value(), dict(msg.headers() or ())))
            if batch:
                last = time.monotonic()
            elif len(result) >= count and time.monotonic() - last >= idle:
                break
        return result
    finally:
        consumer.close()


def acknowledged_bytes(tmp_path: Path) -> int:
    """Sum of the checkpointed offsets (acknowledged bytes) in the agent's state directory."""
    try:
        doc = json.loads((tmp_path / "state" / "checkpoints.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(entry["offset"] for entry in doc["files"])

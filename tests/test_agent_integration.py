"""`logship agent` as a real subprocess against a real `logship serve`, on real files written
and rotated the way logrotate does (create, copytruncate, numbered chains, delete), every
record read back with confluent-kafka (librdkafka): nothing lost, nothing twice.

Loads are bounded: each test writes at most 1,000,000 lines and stops within a deadline.
"""

from __future__ import annotations

import os
from collections import Counter
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent_processes import AgentProcess, acknowledged_bytes, consume, write_config
from conftest import ROOT, wait_until

pytestmark = pytest.mark.integration


# --- helpers -------------------------------------------------------------------------------------


LINE = b"%s %08d " + b"p" * 60  # fixed length per writer, so offsets are easy to predict


class Writer(threading.Thread):
    """Appends numbered lines to `path` like an application: keeps its descriptor across a
    rename until reopen() (logrotate `create` + postrotate signal); `pause` is held by a
    copytruncate rotation so no line is written between the copy and the truncate."""

    def __init__(self, path: Path, tag: str, total: int, rate: float | None = None, chunk: int = 100):
        super().__init__(daemon=True)
        self.path, self.tag, self.total, self.rate, self.chunk = path, tag.encode(), total, rate, chunk
        self.written = 0
        self.pause = threading.Lock()
        self._reopen = False
        self.f = open(path, "ab", buffering=0)

    def reopen(self):
        self._reopen = True

    def run(self):
        start = time.monotonic()
        while self.written < self.total:
            n = min(self.chunk, self.total - self.written)
            data = b"".join((LINE % (self.tag, i)) + b"\n" for i in range(self.written, self.written + n))
            with self.pause:
                if self._reopen:
                    self.f.close()
                    self.f = open(self.path, "ab", buffering=0)
                    self._reopen = False
                self.f.write(data)
                self.written += n
            if self.rate:
                ahead = self.written / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        self.f.close()


def rotate(path: Path, scheme: str, keep: int, writer: Writer | None = None) -> None:
    """One logrotate run on `path`: shift the numbered chain (.1 -> .2 ...), delete what falls
    off the end, then `create` (rename + new file + tell the writer) or `copytruncate`."""
    oldest = path.with_name(f"{path.name}.{keep}")
    if oldest.exists():
        oldest.unlink()
    for n in range(keep - 1, 0, -1):
        src = path.with_name(f"{path.name}.{n}")
        if src.exists():
            os.rename(src, path.with_name(f"{path.name}.{n + 1}"))
    first = path.with_name(f"{path.name}.1")
    if scheme == "create":
        os.rename(path, first)
        path.touch()
        time.sleep(0.01)  # the application takes a moment to reopen: lines land in the renamed file
        if writer is not None:
            writer.reopen()
    else:
        with writer.pause if writer is not None else threading.Lock():
            shutil.copyfile(path, first)
            with open(path, "r+b") as f:
                f.truncate(0)


def numbers(records, tag: bytes) -> list[int]:
    return [int(value.split(b" ")[1]) for value, _ in records if value.startswith(tag + b" ")]


def assert_once_each(records, tag: bytes, total: int, log: str = "") -> None:
    """Every numbered line of `tag` in `records` once; else say which, with `log` (the agent's)."""
    seen = numbers(records, tag)
    missing = sorted(set(range(total)) - set(seen))
    counts = Counter(seen)
    twice = sorted(n for n, k in counts.items() if k > 1)
    copies = [headers for value, headers in records for n in twice[:1] + twice[-1:]
              if value.startswith(b"%s %08d " % (tag, n))]
    assert not missing and not twice, (f"{tag!r}: {len(missing)} missing (first {missing[:5]}), "
                                       f"{len(seen) - len(counts)} duplicated ({twice[:1]}..{twice[-1:]}, "
                                       f"shipped as {copies})\n{log}")


# --- steady append -------------------------------------------------------------------------------


def test_a_million_lines_appended_at_full_speed_arrive_once_in_order(tmp_path, start_broker):
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    files, per_file = 2, 500_000
    cfg = write_config(tmp_path, broker, [str(logs / "*.log")])
    agent = AgentProcess(cfg)
    writers = [Writer(logs / f"w{i}.log", f"w{i}", per_file, chunk=2000) for i in range(files)]
    started = time.monotonic()
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    size = sum((logs / f"w{i}.log").stat().st_size for i in range(files))
    assert wait_until(lambda: acknowledged_bytes(tmp_path) >= size, timeout=60), agent.log()
    elapsed = time.monotonic() - started
    assert agent.stop() == 0
    print(f"\n1,000,000 lines ({size / 1e6:.0f} MB) written and acknowledged in {elapsed:.1f} s")

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": "t", "enable.auto.commit": False,
                         "fetch.max.bytes": 64 << 20})
    consumer.assign([TopicPartition("logs", 0, OFFSET_BEGINNING)])
    expected = {str(logs / f"w{i}.log").encode(): 0 for i in range(files)}
    line_length = len(LINE % (b"w0", 0)) + 1
    seen, deadline = 0, time.monotonic() + 60
    try:
        while seen < files * per_file and time.monotonic() < deadline:
            for msg in consumer.consume(10000, 0.5):
                headers = dict(msg.headers())
                path, value = headers["path"], msg.value()
                tag, number = value.split(b" ", 2)[:2]
                n = expected[path]
                assert int(number) == n, f"{path}: expected line {n}, got {value[:20]!r}"
                assert path.endswith(tag + b".log") and headers["offset"] == b"%d" % (n * line_length)
                assert headers["host"]
                expected[path] = n + 1
                seen += 1
        assert not consumer.consume(10, 1.0), "more records than lines written"
    finally:
        consumer.close()
    assert seen == files * per_file and all(n == per_file for n in expected.values())


# --- rotation under load -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme,glob", [("create", "app.log"), ("create", "app.log*"), ("copytruncate", "app.log*")])
def test_rotation_under_load_loses_nothing_and_ships_nothing_twice(tmp_path, start_broker, scheme, glob):
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    total = 60_000
    writer = Writer(path, "a", total, rate=20_000)
    agent = AgentProcess(write_config(tmp_path, broker, [str(logs / glob)]))
    assert agent.wait_for("new file"), agent.log()
    writer.start()
    rotations = 0
    while writer.is_alive():
        time.sleep(0.4)
        rotate(path, scheme, keep=3, writer=writer)  # the 4th rotation deletes app.log.3
        rotations += 1
    writer.join()
    time.sleep(1.0)
    assert rotations >= 5
    records = consume(broker.address, "logs", total, timeout=60)
    assert agent.stop() == 0
    assert_once_each(records, b"a", total, agent.log())
    counters = agent.counters()
    assert counters["bytes_skipped"] == 0 and counters["lines"] == total, agent.log()
    assert "Traceback" not in agent.log()


def test_copytruncate_while_the_broker_is_down_counts_what_was_lost(tmp_path, start_broker):
    """Scenario 12: the broker is down, reading has paused (files are the buffer), and
    copytruncate rotates the file to a copy the agent does not tail. What the agent saw in
    the file but had not read is gone: it is counted in bytes_skipped, to the byte, and
    everything else arrives once the broker is back."""
    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    port = broker.port
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    line_length = len(LINE % (b"a", 0)) + 1
    agent = AgentProcess(write_config(tmp_path, broker, [str(path)], batch_bytes="8K", queue_bytes="8K", read_bytes="4K",
                                      copytruncate_wait="1s", retry_backoff_max="500ms",
                                      input={"max_line_bytes": "1K"}))
    with open(path, "ab") as f:
        f.write(LINE % (b"a", 0) + b"\n")
    assert wait_until(lambda: acknowledged_bytes(tmp_path) == line_length, timeout=20), agent.log()
    broker.stop()
    with open(path, "ab") as f:
        f.write(b"".join(LINE % (b"a", i) + b"\n" for i in range(1, 2000)))
    time.sleep(1.5)  # the agent read what its queue holds, and saw the rest
    shutil.copyfile(path, tmp_path / "app.log.1")
    os.truncate(path, 0)
    with open(path, "ab") as f:
        f.write(LINE % (b"b", 0) + b"\n")
    time.sleep(1.5)  # copytruncate_wait passes: no copy of the old content appeared
    broker = start_broker("--listen", f"127.0.0.1:{port}", data_dir=data_dir)
    assert wait_until(lambda: acknowledged_bytes(tmp_path) == line_length, timeout=30), agent.log()
    records = consume(broker.address, "logs", 1, timeout=30, idle=2.0)
    assert agent.stop() == 0
    a_lines = [value for value, _ in records if value.startswith(b"a ")]
    assert [value for value, _ in records if value.startswith(b"b ")] == [LINE % (b"b", 0)]
    whole = [value for value in a_lines if len(value) == line_length - 1]
    assert whole == [LINE % (b"a", i) for i in range(len(whole))]  # a prefix of the file, in order, once
    # the line cut by the last read before the truncate is shipped as far as it was read
    assert len(a_lines) - len(whole) <= 1
    shipped_bytes = sum(len(value) + 1 for value in whole) + sum(len(value) for value in a_lines[len(whole):])
    assert len(whole) < 1000, "the queue was meant to stop reading early"
    assert agent.counters()["bytes_skipped"] == 2000 * line_length - shipped_bytes, agent.log()
    assert re.search(rf"{2000 * line_length - shipped_bytes} bytes were truncated before they could be read",
                     agent.log())


# --- crashes and outages -----------------------------------------------------------------------


def test_sigkill_mid_batch_then_restart_ships_every_line_once(tmp_path, start_broker):
    """kill -9 with batches in flight and acknowledgements not yet in checkpoints.json: the
    journal (agent/journal.py) has each batch from before it was sent, so the next start
    sends the unacknowledged ones again under their producer id and sequences (the broker
    drops those it has) and reads the files after them. With idempotence off (at-least-once,
    as Filebeat) only lines after the last checkpoint may come twice."""
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    total = 300_000
    line_length = len(LINE % (b"a", 0)) + 1
    for tag, idempotence in ((b"a", True), (b"b", False)):
        path = logs / f"{tag.decode()}.log"
        writer = Writer(path, tag.decode(), total, rate=60_000)  # the agent keeps up: batches in flight
        writer.start()
        state = tmp_path / tag.decode()  # its state directory is state/ in there
        state.mkdir()
        topic = f"logs-{tag.decode()}"
        cfg = write_config(state, broker, [str(path)], topic, checkpoint_interval="1s", queue_bytes="4M",
                           idempotence=idempotence)
        agent = AgentProcess(cfg)
        assert wait_until(lambda: acknowledged_bytes(state) > 0 and writer.written > total // 3, timeout=30), \
            agent.log()
        agent.kill()  # mid-stream: batches in flight, acknowledgements since the last checkpoint
        checkpointed = acknowledged_bytes(state)
        assert 0 < checkpointed < total * line_length, "the agent finished before it was killed; use more lines"
        agent = AgentProcess(cfg)
        writer.join(30)
        assert wait_until(lambda: acknowledged_bytes(state) == total * line_length, timeout=60), agent.log()
        records = consume(broker.address, topic, total, timeout=60, idle=2.0)
        assert agent.stop() == 0
        log = agent.log()
        if idempotence:
            assert_once_each(records, tag, total, log)
            assert "Traceback" not in log
            resent = re.search(r"sending again (\d+) batches", log)
            print(f"\nkilled with {checkpointed} bytes checkpointed; {resent[1] if resent else 'no'} batches sent again")
        else:
            seen = numbers(records, tag)
            assert set(seen) == set(range(total)), "lines lost"
            repeated = {n for n, times in Counter(seen).items() if times > 1}
            assert all(n >= checkpointed // line_length for n in repeated) and max(Counter(seen).values()) <= 2
            print(f"without idempotence: {len(seen) - total} lines shipped twice")


def test_sigterm_with_batches_in_flight_then_restart_ships_nothing_twice(tmp_path, start_broker):
    """Scenario 24: a graceful stop drains what was read, writes the checkpoints, and the
    next start goes on from there: no line lost, none twice."""
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    total = 100_000
    cfg = write_config(tmp_path, broker, [str(path)])
    writer = Writer(path, "a", total, rate=25_000)
    agent = AgentProcess(cfg)
    assert agent.wait_for("started")
    writer.start()
    time.sleep(1.5)
    assert agent.stop() == 0  # lines are being written and shipped right now
    assert "unacknowledged" not in agent.log()
    agent = AgentProcess(cfg)
    writer.join(30)
    assert wait_until(lambda: acknowledged_bytes(tmp_path) == path.stat().st_size, timeout=60), agent.log()
    records = consume(broker.address, "logs", total, timeout=60)
    assert agent.stop() == 0
    assert_once_each(records, b"a", total)
    assert len(records) == total


def test_broker_down_for_seconds_while_lines_are_written_then_all_delivered(tmp_path, start_broker):
    """Scenario 11 and the issue's test: the broker is down for 30 s while lines keep being
    written; reading pauses once queue_bytes wait, RSS stays bounded, and everything arrives
    after the broker returns."""
    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    port = broker.port
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    agent = AgentProcess(write_config(tmp_path, broker, [str(path)], queue_bytes="2M", retry_backoff_max="1s"))
    total = 200_000
    writer = Writer(path, "a", total, rate=5_000, chunk=200)  # 40 s of writing, across the outage
    writer.start()
    time.sleep(1.5)
    broker.stop()
    rss = []
    outage_end = time.monotonic() + 30
    while time.monotonic() < outage_end:
        rss.append(agent.rss_kib())
        time.sleep(0.25)
    assert agent.wait_for("cannot deliver"), agent.log()
    broker = start_broker("--listen", f"127.0.0.1:{port}", data_dir=data_dir)
    writer.join(60)
    size = path.stat().st_size
    assert wait_until(lambda: acknowledged_bytes(tmp_path) == size, timeout=60), agent.log()
    records = consume(broker.address, "logs", total, timeout=60)
    assert agent.stop() == 0
    assert set(numbers(records, b"a")) == set(range(total))
    assert len(records) - total <= 2 * (2 << 20) // len(LINE % (b"a", 0))  # resent batches at most
    assert agent.wait_for("delivering again")
    growth = max(rss) - rss[0]
    print(f"\nagent RSS during the outage: {rss[0] // 1024} -> {max(rss) // 1024} MiB; "
          f"{len(records) - total} duplicates")
    assert growth < 64 * 1024, f"RSS grew by {growth} KiB while the broker was down"


# --- awkward content -----------------------------------------------------------------------------


def test_long_line_invalid_utf8_partial_line_and_truncation_as_documented(tmp_path, start_broker):
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    with open(path, "wb") as f:
        f.write(b"first\n" + b"L" * (10 << 20) + b"\n" + b"\xff\xfe\x00 not utf-8\n" + b"no newline yet")
    agent = AgentProcess(write_config(tmp_path, broker, [str(path)], input={"partial_line_timeout": "1s"}))
    records = consume(broker.address, "logs", 4, timeout=30, idle=1.5)
    values = [v for v, _ in records]
    assert values == [b"first", b"L" * (512 << 10), b"\xff\xfe\x00 not utf-8", b"no newline yet"]
    assert records[1][1]["truncated"] == b"true" and "truncated" not in records[0][1]
    assert [h["offset"] for _, h in records] == [b"0", b"6", b"%d" % (6 + (10 << 20) + 1),
                                                 b"%d" % (6 + (10 << 20) + 1 + len(b"\xff\xfe\x00 not utf-8\n"))]
    with open(path, "r+b") as f:  # truncated to zero, then refilled
        f.truncate(0)
    with open(path, "ab") as f:
        f.write(b"after truncate\n")
    records = consume(broker.address, "logs", 5, timeout=30, idle=1.5)
    assert records[4][0] == b"after truncate" and records[4][1]["offset"] == b"0"
    assert len(records) == 5
    assert agent.proc.poll() is None, agent.log()
    assert agent.stop() == 0
    counters = agent.counters()
    assert counters["lines_truncated"] == 1 and counters["lines"] == 5 and counters["bytes_skipped"] == 0


def test_a_deleted_file_is_shipped_to_its_end_and_its_space_freed(tmp_path, start_broker):
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    agent = AgentProcess(write_config(tmp_path, broker, [str(path)]))
    assert agent.wait_for("started")
    with open(path, "wb") as f:
        f.write(b"".join(LINE % (b"a", i) + b"\n" for i in range(70_000)))  # about 5 MB
    path.unlink()
    assert agent.wait_for("closed the deleted file"), agent.log()
    assert agent.open_deleted_files() == []
    records = consume(broker.address, "logs", 70_000, timeout=30, idle=1.0)
    agent.stop()
    assert_once_each(records, b"a", 70_000)


def test_a_second_agent_on_the_same_state_directory_refuses_to_start(tmp_path, start_broker):
    broker = start_broker()
    (tmp_path / "logs").mkdir()
    cfg = write_config(tmp_path, broker, [str(tmp_path / "logs" / "*.log")])
    first = AgentProcess(cfg)
    assert first.wait_for("started")
    second = AgentProcess(cfg)
    assert second.proc.wait(20) == 1
    assert re.search(rf"another logship agent \(pid {first.proc.pid}\) is already using the state directory",
                     second.log()), second.log()
    assert first.proc.poll() is None
    assert first.stop() == 0


def test_status_and_sigusr1_counters(tmp_path, start_broker):
    broker = start_broker()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"one\ntwo\n")
    agent = AgentProcess(write_config(tmp_path, broker, [str(logs / "*.log")]))
    assert wait_until(lambda: acknowledged_bytes(tmp_path) == 8, timeout=20), agent.log()
    agent.proc.send_signal(signal.SIGUSR1)
    assert agent.wait_for(r"counters: lines=2 bytes=6 batches=1"), agent.log()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "logship", "agent", "--status", "--state-dir", str(tmp_path / "state")],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0
    assert re.search(rf"{re.escape(str(logs / 'a.log'))}\s+8\s+8\s+0\s+current", out.stdout), out.stdout
    assert f"pid {agent.proc.pid}" in out.stderr
    assert agent.stop() == 0

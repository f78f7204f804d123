"""The agent ships every line exactly once (#14) across its own kill -9 and the broker's: files
rotated both ways logrotate does (`create`: rename and a new file; `copytruncate`: copy, then
truncate in place) while lines are written, the agent killed 10 times and the broker twice;
every numbered line is in the topic exactly once. The journal (agent/journal.py) makes it so:
each batch is on disk with its producer id and sequence before it is sent, and a restart
sends the unacknowledged ones again before reading on; the broker keeps its producer state
across its own kill -9 (storage/producer_log.py).

Loads are bounded: 2 x 24,000 lines over about 8 s, each wait with a deadline.
"""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest

from agent_processes import AgentProcess, consume, write_config
from conftest import wait_until
from test_agent_integration import LINE, Writer, assert_once_each, rotate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class Rotator(threading.Thread):
    """Rotates each (path, scheme, writer) every `every` seconds until stopped."""

    def __init__(self, files: list, every: float):
        super().__init__(daemon=True)
        self.files, self.every = files, every
        self.rotations = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(self.every):
            for path, scheme, writer in self.files:
                rotate(path, scheme, keep=9, writer=writer)
            self.rotations += 1


def kill_in_flight(agent: AgentProcess, broker, cfg, logs: list, then=None) -> AgentProcess:
    """kill -9 the agent with batches in flight: the broker is frozen a moment first, then
    thawed (it stores what it had received) or, with `then`, that is done instead (a
    broker.kill: none of it is stored). Keeps the agent's log; returns a restarted agent."""
    broker.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.15)
    agent.kill()
    logs.append(agent.log())
    if then is None:
        broker.proc.send_signal(signal.SIGCONT)
    else:
        then()
    agent = AgentProcess(cfg)
    assert agent.wait_for("started"), agent.log()
    return agent


def test_agent_killed_ten_times_broker_twice_while_files_rotate_ships_each_line_once(tmp_path, start_broker):
    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    port = broker.port
    total = 24_000
    files, writers = [], []
    for scheme, tag in (("create", "r"), ("copytruncate", "t")):
        (tmp_path / scheme).mkdir()
        path = tmp_path / scheme / "app.log"
        writer = Writer(path, tag, total, rate=3_000)
        files.append((path, scheme, writer))
        writers.append(writer)
    cfg = write_config(tmp_path, broker, [str(path.parent / "app.log*") for path, _, _ in files],
                       checkpoint_interval="1s", copytruncate_wait="5s", retry_backoff_max="200ms")
    agent = AgentProcess(cfg)
    assert agent.wait_for("started"), agent.log()
    logs = []
    rotator = Rotator(files, 0.9)
    for writer in writers:
        writer.start()
    rotator.start()
    try:
        for kill in range(10):
            time.sleep(0.6)
            if kill in (3, 7):  # the broker too: the agent comes back to a restarted broker
                agent = kill_in_flight(agent, broker, cfg, logs, then=broker.kill)
                broker = start_broker("--listen", f"127.0.0.1:{port}", data_dir=data_dir)
            else:
                agent = kill_in_flight(agent, broker, cfg, logs)
        for writer in writers:
            writer.join(30)
            assert not writer.is_alive()
    finally:
        rotator.stopping.set()
        rotator.join(10)
    records = consume(broker.address, "logs", 2 * total, timeout=90, idle=3.0)
    assert agent.stop() == 0
    logs.append(agent.log())
    everything = "".join(f"--- run {n}\n{text}" for n, text in enumerate(logs))
    assert rotator.rotations >= 5
    (tmp_path / "agent.log").write_text(everything)
    for _, scheme, writer in files:
        about = "".join(line for line in everything.splitlines(keepends=True)
                        if line.startswith("--- run") or f"/{scheme}/" in line)
        assert_once_each(records, writer.tag, total, about[:12_000] + "\n[...]\n" + about[-12_000:])
    assert len(records) == 2 * total
    assert "Traceback" not in everything
    resent = sum(int(n) for n in re.findall(r"sending again (\d+) batches", everything))
    assert resent, "no kill caught a batch in flight: the journal's resend went untested"
    print(f"\n{rotator.rotations} rotations, 10 agent kills, 2 broker kills: {2 * total} lines once each; "
          f"{resent} batches sent again after the kills")


def test_batches_refused_as_too_large_are_split_journaled_and_shipped_once_across_kills(tmp_path, start_broker):
    """A topic whose max.message.bytes is below the agent's batch_bytes: each refused batch
    goes again as its two halves (journaled in its place), and kills with halves in flight
    still leave every line once, none dropped."""
    from local_cluster import run_logship

    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    made = run_logship("topics", "create", "small", "-b", broker.address, "-c", "max.message.bytes=20000")
    assert made.returncode == 0, made.stderr
    (tmp_path / "logs").mkdir()
    path = tmp_path / "logs" / "app.log"
    total = 12_000
    writer = Writer(path, "s", total, rate=3_000)
    cfg = write_config(tmp_path, broker, [str(path)], "small", compression="none", batch_bytes=65536,
                       input={"max_line_bytes": "1K"}, checkpoint_interval="1s")
    agent = AgentProcess(cfg)
    assert agent.wait_for("started"), agent.log()
    writer.start()
    logs = []
    for _ in range(3):
        time.sleep(0.8)
        agent = kill_in_flight(agent, broker, cfg, logs)
    writer.join(30)
    records = consume(broker.address, "small", total, timeout=60, idle=2.0)
    assert agent.stop() == 0
    logs.append(agent.log())
    everything = "".join(logs)
    assert_once_each(records, b"s", total, everything[-20_000:])
    assert "in two halves" in everything and "refused for good" not in everything
    assert agent.counters()["records_rejected"] == 0


def test_a_batch_sent_again_that_cannot_be_delivered_holds_back_no_other_file(tmp_path, start_broker):
    """After a kill -9, the journal's batch for a topic deleted meanwhile (auto-creation off)
    waits for it, as any batch does; the other files are read and shipped all the same."""
    from local_cluster import run_logship

    broker = start_broker("--no-auto-create")
    for topic in ("gone", "kept"):
        made = run_logship("topics", "create", topic, "-b", broker.address)
        assert made.returncode == 0, made.stderr
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gone.log").touch()
    (logs / "kept.log").touch()
    cfg = write_config(tmp_path, broker, [str(logs / "gone.log")], "gone", checkpoint_interval="1s",
                       shutdown_timeout="2s")
    with open(cfg, "a") as f:
        f.write(f'[[inputs]]\npaths = ["{logs / "kept.log"}"]\ntopic = "kept"\n')
    agent = AgentProcess(cfg)
    assert agent.wait_for("started"), agent.log()
    broker.proc.send_signal(signal.SIGSTOP)  # the agent sends these lines and never hears back
    with open(logs / "gone.log", "ab") as f:
        f.write(b"".join(LINE % (b"g", i) + b"\n" for i in range(100)))
    time.sleep(1.0)
    agent.kill()
    broker.proc.send_signal(signal.SIGCONT)
    deleted = run_logship("topics", "delete", "gone", "-b", broker.address)
    assert deleted.returncode == 0, deleted.stderr
    agent = AgentProcess(cfg)
    assert agent.wait_for(r"sending again \d+ batches", timeout=20), agent.log()
    with open(logs / "kept.log", "ab") as f:
        f.write(b"".join(LINE % (b"k", i) + b"\n" for i in range(500)))
    records = consume(broker.address, "kept", 500, timeout=30, idle=1.0)
    assert agent.stop() == 0
    assert_once_each(records, b"k", 500, agent.log())

"""`logship agent` with `metrics = ...` in its config (issue #15): a real agent's /metrics,
scraped over HTTP and parsed with prometheus_client's parser, against the lines written, a
broker stopped while lines are appended (bytes behind, retries), and the broker back."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import pytest

from agent_processes import AgentProcess, toml
from conftest import wait_until
from logship.broker_process import child_env
from test_metrics_broker import scrape, value

pytestmark = pytest.mark.integration

A_LINES, B_LINES, LATER = 2000, 700, 300


def agent_config(tmp_path, broker, inputs: list[tuple[str, str]], metrics: str) -> str:
    text = [f"brokers = {toml(broker.address)}", f"state_dir = {toml(tmp_path / 'state')}",
            'scan_interval = "200ms"', 'poll_interval = "50ms"', 'linger = "50ms"', 'checkpoint_interval = "200ms"',
            'retry_backoff_max = "500ms"', 'shutdown_timeout = "20s"', f"metrics = {toml(metrics)}"]
    for glob, topic in inputs:
        text += ["[[inputs]]", f"paths = {toml([glob])}", f"topic = {toml(topic)}"]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(text) + "\n")
    return str(path)


def lines(tag: str, start: int, count: int) -> bytes:
    return b"".join(f"{tag} line {n}\n".encode() for n in range(start, start + count))


def test_per_input_counts_bytes_behind_retries_and_checkpoint_age(tmp_path, start_broker):
    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    port = broker.port
    logs = tmp_path / "logs"
    logs.mkdir()
    a, b = logs / "a.log", logs / "b.log"
    a.write_bytes(lines("a", 0, A_LINES))
    b.write_bytes(lines("b", 0, B_LINES))
    a_glob, b_glob = str(logs / "a*.log"), str(logs / "b*.log")
    agent = AgentProcess(agent_config(tmp_path, broker, [(a_glob, "apps"), (b_glob, "batch")], "127.0.0.1:0"))
    try:
        assert agent.wait_for(r"metrics for Prometheus at http://\S+"), agent.log()
        url = re.search(r"metrics for Prometheus at (http://\S+)", agent.log()).group(1)
        a_in, b_in = {"input": a_glob, "topic": "apps"}, {"input": b_glob, "topic": "batch"}

        def settled() -> dict | None:
            samples = scrape(url)
            done = (value(samples, "logship_agent_lines_shipped_total", **a_in) == A_LINES
                    and value(samples, "logship_agent_lines_shipped_total", **b_in) == B_LINES
                    and value(samples, "logship_agent_bytes_behind", path=str(a)) == 0
                    and value(samples, "logship_agent_bytes_behind", path=str(b)) == 0)
            return samples if done else None

        assert wait_until(settled, timeout=30), agent.log()
        samples = scrape(url)
        for labels, path, count in ((a_in, a, A_LINES), (b_in, b, B_LINES)):
            line_bytes = path.stat().st_size - count  # the lines without their newlines
            assert value(samples, "logship_agent_lines_read_total", **labels) == count
            assert value(samples, "logship_agent_bytes_read_total", **labels) == line_bytes
            assert value(samples, "logship_agent_bytes_shipped_total", **labels) == line_bytes
        assert value(samples, "logship_agent_files") == 2
        assert value(samples, "logship_agent_pending_batches") == 0
        assert value(samples, "logship_agent_retries_total") == 0
        assert value(samples, "logship_agent_records_rejected_total") == 0
        assert value(samples, "logship_agent_lines_truncated_total") == 0
        assert value(samples, "logship_agent_bytes_skipped_total") == 0
        assert 0 <= value(samples, "logship_agent_checkpoint_age_seconds") < 3600
        assert value(samples, "process_resident_memory_bytes") > 1e6
        assert value(samples, "process_open_fds") > 0
        assert not any(name.endswith("_created") for name, _ in samples)

        broker.stop()
        appended = lines("a", A_LINES, LATER)
        with open(a, "ab") as f:
            f.write(appended)
        # read but not acknowledged: behind by what was appended, a batch waiting for the broker
        assert wait_until(lambda: (s := scrape(url)) and value(s, "logship_agent_lines_read_total", **a_in)
                          == A_LINES + LATER and value(s, "logship_agent_bytes_behind", path=str(a)) == len(appended)
                          and value(s, "logship_agent_pending_batches") >= 1, timeout=30), agent.log()
        samples = scrape(url)
        assert value(samples, "logship_agent_lines_shipped_total", **a_in) == A_LINES
        assert value(samples, "logship_agent_bytes_behind", path=str(b)) == 0

        start_broker("--listen", f"127.0.0.1:{port}", data_dir=data_dir)
        assert wait_until(lambda: (s := scrape(url)) and value(s, "logship_agent_lines_shipped_total", **a_in)
                          == A_LINES + LATER and value(s, "logship_agent_bytes_behind", path=str(a)) == 0,
                          timeout=60), agent.log()
        samples = scrape(url)
        assert value(samples, "logship_agent_retries_total") >= 1  # the batch held through the outage
        assert value(samples, "logship_agent_pending_batches") == 0
    finally:
        assert agent.stop() == 0, agent.log()
    with pytest.raises(OSError):  # the endpoint went away with the agent
        urllib.request.urlopen(url, timeout=5)


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "nowhere:"])
def test_a_bad_metrics_address_in_the_config_is_one_line(tmp_path, broker, address):
    (tmp_path / "logs").mkdir()
    config = agent_config(tmp_path, broker, [(str(tmp_path / "logs" / "*.log"), "t")], address)
    done = subprocess.run([sys.executable, "-m", "logship", "agent", "--config", config], capture_output=True,
                          text=True, timeout=30, env=child_env())
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr and "metrics" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

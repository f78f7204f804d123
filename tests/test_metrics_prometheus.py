"""A real Prometheus (Debian's `prometheus`) scraping a real `logship serve --metrics` and
`logship agent --metrics` (issue #15): what its HTTP API answers matches what was produced,
shipped and consumed; every metric name in examples/grafana-logship.json exists in a scrape;
examples/prometheus.yml is a configuration Prometheus accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, wait_until
from local_cluster import free_port, run_logship
from logship.broker_process import child_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PROMETHEUS = shutil.which("prometheus")
LINES, RECORDS, CONSUMED = 3000, 5000, 1200


def _url_in(text: str) -> str:
    match = re.search(r"metrics for Prometheus at (http://\S+)", text)
    assert match, text
    return match.group(1)


def _query(base: str, expr: str) -> dict[str, float]:
    """{label set as text: value} of an instant query."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert answer["status"] == "success", answer
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in answer["data"]["result"]}


def _names(url: str) -> set[str]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture
def prometheus_binary():
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (bin/test installs Debian's package)")
    return PROMETHEUS


def test_the_example_configuration_is_valid(prometheus_binary):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    done = subprocess.run([promtool, "check", "config", str(ROOT / "examples" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_sees_what_flowed(prometheus_binary, start_broker, tmp_path):
    broker = start_broker("--metrics", "127.0.0.1:0")
    broker_metrics = _url_in(broker.log())
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {n}\n" for n in range(LINES)))
    agent = subprocess.Popen([sys.executable, "-m", "logship", "agent", str(logs / "*.log"), "-t", "shipped",
                              "-b", broker.address, "--state-dir", str(tmp_path / "state"), "--metrics", "127.0.0.1:0"],
                             stderr=subprocess.PIPE, text=True, env=child_env())
    prometheus = None
    try:
        seen = []
        wait_until(lambda: seen.append(agent.stderr.readline()) or "metrics for Prometheus" in seen[-1], timeout=20)
        agent_metrics = _url_in(seen[-1])
        records = tmp_path / "records"
        records.write_text("".join(f"{n}\n" for n in range(RECORDS)))
        subprocess.run(["kcat", "-P", "-b", broker.address, "-t", "kc", "-p", "0", "-l", str(records)],
                       check=True, timeout=60)
        assert run_logship("consume", "kc", "-b", broker.address, "-g", "readers", "-c", str(CONSUMED)).returncode == 0

        port = free_port()
        config = tmp_path / "prometheus.yml"
        targets = {"logship-broker": broker_metrics, "logship-agent": agent_metrics}
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n" + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{urllib.parse.urlsplit(url).netloc}']\n"
            for job, url in targets.items()))
        prometheus = subprocess.Popen([prometheus_binary, f"--config.file={config}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200
            except OSError:
                return False

        wait_until(ready, timeout=60, interval=0.2)
        expected_in = {'{"topic": "kc"}': RECORDS, '{"topic": "shipped"}': LINES}
        wait_until(lambda: {k: v for k, v in _query(base, "sum by (topic) (logship_records_in_total)").items()
                            if k in expected_in} == expected_in, timeout=60, interval=0.5)
        wait_until(lambda: _query(base, 'sum(logship_consumer_group_lag{group="readers",topic="kc"})')
                   == {"{}": RECORDS - CONSUMED}, timeout=60, interval=0.5)
        wait_until(lambda: _query(base, "sum(logship_agent_lines_shipped_total)") == {"{}": LINES},
                   timeout=60, interval=0.5)
        wait_until(lambda: _query(base, "sum(logship_agent_bytes_behind)") == {"{}": 0}, timeout=60, interval=0.5)
        produced = _query(base, 'sum(logship_request_duration_seconds_count{api="produce"})')
        assert produced and list(produced.values())[0] >= 1

        exported = _names(broker_metrics) | _names(agent_metrics)
        dashboard = json.loads((ROOT / "examples" / "grafana-logship.json").read_text())
        used = {name for panel in dashboard["panels"] for target in panel["targets"]
                for name in re.findall(r"\b(?:logship|process)_[a-z_]+\b", target["expr"])}
        assert used and used <= exported, sorted(used - exported)
    finally:
        agent.terminate()
        agent.wait(20)
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(20)

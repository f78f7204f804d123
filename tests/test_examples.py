"""Every example in examples/ runs (against a throw-away broker) and does what it says."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.integration


def run_example(name: str, *args: str) -> list[str]:
    env = dict(os.environ, LOGSHIP=str(ROOT / "bin" / "logship"), PYTHONPATH=str(ROOT))
    result = subprocess.run([str(EXAMPLES / "with-broker.sh"), str(EXAMPLES / name), *args], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


TESTED = {"with-broker.sh", "kcat-roundtrip.sh", "nginx-access-log.sh", "errors-with-jq.sh", "library.py", "data"}
TESTED_WITH_THE_AGENT = {"agent-nginx.toml", "agent-java.toml", "logship-agent.service"}  # test_agent_config.py
TESTED_ELSEWHERE = {"cluster.toml",  # test_cluster_units.py
                    "prometheus.yml", "grafana-logship.json"}  # test_metrics_prometheus.py


def test_every_example_has_a_test():
    assert {p.name for p in EXAMPLES.iterdir()} == TESTED | TESTED_WITH_THE_AGENT | TESTED_ELSEWHERE
    agent_tests = (ROOT / "tests" / "test_agent_config.py").read_text()
    assert all(f'"{name}"' in agent_tests for name in TESTED_WITH_THE_AGENT)


def test_kcat_roundtrip():
    out = run_example("kcat-roundtrip.sh")
    assert out[:5] == ["1", "2", "3", "4", "5"]
    assert out[5].startswith("baseOffset: 0 ")
    assert [line.rsplit(" ", 1)[1] for line in out if line.startswith("| offset:")] == ["1", "2", "3", "4", "5"]


def test_nginx_access_log():
    out = run_example("nginx-access-log.sh")
    log = (EXAMPLES / "data" / "access.log").read_text().splitlines()
    counts = {}
    for line in log:
        counts[line.split()[8]] = counts.get(line.split()[8], 0) + 1
    table = out[1:out.index("last server errors:")]
    assert {line.split()[1]: int(line.split()[0]) for line in table} == counts
    errors = [line for line in log if line.split()[8].startswith("5")]
    assert out[-3:] == errors[-3:]


def test_errors_with_jq():
    assert run_example("errors-with-jq.sh") == [
        f'svc-{i % 3} {{"level":"error","msg":"request {i}"}}' for i in (5, 10, 15, 20)]


def test_library():
    out = run_example("library.py")
    assert [line.split(" ", 2)[2] for line in out] == [f"order {n}" for n in range(10)]
    for line in out:
        partition, key, value = line.split(" ", 2)
        assert key == f"customer-{int(value.split()[1]) % 3}"

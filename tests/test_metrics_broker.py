"""`logship serve --metrics` (issue #15): a real broker's /metrics, scraped over HTTP and parsed
with prometheus_client's own parser, against what real clients produced and consumed."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_until
from local_cluster import LocalCluster, run_logship

pytestmark = pytest.mark.integration


def metrics_url(broker) -> str:
    match = re.search(r"metrics for Prometheus at (http://\S+)", broker.log())
    assert match, broker.log()
    return match.group(1)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_rates_sizes_requests_and_group_lag(start_broker, tmp_path):
    broker = start_broker("--metrics", "127.0.0.1:0")
    url = metrics_url(broker)
    lines = tmp_path / "lines"
    lines.write_text("".join(f"record {i}\n" for i in range(20_000)))
    subprocess.run(["kcat", "-P", "-b", broker.address, "-t", "web", "-l", str(lines), "-X", "acks=all"],
                   check=True, timeout=60)
    assert run_logship("consume", "web", "-b", broker.address, "-g", "indexer", "-c", "5000").returncode == 0
    consumed = subprocess.run(["kcat", "-C", "-b", broker.address, "-t", "web", "-e", "-q"], capture_output=True,
                              check=True, timeout=60)
    assert consumed.stdout.count(b"\n") == 20_000

    samples = scrape(url)
    assert value(samples, "logship_records_in_total", topic="web") == 20_000
    size = value(samples, "logship_partition_size_bytes", topic="web", partition="0")
    assert value(samples, "logship_bytes_in_total", topic="web") == size > 20_000 * 10
    sent = value(samples, "logship_bytes_out_total", topic="web")
    assert sent >= size + 5000 * 10  # kcat read it all, the indexer at least its 5,000 (more was fetched)
    out = value(samples, "logship_records_out_total", topic="web")  # estimated from bytes and bytes per record
    assert out == pytest.approx(sent * 20_000 / size, rel=0.01)
    assert value(samples, "logship_partition_log_end_offset", topic="web", partition="0") == 20_000
    assert value(samples, "logship_partition_log_start_offset", topic="web", partition="0") == 0
    assert value(samples, "logship_consumer_group_lag", group="indexer", topic="web", partition="0") == 15_000
    assert value(samples, "logship_consumer_group_lag_seconds", group="indexer", topic="web", partition="0") > 0
    assert value(samples, "logship_request_duration_seconds_count", api="produce") >= 1
    assert value(samples, "logship_request_duration_seconds_count", api="fetch") >= 1
    assert value(samples, "logship_sync_duration_seconds_count") >= 1  # acks=all: group commits
    assert value(samples, "logship_offline_partitions") == 0
    assert value(samples, "logship_under_replicated_partitions") == 0
    assert value(samples, "process_resident_memory_bytes") > 1e6
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "logship_connections") is not None
    assert not any(name.endswith("_created") for name, _ in samples)


def test_a_busy_metrics_address_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_logship("serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                           "--metrics", f"127.0.0.1:{port}", timeout=30)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}: address already in use" in done.stderr, done.stderr


def _follower_lags(url: str) -> dict[int, float]:
    """replica -> logship_replica_lag of partition rep-0, as this broker reports it (only its leader does)."""
    return {int(dict(labels)["replica"]): v for (name, labels), v in scrape(url).items()
            if name == "logship_replica_lag" and dict(labels).get("topic") == "rep"}


def test_replication_figures_of_a_cluster(tmp_path):
    """Three brokers: the leader counts its in-sync replicas and reports each follower's lag, which
    grows while a SIGSTOPped follower misses records and is 0 again once it is let go."""
    cluster = LocalCluster(tmp_path, 3)
    try:
        cluster.start_all("--metrics", "127.0.0.1:0")
        made = run_logship("topics", "create", "rep", "-p", "1", "--replication-factor", "3", "-b", cluster.bootstrap)
        assert made.returncode == 0, made.stderr
        assert run_logship("produce", "rep", "-b", cluster.bootstrap, input="a\nb\n").returncode == 0
        urls = [metrics_url(process) for process in cluster.brokers.values()]
        leader_url = wait_until(lambda: next((u for u in urls if len(_follower_lags(u)) == 2), None), timeout=30)
        assert value(scrape(leader_url), "logship_partition_in_sync_replicas", topic="rep", partition="0") == 3
        wait_until(lambda: set(_follower_lags(leader_url).values()) == {0}, timeout=30)

        lagging = min(_follower_lags(leader_url))
        follower = cluster.brokers[lagging]
        follower.proc.send_signal(signal.SIGSTOP)
        try:
            subprocess.run(["kcat", "-P", "-b", cluster.address(next(b for b in cluster.brokers if b != lagging)),
                            "-t", "rep", "-p", "0", "-X", "acks=1"],
                           input=b"".join(b"%d\n" % i for i in range(1000)), check=True, timeout=60)
            wait_until(lambda: _follower_lags(leader_url)[lagging] >= 1000, timeout=30)
        finally:
            follower.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: _follower_lags(leader_url)[lagging] == 0, timeout=30)
        assert value(scrape(leader_url), "logship_under_replicated_partitions") == 0
    finally:
        cluster.stop_all()

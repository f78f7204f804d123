"""`logship bench`: runs the real commands side by side with kcat and prints their figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from logship.cli.bench import log_lines
from logship.broker_process import child_env

pytestmark = pytest.mark.integration


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", "bench", *args], capture_output=True, text=True,
                          timeout=300, env=child_env(), cwd=ROOT)


def rows(output: str) -> dict[str, list[str]]:
    table = {}
    for line in output.splitlines():
        match = re.match(r"(kcat -P(?: \(pipe\))?|kcat -C -e|logship produce(?: \(pipe\))?|logship consume -e)\s+(.*)",
                         line)
        if match:
            table[match.group(1)] = match.group(2).split()
    return table


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_bench_starts_its_own_broker_and_compares_with_kcat():
    done = bench("-n", "3000", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    assert "3,000 records of 200 bytes, acks=all, zstd, 2 rounds" in done.stdout
    table = rows(done.stdout)
    assert set(table) == {"kcat -P", "kcat -C -e", "logship produce", "logship consume -e"}
    for label in ("logship produce", "logship consume -e"):
        median, best, mbs, ratio_median, ratio_best = (float(v.replace(",", "")) for v in table[label])
        assert 0 < median <= best and mbs > 0 and ratio_median > 0 and ratio_best > 0
    assert len(table["kcat -P"]) == 3  # kcat's rows carry no ratio


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_bench_through_a_pipe_too(broker):
    done = bench("-b", broker.address, "-n", "2000", "--rounds", "1", "--pipe")
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert {"kcat -P (pipe)", "logship produce (pipe)"} <= set(table)
    assert len(table["logship produce (pipe)"]) == 5 and len(table["kcat -P (pipe)"]) == 3  # with its ratio


def test_bench_against_a_given_broker_without_kcat(broker):
    done = bench("-b", broker.address, "-n", "2000", "--rounds", "1", "--no-kcat", "--acks", "1", "-z", "none")
    assert done.returncode == 0, done.stderr
    assert set(rows(done.stdout)) == {"logship produce", "logship consume -e"}
    assert "ratio" not in done.stdout


def test_bench_reports_a_broker_it_cannot_reach():
    done = bench("-b", "127.0.0.1:1", "-n", "100", "--rounds", "1", "--no-kcat")
    assert done.returncode != 0
    assert "logship produce" in done.stderr and "failed" in done.stderr


def test_log_lines_are_sized_and_repeatable():
    text = log_lines(500, 120)
    lines = text.split(b"\n")
    assert lines.pop() == b"" and len(lines) == 500
    assert {len(line) for line in lines} == {120}
    assert text == log_lines(500, 120) != log_lines(500, 120, seed=2)


def test_bench_latency_reports_percentiles_for_each_load_and_acks():
    done = bench("--latency", "--rates", "300", "--seconds", "1", "-s", "100")
    assert done.returncode == 0, done.stderr
    assert "one record of 100 bytes a request, 1 s a load" in done.stdout
    lines = {tuple(line.split()[:4]): line.split() for line in done.stdout.splitlines()
             if re.match(r"(logship client|kcat -P|confluent-kafka)\s", line)}
    loads = {"logship", "confluent-kafka"} | ({"kcat"} if shutil.which("kcat") else set())
    assert {key[0] for key in lines} == loads
    for fields in lines.values():
        rate_at = 2 if fields[0] in ("logship", "kcat") else 1
        rate, acks, sent, records, p50, p99, p999, worst = fields[rate_at:rate_at + 8]
        assert rate == "300" and acks in ("all", "1") and records == "300"
        assert 0 < float(p50) <= float(p99) <= float(p999) <= float(worst)
    assert {fields[(2 if fields[0] in ("logship", "kcat") else 1) + 1] for fields in lines.values()} == {"all", "1"}


def test_bench_latency_refuses_bad_rates():
    done = bench("--latency", "--rates", "fast")
    assert done.returncode == 2 and "--rates" in done.stderr and "Traceback" not in done.stderr

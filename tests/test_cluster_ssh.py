"""`logship cluster up/status/down/trust` against three real sshd "hosts" (tests/sshhosts.py).

Each test gets its own cluster file, data directories and known_hosts over the module's
three hosts, and SIGKILLs (by PID) any broker it left running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_until
from logship.client.connection import Connection
from logship.protocol import ApiKey
from sshhosts import LOCAL_LOGSHIP, SshHosts, kill_brokers, serve_processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    made = SshHosts.start(tmp_path_factory.mktemp("sshhosts"))
    yield made
    made.close()


class Cluster:
    """One test's cluster file over the hosts, and the means to run `logship cluster`."""

    def __init__(self, hosts: SshHosts, tmp_path: Path):
        self.hosts, self.tmp = hosts, tmp_path
        self.data_dirs = [tmp_path / f"data{n}" for n in range(1, len(hosts.hosts) + 1)]
        self.known_hosts = hosts.write_known_hosts(tmp_path / "known_hosts")
        self.file = hosts.cluster_file(tmp_path / "cluster.toml", self.data_dirs, self.known_hosts)

    def rewrite(self, **kwargs) -> Path:
        kwargs.setdefault("known_hosts", self.known_hosts)
        self.file = self.hosts.cluster_file(self.tmp / "cluster.toml", self.data_dirs, **kwargs)
        return self.file

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([LOCAL_LOGSHIP, "cluster", *args], capture_output=True, text=True, timeout=timeout)

    def status(self, *args: str) -> tuple[int, list[dict]]:
        done = self.run("status", str(self.file), "--json", *args)
        return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def cluster(hosts, tmp_path):
    made = Cluster(hosts, tmp_path)
    yield made
    kill_brokers(made.data_dirs)


def _fingerprint(pub: Path) -> str:
    """OpenSSH's own fingerprint of a public key file."""
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_up_status_answers_down(cluster):
    started = time.monotonic()
    up = cluster.run("up", str(cluster.file))
    up_s = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    for host in cluster.hosts.hosts:
        assert f"listening on {host.address}:9092" in up.stderr
    code, rows = cluster.status()
    assert code == 0
    assert [row["state"] for row in rows] == ["up", "up", "up"]
    for row, data_dir in zip(rows, cluster.data_dirs):
        assert serve_processes(data_dir) == [row["pid"]]
        assert (data_dir / "serve.pid").read_text().strip() == str(row["pid"])
        assert stat.S_IMODE((data_dir / "cluster.secret").stat().st_mode) == 0o600
        assert (data_dir / "cluster.toml").read_text() == cluster.file.read_text()
    secret = (cluster.file.parent / "cluster.toml.secret").read_text().strip()
    assert all((d / "cluster.secret").read_text().strip() == secret for d in cluster.data_dirs)
    assert stat.S_IMODE((cluster.file.parent / "cluster.toml.secret").stat().st_mode) == 0o600
    everyone = sorted((h.address, 9092) for h in cluster.hosts.hosts)
    for host in cluster.hosts.hosts:  # each broker answers on its advertised address, naming every broker
        with Connection(host.address, 9092, timeout=10) as conn:
            meta = conn.request(ApiKey.METADATA, {"topics": None, "allow_auto_topic_creation": False})
        assert sorted((b["host"], b["port"]) for b in meta["brokers"]) == everyone
        kcat = subprocess.run(["kcat", "-L", "-b", f"{host.address}:9092", "-m", "10"], capture_output=True,
                              text=True, timeout=30)
        assert kcat.returncode == 0 and "broker" in kcat.stdout, kcat.stderr

    started = time.monotonic()
    down = cluster.run("down", str(cluster.file))
    down_s = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert down.stderr.count("stopped (SIGTERM)") == 3
    assert all(serve_processes(d) == [] for d in cluster.data_dirs)
    assert not any((d / "serve.pid").exists() for d in cluster.data_dirs)
    code, rows = cluster.status()
    assert code == 1 and [row["state"] for row in rows] == ["stopped"] * 3
    print(f"\ncluster up (3 brokers, all listening): {up_s:.2f} s; cluster down: {down_s:.2f} s")

    # the same secret on a second `up`
    assert cluster.run("up", str(cluster.file)).returncode == 0
    assert all((d / "cluster.secret").read_text().strip() == secret for d in cluster.data_dirs)
    assert cluster.run("down", str(cluster.file)).returncode == 0


def test_up_twice_reports_already_running(cluster):
    assert cluster.run("up", str(cluster.file)).returncode == 0
    pids = [serve_processes(d) for d in cluster.data_dirs]
    before = cluster.file.read_text()
    cluster.file.write_text(before + "# edited while the brokers run\n")
    again = cluster.run("up", str(cluster.file))
    assert again.returncode == 1
    for (pid,) in pids:
        assert f"already running, pid {pid}" in again.stderr
    assert [serve_processes(d) for d in cluster.data_dirs] == pids  # nothing started twice
    assert all((d / "cluster.toml").read_text() == before for d in cluster.data_dirs)  # nor rewritten
    assert cluster.run("down", str(cluster.file)).returncode == 0


def test_unknown_host_key_is_refused_and_nothing_runs(cluster):
    first = cluster.hosts.hosts[0]
    cluster.rewrite(known_hosts=cluster.hosts.write_known_hosts(cluster.tmp / "known_hosts", cluster.hosts.hosts[1:]),
                    hosts=[first])
    done = cluster.run("up", str(cluster.file))
    assert done.returncode == 1
    assert "unknown host key" in done.stderr and _fingerprint(first.host_key.with_suffix(".pub")) in done.stderr
    assert not cluster.data_dirs[0].exists()  # not even mkdir ran there
    code, rows = cluster.status()
    assert rows[0]["state"] == "error" and "unknown host key" in rows[0]["reason"]
    assert not cluster.data_dirs[0].exists()


def test_changed_host_key_is_refused_and_nothing_runs(cluster):
    first = cluster.hosts.hosts[0]
    other = cluster.tmp / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, blob = other.with_suffix(".pub").read_text().split()[:2]
    name = first.known_hosts_line.split()[0]
    cluster.known_hosts.write_text(f"{name} {key_type} {blob}\n")
    cluster.rewrite(hosts=[first])
    for command in ("up", "down"):
        done = cluster.run(command, str(cluster.file))
        assert done.returncode == 1, done.stderr
        assert "CHANGED" in done.stderr
        assert _fingerprint(first.host_key.with_suffix(".pub")) in done.stderr  # what it presents
        assert _fingerprint(other.with_suffix(".pub")) in done.stderr  # what was recorded
    assert not cluster.data_dirs[0].exists()
    # `trust` does not silently take the new key either
    target = f"{first.address}:{first.ssh_port}"
    refused = cluster.run("trust", target, "--cluster", str(cluster.file))
    assert refused.returncode == 1 and "--replace" in refused.stderr
    replaced = cluster.run("trust", target, "--cluster", str(cluster.file), "--replace")
    assert replaced.returncode == 0 and _fingerprint(other.with_suffix(".pub")) in replaced.stderr
    assert cluster.known_hosts.read_text() == first.known_hosts_line + "\n"


def test_trust_records_the_key_then_up_works(cluster):
    keys_dir = cluster.tmp / "config" / "logship"
    known_hosts = keys_dir / "known_hosts"
    cluster.rewrite(known_hosts=known_hosts)
    assert cluster.run("up", str(cluster.file)).returncode == 1  # no known_hosts file yet
    assert not any(d.exists() for d in cluster.data_dirs)
    for host in cluster.hosts.hosts:
        target = host.address if host.ssh_port == 22 else f"{host.address}:{host.ssh_port}"
        done = cluster.run("trust", target, "--cluster", str(cluster.file))
        assert done.returncode == 0, done.stderr
        assert _fingerprint(host.host_key.with_suffix(".pub")) in done.stdout
        assert "added" in done.stderr
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    assert known_hosts.read_text().splitlines() == [h.known_hosts_line for h in cluster.hosts.hosts]
    again = cluster.run("trust", target, "--known-hosts", str(known_hosts))
    assert again.returncode == 0 and "already trusted" in again.stderr
    assert len(known_hosts.read_text().splitlines()) == 3
    up = cluster.run("up", str(cluster.file))
    assert up.returncode == 0, up.stderr
    assert cluster.run("down", str(cluster.file)).returncode == 0
    # every host of the cluster file at once
    known_hosts.unlink()
    done = cluster.run("trust", "--cluster", str(cluster.file))
    assert done.returncode == 0 and done.stderr.count(": added in") == 3
    assert known_hosts.read_text().splitlines() == [h.known_hosts_line for h in cluster.hosts.hosts]


def test_version_mismatch_is_refused(cluster):
    fake = cluster.tmp / "old-logship"
    fake.write_text("#!/bin/sh\necho 'logship, version 0.0.1'\n")
    fake.chmod(0o755)
    cluster.rewrite(remote_logship=str(fake))
    done = cluster.run("up", str(cluster.file))
    assert done.returncode == 1
    assert done.stderr.count("is version 0.0.1, this logship is") == 3
    assert not any(d.exists() for d in cluster.data_dirs)
    cluster.rewrite(remote_logship=str(cluster.tmp / "missing-logship"))
    done = cluster.run("up", str(cluster.file))
    assert done.returncode == 1 and done.stderr.count("not found") == 3


def test_a_broker_that_cannot_listen_fails_up_with_its_log(cluster):
    """...even when its log already has a listening line from an earlier start."""
    assert cluster.run("up", str(cluster.file)).returncode == 0
    assert cluster.run("down", str(cluster.file)).returncode == 0
    first = cluster.hosts.hosts[0]
    blocker = subprocess.Popen(first.command(sys.executable, "-c", (
        "import socket, sys, time\n"
        f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(({first.address!r}, 9092)); s.listen(); print('ready', flush=True); time.sleep(120)")),
        stdout=subprocess.PIPE, text=True)
    try:
        assert blocker.stdout.readline().strip() == "ready"
        done = cluster.run("up", str(cluster.file))
        assert done.returncode == 1
        assert "broker 1" in done.stderr and "exited without listening" in done.stderr
        assert "the port is in use" in done.stderr  # the log's last lines
        assert "1 of 3 brokers did not start" in done.stderr
        assert serve_processes(cluster.data_dirs[0]) == []
        code, rows = cluster.status()
        assert code == 1 and [row["state"] for row in rows] == ["dead", "up", "up"]
        down = cluster.run("down", str(cluster.file))
        assert down.returncode == 0 and "stale pid file" in down.stderr
    finally:
        blocker.kill()
        blocker.wait()


def test_status_reports_how_far_behind_a_dead_broker_is(cluster):
    """Its leaders keep saying how far behind it is and since when they have not heard from it."""
    assert cluster.run("up", str(cluster.file)).returncode == 0
    bootstrap = ",".join(f"{h.address}:9092" for h in cluster.hosts.hosts)
    done = subprocess.run([LOCAL_LOGSHIP, "topics", "create", "behind", "-p", "3", "-r", "3", "-b", bootstrap],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    heard = wait_until(lambda: (lambda rows: rows[2]["replication_lag"] == 0 and not rows[2]["partitions_unheard"])(
        cluster.status()[1]), timeout=30, interval=0.2)
    assert heard, cluster.status()  # its leaders heard from it: it fetched, and is caught up
    (pid,) = serve_processes(cluster.data_dirs[2])
    os.kill(pid, signal.SIGKILL)
    with Connection(cluster.hosts.hosts[0].address, 9092, timeout=10) as conn:
        meta = conn.request(ApiKey.METADATA, {"topics": [{"name": "behind"}], "allow_auto_topic_creation": False})
    led_by_1 = next(p["partition_index"] for p in meta["topics"][0]["partitions"] if p["leader_id"] == 1)
    done = subprocess.run([LOCAL_LOGSHIP, "produce", "behind", "-p", str(led_by_1), "--acks", "1", "-b", bootstrap],
                          input="".join(f"{n}\n" for n in range(200)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    code, rows = cluster.status("--timeout", "3s")
    assert code == 1 and [row["state"] for row in rows] == ["up", "up", "dead"]
    dead = rows[2]
    assert dead["replication_lag"] >= 200 and dead["last_heard_s"] is not None, dead
    assert dead["worst_partition"]["partition"] == led_by_1 and dead["worst_partition"]["leader"] == 1
    assert cluster.run("down", str(cluster.file)).returncode == 0


@pytest.mark.parametrize("fault", ["sshd stopped", "link down"])
def test_status_returns_in_time_when_a_host_hangs(cluster, fault):
    first = cluster.hosts.hosts[0]
    if fault == "link down":
        if not first.namespace:
            pytest.skip("needs network namespaces")
        switch = ["ip", "netns", "exec", cluster.hosts.namespaces[0], "ip", "link", "set", first.veth]
        cut, heal = [*switch, "down"], [*switch, "up"]
    else:
        cut = heal = None
    try:
        if cut:
            subprocess.run(cut, check=True)
        else:
            first.sshd.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        code, rows = cluster.status("--timeout", "2s")
        took = time.monotonic() - started
    finally:
        if heal:
            subprocess.run(heal, check=True)
        else:
            first.sshd.send_signal(signal.SIGCONT)
    assert took < 10, took  # the SSH connect and the broker's Metadata, 2 s each, plus start-up
    assert code == 3
    assert rows[0]["state"] == "unreachable" and "no answer within" in rows[0]["reason"]
    assert [row["state"] for row in rows[1:]] == ["stopped", "stopped"]


def test_a_command_past_its_deadline_is_abandoned(hosts, tmp_path):
    from logship.errors import HostUnreachableError
    from logship.cluster.ssh import SshHost

    host = hosts.hosts[0]
    known = hosts.write_known_hosts(tmp_path / "known_hosts")
    with SshHost(host.address, host.ssh_port, "root", str(hosts.user_key), str(known)) as ssh:
        started = time.monotonic()
        with pytest.raises(HostUnreachableError, match="no answer within|did not finish in time"):
            ssh.run("sleep 30", timeout=1.0)
        assert time.monotonic() - started < 4
        assert ssh.run("echo still usable", timeout=10).stdout == "still usable\n"


def test_fence_is_written_atomically_and_read_back(hosts, tmp_path):
    from logship.cluster.fence import read_fence, write_fence
    from logship.cluster.ssh import SshHost

    host = hosts.hosts[1]
    data_dir = tmp_path / "data with 'quotes' and $(spaces)"
    known = hosts.write_known_hosts(tmp_path / "known_hosts")
    with SshHost(host.address, host.ssh_port, "root", str(hosts.user_key), str(known)) as ssh:
        assert read_fence(ssh, str(data_dir)) is None
        written = write_fence(ssh, str(data_dir), 7, "operator@laptop")
        assert read_fence(ssh, str(data_dir)) == written
    assert json.loads((data_dir / "fenced").read_text()) == written
    assert written["removed_at_epoch"] == 7 and written["by"] == "operator@laptop" and "T" in written["at"]
    assert os.listdir(data_dir) == ["fenced"]  # no temporary file left


def test_install_puts_this_logship_in_a_virtualenv_on_the_host(cluster):
    """--install: the wheel over SFTP, a venv in DATA_DIR/venv, its logship runs the broker;
    a second --install finds it there and installs nothing."""
    second = cluster.hosts.hosts[1]
    data_dir = cluster.data_dirs[0]
    cluster.rewrite(hosts=[second], remote_logship=str(cluster.tmp / "no-logship-here"))
    assert cluster.run("up", str(cluster.file)).returncode == 1  # without --install: not found
    cluster.hosts.fill_wheelhouse()  # the hosts' package index (they are offline)
    done = cluster.run("up", str(cluster.file), "--install", timeout=170)
    assert done.returncode == 0, done.stderr
    assert "building this logship's wheel" in done.stderr and "installing it into" in done.stderr
    venv_logship = data_dir / "venv" / "bin" / "logship"
    (pid,) = serve_processes(data_dir)
    assert str(venv_logship) in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert list((data_dir / "wheels").glob("logship-*.whl"))
    assert cluster.run("down", str(cluster.file)).returncode == 0
    again = cluster.run("up", str(cluster.file), "--install")
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stderr and "building" not in again.stderr
    assert cluster.run("down", str(cluster.file)).returncode == 0

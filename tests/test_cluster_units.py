"""logship.cluster without SSH: command-line quoting, fingerprints, output parsing, and the
remote status/stop scripts run locally against real processes."""

from __future__ import annotations

import base64
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logship.cluster import remote
from logship.cluster.launch import cluster_secret
from logship.cluster.ssh import HostKey, fingerprint, known_hosts_name
from logship.cluster.trust import recorded_keys
from logship.cluster_file import secret_path

NASTY = "/tmp/a b/it's \"$(touch /tmp/pwned)\"; rm -rf ~ `id` \\ $HOME *"


def test_every_value_reaches_the_script_as_one_argument():
    line = remote.sh('printf "%s\\n" "$@"', NASTY, 7, "x y")
    argv = shlex.split(line)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", NASTY, "7", "x y"]
    ran = subprocess.run(line, shell=True, capture_output=True, text=True, check=True)
    assert ran.stdout.splitlines() == [NASTY, "7", "x y"]
    assert not os.path.exists("/tmp/pwned")


def test_command_lines_quote_paths_and_the_remote_command():
    line = remote.start_command(NASTY, 3, ["/opt/my venv/bin/python", "-m", "logship"])
    argv = shlex.split(line)
    assert argv[4:] == [NASTY, "3", "/opt/my venv/bin/python", "-m", "logship"]
    assert shlex.split(remote.version_command(["/opt/x y/logship"])) == ["/opt/x y/logship", "--version"]
    assert shlex.split(remote.stop_command("/d", 1, 2.5))[4:] == ["/d", "1", "25"]


def test_write_file_command_is_atomic_and_keeps_quotes(tmp_path):
    target = tmp_path / "dir 'x'" / "cluster.secret"
    subprocess.run(remote.write_file_command(str(target), "077"), shell=True, input=b"s3cret\n", check=True)
    assert target.read_bytes() == b"s3cret\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(target.parent) == ["cluster.secret"]


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key_type, blob = key.with_suffix(".pub").read_text().split()[:2]
    expected = subprocess.run(["ssh-keygen", "-lf", str(key.with_suffix(".pub"))], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert fingerprint(base64.b64decode(blob)) == expected == HostKey(key_type, blob).fingerprint
    assert expected.startswith("SHA256:") and not expected.endswith("=") and len(expected) == 7 + 43


def test_fingerprint_of_known_bytes():
    # sha256(b"") = e3b0c442...; its base64 without padding
    assert fingerprint(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


def test_known_hosts_names():
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"
    assert known_hosts_name("fd00::1", 2222) == "[fd00::1]:2222"


def test_recorded_keys_reads_plain_lines(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text("# comment\n10.0.0.1,web ssh-ed25519 AAAA\n[10.0.0.1]:2222 ssh-rsa BBBB\n")
    assert recorded_keys(path, "10.0.0.1") == [(1, HostKey("ssh-ed25519", "AAAA"))]
    assert recorded_keys(path, "[10.0.0.1]:2222") == [(2, HostKey("ssh-rsa", "BBBB"))]
    assert recorded_keys(tmp_path / "missing", "x") == []


def test_parse_outputs():
    assert remote.parse_version("logship, version 0.1.0\n") == "0.1.0"
    assert remote.parse_version("") is None
    assert remote.parse_state("up 123\n") == remote.ProcessState("up", 123)
    assert remote.parse_state("dead 9") == remote.ProcessState("dead", 9)
    assert remote.parse_state("stopped\n") == remote.ProcessState("stopped")
    with pytest.raises(ValueError):
        remote.parse_state("bash: sh: not found")


def test_the_secret_is_made_once_and_kept(tmp_path):
    cluster = tmp_path / "cluster.toml"
    first = cluster_secret(cluster)
    assert len(first) >= 40 and oct(secret_path(cluster).stat().st_mode & 0o777) == "0o600"
    assert cluster_secret(cluster) == first


# --- the status and stop scripts, run here against real processes ---------------------------------


def _fake_broker(broker_id: int, ignore_term: bool = False) -> subprocess.Popen:
    """A process whose command line looks like `logship serve --broker-id N`."""
    code = "import signal, sys, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    process = subprocess.Popen([sys.executable, "-c", code, "logship", "serve", "--broker-id", str(broker_id)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def _sh(line: str) -> str:
    return subprocess.run(line, shell=True, capture_output=True, text=True, timeout=30, check=True).stdout


def test_status_believes_a_pid_only_with_the_right_command_line(tmp_path):
    assert remote.parse_state(_sh(remote.status_command(str(tmp_path), 4))) == remote.ProcessState("stopped")
    process = _fake_broker(4)
    try:
        (tmp_path / "serve.pid").write_text(f"{process.pid}\n")
        assert remote.parse_state(_sh(remote.status_command(str(tmp_path), 4))) == remote.ProcessState("up", process.pid)
        # another broker's id, or a reused pid of some other program: not ours
        assert remote.parse_state(_sh(remote.status_command(str(tmp_path), 44))).state == "dead"
        (tmp_path / "serve.pid").write_text(f"{os.getpid()}\n")
        assert remote.parse_state(_sh(remote.status_command(str(tmp_path), 4))).state == "dead"
        (tmp_path / "serve.pid").write_text("garbage\n")
        assert remote.parse_state(_sh(remote.status_command(str(tmp_path), 4))).state == "dead"
    finally:
        process.kill()
        process.wait()


def test_stop_terminates_then_kills_and_never_signals_a_stranger(tmp_path):
    pid_file = tmp_path / "serve.pid"
    polite, stubborn = _fake_broker(5), _fake_broker(5, ignore_term=True)
    try:
        pid_file.write_text(f"{polite.pid}\n")
        assert _sh(remote.stop_command(str(tmp_path), 5, 5)).split() == ["terminated", str(polite.pid)]
        assert polite.wait(5) == -signal.SIGTERM and not pid_file.exists()

        pid_file.write_text(f"{stubborn.pid}\n")
        started = time.monotonic()
        assert _sh(remote.stop_command(str(tmp_path), 5, 0.5)).split() == ["killed", str(stubborn.pid)]
        assert stubborn.wait(5) == -signal.SIGKILL and time.monotonic() - started < 5
        assert not pid_file.exists()

        stranger = _fake_broker(6)
        try:
            pid_file.write_text(f"{stranger.pid}\n")
            assert _sh(remote.stop_command(str(tmp_path), 5, 1)).split() == ["stale", str(stranger.pid)]
            assert stranger.poll() is None and not pid_file.exists()
        finally:
            stranger.kill()
            stranger.wait()
        assert _sh(remote.stop_command(str(tmp_path), 5, 1)).split() == ["stopped"]
    finally:
        for process in (polite, stubborn):
            process.kill()
            process.wait()


def test_the_example_cluster_file_loads():
    from logship.cluster_file import load

    example = load(Path(__file__).resolve().parent.parent / "examples" / "cluster.toml")
    assert example.ids == (1, 2, 3) and example.replication_factor == 3
    assert example.bootstrap == "10.10.0.1:9092,10.10.0.2:9092,10.10.0.3:9092"
    third = example.broker(3)
    assert (third.ssh_user, third.ssh_host, third.ssh_port) == ("logship", "10.10.0.3", 2222)
    assert third.key_file == "~/.ssh/logship_host3_ed25519" and example.broker(1).key_file == "~/.ssh/logship_ed25519"

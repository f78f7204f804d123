"""Test "hosts" with their own sshd, for `logship cluster` tests (reference/replication.md §4).

`SshHosts.start(workdir, count)` makes `count` hosts. As root with `ip netns` permitted, each
host is a network namespace `lsssh-<pid>-hN` whose veth (10.213.K.N/24) sits on a bridge in
a switch namespace `lsssh-<pid>-sw`; this process reaches the subnet through one more veth
(10.213.K.254) from the root namespace, so no traffic touches the machine's interfaces.
Where namespaces are not permitted, the hosts are loopback addresses 127.0.0.11.. with
their sshd on port 2222 (LOGSHIP_TEST_SSH_LOOPBACK=1 picks those anyway). Each host runs its own `/usr/sbin/sshd -D` (Debian's
openssh-server, installed here if missing) with a host key made by ssh-keygen, one user
key for all, `UsePAM no`, `StrictModes no`, no passwords, its own pid file and
`Subsystem sftp internal-sftp`, and pip told to install from a wheelhouse only
(`fill_wheelhouse`: the hosts have no route out).

Hosts share this machine's file system, so a cluster file can name this virtualenv's
`logship` as remote_logship. Readiness is waited for (port accepting, then a first command
over SSH); a failed setup is retried, never an assertion. Namespaces left by a crashed run
(their pid no longer alive) are removed at start; `close()` kills every sshd by its PID and
deletes the namespaces. Brokers started through the hosts are the tests' to stop
(`kill_brokers`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PREFIX = "lsssh-"
#: The test virtualenv's `logship` (hosts share the file system).
LOCAL_LOGSHIP = str(Path(sys.executable).parent / "logship")
#: What the hosts run: the same logship, with this run's PYTHONPATH (a worktree's code wins over
#: the installed one there too, as it does here).
REMOTE_LOGSHIP = (f"env PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {sys.executable} -m logship"
                  if os.environ.get("PYTHONPATH") else LOCAL_LOGSHIP)


def ensure_sshd() -> None:
    """Install Debian's openssh-server when /usr/sbin/sshd is missing (root only)."""
    if os.path.exists(SSHD):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{SSHD} is missing and cannot be installed (need root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "openssh-server"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale_namespaces() -> None:
    """Delete `lsssh-<pid>-*` namespaces whose creating process is gone."""
    listing = _run("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if match and not _pid_alive(int(match.group(1))):
            _run("ip", "netns", "del", name, check=False)


def namespaces_permitted() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = f"{PREFIX}{os.getpid()}-probe"
    if _run("ip", "netns", "add", probe, check=False).returncode != 0:
        return False
    _run("ip", "netns", "del", probe, check=False)
    return True


@dataclass
class Host:
    """One test host: its address, sshd port, namespace (None on loopback) and sshd."""

    number: int
    address: str
    ssh_port: int
    namespace: str | None
    workdir: Path
    host_key: Path
    sshd: subprocess.Popen | None = None
    veth: str | None = None  # the host's veth in the switch namespace (link down = cut off)

    def command(self, *argv: str) -> list[str]:
        """`argv` to run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else list(argv)

    @property
    def known_hosts_line(self) -> str:
        name = self.address if self.ssh_port == 22 else f"[{self.address}]:{self.ssh_port}"
        key_type, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{name} {key_type} {blob}"

    def start_sshd(self, user_key_pub: Path) -> None:
        config = self.workdir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.ssh_port}", f"ListenAddress {self.address}",
            f"HostKey {self.host_key}", f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {user_key_pub.parent / 'authorized_keys'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp",
            "MaxStartups 50", "LogLevel ERROR", *_pip_settings(user_key_pub.parent / "wheelhouse"), ""]))
        _run(SSHD, "-t", "-f", str(config))
        log = open(self.workdir / "sshd.log", "ab")
        self.sshd = subprocess.Popen(self.command(SSHD, "-D", "-e", "-f", str(config)),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def stop_sshd(self) -> None:
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.send_signal(signal.SIGCONT)
            self.sshd.terminate()
            try:
                self.sshd.wait(5)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait(5)

    def replace_host_key(self) -> None:
        """A new host key (the host "changed"); restart sshd with it."""
        self.stop_sshd()
        for path in (self.host_key, self.host_key.with_suffix(".pub")):
            path.unlink()
        _keygen(self.host_key)


def _pip_settings(wheelhouse: Path) -> list[str]:
    """The hosts' package index, for `cluster up --install`: offline (a namespace has no
    route out), a wheelhouse directory that `SshHosts.fill_wheelhouse` fills."""
    return [f'SetEnv "PIP_NO_INDEX=1" "PIP_FIND_LINKS={wheelhouse}" "PIP_DISABLE_PIP_VERSION_CHECK=1"']


def _keygen(path: Path) -> None:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path))


@dataclass
class SshHosts:
    workdir: Path
    hosts: list[Host]
    user_key: Path
    namespaces: list[str] = field(default_factory=list)
    subnet: int = 0

    @property
    def user_key_pub(self) -> Path:
        return self.user_key.with_suffix(".pub")

    @classmethod
    def start(cls, workdir: Path, count: int = 3, attempts: int = 3) -> "SshHosts":
        ensure_sshd()
        os.makedirs("/run/sshd", exist_ok=True)
        remove_stale_namespaces()
        use_netns = namespaces_permitted() and not os.environ.get("LOGSHIP_TEST_SSH_LOOPBACK")
        error: Exception | None = None
        for attempt in range(attempts):  # retry the setup, never an assertion
            hosts = cls._make(Path(workdir) / f"try{attempt}", count, use_netns)
            try:
                hosts._up()
                return hosts
            except Exception as exc:  # noqa: BLE001 - set-up failed: clean and try again
                error = exc
                hosts.close()
        raise RuntimeError(f"could not start {count} ssh hosts: {error}")

    @classmethod
    def _make(cls, workdir: Path, count: int, use_netns: bool) -> "SshHosts":
        workdir.mkdir(parents=True, exist_ok=True)
        user_key = workdir / "user_ed25519"
        _keygen(user_key)
        (workdir / "authorized_keys").write_text(user_key.with_suffix(".pub").read_text())
        subnet = 1 + os.getpid() % 200
        hosts = []
        for n in range(1, count + 1):
            hostdir = workdir / f"host{n}"
            hostdir.mkdir()
            _keygen(hostdir / "host_ed25519")
            if use_netns:
                hosts.append(Host(n, f"10.213.{subnet}.{n}", 22, f"{PREFIX}{os.getpid()}-h{n}", hostdir,
                                  hostdir / "host_ed25519"))
            else:
                hosts.append(Host(n, f"127.0.0.{10 + n}", 2222, None, hostdir, hostdir / "host_ed25519"))
        made = cls(workdir, hosts, user_key)
        made.subnet = subnet
        return made

    def _up(self) -> None:
        if self.hosts[0].namespace:
            self._make_network()
        for host in self.hosts:
            host.start_sshd(self.user_key_pub)
        for host in self.hosts:
            self._wait_ready(host)

    def _make_network(self) -> None:
        pid, subnet = os.getpid(), self.subnet
        switch = f"{PREFIX}{pid}-sw"
        _run("ip", "netns", "add", switch)
        self.namespaces.append(switch)
        sw = ["ip", "netns", "exec", switch]
        _run(*sw, "ip", "link", "add", "br0", "type", "bridge")
        _run(*sw, "ip", "link", "set", "br0", "up")
        _run(*sw, "ip", "link", "set", "lo", "up")
        # this process's way in: a veth from the root namespace onto the bridge
        root_if, root_peer = f"lsr{pid:x}"[:15], f"lsq{pid:x}"[:15]
        _run("ip", "link", "add", root_if, "type", "veth", "peer", "name", root_peer, "netns", switch)
        _run("ip", "addr", "add", f"10.213.{subnet}.254/24", "dev", root_if)
        _run("ip", "link", "set", root_if, "up")
        _run(*sw, "ip", "link", "set", root_peer, "master", "br0", "up")
        for host in self.hosts:
            _run("ip", "netns", "add", host.namespace)
            self.namespaces.append(host.namespace)
            inside, outside = f"lse{pid:x}{host.number}"[:15], f"lsb{pid:x}{host.number}"[:15]
            hn = ["ip", "netns", "exec", host.namespace]
            _run("ip", "link", "add", inside, "netns", host.namespace, "type", "veth",
                 "peer", "name", outside, "netns", switch)
            _run(*hn, "ip", "addr", "add", f"{host.address}/24", "dev", inside)
            _run(*hn, "ip", "link", "set", inside, "up")
            _run(*hn, "ip", "link", "set", "lo", "up")
            _run(*sw, "ip", "link", "set", outside, "master", "br0", "up")
            host.veth = outside

    def _wait_ready(self, host: Host, timeout: float = 15.0) -> None:
        from logship.cluster.ssh import SshHost

        deadline = time.monotonic() + timeout
        while True:
            if host.sshd.poll() is not None:
                log = (host.workdir / "sshd.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"sshd on {host.address} exited: {log}")
            try:
                with socket.create_connection((host.address, host.ssh_port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {host.address}:{host.ssh_port} never accepted") from None
                time.sleep(0.02)
        known = self.workdir / "ready_known_hosts"
        known.write_text(host.known_hosts_line + "\n")
        with SshHost(host.address, host.ssh_port, "root", str(self.user_key), str(known)) as ssh:
            result = ssh.run("echo ready", timeout=max(1.0, deadline - time.monotonic()))
            if result.stdout.strip() != "ready":
                raise RuntimeError(f"first command on {host.address} said {result}")

    def fill_wheelhouse(self) -> Path:
        """Download logship's dependencies (as this machine finds them) into the hosts'
        wheelhouse, so that pip on a host can install logship's wheel."""
        from importlib.metadata import requires

        wanted = [r for r in requires("logship") or () if "extra ==" not in r]
        wheelhouse = self.workdir / "wheelhouse"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
                        "-d", str(wheelhouse), *wanted], check=True, capture_output=True, timeout=300)
        return wheelhouse

    def write_known_hosts(self, path: Path, hosts: list[Host] | None = None) -> Path:
        path.write_text("".join(h.known_hosts_line + "\n" for h in (self.hosts if hosts is None else hosts)))
        return path

    def cluster_file(self, path: Path, data_dirs: list[Path], known_hosts: Path,
                     remote_logship: str = REMOTE_LOGSHIP, broker_port: int = 9092,
                     hosts: list[Host] | None = None) -> Path:
        """Write a cluster file with one broker per host (ids 1..N) and return its path."""
        lines = ["[cluster]", 'name = "test"', f'ssh_key = "{self.user_key}"',
                 f'known_hosts = "{known_hosts}"', f'remote_logship = "{remote_logship}"', ""]
        for host, data_dir in zip(self.hosts if hosts is None else hosts, data_dirs):
            lines += ["[[broker]]", f"id = {host.number}", f'ssh = "root@{host.address}:{host.ssh_port}"',
                      f'listen = "{host.address}:{broker_port}"', f'data_dir = "{data_dir}"', ""]
        path.write_text("\n".join(lines))
        return path

    def close(self) -> None:
        """Kill every sshd and what it started (sessions, brokers) by PID, then delete the
        namespaces. An sshd's session processes outlive it, and one whose client vanished
        with a deleted namespace would wait for ever."""
        for host in self.hosts:
            if host.namespace and host.namespace in self.namespaces:
                pids = _run("ip", "netns", "pids", host.namespace, check=False).stdout.split()
                _kill([int(p) for p in pids if p.isdigit()])
            elif host.sshd is not None:
                _kill(_descendants(host.sshd.pid))
            host.stop_sshd()
        for namespace in reversed(self.namespaces):
            _run("ip", "netns", "del", namespace, check=False)
        self.namespaces.clear()


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc (children first found, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break


def serve_processes(data_dir: Path | None = None) -> list[int]:
    """PIDs of live `logship serve` processes (optionally only those with `data_dir` in their
    command line, as `cluster up` starts them: --cluster DATA_DIR/cluster.toml)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if "serve" in words and any("logship" in w for w in words):
            if data_dir is None or any(str(data_dir) in w for w in words):
                found.append(int(entry))
    return found


def kill_brokers(data_dirs: list[Path]) -> None:
    """SIGKILL every `logship serve` a test started in these data directories (by PID)."""
    for data_dir in data_dirs:
        for pid in serve_processes(data_dir):
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

"""`logship cluster up`: start every broker of a cluster file on its host, over SSH.

For each broker, in parallel: connect (strict host keys); check that the host's
`remote_logship --version` is this logship's version (or, with a wheel to install, use
DATA_DIR/venv/bin/logship, installing the wheel there first: install.py); create DATA_DIR
and DATA_DIR/logs; write DATA_DIR/cluster.toml (the cluster file's text) and
DATA_DIR/cluster.secret (mode 0600, sent on stdin, never in argv), unless a live
`logship serve` of this broker already runs ("already running, pid N": nothing is
touched; the start script checks again just before starting); start it detached
(remote.py) and wait for a new `logship: listening on` line in its log. A broker whose
process dies or does not listen in time fails with the log's last lines.

The cluster's secret is made on the operator's machine at the first `up`
(secrets.token_urlsafe(32)), kept beside the cluster file (`secret_path`, mode 0600) and
reused afterwards, so every broker of the cluster gets the same one.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import __version__
from ..cluster_file import CLUSTER_FILE_NAME, SECRET_FILE_NAME, BrokerSpec, ClusterFile, secret_path
from ..errors import ConfigError, SshError
from . import remote
from .connect import host_of, remote_logship
from .parallel import Outcome, for_each_broker
from .ssh import SshHost

__all__ = ["Started", "up", "cluster_secret", "check_version", "StartError"]

#: Seconds a broker has to print its listening line after it was started.
DEFAULT_WAIT_S = 30.0
#: Seconds allowed for a short command (mkdir, writing a file, --version).
SHORT_S = 20.0


class StartError(SshError):
    """A broker was reached but did not start; `log_tail` holds its log's last lines."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True)
class Started:
    pid: int
    listening: str  # the line the broker printed


def cluster_secret(cluster_path: str | os.PathLike) -> str:
    """The cluster's secret from `secret_path(FILE)`, made there (mode 0600) if missing."""
    path = secret_path(cluster_path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the cluster secret {path}: {exc.strerror or exc}") from None
        if len(secret) < 16:
            raise ConfigError(f"the cluster secret {path} is shorter than 16 characters; remove it to make a new one")
        return secret
    except OSError as exc:
        raise ConfigError(f"cannot create the cluster secret {path}: {exc.strerror or exc}") from None
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


def check_version(host: SshHost, logship: list[str]) -> None:
    """Refuse (SshError) unless `logship --version` on the host says this logship's version."""
    result = host.run(remote.version_command(logship), timeout=SHORT_S)
    shown = " ".join(logship)
    if result.status == 127:
        raise SshError(f"{host.where}: {shown!r} not found ({result.output or 'exit status 127'}); "
                       f"set remote_logship in the cluster file, or use --install")
    version = remote.parse_version(result.stdout)
    if result.status != 0 or version is None:
        raise SshError(f"{host.where}: {shown} --version failed (exit status {result.status}): "
                       f"{result.output[:200] or 'no output'}")
    if version != __version__:
        raise SshError(f"{host.where}: {shown} is version {version}, this logship is {__version__}; "
                       f"install {__version__} there, or use --install")


def up(cluster: ClusterFile, cluster_path: str | os.PathLike, *, wheel: Callable[[], Path] | None = None,
       wait_s: float = DEFAULT_WAIT_S, connect_timeout: float = 10.0,
       on_line: Callable[[BrokerSpec, str], None] | None = None) -> list[Outcome]:
    """Start every broker; an Outcome per broker whose value is a Started, or whose error says
    why not (HostKeyError, HostUnreachableError, StartError, SshError). With `wheel` (a
    function giving the wheel to install, called only for hosts that need it), each broker
    runs DATA_DIR/venv/bin/logship, installed there (install.py)."""
    secret = cluster_secret(cluster_path)
    text = Path(cluster_path).read_text(encoding="utf-8")
    say = on_line or (lambda spec, line: None)

    def start(spec: BrokerSpec) -> Started:
        with host_of(cluster, spec, connect_timeout) as host:
            say(spec, f"connected to {host.where}")
            logship = remote_logship(cluster)
            if wheel is not None:
                from .install import install

                logship = install(host, spec.data_dir, wheel, lambda line: say(spec, line))
            check_version(host, logship)
            _refuse_if_running(host, spec)  # before touching its files
            _write(host, os.path.join(spec.data_dir, CLUSTER_FILE_NAME), text.encode(), "022")
            _write(host, os.path.join(spec.data_dir, SECRET_FILE_NAME), secret.encode() + b"\n", "077")
            return _start(host, spec, logship, wait_s, say)

    return for_each_broker(cluster.brokers, start)


def _refuse_if_running(host: SshHost, spec: BrokerSpec) -> None:
    result = host.run(remote.status_command(spec.data_dir, spec.id), timeout=SHORT_S)
    try:
        process = remote.parse_state(result.stdout)
    except ValueError:
        raise SshError(f"{host.where}: cannot check broker {spec.id}'s process: "
                       f"{result.output or f'exit status {result.status}'}") from None
    if process.state == "up":
        raise SshError(f"{host.where}: broker {spec.id} is already running, pid {process.pid}")


def _write(host: SshHost, path: str, data: bytes, umask: str) -> None:
    result = host.run(remote.write_file_command(path, umask), stdin=data, timeout=SHORT_S)
    if result.status != 0:
        raise SshError(f"{host.where}: cannot write {path}: {result.output or f'exit status {result.status}'}")


def _start(host: SshHost, spec: BrokerSpec, logship: list[str], wait_s: float, say) -> Started:
    result = host.run(remote.start_command(spec.data_dir, spec.id, logship), timeout=SHORT_S)
    words = result.stdout.split()
    if result.status == 0 and words[:1] == ["running"]:
        raise SshError(f"{host.where}: broker {spec.id} is already running, pid {words[1]}")
    if result.status != 0 or len(words) != 3 or words[0] != "started":
        raise SshError(f"{host.where}: cannot start broker {spec.id}: "
                       f"{result.output or f'exit status {result.status}'}")
    pid, log_size = int(words[1]), int(words[2])
    say(spec, f"started pid {pid}, waiting for it to listen")
    waited = host.run(remote.wait_command(spec.data_dir, spec.id, log_size, wait_s, pid), timeout=wait_s + SHORT_S)
    first, _, rest = waited.stdout.partition("\n")
    if first.startswith("ready "):
        return Started(pid, first.removeprefix("ready ").strip())
    log = os.path.join(spec.data_dir, remote.LOG_FILE)
    if first == "died":
        raise StartError(f"{host.where}: broker {spec.id} (pid {pid}) exited without listening; "
                         f"its log {log} ends:", rest.rstrip())
    raise StartError(f"{host.where}: broker {spec.id} (pid {pid}) did not listen within {wait_s:g} s "
                     f"(still running; `logship cluster down` stops it); its log {log} ends:", rest.rstrip())

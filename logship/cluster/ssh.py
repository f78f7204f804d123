"""SSH to a cluster host: the one module that imports paramiko.

`SshHost(host, port, user, key_file, known_hosts)` connects over a socket made here
(TCP_NODELAY, connect timeout) with a strict policy: the host key must be in the
logship-owned known_hosts file (`cluster trust` fills it). An unknown key and a changed key
both raise HostKeyError showing the key's SHA256 fingerprint, before anything runs on the
host. Authentication uses the given key file only: no agent, no ~/.ssh keys, no agent
forwarding.

Every remote call has a deadline and cannot hang (paramiko#2599: `exec_command` waits
without a timeout on a dead transport): `run` works in a worker thread joined with a
timeout, the channel has a timeout, and output is read before the exit status (a full
channel window would otherwise block the remote command for ever). Command lines are
strings built by the caller with `shlex.join`; stdin carries data (never secrets in argv).
A host that cannot be reached or does not answer in time raises HostUnreachableError.

`scan_host_key` fetches a host's key with a bare handshake (no authentication) for
`cluster trust`; `fingerprint` formats a key as OpenSSH does: "SHA256:" and the unpadded
base64 of the SHA-256 of the key blob.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import threading
import time
from dataclasses import dataclass

import paramiko

from ..addresses import format_hostport
from ..errors import HostKeyError, HostUnreachableError, SshError

__all__ = ["SshHost", "Completed", "HostKey", "fingerprint", "scan_host_key", "known_hosts_name"]

#: Seconds to open the TCP connection, then to finish the SSH handshake and authentication.
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Completed:
    """What a remote command did: its exit status and its output (bytes, decoded as UTF-8)."""

    status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stderr, else stdout, stripped: what to quote when the command failed."""
        return (self.stderr.strip() or self.stdout.strip())


@dataclass(frozen=True)
class HostKey:
    """A host's public key as known_hosts holds it: type (`ssh-ed25519`) and base64 blob."""

    type: str
    base64: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(base64.b64decode(self.base64))


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob: `SHA256:` + unpadded base64."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: `host` on port 22, else `[host]:port`."""
    return host if port == 22 else f"[{host}]:{port}"


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    where = format_hostport(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise HostUnreachableError(f"{where}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise HostUnreachableError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _call_with_deadline(work, timeout: float, on_timeout, what: str):
    """Run `work()` in a worker thread; past `timeout`, call `on_timeout()` (which closes what
    `work` waits on) and raise HostUnreachableError. Exceptions of `work` pass through."""
    result: dict = {}

    def target():
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"ssh {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        on_timeout()
        raise HostUnreachableError(f"{what}: no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def scan_host_key(host: str, port: int = 22, timeout: float = CONNECT_TIMEOUT) -> HostKey:
    """The key `host` presents in an SSH handshake (nothing is authenticated or run)."""
    sock = _open_socket(host, port, timeout)
    transport = paramiko.Transport(sock)
    where = format_hostport(host, port)

    def handshake() -> HostKey:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return HostKey(key.get_name(), key.get_base64())

    try:
        return _call_with_deadline(handshake, timeout + 1, transport.close, where)
    except paramiko.SSHException as exc:
        raise SshError(f"{where}: SSH handshake failed: {exc}") from None
    except (EOFError, OSError) as exc:
        raise HostUnreachableError(f"{where}: SSH handshake failed: {exc or type(exc).__name__}") from None
    finally:
        transport.close()


class _RefuseUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy that says which key was refused (its fingerprint), for the error line."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(f"{hostname}: unknown host key {key.get_name()} {fingerprint(key.asbytes())} "
                           f"(not in {self.known_hosts}); nothing was run there")


class SshHost:
    """One authenticated SSH connection to one host; see the module docstring.

    Calls from several threads are serialised (one command at a time per host);
    `put` opens its own SFTP session for each transfer.
    """

    def __init__(self, host: str, port: int, user: str, key_file: str | None, known_hosts: str,
                 *, connect_timeout: float = CONNECT_TIMEOUT):
        self.host, self.port, self.user = host, port, user
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self.known_hosts = os.path.expanduser(known_hosts)
        self.connect_timeout = connect_timeout
        self.where = f"{user}@{format_hostport(host, port)}"
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    # --- connection ----------------------------------------------------------------------------

    def connect(self) -> "SshHost":
        client = paramiko.SSHClient()
        if os.path.exists(self.known_hosts):
            try:
                client.load_host_keys(self.known_hosts)
            except (OSError, paramiko.SSHException) as exc:
                raise SshError(f"cannot read the known_hosts file {self.known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(_RefuseUnknownHost(self.known_hosts))
        sock = _open_socket(self.host, self.port, self.connect_timeout)

        def connect():
            client.connect(self.host, self.port, username=self.user, key_filename=self.key_file, sock=sock,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, allow_agent=False, look_for_keys=False)

        def give_up():
            client.close()
            sock.close()

        started = time.monotonic()
        try:
            _call_with_deadline(connect, self.connect_timeout + 1, give_up, self.where)
        except paramiko.BadHostKeyException as exc:
            give_up()
            changed = HostKeyError(
                f"{self.where}: the host key CHANGED: it presents {exc.key.get_name()} "
                f"{fingerprint(exc.key.asbytes())} but {self.known_hosts} has {exc.expected_key.get_name()} "
                f"{fingerprint(exc.expected_key.asbytes())}; nothing was run there")
            changed.hint = ("find out why with the host's owner; if it was reinstalled: "
                            f"logship cluster trust {format_hostport(self.host, self.port)} --replace")
            raise changed from None
        except HostKeyError:
            give_up()
            raise
        except paramiko.AuthenticationException as exc:
            give_up()
            key = f" with the key {self.key_file}" if self.key_file else " (no key file given)"
            raise SshError(f"{self.where}: authentication failed{key}: {exc}") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            give_up()
            if time.monotonic() - started >= self.connect_timeout:  # paramiko's words vary: say what happened
                raise HostUnreachableError(f"{self.where}: no answer within {self.connect_timeout:g} s "
                                           f"(is sshd running there?)") from None
            raise HostUnreachableError(f"{self.where}: SSH failed: {exc or type(exc).__name__}") from None
        self._client = client
        return self

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> "SshHost":
        return self.connect() if self._client is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport() if self._client else None
        if transport is None or not transport.is_active():
            raise HostUnreachableError(f"{self.where}: the SSH connection is closed")
        return transport

    # --- commands ------------------------------------------------------------------------------

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 30.0) -> Completed:
        """Run `command` (a shell command line, quoted with shlex.join by the caller), send
        `stdin` then EOF, and return its status and output; HostUnreachableError past `timeout`."""
        with self._lock:
            transport = self._transport()
            deadline = time.monotonic() + timeout
            channels: list[paramiko.Channel] = []

            def work() -> Completed:
                channel = transport.open_session(timeout=timeout)
                channels.append(channel)
                channel.settimeout(timeout)
                channel.exec_command(command)
                if stdin:
                    channel.sendall(stdin)
                channel.shutdown_write()
                return _collect(channel, deadline, self.where)

            def give_up():
                for channel in channels:
                    channel.close()

            try:
                return _call_with_deadline(work, timeout, give_up, f"{self.where}: {_short(command)}")
            except paramiko.SSHException as exc:
                raise HostUnreachableError(f"{self.where}: SSH failed: {exc}") from None
            except (EOFError, OSError) as exc:
                raise HostUnreachableError(f"{self.where}: SSH failed: {exc or type(exc).__name__}") from None
            finally:
                give_up()

    def put(self, local_path: str, remote_path: str, timeout: float = 300.0) -> None:
        """Copy a local file to the host over its own SFTP session (paramiko#718: one per transfer)."""
        with self._lock:
            transport = self._transport()
            sessions: list[paramiko.SFTPClient] = []

            def work() -> None:
                sftp = paramiko.SFTPClient.from_transport(transport)
                sessions.append(sftp)
                sftp.get_channel().settimeout(timeout)
                sftp.put(local_path, remote_path)

            def give_up():
                for sftp in sessions:
                    sftp.close()

            try:
                _call_with_deadline(work, timeout, give_up, f"{self.where}: sftp put {remote_path}")
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise SshError(f"{self.where}: cannot copy {local_path} to {remote_path}: {exc}") from None
            finally:
                give_up()


def _collect(channel, deadline: float, where: str) -> Completed:
    """Read stdout and stderr until the command exits and both are drained."""
    out, err = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise HostUnreachableError(f"{where}: the command did not finish in time")
        select.select([channel], [], [], min(left, 0.02))
    status = channel.recv_exit_status()  # ready: returns at once
    return Completed(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _short(command: str) -> str:
    return command if len(command) <= 60 else command[:57] + "..."

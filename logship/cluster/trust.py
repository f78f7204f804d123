"""`cluster trust HOST[:PORT]`: record a host's SSH key in logship's own known_hosts file.

The operator's explicit trust-on-first-use: the key comes from a bare SSH handshake
(nothing is authenticated or run), its SHA256 fingerprint is shown, and a line
`NAME KEYTYPE BASE64` is added, NAME being `host` on port 22 and `[host]:port` otherwise
(as OpenSSH and paramiko look it up). The file and its directory are created 0600/0700.
A host already recorded with the same key is left alone; with a different key of the same
type it is refused unless `replace` (the key changed: that is what the strict check exists
to catch), and then the old line is dropped. Every other logship command refuses unknown
and changed keys (ssh.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import HostKeyError, SshError
from .ssh import HostKey, known_hosts_name, scan_host_key

__all__ = ["Trusted", "trust", "recorded_keys"]


@dataclass(frozen=True)
class Trusted:
    name: str  # as known_hosts names the host
    key: HostKey
    action: str  # "added", "already trusted", "replaced"
    replaced: HostKey | None = None


def recorded_keys(known_hosts: Path, name: str) -> list[tuple[int, HostKey]]:
    """(line index, key) of every plain (unhashed) line of `known_hosts` naming `name`."""
    try:
        lines = known_hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for index, line in enumerate(lines):
        fields = line.split()
        if len(fields) >= 3 and not line.lstrip().startswith("#") and name in fields[0].split(","):
            found.append((index, HostKey(fields[1], fields[2])))
    return found


def trust(host: str, port: int, known_hosts: str, *, replace: bool = False, timeout: float = 10.0) -> Trusted:
    """Fetch `host`'s key and record it in `known_hosts`; see the module docstring."""
    path = Path(os.path.expanduser(known_hosts))
    key = scan_host_key(host, port, timeout)
    name = known_hosts_name(host, port)
    recorded = recorded_keys(path, name)
    if any(old == key for _, old in recorded):
        return Trusted(name, key, "already trusted")
    changed = [(index, old) for index, old in recorded if old.type == key.type]
    if changed and not replace:
        raise HostKeyError(f"{name}: the host key CHANGED: it presents {key.type} {key.fingerprint} but {path} "
                           f"has {changed[0][1].fingerprint}; if the host was really reinstalled, "
                           f"run again with --replace")
    drop = {index for index, _ in changed}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        kept = [line for index, line in enumerate(lines) if index not in drop]
        kept.append(f"{name} {key.type} {key.base64}")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(kept) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise SshError(f"cannot write the known_hosts file {path}: {exc.strerror or exc}") from None
    return Trusted(name, key, "replaced" if changed else "added", changed[0][1] if changed else None)

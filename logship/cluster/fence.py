"""The fence: a marker in a removed broker's data directory, written over SSH.

`logship cluster remove BROKER` takes a dead replica out of the replica sets; the fence
keeps it from coming back as a leader with a stale log. It is DATA_DIR/fenced, JSON:

    {"removed_at_epoch": E, "by": "who removed it", "at": "2026-12-04T21:00:00+00:00"}

`write_fence` writes it atomically (a temporary file beside it, then mv), so a reader sees
the whole marker or none; `read_fence` returns it as a dict, or None when there is none;
`clear_fence` removes it (`logship cluster add`).
Both take a connected SshHost (connect.host_of).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from ..cluster_file import FENCE_FILE_NAME
from ..errors import SshError
from . import remote
from .ssh import SshHost

__all__ = ["FENCE_FILE_NAME", "write_fence", "read_fence", "clear_fence"]


def write_fence(host: SshHost, data_dir: str, removed_at_epoch: int, by: str,
                at: datetime | None = None, timeout: float = 20.0) -> dict:
    """Write DATA_DIR/fenced on `host`; returns what was written."""
    marker = {"removed_at_epoch": int(removed_at_epoch), "by": by,
              "at": (at or datetime.now(timezone.utc)).isoformat(timespec="seconds")}
    path = os.path.join(data_dir, FENCE_FILE_NAME)
    result = host.run(remote.write_file_command(path), stdin=json.dumps(marker).encode() + b"\n", timeout=timeout)
    if result.status != 0:
        raise SshError(f"{host.where}: cannot write the fence {path}: {result.output or result.status}")
    return marker


def read_fence(host: SshHost, data_dir: str, timeout: float = 20.0) -> dict | None:
    """DATA_DIR/fenced on `host` as a dict, or None if the broker is not fenced."""
    path = os.path.join(data_dir, FENCE_FILE_NAME)
    result = host.run(remote.read_file_command(path), timeout=timeout)
    head, _, body = result.stdout.partition("\n")
    if result.status != 0 or head not in ("present", "absent"):
        raise SshError(f"{host.where}: cannot read {path}: {result.output or result.status}")
    if head == "absent":
        return None
    try:
        marker = json.loads(body)
    except ValueError:
        raise SshError(f"{host.where}: the fence {path} is not JSON: {body[:100]!r}") from None
    if not isinstance(marker, dict):
        raise SshError(f"{host.where}: the fence {path} is not a JSON object")
    return marker


def clear_fence(host: SshHost, data_dir: str, timeout: float = 20.0) -> bool:
    """Remove DATA_DIR/fenced on `host`; True if there was one."""
    path = os.path.join(data_dir, FENCE_FILE_NAME)
    result = host.run(remote.sh('if [ -e "$1" ]; then rm -f -- "$1" && echo removed; else echo absent; fi', path),
                      timeout=timeout)
    if result.status != 0 or result.stdout.strip() not in ("removed", "absent"):
        raise SshError(f"{host.where}: cannot remove the fence {path}: {result.output or result.status}")
    return result.stdout.strip() == "removed"

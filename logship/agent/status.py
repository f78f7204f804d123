"""`logship agent --status`: how far each checkpointed file has been shipped.

Reads the state directory without locking it (the checkpoint file is replaced atomically,
so a running agent never shows a half-written one) and compares each checkpoint with
the file on disk now:

    shipped     offset up to which every line was acknowledged by the broker
    size        the file's size now (None if it is gone)
    behind      size - shipped: bytes not shipped (or not acknowledged) yet
    status      "current" (caught up), "behind", "gone" (no file at that path, or another
                file there now, e.g. after rotation), "replaced" (same inode, other content)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import LogshipError
from .checkpoint import STATE_FILE, FileState
from .identity import head_matches
from .lock import holder

__all__ = ["file_status", "agent_pid"]


def agent_pid(state_dir: Path) -> int | None:
    """The pid of the agent running on `state_dir`, or None."""
    return holder(Path(state_dir))


def file_status(state_dir: Path) -> list[dict]:
    """One dict per checkpointed file: path, shipped, size, behind, status; ordered by path."""
    state_dir = Path(state_dir)
    try:
        doc = json.loads((state_dir / STATE_FILE).read_bytes())
        states = [FileState.from_json(entry) for entry in doc["files"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LogshipError(f"cannot read the checkpoints in {state_dir / STATE_FILE}: {exc}") from None
    rows = []
    for state in states:
        size, status = None, "gone"
        try:
            fd = os.open(state.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None:
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == state.id.inode:
                    if head_matches(fd, state.fingerprint) and st.st_size >= state.offset:
                        size = st.st_size
                        status = "current" if size == state.offset else "behind"
                    else:
                        status = "replaced"
            finally:
                os.close(fd)
        rows.append({"path": state.path, "shipped": state.offset, "size": size,
                     "behind": size - state.offset if size is not None else None, "status": status,
                     "updated": state.updated or None})
    rows.sort(key=lambda row: (row["path"], row["status"] != "gone"))
    return rows


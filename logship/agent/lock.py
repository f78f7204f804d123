"""One agent per state directory: `<state_dir>/lock`, held with flock for the agent's life.

Two agents sharing checkpoints would each ship every line and overwrite each other's
offsets (Filebeat's duplicate-ID and Fluent Bit's shared-DB failures), so the second one
refuses to start and names the first one's pid. The kernel drops the lock when the holder
dies, so a crash (even SIGKILL) never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import ConfigError, StoreLockedError

__all__ = ["LOCK_FILE", "acquire", "release", "holder"]

LOCK_FILE = "lock"


def acquire(state_dir: Path) -> int:
    """Create `state_dir` if needed and lock it; returns the lock's fd.
    Raises StoreLockedError naming the pid of the agent that holds it."""
    path = state_dir / LOCK_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot use {state_dir} as the agent's state directory: "
                          f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        who = f" (pid {pid})" if pid.isdigit() else ""
        raise StoreLockedError(
            f"another logship agent{who} is already using the state directory {state_dir}; "
            f"stop it first, or give this one its own --state-dir (lock file {path})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(fd: int) -> None:
    """Unlock and close; the file stays (removing it would race a new agent)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(state_dir: Path) -> int | None:
    """The pid of the agent holding the lock, or None if nobody does."""
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(pid) if pid.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

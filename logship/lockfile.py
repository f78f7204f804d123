"""Locks that keep a second process off a directory: flock on a file holding the owner's pid.

The lock is fcntl.flock(LOCK_EX | LOCK_NB) on an open file description, so a second opener
in the same process is refused too, and the kernel drops it when the holder dies: a crash,
even SIGKILL, never leaves a stale lock. The file holds the holder's pid for messages; it
is never removed (removing it would race a new holder).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from .errors import StoreLockedError

__all__ = ["acquire", "release", "holder"]


def acquire(path: Path, refusal: Callable[[str], str]) -> int:
    """Lock `path` (created if absent) and write our pid into it; returns the fd to release.

    When another process holds it, raises StoreLockedError with the message
    `refusal(who)`, where `who` is " (pid N)" or "" if the pid cannot be read.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StoreLockedError(refusal(f" (pid {pid})" if pid.isdigit() else "")) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(fd: int) -> None:
    """Unlock and close."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(path: Path) -> int | None:
    """The pid of the process holding the lock on `path` (-1 if unreadable), or None if free."""
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

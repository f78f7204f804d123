"""The data directory lock: one Store per directory, across processes and within one.

`<data_dir>/.lock` is held with fcntl.flock(LOCK_EX | LOCK_NB) for the Store's lifetime and
holds the owner's pid, for the error message. flock locks belong to an open file
description, so a second Store in the same process is refused too. The kernel drops the
lock when the process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StoreLockedError

LOCK_FILE = ".lock"


def acquire(data_dir: Path) -> int:
    """Lock `data_dir`; returns the lock file's fd. Raises StoreLockedError if it is held."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise StoreLockedError(
            f"data directory {data_dir} is in use by another logship store{who}; "
            f"only one broker may open it at a time (lock file {path})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(fd: int) -> None:
    """Unlock and close; the lock file itself stays (removing it would race a new owner)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

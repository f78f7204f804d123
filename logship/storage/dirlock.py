"""The data directory lock: one Store per directory, across processes and within one.

`<data_dir>/.lock`, held for the Store's lifetime (see logship.lockfile for how).
"""

from __future__ import annotations

from pathlib import Path

from ..lockfile import acquire as _acquire
from ..lockfile import release

__all__ = ["LOCK_FILE", "acquire", "release"]

LOCK_FILE = ".lock"


def acquire(data_dir: Path) -> int:
    """Lock `data_dir`; returns the lock file's fd. Raises StoreLockedError if it is held."""
    path = data_dir / LOCK_FILE
    return _acquire(path, lambda who: f"data directory {data_dir} is in use by another logship store{who}; "
                                      f"only one broker may open it at a time (lock file {path})")

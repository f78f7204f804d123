"""One agent per state directory: `<state_dir>/lock`, held for the agent's life.

Two agents sharing checkpoints would each ship every line and overwrite each other's
offsets (Filebeat's duplicate-ID and Fluent Bit's shared-DB failures), so the second one
refuses to start and names the first one's pid (see logship.lockfile for the mechanism).
"""

from __future__ import annotations

from pathlib import Path

from .. import lockfile
from ..errors import ConfigError
from ..lockfile import release

__all__ = ["LOCK_FILE", "acquire", "release", "holder"]

LOCK_FILE = "lock"


def acquire(state_dir: Path) -> int:
    """Create `state_dir` if needed and lock it; returns the lock's fd.
    Raises StoreLockedError naming the pid of the agent that holds it."""
    path = state_dir / LOCK_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        return lockfile.acquire(path, lambda who: (
            f"another logship agent{who} is already using the state directory {state_dir}; "
            f"stop it first, or give this one its own --state-dir (lock file {path})"))
    except OSError as exc:
        raise ConfigError(f"cannot use {state_dir} as the agent's state directory: "
                          f"{exc.strerror or exc}") from None


def holder(state_dir: Path) -> int | None:
    """The pid of the agent holding the lock, or None if nobody does."""
    return lockfile.holder(state_dir / LOCK_FILE)

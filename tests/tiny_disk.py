"""A real full disk for tests: a small tmpfs mounted as root, and a file that fills it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str):
    """Mount a tmpfs of `size` (mount's syntax: 4m) on `mountpoint` for the block; skips the
    test when mounting is not allowed (not root)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(path: Path) -> int:
    """Write `path` until the disk under it is full (ENOSPC); returns the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as out:
        for chunk in (1 << 16, 1 << 12, 1):
            block = b"\0" * chunk
            try:
                while True:
                    written += out.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def used_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize

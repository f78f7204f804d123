"""Fault injection for a real broker subprocess: put this directory first on its PYTHONPATH and
set LOGSHIP_TEST_FAIL_SYNC to a path; while a file exists there, every os.fdatasync fails with
EIO, as on a disk that lost a write. Python imports sitecustomize at start-up, before logship
binds os.fdatasync (storage.Partition takes it when a partition opens)."""

import errno
import os

_flag = os.environ.get("LOGSHIP_TEST_FAIL_SYNC")
if _flag:
    _real = os.fdatasync

    def _fdatasync(fd: int) -> None:
        if os.path.exists(_flag):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        _real(fd)

    os.fdatasync = _fdatasync

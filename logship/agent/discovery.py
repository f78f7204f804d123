"""Finding the files to tail: glob rescans decide, watchdog events only hurry them up.

`scan()` expands every input's globs (`**` recursive), drops excluded paths, resolves
symlinks and stats the targets; the result maps each regular file's (device, inode) to
where it was found. A file matched by several globs, or by a symlink and by its own path
(Kubernetes' `current -> app-123.log`), is one inode and so is tailed once; the first
input that matches it wins, and a clash between inputs of different topics is logged once.

The agent rescans every `scan_interval` (1 s by default). A `Watcher` (watchdog) on the
directories of the globs makes it rescan or poll at once when something happens there,
but events are only a cue: the kernel and watchdog coalesce them, a rename out of the
directory looks like a delete, copytruncate gives no truncate event at all, and the queue
can overflow (reference/agents.md §3; an overflow, which watchdog only logs, triggers a
rescan). Nothing is decided from an event. If watchdog
cannot start (inotify watch or instance limits), the agent logs it once and carries on
with scans alone, which miss nothing, only react up to a scan interval later.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import stat
import threading
from dataclasses import dataclass

from .config import InputConfig

__all__ = ["Found", "scan", "watch_dirs", "Watcher"]

log = logging.getLogger("logship.agent")


@dataclass(frozen=True, slots=True)
class Found:
    path: str          # the resolved path (symlinks followed)
    input_index: int
    size: int


def scan(inputs: tuple[InputConfig, ...], warned: set | None = None) -> dict[tuple[int, int], Found]:
    """(dev, ino) -> Found for every regular file the inputs match now."""
    found: dict[tuple[int, int], Found] = {}
    for index, inp in enumerate(inputs):
        for pattern in inp.paths:
            for path in glob.iglob(pattern, recursive=True):
                if inp.exclude and any(fnmatch.fnmatch(path, ex) or fnmatch.fnmatch(os.path.basename(path), ex)
                                       for ex in inp.exclude):
                    continue
                real = os.path.realpath(path)
                try:
                    st = os.stat(real)
                except OSError:  # vanished between glob and stat, or a dangling symlink
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                key = (st.st_dev, st.st_ino)
                other = found.get(key)
                if other is None:
                    found[key] = Found(real, index, st.st_size)
                elif other.input_index != index and inputs[other.input_index].topic != inp.topic \
                        and warned is not None and real not in warned:
                    warned.add(real)
                    log.warning("%s matches inputs %d and %d; shipping it once, to topic %s",
                                real, other.input_index, index, inputs[other.input_index].topic)
    return found


def watch_dirs(inputs: tuple[InputConfig, ...]) -> dict[str, bool]:
    """Directories to watch -> recursive?, from the fixed leading part of every glob."""
    dirs: dict[str, bool] = {}
    for inp in inputs:
        for pattern in inp.paths:
            parts = os.path.abspath(pattern).split(os.sep)
            fixed = []
            for part in parts[:-1]:
                if glob.has_magic(part):
                    break
                fixed.append(part)
            directory = os.sep.join(fixed) or os.sep
            recursive = len(fixed) < len(parts) - 1
            dirs[directory] = dirs.get(directory, False) or recursive
            # a symlinked file's target directory changes too (log rotation behind a link)
            if not glob.has_magic(pattern) and os.path.islink(pattern):
                target = os.path.dirname(os.path.realpath(pattern))
                dirs.setdefault(target, False)
    return dirs


class Watcher:
    """watchdog on the glob directories; sets `rescan` (a file appeared, moved or went) or
    just wakes the agent (a file was written)."""

    def __init__(self, inputs: tuple[InputConfig, ...], wake: threading.Event):
        self.inputs = inputs
        self.wake = wake
        self.rescan = False
        self.observer = None
        self.watched: set[str] = set()
        self._overflow: logging.Handler | None = None

    def start(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is an install requirement
            log.warning("watchdog is not installed; finding changes by scanning only")
            return
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                kind = event.event_type
                if kind in ("created", "moved", "deleted"):
                    watcher.rescan = True
                    watcher.wake.set()
                elif kind in ("modified", "closed") and not event.is_directory:
                    watcher.wake.set()

        class Overflow(logging.Handler):  # watchdog sends no event for a lost queue: rescan
            def emit(self, record):
                if "overflow" in record.getMessage().lower():
                    watcher.rescan = True
                    watcher.wake.set()

        self._overflow = Overflow()
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._overflow)
        try:
            self.observer = Observer()
            handler = Handler()
            for directory, recursive in watch_dirs(self.inputs).items():
                if os.path.isdir(directory):
                    self.observer.schedule(handler, directory, recursive=recursive)
                    self.watched.add(directory)
            self.observer.start()
        except OSError as exc:
            log.warning("cannot watch the log directories (%s); finding changes by scanning only", exc)
            self.stop()

    def stop(self) -> None:
        if self._overflow is not None:
            logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._overflow)
            self._overflow = None
        observer, self.observer = self.observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(5)
            except Exception:  # a dying observer must not stop the agent from exiting
                pass

"""Checkpoints: how far each file has been shipped *and acknowledged*, kept across restarts.

The state directory holds one JSON file, `checkpoints.json`:

    {"version": 1, "files": [
      {"dev": 2049, "ino": 1311, "gen": 3441246284, "fp_len": 1024, "fp": "9f..",
       "offset": 52311, "marker": "a4..", "path": "/var/log/app.log", "updated": 1764000000.5}
    ]}

one entry per file *generation* (a file truncated and refilled is a new generation of the
same inode): its identity (identity.py), the offset up to which every line was
acknowledged by the broker with acks=all, the marker of that offset, and the path it was
last seen at. An offset moves only when the batch carrying the lines before it has been
acknowledged (never when lines are merely read), so a crash loses no line; what it can
duplicate is bounded by the lines read but not yet checkpointed.

Writes are atomic: the new content goes to a temporary file in the same directory, which
is fsynced, renamed over the old one, and the directory fsynced, so a crash leaves either
the old file or the new one. `CheckpointWriter` does that on its own thread, at most once
per `interval`, always writing the latest snapshot it was given (older ones are skipped),
so the tailing loop never waits for a disk. At startup, a file that cannot be parsed is
moved aside (`checkpoints.json.corrupt-<time>`), a warning is logged, and the agent starts
with no checkpoints: every file is read again from the start (duplicates, never loss).
Stray temporary files of an interrupted write are removed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .identity import FileId, Fingerprint, read_marker

__all__ = ["FileState", "Progress", "load_states", "snapshot", "write_states", "CheckpointWriter", "STATE_FILE"]

STATE_FILE = "checkpoints.json"
_TMP_PREFIX = ".checkpoints.json.tmp-"
VERSION = 1
log = logging.getLogger("logship.agent")


class Progress:
    """One step of a file's checkpoint: `end` becomes its offset once `acked` (and every
    earlier step of the same file is). Steps with no record behind them are acked at once.
    `marker`: the marker of `end` when known (the journal keeps it with the step)."""

    __slots__ = ("state", "end", "acked", "marker")

    def __init__(self, state: "FileState", end: int, acked: bool = False, marker: str | None = None):
        self.state = state
        self.end = end
        self.acked = acked
        self.marker = marker

    def to_json(self) -> dict:
        """The step as a checkpoint entry of its file at offset `end` (for the journal)."""
        return {**self.state.to_json(), "offset": self.end, "marker": self.marker}


@dataclass(eq=False)
class FileState:
    """One generation of one file, as checkpointed. `offset` is the acknowledged offset;
    `pending` the steps in flight (runtime only)."""

    id: FileId
    fingerprint: Fingerprint
    offset: int
    path: str
    marker: str | None = None       # marker of offset `marker_at`
    updated: float = 0.0
    marker_at: int = -1
    pending: deque = field(default_factory=deque, repr=False)
    on_drained: list = field(default_factory=list, repr=False)
    dirty: bool = False

    def add(self, end: int, acked: bool = False, marker: str | None = None) -> Progress:
        """A new step; an acked one is applied at once if nothing is in flight before it."""
        step = Progress(self, end, acked, marker)
        self.pending.append(step)
        if acked:
            self.advance()
        return step

    def advance(self) -> bool:
        """Apply the acknowledged steps at the head of `pending`; True if the offset moved."""
        moved = False
        pending = self.pending
        while pending and pending[0].acked:
            step = pending.popleft()
            if step.end != self.offset:
                self.offset = step.end
                moved = True
            if step.marker is not None:
                self.marker, self.marker_at = step.marker, step.end
        if moved:
            self.dirty = True
            self.updated = time.time()
        if not pending and self.on_drained:
            callbacks, self.on_drained = self.on_drained, []
            for callback in callbacks:
                callback()
        return moved

    @property
    def resume_point(self) -> tuple[int, str | None]:
        """(offset, marker or None) where reading goes on: after the steps in flight (the
        journal's batches sent again at a start), else at the acknowledged offset."""
        if self.pending:
            return self.pending[-1].end, self.pending[-1].marker
        return self.offset, self.current_marker

    @property
    def current_marker(self) -> str | None:
        """The marker of `offset`, if known."""
        return self.marker if self.marker_at == self.offset else None

    @property
    def in_flight(self) -> bool:
        return bool(self.pending)

    def to_json(self) -> dict:
        return {"dev": self.id.dev, "ino": self.id.ino, "gen": self.id.gen, "fp_len": self.fingerprint.length,
                "fp": self.fingerprint.digest, "offset": self.offset, "marker": self.current_marker,
                "path": self.path, "updated": round(self.updated, 3)}

    @classmethod
    def from_json(cls, obj: dict) -> "FileState":
        gen, marker, offset = obj.get("gen"), obj.get("marker"), int(obj["offset"])
        if offset < 0 or int(obj["fp_len"]) < 0:
            raise ValueError(f"negative offset or fingerprint length in {obj!r}")
        return cls(FileId(int(obj["dev"]), int(obj["ino"]), int(gen) if gen is not None else None),
                   Fingerprint(int(obj["fp_len"]), str(obj["fp"])), offset, str(obj["path"]),
                   str(marker) if marker else None, float(obj.get("updated") or 0.0),
                   marker_at=offset if marker else -1)


def load_states(state_dir: Path) -> tuple[list[FileState], bool]:
    """(checkpointed file states, whether a state file existed). A corrupt file is moved
    aside with a warning and counts as existing (so `start_position = "end"` does not
    skip data because of it)."""
    path = state_dir / STATE_FILE
    for stray in state_dir.glob(_TMP_PREFIX + "*"):
        try:
            stray.unlink()
        except OSError:
            pass
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], False
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError(f"unknown format version {doc.get('version') if isinstance(doc, dict) else doc!r}")
        states = [FileState.from_json(entry) for entry in doc["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        log.warning("checkpoint file %s is unreadable (%s); moved it to %s and starting without "
                    "checkpoints: files will be read again from the start", path, exc, aside.name)
        return [], True
    return states, True


def snapshot(states: list[FileState], fds: dict[int, int]) -> list[dict]:
    """The entries of a state file for `states`. A changed (dirty) state whose offset has no
    marker yet (its steps had none) and whose file is open (`fds`: id(state) -> descriptor)
    first has it read from the file, so that a restart can tell whether the file was
    rewritten. A marker already known is kept: the file may have been truncated since (a
    copytruncate not noticed yet), and a marker read now would then be lost or wrong, and
    the copy not recognised at a restart. Every state is clean after."""
    entries = []
    for state in states:
        if state.dirty:
            fd = fds.get(id(state)) if state.current_marker is None else None
            if fd is not None:
                try:
                    state.marker = read_marker(fd, state.offset) if state.offset else None
                    state.marker_at = state.offset
                except OSError:
                    pass
            state.dirty = False
        entries.append(state.to_json())
    return entries


def write_states(state_dir: Path, entries: list[dict]) -> None:
    """Atomically replace the state file: temp file, fsync, rename, fsync the directory."""
    data = json.dumps({"version": VERSION, "files": entries}, separators=(",", ":")).encode()
    tmp = state_dir / f"{_TMP_PREFIX}{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, state_dir / STATE_FILE)
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CheckpointWriter(threading.Thread):
    """Writes the latest snapshot given to `submit`, at most once per `interval` seconds."""

    def __init__(self, state_dir: Path, interval: float, on_written=None):
        """`on_written(token)` runs on this thread once the snapshot submitted with `token`
        (and so every earlier one) is durable."""
        super().__init__(name="logship-agent-checkpoint", daemon=True)
        self.on_written = on_written
        self._token = None
        self.state_dir = state_dir
        self.interval = interval
        self.writes = 0
        self.written_at = time.time()  # when the checkpoints were last written (for the metrics)
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._snapshot: list[dict] | None = None
        self._stopping = False
        self._busy = False
        self._last = 0.0

    def submit(self, entries: list[dict], token=None) -> None:
        with self._cond:
            self._snapshot, self._token = entries, token
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._snapshot is None and not self._stopping:
                    self._cond.wait()
                if self._snapshot is None:
                    return
                wait = self._last + self.interval - time.monotonic()
                if wait > 0 and not self._stopping:
                    self._cond.wait(wait)
                    continue
                entries, token, self._snapshot = self._snapshot, self._token, None
                self._busy = True
            try:
                write_states(self.state_dir, entries)
                self.writes += 1
                self.written_at = time.time()
                if token is not None and self.on_written is not None:
                    self.on_written(token)
            except OSError as exc:  # keep going: the next snapshot may succeed (disk full...)
                if self.error is None:
                    log.error("cannot write checkpoints to %s: %s", self.state_dir, exc)
                self.error = exc
            else:
                if self.error is not None:
                    log.info("checkpoints written again to %s", self.state_dir)
                self.error = None
            with self._cond:
                self._busy = False
                self._last = time.monotonic()
                self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.join(timeout)

"""The files the agent tails and the content streams waiting for a file.

A `FileSet` holds, for the agent's loop thread alone:

    states    every checkpoint.FileState to checkpoint: the streams being read, and the
              detached ones still remembered
    tailers   (dev, ino) -> the tailer.Tailer of each open file; one per inode, so a file
              matched by several globs or links is read once
    detached  streams.Detached: checkpointed streams not found (yet), retired generations
              waiting `copytruncate_wait` for their copy, files let go
    held      (dev, ino) -> when first seen, of files held back as the probable copy half of
              a copytruncate (streams.copy_of, copy_begun)
    idle      (dev, ino) -> the Detached of a file closed while inactive, not reopened
              while a scan finds it at the size it was closed at

`scan()` (every `scan_interval`, or when watchdog saw a file appear or go) looks at what
the globs match: a known inode only has its path updated; a new one is, in this order,
the inode of a checkpointed stream (resumed), a copy of a detached stream (which goes on
in it, or, shorter than what was read of it, is tailed from its end), a probable copy still
to be held back, or a new file (read from 0, or from its
end on the very first start with `start_position = "end"`). Truncations of tailed files
are noticed before new files are matched, so that a copy finds the stream it continues.

`retire()`: a tailed file was truncated or rewritten in place; its stream is detached
(with its reader, so a copy carries on mid-line), the file goes on as a new stream from
offset 0, and a scan follows at once to find the copy. `let_go()` closes a file, shipping
what its reader held back (`flush`), and keeps its stream detached unless the file is
gone for good (`forget`). `timers()` lets files go (deleted and read to the end, or
deleted for `close_removed_after`; idle for `close_inactive`; no longer matched and idle
for `close_renamed_after`), ships lines held back past their timeout, and gives up on
retired streams (their unread bytes count in `bytes_skipped`) and on detached ones not
seen for `forget_after`.

What a file yields goes through `emit(state, route, lines)` (the agent's: into the open
batches). `dirty` is set whenever the set of states changes, so that the next checkpoint
snapshot is written even if no single state changed.
"""

from __future__ import annotations

import logging
import os
import time

from .checkpoint import FileState
from .config import AgentConfig
from .counters import Counters
from .discovery import Found, scan
from .identity import FileId, Fingerprint, file_id, read_before, read_fingerprint
from .route import Route
from .streams import Detached, continued_in, copy_within, copy_begun, copy_of, resumes_in
from .tailer import OK, TRUNCATED, LineReader, Tailer

__all__ = ["FileSet"]

log = logging.getLogger("logship.agent")


class FileSet:
    """See the module docstring."""

    def __init__(self, config: AgentConfig, counters: Counters, emit):
        self.config = config
        self.counters = counters
        self.emit = emit
        self.tailers: dict[tuple[int, int], Tailer] = {}
        self.states: list[FileState] = []
        self.detached: list[Detached] = []
        self.held: dict[tuple[int, int], float] = {}  # possible copies waiting for a truncate
        self.idle: dict[tuple[int, int], Detached] = {}  # files closed while inactive
        self.warned: set = set()
        self.next_scan = 0.0
        self.last_scan = 0.0
        self.first_start = False
        self.dirty = False

    def restore(self, states: list[FileState], existed: bool, now: float) -> None:
        """Start from the checkpointed `states` (`existed`: whether a state file did)."""
        self.first_start = not existed
        self.states = states
        self.detached = [Detached(s, *s.resume_point, now) for s in states]

    def close_all(self) -> None:
        for tailer in self.tailers.values():
            tailer.close()

    # --- scans -------------------------------------------------------------------------------

    def scan(self, now: float, initial: bool = False) -> None:
        """Look at what the globs match now (`initial`: the first scan of this run)."""
        cfg = self.config
        self.next_scan = now + cfg.scan_interval
        self.last_scan = now
        found = scan(cfg.inputs, self.warned)
        new = []
        for key, where in found.items():
            tailer = self.tailers.get(key)
            if tailer is not None:
                tailer.seen_at = now
                if tailer.path != where.path:
                    log.info("%s is now %s", tailer.path, where.path)
                    tailer.path = tailer.state.path = where.path
                    tailer.state.dirty = True
                continue
            idle = self.idle.get(key)
            if idle is not None:
                if idle.resume == where.size and idle in self.detached:
                    idle.since = now  # still there, still nothing new: no need to open it
                    continue
                self.idle.pop(key, None)
            new.append((key, where))
        for key in list(self.held):
            if key not in found:
                del self.held[key]
        if new:  # notice truncations first, so that a copy finds the stream it continues
            for tailer in list(self.tailers.values()):
                try:
                    status, st = tailer.check(now)
                except OSError:
                    continue
                if status != OK:
                    self.retire(tailer, st, status, now)
        opened = []
        for key, where in new:  # first pass: files the checkpoints know by inode
            result = self._open(where)
            if result is None:
                continue
            fd, fid, st, fp = result
            if not self._resume_by_inode(fd, fid, st, fp, where, now):
                opened.append((fd, fid, st, fp, where))
        for fd, fid, st, fp, where in opened:  # then by content, then as new files
            if not self._adopt_by_content(fd, fid, st, fp, where, now) and \
                    not self._hold(fd, fid, st, fp, where, now, initial):
                self._new_file(fd, fid, st, fp, where, now, initial)

    def _open(self, where: Found):
        try:
            fd = os.open(where.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if where.path not in self.warned:
                self.warned.add(where.path)
                log.warning("cannot open %s: %s", where.path, exc.strerror or exc)
            return None
        try:
            st = os.fstat(fd)
            fid = file_id(fd, st)
            if fid.inode in self.tailers:  # replaced under us by a file already tailed
                os.close(fd)
                return None
            return fd, fid, st, read_fingerprint(fd, st.st_size)
        except OSError:
            os.close(fd)
            return None

    def _start_tailer(self, fd: int, fid: FileId, where: Found, state: FileState, size: int, now: float,
                      reader: LineReader | None = None, tail: bytes = b"", route: Route | None = None,
                      start: int | None = None) -> Tailer:
        """Tail the open file as `state`'s stream, reading on at `start` (default: its offset)
        or with the retired stream's `reader`."""
        route = route or Route(self.config.inputs[where.input_index], where.path, self.config.host)
        if reader is None:
            start = state.offset if start is None else start
            # resuming a UTF-16 file past its byte-order mark: the mark still decides the byte order
            head = os.pread(fd, 2, 0) if start and route.input.encoding == "utf-16" else b""
            reader = LineReader(start, route.input, head)
            if start:
                tail = read_before(fd, start)
        tailer = Tailer(fd, fid, where.path, state, route, reader, size, now, tail)
        self.tailers[fid.inode] = tailer
        self.held.pop(fid.inode, None)
        return tailer

    def _resume_by_inode(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float) -> bool:
        """A checkpointed generation of this very inode: resume it (True), or retire it if
        the content is no longer the same (then False: the file is looked at as new). Two
        that both fit (one fingerprinted further than the other: the journal's steps of a
        file renamed since could not be matched to its checkpoint) are one stream: the one
        further on is resumed, the other forgotten."""
        fits = []
        for d in [d for d in self.detached if d.state.id.inode == fid.inode]:
            if resumes_in(d, fd, fid, st, fp):
                fits.append(d)
            elif d.expires is None:  # the inode now holds something else: this stream is gone
                d.expires = now + self.config.copytruncate_wait
                d.seen_size = max(d.seen_size, d.state.offset)
        if not fits:
            return False
        d = max(fits, key=lambda d: (d.resume, d.state.fingerprint.length))
        for other in fits:
            self.detached.remove(other)
            if other is not d:
                self._forget(other.state)
        state = d.state
        state.id = fid
        state.path = where.path
        self._start_tailer(fd, fid, where, state, st.st_size, now, start=d.resume)
        log.info("%s: resuming at offset %d of %d", where.path, d.resume, st.st_size)
        return True

    def _adopt_by_content(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float) -> bool:
        """Take over a detached stream this new file is a copy of."""
        d = continued_in(self.detached, fd, st, fp)
        if d is None:
            d = copy_within(self.detached, fid, st, fp)
            if d is None:
                return False
            if d.state.offset < st.st_size:  # what it holds is not all acknowledged yet: look again later
                return self._held(fd, fid, now, f"{where.path} is a copy of truncated {d.state.path}: "
                                  "waiting for its lines to be acknowledged")
            self._read_already(fd, fid, st, fp, where, now, d)
            return True
        state = d.state
        self.detached.remove(d)
        if state not in self.states:
            self.states.append(state)
        state.id = fid
        state.path = where.path
        state.dirty = True
        if d.reader is not None:  # a retired generation: go on with its reader
            self._start_tailer(fd, fid, where, state, st.st_size, now, d.reader, d.tail, d.route)
            lost = max(0, d.seen_size - max(st.st_size, d.resume))
            self.counters.bytes_skipped += lost
            log.info("%s is a copy of truncated %s: continuing at offset %d%s", where.path,
                     d.route.path if d.route else "?", d.resume,
                     f" ({lost} bytes written before the truncate were not copied: skipped)" if lost else "")
        else:
            self._start_tailer(fd, fid, where, state, st.st_size, now, start=d.resume)
            log.info("%s has the content of checkpointed %s: resuming at offset %d", where.path,
                     d.route.path if d.route else state.path, d.resume)
        return True

    def _read_already(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float, d: Detached) -> None:
        """The file is a copy of `d`, shorter than what was read of it, and all it holds is
        acknowledged: tail it from its end as a new stream. `d` waits out its time as if no
        copy had come (its checkpoint kept meanwhile, so that a restart's journal steps find
        it), but matches no other file."""
        d.copied = True
        state = FileState(fid, fp, st.st_size, where.path, updated=time.time(), dirty=True)
        self.states.append(state)
        self._start_tailer(fd, fid, where, state, st.st_size, now)
        log.info("%s is a copy of truncated %s, shorter than what was read of it (%d of %d bytes): "
                 "nothing in it is read again", where.path, d.route.path if d.route else d.state.path,
                 st.st_size, d.resume)

    def _hold(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float, initial: bool) -> bool:
        """A file that is probably the copy half of a copytruncate: wait (up to
        copytruncate_wait) for the truncate, or for the copy to be written."""
        tailers = self.tailers.values()
        source = copy_of(tailers, fd, st, fp) if fp.complete else \
            None if initial else copy_begun(tailers, self.detached, fd, fp)
        if source is None:
            return False
        return self._held(fd, fid, now, f"{where.path} looks like a copy of {source}: "
                          "waiting for the original to be truncated")

    def _held(self, fd, fid: FileId, now: float, why: str) -> bool:
        """Hold the file back (closed, looked at again by the next scans) for up to
        copytruncate_wait from when it was first held (True), then no longer (False);
        `why` is logged when it is first held."""
        first = self.held.setdefault(fid.inode, now)
        if now - first >= self.config.copytruncate_wait:
            return False
        if first == now:
            log.info("%s (up to %g s)", why, self.config.copytruncate_wait)
        os.close(fd)
        return True

    def _new_file(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float, initial: bool) -> None:
        inp = self.config.inputs[where.input_index]
        offset = 0
        if initial and self.first_start and inp.start_position == "end":
            offset = st.st_size
        state = FileState(fid, fp, offset, where.path, updated=time.time(), dirty=True)
        self.states.append(state)
        self._start_tailer(fd, fid, where, state, st.st_size, now)
        log.info("%s: new file, reading from offset %d of %d", where.path, offset, st.st_size)

    # --- what happened to files --------------------------------------------------------------

    def retire(self, tailer: Tailer, st, status: str, now: float) -> None:
        """The tailed file was truncated or rewritten: its old content becomes a retired
        stream (a copy may take it over), and the file goes on as a new one from 0."""
        old = tailer.state
        position = tailer.position
        seen = max(tailer.last_good_size, position)
        self.detached.append(Detached(old, position, tailer.marker, now,
                                      expires=now + self.config.copytruncate_wait, reader=tailer.reader,
                                      route=tailer.route, seen_size=seen, tail=tailer.tail))
        fp = read_fingerprint(tailer.fd, st.st_size)
        state = FileState(tailer.id, fp, 0, tailer.path, updated=time.time(), dirty=True)
        self.states.append(state)
        self.dirty = True
        tailer.state = state
        tailer.reader = LineReader(0, tailer.route.input)
        tailer.tail = b""
        tailer.checked_size = st.st_size
        tailer.size = st.st_size
        log.info("%s was %s (size %d, read up to %d): reading it again from offset 0", tailer.path,
                 "truncated" if status == TRUNCATED else "rewritten in place", st.st_size, position)
        self.next_scan = 0.0  # look for the copy now

    def let_go(self, tailer: Tailer, now: float, flush: bool, forget: bool = False, idle: bool = False) -> None:
        """Close a file: ship what it held back (`flush`), and keep its checkpoint as a
        detached stream unless it is gone for good (`forget`)."""
        if flush and tailer.route.partition is not None:
            self.emit(tailer.state, tailer.route, tailer.reader.flush_all())
        tailer.close()
        self.tailers.pop(tailer.id.inode, None)
        if forget:
            self._forget(tailer.state)
        else:
            state = tailer.state
            marker = tailer.marker
            state.marker, state.marker_at = marker, tailer.position
            detached = Detached(state, tailer.position, marker, now, route=tailer.route, idle=idle)
            self.detached.append(detached)
            if idle:
                self.idle[tailer.id.inode] = detached

    def _forget(self, state: FileState) -> None:
        """Stop checkpointing `state`."""
        if state in self.states:
            self.states.remove(state)
            self.dirty = True

    def timers(self, now: float) -> None:
        """Let files go, ship what waited too long, give up on detached streams (see the
        module docstring)."""
        cfg = self.config
        for tailer in list(self.tailers.values()):
            reader = tailer.reader
            if tailer.at_eof and reader.holding and reader.due(now) and tailer.route.partition is not None:
                self.emit(tailer.state, tailer.route, reader.flush_due(now))
            if tailer.deleted_at is not None:
                if tailer.at_eof:
                    self.let_go(tailer, now, flush=True, forget=True)
                    log.info("%s: closed the deleted file after reading it to the end (offset %d)",
                             tailer.path, tailer.position)
                elif now - tailer.deleted_at >= cfg.close_removed_after:
                    lost = max(0, tailer.size - tailer.position)
                    self.counters.bytes_skipped += lost
                    self.let_go(tailer, now, flush=True, forget=True)
                    log.warning("%s: closed the deleted file after %g s with %d bytes unread (skipped) "
                                "to free its disk space", tailer.path, cfg.close_removed_after, lost)
            elif tailer.at_eof and not reader.holding and not tailer.state.in_flight \
                    and now - tailer.grew_at >= cfg.close_inactive and tailer.seen_at >= self.last_scan:
                self.let_go(tailer, now, flush=False, idle=True)
                log.info("%s: idle for %g s; closed it at offset %d until it changes", tailer.path,
                         cfg.close_inactive, tailer.position)
            elif tailer.seen_at < self.last_scan and tailer.at_eof \
                    and now - tailer.grew_at >= cfg.close_renamed_after:
                self.let_go(tailer, now, flush=True)
                log.info("%s: no longer matched and idle for %g s; closed it at offset %d",
                         tailer.path, cfg.close_renamed_after, tailer.position)
        for d in list(self.detached):
            if d.expires is not None and now >= d.expires:
                self.detached.remove(d)
                if d.reader is not None:
                    lost = max(0, d.seen_size - d.resume)
                    if lost:
                        self.counters.bytes_skipped += lost
                        log.warning("%s: %d bytes were truncated before they could be read (skipped)",
                                    d.route.path if d.route else d.state.path, lost)
                    if d.route is not None and d.route.partition is not None:
                        self.emit(d.state, d.route, d.reader.flush_all())
                self._forget(d.state)
            elif d.expires is None and now - d.since >= cfg.forget_after:
                self.detached.remove(d)
                self._forget(d.state)
                log.info("forgot the checkpoint of %s (not seen for %g s)", d.state.path, cfg.forget_after)


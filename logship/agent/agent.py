"""The agent: discovery, tailing, batching and checkpoints tied together in one loop.

One thread (the caller of `run()`) does everything that touches files: scans, fstat
checks, reads, line cutting, record encoding and checkpoint snapshots. Two helper
threads do the waiting: the Shipper (compression, network, retries) and the
CheckpointWriter (fsync). watchdog's observer only wakes the loop. Each turn of the loop:

1. rescan the globs if `scan_interval` passed or watchdog saw a file appear or go;
2. for every tailed file: fstat it (truncated? rewritten? deleted?) and, while fewer than
   `queue_bytes` wait for the broker, read up to `read_bytes` and turn them into records
   in the open batch of the file's partition (a file's lines always go to one partition,
   so they stay in order);
3. hand full or lingered batches to the shipper, and apply its acknowledgements to the
   files' checkpoints; snapshot the checkpoints for the writer;
4. timers: lines held back too long, files to let go, retired generations to give up on;
5. sleep until something happens (watchdog, an acknowledgement) or `poll_interval`.

Generations and copies. A file's content stream is a checkpoint.FileState. When a tailed
file is truncated (or rewritten in place), its stream is *retired*: the file goes on as a
new stream from offset 0, and the retired one waits `copytruncate_wait` for a copy of it
to appear (logrotate's copytruncate copies, then truncates): a new file whose complete
fingerprint matches, and whose 32 bytes before the retired read position match too, *is*
that stream, so reading continues in the copy exactly where it stopped in the original:
the lines written between the agent's last read and the truncate are shipped from the
copy and nothing is shipped twice. A copy seen before the truncate (its head and content
match a file being tailed) is held back until the truncate happens or the wait ends; so is
a new file too short to fingerprint (logrotate may have only begun to copy) whose bytes
begin a tailed file, or that appears while a truncated stream waits for its copy. With
no copy, what the original held beyond the last read is counted in `bytes_skipped`. The
same matching recognises, at startup, a checkpointed file that was copied or moved while
the agent was stopped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from ..client import Cluster
from ..compression import codec_by_name
from .batches import OpenBatches
from .checkpoint import CheckpointWriter, FileState, load_states
from .config import AgentConfig, InputConfig
from .counters import Counters
from .discovery import Found, Watcher, scan
from .identity import FileId, Fingerprint, digest, file_id, read_fingerprint, read_marker
from .lines import Lines
from .lock import acquire, release
from .route import Route
from .shipper import Shipper
from .tailer import OK, TRUNCATED, LineReader, Tailer

__all__ = ["Agent"]

log = logging.getLogger("logship.agent")


@dataclass(eq=False)
class Detached:
    """A content stream no open file carries: checkpointed but not found (yet), retired by
    a truncation, or let go. A new file may take it over (see the module docstring)."""

    state: FileState
    resume: int                     # where reading goes on in a file that takes it over
    marker: str | None              # marker of `resume`
    since: float
    expires: float | None = None    # retired: give up on a copy then
    reader: LineReader | None = None
    route: Route | None = None
    seen_size: int = 0
    tail: bytes = b""
    idle: bool = False              # closed while inactive: reopened when its size changes


class Agent:
    def __init__(self, config: AgentConfig, shipper=None):
        """`shipper` replaces the network side (tests drive the file side with a stand-in)."""
        self.config = config
        self.counters = Counters()
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._report = False
        self.tailers: dict[tuple[int, int], Tailer] = {}
        self.states: list[FileState] = []
        self.detached: list[Detached] = []
        self.held: dict[tuple[int, int], float] = {}  # possible copies waiting for a truncate
        self._idle: dict[tuple[int, int], Detached] = {}  # files closed while inactive
        self.batches = OpenBatches(config.batch_bytes, config.linger)
        self._warned: set = set()
        self._lock_fd: int | None = None
        self._next_scan = 0.0
        self._last_scan = 0.0
        self._last_snapshot = 0.0
        self._dirty = False
        self._first_start = False
        self.shipper = shipper
        self.writer: CheckpointWriter | None = None
        self.watcher: Watcher | None = None

    # --- control (any thread, or a signal handler) ---------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    def request_report(self) -> None:
        """Log the counters at the next turn of the loop (SIGUSR1)."""
        self._report = True
        self.wake.set()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Lock the state directory and load checkpoints; StoreLockedError if another agent
        has it."""
        cfg = self.config
        self._lock_fd = acquire(cfg.state_dir)
        try:
            states, existed = load_states(cfg.state_dir)
            self._first_start = not existed
            now = time.monotonic()
            self.states = states
            self.detached = [Detached(s, s.offset, s.current_marker, now) for s in states]
            self.writer = CheckpointWriter(cfg.state_dir, cfg.checkpoint_interval)
            self.writer.start()
            if self.shipper is None:
                self.shipper = Shipper(Cluster(cfg.brokers, client_id="logship-agent",
                                               timeout=cfg.request_timeout),
                                       compression=codec_by_name(cfg.compression), max_in_flight=cfg.max_in_flight,
                                       queue_bytes=cfg.queue_bytes, request_timeout=cfg.request_timeout,
                                       backoff_max=cfg.retry_backoff_max, wake=self.wake)
                self.shipper.start()
            for inp in cfg.inputs:
                self.shipper.partitions(inp.topic)
            if cfg.watch:
                self.watcher = Watcher(cfg.inputs, self.wake)
                self.watcher.start()
        except BaseException:
            self._release()
            raise
        log.info("started: %d input%s, state directory %s, brokers %s%s", len(cfg.inputs),
                 "s" if len(cfg.inputs) != 1 else "", cfg.state_dir, cfg.brokers,
                 f", {len(states)} checkpointed files" if states else " (first start)" if self._first_start else "")

    def run(self) -> Counters:
        """Start (if not yet), tail until stop(), shut down cleanly; returns the counters."""
        if self._lock_fd is None:
            self.start()
        try:
            self.scan(initial=True)
            while not self._stopping.is_set():
                self.turn()
        finally:
            self.shutdown()
        return self.counters

    def scan(self, initial: bool = False) -> None:
        """Rescan the globs now (`initial`: the first scan of this run)."""
        self._scan(time.monotonic(), initial)

    def turn(self, wait: bool = True) -> None:
        """One turn of the loop (see the module docstring); sleeps at the end if idle and `wait`."""
        cfg = self.config
        now = time.monotonic()
        if now >= self._next_scan or (self.watcher is not None and self.watcher.rescan):
            if self.watcher is not None:
                self.watcher.rescan = False
            self._scan(now)
        busy = self._pump(now)
        self.batches.close_due(now)
        self._submit()
        self._acks()
        self._timers(now)
        self._snapshot(now)
        if self._report:
            self._report = False
            log.info("counters: %s", self.counters_now())
        if self.shipper is not None and not self.shipper.is_alive() and not self._stopping.is_set():
            log.error("the shipper stopped; exiting")
            self._stopping.set()
        if not busy and wait:
            timeout = cfg.poll_interval
            due = self.batches.next_due()
            if due is not None:
                timeout = min(timeout, max(due - now, 0.0))
            self.wake.wait(timeout)
            self.wake.clear()

    def counters_now(self) -> Counters:
        self.counters.files = len(self.tailers)
        if self.shipper is not None:
            self.counters.retries = self.shipper.retries
        return self.counters

    def shutdown(self) -> None:
        """Deliver what is batched (up to shutdown_timeout), write checkpoints, unlock."""
        cfg = self.config
        try:
            self.batches.close_due(time.monotonic(), everything=True)
            self._submit()
            if self.shipper is not None:
                if self.shipper.pending:
                    log.info("stopping: waiting up to %g s for %d batches to be acknowledged",
                             cfg.shutdown_timeout, self.shipper.pending)
                delivered = self.shipper.close(cfg.shutdown_timeout)
                self._acks()
                if not delivered:
                    log.warning("stopping with %d batches unacknowledged; their lines will be read "
                                "again at the next start", self.shipper.pending)
            self._snapshot(time.monotonic(), force=True)
        finally:
            if self.watcher is not None:
                self.watcher.stop()
            if self.writer is not None:
                self.writer.close(cfg.shutdown_timeout)
            for tailer in self.tailers.values():
                tailer.close()
            self._release()
            self.counters_now()
            log.info("stopped: %s", self.counters)

    def _release(self) -> None:
        if self._lock_fd is not None:
            release(self._lock_fd)
            self._lock_fd = None

    # --- discovery ---------------------------------------------------------------------------

    def _scan(self, now: float, initial: bool = False) -> None:
        cfg = self.config
        self._next_scan = now + cfg.scan_interval
        self._last_scan = now
        found = scan(cfg.inputs, self._warned)
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
            idle = self._idle.get(key)
            if idle is not None:
                if idle.resume == where.size and idle in self.detached:
                    idle.since = now  # still there, still nothing new: no need to open it
                    continue
                self._idle.pop(key, None)
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
                    self._retire(tailer, st, status, now)
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
            if where.path not in self._warned:
                self._warned.add(where.path)
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

    def _route(self, where: Found) -> Route:
        return Route(self.config.inputs[where.input_index], where.path, self.config.host)

    def _start_tailer(self, fd: int, fid: FileId, where: Found, state: FileState, size: int, now: float,
                      reader: LineReader | None = None, tail: bytes = b"", route: Route | None = None) -> Tailer:
        route = route or self._route(where)
        if reader is None:
            # resuming a UTF-16 file past its byte-order mark: the mark still decides the byte order
            head = os.pread(fd, 2, 0) if state.offset and route.input.encoding == "utf-16" else b""
            reader = LineReader(state.offset, route.input, head)
            if state.offset:
                start = max(0, state.offset - 32)
                tail = os.pread(fd, state.offset - start, start)
        tailer = Tailer(fd, fid, where.path, state, route, reader, size, now, tail)
        self.tailers[fid.inode] = tailer
        self.held.pop(fid.inode, None)
        return tailer

    def _resume_by_inode(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float) -> bool:
        """A checkpointed generation of this very inode: resume it (True), or retire it if
        the content is no longer the same (then False: the file is looked at as new)."""
        for d in [d for d in self.detached if d.state.id.inode == fid.inode]:
            state = d.state
            same = state.id.same_inode(fid) and fp.length >= state.fingerprint.length and \
                digest(os.pread(fd, state.fingerprint.length, 0)) == state.fingerprint.digest
            marker = state.current_marker
            if same and d.reader is None and state.offset <= st.st_size and \
                    (not state.offset or marker is None or read_marker(fd, state.offset) == marker):
                self.detached.remove(d)
                state.id = fid
                state.path = where.path
                self._start_tailer(fd, fid, where, state, st.st_size, now)
                log.info("%s: resuming at offset %d of %d", where.path, state.offset, st.st_size)
                return True
            if d.expires is None:  # the inode now holds something else: this stream is gone
                d.expires = now + self.config.copytruncate_wait
                d.seen_size = max(d.seen_size, state.offset)
        return False

    def _adopt_by_content(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float) -> bool:
        """Take over a detached stream this new file is a copy of (complete fingerprint and
        marker at the resume point both match)."""
        if not fp.complete:
            return False
        for d in self.detached:
            state = d.state
            if state.fingerprint != fp or not d.resume or d.resume > st.st_size:
                continue
            if d.marker is None or read_marker(fd, d.resume) != d.marker:
                continue
            self.detached.remove(d)
            if d.state not in self.states:
                self.states.append(d.state)
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
                self._start_tailer(fd, fid, where, state, st.st_size, now)
                log.info("%s has the content of checkpointed %s: resuming at offset %d", where.path,
                         d.route.path if d.route else state.path, state.offset)
            return True
        return False

    def _hold(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float, initial: bool) -> bool:
        """A file that is probably the copy half of a copytruncate: wait (up to
        copytruncate_wait) for the truncate, or for the copy to be written."""
        source = self._copy_of(fd, st, fp) if fp.complete else None if initial else self._copy_begun(fd, fp)
        if source is None:
            return False
        first = self.held.setdefault(fid.inode, now)
        if now - first >= self.config.copytruncate_wait:
            return False
        if first == now:
            log.info("%s looks like a copy of %s: waiting up to %g s for the original to be truncated",
                     where.path, source, self.config.copytruncate_wait)
        os.close(fd)
        return True

    def _copy_of(self, fd, st, fp: Fingerprint) -> str | None:
        """The path of the tailed file whose content this file's is a prefix of, if any."""
        for tailer in self.tailers.values():
            if tailer.state.fingerprint != fp:
                continue
            position = tailer.position
            if st.st_size >= position:  # the copy holds what was read: compare the bytes before it
                tail = tailer.tail
                if os.pread(fd, len(tail), position - len(tail)) != tail:
                    continue
            else:  # a copy still being written, or an older one: compare with the original
                start = max(0, st.st_size - 32)
                original = os.pread(tailer.fd, st.st_size - start, start)
                # An original shorter than the copy was truncated since this scan looked at
                # it: the copy was just finished. Hold it; the next scan sees the truncation.
                if len(original) == st.st_size - start and os.pread(fd, st.st_size - start, start) != original:
                    continue
            return tailer.path
        return None

    def _copy_begun(self, fd, fp: Fingerprint) -> str | None:
        """For a file too short to fingerprint (under 1 KiB: logrotate may have only begun
        to copy): a tailed file it is the beginning of, or a truncated stream still
        waiting for its copy."""
        for tailer in self.tailers.values():
            if digest(os.pread(tailer.fd, fp.length, 0)) == fp.digest:
                return tailer.path
        for d in self.detached:
            if d.reader is not None and d.route is not None:
                return d.route.path
        return None

    def _new_file(self, fd, fid: FileId, st, fp: Fingerprint, where: Found, now: float, initial: bool) -> None:
        inp = self.config.inputs[where.input_index]
        offset = 0
        if initial and self._first_start and inp.start_position == "end":
            offset = st.st_size
        state = FileState(fid, fp, offset, where.path, updated=time.time(), dirty=True)
        self.states.append(state)
        self._start_tailer(fd, fid, where, state, st.st_size, now)
        log.info("%s: new file, reading from offset %d of %d", where.path, offset, st.st_size)

    # --- reading -----------------------------------------------------------------------------

    def _pump(self, now: float) -> bool:
        cfg = self.config
        shipper = self.shipper
        busy = False
        for tailer in list(self.tailers.values()):
            route = tailer.route
            try:
                status, st = tailer.check(now)
            except OSError as exc:
                log.warning("%s: %s; letting it go", tailer.path, exc)
                self._let_go(tailer, now, flush=True)
                continue
            if status != OK:
                self._retire(tailer, st, status, now)
                busy = True
                continue
            if st.st_nlink == 0 and tailer.deleted_at is None:
                tailer.deleted_at = now
                log.info("%s was deleted: reading its last %d bytes, then closing it", tailer.path,
                         max(0, st.st_size - tailer.position))
            if tailer.position >= st.st_size:
                tailer.at_eof = True
                continue
            tailer.at_eof = False
            if route.partition is None:
                count = shipper.partitions(route.topic)
                if count is None:
                    continue
                route.assign(count)
            if not shipper.room():
                continue
            data = tailer.read(cfg.read_bytes)
            if data:
                busy = True
                self._emit(tailer.state, route, tailer.reader.feed(data, now))
        return busy

    def _emit(self, state: FileState, route: Route, lines: Lines) -> None:
        """Records of `lines` into the open batches, with the checkpoint steps they complete."""
        if lines.truncated:
            self.counters.lines_truncated += len(lines.truncated)
        self.batches.add_lines(state, route, lines)

    def _submit(self) -> None:
        closed = self.batches.take_closed()
        if closed:
            self.shipper.submit(closed)

    def _acks(self) -> None:
        touched = set()
        for batch, error in self.shipper.take_done():
            if error is None:
                self.counters.lines += batch.count
                self.counters.bytes += batch.value_bytes
                self.counters.batches += 1
            else:
                self.counters.records_rejected += batch.count
            for step in batch.steps:
                step.acked = True
                touched.add(step.state)
        for state in touched:
            if state.advance():
                self._dirty = True

    # --- what happened to files --------------------------------------------------------------

    def _retire(self, tailer: Tailer, st, status: str, now: float) -> None:
        """The tailed file was truncated or rewritten: its old content becomes a retired
        stream (a copy may take it over), and the file goes on as a new one from 0."""
        old = tailer.state
        position = tailer.position
        seen = max(tailer.last_good_size, position)
        self.detached.append(Detached(old, position, digest(tailer.tail) if tailer.tail else None, now,
                                      expires=now + self.config.copytruncate_wait, reader=tailer.reader,
                                      route=tailer.route, seen_size=seen, tail=tailer.tail))
        fp = read_fingerprint(tailer.fd, st.st_size)
        state = FileState(tailer.id, fp, 0, tailer.path, updated=time.time(), dirty=True)
        self.states.append(state)
        self._dirty = True
        tailer.state = state
        tailer.reader = LineReader(0, tailer.route.input)
        tailer.tail = b""
        tailer.checked_size = st.st_size
        tailer.size = st.st_size
        log.info("%s was %s (size %d, read up to %d): reading it again from offset 0", tailer.path,
                 "truncated" if status == TRUNCATED else "rewritten in place", st.st_size, position)
        self._next_scan = 0.0  # look for the copy now

    def _let_go(self, tailer: Tailer, now: float, flush: bool, forget: bool = False, idle: bool = False) -> None:
        """Close a file: ship what it held back (`flush`), and keep its checkpoint as a
        detached stream unless it is gone for good (`forget`)."""
        if flush and tailer.route.partition is not None:
            self._emit(tailer.state, tailer.route, tailer.reader.flush_all())
        tailer.close()
        self.tailers.pop(tailer.id.inode, None)
        if forget:
            if tailer.state in self.states:
                self.states.remove(tailer.state)
            self._dirty = True
        else:
            state = tailer.state
            marker = digest(tailer.tail) if tailer.tail else None
            state.marker, state.marker_at = marker, tailer.position
            detached = Detached(state, tailer.position, marker, now, route=tailer.route, idle=idle)
            self.detached.append(detached)
            if idle:
                self._idle[tailer.id.inode] = detached

    def _timers(self, now: float) -> None:
        cfg = self.config
        for tailer in list(self.tailers.values()):
            reader = tailer.reader
            if tailer.at_eof and reader.holding and reader.due(now) and tailer.route.partition is not None:
                self._emit(tailer.state, tailer.route, reader.flush_due(now))
            if tailer.deleted_at is not None:
                if tailer.at_eof:
                    self._let_go(tailer, now, flush=True, forget=True)
                    log.info("%s: closed the deleted file after reading it to the end (offset %d)",
                             tailer.path, tailer.position)
                elif now - tailer.deleted_at >= cfg.close_removed_after:
                    lost = max(0, tailer.size - tailer.position)
                    self.counters.bytes_skipped += lost
                    self._let_go(tailer, now, flush=True, forget=True)
                    log.warning("%s: closed the deleted file after %g s with %d bytes unread (skipped) "
                                "to free its disk space", tailer.path, cfg.close_removed_after, lost)
            elif tailer.at_eof and not reader.holding and not tailer.state.in_flight \
                    and now - tailer.grew_at >= cfg.close_inactive and tailer.seen_at >= self._last_scan:
                self._let_go(tailer, now, flush=False, idle=True)
                log.info("%s: idle for %g s; closed it at offset %d until it changes", tailer.path,
                         cfg.close_inactive, tailer.position)
            elif tailer.seen_at < self._last_scan and tailer.at_eof \
                    and now - tailer.grew_at >= cfg.close_renamed_after:
                self._let_go(tailer, now, flush=True)
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
                        self._emit(d.state, d.route, d.reader.flush_all())
                if d.state in self.states:
                    self.states.remove(d.state)
                    self._dirty = True
            elif d.expires is None and now - d.since >= cfg.forget_after:
                self.detached.remove(d)
                if d.state in self.states:
                    self.states.remove(d.state)
                    self._dirty = True
                log.info("forgot the checkpoint of %s (not seen for %g s)", d.state.path, cfg.forget_after)

    # --- checkpoints -------------------------------------------------------------------------

    def _snapshot(self, now: float, force: bool = False) -> None:
        dirty = self._dirty or any(state.dirty for state in self.states)
        if not dirty or (not force and now - self._last_snapshot < self.config.checkpoint_interval):
            return
        by_state = {id(t.state): t for t in self.tailers.values()}
        entries = []
        for state in self.states:
            if state.dirty:
                tailer = by_state.get(id(state))
                if tailer is not None and tailer.fd >= 0:
                    try:
                        state.marker = read_marker(tailer.fd, state.offset) if state.offset else None
                        state.marker_at = state.offset
                    except OSError:
                        pass
                state.dirty = False
            entries.append(state.to_json())
        self._dirty = False
        self._last_snapshot = now
        self.writer.submit(entries)

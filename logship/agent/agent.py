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

Who does what: fileset.py keeps the tailed files and the content streams waiting for a
file (scans, truncations, copytruncate copies, letting files go; streams.py recognises a
found file as a known stream), batches.py packs lines into record batches with their
checkpoint steps, shipper.py delivers them, checkpoint.py writes the snapshots. This
module keeps the loop, the threads' lifecycle (start, stop, shutdown) and the counters.

Invariant: a file's checkpoint moves only past lines whose batch the broker acknowledged
(`_acks`), and a snapshot is handed to the writer at most once per `checkpoint_interval`
(and once more at shutdown, after the last acknowledgements).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import partial

from ..client import Cluster
from ..compression import codec_by_name
from .batches import OpenBatches
from .checkpoint import CheckpointWriter, FileState, load_states, snapshot
from .config import AgentConfig
from .counters import Counters
from .discovery import Watcher
from .fileset import FileSet
from .identity import marker_within, read_marker
from . import journal as journals
from .lines import Lines
from .lock import acquire, release
from .route import Route
from .shipper import Shipper
from .tailer import OK

__all__ = ["Agent"]

log = logging.getLogger("logship.agent")


class Agent:
    """One agent on one state directory: `run()` it on a thread of its own; `stop()` and
    `request_report()` may be called from any thread or a signal handler."""

    def __init__(self, config: AgentConfig, shipper=None):
        """`shipper` replaces the network side (tests drive the file side with a stand-in)."""
        self.config = config
        self.counters = Counters()
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._report = False
        self.files = FileSet(config, self.counters, self._emit)
        self.batches = OpenBatches(config.batch_bytes, config.linger)
        self._lock_fd: int | None = None
        self._last_snapshot = 0.0
        self.shipper = shipper
        self.writer: CheckpointWriter | None = None
        self.watcher: Watcher | None = None
        self.metrics = None  # metrics.AgentMetrics with its endpoint, when the config asks for them
        self._endpoint = None
        self.journal: journals.Journal | None = None  # batches in flight, kept across a kill (journal.py)
        self._recovery: journals.Recovery | None = None
        self._resent: set[int] = set()  # ids of the journal's batches sent again, not yet done
        self._unapplied: list = []  # journaled batches acknowledged, their steps not all applied yet

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
            if cfg.metrics:
                from ..addresses import parse_metrics_address
                from ..metrics_endpoint import MetricsEndpoint
                from .metrics import AgentMetrics

                self.metrics = AgentMetrics()
                self._endpoint = MetricsEndpoint(self.metrics.registry, *parse_metrics_address(cfg.metrics))
                log.info("metrics for Prometheus at %s", self._endpoint.url)
            states, existed = load_states(cfg.state_dir)
            plan = {}
            if self.shipper is None and cfg.idempotence:
                self._recovery = journals.load(cfg.state_dir)
                plan = journals.restore_steps(states, self._recovery)
                existed = existed or bool(self._recovery.entries)
                self.journal = journals.Journal(cfg.state_dir, self._recovery)
            elif self.shipper is None and journals.remove(cfg.state_dir):
                log.info("idempotence is off: removed the journal of batches in flight (lines it held are "
                         "read again from the checkpoints)")
            self.files.restore(states, existed, time.monotonic())
            self.writer = CheckpointWriter(cfg.state_dir, cfg.checkpoint_interval,
                                           self.journal.checkpoint_durable if self.journal is not None else None)
            self.writer.start()
            if self.shipper is None:
                self.shipper = Shipper(Cluster(cfg.brokers, client_id="logship-agent",
                                               timeout=cfg.request_timeout),
                                       compression=codec_by_name(cfg.compression), max_in_flight=cfg.max_in_flight,
                                       queue_bytes=cfg.queue_bytes, request_timeout=cfg.request_timeout,
                                       backoff_max=cfg.retry_backoff_max, wake=self.wake,
                                       idempotence=cfg.idempotence, journal=self.journal, recovery=self._recovery)
                self.shipper.start()
                self._resent = {id(batch) for batch in self.shipper.resend(plan)}
                if self.journal is not None and not self._resent:
                    self._recovered()
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
                 f", {len(states)} checkpointed files" if states else " (first start)" if self.files.first_start else "")

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

    def _recovered(self) -> None:
        """The journal's last run is settled (its batches still unacknowledged then are done):
        the journal may forget its entries once a checkpoint holds their steps."""
        for entry in self._recovery.entries:
            self.journal.mark_applied(entry.key)
        self._recovery = None

    def scan(self, initial: bool = False) -> None:
        """Rescan the globs now (`initial`: the first scan of this run)."""
        self.files.scan(time.monotonic(), initial)

    def turn(self, wait: bool = True) -> None:
        """One turn of the loop (see the module docstring); sleeps at the end if idle and `wait`."""
        cfg = self.config
        now = time.monotonic()
        if now >= self.files.next_scan or (self.watcher is not None and self.watcher.rescan):
            if self.watcher is not None:
                self.watcher.rescan = False
            self.files.scan(now)
        busy = self._pump(now)
        self.batches.close_due(now)
        self._submit()
        self._acks()
        self.files.timers(now)
        self._snapshot(now)
        if self.metrics is not None and now - self.metrics.published_at >= 1.0:
            self._publish()
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
        self.counters.files = len(self.files.tailers)
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
            if self.journal is not None:
                self.journal.close()
            self.files.close_all()
            if self._endpoint is not None:
                self._endpoint.close()
            self._release()
            self.counters_now()
            log.info("stopped: %s", self.counters)

    def _release(self) -> None:
        if self._lock_fd is not None:
            release(self._lock_fd)
            self._lock_fd = None

    # --- reading -----------------------------------------------------------------------------

    def _pump(self, now: float) -> bool:
        cfg = self.config
        shipper = self.shipper
        busy = False
        files = self.files
        for tailer in list(files.tailers.values()):
            route = tailer.route
            try:
                status, st = tailer.check(now)
            except OSError as exc:
                log.warning("%s: %s; letting it go", tailer.path, exc)
                files.let_go(tailer, now, flush=True)
                continue
            if status != OK:
                files.retire(tailer, st, status, now)
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
            before, start = tailer.tail, tailer.position
            data = tailer.read(cfg.read_bytes)
            if data:
                busy = True
                self._emit(tailer.state, route, tailer.reader.feed(data, now), (before, start, data))
        return busy

    def _emit(self, state: FileState, route: Route, lines: Lines, window: tuple | None = None) -> None:
        """Records of `lines` into the open batches, with the checkpoint steps they complete
        and the markers of their ends (into the journal and the checkpoint with them), taken
        from `window` (the bytes just read: identity.marker_within's before, start, data; by
        default the bytes before the read position) when it reaches, else read from the file."""
        if lines.truncated:
            self.counters.lines_truncated += len(lines.truncated)
        if self.metrics is not None and lines.values:
            self.metrics.read(route.label, route.topic, len(lines.values), sum(map(len, lines.values)))
        marker_of = None
        tailer = self.files.tailers.get(state.id.inode)
        if tailer is not None and tailer.state is state and tailer.fd >= 0:
            marker_of = partial(_marker, tailer.fd, window or (tailer.tail, tailer.position, b""))
        self.batches.add_lines(state, route, lines, marker_of)

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
                if self.metrics is not None:
                    self.metrics.shipped(batch.origins, batch.topic)
            else:
                self.counters.records_rejected += batch.count
            for step in batch.steps:
                step.acked = True
                touched.add(step.state)
            if batch.journal_keys:
                self._unapplied.append(batch)
            if self._resent:
                self._resent.discard(id(batch))
                if not self._resent:
                    self._recovered()
        for state in touched:
            if state.advance():
                self.files.dirty = True
        if self._unapplied and touched:
            # the journal may forget a batch once its steps are in a durable checkpoint
            left = []
            for batch in self._unapplied:
                if any(step in step.state.pending for step in batch.steps):
                    left.append(batch)
                else:
                    for key in batch.journal_keys:
                        self.journal.mark_applied(key)
            self._unapplied = left

    def _publish(self) -> None:
        """Hand the metrics what a scrape reads: bytes behind per file (one fstat each), batches
        pending, the counters, the last checkpoint write (now, when nothing waits to be written)."""
        files = []
        for tailer in self.files.tailers.values():
            if tailer.fd >= 0:
                try:
                    files.append((tailer.path, max(os.fstat(tailer.fd).st_size - tailer.state.offset, 0)))
                except OSError:
                    pass
        pending = self.shipper.pending if self.shipper is not None else 0
        current = not pending and not self.files.dirty and not any(state.dirty for state in self.files.states)
        # checkpoints with nothing new to record are as fresh as can be: an idle agent is not stale
        written = time.time() if current or self.writer is None else self.writer.written_at
        self.metrics.publish(files, pending, self.counters_now().as_dict(), written)

    # --- checkpoints -------------------------------------------------------------------------

    def _snapshot(self, now: float, force: bool = False) -> None:
        """Hand the checkpoints to the writer if they changed, at most once per
        `checkpoint_interval` unless `force`."""
        files = self.files
        dirty = files.dirty or any(state.dirty for state in files.states)
        if not dirty or (not force and now - self._last_snapshot < self.config.checkpoint_interval):
            return
        entries = snapshot(files.states, {id(t.state): t.fd for t in files.tailers.values() if t.fd >= 0})
        files.dirty = False
        self._last_snapshot = now
        self.writer.submit(entries, self.journal.checkpoint_taken() if self.journal is not None else None)


def _marker(fd: int, window: tuple, offset: int) -> str | None:
    marker = marker_within(*window, offset)
    if marker is not None:
        return marker
    try:
        return read_marker(fd, offset)
    except OSError:
        return None

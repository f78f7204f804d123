"""`Store`: every partition of every topic under one data directory.

    <data_dir>/
        .lock                               flock'ed while a Store has the directory open
        .logship-clean-shutdown             present only between a clean close and the next open;
                                            lists the partitions still to recover (see below)
        recovery-point-offset-checkpoint    topic partition offset: fdatasynced below offset
        log-start-offset-checkpoint         topic partition offset: the log start offset
        <topic>-<partition>/                one Partition each (segments, leader-epoch-checkpoint)

        topic-config-overrides              per-topic configs under Kafka's names (topic_config.py)

Creating, growing and deleting topics, and their per-topic configs (topic-config-overrides),
are topics.py's `TopicLifecycle`, which Store inherits: its docstring has their formats and
crash rules. `compact()` runs log compaction (compaction.py) on topics whose cleanup_policy
has "compact"; retention applies to those whose cleanup_policy has "delete".

There is no other metadata: a topic's partition count is read from the directories (a
partition directory missing below the highest one is recreated empty when first used).

Partitions are loaded lazily: opening takes the lock, lists the directories and reads the
checkpoints, nothing more, so a store of 10,000 partitions opens at once. A partition is
loaded on first use (`partition()`), or by `load_all()` (the broker runs it in a background
thread so that retention sees every partition soon after start). Each partition loads under
its own lock, never under the Store's, and nobody sees it before it is loaded: after an
unclean stop (no marker) loading recovers it from its recovery point (recovery.py), so it is
recovered before its first read or write, however late that comes. A partition not loaded yet
keeps the recovery point and log start offset read at open in the checkpoints written
meanwhile (its files have not changed). The marker is removed on open for as long as the
store runs; close() flushes, writes both checkpoints, then writes the marker listing the
partitions that still need recovery (those never loaded since an unclean stop, with their
recovery points), so that a clean close does not make an unrecovered tail trusted; an empty
marker (or the one an older version touched) means every partition is clean. An unreadable
marker counts as absent. Open descriptors are bounded by the Store's FileCache
(filecache.py, `max_open_files`), shared by all partitions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import CorruptRecordError, KafkaStorageError, UnknownTopicError
from . import compaction, dirlock
from .checkpoint import MalformedCheckpoint, fsync_dir, read_offsets, write_offsets
from .compaction import CompactionResult
from .config import LogConfig
from .filecache import DEFAULT_CAPACITY, FileCache
from .names import DELETE_SUFFIX, parse_partition_dir, partition_dir_name
from .partition import Partition
from .slots import PartitionSlot, read_marker, stored_leader_epoch
from .topics import TopicLifecycle

CLEAN_SHUTDOWN_FILE = ".logship-clean-shutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
#: checkpoint() flushes partitions from this many threads: 10,000 partitions written since the
#: last checkpoint cost one fdatasync each, and ext4 commits concurrent ones together
FLUSH_THREADS = 8
log = logging.getLogger("logship.storage")


class Store(TopicLifecycle):
    """Topics and partitions on disk. Thread-safe; a context manager that closes itself.

    Owns the partition map (`_slots`, `_counts`), its lock, the checkpoints and the lifetime;
    topic creation, deletion and configs come from TopicLifecycle (topics.py)."""

    def __init__(self, data_dir: str | os.PathLike, config: LogConfig | None = None,
                 clock: Callable[[], float] = time.time, *, fdatasync: Callable[[int], None] | None = None,
                 max_open_files: int = DEFAULT_CAPACITY):
        self.data_dir = Path(data_dir)
        self.config = config or LogConfig()
        self._clock, self._fdatasync = clock, fdatasync
        self._lock = threading.RLock()
        self.files = FileCache(max_open_files)
        self._slots: dict[tuple[str, int], PartitionSlot] = {}
        self._counts: dict[str, int] = {}
        self._init_topic_configs()
        self._compaction_lock = threading.Lock()  # one pass at a time; close() waits for it
        self._cleaned_to: dict[tuple[str, int], int] = {}  # where the last compaction pass got to
        self._closed = False
        self._retention_thread: int | None = None  # log-start checkpoint waits for its end
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = dirlock.acquire(self.data_dir)
        try:
            self._open()
        except BaseException:
            dirlock.release(self._lock_fd)
            raise

    def _open(self) -> None:
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        pending = read_marker(self.data_dir / CLEAN_SHUTDOWN_FILE)
        self.recovered = pending is None  # True: the last stop was not a clean close
        recovery_points = self._read_checkpoint(RECOVERY_POINT_FILE)
        log_starts = self._read_checkpoint(LOG_START_FILE)
        self._load_overrides()
        found: dict[str, int] = {}
        for path in sorted(self.data_dir.iterdir()):
            if not path.is_dir():
                continue
            if path.name.endswith(DELETE_SUFFIX):
                self._remove_deletion_leftover(path)
                continue
            parsed = parse_partition_dir(path.name)
            if parsed is None:
                log.warning("ignoring %s: not a partition directory", path)
                continue
            found[parsed[0]] = max(found.get(parsed[0], 0), parsed[1] + 1)
        for topic, count in found.items():
            self._counts[topic] = count
            for index in range(count):
                key = (topic, index)
                clean = pending is not None and key not in pending
                self._slots[key] = PartitionSlot(topic, index, recovery_points.get(key, 0), log_starts.get(key, 0), clean)
        self._drop_orphan_configs(set(found))
        marker.unlink(missing_ok=True)
        fsync_dir(self.data_dir)

    def _load(self, slot: PartitionSlot) -> Partition:
        """Load (after an unclean stop: recover) the partition of `slot`, once; under its own lock."""
        with slot.lock:
            if slot.partition is not None:
                return slot.partition
            if slot.gone:
                raise UnknownTopicError(f"unknown topic or partition {slot.topic}-{slot.index}")
            try:
                partition = Partition(slot.topic, slot.index, self.data_dir / partition_dir_name(slot.topic, slot.index),
                                      self.topic_config(slot.topic), clock=self._clock, fdatasync=self._fdatasync,
                                      log_start_offset=slot.log_start, recovery_point=slot.recovery_point,
                                      clean=slot.clean, on_log_start_change=self._log_start_changed, files=self.files)
            except OSError as exc:
                raise KafkaStorageError(f"cannot open {slot.topic}-{slot.index} in {self.data_dir}: "
                                        f"{exc.strerror or exc}") from exc
            report = partition.load_report
            if report.recovered_segments:
                log.info("recovered %s-%d: %d segment(s) checked, %d byte(s) cut, %d segment(s) dropped",
                         slot.topic, slot.index, report.recovered_segments, report.truncated_bytes,
                         report.deleted_segments)
            slot.partition = partition
            partition.config = self.topic_config(slot.topic)  # set_topic_config may have run meanwhile
            return partition

    def load_all(self, should_stop: Callable[[], bool] = lambda: False, threads: int = 1) -> int:
        """Load every partition not loaded yet (for a background thread); returns how many it
        loaded. Stops early when the store closes or `should_stop()`; errors are logged. With
        `threads` > 1 several load at once (recovery's fdatasyncs share journal commits)."""
        with self._lock:
            slots = [slot for slot in self._slots.values() if slot.partition is None]

        def load(slot: PartitionSlot) -> int:
            if self._closed or slot.partition is not None or slot.gone or should_stop():
                return 0
            try:
                self._load(slot)
                return 1
            except UnknownTopicError:
                return 0
            except (KafkaStorageError, CorruptRecordError) as exc:
                log.error("cannot load %s-%d: %s", slot.topic, slot.index, exc)
                return 0

        if threads <= 1 or len(slots) <= 1:
            return sum(load(slot) for slot in slots)
        with ThreadPoolExecutor(min(threads, len(slots)), thread_name_prefix="logship-load") as pool:
            return sum(pool.map(load, slots))

    def leader_epoch(self, topic: str, index: int) -> int:
        """The partition's current leader epoch (Partition.leader_epoch), without loading it when
        its epoch files say: a Metadata answer for 10,000 partitions loads none of them."""
        slot = self._slot(topic, index)
        if slot.partition is not None:
            return slot.partition.leader_epoch
        if slot.epoch is None:
            slot.epoch = stored_leader_epoch(self.data_dir / partition_dir_name(topic, index))
            if slot.epoch is None:  # the files do not say: loading rebuilds them from the log
                return self._load(slot).leader_epoch
        return slot.epoch

    def _read_checkpoint(self, name: str) -> dict[tuple[str, int], int]:
        try:
            return read_offsets(self.data_dir / name)
        except (MalformedCheckpoint, OSError) as exc:
            log.warning("ignoring unreadable %s (%s)", name, exc)  # recovery points 0: recover everything
            return {}

    # ------------------------------------------------------------------ topics

    def topics(self) -> dict[str, int]:
        """{topic name: partition count}."""
        with self._lock:
            return dict(self._counts)

    def partition_count(self, name: str) -> int:
        """How many partitions topic `name` has, 0 when there is no such topic."""
        with self._lock:
            return self._counts.get(name, 0)

    def total_partitions(self) -> int:
        """Partitions of every topic, in all."""
        with self._lock:
            return len(self._slots)

    def _try_write_checkpoints(self, doing: str) -> bool:
        """Write the checkpoints; on failure log it (the next checkpoint retries) and return False."""
        try:
            self._write_checkpoints()
            return True
        except OSError as exc:
            log.error("%s: cannot write the checkpoints in %s (%s); the next checkpoint writes them",
                      doing, self.data_dir, exc.strerror or exc)
            return False

    def _slot(self, topic: str, index: int) -> PartitionSlot:
        try:
            return self._slots[(topic, index)]
        except KeyError:
            raise UnknownTopicError(f"unknown topic or partition {topic}-{index}") from None

    def partition(self, topic: str, index: int) -> Partition:
        """The partition, loaded (and, after an unclean stop, recovered) on first use."""
        slot = self._slot(topic, index)
        partition = slot.partition
        if partition is not None:
            return partition
        self._check_open()
        return self._load(slot)

    def partition_directory(self, topic: str, index: int) -> Path:
        """Where partition `index` of `topic` lives (or would), whether it exists or not."""
        return self.data_dir / partition_dir_name(topic, index)

    def ensure_partition(self, topic: str, index: int, configs: dict[str, str] | None = None) -> Partition:
        """The partition, its topic created (with `configs`, Kafka's names -> values, else the
        default config) or grown to hold it when it is missing: a replica assigned to this broker."""
        with self._lock:
            count = self._counts.get(topic, 0)
            if count == 0:
                self.create_topic(topic, index + 1, configs)
            elif count <= index:
                self.add_partitions(topic, index + 1)
        return self.partition(topic, index)

    def size_and_lag(self, topic: str, index: int) -> tuple[int, int]:
        """(bytes on disk, log end offset - high watermark) of a partition, without loading it
        when it is not loaded yet (then its segment files' sizes, and no lag)."""
        slot = self._slot(topic, index)
        partition = slot.partition
        if partition is not None:
            return partition.size_bytes, partition.log_end_offset - partition.high_watermark
        directory = self.data_dir / partition_dir_name(topic, index)
        try:
            return sum(path.stat().st_size for path in directory.glob("*.log")), 0
        except OSError:
            partition = self.partition(topic, index)
            return partition.size_bytes, partition.log_end_offset - partition.high_watermark

    def partitions(self) -> list[Partition]:
        """Every partition (loading those not loaded yet)."""
        with self._lock:
            slots = list(self._slots.values())
        return [self._load(slot) for slot in slots]

    def loaded(self) -> list[Partition]:
        """The partitions opened so far (the others have not changed since the store opened)."""
        with self._lock:
            return self._loaded()

    def loaded_partition(self, topic: str, index: int) -> Partition | None:
        """The partition if it is open, else None; never opens it."""
        slot = self._slots.get((topic, index))
        return None if slot is None or slot.gone else slot.partition

    def expire_producers(self, expiration_ms: int) -> int:
        """Forget idempotent producers silent for `expiration_ms` in every open partition."""
        return sum(partition.expire_producers(expiration_ms) for partition in self.loaded())

    def is_offline(self, topic: str, index: int) -> bool:
        """Whether that partition went offline (only an open one can have)."""
        partition = self.loaded_partition(topic, index)
        return partition is not None and partition.offline

    def offline(self) -> set[tuple[str, int]]:
        """(topic, index) of the partitions gone offline (a failed fdatasync: no reads or writes
        until a restart). Partitions not loaded yet are not offline."""
        return {(p.topic, p.index) for p in self.loaded() if p.offline}

    def _loaded(self) -> list[Partition]:
        """The partitions loaded so far (maintenance leaves the others alone: unchanged since open)."""
        return [slot.partition for slot in self._slots.values() if slot.partition is not None]

    # ------------------------------------------------------------------ maintenance

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Apply retention to every partition; returns the number of segments deleted."""
        deleted = 0
        with self._lock:
            self._retention_thread = threading.get_ident()
            try:
                for partition in self._loaded():
                    if not partition.config.deletes:
                        continue  # cleanup.policy=compact: the log is kept whole
                    try:
                        deleted += partition.enforce_retention(now_ms)
                    except (KafkaStorageError, OSError) as exc:
                        log.error("retention of %s-%d failed: %s", partition.topic, partition.index, exc)
            finally:
                self._retention_thread: int | None = None  # log-start checkpoint waits for its end
            if deleted:
                try:
                    self._write_checkpoints()
                except OSError as exc:  # the space is freed all the same; the next checkpoint writes it
                    raise KafkaStorageError(f"deleted {deleted} segment(s), but cannot write the checkpoints "
                                            f"in {self.data_dir}: {exc.strerror or exc}") from exc
        return deleted

    def compact(self, now_ms: int | None = None, force: bool = False) -> list[CompactionResult]:
        """One compaction pass over each "compact" partition that needs one (or every one with
        `force`); returns what each pass did. Runs without the Store's lock, so call it from a
        worker thread: it reads and rewrites sealed segments while appends go on."""
        results = []
        with self._compaction_lock:
            if self._closed:
                return results
            with self._lock:
                partitions = [p for p in self._loaded() if p.config.compacts]
            for partition in partitions:
                key = (partition.topic, partition.index)
                if partition.offline or not (force or compaction.needs_compaction(
                        partition, self._cleaned_to.get(key, partition.log_start_offset))):
                    continue
                try:
                    result = compaction.compact(partition, now_ms)
                except (KafkaStorageError, CorruptRecordError, OSError) as exc:
                    log.error("compaction of %s-%d failed: %s", partition.topic, partition.index, exc)
                    continue
                self._cleaned_to[key] = result.cleaned_to
                results.append(result)
        return results

    def checkpoint(self) -> None:
        """Flush every partition, then write the recovery points and log start offsets."""
        with self._lock:
            partitions = [p for p in self._loaded() if not p.offline and p.recovery_point < p.log_end_offset]
        if len(partitions) > 1:  # fsyncs from several threads share the file system's journal commits
            with ThreadPoolExecutor(min(FLUSH_THREADS, len(partitions)), thread_name_prefix="logship-flush") as pool:
                list(pool.map(self._flush, partitions))
        else:
            for partition in partitions:
                self._flush(partition)
        with self._lock:
            self._write_checkpoints()

    @staticmethod
    def _flush(partition: Partition) -> None:
        try:
            partition.flush()
        except KafkaStorageError as exc:
            log.error("flush of %s-%d failed: %s", partition.topic, partition.index, exc)

    def _log_start_changed(self, partition: Partition) -> None:
        """Persist a moved log start at once (retention writes once, at its end)."""
        if self._retention_thread != threading.get_ident():
            with self._lock:
                if not self._closed:
                    try:
                        self._write_checkpoints()
                    except OSError as exc:
                        raise KafkaStorageError(f"cannot write the checkpoints in {self.data_dir}: "
                                                f"{exc.strerror or exc}") from exc

    def _write_checkpoints(self) -> None:
        write_offsets(self.data_dir / RECOVERY_POINT_FILE,
                      {key: slot.recovery_point_now for key, slot in self._slots.items()})
        write_offsets(self.data_dir / LOG_START_FILE,
                      {key: slot.log_start_now for key, slot in self._slots.items()})

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Flush, checkpoint, mark the shutdown clean (unless a sync or a checkpoint failed)
        and unlock. Never raises for a full disk: without the mark, the next open recovers.

        Waits for a compaction pass that is running to finish."""
        with self._compaction_lock, self._lock:
            if self._closed:
                return
            try:
                try:
                    self.checkpoint()
                    healthy = not any(p.offline for p in self._loaded())
                except OSError as exc:
                    log.error("cannot write the checkpoints in %s (%s): the next start recovers every partition",
                              self.data_dir, exc.strerror or exc)
                    healthy = False
                for slot in self._slots.values():
                    with slot.lock:  # waits for a load in progress
                        slot.gone = True
                        if slot.partition is not None:
                            slot.partition.close()
                if healthy:
                    unrecovered = {key: slot.recovery_point for key, slot in self._slots.items()
                                   if slot.partition is None and not slot.clean}
                    try:
                        write_offsets(self.data_dir / CLEAN_SHUTDOWN_FILE, unrecovered)  # fsynced, with the directory
                    except OSError as exc:
                        log.error("cannot mark %s as closed cleanly (%s): the next start recovers every "
                                  "partition", self.data_dir, exc.strerror or exc)
            finally:
                self._closed = True
                self.files.close_all()
                dirlock.release(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaStorageError(f"the store of {self.data_dir} is closed")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.data_dir)!r}, {len(self._slots)} partitions)"

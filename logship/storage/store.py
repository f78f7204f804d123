"""`Store`: every partition of every topic under one data directory.

    <data_dir>/
        .lock                               flock'ed while a Store has the directory open
        .logship-clean-shutdown             present only between a clean close and the next open;
                                            lists the partitions still to recover (see below)
        recovery-point-offset-checkpoint    topic partition offset: fdatasynced below offset
        log-start-offset-checkpoint         topic partition offset: the log start offset
        <topic>-<partition>/                one Partition each (segments, leader-epoch-checkpoint)

        topic-config-overrides              per-topic configs under Kafka's names (topic_config.py)

Per-topic configs set through `create_topic(..., configs=)` or `alter_topic_config` are kept
in topic-config-overrides (replaced atomically) and applied on open, on top of the Store's
default; an entry whose topic is gone (a crash between the two steps of a create or delete) is
dropped on open. `set_topic_config(topic, LogConfig)` overrides a topic in memory only, and
whoever owns the topic calls it after every open (the broker does for `__consumer_offsets`).
`compact()` runs log compaction (compaction.py) on topics whose cleanup_policy has "compact";
retention applies to those whose cleanup_policy has "delete".

There is no other metadata: a topic's partition count is read from the directories (a
partition directory missing below the highest one is recreated empty when first used).
`add_partitions` grows a topic (never shrinks it), creating the highest directory first;
creating a partition makes its directory only (its first segment is made on first use).

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

Topic deletion renames each partition directory `<topic>-<p>.<uuid>-delete` (the topic cut short to
fit NAME_MAX, names.py), fsyncs the data directory, then removes it (leftovers of a crash are
removed on the next open). It needs no free space: a checkpoint or overrides write that fails
is logged and left to the next checkpoint (open ignores entries of topics that are gone), and
a directory that cannot be renamed is removed where it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import (CorruptRecordError, InvalidPartitionsError, KafkaStorageError, LogshipError,
                      TopicAlreadyExistsError, UnknownTopicError)
from . import compaction, dirlock, topic_config
from .checkpoint import MalformedCheckpoint, fsync_dir, read_offsets, write_offsets
from .compaction import CompactionResult
from .config import LogConfig
from .filecache import DEFAULT_CAPACITY, FileCache
from .names import (DELETE_SUFFIX, check_partition_count, delete_dir_name, parse_partition_dir, partition_dir_name,
                    validate_topic_name)
from .partition import Partition
from .slots import PartitionSlot, read_marker, stored_leader_epoch

CLEAN_SHUTDOWN_FILE = ".logship-clean-shutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
#: checkpoint() flushes partitions from this many threads: 10,000 partitions written since the
#: last checkpoint cost one fdatasync each, and ext4 commits concurrent ones together
FLUSH_THREADS = 8
log = logging.getLogger("logship.storage")


class Store:
    """Topics and partitions on disk. Thread-safe; a context manager that closes itself."""

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
        self._topic_configs: dict[str, LogConfig] = {}
        self._overrides: dict[str, dict[str, str]] = {}  # persisted per-topic configs, Kafka names
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
                log.info("removing %s, left by an interrupted topic deletion", path)
                shutil.rmtree(path, ignore_errors=True)
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
        orphans = set(self._overrides) - set(found)
        if orphans:
            log.info("dropping the configs of %s: no such topic", ", ".join(sorted(orphans)))
            for topic in orphans:
                del self._overrides[topic]
                self._topic_configs.pop(topic, None)
            try:
                topic_config.write_overrides(self.data_dir, self._overrides)
            except OSError as exc:  # the next successful write drops them; they are gone from memory
                log.warning("cannot rewrite %s without them (%s); the next write of the file will",
                            topic_config.OVERRIDES_FILE, exc.strerror or exc)
        marker.unlink(missing_ok=True)
        fsync_dir(self.data_dir)

    def _load_overrides(self) -> None:
        try:
            stored = topic_config.read_overrides(self.data_dir)
        except (ValueError, OSError) as exc:
            # kept aside, so that the next write of the file does not silently drop its configs
            path = self.data_dir / topic_config.OVERRIDES_FILE
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            try:
                os.rename(path, aside)
            except OSError as rename_exc:
                aside = f"nowhere ({rename_exc})"
            log.error("cannot read %s (%s): every topic uses the default config; the file is kept as %s "
                      "until it is repaired and put back", path, exc, aside)
            return
        for topic, overrides in stored.items():
            try:
                self._topic_configs[topic] = topic_config.apply(self.config, overrides)
            except LogshipError as exc:
                log.warning("ignoring the stored configs of topic %s: %s", topic, exc)
                continue
            self._overrides[topic] = overrides

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

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> None:
        """Create `name` with `partitions` empty partitions (durably), with `configs` (Kafka's
        topic config names -> values; InvalidConfigError before anything is created)."""
        validate_topic_name(name)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise InvalidPartitionsError(f"a topic needs at least one partition, not {partitions}")
        check_partition_count(name, partitions)
        overrides = topic_config.normalize(configs or {})
        config = topic_config.apply(self.config, overrides) if overrides else None
        with self._lock:
            self._check_open()
            if name in self._counts:
                raise TopicAlreadyExistsError(f"topic {name!r} already exists")
            try:
                # first (an entry left by an earlier failure is replaced), so that the partitions
                # open with them; an orphan is dropped on open
                if overrides or name in self._overrides:
                    self._store_overrides(name, overrides)
                    if overrides:
                        self._topic_configs[name] = config
                    else:
                        self._topic_configs.pop(name, None)
                for index in reversed(range(partitions)):  # the highest first: see add_partitions
                    self._make_partition_dir(name, index)
                fsync_dir(self.data_dir)
            except OSError as exc:
                self._undo_create(name, partitions, bool(overrides))
                raise KafkaStorageError(f"cannot create topic {name!r} in {self.data_dir}: {exc}") from exc
            for index in range(partitions):
                self._slots[(name, index)] = PartitionSlot.new(name, index)
            self._counts[name] = partitions
            try:
                self._write_checkpoints()
            except OSError as exc:  # the directories are the truth; the next checkpoint catches up
                log.error("cannot write checkpoints after creating %s: %s", name, exc)

    def _make_partition_dir(self, topic: str, index: int) -> None:
        """A new partition is a directory; its first segment is made when it is first used."""
        (self.data_dir / partition_dir_name(topic, index)).mkdir(exist_ok=True)

    def _undo_create(self, name: str, partitions: int, configured: bool) -> None:
        """Forget what a failed create_topic made: its directories and its stored configs."""
        for index in range(partitions):
            shutil.rmtree(self.data_dir / partition_dir_name(name, index), ignore_errors=True)
        if configured:
            self._topic_configs.pop(name, None)
        if name in self._overrides:
            try:
                self._store_overrides(name, {})
            except OSError as exc:  # kept in memory: the next create of the name replaces it
                log.error("cannot forget the configs of topic %s, whose creation failed: %s", name, exc)

    def add_partitions(self, name: str, total: int) -> list[int]:
        """Grow topic `name` to `total` partitions (never fewer); returns the new indexes.

        InvalidPartitionsError unless `total` is above the current count; UnknownTopicError.
        The highest new directory is created first, so a crash part-way leaves either the old
        count or, once that one exists, all of them (open recreates the missing ones below it).
        Durable on return: each directory and the data directory are fsynced.
        """
        with self._lock:
            self._check_open()
            current = self._counts.get(name)
            if current is None:
                raise UnknownTopicError(f"unknown topic {name!r}")
            if isinstance(total, bool) or not isinstance(total, int) or total <= current:
                raise InvalidPartitionsError(f"topic {name!r} has {current} partition{'s' if current != 1 else ''}; "
                                             f"the new count must be larger, not {total}")
            check_partition_count(name, total)
            added = list(range(current, total))
            try:
                self._make_partition_dir(name, added[-1])
                fsync_dir(self.data_dir)  # from here on the topic has `total` partitions
                for index in added[:-1]:
                    self._make_partition_dir(name, index)
                fsync_dir(self.data_dir)
            except OSError as exc:
                for index in added:  # undo: the topic keeps its old count
                    shutil.rmtree(self.data_dir / partition_dir_name(name, index), ignore_errors=True)
                raise KafkaStorageError(f"cannot add partitions to {name!r} in {self.data_dir}: {exc}") from exc
            for index in added:
                self._slots[(name, index)] = PartitionSlot.new(name, index)
            self._counts[name] = total
            try:
                self._write_checkpoints()
            except OSError as exc:
                log.error("cannot write checkpoints after adding partitions to %s: %s", name, exc)
            return added

    def delete_topic(self, name: str) -> None:
        """Remove the topic and its data, freeing its space even on a full disk.

        KafkaStorageError only when a partition directory could be neither renamed nor removed."""
        with self._lock:
            self._check_open()
            count = self._counts.pop(name, None)
            if count is None:
                raise UnknownTopicError(f"unknown topic {name!r}")
            moved = []
            for index in range(count):
                slot = self._slots.pop((name, index))
                with slot.lock:  # waits for a load in progress
                    slot.gone = True
                    if slot.partition is not None:
                        try:
                            slot.partition.close()
                        except (OSError, LogshipError) as exc:  # its data is going anyway
                            log.warning("closing %s-%d for deletion: %s", name, index, exc)
                directory = self.data_dir / partition_dir_name(name, index)
                if not directory.exists():  # never used since a crash lost it
                    continue
                doomed = self._doom(directory, delete_dir_name(name, index, uuid.uuid4().hex))
                if doomed is not None:
                    moved.append(doomed)
            try:
                fsync_dir(self.data_dir)
            except OSError as exc:
                log.error("cannot fsync %s after renaming the partitions of %s: %s", self.data_dir, name,
                          exc.strerror or exc)
            try:
                self._write_checkpoints()
                checkpointed = True
            except OSError:  # a full disk: tried again below, once the space is freed
                checkpointed = False
            self._topic_configs.pop(name, None)
            if name in self._overrides:
                try:
                    self._store_overrides(name, {})  # pops the entry only once the file is written
                except OSError as exc:  # a create of the name replaces it; the next open drops it
                    log.error("cannot forget the configs of deleted topic %s: %s", name, exc)
        for path in moved:
            shutil.rmtree(path, ignore_errors=True)
        if not checkpointed:  # with the space just freed
            with self._lock:
                if not self._closed:
                    self._try_write_checkpoints(f"deleting topic {name}")
        left = [str(path) for path in moved if path.exists()]
        if left:
            raise KafkaStorageError(f"topic {name!r} is deleted, but {', '.join(left)} could not be removed")

    def _doom(self, directory: Path, doomed_name: str) -> Path | None:
        """Rename a partition directory for deletion (returned, to be removed once the lock is
        released); when that fails, remove it where it is, now (None)."""
        target = directory.with_name(doomed_name)
        try:
            os.rename(directory, target)
        except OSError as exc:  # removed in place: a crash part-way may leave a partial partition
            log.error("cannot rename %s to %s (%s): removing it in place", directory, target.name,
                      exc.strerror or exc)
            shutil.rmtree(directory, ignore_errors=True)  # now, under the lock: a create of the name must not see it
            if directory.exists():
                log.error("cannot remove %s either: remove it by hand", directory)
            return None
        return target

    def _try_write_checkpoints(self, doing: str) -> bool:
        """Write the checkpoints; on failure log it (the next checkpoint retries) and return False."""
        try:
            self._write_checkpoints()
            return True
        except OSError as exc:
            log.error("%s: cannot write the checkpoints in %s (%s); the next checkpoint writes them",
                      doing, self.data_dir, exc.strerror or exc)
            return False

    def topic_config(self, topic: str) -> LogConfig:
        """The LogConfig of `topic`: its override, else the Store's default."""
        return self._topic_configs.get(topic, self.config)

    def set_topic_config(self, topic: str, config: LogConfig) -> None:
        """Override the LogConfig of `topic`, for its partitions open now and created later.

        Not persisted: call it again after every open. Existing segments keep their index
        interval; rolling, retention, flushing and compaction follow the new settings at once.
        """
        with self._lock:
            self._topic_configs[topic] = config
            for index in range(self._counts.get(topic, 0)):
                partition = self._slots[(topic, index)].partition
                if partition is not None:
                    partition.config = config

    def topic_overrides(self, topic: str) -> dict[str, str]:
        """The stored configs of `topic` (Kafka names -> values); {} when it has none."""
        with self._lock:
            return dict(self._overrides.get(topic, {}))

    def alter_topic_config(self, topic: str, overrides: dict[str, str], validate_only: bool = False) -> LogConfig:
        """Replace the stored configs of `topic` with `overrides` (Kafka names -> values; {} goes
        back to the default), durably, and apply them to its partitions at once.

        Returns the resulting LogConfig. UnknownTopicError, or InvalidConfigError naming the key
        (nothing changed). With `validate_only` only the checks are made."""
        return self.alter_topic_configs({topic: overrides}, validate_only)[topic]

    def alter_topic_configs(self, changes: dict[str, dict[str, str]], validate_only: bool = False
                            ) -> dict[str, LogConfig]:
        """alter_topic_config for several topics, with one write of the overrides file: all
        change or none (the first UnknownTopicError, InvalidConfigError or KafkaStorageError)."""
        normalized = {topic: topic_config.normalize(overrides) for topic, overrides in changes.items()}
        configs = {topic: topic_config.apply(self.config, overrides) for topic, overrides in normalized.items()}
        with self._lock:
            self._check_open()
            for topic in changes:
                if topic not in self._counts:
                    raise UnknownTopicError(f"unknown topic {topic!r}")
            if not validate_only:
                updated = dict(self._overrides)
                for topic, overrides in normalized.items():
                    updated[topic] = overrides
                try:
                    topic_config.write_overrides(self.data_dir, updated)
                except OSError as exc:
                    raise KafkaStorageError(f"cannot write the configs of {len(changes)} topic(s) in "
                                            f"{self.data_dir}: {exc}") from exc
                self._overrides = {topic: overrides for topic, overrides in updated.items() if overrides}
                for topic, config in configs.items():
                    self.set_topic_config(topic, config)
                    if not normalized[topic]:
                        del self._topic_configs[topic]  # the default again, also for a re-created topic
        return configs

    def _store_overrides(self, topic: str, overrides: dict[str, str]) -> None:
        updated = dict(self._overrides)
        if overrides:
            updated[topic] = dict(overrides)
        else:
            updated.pop(topic, None)
        topic_config.write_overrides(self.data_dir, updated)
        self._overrides = updated

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

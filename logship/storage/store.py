"""`Store`: every partition of every topic under one data directory.

    <data_dir>/
        .lock                               flock'ed while a Store has the directory open
        .logship-clean-shutdown             present only between a clean close and the next open
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
partition directory missing below the highest one is recreated empty on open).
`add_partitions` grows a topic (never shrinks it), creating the highest directory first. Opening
takes the lock, loads every partition and, when the clean-shutdown marker is absent,
recovers each from its recovery point; then it removes the marker for as long as it runs.
close() flushes, writes both checkpoints, writes the marker and releases the lock. Topic
deletion renames each partition directory `<topic>-<p>.<uuid>-delete` (the topic cut short to
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
from pathlib import Path

from ..errors import (CorruptRecordError, InvalidPartitionsError, KafkaStorageError, LogshipError,
                      TopicAlreadyExistsError, UnknownTopicError)
from . import compaction, dirlock, topic_config
from .checkpoint import MalformedCheckpoint, fsync_dir, read_offsets, write_offsets
from .compaction import CompactionResult
from .config import LogConfig
from .names import (DELETE_SUFFIX, check_partition_count, delete_dir_name, parse_partition_dir, partition_dir_name,
                    validate_topic_name)
from .partition import Partition

CLEAN_SHUTDOWN_FILE = ".logship-clean-shutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
log = logging.getLogger("logship.storage")


class Store:
    """Topics and partitions on disk. Thread-safe; a context manager that closes itself."""

    def __init__(self, data_dir: str | os.PathLike, config: LogConfig | None = None,
                 clock: Callable[[], float] = time.time, *, fdatasync: Callable[[int], None] | None = None):
        self.data_dir = Path(data_dir)
        self.config = config or LogConfig()
        self._clock, self._fdatasync = clock, fdatasync
        self._lock = threading.RLock()
        self._partitions: dict[tuple[str, int], Partition] = {}
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
            for partition in self._partitions.values():
                partition.close()
            dirlock.release(self._lock_fd)
            raise

    def _open(self) -> None:
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        self.recovered = not marker.exists()  # True: the last stop was not a clean close
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
            for index in range(count):
                key = (topic, index)
                self._partitions[key] = self._partition(topic, index, recovery_points.get(key, 0),
                                                        log_starts.get(key, 0), clean=not self.recovered)
        orphans = set(self._overrides) - set(found)
        if orphans:
            log.info("dropping the configs of %s: no such topic", ", ".join(sorted(orphans)))
            for topic in orphans:
                del self._overrides[topic]
                self._topic_configs.pop(topic, None)
            topic_config.write_overrides(self.data_dir, self._overrides)
        if self.recovered:
            self._write_checkpoints()  # recovery left every partition durable
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

    def _partition(self, topic: str, index: int, recovery_point: int, log_start: int, clean: bool) -> Partition:
        return Partition(topic, index, self.data_dir / partition_dir_name(topic, index), self.topic_config(topic),
                         clock=self._clock, fdatasync=self._fdatasync, log_start_offset=log_start,
                         recovery_point=recovery_point, clean=clean, on_log_start_change=self._log_start_changed)

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
            counts: dict[str, int] = {}
            for topic, index in self._partitions:
                counts[topic] = max(counts.get(topic, 0), index + 1)
            return counts

    def partition_count(self, name: str) -> int:
        """How many partitions topic `name` has, 0 when there is no such topic. Costs the
        topic's partition count, not the store's (partitions are numbered 0..count-1)."""
        with self._lock:
            count = 0
            while (name, count) in self._partitions:
                count += 1
            return count

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> None:
        """Create `name` with `partitions` empty partitions (durably), with `configs` (Kafka's
        topic config names -> values; InvalidConfigError before anything is created)."""
        validate_topic_name(name)
        if not isinstance(partitions, int) or partitions < 1:
            raise InvalidPartitionsError(f"a topic needs at least one partition, not {partitions}")
        check_partition_count(name, partitions)
        overrides = topic_config.normalize(configs or {})
        config = topic_config.apply(self.config, overrides) if overrides else None
        with self._lock:
            self._check_open()
            if self.partition_count(name):
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
                for index in range(partitions):
                    self._partitions[(name, index)] = self._partition(name, index, 0, 0, clean=True)
                fsync_dir(self.data_dir)
                self._write_checkpoints()
            except (OSError, KafkaStorageError) as exc:
                self._undo_create(name, partitions, bool(overrides))
                raise KafkaStorageError(f"cannot create topic {name!r} in {self.data_dir}: {exc}") from exc

    def _undo_create(self, name: str, partitions: int, configured: bool) -> None:
        """Forget what a failed create_topic made: its partitions and its stored configs."""
        for index in range(partitions):
            partition = self._partitions.pop((name, index), None)
            if partition is not None:
                partition.close()
                shutil.rmtree(partition.directory, ignore_errors=True)
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
            current = self.partition_count(name)
            if not current:
                raise UnknownTopicError(f"unknown topic {name!r}")
            if not isinstance(total, int) or total <= current:
                raise InvalidPartitionsError(f"topic {name!r} has {current} partition{'s' if current != 1 else ''}; "
                                             f"the new count must be larger, not {total}")
            check_partition_count(name, total)
            added = list(range(current, total))
            try:
                for index in reversed(added):
                    self._partitions[(name, index)] = self._partition(name, index, 0, 0, clean=True)
                    fsync_dir(self.data_dir)
                self._write_checkpoints()
            except (OSError, KafkaStorageError) as exc:
                for index in added:  # undo: the topic keeps its old count
                    partition = self._partitions.pop((name, index), None)
                    if partition is not None:
                        partition.close()
                        shutil.rmtree(partition.directory, ignore_errors=True)
                raise KafkaStorageError(f"cannot add partitions to {name!r} in {self.data_dir}: {exc}") from exc
            return added

    def delete_topic(self, name: str) -> None:
        """Remove the topic and its data, freeing its space even on a full disk.

        KafkaStorageError only when a partition directory could be neither renamed nor removed."""
        with self._lock:
            self._check_open()
            doomed = [key for key in self._partitions if key[0] == name]
            if not doomed:
                raise UnknownTopicError(f"unknown topic {name!r}")
            moved = []
            for key in doomed:
                partition = self._partitions.pop(key)
                try:
                    partition.close()
                except (OSError, LogshipError) as exc:  # its data is going anyway
                    log.warning("closing %s-%d for deletion: %s", name, key[1], exc)
                moved.append(self._doom(partition.directory, delete_dir_name(name, key[1], uuid.uuid4().hex)))
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

    def _doom(self, directory: Path, doomed_name: str) -> Path:
        """Rename a partition directory for deletion; where it is when that fails."""
        target = directory.with_name(doomed_name)
        try:
            os.rename(directory, target)
        except OSError as exc:  # removed in place: a crash part-way may leave a partial partition
            log.error("cannot rename %s to %s (%s): removing it in place", directory, target.name,
                      exc.strerror or exc)
            return directory
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
            for index in range(self.partition_count(topic)):
                self._partitions[(topic, index)].config = config

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
                if not self.partition_count(topic):
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

    def partition(self, topic: str, index: int) -> Partition:
        with self._lock:
            try:
                return self._partitions[(topic, index)]
            except KeyError:
                raise UnknownTopicError(f"unknown topic or partition {topic}-{index}") from None

    def partitions(self) -> list[Partition]:
        with self._lock:
            return list(self._partitions.values())

    # ------------------------------------------------------------------ maintenance

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Apply retention to every partition; returns the number of segments deleted."""
        deleted = 0
        with self._lock:
            self._retention_thread = threading.get_ident()
            try:
                for partition in self._partitions.values():
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
                partitions = [p for p in self._partitions.values() if p.config.compacts]
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
            partitions = list(self._partitions.values())
        for partition in partitions:
            if partition.offline:
                continue
            try:
                partition.flush()
            except KafkaStorageError as exc:
                log.error("flush of %s-%d failed: %s", partition.topic, partition.index, exc)
        with self._lock:
            self._write_checkpoints()

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
                      {key: p.recovery_point for key, p in self._partitions.items()})
        write_offsets(self.data_dir / LOG_START_FILE,
                      {key: p.log_start_offset for key, p in self._partitions.items()})

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
                    healthy = not any(p.offline for p in self._partitions.values())
                except OSError as exc:
                    log.error("cannot write the checkpoints in %s (%s): the next start recovers every partition",
                              self.data_dir, exc.strerror or exc)
                    healthy = False
                for partition in self._partitions.values():
                    partition.close()
                if healthy:
                    try:
                        (self.data_dir / CLEAN_SHUTDOWN_FILE).touch()
                        fsync_dir(self.data_dir)
                    except OSError as exc:
                        log.error("cannot mark %s as closed cleanly (%s): the next start recovers every "
                                  "partition", self.data_dir, exc.strerror or exc)
            finally:
                self._closed = True
                dirlock.release(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaStorageError(f"the store of {self.data_dir} is closed")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.data_dir)!r}, {len(self._partitions)} partitions)"

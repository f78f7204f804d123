"""`TopicLifecycle`: creating, growing and deleting topics, and their stored configs (a part of Store).

Per-topic configs set through `create_topic(..., configs=)` or `alter_topic_config` are kept
in `<data_dir>/topic-config-overrides` (Kafka's names, replaced atomically; topic_config.py)
and applied on open, on top of the Store's default; an entry whose topic is gone (a crash
between the two steps of a create or delete) is dropped on open. `set_topic_config(topic,
LogConfig)` overrides a topic in memory only, and whoever owns the topic calls it after every
open (the broker does for `__consumer_offsets`).

A topic is its partition directories `<topic>-<partition>/` and nothing else: creating a
partition makes its directory only (its first segment is made on first use). `add_partitions`
grows a topic (never shrinks it), creating the highest directory first, so that a crash
part-way leaves the old count or the new one.

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
import time
import uuid
from pathlib import Path

from ..errors import (InvalidPartitionsError, KafkaStorageError, LogshipError, TopicAlreadyExistsError,
                      UnknownTopicError)
from . import topic_config
from .checkpoint import fsync_dir
from .config import LogConfig
from .names import check_partition_count, delete_dir_name, partition_dir_name, validate_topic_name
from .slots import PartitionSlot

log = logging.getLogger("logship.storage")


class TopicLifecycle:
    """The topic half of Store (which inherits it): owns the per-topic configs, `_topic_configs`
    (LogConfig in use) and `_overrides` (what topic-config-overrides holds, Kafka names).

    Works on what Store owns, under Store's lock: `data_dir`, `config` (the default),
    `_lock`, `_slots`, `_counts`, `_closed`, `_check_open()`, `_write_checkpoints()` and
    `_try_write_checkpoints()`.
    """

    def _init_topic_configs(self) -> None:
        self._topic_configs: dict[str, LogConfig] = {}
        self._overrides: dict[str, dict[str, str]] = {}  # persisted per-topic configs, Kafka names

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

    def _drop_orphan_configs(self, topics: set[str]) -> None:
        """On open: forget the stored configs of topics other than `topics` (gone in a crash)."""
        orphans = set(self._overrides) - topics
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

    @staticmethod
    def _remove_deletion_leftover(path: Path) -> None:
        """On open: remove a `-delete` directory that an interrupted delete_topic left."""
        log.info("removing %s, left by an interrupted topic deletion", path)
        shutil.rmtree(path, ignore_errors=True)

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

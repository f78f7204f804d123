"""DeleteTopics frees a topic's space even on a full disk and always answers; a topic with a
249-character name (Kafka's longest) is created, used and deleted over the wire."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import wait_until
from kafka_clients import consume, create_topic, dataset, produce
from logship.errors import InvalidPartitionsError
from logship.storage import Store
from logship.storage.checkpoint import read_offsets
from logship.storage.names import NAME_MAX, check_partition_count, delete_dir_name, partition_dir_name
from tiny_disk import fill, free_bytes, tmpfs

pytestmark = pytest.mark.integration

LONGEST = "t" * 200 + "-" * 9 + "long.name_" * 4  # 249 characters, '-' in the middle
assert len(LONGEST) == 249


def delete_topics(address: str, *names: str) -> dict:
    """DeleteTopics through confluent-kafka's admin client: {name: None or the error}."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": address})
    outcome = {}
    for name, future in admin.delete_topics(list(names), operation_timeout=10, request_timeout=15).items():
        try:
            outcome[name] = future.result(timeout=20)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome[name] = exc
    return outcome


def test_delete_topics_on_a_full_disk_answers_and_frees_the_space(start_broker, tmp_path):
    with tmpfs(tmp_path / "tiny", "4m") as disk:
        data = disk / "data"
        broker = start_broker("--segment-bytes", "1M", data_dir=data)
        create_topic(broker.address, "big", 2)
        produce("confluent", broker.address, "big", dataset("big", 20_000))  # ~1.4 MB over two partitions
        produce("confluent", broker.address, "kept", dataset("kept", 100))
        fill(disk / "filler")
        full = free_bytes(disk)
        assert full < 64 << 10

        assert delete_topics(broker.address, "big") == {"big": None}
        freed = free_bytes(disk) - full
        assert freed > 1 << 20, f"only {freed} bytes freed"
        assert not [p.name for p in data.iterdir() if p.name.startswith("big-")]
        assert broker.proc.poll() is None

        (disk / "filler").unlink()
        assert wait_until(lambda: ("big", 0) not in read_offsets(data / "recovery-point-offset-checkpoint"), 40)
        assert [r.value for r in consume("confluent", broker.address, "kept", 100)] == \
            [m.value for m in dataset("kept", 100)]
        assert broker.stop() == 0
    assert "Traceback" not in broker.log(), broker.log()[-3000:]


def test_the_longest_topic_name_is_created_used_and_deleted(start_broker, tmp_path):
    data = tmp_path / "data"
    broker = start_broker(data_dir=data)
    create_topic(broker.address, LONGEST, 3)
    assert sorted(p.name for p in data.iterdir() if p.name.startswith("t")) == [f"{LONGEST}-{i}" for i in range(3)]
    messages = dataset("long", 300)
    produce("confluent", broker.address, LONGEST, messages)
    assert sorted(r.value for r in consume("confluent", broker.address, LONGEST, 300)) == \
        sorted(m.value for m in messages)

    assert delete_topics(broker.address, LONGEST) == {LONGEST: None}
    assert not [p for p in data.iterdir() if p.is_dir() and p.name.startswith("t" * 200)]
    assert broker.stop() == 0

    # what a crash between the rename and the removal leaves, for the longest name and partition
    leftover = data / delete_dir_name(LONGEST, 99_999, "0" * 32)
    assert len(leftover.name) <= NAME_MAX
    leftover.mkdir()
    (leftover / f"{0:020d}.log").write_bytes(b"x" * 1000)
    broker = start_broker(data_dir=data)
    assert not leftover.exists()
    assert "removing" in broker.log() and "interrupted topic deletion" in broker.log()
    from confluent_kafka.admin import AdminClient
    assert LONGEST not in AdminClient({"bootstrap.servers": broker.address}).list_topics(timeout=10).topics
    assert broker.stop() == 0
    assert "Traceback" not in broker.log()


def test_directory_names_fit_name_max_for_every_legal_topic_and_partition(tmp_path):
    for partition in (0, 9, 99_999):
        assert len(partition_dir_name(LONGEST, partition)) <= NAME_MAX
        name = delete_dir_name(LONGEST, partition, "f" * 32)
        assert len(name) <= NAME_MAX and name.endswith("-delete") and name.startswith(LONGEST[:150])
        os.mkdir(tmp_path / name)  # the file system takes it
    os.mkdir(tmp_path / partition_dir_name(LONGEST, 99_999))
    check_partition_count(LONGEST, 100_000)
    with pytest.raises(InvalidPartitionsError, match="at most 100000 partitions"):
        check_partition_count(LONGEST, 100_001)
    with Store(tmp_path / "store") as store:
        with pytest.raises(InvalidPartitionsError):
            store.create_topic(LONGEST, 100_001)
        assert store.topics() == {}
        store.create_topic(LONGEST, 2)
        with pytest.raises(InvalidPartitionsError):
            store.add_partitions(LONGEST, 100_001)
        store.delete_topic(LONGEST)
        assert store.topics() == {}
        assert [p.name for p in (tmp_path / "store").iterdir() if p.is_dir()] == []


def test_a_partition_directory_that_cannot_be_renamed_is_removed_in_place(tmp_path, monkeypatch):
    import errno

    with Store(tmp_path / "store") as store:
        store.create_topic("stuck", 2)
        store.partition("stuck", 0).append_batches(_batch())
        real_rename = os.rename

        def rename(src, dst):  # a full ext4 directory block refuses the longer name
            if str(dst).endswith("-delete"):
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real_rename(src, dst)

        monkeypatch.setattr(os, "rename", rename)
        store.delete_topic("stuck")
        monkeypatch.undo()
        assert store.topics() == {}
        assert [p.name for p in (tmp_path / "store").iterdir() if p.is_dir()] == []


def test_an_in_place_delete_removes_the_directory_under_the_stores_lock(tmp_path, monkeypatch):
    """When the rename fails, the directory is removed where it is while the store's lock is held,
    so that a create of the same name (which takes the lock) can never see the old data or have
    its new directory removed afterwards."""
    import errno
    import shutil

    with Store(tmp_path / "store") as store:
        store.create_topic("t", 1)
        store.partition("t", 0).append_batches(_batch())
        live = tmp_path / "store" / "t-0"
        real_rename, real_rmtree = os.rename, shutil.rmtree
        removals = []

        def rename(src, dst):
            if str(dst).endswith("-delete"):
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real_rename(src, dst)

        def rmtree(path, *args, **kwargs):
            removals.append((Path(path) == live, store._lock._is_owned()))
            real_rmtree(path, *args, **kwargs)

        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(shutil, "rmtree", rmtree)
        store.delete_topic("t")
        monkeypatch.undo()
        assert removals and all(locked for is_live, locked in removals if is_live), removals
        store.create_topic("t", 1)
        store.partition("t", 0).append_batches(_batch())
    with Store(tmp_path / "store") as store:
        assert store.topics() == {"t": 1} and store.partition("t", 0).log_end_offset == 1


def _batch() -> bytes:
    from logship.records import build_batch

    return build_batch([(0, None, b"value", [])])

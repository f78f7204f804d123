"""Durability: group commit shares fdatasyncs, a failed sync is final, flush policies."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from logship.errors import KafkaStorageError
from logship.storage import GroupCommit, LogConfig, Partition, Store
from storage_batches import make_batch


class SlowSync:
    """An fdatasync stand-in that counts calls and takes `delay` seconds (or waits for `gate`)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail


def test_concurrent_syncs_share_fdatasyncs(tmp_path):
    sync = SlowSync(delay=0.02)
    p = Partition("t", 0, tmp_path / "t-0", fdatasync=sync)
    threads, errors = 16, []
    barrier = threading.Barrier(threads)

    def produce():
        try:
            barrier.wait()
            result = p.append_batches(make_batch(2))
            p.sync_to(result.last_offset + 1)
            assert p.recovery_point >= result.last_offset + 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert not errors
    assert p.recovery_point == p.log_end_offset == 2 * threads
    assert 1 <= sync.calls < threads, sync.calls
    p.close()


def test_appends_go_on_while_a_sync_runs_and_the_next_sync_covers_them(tmp_path):
    sync = SlowSync()
    sync.gate = threading.Event()
    p = Partition("t", 0, tmp_path / "t-0", fdatasync=sync)
    p.append_batches(make_batch(2))
    syncer = threading.Thread(target=p.sync_to, args=(2,))
    syncer.start()
    assert sync.started.wait(5)
    p.append_batches(make_batch(3))  # not blocked by the running sync
    waiter = threading.Thread(target=p.sync_to, args=(5,))
    waiter.start()
    time.sleep(0.05)
    assert p.recovery_point == 0 and waiter.is_alive()
    sync.gate.set()
    syncer.join(5)
    waiter.join(5)
    assert p.recovery_point == 5
    assert sync.calls == 2  # the second round covered what was appended during the first
    p.sync_to(5)
    p.flush()
    assert sync.calls == 2  # nothing new to sync
    p.close()


def test_a_failed_sync_is_never_retried(tmp_path):
    sync = SlowSync()
    sync.fail = OSError(errno.EIO, "Input/output error")
    with Store(tmp_path, fdatasync=sync) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        p.append_batches(make_batch(1))
        with pytest.raises(KafkaStorageError, match="Input/output error"):
            p.sync_to(1)
        sync.fail = None  # even if the disk "recovers", the partition stays offline
        with pytest.raises(KafkaStorageError, match="earlier fdatasync failed"):
            p.sync_to(1)
        with pytest.raises(KafkaStorageError):
            p.append_batches(make_batch(1))
        assert p.offline and p.recovery_point == 0
    assert not (tmp_path / ".logship-clean-shutdown").exists()  # next open recovers
    with Store(tmp_path) as store:
        assert store.recovered and store.partition("t", 0).log_end_offset == 1


def test_flush_messages_policy(tmp_path):
    sync = SlowSync()
    p = Partition("t", 0, tmp_path / "t-0", LogConfig(flush_messages=5), fdatasync=sync)
    for _ in range(4):
        p.append_batches(make_batch(2))
    assert sync.calls == 1 and p.recovery_point == 6  # after the 6th record; 2 wait for the next
    p.close()


def test_flush_ms_policy(tmp_path):
    sync, now = SlowSync(), [100.0]
    p = Partition("t", 0, tmp_path / "t-0", LogConfig(flush_ms=1_000), fdatasync=sync, clock=lambda: now[0])
    p.append_batches(make_batch(1))
    assert sync.calls == 0
    now[0] += 1.5
    p.append_batches(make_batch(1))
    assert sync.calls == 1 and p.recovery_point == 2
    p.close()


def test_checkpoint_flushes_then_records_recovery_points(tmp_path):
    sync = SlowSync()
    with Store(tmp_path, LogConfig(segment_bytes=300), fdatasync=sync) as store:
        store.create_topic("t", 2)
        for _ in range(5):
            store.partition("t", 0).append_batches(make_batch(2, value_size=80))
        store.checkpoint()
        assert sync.calls >= 2  # every segment written since the last sync
        assert (tmp_path / "recovery-point-offset-checkpoint").read_text() == "0\n2\nt 0 10\nt 1 0\n"


def test_group_commit_returns_at_once_when_already_durable():
    calls = []
    commit = GroupCommit(lambda: calls.append(1) or 10, durable_offset=5)
    commit.sync_to(3)
    assert calls == []
    commit.sync_to(7)
    assert calls == [1] and commit.durable_offset == 10
    commit.lower_to(4)
    assert commit.durable_offset == 4


def test_a_truncation_during_a_sync_caps_what_it_covered():
    gate, started = threading.Event(), threading.Event()

    def sync():
        started.set()
        gate.wait(5)
        return 10

    commit = GroupCommit(sync, durable_offset=0)
    worker = threading.Thread(target=commit.sync_to, args=(10,))
    worker.start()
    assert started.wait(5)
    commit.lower_to(4)  # the log was cut to 4 while the sync ran
    gate.set()
    worker.join(5)
    assert commit.durable_offset == 4


def test_retention_and_delete_before_from_two_threads_do_not_deadlock(tmp_path):
    with Store(tmp_path, LogConfig(segment_bytes=400, retention_bytes=0, retention_ms=-1)) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        stop, errors = threading.Event(), []

        def retention():
            while not stop.is_set():
                store.enforce_retention()

        worker = threading.Thread(target=retention)
        worker.start()
        try:
            for _ in range(150):
                p.append_batches(make_batch(2, value_size=60))
                p.delete_before(max(p.log_start_offset, p.high_watermark - 3))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()
            worker.join(10)
        assert not worker.is_alive() and not errors
        assert p.log_end_offset == 300
    assert (tmp_path / "log-start-offset-checkpoint").read_text().endswith(f"t 0 {p.log_start_offset}\n")

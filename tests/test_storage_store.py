"""Store: topics on disk, the directory lock, restarts, checkpoints and retention."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from logship import records
from logship.errors import (InvalidPartitionsError, InvalidTopicError, StoreLockedError, TopicAlreadyExistsError,
                            UnknownTopicError)
from logship.storage import LogConfig, Store, validate_topic_name
from storage_batches import make_batch, read_all

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, seconds: float = 2_000_000.0):
        self.now = seconds

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("name", ["a", "A-b_c.9", "x" * 249, "..a", "-", "_"])
def test_valid_topic_names(name):
    validate_topic_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 250, "a/b", "a b", "é", "a\n", "../x", "a;b"])
def test_invalid_topic_names(name):
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


def test_topics_are_directories(tmp_path):
    with Store(tmp_path) as store:
        assert store.topics() == {}
        store.create_topic("logs.app-1", 3)
        store.create_topic("x", 1)
        assert store.topics() == {"logs.app-1": 3, "x": 1}
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == \
            ["logs.app-1-0", "logs.app-1-1", "logs.app-1-2", "x-0"]
        assert not any((tmp_path / "x-0").iterdir())  # a partition's first segment is made on first use
        store.partition("x", 0)
        assert (tmp_path / "x-0" / "00000000000000000000.log").exists()
        with pytest.raises(TopicAlreadyExistsError):
            store.create_topic("x", 2)
        with pytest.raises(InvalidPartitionsError):
            store.create_topic("y", 0)
        with pytest.raises(InvalidTopicError):
            store.create_topic("bad/name", 1)
        with pytest.raises(UnknownTopicError):
            store.partition("x", 1)
        with pytest.raises(UnknownTopicError):
            store.partition("nope", 0)
        store.partition("logs.app-1", 2).append_batches(make_batch(2))
    with Store(tmp_path) as store:
        assert store.topics() == {"logs.app-1": 3, "x": 1}
        assert store.partition("logs.app-1", 2).log_end_offset == 2


def test_delete_topic_removes_its_data(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("gone", 2)
        store.create_topic("kept", 1)
        store.partition("gone", 0).append_batches(make_batch(3))
        store.delete_topic("gone")
        assert store.topics() == {"kept": 1}
        assert not any(p.name.startswith("gone") for p in tmp_path.iterdir())
        with pytest.raises(UnknownTopicError):
            store.delete_topic("gone")
        store.create_topic("gone", 1)  # a new topic of the same name starts empty
        assert store.partition("gone", 0).log_end_offset == 0
    (tmp_path / "kept-0.0123abcd-delete").mkdir()  # what a crash mid-deletion leaves
    with Store(tmp_path) as store:
        assert store.topics() == {"gone": 1, "kept": 1}
    assert not (tmp_path / "kept-0.0123abcd-delete").exists()


def test_a_second_store_on_the_same_directory_is_refused(tmp_path):
    with Store(tmp_path):
        with pytest.raises(StoreLockedError, match=str(tmp_path)):
            Store(tmp_path)
    Store(tmp_path).close()  # free again after close


def test_the_lock_holds_across_processes(tmp_path):
    code = "import sys; from logship.storage import Store; Store(sys.argv[1]); print('opened')"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with Store(tmp_path):
        child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                               env=env, timeout=60)
        assert child.returncode != 0
        assert "StoreLockedError" in child.stderr and str(tmp_path) in child.stderr
        assert f"pid {os.getpid()}" in child.stderr
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                           env=env, timeout=60)
    assert child.returncode == 0 and "opened" in child.stdout


def test_a_killed_process_leaves_no_lock_and_an_unclean_marker(tmp_path):
    code = ("import os, sys; from logship.storage import Store; s = Store(sys.argv[1]); s.create_topic('t', 1); "
            "[s.partition('t', 0).append_batches(bytes.fromhex(sys.argv[2])) for _ in range(5)]; os._exit(9)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path), make_batch(2).hex()], env=env, timeout=60)
    assert child.returncode == 9
    assert not (tmp_path / ".logship-clean-shutdown").exists()
    with Store(tmp_path) as store:
        assert store.recovered
        assert store.partition("t", 0).log_end_offset == 10
    assert (tmp_path / ".logship-clean-shutdown").exists()


def test_the_marker_exists_only_while_closed(tmp_path):
    store = Store(tmp_path)
    assert not (tmp_path / ".logship-clean-shutdown").exists()
    store.close()
    store.close()  # twice is fine
    assert (tmp_path / ".logship-clean-shutdown").exists()
    with Store(tmp_path) as store:
        assert not store.recovered
        assert not (tmp_path / ".logship-clean-shutdown").exists()


def test_offsets_continue_after_a_clean_restart(tmp_path):
    config = LogConfig(segment_bytes=800)
    with Store(tmp_path, config) as store:
        store.create_topic("t", 2)
        for _ in range(10):
            store.partition("t", 0).append_batches(make_batch(3))
        data = read_all(store.partition("t", 0))
    with Store(tmp_path, config) as store:
        p = store.partition("t", 0)
        assert (p.log_start_offset, p.log_end_offset, p.high_watermark) == (0, 30, 30)
        assert read_all(p) == data
        assert p.append_batches(make_batch(1)).base_offset == 30
        assert store.partition("t", 1).log_end_offset == 0


def test_checkpoint_files_use_kafkas_format(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("a", 2)
        store.partition("a", 1).append_batches(make_batch(4))
        store.checkpoint()
        assert (tmp_path / "recovery-point-offset-checkpoint").read_text() == "0\n2\na 0 0\na 1 4\n"
        store.partition("a", 1).delete_before(2)
        assert (tmp_path / "log-start-offset-checkpoint").read_text() == "0\n2\na 0 0\na 1 2\n"
    with Store(tmp_path) as store:
        assert store.partition("a", 1).log_start_offset == 2


def test_retention_by_time_deletes_whole_expired_segments(tmp_path):
    clock = Clock()
    now_ms = int(clock.now * 1000)
    config = LogConfig(segment_bytes=700, retention_ms=60_000)
    with Store(tmp_path, config, clock=clock) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        for i in range(12):  # 2 batches per segment, each segment 10 s newer than the last
            p.append_batches(make_batch(2, value_size=100, timestamp=now_ms - 200_000 + (i // 2) * 10_000))
        segments = p.segments
        assert len(segments) == 6
        deleted = store.enforce_retention(now_ms=now_ms)
        expired = [s for s in segments if now_ms - s.max_timestamp > 60_000]
        assert deleted == len(expired) == 6  # all expired: the active one rolls first
        assert (p.log_start_offset, p.log_end_offset) == (24, 24)
        assert [s.base_offset for s in p.segments] == [24]
        assert p.read(24, 100) is None
    with Store(tmp_path, config, clock=clock) as store:  # offsets continue after restart
        p = store.partition("t", 0)
        assert (p.log_start_offset, p.log_end_offset) == (24, 24)
        assert p.append_batches(make_batch(1, timestamp=now_ms)).base_offset == 24


def test_retention_by_time_stops_at_the_first_young_segment(tmp_path):
    clock = Clock()
    now_ms = int(clock.now * 1000)
    with Store(tmp_path, LogConfig(segment_bytes=700, retention_ms=60_000), clock=clock) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        stamps = [100_000, 100_000, 90_000, 90_000, 10_000, 10_000, 80_000, 80_000, 5_000, 5_000]
        for age in stamps:
            p.append_batches(make_batch(2, value_size=100, timestamp=now_ms - age))
        assert len(p.segments) == 5
        assert store.enforce_retention(now_ms) == 2  # the third segment is young; the 4th waits for it
        assert p.log_start_offset == 8 == p.segments[0].base_offset
        assert store.enforce_retention(now_ms + 55_000) == 2  # the active one stays while young
        assert len(p.segments) == 1 and p.segments[0].size > 0 and p.log_start_offset == 16


def test_retention_by_size_never_deletes_the_active_segment(tmp_path):
    with Store(tmp_path, LogConfig(segment_bytes=700, retention_bytes=1_500, retention_ms=-1)) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        for _ in range(11):
            p.append_batches(make_batch(2, value_size=100))
        sizes = [s.size for s in p.segments]
        assert len(sizes) == 6
        deleted = store.enforce_retention()
        assert deleted == 2  # 3069 bytes: 2511, 1953 kept >= 1500; one more would leave 1395
        assert p.size_bytes >= 1_500 and p.size_bytes - p.segments[0].size < 1_500
        assert p.log_start_offset == p.segments[0].base_offset == 8
    with Store(tmp_path, LogConfig(segment_bytes=700, retention_bytes=0, retention_ms=-1)) as store:
        p = store.partition("t", 0)
        store.enforce_retention()
        assert len(p.segments) == 1 and p.segments[0].size > 0
        assert p.log_start_offset == p.segments[0].base_offset == 20


def test_retention_never_deletes_above_the_high_watermark(tmp_path):
    with Store(tmp_path, LogConfig(segment_bytes=700, retention_bytes=0, retention_ms=-1)) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        for _ in range(8):
            p.append_batches(make_batch(2, value_size=100))
        p.set_high_watermark(5)
        store.enforce_retention()
        assert p.log_start_offset <= 5 and p.segments[0].base_offset <= 4


def test_an_unreadable_recovery_checkpoint_means_recovering_everything(tmp_path):
    with Store(tmp_path, LogConfig(segment_bytes=600)) as store:
        store.create_topic("t", 1)
        for _ in range(6):
            store.partition("t", 0).append_batches(make_batch(2, value_size=100))
    (tmp_path / ".logship-clean-shutdown").unlink()
    (tmp_path / "recovery-point-offset-checkpoint").write_text("garbage\n")
    with Store(tmp_path, LogConfig(segment_bytes=600)) as store:
        p = store.partition("t", 0)
        assert p.load_report.recovered_segments == len(p.segments) > 1
        assert p.log_end_offset == 12
    assert (tmp_path / "recovery-point-offset-checkpoint").read_text() == "0\n1\nt 0 12\n"


def test_reads_while_another_thread_appends(tmp_path):
    with Store(tmp_path, LogConfig(segment_bytes=2_000)) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        done, seen, errors = threading.Event(), [], []

        def consume():
            offset = 0
            try:
                while not done.is_set() or offset < p.high_watermark:
                    piece = p.read(offset, 700)
                    if piece is None:
                        continue
                    with piece:
                        data = piece.read_bytes()
                    pos = 0
                    while pos + 61 <= len(data):
                        header = records.parse_header(data, pos)
                        if pos + header.size > len(data):
                            break  # cut by max_bytes: read it again from its start
                        assert records.crc_is_valid(data, pos, header.size)
                        if header.base_offset >= offset:
                            seen.append(header.base_offset)
                            offset = header.next_offset
                        pos += header.size
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        reader = threading.Thread(target=consume)
        reader.start()
        for _ in range(300):
            p.append_batches(make_batch(2, value_size=60))
        done.set()
        reader.join(30)
        assert not errors and seen == list(range(0, 600, 2))

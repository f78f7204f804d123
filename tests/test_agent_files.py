"""The agent's file side on real files, without a broker: identity, rotation, truncation,
deletion, copytruncate, checkpoints, restarts, the lock.

A stand-in for the shipper acknowledges batches (at once, or when told) and keeps their
records, so each test drives the agent's loop turn by turn and checks what would have
been shipped. The same behaviour against a real broker is in test_agent_integration.py.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from logship.agent import Agent, file_status
from logship.agent.checkpoint import FileState, load_states, write_states
from logship.agent.config import AgentConfig, make_input
from logship.agent.fileset import FileSet
from logship.agent.identity import (FINGERPRINT_BYTES, MARKER_BYTES, FileId, Fingerprint, file_id, generation,
                                    marker_within, read_fingerprint, read_marker)
from logship.agent.tailer import OK, REWRITTEN, TRUNCATED, LineReader, Tailer
from logship.errors import StoreLockedError
from logship.record_codec import decode_records_section


class StandInShipper:
    """Takes batches like agent.shipper.Shipper; acknowledges them at once unless `hold`."""

    def __init__(self, hold: bool = False):
        self.hold = hold
        self.records = []
        self.held = []
        self.done = []
        self.retries = 0

    def partitions(self, topic):
        return 1

    def submit(self, batches):
        for batch in batches:
            self.records += [(r.value, dict(r.headers)) for r in
                             decode_records_section(b"".join(batch.pieces), batch.count, 0, batch.timestamp_ms, None)]
            (self.held if self.hold else self.done).append((batch, None))

    def release(self):
        self.done += self.held
        self.held = []

    def room(self):
        return True

    def take_done(self):
        done, self.done = self.done, []
        return done

    @property
    def pending(self):
        return len(self.held)

    def close(self, timeout):
        return not self.held

    def is_alive(self):
        return True


def config(tmp_path: Path, pattern: str = "logs/*.log", **options) -> AgentConfig:
    inp = {"paths": [str(tmp_path / pattern)], "topic": "t", "partial_line_timeout": 0.3}
    inp.update(options.pop("input", {}))
    options = {"scan_interval": 0.05, "poll_interval": 0.01, "close_renamed_after": 0.3, "copytruncate_wait": 0.5,
               "checkpoint_interval": 0.0, "watch": False, **options}
    return AgentConfig(inputs=(make_input(inp),), state_dir=tmp_path / "state", brokers="127.0.0.1:1", **options)


class Run:
    """An agent with a stand-in shipper, driven turn by turn."""

    def __init__(self, cfg: AgentConfig, hold: bool = False):
        self.shipper = StandInShipper(hold)
        self.agent = Agent(cfg, shipper=self.shipper)
        self.agent.start()
        self.agent.scan(initial=True)

    def drive(self, seconds: float = 0.3, until=None):
        deadline = time.monotonic() + (10 if until else seconds)
        while time.monotonic() < deadline:
            self.agent.turn(wait=False)
            if until is not None and until():
                return
            time.sleep(0.005)
        assert until is None, "condition not reached"

    def values(self):
        return [v for v, _ in self.shipper.records]

    def stop(self):
        self.agent.shutdown()


@pytest.fixture
def logs(tmp_path):
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


def append(path: Path, *lines: bytes | str, newline: bool = True) -> None:
    with open(path, "ab") as f:
        for line in lines:
            f.write((line.encode() if isinstance(line, str) else line) + (b"\n" if newline else b""))


def numbered(prefix: str, start: int, stop: int) -> list[bytes]:
    return [f"{prefix} {i:06d} {'x' * 40} {prefix}{i}".encode() for i in range(start, stop)]


def checkpoints(tmp_path: Path) -> dict:
    return {e["path"]: e for e in json.loads((tmp_path / "state" / "checkpoints.json").read_text())["files"]}


# --- identity ----------------------------------------------------------------------------------


def test_a_reused_inode_has_a_new_generation_on_ext4_like_filesystems(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a")
    fd = os.open(path, os.O_RDONLY)
    first = file_id(fd)
    os.close(fd)
    path.unlink()
    path.write_bytes(b"a")
    fd = os.open(path, os.O_RDONLY)
    second = file_id(fd)
    os.close(fd)
    if generation(os.open(tmp_path, os.O_RDONLY)) is None:
        pytest.skip("this filesystem has no inode generations")
    assert not first.same_inode(second) or first.ino != second.ino


def test_a_marker_from_the_bytes_just_read_is_the_one_read_from_the_file(tmp_path):
    path = tmp_path / "f"
    content = bytes(range(256)) * 3
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        for start in (0, 5, 31, 32, 33, 100):
            before = content[max(0, start - MARKER_BYTES):start]
            data = content[start:start + 90]
            for offset in range(start, start + len(data) + 1):
                assert marker_within(before, start, data, offset) == read_marker(fd, offset), (start, offset)
            assert marker_within(before, start, data, start - 1) is None
            assert marker_within(before, start, data, start + len(data) + 1) is None
        # bytes before the read that are not known: no marker rather than a wrong one
        assert marker_within(b"", 100, content[100:190], 110) is None
    finally:
        os.close(fd)


def test_fingerprints_are_progressive_up_to_1_kib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"short")
    fd = os.open(path, os.O_RDONLY)
    try:
        small = read_fingerprint(fd, 5)
        assert small.length == 5 and not small.complete
        append(path, b"y" * 3000)
        full = read_fingerprint(fd, os.fstat(fd).st_size)
        assert full.length == FINGERPRINT_BYTES and full.complete
    finally:
        os.close(fd)


def tailer_for(path: Path, offset: int = 0) -> Tailer:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    state = FileState(file_id(fd), read_fingerprint(fd, size), offset, str(path))
    inp = make_input({"paths": [str(path)], "topic": "t"})
    return Tailer(fd, state.id, str(path), state, None, LineReader(offset, inp), size, 0.0)


def test_tailer_tells_truncation_rewrite_and_deletion_from_growth(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"".join(line + b"\n" for line in numbered("a", 0, 100)))
    t = tailer_for(path)
    try:
        assert t.check(0)[0] == OK
        t.reader.feed(t.read(1 << 20), 0)
        append(path, "more")
        assert t.check(0)[0] == OK  # growth
        with open(path, "r+b") as f:  # rewritten in place (checked when the size changes)
            f.write(b"B" * 10)
        append(path, "grown")
        assert t.check(0)[0] == REWRITTEN
        os.truncate(path, 10)
        assert t.check(0)[0] == TRUNCATED
        path.unlink()
        status, st = t.check(0)
        assert st.st_nlink == 0
    finally:
        t.close()


def test_tailer_notices_a_rewrite_behind_the_fingerprint_through_the_marker(tmp_path):
    head = b"H" * 2000 + b"\n"
    path = tmp_path / "f"
    path.write_bytes(head + b"old line one\nold line two\n")
    t = tailer_for(path)
    try:
        t.reader.feed(t.read(1 << 20), 0)
        path.write_bytes(head + b"new content, longer than before\n")  # same head, refilled past the offset
        assert t.check(0)[0] == REWRITTEN
    finally:
        t.close()


# --- shipping and checkpoints --------------------------------------------------------------------


def test_lines_are_shipped_with_host_path_and_offset_headers(tmp_path, logs):
    append(logs / "app.log", "one", "two", b"\xff\xfe not utf-8")
    run = Run(config(tmp_path, host="web-1", input={"fields": {"env": "prod"}}))
    run.drive(until=lambda: len(run.shipper.records) == 3)
    run.stop()
    path = str(logs / "app.log")
    assert run.shipper.records == [
        (b"one", {"host": b"web-1", "path": path.encode(), "env": b"prod", "offset": b"0"}),
        (b"two", {"host": b"web-1", "path": path.encode(), "env": b"prod", "offset": b"4"}),
        (b"\xff\xfe not utf-8", {"host": b"web-1", "path": path.encode(), "env": b"prod", "offset": b"8"}),
    ]
    assert checkpoints(tmp_path)[path]["offset"] == os.path.getsize(logs / "app.log")


@pytest.mark.parametrize("codec,bom", [("utf-16-be", b"\xfe\xff"), ("utf-16-le", b"\xff\xfe")])
def test_a_utf16_file_resumed_past_its_byte_order_mark_is_decoded_with_it(tmp_path, logs, codec, bom):
    """encoding = "utf-16": the mark decides the byte order; a restart resumes mid-file (past
    the mark) at a checkpoint in file bytes, reads the mark again and decodes the rest."""
    path = logs / "app.log"
    path.write_bytes(bom + "".join(f"première {i}\r\n" for i in range(3)).encode(codec))
    cfg = config(tmp_path, input={"encoding": "utf-16"})
    run = Run(cfg)
    run.drive(until=lambda: len(run.shipper.records) == 3)
    run.stop()
    size = path.stat().st_size
    assert checkpoints(tmp_path)[str(path)]["offset"] == size
    assert [h["offset"] for _, h in run.shipper.records] == [b"2", b"%d" % (2 + (size - 2) // 3),
                                                             b"%d" % (2 + 2 * (size - 2) // 3)]
    with open(path, "ab") as f:
        f.write("après 😀\r\n".encode(codec))
    run = Run(cfg)
    run.drive(until=lambda: len(run.shipper.records) == 1)
    run.drive(0.1)
    run.stop()
    assert run.values() == ["après 😀".encode()] and run.shipper.records[0][1]["offset"] == b"%d" % size


def test_checkpoints_move_only_when_the_broker_acknowledged(tmp_path, logs):
    append(logs / "app.log", *numbered("a", 0, 10))
    run = Run(config(tmp_path), hold=True)
    run.drive(until=lambda: len(run.shipper.records) == 10)
    run.drive(0.1)
    path = str(logs / "app.log")
    assert path not in checkpoints(tmp_path) or checkpoints(tmp_path)[path]["offset"] == 0
    run.shipper.release()
    run.drive(until=lambda: checkpoints(tmp_path)[path]["offset"] == os.path.getsize(logs / "app.log"))
    run.stop()


def test_a_restart_resumes_where_the_acknowledged_lines_end(tmp_path, logs):
    append(logs / "app.log", *numbered("a", 0, 50))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 50)
    run.stop()
    append(logs / "app.log", *numbered("a", 50, 80))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 30)
    run.drive(0.1)
    run.stop()
    assert run.values() == numbered("a", 50, 80)


def test_unacknowledged_lines_are_read_again_after_a_restart(tmp_path, logs):
    append(logs / "app.log", *numbered("a", 0, 20))
    run = Run(config(tmp_path), hold=True)
    run.drive(until=lambda: len(run.shipper.records) == 20)
    run.stop()  # never acknowledged: the checkpoint stays at 0
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 20)
    run.stop()
    assert run.values() == numbered("a", 0, 20)


def test_a_small_file_ships_at_once_and_keeps_its_identity_as_it_grows(tmp_path, logs):
    append(logs / "app.log", "tiny")
    run = Run(config(tmp_path))
    run.drive(until=lambda: run.values() == [b"tiny"])
    append(logs / "app.log", *numbered("b", 0, 40))  # past 1 KiB: the fingerprint is extended
    run.drive(until=lambda: len(run.shipper.records) == 41)
    run.stop()
    assert checkpoints(tmp_path)[str(logs / "app.log")]["fp_len"] == FINGERPRINT_BYTES
    append(logs / "app.log", "after restart")
    run = Run(config(tmp_path))
    run.drive(until=lambda: run.values() == [b"after restart"])
    run.stop()


def test_start_position_end_skips_history_at_the_first_start_only(tmp_path, logs):
    append(logs / "old.log", "history")
    run = Run(config(tmp_path, input={"start_position": "end"}))
    run.drive(0.1)
    append(logs / "old.log", "fresh")
    append(logs / "new.log", "new file")
    run.drive(until=lambda: sorted(run.values()) == [b"fresh", b"new file"])
    run.stop()


def test_a_last_line_without_newline_is_shipped_after_the_timeout_and_not_again(tmp_path, logs):
    append(logs / "app.log", "complete")
    append(logs / "app.log", "partial", newline=False)
    run = Run(config(tmp_path))
    run.drive(until=lambda: run.values() == [b"complete"])
    run.drive(until=lambda: run.values() == [b"complete", b"partial"])
    run.stop()
    run = Run(config(tmp_path))
    run.drive(0.2)
    run.stop()
    assert run.values() == []


def test_a_partial_line_completed_in_time_is_one_line(tmp_path, logs):
    append(logs / "app.log", "begin", newline=False)
    run = Run(config(tmp_path, input={"partial_line_timeout": 5}))
    run.drive(0.1)
    append(logs / "app.log", "-end")
    run.drive(until=lambda: run.values() == [b"begin-end"])
    run.stop()


def test_a_restart_never_cuts_a_held_back_line(tmp_path, logs):
    append(logs / "app.log", "begin", newline=False)
    run = Run(config(tmp_path, input={"partial_line_timeout": 5}))
    run.drive(0.1)
    run.stop()
    append(logs / "app.log", "-end")
    run = Run(config(tmp_path))
    run.drive(until=lambda: run.values() == [b"begin-end"])
    run.stop()


def test_a_10_mb_line_is_truncated_and_flagged_and_the_file_goes_on(tmp_path, logs):
    with open(logs / "app.log", "wb") as f:
        f.write(b"before\n" + b"z" * (10 << 20) + b"\nafter\n")
    run = Run(config(tmp_path, input={"max_line_bytes": "64K"}))
    run.drive(until=lambda: len(run.shipper.records) == 3)
    run.stop()
    (v1, h1), (v2, h2), (v3, h3) = run.shipper.records
    assert (v1, v2, v3) == (b"before", b"z" * 65536, b"after")
    assert h2["truncated"] == b"true" and "truncated" not in h1 and "truncated" not in h3
    assert run.agent.counters.lines_truncated == 1


def test_multiline_events_and_checkpoints_on_event_boundaries(tmp_path, logs):
    trace = ["2026-01-01 ERROR x", "java.lang.Exception: y", "\tat a.b(C.java:1)"]
    append(logs / "app.log", *trace, "2026-01-01 INFO z")
    inp = {"multiline": {"start_pattern": r"\d{4}-", "timeout": 0.2}}
    run = Run(config(tmp_path, input=inp))
    run.drive(until=lambda: len(run.shipper.records) == 2)
    run.stop()
    assert run.values() == ["\n".join(trace).encode(), b"2026-01-01 INFO z"]


def test_a_multiline_event_interrupted_by_a_restart_is_read_again_whole(tmp_path, logs):
    append(logs / "app.log", "2026-01-01 ERROR x", "\tat one")
    inp = {"multiline": {"start_pattern": r"\d{4}-", "timeout": 30}}
    run = Run(config(tmp_path, input=inp))
    run.drive(0.2)
    run.stop()
    assert run.values() == []
    append(logs / "app.log", "\tat two", "2026-01-01 INFO next")
    run = Run(config(tmp_path, input=inp))
    run.drive(until=lambda: len(run.shipper.records) == 1)
    run.stop()
    assert run.values() == [b"2026-01-01 ERROR x\n\tat one\n\tat two"]


# --- rotation ------------------------------------------------------------------------------------


def test_rename_rotation_finishes_the_old_file_and_starts_the_new_one(tmp_path, logs):
    path = logs / "app.log"
    writer = open(path, "ab", buffering=0)
    writer.write(b"".join(l + b"\n" for l in numbered("a", 0, 10)))
    run = Run(config(tmp_path, pattern="logs/app.log"))
    run.drive(until=lambda: len(run.shipper.records) == 10)
    os.rename(path, logs / "app.log.1")  # logrotate `create`
    writer.write(b"".join(l + b"\n" for l in numbered("a", 10, 20)))  # the writer has not reopened yet
    append(path, *numbered("b", 0, 5))
    writer.close()
    run.drive(until=lambda: len(run.shipper.records) == 25)
    old = [v for v, h in run.shipper.records if v.startswith(b"a")]
    assert old == numbered("a", 0, 20)
    assert [v for v, h in run.shipper.records if v.startswith(b"b")] == numbered("b", 0, 5)
    run.drive(until=lambda: len(run.agent.files.tailers) == 1)  # the renamed file is let go
    run.stop()


def test_a_numbered_rotation_chain_inside_the_glob_is_not_shipped_again(tmp_path, logs):
    path = logs / "app.log"
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    expected = []
    for generation_ in range(4):
        lines = numbered(f"g{generation_}", 0, 30)
        append(path, *lines)
        expected += lines
        run.drive(until=lambda: len(run.shipper.records) == len(expected))
        for n in range(3, 0, -1):  # app.log.3 -> .4, ..., app.log -> app.log.1
            src = logs / (f"app.log.{n}")
            if src.exists():
                os.rename(src, logs / f"app.log.{n + 1}")
        os.rename(path, logs / "app.log.1")
        run.drive(0.1)
    run.drive(0.3)
    run.stop()
    assert run.values() == expected


def read_100_lines_then_write_50_more(tmp_path, logs) -> Run:
    """app.log: 100 "a" lines the agent has shipped, then 50 it has not read yet."""
    append(logs / "app.log", *numbered("a", 0, 100))
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    run.drive(until=lambda: len(run.shipper.records) == 100)
    append(logs / "app.log", *numbered("a", 100, 150))
    return run


def assert_the_150_and_10_new_lines_shipped_once(run: Run, logs) -> None:
    """After the rotation: 10 "b" lines in the new app.log, then everything, once."""
    append(logs / "app.log", *numbered("b", 0, 10))
    run.drive(until=lambda: len(run.shipper.records) == 160)
    run.drive(0.6)
    run.stop()
    values = run.values()
    assert sorted(v for v in values if v.startswith(b"a")) == numbered("a", 0, 150)
    assert [v for v in values if v.startswith(b"b")] == numbered("b", 0, 10)
    assert len(values) == 160


@pytest.mark.parametrize("seen_before_truncate", [False, True])
def test_copytruncate_ships_unread_lines_from_the_copy_once(tmp_path, logs, seen_before_truncate):
    path = logs / "app.log"
    run = read_100_lines_then_write_50_more(tmp_path, logs)
    shutil.copyfile(path, logs / "app.log.1")
    if seen_before_truncate:  # the copy is found while the original is still whole
        run.agent.scan()
        assert len(run.agent.files.held) == 1
    os.truncate(path, 0)
    assert_the_150_and_10_new_lines_shipped_once(run, logs)
    assert run.agent.counters.bytes_skipped == 0


def assert_a_restart_ships_only_10_new_lines(tmp_path, path) -> None:
    """After a copytruncate of `path` while the agent was stopped: 10 "b" lines in it, and a
    restarted agent ships those alone (the copy is recognised)."""
    append(path, *numbered("b", 0, 10))
    again = Run(config(tmp_path, pattern="logs/app.log*"))
    again.drive(until=lambda: len(again.shipper.records) >= 10)
    again.drive(0.8)
    again.stop()
    assert again.values() == numbered("b", 0, 10)


@pytest.mark.parametrize("seen_before_truncate", [False, True])
def test_a_copy_shorter_than_what_was_read_of_the_original_is_not_shipped_again(tmp_path, logs,
                                                                                seen_before_truncate):
    """logrotate copies app.log, the application writes 3 more lines, the agent reads them
    from the original, then logrotate truncates it: the copy holds less than was read of
    the original. Everything in it was shipped: nothing is shipped again (found by a review:
    the whole copy was)."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 100))
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    run.drive(until=lambda: len(run.shipper.records) == 100)
    shutil.copyfile(path, logs / "app.log.1")
    append(path, *numbered("c", 0, 3))
    if seen_before_truncate:
        run.drive(until=lambda: len(run.shipper.records) == 103)
        run.agent.scan()
        assert len(run.agent.files.held) == 1
    else:
        tailer = next(iter(run.agent.files.tailers.values()))
        run.agent._emit(tailer.state, tailer.route, tailer.reader.feed(tailer.read(1 << 20), time.monotonic()))
    os.truncate(path, 0)
    append(path, *numbered("b", 0, 10))
    run.drive(until=lambda: sum(v.startswith(b"b") for v in run.values()) == 10)
    run.drive(0.8)
    run.stop()
    values = run.values()
    assert sorted(values) == sorted(numbered("a", 0, 100) + numbered("c", 0, 3) + numbered("b", 0, 10))
    assert run.agent.counters.bytes_skipped == 0


def test_a_shorter_copy_of_lines_not_acknowledged_yet_is_held_not_skipped(tmp_path, logs):
    """The same rotation while the broker is down: nothing of app.log is acknowledged, so the
    copy is held back (not tailed from its end): after a restart its lines are shipped (found
    by a review: the copy was checkpointed at its end, and its 100 lines never shipped)."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 100))
    run = Run(config(tmp_path, pattern="logs/app.log*"), hold=True)
    run.drive(until=lambda: len(run.shipper.records) == 100)
    shutil.copyfile(path, logs / "app.log.1")
    append(path, *numbered("c", 0, 3))
    run.drive(until=lambda: len(run.shipper.records) == 103)
    os.truncate(path, 0)
    append(path, *numbered("b", 0, 10))
    run.drive(until=lambda: sum(v.startswith(b"b") for v in run.values()) == 10)
    run.drive(0.3)
    assert len(run.agent.files.held) == 1
    run.stop()  # nothing was acknowledged
    again = Run(config(tmp_path, pattern="logs/app.log*"))
    again.drive(until=lambda: set(numbered("a", 0, 100)) <= set(again.values()))
    again.stop()


def test_a_copy_shorter_than_what_was_read_is_recognised_at_a_restart(tmp_path, logs):
    """The same copytruncate while the agent is stopped: its checkpoint is past the end of
    the copy; the copy is recognised, nothing is shipped again."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 100))
    copied = path.read_bytes()
    append(path, *numbered("c", 0, 3))
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    run.drive(until=lambda: len(run.shipper.records) == 103)
    run.stop()
    (logs / "app.log.1").write_bytes(copied)  # logrotate's copy, made before the "c" lines
    os.truncate(path, 0)
    assert_a_restart_ships_only_10_new_lines(tmp_path, path)


def test_a_checkpoint_taken_between_a_copytruncate_and_its_noticing_still_finds_the_copy(tmp_path, logs):
    """The agent acknowledged lines, then logrotate copied and truncated app.log, then a
    checkpoint was written before the agent looked at the file again, then it was killed.
    The checkpoint keeps the marker of the bytes the agent read (not one read from the
    truncated file: none), so after the restart app.log.1 is recognised as the copy and
    nothing is shipped twice (it was shipped whole again: CI, stop 21)."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 100))
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    run.drive(until=lambda: len(run.shipper.records) == 100)
    run.agent.turn(wait=False)
    state = next(iter(run.agent.files.tailers.values())).state
    shutil.copyfile(path, logs / "app.log.1")
    os.truncate(path, 0)
    state.dirty = True  # as if an acknowledgement had just moved it
    writer = run.agent.writer
    writes = writer.writes
    run.agent._snapshot(time.monotonic(), force=True)
    deadline = time.monotonic() + 10
    while writer.writes == writes and time.monotonic() < deadline:
        time.sleep(0.01)
    taken = (tmp_path / "state" / "checkpoints.json").read_bytes()
    assert checkpoints(tmp_path)[str(path)]["marker"], "the checkpoint lost the marker"
    run.stop()
    (tmp_path / "state" / "checkpoints.json").write_bytes(taken)  # killed: no later checkpoint
    assert_a_restart_ships_only_10_new_lines(tmp_path, path)


def test_a_copy_finished_and_truncated_while_the_agent_compares_it_is_held_not_shipped_again(
        tmp_path, logs, monkeypatch):
    """The agent opens the copy while logrotate is still writing it; before the agent
    compares it with the original, the copy is finished and the original truncated. The
    copy is held, then continues the original's stream: nothing is shipped twice."""
    path, copy = logs / "app.log", logs / "app.log.1"
    run = read_100_lines_then_write_50_more(tmp_path, logs)
    whole = path.read_bytes()
    copy.write_bytes(whole[:len(whole) // 3])  # shorter than what the agent read of the original
    hold = FileSet._hold
    raced = []

    def finish_the_rotation_first(self, *args):
        if not raced:
            raced.append(True)
            copy.write_bytes(whole)
            os.truncate(path, 0)
        return hold(self, *args)

    monkeypatch.setattr(FileSet, "_hold", finish_the_rotation_first)
    run.agent.scan()
    assert raced and len(run.agent.files.held) == 1
    assert_the_150_and_10_new_lines_shipped_once(run, logs)


@pytest.mark.parametrize("begun", [b"", b"a 000000"])
def test_a_copy_seen_before_its_first_kilobyte_is_held_not_shipped_again(tmp_path, logs, begun):
    """logrotate has created the copy and written nothing, or a few bytes: too little to
    fingerprint, but it begins the tailed file, so it is held until it can be told apart."""
    path, copy = logs / "app.log", logs / "app.log.1"
    run = read_100_lines_then_write_50_more(tmp_path, logs)
    copy.write_bytes(begun)
    run.agent.scan()
    assert len(run.agent.files.held) == 1
    shutil.copyfile(path, copy)
    os.truncate(path, 0)
    assert_the_150_and_10_new_lines_shipped_once(run, logs)


def test_a_small_new_file_unlike_the_tailed_ones_is_not_held(tmp_path, logs):
    append(logs / "app.log", *numbered("a", 0, 100))
    run = Run(config(tmp_path, pattern="logs/*.log"))
    run.drive(until=lambda: len(run.shipper.records) == 100)
    append(logs / "other.log", "a different first line")
    run.drive(until=lambda: len(run.shipper.records) == 101)
    assert not run.agent.files.held
    run.stop()


def test_copytruncate_with_the_copy_outside_the_glob_counts_what_was_lost(tmp_path, logs):
    path = logs / "app.log"
    append(path, *numbered("a", 0, 10))
    run = Run(config(tmp_path, pattern="logs/app.log"))
    run.drive(until=lambda: len(run.shipper.records) == 10)
    run.agent.turn(wait=False)
    unread = b"".join(l + b"\n" for l in numbered("a", 10, 20))
    append(path, *numbered("a", 10, 20))
    run.agent.files.tailers[next(iter(run.agent.files.tailers))].check(time.monotonic())  # the agent saw it grow
    shutil.copyfile(path, tmp_path / "elsewhere.1")
    os.truncate(path, 0)
    append(path, "new")
    run.drive(until=lambda: run.values()[-1:] == [b"new"])
    run.drive(0.7)  # copytruncate_wait passes
    run.stop()
    assert run.agent.counters.bytes_skipped == len(unread)


def test_truncate_in_place_then_fewer_bytes_reads_from_zero(tmp_path, logs):
    path = logs / "app.log"
    append(path, *numbered("a", 0, 50))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 50)
    with open(path, "r+b") as f:
        f.truncate(0)
    append(path, "after truncate")
    run.drive(until=lambda: run.values()[-1:] == [b"after truncate"])
    run.drive(0.6)
    run.stop()
    assert len(run.shipper.records) == 51
    assert run.shipper.records[-1][1]["offset"] == b"0"
    assert run.agent.counters.bytes_skipped == 0  # everything was read before the truncate


def test_truncate_and_refill_past_the_old_offset_between_looks_reads_from_zero(tmp_path, logs):
    path = logs / "app.log"
    append(path, *numbered("a", 0, 5))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 5)
    with open(path, "r+b") as f:  # truncate and refill before the agent looks again
        f.truncate(0)
    append(path, *numbered("b", 0, 20))
    run.drive(until=lambda: len(run.shipper.records) == 25)
    run.stop()
    assert run.values()[5:] == numbered("b", 0, 20)


@pytest.mark.parametrize("before, after", [(5, 20), (20, 3)])
def test_truncate_and_refill_while_stopped_is_read_from_zero(tmp_path, logs, before, after):
    """The same first KiB before and after. Longer than the checkpoint: the marker tells the
    content changed. Shorter: it is not taken for a copy (copy_within), the same inode was
    refilled. Either way it is read again from 0, not resumed nor skipped."""
    path = logs / "app.log"
    header = b"#" * 1500
    append(path, header, *numbered("a", 0, before))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == before + 1)
    run.stop()
    with open(path, "r+b") as f:
        f.truncate(0)
    append(path, header, *numbered("b", 0, after))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) >= after + 1)
    run.drive(0.3)
    run.stop()
    assert run.values() == [header] + numbered("b", 0, after)


@pytest.mark.parametrize("with_generation", [True, False])
def test_delete_and_recreate_with_the_same_inode_is_a_new_file(tmp_path, logs, with_generation):
    path = logs / "app.log"
    append(path, "same first line", *numbered("a", 0, 3))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 4)
    run.stop()
    path.unlink()
    append(path, "same first line", *numbered("c", 0, 3))  # as long as the old one
    # ext4 usually hands the old inode to the new file at once; make sure of it by moving the
    # checkpoint onto the new inode (keeping the old generation and fingerprint)
    doc = json.loads((tmp_path / "state" / "checkpoints.json").read_text())
    st = os.stat(path)
    doc["files"][0].update(dev=st.st_dev, ino=st.st_ino)
    if not with_generation:  # a filesystem without generations: the fingerprint decides
        doc["files"][0]["gen"] = None
    (tmp_path / "state" / "checkpoints.json").write_text(json.dumps(doc))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 4)
    run.stop()
    assert run.values() == [b"same first line"] + numbered("c", 0, 3)


def open_fds_on(path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                found.append(fd)
        except OSError:
            pass
    return found


def test_a_deleted_file_is_read_to_its_end_then_closed(tmp_path, logs):
    path = logs / "app.log"
    append(path, *numbered("a", 0, 10))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 10)
    append(path, *numbered("a", 10, 5000))  # unread when deleted
    path.unlink()
    run.drive(until=lambda: not run.agent.files.tailers and len(run.shipper.records) == 5000)
    assert run.values() == numbered("a", 0, 5000)
    assert not open_fds_on(path)
    run.drive(0.05)
    run.stop()
    assert str(path) not in checkpoints(tmp_path)  # gone for good: pruned


def test_a_symlink_and_its_target_are_shipped_once(tmp_path, logs):
    append(logs / "app-1.log", *numbered("a", 0, 5))
    os.symlink(logs / "app-1.log", logs / "current.log")
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 5)
    run.drive(0.1)
    run.stop()
    assert len(run.shipper.records) == 5
    assert {h["path"] for _, h in run.shipper.records} == {str(logs / "app-1.log").encode()}


# --- the state directory -----------------------------------------------------------------------


def test_a_corrupt_checkpoint_file_is_moved_aside_and_files_read_again(tmp_path, logs):
    append(logs / "app.log", "one", "two")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "checkpoints.json").write_text('{"version": 1, "files": [{"dev": ')
    (tmp_path / "state" / ".checkpoints.json.tmp-123").write_text("half-written")
    run = Run(config(tmp_path, input={"start_position": "end"}))
    run.drive(until=lambda: len(run.shipper.records) == 2)  # not the first start: "end" does not apply
    run.stop()
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert names[0] == "checkpoints.json" and names[1].startswith("checkpoints.json.corrupt-")
    assert "lock" in names and not any(n.startswith(".checkpoints") for n in names)


def test_checkpoint_files_are_replaced_atomically(tmp_path):
    (tmp_path / "s").mkdir()
    state = FileState(FileId(1, 2, 3), Fingerprint(4, "ab"), 10, "/x")
    write_states(tmp_path / "s", [state.to_json()])
    states, existed = load_states(tmp_path / "s")
    assert existed and states[0].offset == 10 and states[0].id == FileId(1, 2, 3)
    assert os.listdir(tmp_path / "s") == ["checkpoints.json"]


def test_a_second_agent_on_the_same_state_directory_refuses_to_start(tmp_path, logs):
    run = Run(config(tmp_path))
    with pytest.raises(StoreLockedError, match=rf"pid {os.getpid()}.*state directory"):
        Agent(config(tmp_path), shipper=StandInShipper()).start()
    run.stop()
    Agent(config(tmp_path), shipper=StandInShipper()).start()  # free again


def test_status_shows_shipped_offset_against_size(tmp_path, logs):
    append(logs / "app.log", *numbered("a", 0, 10))
    run = Run(config(tmp_path))
    run.drive(until=lambda: len(run.shipper.records) == 10)
    run.stop()
    append(logs / "app.log", "more")
    (row,) = file_status(tmp_path / "state")
    size = os.path.getsize(logs / "app.log")
    assert row["path"] == str(logs / "app.log")
    assert (row["shipped"], row["size"], row["behind"], row["status"]) == (size - 5, size, 5, "behind")


# --- more of reference/agents.md's scenarios -----------------------------------------------------


def test_rotated_while_stopped_the_unread_tail_and_the_new_file_are_shipped_once(tmp_path, logs):
    """Scenario 8: the agent is stopped, app.log is rotated (renamed to app.log.1) with lines
    the agent never read, and a new app.log begins."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 20))
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    run.drive(until=lambda: len(run.shipper.records) == 20)
    run.stop()
    append(path, *numbered("a", 20, 30))
    os.rename(path, logs / "app.log.1")
    append(path, *numbered("b", 0, 5))
    run = Run(config(tmp_path, pattern="logs/app.log*"))
    run.drive(until=lambda: len(run.shipper.records) == 15)
    run.drive(0.1)
    run.stop()
    assert sorted(run.values()) == sorted(numbered("a", 20, 30) + numbered("b", 0, 5))


def test_a_deleted_file_is_let_go_after_close_removed_after_while_reading_is_paused(tmp_path, logs):
    """Scenario 12: the broker is down (no room to read), a file is deleted with unread
    data: its descriptor is closed after close_removed_after, so the disk space is freed,
    and the unread bytes are counted."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 5))
    run = Run(config(tmp_path, close_removed_after=0.3))
    run.drive(until=lambda: len(run.shipper.records) == 5)
    run.shipper.room = lambda: False
    append(path, *numbered("a", 5, 105))
    unread = os.path.getsize(path) - run.agent.files.tailers[next(iter(run.agent.files.tailers))].position
    path.unlink()
    run.drive(until=lambda: not run.agent.files.tailers)
    assert not open_fds_on(path)
    assert run.agent.counters.bytes_skipped == unread == sum(len(line) + 1 for line in numbered("a", 5, 105))
    run.stop()


def test_a_symlink_moved_to_a_new_target_is_followed(tmp_path, logs):
    """Scenario 23: Kubernetes-style `current -> app-1.log`, then `current -> app-2.log`."""
    append(logs / "app-1.log", *numbered("a", 0, 5))
    os.symlink("app-1.log", logs / "current")
    run = Run(config(tmp_path, pattern="logs/current"))
    run.drive(until=lambda: len(run.shipper.records) == 5)
    append(logs / "app-2.log", *numbered("b", 0, 5))
    append(logs / "app-1.log", *numbered("a", 5, 7))  # the old target's last lines
    os.symlink("app-2.log", logs / "current.new")
    os.rename(logs / "current.new", logs / "current")
    run.drive(until=lambda: len(run.shipper.records) == 12)
    run.drive(until=lambda: len(run.agent.files.tailers) == 1)  # the old target is let go
    run.stop()
    assert sorted(run.values()) == sorted(numbered("a", 0, 7) + numbered("b", 0, 5))


def test_an_idle_file_is_closed_and_reopened_when_it_grows(tmp_path, logs):
    """Scenario 20's descriptor budget: idle files do not keep a descriptor each."""
    path = logs / "app.log"
    append(path, *numbered("a", 0, 5))
    run = Run(config(tmp_path, close_inactive=0.2))
    run.drive(until=lambda: len(run.shipper.records) == 5)
    run.drive(until=lambda: not run.agent.files.tailers)
    assert not open_fds_on(path)
    run.drive(0.2)  # scans see the same size: it stays closed
    assert not run.agent.files.tailers
    append(path, *numbered("a", 5, 8))
    run.drive(until=lambda: len(run.shipper.records) == 8)
    run.stop()
    assert run.values() == numbered("a", 0, 8)


def test_watchdog_events_and_queue_overflows_only_ask_for_a_rescan(tmp_path, logs):
    import logging
    import threading

    from logship.agent.discovery import Watcher, watch_dirs

    inputs = (make_input({"paths": [str(logs / "*.log"), str(tmp_path / "deep" / "**" / "*.log")], "topic": "t"}),)
    assert watch_dirs(inputs) == {str(logs): False, str(tmp_path / "deep"): True}
    wake = threading.Event()
    watcher = Watcher(inputs, wake)
    watcher.start()
    try:
        append(logs / "new.log", "x")
        deadline = time.monotonic() + 5
        while not watcher.rescan and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.rescan and wake.is_set()
        watcher.rescan = False
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; events were lost")
        assert watcher.rescan
    finally:
        watcher.stop()

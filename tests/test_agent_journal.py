"""The agent's journal (logship/agent/journal.py): format round trip, torn tails, damage,
compaction, group commit and the restart plan."""

import os
import threading

import pytest

from conftest import wait_until

from logship.agent import journal as J
from logship.agent.checkpoint import FileState
from logship.agent.identity import FileId, Fingerprint, digest


def _entry(seq, count=2, pid=7, epoch=0, topic="logs", partition=0, steps=(), data=None):
    return J.SentEntry(topic, partition, pid, epoch, seq, count, list(steps),
                       data if data is not None else bytes([seq % 256]) * (50 + seq % 100))


def _segment(d):
    (path,) = [p for p in d.iterdir() if p.name.startswith("journal-") and p.name.endswith(".log")]
    return path


def _fresh(d, fdatasync=None):
    j = J.Journal(d, J.load(d), fdatasync=fdatasync)
    j.set_producer(7, 0)
    return j


def test_round_trip(tmp_path):
    j = _fresh(tmp_path)
    sent = [_entry(0), _entry(2, topic="other", partition=3), _entry(4)]
    for e in sent:
        j.append_sent(e)
    j.append_acked([sent[0].key])
    j.close()
    rec = J.load(tmp_path)
    assert rec.producer == (7, 0)
    assert rec.next_sequences == {("logs", 0): 6, ("other", 3): 4}
    assert [e.key for e in rec.entries] == [e.key for e in sent]
    assert [e.key for e in rec.acked] == [sent[0].key] and rec.acked[0].data is None
    assert [e.data for e in rec.unacked] == [sent[1].data, sent[2].data]
    # a journal reopened from it continues: the old segment is replaced by a compacted one
    j2 = J.Journal(tmp_path, rec)
    j2.append_sent(_entry(6))
    j2.close()
    rec2 = J.load(tmp_path)
    assert rec2.next_sequences[("logs", 0)] == 8 and len(rec2.entries) == 4
    assert _segment(tmp_path).name == "journal-00000000000000000001.log"


def test_sequences_wrap_and_follow_the_producer(tmp_path):
    j = _fresh(tmp_path)
    j.append_sent(_entry(2**31 - 1, count=3))
    j.set_producer(8, 0)  # a new id: sequences restart
    j.append_sent(_entry(0, pid=8, partition=1))
    j.close()
    rec = J.load(tmp_path)
    assert rec.producer == (8, 0) and rec.next_sequences == {("logs", 1): 2}
    assert [e.pid for e in rec.unacked] == [7, 8]


def test_a_restamped_batch_replaces_the_old_one_without_applying_its_steps(tmp_path):
    j = _fresh(tmp_path)
    steps = [{"dev": 1, "ino": 2, "gen": None, "fp_len": 5, "fp": "ab", "offset": 40, "path": "/nonexistent"}]
    old = _entry(4, steps=steps)
    j.append_sent(old)
    j.set_producer(9, 0)
    new = _entry(0, pid=9, steps=steps, data=b"restamped")
    j.append_restamped(old.key, new)
    j.close()
    rec = J.load(tmp_path)
    assert [(e.key, e.data, e.acked) for e in rec.entries] == [(new.key, b"restamped", False)]
    assert rec.producer == (9, 0) and rec.next_sequences == {("logs", 0): 2}
    states = []
    plan = J.restore_steps(states, rec)
    assert list(plan) == [new.key] and states[0].offset == 0 and len(states[0].pending) == 1


def test_torn_tail_at_every_byte_of_the_last_entry(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    j = _fresh(src)
    j.append_sent(_entry(0))
    whole_before = _segment(src).stat().st_size
    last = _entry(2, data=os.urandom(40))
    j.append_sent(last)
    j.close()
    data = _segment(src).read_bytes()
    for cut in range(whole_before, len(data) + 1):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / _segment(src).name).write_bytes(data[:cut])
        rec = J.load(d)
        expected = [0, 2] if cut == len(data) else [0]
        assert [e.seq for e in rec.entries] == expected, cut
        assert rec.producer == (7, 0)
        assert _segment(d).stat().st_size == (len(data) if cut == len(data) else whole_before)
    # zeros after the last entry (an extended file after a power loss) are a torn tail too
    d = tmp_path / "zeros"
    d.mkdir()
    (d / _segment(src).name).write_bytes(data + b"\0" * 100)
    assert [e.seq for e in J.load(d).entries] == [0, 2]


def test_crc_damage(tmp_path, caplog):
    j = _fresh(tmp_path)
    first = _entry(0)
    j.append_sent(first)
    j.append_sent(_entry(2))
    j.close()
    path = _segment(tmp_path)
    data = bytearray(path.read_bytes())
    i = data.index(first.data)
    # damage in the last entry: a torn tail, cut off
    data_last = bytearray(data)
    data_last[-3] ^= 0xFF
    path.write_bytes(data_last)
    assert [e.seq for e in J.load(tmp_path).entries] == [0]
    # damage before the end: moved aside, one warning, a fresh start (new producer id)
    data[i + 5] ^= 0xFF
    path.write_bytes(data)
    rec = J.load(tmp_path)
    assert rec.producer is None and rec.entries == []
    assert [p.name.split(".log")[1].startswith(".corrupt-") for p in tmp_path.iterdir()] == [True]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "shipped twice" in warnings[0].getMessage()
    # a wrong header is damage too
    j = _fresh(tmp_path)
    j.close()
    path = _segment(tmp_path)
    path.write_bytes(b"LSJOURN\x09" + path.read_bytes()[8:])
    assert J.load(tmp_path).producer is None


def test_compaction_keeps_the_unacked_and_the_not_yet_checkpointed(tmp_path):
    j = _fresh(tmp_path)
    a, b, c, d = (_entry(s, data=os.urandom(1000)) for s in (0, 2, 4, 6))
    for e in (a, b, c, d):
        j.append_sent(e)
    j.append_acked([a.key, b.key])
    j.mark_applied(a.key)
    token = j.checkpoint_taken()  # holds a's steps
    j.mark_applied(b.key)  # applied after that snapshot: next one
    big = j.size()
    j.checkpoint_durable(token)
    assert j.size() < big - 1000  # a dropped, b kept without its bytes
    rec = J.load(tmp_path)
    assert [(e.seq, e.acked) for e in rec.entries] == [(2, True), (4, False), (6, False)]
    assert [e.data for e in rec.unacked] == [c.data, d.data]
    assert rec.next_sequences == {("logs", 0): 8}
    j.append_acked([c.key])
    j.checkpoint_durable(j.checkpoint_taken())  # b checkpointed now; c acked but not applied
    rec = J.load(tmp_path)
    assert [(e.seq, e.acked) for e in rec.entries] == [(4, True), (6, False)]
    j.append_acked([d.key])
    j.mark_applied(c.key)
    j.mark_applied(d.key)
    j.checkpoint_durable(j.checkpoint_taken())
    j.close()
    rec = J.load(tmp_path)
    assert rec.entries == [] and rec.next_sequences == {("logs", 0): 8} and rec.producer == (7, 0)
    assert len([p for p in tmp_path.iterdir()]) == 1  # one segment, older ones deleted


def test_next_sequences_survive_compaction_of_the_latest_batch(tmp_path):
    j = _fresh(tmp_path)
    a, b, c = _entry(0), _entry(2), _entry(4)
    for e in (a, b, c):
        j.append_sent(e)
    j.append_acked([b.key, c.key])
    j.mark_applied(c.key)  # b not applied yet: kept, c dropped
    j.checkpoint_durable(j.checkpoint_taken())
    j.close()
    rec = J.load(tmp_path)
    assert [(e.seq, e.acked) for e in rec.entries] == [(0, False), (2, True)]
    assert rec.next_sequences == {("logs", 0): 6} and rec.producer == (7, 0)


def test_a_skipped_snapshot_is_covered_by_the_next_durable_one(tmp_path):
    j = _fresh(tmp_path)
    a, b = _entry(0), _entry(2)
    j.append_sent(a)
    j.append_sent(b)
    j.append_acked([a.key, b.key])
    j.mark_applied(a.key)
    j.checkpoint_taken()  # this snapshot is skipped by the writer...
    j.mark_applied(b.key)
    j.checkpoint_durable(j.checkpoint_taken())  # ...as the next one holds it too
    j.close()
    assert J.load(tmp_path).entries == []


def test_size_stays_bounded(tmp_path):
    j = _fresh(tmp_path)
    seq = 0
    sizes = []
    for _ in range(40):
        batch = [_entry(seq + 2 * i, data=os.urandom(2000)) for i in range(3)]
        seq += 6
        for e in batch:
            j.append_sent(e)
        j.append_acked([e.key for e in batch[:2]])  # one stays in flight
        for e in batch[:2]:
            j.mark_applied(e.key)
        j.checkpoint_durable(j.checkpoint_taken())
        j.append_acked([batch[2].key])
        j.mark_applied(batch[2].key)
        sizes.append(j.size())
    j.close()
    assert max(sizes) < 3000  # the one batch in flight, not the 240 KB sent
    assert [e.seq for e in J.load(tmp_path).entries] == [seq - 2]


def test_leftovers_of_an_interrupted_rotation_are_removed(tmp_path):
    j = _fresh(tmp_path)
    j.append_sent(_entry(0))
    j.checkpoint_durable(j.checkpoint_taken())  # rotated: segment 1, segment 0 deleted
    j.close()
    old = _segment(tmp_path)
    assert old.name == "journal-00000000000000000001.log"
    (tmp_path / "journal-00000000000000000000.log").write_bytes(b"older")
    (tmp_path / "journal-00000000000000000009.log.tmp").write_bytes(b"half written")
    assert [e.seq for e in J.load(tmp_path).entries] == [0]
    assert [p.name for p in tmp_path.iterdir()] == [old.name]


def test_group_commit_shares_fdatasync_across_threads(tmp_path):
    calls, entered, release = [], threading.Event(), threading.Event()

    def fdatasync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the first ack's sync: hold it while the others write
            entered.set()
            assert release.wait(30)
        os.fdatasync(fd)

    j = _fresh(tmp_path, fdatasync)  # set_producer: sync 1
    assert len(calls) == 1
    errors = []

    def ack(seq):
        try:
            j.append_acked([("logs", 0, 7, 0, seq)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    first = threading.Thread(target=ack, args=(0,))
    first.start()
    assert entered.wait(30)
    others = [threading.Thread(target=ack, args=(s,)) for s in range(1, 8)]
    for t in others:
        t.start()
    wait_until(lambda: j._written == 9, timeout=30)  # all written, none durable yet (a write notifies nobody)
    release.set()
    for t in [first] + others:
        t.join(30)
    assert not errors
    assert len(calls) == 3  # 7 acks shared one fdatasync
    j.close()


def test_a_failed_fdatasync_fails_for_good(tmp_path):
    def failing(fd):
        raise OSError(5, "Input/output error")

    j = J.Journal(tmp_path, J.load(tmp_path), fdatasync=failing)
    with pytest.raises(OSError):
        j.append_sent(_entry(0))
    with pytest.raises(OSError, match="failed"):
        j.append_acked([_entry(0).key])
    j.close()


def _state_of(path, offset):
    st = os.stat(path)
    head = path.read_bytes()[:1024]
    return FileState(FileId(st.st_dev, st.st_ino, None), Fingerprint(len(head), digest(head)), offset, str(path))


def test_restart_plan(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    app, new = logs / "app.log", logs / "new.log"
    app.write_bytes(b"".join(b"line %03d\n" % i for i in range(200)))
    new.write_bytes(b"fresh\n" * 10)
    checkpointed = _state_of(app, 90)  # checkpoints.json as loaded
    step = lambda path, end: dict(_state_of(path, end).to_json())  # noqa: E731
    history = [
        _entry(0, steps=[step(app, 50)]),                   # acked, already checkpointed
        _entry(2, steps=[step(app, 120)]),                  # acked, not yet checkpointed
        _entry(4, steps=[step(app, 150), step(new, 30)]),   # unacked: resend
        _entry(6, steps=[step(app, 180)]),                  # acked after the unacked one
        _entry(8, steps=[step(new, 60)]),                   # unacked
    ]
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    j = _fresh(state_dir)
    for e in history:
        j.append_sent(e)
    j.append_acked([history[0].key, history[1].key, history[3].key])
    j.close()
    rec = J.load(state_dir)
    assert [e.seq for e in rec.unacked] == [4, 8] and rec.next_sequences == {("logs", 0): 10}
    states = [checkpointed]
    plan = J.restore_steps(states, rec)
    assert checkpointed.offset == 120  # acked steps applied, up to the unacked one
    assert len(states) == 2 and states[1].path == str(new) and states[1].offset == 0
    assert set(plan) == {history[2].key, history[4].key}
    # the resends are acknowledged, in order: the files' offsets follow
    for key in (history[2].key, history[4].key):
        for progress in plan[key]:
            progress.acked = True
            progress.state.advance()
    assert checkpointed.offset == 180 and states[1].offset == 60
    assert not checkpointed.pending and not states[1].pending


def test_restart_plan_matches_a_grown_fingerprint(tmp_path):
    """checkpoints.json saw the file short; the journal's step was written after it grew."""
    path = tmp_path / "short.log"
    path.write_bytes(b"a\n" * 100)
    early = _state_of(path, 100)
    with open(path, "ab") as f:
        f.write(b"b\n" * 600)
    grown = _state_of(path, 900).to_json()
    assert grown["fp_len"] == 1024 != early.fingerprint.length
    rec = J.Recovery(producer=(7, 0), entries=[_entry(0, steps=[grown])])
    rec.entries[0].acked = True
    states = [early]
    J.restore_steps(states, rec)
    assert states == [early] and early.offset == 900
    # a different generation of the same inode (rewritten) is not confused with it
    other = _state_of(path, 0)
    other.fingerprint = Fingerprint(200, digest(b"x" * 200))
    states = [other]
    J.restore_steps(states, rec)
    assert len(states) == 2 and other.offset == 0 and states[1].offset == 900

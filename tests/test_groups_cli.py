"""`logship consume -g`, `groups list|describe` and `seek` end to end: real broker, real
`logship` processes (killed, terminated, interrupted), records counted one by one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import ROOT, wait_until
from test_cli_produce import logship

from logship.client.cluster import Cluster
from logship.client.groups_admin import committed_offsets, describe_group

pytestmark = pytest.mark.integration

BROKER_ARGS = ("--group-initial-rebalance-delay", "100ms", "--group-min-session-timeout", "1s")
SESSION = "3s"
SESSION_S = 3.0


def keyed_lines(count: int, tag: str = "r", first: int = 0) -> bytes:
    """`count` lines "KEY:VALUE" with distinct keys, so murmur2 spreads them over partitions."""
    return b"".join(b"%s%d:%s-%d\n" % (tag.encode(), i, tag.encode(), i) for i in range(first, first + count))


def produce(address: str, topic: str, data: bytes) -> None:
    result = logship("produce", topic, "-b", address, "-k", ":", input=data, timeout=300)
    assert result.returncode == 0, result.stderr


class Member:
    """A `logship consume TOPIC -g GROUP -f '%p %o %v\\n'` process writing to a file."""

    def __init__(self, tmp_path, address: str, topic: str, group: str, *args: str, name: str = "m"):
        self.out_path, self.err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        cmd = [sys.executable, "-m", "logship", "consume", topic, "-g", group, "-b", address,
               "--session-timeout", SESSION, "-f", "%p %o %v\\n", *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.client_id = f"logship-consume-{self.proc.pid}"

    def records(self) -> list[tuple[int, int, bytes]]:
        """(partition, offset, value) of every whole line written so far."""
        lines = self.out_path.read_bytes().split(b"\n")[:-1]  # a line cut by SIGKILL has no newline
        return [(int(p), int(o), v) for p, o, v in (line.split(b" ", 2) for line in lines)]

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.err_path.read_text()


def stable_members(address: str, group: str, members: int) -> dict[str, list[int]] | None:
    """client id -> partitions once `group` is Stable with `members` members, else None."""
    with Cluster(address) as cluster:
        description = describe_group(cluster, group)
    if description.state != "Stable" or len(description.members) != members:
        return None
    return {m.client_id: sorted(p for parts in m.assignment.values() for p in parts) for m in description.members}


def committed(address: str, group: str) -> dict[int, int]:
    with Cluster(address) as cluster:
        return {p: o for (_, p), o in committed_offsets(cluster, group).items()}


@pytest.fixture
def group_broker(start_broker):
    return start_broker(*BROKER_ARGS)


def test_three_members_split_a_300000_record_stream_and_survive_a_sigkill(group_broker, tmp_path):
    address = group_broker.address
    assert logship("topics", "create", "stream", "-p", "6", "-b", address).returncode == 0
    members = [Member(tmp_path, address, "stream", "g", name=f"m{i}") for i in range(3)]
    try:
        split = wait_until(lambda: stable_members(address, "g", 3), timeout=30)
        assert split and sorted(map(len, split.values())) == [2, 2, 2], split
        assert sorted(p for parts in split.values() for p in parts) == list(range(6))
        victim, survivors = members[0], members[1:]
        victim_partitions = split[victim.client_id]
        started = time.monotonic()
        data_path = tmp_path / "stream.txt"
        data_path.write_bytes(keyed_lines(300_000))
        producer = subprocess.Popen([sys.executable, "-m", "logship", "produce", "stream", str(data_path), "-b", address,
                                     "-k", ":"], env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE)
        assert wait_until(lambda: sum(len(m.records()) for m in members) > 60_000, timeout=120, interval=0.1)
        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        at_kill = committed(address, "g")  # nobody else commits its partitions before they move
        moved = wait_until(lambda: stable_members(address, "g", 2), timeout=SESSION_S + 20, interval=0.1)
        moved_after = time.monotonic() - killed
        assert moved and sorted(p for parts in moved.values() for p in parts) == list(range(6)), moved
        assert moved_after < SESSION_S + 5, moved_after
        assert producer.wait(300) == 0, producer.stderr.read()
        assert wait_until(lambda: len({v for m in members for _, _, v in m.records()}) == 300_000, timeout=120,
                          interval=0.5), len({v for m in members for _, _, v in m.records()})
        elapsed = time.monotonic() - started
        for member in survivors:
            assert member.stop() == 0, member.stderr()
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.proc.kill()
                member.proc.wait(10)
    outputs = {m.client_id: m.records() for m in members}
    everything = [r for records in outputs.values() for r in records]
    assert {v for _, _, v in everything} == {b"r-%d" % i for i in range(300_000)}  # none lost
    for records in outputs.values():
        assert len(set(records)) == len(records)  # nobody repeats itself
        for p in range(6):
            offsets = [o for q, o, _ in records if q == p]
            assert offsets == sorted(offsets)
    seen = Counter((p, o) for p, o, _ in everything)
    duplicates = {po for po, n in seen.items() if n > 1}
    uncommitted = {(p, o) for p, o, _ in outputs[victim.client_id] if o >= at_kill.get(p, 0)}
    assert duplicates == uncommitted  # exactly what the victim wrote after its last commit
    assert {p for p, _ in duplicates} <= set(victim_partitions)
    assert max(seen.values()) <= 2
    print(f"\n300,000 records through 3 members in {elapsed:.1f} s; partitions moved {moved_after:.1f} s after "
          f"the SIGKILL (session {SESSION}); {len(duplicates):,} duplicates "
          f"(the victim's writes after its last commit)")
    assert committed(address, "g") == {p: n for p, n in Counter(p for p, _ in seen).items()}


def test_restarted_members_continue_exactly_where_the_last_stopped(group_broker, tmp_path):
    address = group_broker.address
    assert logship("topics", "create", "resume", "-p", "3", "-b", address).returncode == 0
    produce(address, "resume", keyed_lines(3000))
    pieces = []
    for count in ("700", "1", "1299"):  # -c cuts a fetched chunk: the commit must stop at the cut
        result = logship("consume", "resume", "-g", "rs", "-b", address, "-c", count, "-f", "%p %o %v\\n")
        assert result.returncode == 0, result.stderr
        pieces.append(result.stdout.splitlines())
        assert len(pieces[-1]) == int(count)
    member = Member(tmp_path, address, "resume", "rs", name="follower")  # follows, then SIGTERM
    assert wait_until(lambda: len(member.records()) == 1000, timeout=30), len(member.records())
    assert member.stop(signal.SIGTERM) == 0, member.stderr()
    produce(address, "resume", keyed_lines(500, "late"))
    interrupted = Member(tmp_path, address, "resume", "rs", name="interrupted")
    assert wait_until(lambda: len(interrupted.records()) == 500, timeout=30)
    assert interrupted.stop(signal.SIGINT) == 130  # Ctrl-C commits too
    rest = logship("consume", "resume", "-g", "rs", "-b", address, "-e")
    assert rest.returncode == 0 and rest.stdout == b"", rest.stderr
    lines = [line for piece in pieces for line in piece]
    lines += [b"%d %d %s" % r for r in member.records() + interrupted.records()]
    assert len(lines) == len(set(lines)) == 3500  # nothing skipped, nothing twice
    assert sorted(committed(address, "rs").values()) == sorted(Counter(line.split()[0] for line in lines).values())
    assert "assigned resume partitions 0,1,2" in member.stderr()


def test_consume_g_into_head_commits_and_exits_quietly(group_broker):
    address = group_broker.address
    produce(address, "piped", keyed_lines(20_000))
    result = subprocess.run(f"{sys.executable} -m logship consume piped -g pg -b {address} | head -n 5",
                            shell=True, capture_output=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.stdout.count(b"\n") == 5 and b"Traceback" not in result.stderr, result.stderr
    # what went into the pipe counts as written: head read 5 lines of it and dropped the rest
    assert 5 <= sum(committed(address, "pg").values()) <= 20_000


def test_usage_errors_and_unknown_topic(group_broker):
    address = group_broker.address
    result = logship("consume", "x", "-g", "g", "-p", "0", "-b", address)
    assert result.returncode == 2 and b"-p/--partition" in result.stderr
    assert logship("consume", "missing", "-g", "g", "-b", address, "-e").returncode == 4
    assert logship("consume", "x", "-o", "stored", "-b", address).returncode == 2


def test_seek_to_a_time_then_consume_starts_at_the_first_record_at_or_after_it(group_broker):
    address = group_broker.address
    assert logship("topics", "create", "timed", "-p", "3", "-b", address).returncode == 0
    produce(address, "timed", keyed_lines(600, "old"))
    time.sleep(0.05)
    boundary = int(time.time() * 1000)
    time.sleep(0.05)
    produce(address, "timed", keyed_lines(400, "new"))
    first = logship("consume", "timed", "-g", "tg", "-b", address, "-e")
    assert first.returncode == 0 and len(first.stdout.splitlines()) == 1000
    before = committed(address, "tg")
    dry = logship("seek", "tg", "timed", "--to", f"@{boundary}", "--dry-run", "-b", address)
    assert dry.returncode == 0 and b"dry run" in dry.stderr and committed(address, "tg") == before
    moved = logship("seek", "tg", "timed", "--to", f"@{boundary}", "-b", address, "--json")
    assert moved.returncode == 0, moved.stderr
    rows = [json.loads(line) for line in moved.stdout.splitlines()]
    assert [r["partition"] for r in rows] == [0, 1, 2]
    assert all(r["old_offset"] == before[r["partition"]] and not r["clamped"] for r in rows)
    again = logship("consume", "timed", "-g", "tg", "-b", address, "-e")
    assert sorted(again.stdout.splitlines()) == sorted(b"new-%d" % i for i in range(400))
    # a time after every record moves to the end
    result = logship("seek", "tg", "timed:1", "--to", "@-0s", "-b", address, "--json")
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["new_offset"] == row["log_end_offset"]


def test_shift_back_100_rereads_the_last_100_of_each_partition_and_clamps(group_broker):
    address = group_broker.address
    assert logship("topics", "create", "shifty", "-p", "3", "-b", address).returncode == 0
    produce(address, "shifty", keyed_lines(1500))
    assert len(logship("consume", "shifty", "-g", "sg", "-b", address, "-e").stdout.splitlines()) == 1500
    ends = committed(address, "sg")
    result = logship("seek", "sg", "shifty", "--shift", "-100", "-b", address)
    assert result.returncode == 0, result.stderr
    assert b"->" in result.stdout and b"clamped" not in result.stdout
    assert committed(address, "sg") == {p: end - 100 for p, end in ends.items()}
    reread = logship("consume", "shifty", "-g", "sg", "-b", address, "-e", "-f", "%p %o\\n")
    got = sorted(tuple(map(int, line.split())) for line in reread.stdout.splitlines())
    assert got == sorted((p, o) for p, end in ends.items() for o in range(end - 100, end))
    clamped = logship("seek", "sg", "shifty:0,2", "--shift", "-1000000", "-b", address)
    assert clamped.returncode == 0 and clamped.stdout.count(b"clamped from") == 2
    assert committed(address, "sg") == {0: 0, 1: ends[1], 2: 0}
    forward = logship("seek", "sg", "shifty", "--to", "999999", "-b", address, "--json")
    assert all(json.loads(line)["clamped"] and json.loads(line)["new_offset"] == ends[json.loads(line)["partition"]]
               for line in forward.stdout.splitlines())


def test_seek_refuses_an_active_group_and_changes_nothing(group_broker, tmp_path):
    address = group_broker.address
    produce(address, "busy", keyed_lines(100))
    member = Member(tmp_path, address, "busy", "bg", name="busy")
    try:
        assert wait_until(lambda: len(member.records()) == 100 and stable_members(address, "bg", 1), timeout=30)
        assert wait_until(lambda: sum(committed(address, "bg").values()) == 100, timeout=10)
        before = committed(address, "bg")
        result = logship("seek", "bg", "busy", "--to", "beginning", "-b", address)
        assert result.returncode == 1
        assert b"active member" in result.stderr and b"not changed" in result.stderr
        assert committed(address, "bg") == before
    finally:
        assert member.stop() == 0
    assert logship("seek", "bg", "busy", "--to", "beginning", "-b", address).returncode == 0
    assert committed(address, "bg") == {p: 0 for p in before}


def test_groups_list_and_describe_show_state_members_lag_and_age(group_broker, tmp_path):
    address = group_broker.address
    assert logship("topics", "create", "aged", "-p", "2", "-b", address).returncode == 0
    hour_ago = int(time.time() * 1000) - 3_600_000
    records = b"".join(b'{"partition": %d, "timestamp": %d, "value": "v%d"}\n' % (i % 2, hour_ago + i, i) for i in range(10))
    assert logship("produce", "aged", "--json", "-b", address, input=records).returncode == 0
    assert logship("seek", "idle", "aged", "--to", "beginning", "-b", address).returncode == 0  # an Empty group
    member = Member(tmp_path, address, "aged", "live", "-c", "4", name="live")
    assert member.proc.wait(30) == 0
    listed = logship("groups", "list", "-b", address)
    assert listed.returncode == 0
    assert [line.split() for line in listed.stdout.decode().splitlines()[2:]] == [["idle", "Empty", "0"],
                                                                                   ["live", "Empty", "0"]]
    described = logship("groups", "describe", "idle", "-b", address, "--json")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert info["state"] == "Empty" and info["total_lag"] == 10
    for row in info["partitions"]:
        assert row["committed_offset"] == 0 and row["lag"] == 5 and row["log_end_offset"] == 5
        assert 3_600_000 <= row["lag_ms"] < 3_700_000  # the age of the oldest unconsumed record
    text = logship("groups", "describe", "idle", "-b", address).stdout.decode()
    assert "group idle: Empty, 0 members" in text and "total lag 10 records" in text and "1h00m" in text
    unknown = logship("groups", "describe", "nobody", "-b", address)
    assert unknown.returncode == 4 and b"does not exist" in unknown.stderr
    follower = Member(tmp_path, address, "aged", "live", name="live2")
    try:
        assert wait_until(lambda: stable_members(address, "live", 1), timeout=30)
        assert wait_until(lambda: json.loads(logship("groups", "describe", "live", "-b", address, "--json").stdout)
                          ["total_lag"] == 0, timeout=10)
        info = json.loads(logship("groups", "describe", "live", "-b", address, "--json").stdout)
        assert info["state"] == "Stable" and [m["client_id"] for m in info["members"]] == [follower.client_id]
        assert {r["member"] for r in info["partitions"]} == {f"{follower.client_id}/127.0.0.1"}
        listed = json.loads(logship("groups", "list", "-b", address, "--json").stdout.splitlines()[1])
        assert listed == {"group": "live", "state": "Stable", "members": 1, "protocol_type": "consumer"}
        watch = subprocess.Popen([sys.executable, "-m", "logship", "groups", "describe", "live", "-b", address,
                                  "--watch", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
        time.sleep(2.5)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
        assert watch.returncode == 130, err
        assert out.count(b"group live: Stable, 1 member") >= 2 and b"\x1b[" not in out  # no clearing into a pipe
    finally:
        assert follower.stop() == 0


def test_a_member_that_leaves_hands_its_partitions_over_without_a_duplicate(group_broker, tmp_path):
    address = group_broker.address
    assert logship("topics", "create", "handover", "-p", "4", "-b", address).returncode == 0
    leaving, staying = (Member(tmp_path, address, "handover", "hg", name=n) for n in ("leaving", "staying"))
    try:
        assert wait_until(lambda: stable_members(address, "hg", 2), timeout=30)
        data_path = tmp_path / "handover.txt"
        data_path.write_bytes(keyed_lines(40_000))
        producer = subprocess.Popen([sys.executable, "-m", "logship", "produce", "handover", str(data_path), "-b",
                                     address, "-k", ":"], env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert wait_until(lambda: len(leaving.records()) > 2000, timeout=60, interval=0.05)
        left = time.monotonic()
        assert leaving.stop(signal.SIGTERM) == 0, leaving.stderr()  # commits what it wrote, then LeaveGroup
        taken = wait_until(lambda: stable_members(address, "hg", 1), timeout=SESSION_S + 10, interval=0.05)
        assert taken == {staying.client_id: [0, 1, 2, 3]}
        assert time.monotonic() - left < SESSION_S  # no session timeout to wait for
        assert producer.wait(120) == 0
        assert wait_until(lambda: len(leaving.records()) + len(staying.records()) >= 40_000, timeout=60)
        time.sleep(0.5)
    finally:
        for member in (leaving, staying):
            member.stop()
    records = leaving.records() + staying.records()
    assert len(records) == len(set(records)) == 40_000


def test_a_member_carries_on_across_broker_restarts_graceful_and_sigkill(start_broker, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = (*BROKER_ARGS, "--listen", f"127.0.0.1:{port}")
    broker = start_broker(*args, data_dir=tmp_path / "kept")
    address = broker.address
    assert logship("topics", "create", "lasting", "-p", "3", "-b", address).returncode == 0
    member = Member(tmp_path, address, "lasting", "lg", name="lasting")
    try:
        for round_, stop in enumerate(("stop", "kill")):
            produce(address, "lasting", keyed_lines(2000, f"round{round_}"))
            assert wait_until(lambda: len({v for _, _, v in member.records()}) == 2000 * (round_ + 1), timeout=60)
            assert wait_until(lambda: sum(committed(address, "lg").values()) == 2000 * (round_ + 1), timeout=10)
            if stop == "stop":
                broker.stop()
            else:
                broker.proc.kill()
                broker.proc.wait(10)
            broker = start_broker(*args, data_dir=tmp_path / "kept")
        produce(address, "lasting", keyed_lines(2000, "after"))
        assert wait_until(lambda: len({v for _, _, v in member.records()}) == 6000, timeout=60), member.stderr()
    finally:
        assert member.stop() == 0, member.stderr()
    records = member.records()
    assert {v for _, _, v in records} == {b"%s-%d" % (tag, i) for tag in (b"round0", b"round1", b"after")
                                          for i in range(2000)}
    # everything written before each restart had been committed (and kept, even through the
    # SIGKILL): the member, back as a new member of the group, read none of it twice
    assert len(records) == len(set(records)) == 6000
    assert committed(address, "lg") == {p: n for p, n in Counter(p for p, _, _ in records).items()}


def test_members_with_exit_at_end_share_the_partitions_and_all_finish(group_broker, tmp_path):
    address = group_broker.address
    assert logship("topics", "create", "ending", "-p", "4", "-b", address).returncode == 0
    produce(address, "ending", keyed_lines(20_000))
    members = [Member(tmp_path, address, "ending", "eg", "-e", name=f"e{i}") for i in range(3)]
    for member in members:
        assert member.proc.wait(60) == 0, member.stderr()
    records = [r for member in members for r in member.records()]
    assert len(records) == len(set(records)) == 20_000
    assert sum(committed(address, "eg").values()) == 20_000

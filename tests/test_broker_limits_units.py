"""The pure parts of the broker's limits: the memory pool, the descriptor budget, the
rate-limited log, Admission's caps and eviction (with stand-in connections and a clock), and
how a fetch plan counts descriptors (over a real store)."""

from __future__ import annotations

import logging
import time
import types

from logship.broker.admission import Admission
from logship.broker.config import BrokerConfig
from logship.broker.fetch import FetchWait
from logship.broker.limits import EVICTABLE_AFTER_S, Budget, Limits, MemoryPool
from logship.broker.ratelog import RateLimitedLog
from logship.broker.replication import ReplicaManager
from logship.records import build_batch_values
from logship.storage import Store
from logship.storage.fileslice import INLINE_BYTES


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pool_wakes_waiters_when_a_release_brings_it_below_their_level():
    pool = MemoryPool(100)
    woken = []
    pool.charge(60)
    pool.when_available(lambda: woken.append("now"))
    assert woken == ["now"]  # below the level of an active connection: at once
    pool.when_available(lambda: woken.append("inactive"), active=False)  # 60 < 75: at once too
    assert woken == ["now", "inactive"]
    pool.charge(60)  # what arrived is charged, whatever the level
    assert pool.exhausted and pool.pressed and pool.available == -20
    pool.when_available(lambda: woken.append("a"))
    pool.when_available(lambda: woken.append("b"), active=False)
    pool.release(10)
    assert woken == ["now", "inactive"]  # 110 used
    pool.release(20)
    assert woken == ["now", "inactive", "a"]  # 90: below 100, not yet below 75
    pool.release(20)
    assert woken == ["now", "inactive", "a", "b"] and pool.used == 70
    pool.release(10_000)
    assert pool.used == 0


def test_pool_forget_drops_a_waiter():
    pool = MemoryPool(10)
    pool.charge(10)
    woken = []
    callback = lambda: woken.append(1)  # noqa: E731
    pool.when_available(callback)
    pool.forget(callback)
    pool.forget(callback)  # twice is fine
    pool.release(10)
    assert woken == []


def test_budget_grants_what_is_left():
    budget = Budget(3)
    assert budget.take(2) == 2
    assert budget.take(2) == 1
    assert budget.take(1) == 0
    budget.give_back(2)
    assert budget.take(5) == 2


def test_defaults_fit_the_descriptor_limit():
    assert Limits.defaults_for(1024).max_connections == 204
    assert Limits.defaults_for(1024).max_response_files == 204
    assert Limits.defaults_for(1 << 20).max_connections == Limits().max_connections


def test_rate_limited_log_one_line_then_a_summary_per_interval(caplog):
    clock = Clock()
    rated = RateLimitedLog(logging.getLogger("test.ratelog"), 10.0, clock)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for _ in range(1235):
            rated.note(("refused", "127.0.0.1"), "refused a connection from 127.0.0.1",
                       "refused {count} connections from 127.0.0.1 in the last {seconds} s: x 100")
            clock.now += 0.001
        rated.note("other", "something else", "{count} other things {like: this}")
        assert [r.getMessage() for r in caplog.records] == ["refused a connection from 127.0.0.1",
                                                            "something else"]
        rated.note("other", "something else", "{count} other things {like: this}")
        clock.now += 10
        rated.flush()
        clock.now += 10
        rated.flush()  # nothing new: no line, and the key is forgotten
        rated.note(("refused", "127.0.0.1"), "refused again", "{count}")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a connection from 127.0.0.1", "something else",
        "refused 1,234 connections from 127.0.0.1 in the last 11 s: x 100", "1 other things {like: this}",
        "refused again"]


class FakeConn:
    def __init__(self, host: str):
        self.host = host
        self.aborted = False
        self.last_io = self.last_read = 0.0
        self.frame_started = None
        self.peer = (host, 1)
        self.partial_bytes = 0
        self.frame_began = 0.0
        self.unread = 0

    def unread_bytes(self) -> int:
        return self.unread

    def abort(self, reason) -> None:
        self.aborted = True


def test_admission_evicts_the_quiet_connection_of_the_same_address_first(caplog):
    clock = Clock()
    limits = Limits(max_connections=10, max_connections_per_ip=3)
    admission = Admission(limits, clock)
    good = FakeConn("127.0.0.1")
    assert admission.admit(good)
    admission.busy(good)  # a request in progress
    idle = [FakeConn("127.0.0.1") for _ in range(2)]
    assert all(admission.admit(c) for c in idle)
    newcomer = FakeConn("127.0.0.1")
    assert not admission.admit(newcomer)  # the quiet ones are not quiet long enough yet
    assert newcomer.aborted and admission.count("127.0.0.1") == 3
    clock.now += EVICTABLE_AFTER_S + 0.1
    with caplog.at_level(logging.WARNING, logger="logship.broker"):
        assert admission.admit(FakeConn("127.0.0.1"))
    assert idle[0].aborted and not good.aborted and admission.count("127.0.0.1") == 3
    assert "max.connections.per.ip 3" in caplog.text
    other = FakeConn("10.0.0.1")
    assert admission.admit(other) and len(admission) == 4


def test_admission_refuses_at_the_total_cap_when_everyone_is_busy():
    clock = Clock()
    admission = Admission(Limits(max_connections=2, max_connections_per_ip=2), clock)
    conns = [FakeConn(f"10.0.0.{i}") for i in range(2)]
    for conn in conns:
        assert admission.admit(conn)
        admission.busy(conn)
    clock.now += 60
    assert not admission.admit(FakeConn("10.0.0.9"))
    admission.quiet(conns[1])
    clock.now += 2
    assert admission.admit(FakeConn("10.0.0.9"))
    assert conns[1].aborted and not conns[0].aborted
    admission.gone(conns[1])  # its connection_lost comes later: forgetting twice is fine
    assert len(admission) == 2


def test_sweep_closes_idle_and_late_connections():
    clock = Clock()
    admission = Admission(Limits(connections_max_idle_ms=60_000, request_timeout_ms=30_000), clock)
    idle, slow, fine = FakeConn("a"), FakeConn("b"), FakeConn("c")
    for conn in (idle, slow, fine):
        conn.last_io = clock.now
        assert admission.admit(conn)
    slow.frame_started = clock.now
    clock.now += 31
    slow.last_io = fine.last_io = clock.now
    admission.sweep()
    assert slow.aborted and not idle.aborted and not fine.aborted
    clock.now += 30
    admission.sweep()
    assert idle.aborted and not fine.aborted and len(admission) == 1


def test_pool_leaves_a_quarter_to_connections_that_complete_requests():
    pool = MemoryPool(100)
    pool.holders = 4
    pool.charge(74)
    assert not pool.must_wait(50) and not pool.must_wait(50, active=True)
    pool.charge(1)
    assert pool.must_wait(1)  # not active: three quarters is its share of the pool
    assert not pool.must_wait(50, active=True)
    pool.charge(25)
    assert pool.must_wait(13, active=True) and not pool.must_wait(12, active=True)  # half a fair share: 12.5
    pool.holders = 1
    assert not pool.must_wait(1000)  # the only holder: nobody else would free memory


def test_sweep_relieves_an_exhausted_pool_from_late_requests_oldest_first():
    clock = Clock()
    admission = Admission(Limits(queued_max_request_bytes=100), clock)
    stalled, old, paused, fresh, done, young = (FakeConn(h) for h in "abcdef")
    start = clock.now
    for conn, held, began in ((stalled, 30, 0.5), (old, 40, 0), (paused, 20, 0.4), (fresh, 10, 0),
                              (done, 0, 0), (young, 20, 1.6)):
        assert admission.admit(conn)
        conn.partial_bytes = held
        admission.pool.charge(held or 5)  # `done` holds a whole frame waiting to be handled
        conn.frame_began = start + began
        conn.last_io = conn.last_read = start + began
    paused.unread = young.unread = 5  # their bytes wait in the kernel: the broker paused them
    clock.now += 2 * EVICTABLE_AFTER_S + 0.5
    fresh.last_io = fresh.last_read = clock.now
    admission.sweep()
    # 125 used: the late ones go, oldest first, until no more than 50 are: old, paused (begun long ago
    # though its bytes wait), stalled; young is paused but not late, fresh is sending
    assert [c.aborted for c in (stalled, old, paused, fresh, done, young)] == [True, True, True, False, False, False]


def _fetch_plan(tmp_path, partitions: int, value: bytes, files: Budget, fetch_max_files: int = 64):
    store = Store(tmp_path / "data")
    store.create_topic("t", partitions)
    for p in range(partitions):
        store.partition("t", p).append_batches(build_batch_values([value], int(time.time() * 1000)))
    config = BrokerConfig()
    config.limits.fetch_max_files = fetch_max_files
    broker = types.SimpleNamespace(store=store, config=config)
    broker.replicas = ReplicaManager(broker)  # single-broker mode: every partition led here
    body = {"max_bytes": 50 << 20, "min_bytes": 1, "max_wait_ms": 0,
            "topics": [{"topic": "t", "partitions": [
                {"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20, "current_leader_epoch": -1}
                for p in range(partitions)]}]}
    plan = FetchWait(broker, body).plan(files)
    with_records = sum(1 for t in plan.body["responses"] for e in t["partitions"]
                       if getattr(e["records"], "length", 0))
    return store, plan, with_records


def test_fetch_plan_in_memory_slices_hold_no_descriptor_unit_nor_a_file_place(tmp_path):
    files = Budget(10)
    store, plan, with_records = _fetch_plan(tmp_path, 100, b"x", files, fetch_max_files=5)
    try:
        assert with_records == 100  # not capped at the budget (10) nor at fetch_max_files (5)
        assert files.used == 0 and plan.slices == []
        plan.close()
        assert files.used == 0
    finally:
        store.close()


def test_fetch_plan_slices_on_descriptors_are_capped_and_given_back(tmp_path):
    files = Budget(10)
    store, plan, with_records = _fetch_plan(tmp_path, 8, b"y" * (INLINE_BYTES + 1024), files, fetch_max_files=3)
    try:
        assert with_records == 3
        assert files.used == 3 and len(plan.slices) == 3
        assert not any(piece.in_memory for piece in plan.slices)
        plan.close()
        assert files.used == 0
    finally:
        store.close()

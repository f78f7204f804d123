"""workers/pool.py: forked workers answer in the order requests were put, with up to
`depth` outstanding each; a handler that raises answers -1; a dead worker stops the pool and
leaves every outstanding request unanswered (status None), never lost or reordered."""

from __future__ import annotations

import os
import signal
import time

import pytest

from logship.workers.pool import OrderedWorkers, workers_from_env


def slow_echo(request) -> tuple[int, bytes]:
    """Answers the request reversed, with its process id as status; later requests sooner."""
    number = int(request)
    time.sleep(0.002 * (number % 4))
    if number == 13:
        raise ValueError("unlucky")
    return os.getpid(), bytes(request)[::-1] * 1000


@pytest.mark.parametrize("workers, depth, slot", [(1, 1, 0), (3, 1, 0), (3, 2, 0), (1, 1, 1500), (3, 2, 1500)])
def test_answers_come_in_the_order_requests_were_put(workers, depth, slot):
    """With slots of 1,500 bytes, answers to 0-9 (1,000 bytes) come in shared memory and the
    others (2,000) on the socket."""
    with OrderedWorkers(slow_echo, workers, depth=depth, answer_slot_bytes=slot) as pool:
        answers, pids = [], set()
        for number in range(40):
            while not pool.can_put():
                token, status, answer = pool.take()
                answers.append((token, bytes(answer)))
                pids.add(status)
            assert pool.put(number, b"%d" % number)
            assert pool.pending <= workers * depth
        while pool.pending:
            token, status, answer = pool.take()
            answers.append((token, bytes(answer)))
            pids.add(status)
    assert [token for token, _ in answers] == list(range(40))
    for token, answer in answers:
        assert answer == (b"" if token == 13 else (b"%d" % token)[::-1] * 1000)
    assert -1 in pids  # request 13's handler raised
    assert len(pids - {-1}) == workers and os.getpid() not in pids


def test_a_dead_worker_leaves_every_outstanding_request_unanswered_and_stops_the_pool():
    pool = OrderedWorkers(slow_echo, 2, depth=2)
    for number in range(4):
        assert pool.put(number, b"%d" % number)
    pids = pool.pids
    os.kill(pids[1], signal.SIGKILL)
    taken = [pool.take() for _ in range(4)]
    assert [token for token, _, _ in taken] == [0, 1, 2, 3]
    assert taken[0][1] == pids[0]  # answered before the dead worker's turn
    assert [status for _, status, _ in taken[1:]] == [None, None, None]
    assert not pool.usable and not pool.put(4, b"4")
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_close_stops_the_workers_with_requests_outstanding():
    pool = OrderedWorkers(slow_echo, 3)
    for number in range(3):
        pool.put(number, b"%d" % number)
    pids = pool.pids
    pool.close()
    assert pool.pending == 0 and not pool.pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_no_workers_means_an_unusable_pool():
    pool = OrderedWorkers(slow_echo, 0)
    assert not pool.usable and not pool.put(1, b"1") and pool.pending == 0


def test_the_worker_count_comes_from_the_environment_or_the_cpus(monkeypatch):
    monkeypatch.setenv("SOME_WORKERS", " 5 ")
    assert workers_from_env("SOME_WORKERS") == 5
    monkeypatch.setenv("SOME_WORKERS", "0")
    assert workers_from_env("SOME_WORKERS") == 0
    monkeypatch.setenv("SOME_WORKERS", "-2")  # a mistake, not "none": refused like any other
    with pytest.raises(ValueError, match="SOME_WORKERS='-2'"):
        workers_from_env("SOME_WORKERS")
    monkeypatch.setenv("SOME_WORKERS", "lots")
    with pytest.raises(ValueError, match="SOME_WORKERS='lots'"):
        workers_from_env("SOME_WORKERS")
    monkeypatch.delenv("SOME_WORKERS")
    cpus = len(os.sched_getaffinity(0))
    assert workers_from_env("SOME_WORKERS", most=3) == (0 if cpus < 2 else min(cpus, 3))

"""`RequestTurns` (logship/broker/request_turns.py): who handles a request next when several
connections wait. Driven here with simulated connections and handling costs; the broker-level
effect (good clients keep their rate beside 1,000 pipelining connections) is in
tests/test_broker_limits.py."""

from __future__ import annotations

import asyncio
import collections

from logship.broker.request_turns import PRUNE_MIN, RequestTurns


async def connection(turns: RequestTurns, key, requests: int, cost: float, log: list) -> None:
    """A connection handling `requests` requests of `cost` seconds each, one per turn."""
    for _ in range(requests):
        granted = turns.take(key)
        if granted is not None:
            await granted
        log.append(key)
        turns.done(key, cost)
        turns.release()
        await asyncio.sleep(0)  # the next request arrives later, as from a socket


def run(connections: list) -> list:
    """Run connections given as (client, requests, cost) to the end; the order of their turns."""
    async def main():
        turns, log = RequestTurns(), []
        await asyncio.gather(*(connection(turns, key, requests, cost, log) for key, requests, cost in connections))
        return log

    return asyncio.run(main())


def test_alone_a_connection_takes_the_turn_at_once():
    async def main():
        turns = RequestTurns()
        assert turns.take("a") is None  # nobody holds or waits: no future, no hand-over
        turns.release()  # a free turn ends with the batch of callbacks, not here
        waiting = turns.take("b")
        assert waiting is not None and not waiting.done()
        await waiting  # granted once the batch that took the free turn is over
        turns.release()
        await asyncio.sleep(0)
        assert turns.take("b") is None

    asyncio.run(main())


def test_a_client_with_one_connection_is_served_next_to_one_with_a_hundred():
    log = run([("many", 40, 0.001)] * 100 + [("one", 200, 0.001)])
    first = log[:400]  # while both are busy
    # its next request comes only after its turn: it is served after at most two others (the
    # turn granted while it was away, and one that took its place), not after 100
    assert collections.Counter(first)["one"] >= 130, collections.Counter(first)
    ones = [i for i, key in enumerate(first) if key == "one"]
    assert max(b - a for a, b in zip(ones, ones[1:])) <= 3


def test_handling_time_is_what_is_shared_not_turns():
    log = run([("cheap", 100, 0.001)] * 10 + [("dear", 100, 0.010)])
    first = collections.Counter(log[:330])
    assert 25 <= first["dear"] <= 35, first  # 30 turns of 10 ms for 300 of 1 ms


def test_a_client_that_was_idle_is_served_next_but_saves_up_nothing():
    async def main():
        turns, log = RequestTurns(), []
        busy = [asyncio.create_task(connection(turns, "busy", 300, 0.001, log)) for _ in range(20)]
        for _ in range(200):
            await asyncio.sleep(0)
        arrived = len(log)
        late = asyncio.create_task(connection(turns, "late", 50, 0.001, log))
        await asyncio.gather(*busy, late)
        return log, arrived

    log, arrived = asyncio.run(main())
    after = log[arrived:]
    assert "late" in after[:3]  # its first request did not wait behind 20 connections' turns
    window = collections.Counter(after[:60])
    # then a third (its next request comes after its turn: see above), the share of a client that
    # was busy all along; with its idle time saved up it would be served whenever it asks (half)
    assert 15 <= window["late"] <= 22, window


def test_a_cancelled_waiter_is_skipped_and_a_cancelled_holder_passes_the_turn():
    async def main():
        turns = RequestTurns()
        assert turns.take("a") is None
        b, c = turns.take("b"), turns.take("c")
        b.cancel()  # what Task.cancel does to the future its task awaits
        await asyncio.sleep(0)  # the free turn ends with this batch
        assert c.done() and not c.cancelled()  # b was skipped
        d = turns.take("d")
        assert not d.done()
        turns.release()  # c's turn ends
        assert d.done()
        e = turns.take("e")
        turns.abandon(d)  # d's task was cancelled after the grant, before it ran
        assert e.done()
        turns.abandon(b)  # abandoning what was never granted changes nothing
        assert turns.take("f") is not None

    asyncio.run(main())


def test_a_client_that_was_alone_is_not_starved_when_others_come():
    """Turns taken while nobody waited move the floor too: a newcomer starts where the lone
    client is, not at zero (else the lone client would wait until the newcomer had used as
    much time as it had)."""
    async def main():
        turns, log = RequestTurns(), []
        await connection(turns, "old", 2000, 0.001, log)
        log.clear()
        await asyncio.gather(*(connection(turns, "many", 10, 0.001, log) for _ in range(100)),
                             connection(turns, "old", 200, 0.001, log))
        return log

    first = collections.Counter(asyncio.run(main())[:400])
    assert first["old"] >= 130, first


def test_clients_that_wait_for_nothing_are_forgotten_in_amortized_passes():
    async def main():
        turns = RequestTurns()
        for i in range(20 * PRUNE_MIN):
            assert turns.take(("127.0.0.1", b"id-%d" % i)) is None
            turns.done(("127.0.0.1", b"id-%d" % i), 0.001)
            await asyncio.sleep(0)  # the free turn ends
            assert len(turns._clients) <= 2 * PRUNE_MIN
    asyncio.run(main())

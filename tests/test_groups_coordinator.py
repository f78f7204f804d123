"""The group coordinator's state machine, driven by a fake clock (no sockets, no threads)."""

from __future__ import annotations

import pytest

from logship.broker.broker import ClientInfo
from logship.broker.config import BrokerConfig
from logship.broker.groups import CommittedOffset, GroupCoordinator, GroupState, OffsetStore
from logship.storage import Store

NONE, METADATA_TOO_LARGE, ILLEGAL_GENERATION, INCONSISTENT_PROTOCOL = 0, 12, 22, 23
INVALID_GROUP_ID, UNKNOWN_MEMBER, INVALID_SESSION_TIMEOUT, REBALANCING, MEMBER_ID_REQUIRED = 24, 25, 26, 27, 79
DELAY_MS, SESSION_MS, REBALANCE_MS = 300, 10_000, 20_000
SETTLE = 2 * DELAY_MS / 1000  # members joining together: the delay, extended once because others came
RANGE = [("range", b"range-meta")]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path):
    store = Store(tmp_path / "data")
    config = BrokerConfig(group_initial_rebalance_delay_ms=DELAY_MS)
    clock = Clock()
    offsets = OffsetStore(store, config.offsets_log_config())
    store.create_topic("t", 4)
    coordinator = GroupCoordinator(offsets, config, clock)
    wakeups = []
    coordinator.on_wakeup = wakeups.append
    yield Env(coordinator, clock, store, wakeups)
    store.close()


class Env:
    def __init__(self, coordinator, clock, store, wakeups):
        self.c, self.clock, self.store, self.wakeups = coordinator, clock, store, wakeups

    def advance(self, seconds: float) -> None:
        """Move the clock, ticking at every deadline on the way (as the server's timer does)."""
        target = self.clock.now + seconds
        while (deadline := self.c.next_deadline()) is not None and deadline <= target:
            self.clock.now = max(self.clock.now, deadline)
            self.c.tick()
        self.clock.now = target
        self.c.tick()

    def join(self, member_id="", group="g", protocols=RANGE, session=SESSION_MS, rebalance=REBALANCE_MS,
             client="c", **kw):
        return self.c.join(group, member_id, ClientInfo(client, "127.0.0.1"), session, rebalance, "consumer",
                           protocols, **kw)

    def form(self, count: int, group="g"):
        """A Stable group of `count` members; returns their ids, leader first."""
        parked = [self.join(client=f"c{i}", group=group) for i in range(count)]
        self.advance(SETTLE)
        bodies = [p.body for p in parked]
        assert all(b["error_code"] == NONE for b in bodies)
        leader = bodies[0]["leader"]
        ids = [leader] + [b["member_id"] for b in bodies if b["member_id"] != leader]
        generation = bodies[0]["generation_id"]
        syncs = [self.c.sync(group, generation, m, {x: x.encode() for x in ids} if m == leader else {})
                 for m in reversed(ids)]
        assert all(s.done and s.body["error_code"] == NONE for s in syncs)
        assert self.c.group(group).state is GroupState.STABLE
        return ids, generation


def test_first_member_waits_the_initial_delay_then_leads(env):
    parked = env.join()
    assert not parked.done
    assert env.c.group("g").state is GroupState.PREPARING_REBALANCE
    env.advance(DELAY_MS / 1000 - 0.01)
    assert not parked.done
    env.advance(0.02)
    body = parked.body
    assert body["error_code"] == NONE and body["generation_id"] == 1 and body["protocol_name"] == "range"
    assert body["leader"] == body["member_id"] and body["member_id"].startswith("c-")
    assert body["members"] == [{"member_id": body["member_id"], "group_instance_id": None, "metadata": b"range-meta"}]
    assert env.c.group("g").state is GroupState.COMPLETING_REBALANCE
    sync = env.c.sync("g", 1, body["member_id"], {body["member_id"]: b"assigned"})
    assert sync.body == {"throttle_time_ms": 0, "error_code": NONE, "assignment": b"assigned"}
    assert env.c.group("g").state is GroupState.STABLE
    assert env.wakeups == [pytest.approx(1000 + SESSION_MS / 1000), pytest.approx(1000 + DELAY_MS / 1000)]


def test_members_joining_during_the_delay_extend_it_up_to_the_rebalance_timeout(env):
    first = env.join()
    for _ in range(3):
        env.advance(DELAY_MS / 1000 * 0.9)
        env.join(client="late")
    env.advance(DELAY_MS / 1000 * 0.2)
    assert not first.done  # every round of the delay saw a newcomer
    env.advance(DELAY_MS / 1000 * 2)
    assert first.done and len(first.body["members"]) == 4


def test_followers_sync_waits_for_the_leader(env):
    a, b = env.join(client="a"), env.join(client="b")
    env.advance(SETTLE)
    leader, follower = (a, b) if a.body["leader"] == a.body["member_id"] else (b, a)
    assert len(leader.body["members"]) == 2 and follower.body["members"] == []
    assert leader.body["generation_id"] == follower.body["generation_id"] == 1
    held = env.c.sync("g", 1, follower.body["member_id"], {})
    assert not held.done
    assert env.c.heartbeat("g", 1, follower.body["member_id"]) == NONE  # CompletingRebalance: fine
    env.c.sync("g", 1, leader.body["member_id"], {follower.body["member_id"]: b"f", leader.body["member_id"]: b"l"})
    assert held.body["assignment"] == b"f"
    # a later SyncGroup in Stable answers the stored assignment at once
    assert env.c.sync("g", 1, follower.body["member_id"], {}).body["assignment"] == b"f"


def test_a_new_member_makes_the_others_rejoin_and_is_held_until_they_do(env):
    (leader, follower), generation = env.form(2)
    newcomer = env.join(client="new")
    assert not newcomer.done
    assert env.c.group("g").state is GroupState.PREPARING_REBALANCE
    assert env.c.heartbeat("g", generation, leader) == REBALANCING
    rejoin_leader = env.join(leader)
    assert not rejoin_leader.done
    rejoin_follower = env.join(follower)
    for parked in (newcomer, rejoin_leader, rejoin_follower):
        assert parked.done and parked.body["generation_id"] == generation + 1
    assert rejoin_leader.body["leader"] == leader  # the leader stays the leader
    assert len(rejoin_leader.body["members"]) == 3


def test_rebalance_timeout_removes_members_that_did_not_rejoin(env):
    (leader, follower), generation = env.form(2)
    env.join(client="new")
    rejoined = env.join(follower)
    for _ in range(int(REBALANCE_MS / 1000 / 2) - 1):  # alive (heartbeats) but never rejoins
        env.advance(2)
        assert env.c.heartbeat("g", generation, leader) == REBALANCING
    env.advance(2 - 0.1)
    assert not rejoined.done
    env.advance(0.2)
    body = rejoined.body
    assert body["error_code"] == NONE and body["generation_id"] == generation + 1
    group = env.c.group("g")
    assert leader not in group.members and len(group.members) == 2
    assert body["leader"] in group.members
    assert env.c.heartbeat("g", generation, leader) == UNKNOWN_MEMBER


def test_session_expiry_removes_a_silent_member_and_rebalances(env):
    (leader, follower), generation = env.form(2)
    for _ in range(3):  # the leader heartbeats every 3 s, the follower is silent
        env.advance(3)
        assert env.c.heartbeat("g", generation, leader) == NONE
    env.advance(SESSION_MS / 1000 - 9 - 0.1)
    assert follower in env.c.group("g").members
    env.advance(0.2)
    assert follower not in env.c.group("g").members
    assert env.c.heartbeat("g", generation, leader) == REBALANCING
    rejoined = env.join(leader)
    assert rejoined.done  # everyone left has rejoined: no wait
    assert rejoined.body["generation_id"] == generation + 1 and len(rejoined.body["members"]) == 1


def test_a_parked_member_does_not_expire_while_its_phase_runs(env):
    parked = env.join(session=6000, rebalance=60_000)
    env.c.join("g", "", ClientInfo("x", ""), 6000, 60_000, "consumer", RANGE)
    env.advance(SETTLE)
    assert parked.done
    member = parked.body["member_id"]
    held = env.c.sync("g", 1, member, {}) if parked.body["leader"] != member else None
    if held is None:
        return
    env.advance(30)  # far beyond the 6 s session, inside the 60 s rebalance timeout
    assert member in env.c.group("g").members and not held.done


def test_leader_that_never_syncs_is_removed_and_followers_are_told_to_rejoin(env):
    a, b = env.join(client="a"), env.join(client="b")
    env.advance(SETTLE)
    leader = a.body["leader"]
    follower = next(p.body["member_id"] for p in (a, b) if p.body["member_id"] != leader)
    held = env.c.sync("g", 1, follower, {})
    for _ in range(int(REBALANCE_MS / 1000 / 2)):  # the leader heartbeats but never syncs
        assert not held.done
        assert env.c.heartbeat("g", 1, leader) == NONE
        env.advance(2)
    env.advance(0.1)
    assert held.body["error_code"] == REBALANCING
    assert leader not in env.c.group("g").members
    assert env.c.group("g").state is GroupState.PREPARING_REBALANCE


def test_held_sync_is_released_when_a_rebalance_starts(env):
    a, b = env.join(client="a"), env.join(client="b")
    env.advance(SETTLE)
    leader = a.body["leader"]
    follower = next(p.body["member_id"] for p in (a, b) if p.body["member_id"] != leader)
    held = env.c.sync("g", 1, follower, {})
    env.join(client="c")
    assert held.body["error_code"] == REBALANCING


def test_leave_rebalances_and_the_last_leave_empties_and_forgets_the_group(env):
    (leader, follower), generation = env.form(2)
    assert env.c.leave("g", follower) == NONE
    assert env.c.group("g").state is GroupState.PREPARING_REBALANCE
    assert env.c.leave("g", follower) == UNKNOWN_MEMBER
    rejoined = env.join(leader)
    assert rejoined.done and rejoined.body["generation_id"] == generation + 1
    env.c.sync("g", generation + 1, leader, {})
    assert env.c.leave("g", leader) == NONE
    assert env.c.group("g") is None
    assert env.c.describe("g")["group_state"] == "Dead"


def test_a_follower_rejoining_unchanged_gets_the_current_generation_at_once(env):
    (leader, follower), generation = env.form(2)
    again = env.join(follower)
    assert again.body["generation_id"] == generation and again.body["members"] == []
    assert env.c.group("g").state is GroupState.STABLE


def test_leave_of_a_member_parked_in_join_answers_its_join(env):
    (leader, follower), generation = env.form(2)
    parked = env.join(leader)  # the leader rejoining starts a rebalance
    assert not parked.done
    assert env.c.leave("g", leader) == NONE
    assert parked.body["error_code"] == UNKNOWN_MEMBER


def test_join_errors(env):
    assert env.join(group="").body["error_code"] == INVALID_GROUP_ID
    assert env.join(session=5999).body["error_code"] == INVALID_SESSION_TIMEOUT
    assert env.join(session=30 * 60 * 1000 + 1).body["error_code"] == INVALID_SESSION_TIMEOUT
    assert env.join("nobody").body["error_code"] == UNKNOWN_MEMBER
    assert env.join(protocols=[]).body["error_code"] == INCONSISTENT_PROTOCOL
    assert env.c.list_groups() == []  # failed joins leave no group behind
    env.form(1)
    assert env.join(protocols=[("roundrobin", b"")]).body["error_code"] == INCONSISTENT_PROTOCOL
    other = env.c.join("g", "", ClientInfo("x", ""), SESSION_MS, REBALANCE_MS, "connect", RANGE)
    assert other.body["error_code"] == INCONSISTENT_PROTOCOL
    assert env.join("nobody").body["error_code"] == UNKNOWN_MEMBER


def test_min_session_timeout_is_configurable(tmp_path):
    with Store(tmp_path / "d") as store:
        config = BrokerConfig(group_min_session_timeout_ms=1000)
        coordinator = GroupCoordinator(OffsetStore(store, config.offsets_log_config()), config, Clock())
        parked = coordinator.join("g", "", ClientInfo(), 1000, 1000, "consumer", RANGE)
        assert not parked.done


def test_protocol_is_chosen_by_votes_among_those_all_support(env):
    env.join(protocols=[("range", b"1"), ("roundrobin", b"2"), ("sticky", b"3")])
    env.join(protocols=[("roundrobin", b"4"), ("range", b"5")])
    last = env.join(protocols=[("sticky", b"6"), ("roundrobin", b"7")])
    env.advance(SETTLE)
    assert last.body["protocol_name"] == "roundrobin"


def test_generation_and_membership_errors(env):
    (leader, follower), generation = env.form(2)
    assert env.c.heartbeat("g", generation + 1, leader) == ILLEGAL_GENERATION
    assert env.c.heartbeat("g", generation, "nobody") == UNKNOWN_MEMBER
    assert env.c.heartbeat("other", generation, leader) == UNKNOWN_MEMBER
    assert env.c.sync("g", generation - 1, leader, {}).body["error_code"] == ILLEGAL_GENERATION
    assert env.c.sync("g", generation, "nobody", {}).body["error_code"] == UNKNOWN_MEMBER
    env.join(client="new")
    assert env.c.sync("g", generation, leader, {}).body["error_code"] == REBALANCING


def _commit(env, group, generation, member, offset=5, metadata=""):
    return env.c.commit(group, generation, member, [("t", 0, CommittedOffset(offset, -1, metadata, 1))])


def test_commits_are_checked_against_generation_and_state(env):
    (leader, follower), generation = env.form(2)
    errors, appended = _commit(env, "g", generation, follower, 7)
    assert errors == {("t", 0): NONE} and appended is not None
    assert _commit(env, "g", generation - 1, follower)[0] == {("t", 0): ILLEGAL_GENERATION}
    assert _commit(env, "g", generation, "nobody")[0] == {("t", 0): UNKNOWN_MEMBER}
    assert _commit(env, "g", -1, "")[0] == {("t", 0): UNKNOWN_MEMBER}  # not standalone: the group has members
    env.join(client="new")  # PreparingRebalance: commits of the old generation still count
    assert _commit(env, "g", generation, leader, 8)[0] == {("t", 0): NONE}
    env.join(leader), env.join(follower)
    assert env.c.group("g").state is GroupState.COMPLETING_REBALANCE
    assert _commit(env, "g", generation + 1, leader)[0] == {("t", 0): REBALANCING}
    assert env.c.committed("g", [("t", 0), ("t", 1)]) == [("t", 0, CommittedOffset(8, -1, "", 1)), ("t", 1, None)]


def test_standalone_commits_need_no_membership(env):
    errors, _ = _commit(env, "solo", -1, "", 42, "meta")
    assert errors == {("t", 0): NONE}
    group = env.c.group("solo")
    assert group.state is GroupState.EMPTY
    assert [g.group_id for g in env.c.list_groups()] == ["solo"]
    assert env.c.committed("solo") == [("t", 0, CommittedOffset(42, -1, "meta", 1))]
    assert _commit(env, "unknown", 3, "someone")[0] == {("t", 0): ILLEGAL_GENERATION}
    described = env.c.describe("solo")
    assert described["group_state"] == "Empty" and described["members"] == [] and described["protocol_type"] == ""


def test_metadata_above_the_limit_is_refused_per_partition(env):
    errors, appended = env.c.commit("g", -1, "", [("t", 0, CommittedOffset(1, -1, "x" * 4097, 1)),
                                                  ("t", 1, CommittedOffset(2, -1, "x" * 4096, 1))])
    assert errors == {("t", 0): METADATA_TOO_LARGE, ("t", 1): NONE}
    assert env.c.committed("g") == [("t", 1, CommittedOffset(2, -1, "x" * 4096, 1))]


def test_member_id_required_two_step_join(env):
    first = env.join(require_known_member_id=True)
    assert first.body["error_code"] == MEMBER_ID_REQUIRED and first.body["member_id"].startswith("c-")
    parked = env.join(first.body["member_id"], require_known_member_id=True)
    assert not parked.done
    env.advance(DELAY_MS / 1000)
    assert parked.body["member_id"] == first.body["member_id"] and parked.body["error_code"] == NONE


def test_member_id_handed_out_but_never_used_expires(env):
    (leader,), generation = env.form(1)
    pending = env.join(require_known_member_id=True).body["member_id"]
    rejoined = env.join(leader)
    assert not rejoined.done  # waits for the member that is on its way
    env.advance(SESSION_MS / 1000 + 0.1)
    assert rejoined.body["error_code"] == NONE and pending not in env.c.group("g").members


def test_describe_shows_metadata_and_assignment_only_when_stable(env):
    (leader, follower), generation = env.form(2)
    described = env.c.describe("g")
    assert described["group_state"] == "Stable" and described["protocol_type"] == "consumer"
    assert described["protocol_data"] == "range"
    by_id = {m["member_id"]: m for m in described["members"]}
    assert by_id[follower]["member_assignment"] == follower.encode()
    assert by_id[follower]["member_metadata"] == b"range-meta" and by_id[follower]["client_host"] == "127.0.0.1"
    env.join(client="new")
    described = env.c.describe("g")
    assert described["group_state"] == "PreparingRebalance" and described["protocol_data"] == ""
    assert all(m["member_assignment"] == b"" for m in described["members"])


def test_every_parked_request_is_answered_by_a_deadline(env):
    parked = []
    (leader, follower), generation = env.form(2)
    parked.append(env.join(client="x"))
    parked.append(env.join(follower))
    env.advance(REBALANCE_MS / 1000 + 1)
    for p in list(parked):
        if p.body["error_code"] == NONE and p.body["member_id"] != p.body["leader"]:
            parked.append(env.c.sync("g", p.body["generation_id"], p.body["member_id"], {}))
    env.advance(REBALANCE_MS / 1000 + SESSION_MS / 1000 + 1)
    assert all(p.done for p in parked)
    env.advance(3600)
    assert env.c.group("g") is None  # everybody silent: everybody expired, the group forgotten


def test_commits_survive_a_restart(tmp_path):
    config = BrokerConfig()
    with Store(tmp_path / "d") as store:
        store.create_topic("t", 2)
        coordinator = GroupCoordinator(OffsetStore(store, config.offsets_log_config()), config, Clock())
        coordinator.commit("g", -1, "", [("t", 0, CommittedOffset(10, 3, "a", 1))])
        coordinator.commit("g", -1, "", [("t", 0, CommittedOffset(11, 4, "b", 2)), ("t", 1, CommittedOffset(1))])
        coordinator.commit("h", -1, "", [("t", 1, CommittedOffset(99))])
    with Store(tmp_path / "d") as store:
        coordinator = GroupCoordinator(OffsetStore(store, config.offsets_log_config()), config, Clock())
        assert coordinator.committed("g") == [("t", 0, CommittedOffset(11, 4, "b", 2)), ("t", 1, CommittedOffset(1))]
        assert coordinator.committed("h") == [("t", 1, CommittedOffset(99))]
        assert [g.group_id for g in coordinator.list_groups()] == ["g", "h"]
        assert all(g.state is GroupState.EMPTY for g in coordinator.list_groups())

"""Replica assignment (broker/assignment.py): Kafka's rack-unaware layout."""

import collections

import pytest

from logship.broker.assignment import assign_replicas
from logship.errors import InvalidReplicationFactorError


def test_six_partitions_rf3_on_three_brokers_spread_leaders_two_each():
    for start in range(3):
        for shift in range(3):
            layout = assign_replicas([3, 1, 2], 6, 3, start=start, shift=shift)
            assert sorted(layout) == list(range(6))
            leaders = collections.Counter(replicas[0] for replicas in layout.values())
            assert leaders == {1: 2, 2: 2, 3: 2}
            for replicas in layout.values():
                assert sorted(replicas) == [1, 2, 3]


def test_matches_kafkas_layout():
    # Kafka's AdminUtils doc example: 5 brokers, 10 partitions, RF 3, start 0, shift 0
    layout = assign_replicas(range(5), 10, 3, start=0, shift=0)
    assert [layout[p] for p in range(5)] == [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 0), (4, 0, 1)]
    assert [layout[p] for p in range(5, 10)] == [(0, 2, 3), (1, 3, 4), (2, 4, 0), (3, 0, 1), (4, 1, 2)]


def test_followers_spread_evenly_too():
    layout = assign_replicas(range(4), 12, 2, start=1, shift=2)
    followers = collections.Counter(replicas[1] for replicas in layout.values())
    assert set(followers.values()) == {3}
    assert all(len(set(r)) == len(r) for r in layout.values())


def test_added_partitions_continue_the_topic():
    whole = assign_replicas(range(3), 8, 2, start=2, shift=1)
    head = assign_replicas(range(3), 5, 2, start=2, shift=1)
    tail = assign_replicas(range(3), 3, 2, first_partition=5, start=2, shift=1)
    assert {**head, **tail} == whole


def test_random_start_still_spreads():
    for _ in range(20):
        leaders = collections.Counter(r[0] for r in assign_replicas([7, 8, 9], 6, 2).values())
        assert leaders == {7: 2, 8: 2, 9: 2}


@pytest.mark.parametrize("rf", [0, 4, -1])
def test_impossible_replication_factor_is_refused_with_the_broker_count(rf):
    with pytest.raises(InvalidReplicationFactorError, match="with 3 brokers"):
        assign_replicas([1, 2, 3], 1, rf)


def test_replication_factor_one_on_one_broker():
    assert assign_replicas([5], 3, 1) == {0: (5,), 1: (5,), 2: (5,)}


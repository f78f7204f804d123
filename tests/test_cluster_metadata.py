"""The cluster metadata image (broker/cluster_metadata.py): saved, merged, installed, encoded;
and promote's choice of a new leader (cluster/leadership.py)."""

import pytest

from logship.broker.cluster_metadata import ClusterMetadata, states_of_update
from logship.protocol.apis.interbroker import update_metadata_body
from logship.cluster.leadership import PartitionView, _choose
from logship.cluster_file import parse
from logship.errors import ConfigError
from logship.storage.partition_state import PartitionState

CLUSTER = parse("\n".join(f'[[broker]]\nid = {n}\nssh = "h{n}"\nlisten = "127.0.0.1:{9090 + n}"\ndata_dir = "/d"'
                          for n in (3, 1, 2)))


def state(leader, version, replicas=(1, 2, 3), isr=None, epoch=0):
    return PartitionState(leader, epoch, tuple(replicas), tuple(isr if isr is not None else replicas), version,
                          tuple(r for r in replicas if r not in (isr if isr is not None else replicas)))


def test_image_is_saved_and_loaded_and_the_controller_is_the_lowest_id(tmp_path):
    image = ClusterMetadata(tmp_path, CLUSTER, 2)
    assert image.controller_id == 1 and not image.is_controller
    image.publish({"t": {0: state(1, 0), 1: state(2, 1, isr=(1, 2), epoch=1)}})
    again = ClusterMetadata(tmp_path, CLUSTER, 2)
    assert again.topics == image.topics and again.version == image.version
    assert again.fenced() == {3} and again.version == 1


def test_merge_takes_only_newer_states(tmp_path):
    image = ClusterMetadata(tmp_path, CLUSTER, 1)
    image.publish({"t": {0: state(1, 5)}})
    assert not image.merge({"t": {0: state(2, 5)}})
    assert image.topics["t"][0].leader == 1
    assert image.merge({"t": {0: state(2, 6, epoch=1)}})
    assert image.topics["t"][0].leader == 2
    assert ClusterMetadata(tmp_path, CLUSTER, 1).topics["t"][0].leader == 2


def test_install_replaces_the_image_but_keeps_a_newer_local_state_and_drops_deleted_topics(tmp_path):
    image = ClusterMetadata(tmp_path, CLUSTER, 2)
    image.merge({"gone": {0: state(1, 1)}, "t": {0: state(3, 9, epoch=2)}})
    assert image.install(4, {"t": {0: state(1, 3), 1: state(2, 4)}})
    assert set(image.topics) == {"t"}
    assert image.topics["t"][0].leader == 3  # a promote reached this broker first
    assert not image.install(3, {})  # older than the one held


def test_update_metadata_body_round_trips(tmp_path):
    topics = {"a": {0: state(1, 2, isr=(1, 2)), 1: state(3, 4)}}
    body = update_metadata_body(1, 7, topics, ClusterMetadata(tmp_path, CLUSTER, 1).live_brokers())
    assert body["broker_epoch"] == 7 and [b["id"] for b in body["live_brokers"]] == [3, 1, 2]
    assert states_of_update(body) == topics


def test_a_damaged_image_file_is_one_line(tmp_path):
    (tmp_path / "cluster-metadata").write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        ClusterMetadata(tmp_path, CLUSTER, 1)


def test_promote_picks_the_highest_epoch_then_the_longest_log_never_the_old_leader_nor_a_removed_one():
    view = PartitionView(leader=1, leader_epoch=4, replicas=(1, 2, 3, 4), isr=(1, 2, 3))
    assert view.removed == (4,) and view.version == 4
    positions = {1: (4, 900), 2: (3, 950), 3: (4, 800), 4: (9, 5000)}
    assert _choose(view, positions, away=1) == 3  # epoch 4 beats a longer log in epoch 3; 4 is removed
    assert _choose(view, {**positions, 3: (4, 700), 2: (4, 700)}, away=1) == 2  # a tie: the earlier replica
    assert _choose(view, {1: (4, 900)}, away=1) is None  # nobody else answered
    assert _choose(view, positions, away=3) == 1

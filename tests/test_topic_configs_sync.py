"""Units of topic_configs_sync.py: the image file, what a broker makes of the controller's
AlterConfigs, the cluster view of DescribeConfigs/AlterConfigs (configs.py), a new replica
created with the cluster's configs, and PeerSender's wait that gives up on an unreachable broker."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from logship.broker import configs, topic_configs_sync as sync
from logship.broker.peer_sender import PeerSender
from logship.cluster_file import BrokerSpec
from logship.errors import ConfigError
from logship.protocol import ApiKey, encode_request
from logship.storage import LogConfig, Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data", LogConfig(retention_ms=600_000)) as made:
        yield made


def broker_on(store, image_dir, topics=("t",)):
    """A broker as the handlers see it, in cluster mode: its store, its config image, and a
    cluster metadata naming `topics`."""
    return SimpleNamespace(store=store, topic_configs=sync.TopicConfigImage(image_dir),
                           cluster_metadata=SimpleNamespace(partitions=lambda name: {0: None} if name in topics else None))


def test_the_image_is_saved_durably_and_read_back(tmp_path):
    image = sync.TopicConfigImage(tmp_path)
    assert not image.existed and image.overrides("t") == {}
    assert image.update({"t": {"retention.ms": "1000"}, "u": {}})
    assert not image.update({"t": {"retention.ms": "1000"}})  # unchanged: not written again
    doc = json.loads((tmp_path / sync.FILE_NAME).read_text())
    assert doc == {"version": 0, "topics": {"t": {"retention.ms": "1000"}}}
    again = sync.TopicConfigImage(tmp_path)
    assert again.existed and again.overrides("t") == {"retention.ms": "1000"}
    assert again.update({"t": {}}) and sync.TopicConfigImage(tmp_path).topics == {}


def test_a_damaged_image_is_a_one_line_config_error(tmp_path):
    (tmp_path / sync.FILE_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        sync.TopicConfigImage(tmp_path)


def test_the_controllers_request_encodes_as_alter_configs_v1():
    body = sync.push_body({"b": {"segment.ms": "60000", "retention.ms": "1"}, "a": {}})
    assert [r["resource_name"] for r in body["resources"]] == ["a", "b"]
    assert body["resources"][0]["configs"] == []
    assert encode_request(ApiKey.ALTER_CONFIGS, 1, 7, "controller", body)


def test_take_saves_every_topic_and_applies_those_the_store_holds(store, tmp_path):
    store.create_topic("t", 1)
    broker = broker_on(store, tmp_path)
    answer = sync.take(broker, sync.push_body({"t": {"retention.ms": "1000"}, "elsewhere": {"retention.bytes": "5"}}))
    assert [r["error_code"] for r in answer["responses"]] == [0, 0]
    assert broker.topic_configs.topics == {"t": {"retention.ms": "1000"}, "elsewhere": {"retention.bytes": "5"}}
    assert store.topic_overrides("t") == {"retention.ms": "1000"}
    assert store.partition("t", 0).config.retention_ms == 1000  # in force at once
    assert "elsewhere" not in store.topics()

    answer = sync.take(broker, sync.push_body({"t": {}}))  # back to the defaults
    assert answer["responses"][0]["error_code"] == 0
    assert store.topic_overrides("t") == {} and store.partition("t", 0).config.retention_ms == 600_000


def test_take_refuses_a_bad_value_or_a_broker_resource_and_keeps_the_rest(store, tmp_path):
    store.create_topic("t", 1)
    broker = broker_on(store, tmp_path)
    body = sync.push_body({"t": {"retention.ms": "soon"}, "u": {"segment.ms": "5000"}})
    body["resources"].append({"resource_type": configs.BROKER, "resource_name": "1", "configs": []})
    codes = [r["error_code"] for r in sync.take(broker, body)["responses"]]
    assert codes == [40, 0, 42]
    assert broker.topic_configs.topics == {"u": {"segment.ms": "5000"}}
    assert store.topic_overrides("t") == {}


def test_a_new_replica_is_created_with_the_given_configs(store):
    partition = store.ensure_partition("fresh", 1, {"segment.bytes": "4096"})
    assert store.partition_count("fresh") == 2 and partition.config.segment_bytes == 4096
    assert store.topic_overrides("fresh") == {"segment.bytes": "4096"}


def test_in_a_cluster_configs_are_described_from_the_image_even_without_a_replica(store, tmp_path):
    broker = broker_on(store, tmp_path, topics=("t",))
    broker.topic_configs.update({"t": {"retention.ms": "1000"}})
    entries = {e["name"]: e for e in configs.topic_entries(broker, "t")}
    assert entries["retention.ms"]["value"] == "1000" and entries["retention.ms"]["config_source"] == 1
    assert entries["segment.bytes"]["config_source"] == configs.DEFAULT_CONFIG
    with pytest.raises(Exception, match="unknown topic"):
        configs._check_topic(broker, "absent")


def test_alter_all_hands_the_checked_changes_to_commit(store, tmp_path):
    broker = broker_on(store, tmp_path, topics=("t",))
    broker.topic_configs.update({"t": {"retention.ms": "1000"}})
    committed = []
    body = {"resources": [
        {"resource_type": configs.TOPIC, "resource_name": "t", "configs": [
            {"name": "segment.ms", "config_operation": configs.SET, "value": "60000"}]},
        {"resource_type": configs.TOPIC, "resource_name": "gone", "configs": []}], "validate_only": False}
    reply = configs.alter_all(broker, body, True, committed.append)
    assert [r["error_code"] for r in reply.body["responses"]] == [0, 3]
    assert committed == [{"t": {"retention.ms": "1000", "segment.ms": "60000"}}]  # incremental: kept the rest
    assert store.topics() == {}  # the store is not the one written in a cluster


def test_synced_gives_up_on_a_broker_that_cannot_be_reached():
    async def run() -> tuple[bool, bool, bool]:
        spec = BrokerSpec(2, "logship", "127.0.0.1", 22, None, ("127.0.0.1", 1), ("127.0.0.1", 1), "/data")
        sender = PeerSender(spec, 1, b"secret", (spec,), lambda: (0, {}))
        sender.last_error = "connection refused"
        # without unless_unreachable this would wait the hour: the outer bound only catches a hang
        gave_up = await asyncio.wait_for(sender.synced(5, set(), 3600, unless_unreachable=True), 60)
        timed_out = await sender.synced(5, set(), 0.05)
        sender.image_sent = 5
        delivered = await sender.synced(5, set(), 3600, unless_unreachable=True)
        return gave_up, timed_out, delivered

    assert asyncio.run(run()) == (False, False, True)


def test_a_controller_without_an_image_takes_its_stores_configs_and_applies_the_image(store, tmp_path):
    store.create_topic("old", 1, {"retention.ms": "1000"})
    store.create_topic("plain", 1)
    broker = broker_on(store, tmp_path, topics=("old", "plain"))
    controller = SimpleNamespace(broker=broker, metadata=SimpleNamespace(topics={"old": {}, "plain": {}}))
    sync.controller_started(controller)
    assert sync.TopicConfigImage(tmp_path).topics == {"old": {"retention.ms": "1000"}}

    again = broker_on(store, tmp_path, topics=("old", "plain"))  # the image exists now: it wins
    again.topic_configs.update({"plain": {"segment.ms": "5000"}})
    sync.controller_started(SimpleNamespace(broker=again, metadata=controller.metadata))
    assert store.topic_overrides("plain") == {"segment.ms": "5000"}
    assert store.topic_overrides("old") == {"retention.ms": "1000"}

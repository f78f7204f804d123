"""Topic configs in a cluster (topic_configs_sync.py) on a real three-broker cluster on
loopback: set at creation or altered through any broker (the controller, broker 1, decides),
described alike by every broker, applied by every replica's log (retention on followers too),
and caught up by a broker that was down when they changed."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import wait_until
from local_cluster import LocalCluster, run_logship
from logship.client.connection import Connection
from logship.protocol import ApiKey

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
TOPIC_CONFIG, DEFAULT_CONFIG = 1, 5
SET, DELETE = 0, 1
INVALID_CONFIG, UNKNOWN_TOPIC = 40, 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made = LocalCluster(tmp_path_factory.mktemp("configs"), 3)
    try:
        made.start_all("--retention-check-interval", "200ms")
        yield made
    finally:
        made.stop_all()
    for broker_id, process in made.brokers.items():
        assert "Traceback" not in process.log(), f"broker {broker_id}:\n{process.log()}"


def request(cluster: LocalCluster, broker_id: int, api_key: int, body: dict) -> dict:
    host, port = cluster.address(broker_id).split(":")
    with Connection(host, int(port)) as conn:
        return conn.request(api_key, body)


def described(cluster: LocalCluster, broker_id: int, topic: str) -> dict[str, tuple[str, int]]:
    """name -> (value, config source) of `topic`'s configs, as broker `broker_id` describes them."""
    answer = request(cluster, broker_id, ApiKey.DESCRIBE_CONFIGS, {
        "resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": topic, "configuration_keys": None}],
        "include_synonyms": False, "include_documentation": False})
    result = answer["results"][0]
    assert result["error_code"] == 0, result
    return {c["name"]: (c["value"], c["config_source"]) for c in result["configs"]}


def everywhere(cluster: LocalCluster, topic: str) -> dict[str, tuple[str, int]]:
    """The configs of `topic`, checked to be described alike by every broker."""
    views = {b: described(cluster, b, topic) for b in cluster.ids}
    assert all(view == views[1] for view in views.values()), views
    return views[1]


def stored(cluster: LocalCluster, broker_id: int, topic: str) -> dict[str, str]:
    """The overrides a broker's store keeps for `topic` (its topic-config-overrides file)."""
    path = cluster.data_dir(broker_id) / "topic-config-overrides"
    return json.loads(path.read_text())["topics"].get(topic, {}) if path.exists() else {}


def create(cluster: LocalCluster, broker_id: int, name: str, configs: dict[str, str], partitions: int = 1,
           rf: int = 3) -> dict:
    return request(cluster, broker_id, ApiKey.CREATE_TOPICS, {
        "topics": [{"name": name, "num_partitions": partitions, "replication_factor": rf, "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in configs.items()]}],
        "timeout_ms": 20000, "validate_only": False})["topics"][0]


def incremental(cluster: LocalCluster, broker_id: int, resources: list[dict]) -> list[dict]:
    return request(cluster, broker_id, ApiKey.INCREMENTAL_ALTER_CONFIGS,
                   {"resources": resources, "validate_only": False})["responses"]


def topic_set(name: str, **configs: str) -> dict:
    return {"resource_type": TOPIC_RESOURCE, "resource_name": name, "configs": [
        {"name": k.replace("_", "."), "config_operation": SET, "value": v} for k, v in configs.items()]}


def test_configs_given_at_creation_through_any_broker_reach_every_broker(cluster):
    done = run_logship("topics", "create", "created", "--partitions", "2", "--replication-factor", "3",
                       "-c", "retention.ms=3600000", "-c", "cleanup.policy=compact,delete",
                       "--brokers", cluster.address(3))
    assert done.returncode == 0, done.stderr
    configs = everywhere(cluster, "created")
    assert configs["retention.ms"] == ("3600000", TOPIC_CONFIG)
    assert configs["cleanup.policy"] == ("compact,delete", TOPIC_CONFIG)
    assert configs["segment.bytes"][1] == DEFAULT_CONFIG
    for broker_id in cluster.ids:  # every replica's log has them, not only the image
        assert stored(cluster, broker_id, "created") == {"retention.ms": "3600000",
                                                         "cleanup.policy": "compact,delete"}


def test_a_broker_that_hosts_no_replica_describes_the_topic_alike(cluster):
    result = create(cluster, 2, "single", {"retention.bytes": "1048576"}, rf=1)
    assert result["error_code"] == 0, result
    answered = {c["name"]: (c["value"], c["config_source"]) for c in result["configs"]}  # CreateTopics v5
    assert answered["retention.bytes"] == ("1048576", TOPIC_CONFIG) and answered["retention.ms"][1] == DEFAULT_CONFIG
    assert everywhere(cluster, "single")["retention.bytes"] == ("1048576", TOPIC_CONFIG)
    hosts = [b for b in cluster.ids if stored(cluster, b, "single")]
    assert len(hosts) == 1


def test_an_invalid_config_at_creation_is_refused_naming_the_key(cluster):
    result = create(cluster, 3, "badly-made", {"retention.ms": "soon"})
    assert result["error_code"] == INVALID_CONFIG and "retention.ms" in result["error_message"]
    assert request(cluster, 1, ApiKey.METADATA, {"topics": [{"name": "badly-made"}],
                                                 "allow_auto_topic_creation": False})["topics"][0]["error_code"]


def test_altered_through_a_broker_that_is_not_the_controller_every_broker_describes_the_change(cluster):
    assert create(cluster, 1, "altered", {})["error_code"] == 0
    assert everywhere(cluster, "altered")["retention.ms"][1] == DEFAULT_CONFIG
    responses = incremental(cluster, 3, [topic_set("altered", retention_ms="1234", segment_ms="60000")])
    assert [r["error_code"] for r in responses] == [0], responses
    configs = everywhere(cluster, "altered")  # answered once every broker has it
    assert configs["retention.ms"] == ("1234", TOPIC_CONFIG)
    assert configs["segment.ms"] == ("60000", TOPIC_CONFIG)
    assert all(stored(cluster, b, "altered") == {"retention.ms": "1234", "segment.ms": "60000"} for b in cluster.ids)

    # AlterConfigs replaces the whole set, through the other follower
    answer = request(cluster, 2, ApiKey.ALTER_CONFIGS, {"resources": [
        {"resource_type": TOPIC_RESOURCE, "resource_name": "altered",
         "configs": [{"name": "segment.ms", "value": "120000"}]}], "validate_only": False})
    assert answer["responses"][0]["error_code"] == 0, answer
    configs = everywhere(cluster, "altered")
    assert configs["retention.ms"][1] == DEFAULT_CONFIG and configs["segment.ms"] == ("120000", TOPIC_CONFIG)

    # the CLI, through broker 2: delete goes back to the default everywhere
    done = run_logship("topics", "config", "altered", "--delete", "segment.ms", "--brokers", cluster.address(2))
    assert done.returncode == 0, done.stderr
    assert everywhere(cluster, "altered")["segment.ms"][1] == DEFAULT_CONFIG
    assert all(stored(cluster, b, "altered") == {} for b in cluster.ids)


def test_refusals_through_a_follower_name_the_key_and_keep_the_request_order(cluster):
    assert create(cluster, 1, "refusing", {})["error_code"] == 0
    responses = incremental(cluster, 2, [
        {"resource_type": BROKER_RESOURCE, "resource_name": "2", "configs": [
            {"name": "log.retention.ms", "config_operation": SET, "value": "1"}]},
        topic_set("refusing", retention_ms="forever"),
        topic_set("no-such-topic", retention_ms="1000"),
    ])
    assert [(r["resource_type"], r["resource_name"]) for r in responses] == [
        (BROKER_RESOURCE, "2"), (TOPIC_RESOURCE, "refusing"), (TOPIC_RESOURCE, "no-such-topic")]
    assert responses[0]["error_code"] == INVALID_CONFIG and "read-only" in responses[0]["error_message"]
    assert responses[1]["error_code"] == INVALID_CONFIG and "retention.ms" in responses[1]["error_message"]
    assert responses[2]["error_code"] == UNKNOWN_TOPIC
    assert everywhere(cluster, "refusing")["retention.ms"][1] == DEFAULT_CONFIG


def test_validate_only_changes_nothing(cluster):
    assert create(cluster, 1, "checked", {})["error_code"] == 0
    answer = request(cluster, 3, ApiKey.INCREMENTAL_ALTER_CONFIGS, {
        "resources": [topic_set("checked", retention_ms="1000")], "validate_only": True})
    assert answer["responses"][0]["error_code"] == 0
    assert everywhere(cluster, "checked")["retention.ms"][1] == DEFAULT_CONFIG


def segments(cluster: LocalCluster, broker_id: int, topic: str) -> list[int]:
    """Base offsets of the segments of partition 0 of `topic` on a broker."""
    directory = cluster.data_dir(broker_id) / f"{topic}-0"
    return sorted(int(path.stem) for path in directory.glob("*.log"))


def test_retention_runs_on_the_followers_too(cluster):
    result = create(cluster, 3, "retained", {"segment.bytes": "1024", "retention.bytes": "2048"})
    assert result["error_code"] == 0, result
    lines = b"".join(b"%05d " % n + b"x" * 100 + b"\n" for n in range(300))
    done = subprocess.run(["kcat", "-P", "-b", cluster.bootstrap, "-t", "retained", "-X", "acks=all",
                           "-X", "batch.num.messages=4"], input=lines, capture_output=True, timeout=120)
    assert done.returncode == 0 and b"failed" not in done.stderr, done.stderr[-2000:]
    for broker_id in cluster.ids:  # each replica rolled small segments, then dropped the oldest
        kept = wait_until(lambda: (lambda found: found if found and found[0] > 0 and len(found) <= 4 else None)(
            segments(cluster, broker_id, "retained")), timeout=30)
        assert kept, f"broker {broker_id}: segments {segments(cluster, broker_id, 'retained')}"


def test_a_broker_down_during_a_change_catches_up_when_it_restarts(cluster):
    assert create(cluster, 2, "while-away", {"retention.ms": "1000000"})["error_code"] == 0
    everywhere(cluster, "while-away")
    cluster.brokers[3].stop()
    try:
        responses = incremental(cluster, 2, [topic_set("while-away", retention_ms="2000000")])
        assert [r["error_code"] for r in responses] == [0], responses  # broker 3 gets it when back
        for broker_id in (1, 2):
            assert described(cluster, broker_id, "while-away")["retention.ms"] == ("2000000", TOPIC_CONFIG)
        assert stored(cluster, 3, "while-away") == {"retention.ms": "1000000"}
    finally:
        cluster.start(3, "--retention-check-interval", "200ms")
    assert wait_until(lambda: described(cluster, 3, "while-away")["retention.ms"] == ("2000000", TOPIC_CONFIG),
                      timeout=30)
    assert wait_until(lambda: stored(cluster, 3, "while-away") == {"retention.ms": "2000000"}, timeout=30)
    everywhere(cluster, "while-away")


def test_a_restarted_controller_sends_a_broker_that_was_down_what_it_missed(cluster):
    """What the controller owed broker 3 is lost with the controller's memory: broker 3 gets the
    change from the controller's saved image when it says it is back (resync)."""
    assert create(cluster, 1, "missed", {})["error_code"] == 0
    everywhere(cluster, "missed")
    cluster.brokers[3].stop()
    try:
        responses = incremental(cluster, 2, [topic_set("missed", retention_bytes="7777777")])
        assert [r["error_code"] for r in responses] == [0], responses
        cluster.brokers[1].stop()
    finally:
        cluster.start(3, "--retention-check-interval", "200ms")
        cluster.start(1, "--retention-check-interval", "200ms")
    assert wait_until(lambda: stored(cluster, 3, "missed") == {"retention.bytes": "7777777"}, timeout=30)
    assert everywhere(cluster, "missed")["retention.bytes"] == ("7777777", TOPIC_CONFIG)


def test_confluent_kafka_admin_creates_and_alters_for_the_whole_cluster(cluster):
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.address(3)})
    admin.create_topics([NewTopic("confluent", 3, 3, config={"segment.bytes": "1048576"})])["confluent"].result(
        timeout=30)
    assert everywhere(cluster, "confluent")["segment.bytes"] == ("1048576", TOPIC_CONFIG)
    ops = [ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
           ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE)]
    (future,) = admin.incremental_alter_configs([ConfigResource("topic", "confluent",
                                                                incremental_configs=ops)]).values()
    future.result(timeout=30)
    configs = everywhere(cluster, "confluent")
    assert configs["cleanup.policy"] == ("compact,delete", TOPIC_CONFIG)
    assert configs["segment.bytes"][1] == DEFAULT_CONFIG

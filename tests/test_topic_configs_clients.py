"""Topic configs against a real `logship serve`: kafka-python's and confluent-kafka's admin
clients describe and alter them, they survive a restart and take effect (retention, max message
size, LogAppendTime), and `logship topics config` shows and changes them."""

from __future__ import annotations

import json
import time
import warnings

import pytest

from conftest import wait_until
from test_cli_produce import logship

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic


def _kafka_python_admin(address):
    return KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=10_000)


def _confluent_admin(address):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": address})


def _confluent_configs(admin, topic) -> dict:
    from confluent_kafka.admin import ConfigResource as CR

    (future,) = admin.describe_configs([CR("topic", topic)]).values()
    return future.result(timeout=20)


def test_kafka_python_describes_and_alters_topic_configs(broker):
    admin = _kafka_python_admin(broker.address)
    try:
        result = admin.create_topics([NewTopic("kp", 1, 1, topic_configs={"retention.ms": "3600000"})])
        assert result["topics"][0]["error_code"] == 0
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp")])
        assert described["topic"]["kp"]["retention.ms"]["value"] == "3600000"  # 'modified' only
        assert set(described["topic"]["kp"]) == {"retention.ms"}
        everything = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp")], include_synonyms=True,
                                            config_filter="all")["topic"]["kp"]
        assert everything["cleanup.policy"]["value"] == "delete"
        assert everything["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
        assert everything["retention.ms"]["synonyms"][0]["name"] == "retention.ms"

        done = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp",
                                                   configs={"cleanup.policy": "compact", "segment.bytes": "65536"})])
        assert done == {"topic": {"kp": "OK"}}
        done = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp", configs={"retention.ms": "x"})],
                                   raise_on_unknown=False)
        assert "InvalidConfigurationError" in done["topic"]["kp"] and "retention.ms" in done["topic"]["kp"]
        done = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp", configs={"segment.ms": "1000"})],
                                   incremental=False)  # AlterConfigs: the other overrides are sent along
        assert done == {"topic": {"kp": "OK"}}
        modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp")])["topic"]["kp"]
        assert {k: v["value"] for k, v in modified.items()} == {
            "retention.ms": "3600000", "cleanup.policy": "compact", "segment.bytes": "65536", "segment.ms": "1000"}
        node = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")], config_filter="all")
        assert node["broker"]["0"]["log.retention.ms"]["read_only"] is True
    finally:
        admin.close()


def test_confluent_describe_alter_and_incremental_alter(broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource as CR, ConfigSource, NewTopic

    admin = _confluent_admin(broker.address)
    admin.create_topics([NewTopic("cf", 1, 1, config={"segment.bytes": "1048576"})])["cf"].result(timeout=20)
    configs = _confluent_configs(admin, "cf")
    assert configs["segment.bytes"].value == "1048576"
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    ops = [ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
           ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
           ConfigEntry("retention.ms", "600000", incremental_operation=AlterConfigOpType.SET)]
    (future,) = admin.incremental_alter_configs([CR("topic", "cf", incremental_configs=ops)]).values()
    future.result(timeout=20)
    configs = _confluent_configs(admin, "cf")
    assert configs["cleanup.policy"].value == "compact,delete"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["retention.ms"].value == "600000"

    (future,) = admin.alter_configs([CR("topic", "cf", set_config={"max.message.bytes": "4096"})]).values()
    future.result(timeout=20)
    configs = _confluent_configs(admin, "cf")
    assert {n for n, e in configs.items() if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value} == {
        "max.message.bytes"}  # AlterConfigs replaces the whole set, as Kafka

    bad = [ConfigEntry("retention.ms", "-5", incremental_operation=AlterConfigOpType.SET)]
    (future,) = admin.incremental_alter_configs([CR("topic", "cf", incremental_configs=bad)]).values()
    with pytest.raises(KafkaException) as caught:
        future.result(timeout=20)
    assert caught.value.args[0].code() == 40 and "retention.ms" in caught.value.args[0].str()
    (future,) = admin.describe_configs([CR("topic", "missing")]).values()
    with pytest.raises(KafkaException) as caught:
        future.result(timeout=20)
    assert caught.value.args[0].code() == 3
    (future,) = admin.describe_configs([CR("broker", "0")]).values()
    assert future.result(timeout=20)["log.segment.bytes"].is_read_only


def test_configs_survive_a_restart(start_broker, tmp_path):
    broker = start_broker()
    admin = _confluent_admin(broker.address)
    from confluent_kafka.admin import ConfigResource as CR, NewTopic

    admin.create_topics([NewTopic("kept", 1, 1, config={"retention.ms": "123456"})])["kept"].result(timeout=20)
    (future,) = admin.alter_configs([CR("topic", "kept", set_config={
        "retention.ms": "123456", "message.timestamp.type": "LogAppendTime"})]).values()
    future.result(timeout=20)
    del admin
    broker.stop()
    broker = start_broker()
    admin = _kafka_python_admin(broker.address)
    try:
        modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kept")])["topic"]["kept"]
        assert {k: (v["value"], v["config_source"]) for k, v in modified.items()} == {
            "retention.ms": ("123456", "DYNAMIC_TOPIC_CONFIG"),
            "message.timestamp.type": ("LogAppendTime", "DYNAMIC_TOPIC_CONFIG")}
    finally:
        admin.close()


def _segments(data_dir, topic):
    return sorted(p.name for p in (data_dir / f"{topic}-0").glob("*.log"))


def test_a_retention_change_deletes_old_segments(start_broker, tmp_path):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource as CR, NewTopic

    broker = start_broker("--retention-check-interval", "100ms")
    admin = _confluent_admin(broker.address)
    admin.create_topics([NewTopic("old", 1, 1, config={"segment.bytes": "1024"})])["old"].result(timeout=20)
    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 0})
    day_ago = int(time.time() * 1000) - 24 * 3600 * 1000
    for i in range(20):
        producer.produce("old", b"v%03d" % i + b"x" * 200, timestamp=day_ago)
        producer.flush(10)  # one batch each, so that segments roll
    producer.produce("old", b"fresh")
    assert producer.flush(10) == 0
    assert len(_segments(broker.data_dir, "old")) > 3
    time.sleep(0.5)  # several retention passes: a day old is within the default seven days
    assert len(_segments(broker.data_dir, "old")) > 3

    ops = [ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)]
    (future,) = admin.incremental_alter_configs([CR("topic", "old", incremental_configs=ops)]).values()
    future.result(timeout=20)
    assert wait_until(lambda: len(_segments(broker.data_dir, "old")) == 1, timeout=10), _segments(broker.data_dir, "old")
    out = logship("consume", "old", "-b", broker.address, "-e")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[-1] == b"fresh" and len(lines) <= 5  # the active segment stays
    assert not any(line.startswith(b"v00") for line in lines)


def test_max_message_bytes_per_topic_refuses_a_larger_batch(broker):
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka.admin import NewTopic

    admin = _confluent_admin(broker.address)
    admin.create_topics([NewTopic("small", 1, 1, config={"max.message.bytes": "1000"}),
                         NewTopic("large", 1, 1)])["small"].result(timeout=20)
    errors = {}
    producer = Producer({"bootstrap.servers": broker.address, "linger.ms": 0, "message.send.max.retries": 0})
    for topic in ("small", "large"):
        producer.produce(topic, b"y" * 5000, on_delivery=lambda err, msg: errors.__setitem__(msg.topic(), err))
    producer.flush(20)
    producer.produce("small", b"short", on_delivery=lambda err, msg: errors.__setitem__("short", err))
    producer.flush(20)
    assert errors["small"] is not None and errors["small"].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert errors["large"] is None and errors["short"] is None


def test_log_append_time_stamps_what_consumers_read(broker):
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    admin = _confluent_admin(broker.address)
    admin.create_topics([NewTopic("stamped", 1, 1, config={"message.timestamp.type": "LogAppendTime"}),
                         NewTopic("created", 1, 1)])["stamped"].result(timeout=20)
    producer = Producer({"bootstrap.servers": broker.address, "compression.type": "zstd"})
    before = int(time.time() * 1000)
    for topic in ("stamped", "created"):
        for i in range(3):
            producer.produce(topic, b"m%d" % i, timestamp=1_000)
    assert producer.flush(10) == 0
    after = int(time.time() * 1000)
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": "unused", "enable.auto.commit": False})
    try:
        seen = {}
        for topic in ("stamped", "created"):
            consumer.assign([TopicPartition(topic, 0, 0)])
            got = []
            deadline = time.monotonic() + 20
            while len(got) < 3 and time.monotonic() < deadline:
                got += [m for m in consumer.consume(10, 0.5) if m.error() is None]
            seen[topic] = [m.timestamp() for m in got]
    finally:
        consumer.close()
    assert len(seen["stamped"]) == 3
    assert all(kind == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after for kind, ts in seen["stamped"])
    assert seen["created"] == [(TIMESTAMP_CREATE_TIME, 1_000)] * 3


# ------------------------------------------------------------------ logship topics config

def test_cli_topics_config(broker):
    address = broker.address
    created = logship("topics", "create", "web", "-b", address, "-c", "retention.ms=60000",
                      "--config", "cleanup.policy=compact,delete")
    assert created.returncode == 0, created.stderr
    shown = logship("topics", "config", "web", "-b", address)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.decode().splitlines()[2:]}
    assert rows["retention.ms"] == ["60000", "topic"] and rows["cleanup.policy"] == ["compact,delete", "topic"]
    assert rows["segment.bytes"] == ["1073741824", "default"]

    changed = logship("topics", "config", "web", "-b", address, "retention.ms=1000", "--delete", "cleanup.policy")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.decode().splitlines() == ["cleanup.policy: compact,delete -> delete",
                                                    "retention.ms: 60000 -> 1000"]
    lines = [json.loads(line) for line in logship("topics", "config", "web", "-b", address, "--json").stdout.splitlines()]
    assert {"topic": "web", "name": "retention.ms", "value": "1000", "source": "topic", "read_only": False} in lines

    dry = logship("topics", "config", "web", "-b", address, "segment.bytes=4096", "--dry-run")
    assert dry.returncode == 0 and b"(dry run)" in dry.stdout
    assert b'"segment.bytes", "value": "1073741824"' in logship("topics", "config", "web", "-b", address,
                                                                "--json").stdout


@pytest.mark.parametrize("args,status,words", [
    (["retention.ms=soon"], 2, ["retention.ms", "integer"]),
    (["retention.hours=1"], 2, ["unknown topic config", "retention.hours"]),
    (["retention.ms"], 2, ["KEY=VALUE", "retention.ms"]),
    (["retention.ms=1", "--delete", "retention.ms"], 2, ["retention.ms"]),
])
def test_cli_topics_config_refusals_are_one_line(broker, args, status, words):
    assert logship("topics", "create", "t", "-b", broker.address).returncode == 0
    result = logship("topics", "config", "t", "-b", broker.address, *args)
    assert result.returncode == status
    err = result.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err


def test_cli_topics_config_unknown_topic(broker):
    result = logship("topics", "config", "nope", "-b", broker.address)
    assert result.returncode == 4 and b"nope" in result.stderr
    result = logship("topics", "create", "bad", "-b", broker.address, "-c", "segment.bytes=big")
    assert result.returncode == 2 and b"segment.bytes" in result.stderr
    assert b"bad" not in logship("topics", "list", "-b", broker.address).stdout


def test_aiokafka_describes_and_alters_topic_configs(broker):
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic as AioNewTopic
    from aiokafka.admin.config_resource import ConfigResource as AioResource, ConfigResourceType as AioType

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
        await admin.start()
        try:
            await admin.create_topics([AioNewTopic("aio", 1, 1, topic_configs={"retention.ms": "1000"})])
            await admin.alter_configs([AioResource(AioType.TOPIC, "aio", configs={"retention.ms": "2000"})])
            (response,) = await admin.describe_configs([AioResource(AioType.TOPIC, "aio")], include_synonyms=True)
            return {c[0]: (c[1], c[3]) for c in response.resources[0][4]}
        finally:
            await admin.close()

    configs = asyncio.run(run())
    assert configs["retention.ms"] == ("2000", 1) and configs["cleanup.policy"] == ("delete", 5)


def test_admin_falls_back_to_alter_configs_keeping_other_overrides(broker, monkeypatch):
    from logship.client.admin import Admin
    from logship.errors import InvalidConfigError, UnsupportedVersionError
    from logship.protocol import ApiKey

    with Admin(broker.address) as admin:
        admin.create_topic("fb", configs={"retention.ms": "1000", "segment.bytes": "4096"})
        real_version = admin.cluster.version

        def version(api_key, node_id=None):
            if api_key == ApiKey.INCREMENTAL_ALTER_CONFIGS:
                raise UnsupportedVersionError("not here")
            return real_version(api_key, node_id)

        monkeypatch.setattr(admin.cluster, "version", version)
        admin.alter_configs("fb", set={"segment.ms": "60000"}, delete=["retention.ms"])
        configs = admin.describe_configs("fb")
        assert {n: e.value for n, e in configs.items() if e.source == "topic"} == {
            "segment.bytes": "4096", "segment.ms": "60000"}
        with pytest.raises(InvalidConfigError, match="segment.ms"):
            admin.alter_configs("fb", set={"segment.ms": "0"})

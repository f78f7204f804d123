"""Per-topic configs in the store and the broker's config handlers, without a network:
validation under Kafka's names, the overrides file, LogAppendTime stamping, retention by policy,
and DescribeConfigs / AlterConfigs / IncrementalAlterConfigs / CreateTopics over a real Store."""

from __future__ import annotations

import json
import time

import pytest

from logship import records
from logship.broker.broker import Broker
from logship.broker.config import BrokerConfig
from logship.errors import InvalidConfigError, MessageTooLargeError, UnknownTopicError
from logship.protocol import ApiKey
from logship.storage import LogConfig, Store
from logship.storage import topic_config as tc
from storage_batches import make_batch, read_all

INVALID_CONFIG, UNKNOWN_TOPIC, INVALID_REQUEST = 40, 3, 42


# ------------------------------------------------------------------ names and values

@pytest.mark.parametrize("name,value,field,expected", [
    ("retention.ms", "3600000", "retention_ms", 3_600_000),
    ("retention.ms", "-1", "retention_ms", -1),
    ("retention.bytes", "1048576", "retention_bytes", 1 << 20),
    ("segment.bytes", "1024", "segment_bytes", 1024),
    ("segment.ms", "60000", "segment_ms", 60_000),
    ("max.message.bytes", "2000", "max_batch_bytes", 2000),
    ("cleanup.policy", "compact", "cleanup_policy", "compact"),
    ("cleanup.policy", "delete, compact", "cleanup_policy", "compact,delete"),
    ("message.timestamp.type", "LogAppendTime", "message_timestamp_type", "LogAppendTime"),
    ("delete.retention.ms", "0", "delete_retention_ms", 0),
    ("min.cleanable.dirty.ratio", "0.25", "min_cleanable_dirty_ratio", 0.25),
    ("flush.messages", "1", "flush_messages", 1),
    ("flush.messages", str(tc.LONG_MAX), "flush_messages", None),
    ("flush.ms", "1000", "flush_ms", 1000),
    ("index.interval.bytes", "128", "index_interval_bytes", 128),
    ("segment.index.bytes", "4096", "max_index_bytes", 4096),
    # Kafka's own validators (LogConfig): these are all valid there
    ("flush.ms", "0", "flush_ms", 0),
    ("max.message.bytes", "0", "max_batch_bytes", 0),
    ("segment.index.bytes", "4", "max_index_bytes", 4),
    ("retention.bytes", "-5", "retention_bytes", -5),
])
def test_kafka_names_map_to_log_config_fields(name, value, field, expected):
    assert getattr(tc.apply(LogConfig(), {name: value}), field) == expected


@pytest.mark.parametrize("name,value,words", [
    ("retention.ms", "abc", ["retention.ms", "integer"]),
    ("retention.ms", "-2", ["retention.ms", "-1.."]),
    ("retention.ms", "1.5", ["retention.ms"]),
    ("retention.ms", "1_000", ["retention.ms"]),
    ("retention.ms", "", ["retention.ms"]),
    ("min.cleanable.dirty.ratio", "inf", ["min.cleanable.dirty.ratio"]),
    ("segment.bytes", "3000000000", ["segment.bytes", "2147483647"]),
    ("cleanup.policy", "shred", ["cleanup.policy", "delete, compact"]),
    ("cleanup.policy", "", ["cleanup.policy"]),
    ("message.timestamp.type", "logappendtime", ["message.timestamp.type", "CreateTime", "LogAppendTime"]),
    ("min.cleanable.dirty.ratio", "2", ["min.cleanable.dirty.ratio", "0..1"]),
    ("min.cleanable.dirty.ratio", "nan", ["min.cleanable.dirty.ratio"]),
    ("max.message.bytes", "-1", ["max.message.bytes", "0.."]),
    ("flush.ms", "-1", ["flush.ms"]),
    ("segment.index.bytes", "3", ["segment.index.bytes", "4.."]),
    ("retention.hours", "1", ["unknown topic config", "retention.hours", "retention.ms"]),
])
def test_bad_names_and_values_are_refused_naming_the_key(name, value, words):
    with pytest.raises(InvalidConfigError) as caught:
        tc.apply(LogConfig(), {name: value})
    assert caught.value.code == 40
    for word in words:
        assert word in str(caught.value)


def test_values_of_a_log_config_read_back_as_kafka_writes_them():
    config = LogConfig()
    assert tc.value_of(config, "retention.ms") == "604800000"
    assert tc.value_of(config, "flush.messages") == str(tc.LONG_MAX)
    assert tc.value_of(config, "min.cleanable.dirty.ratio") == "0.5"
    for name in tc.TOPIC_CONFIGS:  # every value the broker shows is one it accepts back
        tc.apply(config, {name: tc.value_of(config, name)})


# ------------------------------------------------------------------ the store

def test_configs_are_kept_durably_and_reloaded(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("a", 2, {"retention.ms": "1000", "cleanup.policy": "compact"})
        store.create_topic("b", 1)
        store.alter_topic_config("b", {"segment.bytes": "4096"})
        assert store.partition("a", 1).config.retention_ms == 1000
        assert store.partition("b", 0).config.segment_bytes == 4096
    doc = json.loads((tmp_path / tc.OVERRIDES_FILE).read_text())
    assert doc == {"version": 0, "topics": {"a": {"cleanup.policy": "compact", "retention.ms": "1000"},
                                            "b": {"segment.bytes": "4096"}}}
    assert not (tmp_path / (tc.OVERRIDES_FILE + ".tmp")).exists()
    with Store(tmp_path, LogConfig(retention_ms=5000)) as store:
        assert store.topic_overrides("a") == {"cleanup.policy": "compact", "retention.ms": "1000"}
        assert store.partition("a", 0).config.retention_ms == 1000
        assert store.partition("a", 0).config.cleanup_policy == "compact"
        assert store.partition("b", 0).config.retention_ms == 5000  # the new default shows through
        store.alter_topic_config("a", {})  # back to the default
        assert store.partition("a", 0).config == store.config
    with Store(tmp_path) as store:
        assert store.topic_overrides("a") == {} and store.topic_overrides("b") == {"segment.bytes": "4096"}


def test_deleting_a_topic_forgets_its_configs(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("gone", 1, {"retention.ms": "1000"})
        store.delete_topic("gone")
        assert store.topic_overrides("gone") == {}
        store.create_topic("gone", 1)
        assert store.partition("gone", 0).config == store.config
    assert "gone" not in (tmp_path / tc.OVERRIDES_FILE).read_text()


def test_a_failed_create_leaves_no_configs_for_a_later_create(tmp_path, monkeypatch):
    """retention.ms=1 from a create that failed must not be inherited by the next create."""
    import errno
    from logship.errors import KafkaStorageError
    with Store(tmp_path) as store:
        real = Store._make_partition_dir

        def failing(self, topic, index, *args, **kwargs):
            if index == 0:  # made last (the highest first)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, topic, index, *args, **kwargs)

        monkeypatch.setattr(Store, "_make_partition_dir", failing)
        with pytest.raises(KafkaStorageError):
            store.create_topic("x", 2, {"retention.ms": "1"})
        monkeypatch.setattr(Store, "_make_partition_dir", real)
        assert "x" not in store.topics() and not (tmp_path / "x-0").exists() and not (tmp_path / "x-1").exists()
        assert store.topic_overrides("x") == {} and store.topic_config("x") == store.config
        store.create_topic("x", 1)
        assert store.partition("x", 0).config.retention_ms == store.config.retention_ms
    with Store(tmp_path) as store:
        assert store.topic_overrides("x") == {} and store.partition("x", 0).config == store.config


def test_a_create_replaces_configs_that_a_failed_delete_could_not_forget(tmp_path, monkeypatch):
    with Store(tmp_path) as store:
        store.create_topic("y", 1, {"retention.ms": "1"})

        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tc, "write_overrides", full)
        store.delete_topic("y")
        monkeypatch.undo()
        store.create_topic("y", 1)
        assert store.topic_overrides("y") == {} and store.partition("y", 0).config == store.config
    assert "retention" not in (tmp_path / tc.OVERRIDES_FILE).read_text()
    with Store(tmp_path) as store:
        assert store.partition("y", 0).config == store.config


def test_configs_of_a_topic_that_is_gone_are_dropped_on_open(tmp_path):
    """A crash between writing the configs and creating the partitions leaves an orphan entry."""
    tc.write_overrides(tmp_path, {"ghost": {"retention.ms": "5"}})
    with Store(tmp_path) as store:
        assert store.topic_overrides("ghost") == {}
        store.create_topic("ghost", 1)
        assert store.partition("ghost", 0).config.retention_ms == LogConfig().retention_ms
    assert "ghost" not in (tmp_path / tc.OVERRIDES_FILE).read_text()


def test_an_unreadable_overrides_file_does_not_stop_the_store(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("t", 1, {"retention.ms": "1000"})
    (tmp_path / tc.OVERRIDES_FILE).write_text("{not json")
    with Store(tmp_path) as store:
        assert store.partition("t", 0).config == store.config
        store.create_topic("u", 1, {"segment.ms": "1000"})  # rewrites the file...
    (kept,) = tmp_path.glob(tc.OVERRIDES_FILE + ".unreadable-*")  # ...but the unreadable one is kept aside
    assert kept.read_text() == "{not json"


def test_refused_configs_change_nothing(tmp_path):
    with Store(tmp_path) as store:
        with pytest.raises(InvalidConfigError):
            store.create_topic("t", 1, {"retention.ms": "soon"})
        assert "t" not in store.topics()
        store.create_topic("t", 1, {"retention.ms": "1000"})
        with pytest.raises(InvalidConfigError):
            store.alter_topic_config("t", {"retention.ms": "2000", "segment.bytes": "1"})
        assert store.topic_overrides("t") == {"retention.ms": "1000"}
        assert store.partition("t", 0).config.retention_ms == 1000
        with pytest.raises(UnknownTopicError):
            store.alter_topic_config("nope", {"retention.ms": "1"})
        store.alter_topic_config("t", {"retention.ms": "7"}, validate_only=True)
        assert store.topic_overrides("t") == {"retention.ms": "1000"}


def test_retention_change_applies_to_a_live_partition(tmp_path):
    now = [1_000_000.0]
    with Store(tmp_path, clock=lambda: now[0]) as store:
        store.create_topic("t", 1, {"segment.bytes": "200"})
        partition = store.partition("t", 0)
        for i in range(5):
            partition.append_batches(make_batch(1, 100, timestamp=int(now[0] * 1000)))
        assert len(partition.segments) == 5
        now[0] += 3600
        assert store.enforce_retention() == 0  # seven days by default
        store.alter_topic_config("t", {"segment.bytes": "200", "retention.ms": "60000"})
        assert store.enforce_retention() == 5  # the active one too, as Kafka: an empty one follows
        assert partition.log_start_offset == 5 == partition.log_end_offset


def test_compact_only_topics_are_left_whole_by_retention(tmp_path):
    now = [1_000_000.0]
    with Store(tmp_path, clock=lambda: now[0]) as store:
        store.create_topic("c", 1, {"segment.bytes": "200", "retention.ms": "1000", "cleanup.policy": "compact"})
        partition = store.partition("c", 0)
        for _ in range(3):
            partition.append_batches(make_batch(1, 100, timestamp=int(now[0] * 1000)))
        now[0] += 3600
        assert store.enforce_retention() == 0
        store.alter_topic_config("c", {"segment.bytes": "200", "retention.ms": "1000",
                                       "cleanup.policy": "compact,delete"})
        assert store.enforce_retention() == 3


def test_max_message_bytes_per_topic(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("small", 1, {"max.message.bytes": "200"})
        store.create_topic("big", 1)
        batch = make_batch(1, 300)
        store.partition("big", 0).append_batches(batch)
        with pytest.raises(MessageTooLargeError, match="limit is 200"):
            store.partition("small", 0).append_batches(batch)
        store.partition("small", 0).append_batches(make_batch(1, 50))


def test_log_append_time_stamps_batches_with_a_valid_crc(tmp_path):
    with Store(tmp_path, clock=lambda: 1_700_000_000.5) as store:
        store.create_topic("lat", 1, {"message.timestamp.type": "LogAppendTime"})
        store.create_topic("ct", 1)
        batch = make_batch(3, 20, timestamp=1_000)
        result = store.partition("lat", 0).append_batches(batch)
        assert result.max_timestamp == 1_700_000_000_500
        store.partition("ct", 0).append_batches(batch)
        data, plain = read_all(store.partition("lat", 0)), read_all(store.partition("ct", 0))
    header = records.parse_header(data)
    assert header.attributes & records.ATTR_LOG_APPEND_TIME
    assert header.max_timestamp == 1_700_000_000_500
    assert records.crc_is_valid(data, 0, header.size)
    assert [r.timestamp for r in records.iter_records(data)] == [1_700_000_000_500] * 3
    plain_header = records.parse_header(plain)
    assert not plain_header.attributes & records.ATTR_LOG_APPEND_TIME and plain_header.max_timestamp == 1_000
    assert [r.timestamp for r in records.iter_records(plain)] == [1_000] * 3


def test_a_corrupt_batch_is_not_given_a_fresh_crc(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("lat", 1, {"message.timestamp.type": "LogAppendTime"})
        batch = bytearray(make_batch(1, 20))
        batch[-1] ^= 0xFF
        with pytest.raises(Exception, match="CRC"):
            store.partition("lat", 0).append_batches(batch)
        assert store.partition("lat", 0).log_end_offset == 0


# ------------------------------------------------------------------ the handlers

@pytest.fixture
def broker(tmp_path):
    store = Store(tmp_path, LogConfig(retention_ms=3_600_000))
    yield Broker(store, BrokerConfig(log=store.config, auto_create_topics=False))
    store.close()


def _describe(broker, name, kind=2, keys=None, version=4, **flags):
    body = {"resources": [{"resource_type": kind, "resource_name": name, "configuration_keys": keys}], **flags}
    (result,) = broker.handle(ApiKey.DESCRIBE_CONFIGS, version, body).body["results"]
    return result


def _incremental(broker, name, *configs, validate_only=False, kind=2):
    body = {"resources": [{"resource_type": kind, "resource_name": name, "configs": [
        {"name": n, "config_operation": op, "value": v} for n, op, v in configs]}], "validate_only": validate_only}
    (result,) = broker.handle(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, body).body["responses"]
    return result


def test_describe_sources_and_synonyms(broker):
    broker.store.create_topic("t", 1, {"segment.bytes": "4096"})
    result = _describe(broker, "t", include_synonyms=True, include_documentation=True)
    assert result["error_code"] == 0
    configs = {c["name"]: c for c in result["configs"]}
    assert set(configs) == set(tc.TOPIC_CONFIGS)
    assert configs["segment.bytes"]["value"] == "4096" and configs["segment.bytes"]["config_source"] == 1
    assert configs["retention.ms"]["config_source"] == 4  # `serve --retention 1h`
    assert [(s["name"], s["value"], s["source"]) for s in configs["retention.ms"]["synonyms"]] == [
        ("log.retention.ms", "3600000", 4), ("log.retention.ms", "604800000", 5)]
    assert configs["cleanup.policy"]["config_source"] == 5 and configs["cleanup.policy"]["config_type"] == 7
    assert configs["retention.ms"]["config_type"] == 5 and configs["retention.ms"]["documentation"]
    only = _describe(broker, "t", keys=["retention.ms", "no.such"])
    assert [c["name"] for c in only["configs"]] == ["retention.ms"] and only["configs"][0]["documentation"] is None
    v0 = _describe(broker, "t", version=0)
    assert {c["name"]: c["is_default"] for c in v0["configs"]}["segment.bytes"] is False


def test_describe_errors(broker):
    assert _describe(broker, "nope")["error_code"] == UNKNOWN_TOPIC
    assert _describe(broker, "x", kind=32)["error_code"] == INVALID_REQUEST
    assert _describe(broker, "7", kind=4)["error_code"] == INVALID_REQUEST
    node = _describe(broker, "0", kind=4)
    assert node["error_code"] == 0 and all(c["read_only"] for c in node["configs"])
    names = {c["name"]: c for c in node["configs"]}
    assert names["log.retention.ms"]["value"] == "3600000" and names["log.retention.ms"]["config_source"] == 4
    assert names["log.segment.bytes"]["config_source"] == 5


def test_incremental_set_delete_append_subtract(broker):
    broker.store.create_topic("t", 1)
    assert _incremental(broker, "t", ("retention.ms", 0, "1000"), ("cleanup.policy", 2, "compact"))["error_code"] == 0
    assert broker.store.topic_overrides("t") == {"retention.ms": "1000", "cleanup.policy": "compact,delete"}
    assert _incremental(broker, "t", ("cleanup.policy", 3, "delete"))["error_code"] == 0
    assert broker.store.partition("t", 0).config.cleanup_policy == "compact"
    refused = _incremental(broker, "t", ("cleanup.policy", 3, "compact"))
    assert refused["error_code"] == INVALID_CONFIG and "cleanup.policy" in refused["error_message"]
    refused = _incremental(broker, "t", ("retention.ms", 2, "5"))
    assert refused["error_code"] == INVALID_CONFIG and "list" in refused["error_message"]
    assert _incremental(broker, "t", ("retention.ms", 9, "5"))["error_code"] == INVALID_REQUEST
    assert _incremental(broker, "t", ("retention.ms", 0, "5"), ("retention.ms", 1, None))["error_code"] == INVALID_REQUEST
    assert _incremental(broker, "t", ("retention.ms", 0, None))["error_code"] == INVALID_REQUEST  # as Kafka
    assert _incremental(broker, "t", ("cleanup.policy", 2, None))["error_code"] == INVALID_REQUEST
    assert _incremental(broker, "t", ("retention.ms", 1, None))["error_code"] == 0
    assert broker.store.topic_overrides("t") == {"cleanup.policy": "compact"}


def test_incremental_is_all_or_nothing_and_validate_only_changes_nothing(broker):
    broker.store.create_topic("t", 1)
    result = _incremental(broker, "t", ("retention.ms", 0, "1000"), ("segment.bytes", 0, "tiny"))
    assert result["error_code"] == INVALID_CONFIG and "segment.bytes" in result["error_message"]
    assert broker.store.topic_overrides("t") == {}
    assert _incremental(broker, "t", ("retention.ms", 0, "1000"), validate_only=True)["error_code"] == 0
    assert broker.store.topic_overrides("t") == {}
    assert _incremental(broker, "nope", ("retention.ms", 0, "1"))["error_code"] == UNKNOWN_TOPIC
    assert _incremental(broker, "__consumer_offsets", ("retention.ms", 0, "1"))["error_code"] == INVALID_CONFIG
    assert _incremental(broker, "0", ("log.retention.ms", 0, "1"), kind=4)["error_code"] == INVALID_CONFIG


def test_alter_configs_replaces_the_whole_set(broker):
    broker.store.create_topic("t", 1, {"retention.ms": "1000", "segment.bytes": "4096"})
    body = {"resources": [{"resource_type": 2, "resource_name": "t", "configs": [
        {"name": "max.message.bytes", "value": "5000"}]}], "validate_only": False}
    (result,) = broker.handle(ApiKey.ALTER_CONFIGS, 2, body).body["responses"]
    assert result["error_code"] == 0 and result["resource_name"] == "t"
    assert broker.store.topic_overrides("t") == {"max.message.bytes": "5000"}
    body["resources"][0]["configs"] = [{"name": "bogus", "value": "1"}]
    (result,) = broker.handle(ApiKey.ALTER_CONFIGS, 0, body).body["responses"]
    assert result["error_code"] == INVALID_CONFIG and "bogus" in result["error_message"]
    assert broker.store.topic_overrides("t") == {"max.message.bytes": "5000"}


def test_create_topics_applies_validates_and_returns_configs(broker):
    def create(name, configs, version=5, validate_only=False):
        body = {"topics": [{"name": name, "num_partitions": 1, "replication_factor": 1, "assignments": [],
                            "configs": [{"name": k, "value": v} for k, v in configs.items()]}],
                "timeout_ms": 1000, "validate_only": validate_only}
        (result,) = broker.handle(ApiKey.CREATE_TOPICS, version, body).body["topics"]
        return result

    result = create("a", {"retention.ms": "1000"})
    assert result["error_code"] == 0
    assert {c["name"]: (c["value"], c["config_source"]) for c in result["configs"]}["retention.ms"] == ("1000", 1)
    assert broker.store.partition("a", 0).config.retention_ms == 1000
    bad = create("b", {"retention.ms": "x"}, version=3)
    assert bad["error_code"] == INVALID_CONFIG and "retention.ms" in bad["error_message"]
    assert "b" not in broker.store.topics()
    assert create("c", {"nope": "1"}, validate_only=True)["error_code"] == INVALID_CONFIG
    assert create("c", {"retention.ms": "5"}, validate_only=True)["error_code"] == 0
    assert "c" not in broker.store.topics()


def test_produce_reports_the_log_append_time(broker):
    broker.store.create_topic("lat", 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    body = {"transactional_id": None, "acks": 1, "timeout_ms": 1000, "topic_data": [
        {"name": "lat", "partition_data": [{"index": 0, "records": bytearray(make_batch(2, 10))}]}]}
    (entry,) = broker.handle(ApiKey.PRODUCE, 7, body).body["responses"][0]["partition_responses"]
    assert entry["error_code"] == 0 and before <= entry["log_append_time_ms"] <= int(time.time() * 1000)


@pytest.mark.parametrize("name", ["retention.ms", "segment.bytes", "min.cleanable.dirty.ratio"])
def test_numbers_of_thousands_of_digits_are_invalid_config_not_a_crash(broker, name):
    # Python refuses int() of over 4300 digits with a ValueError: the handler must answer
    broker.store.create_topic("t", 1)
    huge = "9" * 5000
    body = {"resources": [{"resource_type": 2, "resource_name": "t", "configs": [{"name": name, "value": huge}]}],
            "validate_only": False}
    (result,) = broker.handle(ApiKey.ALTER_CONFIGS, 0, body).body["responses"]
    assert result["error_code"] == INVALID_CONFIG and name in result["error_message"]
    assert len(result["error_message"]) < 500
    assert _incremental(broker, "t", (name, 0, huge))["error_code"] == INVALID_CONFIG
    body = {"topics": [{"name": "u", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                        "configs": [{"name": name, "value": huge}]}], "timeout_ms": 1000, "validate_only": False}
    (created,) = broker.handle(ApiKey.CREATE_TOPICS, 3, body).body["topics"]
    assert created["error_code"] == INVALID_CONFIG and "u" not in broker.store.topics()
    assert broker.store.topic_overrides("t") == {}


def test_flush_ms_zero_syncs_every_append(tmp_path):
    synced = []
    with Store(tmp_path, fdatasync=synced.append) as store:
        store.create_topic("t", 1, {"flush.ms": "0"})
        partition = store.partition("t", 0)
        for n in range(3):
            before = len(synced)
            partition.append_batches(make_batch(1, 10))
            assert len(synced) > before and partition.recovery_point == partition.log_end_offset == n + 1


def test_batches_larger_than_segment_bytes_are_record_list_too_large(broker):
    # Kafka refuses an append larger than segment.bytes (RECORD_LIST_TOO_LARGE) rather than
    # rolling a new segment (two more open files) for every produce
    broker.store.create_topic("small", 1, {"segment.bytes": "200"})
    partition = broker.store.partition("small", 0)

    def produce(data):
        body = {"transactional_id": None, "acks": 1, "timeout_ms": 1000, "topic_data": [
            {"name": "small", "partition_data": [{"index": 0, "records": bytearray(data)}]}]}
        (entry,) = broker.handle(ApiKey.PRODUCE, 7, body).body["responses"][0]["partition_responses"]
        return entry["error_code"]

    big = make_batch(1, 300)
    for _ in range(5):
        assert produce(big) == 18
    assert len(partition.segments) == 1 and partition.log_end_offset == 0
    assert produce(make_batch(1, 50)) == 0
    assert produce(make_batch(1, 50) + make_batch(1, 50) + make_batch(1, 50)) == 18  # the whole append counts
    assert partition.log_end_offset == 1


def test_config_requests_are_bounded_deduplicated_and_never_scan_the_store_per_resource(broker, monkeypatch):
    broker.store.create_topic("t", 1)
    broker.store.create_topic("big", 300)
    scans = []
    real_topics = Store.topics
    monkeypatch.setattr(Store, "topics", lambda self: scans.append(1) or real_topics(self))
    body = {"resources": [{"resource_type": 2, "resource_name": "t", "configuration_keys": None}] * 5000,
            "include_synonyms": True, "include_documentation": True}
    results = broker.handle(ApiKey.DESCRIBE_CONFIGS, 4, body).body["results"]
    assert len(results) == 5000 and results[0]["error_code"] == 0 and len(results[0]["configs"]) > 5
    assert {r["error_code"] for r in results[1:]} == {INVALID_REQUEST}
    assert all(r["configs"] == [] for r in results[1:])
    assert "more than once" in results[1]["error_message"] and "more than 1000" in results[1000]["error_message"]
    assert not results[2]["error_message"] and not results[-1]["error_message"]  # said once: a small response
    unknown = [{"resource_type": 2, "resource_name": f"nope{i}", "configuration_keys": None} for i in range(3000)]
    results = broker.handle(ApiKey.DESCRIBE_CONFIGS, 4, {"resources": unknown}).body["results"]
    assert [r["error_code"] for r in results] == [UNKNOWN_TOPIC] * 1000 + [INVALID_REQUEST] * 2000
    assert scans == []

    writes = []
    real_write = tc.write_overrides
    monkeypatch.setattr(tc, "write_overrides", lambda *a: writes.append(1) or real_write(*a))
    for name in ("a", "b", "c"):
        broker.store.create_topic(name, 1)
    writes.clear()
    body = {"resources": [{"resource_type": 2, "resource_name": name, "configs": [
        {"name": "retention.ms", "value": "1000"}]} for name in ("a", "b", "c", "a", "nope", "t")], "validate_only": False}
    codes = [r["error_code"] for r in broker.handle(ApiKey.ALTER_CONFIGS, 0, body).body["responses"]]
    assert codes == [INVALID_REQUEST, 0, 0, INVALID_REQUEST, UNKNOWN_TOPIC, 0]  # as Kafka: a repeated one is refused
    assert len(writes) == 1  # one write of the overrides file for the whole request
    assert broker.store.topic_overrides("b") == broker.store.topic_overrides("t") == {"retention.ms": "1000"}
    assert broker.store.topic_overrides("a") == {} and broker.store.partition("t", 0).config.retention_ms == 1000
    assert scans == []


def test_null_values_are_refused_as_kafka_does(broker):
    broker.store.create_topic("t", 1, {"retention.ms": "1000"})
    body = {"resources": [{"resource_type": 2, "resource_name": "t", "configs": [
        {"name": "segment.bytes", "value": "4096"}, {"name": "retention.ms", "value": None}]}], "validate_only": False}
    (result,) = broker.handle(ApiKey.ALTER_CONFIGS, 0, body).body["responses"]
    assert result["error_code"] == INVALID_REQUEST and "Null value not supported for : retention.ms" in result["error_message"]
    assert broker.store.topic_overrides("t") == {"retention.ms": "1000"}
    body = {"topics": [{"name": "u", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                        "configs": [{"name": "retention.ms", "value": None}]}], "timeout_ms": 1000, "validate_only": False}
    (created,) = broker.handle(ApiKey.CREATE_TOPICS, 5, body).body["topics"]
    assert created["error_code"] == INVALID_CONFIG and "u" not in broker.store.topics()


def test_opening_on_a_full_disk_with_configs_of_a_deleted_topic(tmp_path, monkeypatch):
    """The configs a delete on a full disk could not forget are dropped on open; if that rewrite
    fails too (still full), the store opens anyway."""
    import errno

    from logship.storage import topic_config as tc

    with Store(tmp_path) as store:
        store.create_topic("gone", 1, {"retention.ms": "1000"})
        store.delete_topic("gone")
    tc.write_overrides(tmp_path, {"gone": {"retention.ms": "1000"}})  # what the failed write left

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tc, "write_overrides", full)
    with Store(tmp_path) as store:
        assert store.topics() == {} and store.topic_overrides("gone") == {}
        store.create_topic("gone", 1)
        assert store.topic_config("gone") == store.config

"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: topic configs over the store's
per-topic overrides (storage/topic_config.py), and this broker's settings, read-only.

A topic config's source is TOPIC_CONFIG when the topic overrides it, STATIC_BROKER_CONFIG when
`logship serve` was given a value for it (its broker synonym, e.g. log.retention.ms, differs
from Kafka's default) and DEFAULT_CONFIG otherwise; synonyms list those in that order, as
Kafka does. AlterConfigs replaces a topic's overrides with the ones given; IncrementalAlterConfigs
edits them (SET, DELETE, and APPEND/SUBTRACT on list configs). Each resource succeeds or fails
as a whole, and those that succeed are written with one write of the overrides file;
`validate_only` checks without changing anything. A request handles at most MAX_RESOURCES
resources, each once (a repeated one is INVALID_REQUEST, the excess too). `__consumer_offsets` belongs to
the broker: it can be described, not altered.

In cluster mode a topic's overrides are the controller's (topic_configs_sync.py): they are read
from this broker's copy of them (`Broker.topic_configs`) and a topic exists when the cluster
metadata has it, so every broker answers alike, replica of the topic or not; `alter_all` is
then the controller's check, its `commit` saving the changes for the whole cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import InvalidConfigError, InvalidRequestError, LogshipError, UnknownTopicError
from ..storage import LogConfig, validate_topic_name
from ..storage import topic_config as tc
from .groups.offsets import OFFSETS_TOPIC
from .reply import Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

TOPIC, BROKER = 2, 4
TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
CONFIG_TYPES = {"boolean": 1, "string": 2, "int": 3, "long": 5, "double": 6, "list": 7}
_KAFKA_DEFAULTS = LogConfig()
#: At most this many resources are handled per request (the rest are INVALID_REQUEST): each
#: costs the event loop its work and the response its configs, so a small request may not
#: ask for thousands.
MAX_RESOURCES = 1000


# ------------------------------------------------------------------ describing

def _entry(name: str, value: str | None, source: int, read_only: bool, kind: str, doc: str,
           synonyms: list[dict], include_documentation: bool) -> dict:
    return {"name": name, "value": value, "read_only": read_only, "config_source": source,
            "is_default": source == DEFAULT_CONFIG, "is_sensitive": False, "synonyms": synonyms,
            "config_type": CONFIG_TYPES[kind], "documentation": doc if include_documentation else None}


def topic_entries(broker: Broker, topic: str, keys: list[str] | None = None,
                  synonyms: bool = False, documentation: bool = False) -> list[dict]:
    """DescribeConfigs entries of every config of `topic` (or of `keys`, unknown ones left out)."""
    overrides = _overrides(broker, topic)
    effective = _effective(broker, topic, overrides)
    default = broker.store.config
    out = []
    for name, d in sorted(tc.TOPIC_CONFIGS.items()):
        if keys is not None and name not in keys:
            continue
        static = getattr(default, d.field) != getattr(_KAFKA_DEFAULTS, d.field)
        chain = []
        if name in overrides or getattr(effective, d.field) != getattr(default, d.field):
            chain.append({"name": name, "value": tc.value_of(effective, name), "source": TOPIC_CONFIG})
        if static:
            chain.append({"name": d.broker_name, "value": tc.value_of(default, name), "source": STATIC_BROKER_CONFIG})
        chain.append({"name": d.broker_name, "value": tc.value_of(_KAFKA_DEFAULTS, name), "source": DEFAULT_CONFIG})
        out.append(_entry(name, tc.value_of(effective, name), chain[0]["source"], topic == OFFSETS_TOPIC,
                          d.type, d.doc, chain if synonyms else [], documentation))
    return out


def created_topic_configs(broker: Broker, topic: str) -> list[dict]:
    """The configs of a topic just created, as CreateTopics v5+ answers them."""
    return [{k: c[k] for k in ("name", "value", "read_only", "config_source", "is_sensitive")}
            for c in topic_entries(broker, topic)]


def _broker_settings(broker: Broker) -> list[tuple[str, object, object, str, str]]:
    """(Kafka broker config name, value, Kafka-default value, type, doc) of this broker."""
    c, log = broker.config, broker.config.log
    host, port = broker.address()
    rows = [("broker.id", c.node_id, 0, "int", "This broker's node id."),
            ("node.id", c.node_id, 0, "int", "This broker's node id."),
            ("logship.version", __version__, None, "string", "The logship release this broker runs."),
            ("listeners", f"PLAINTEXT://{c.listen_host}:{c.listen_port}", None, "list", "The address bound."),
            ("advertised.listeners", f"PLAINTEXT://{host}:{port}", None, "list", "The address clients are told."),
            ("log.dirs", str(broker.store.data_dir), None, "string", "The data directory."),
            ("num.partitions", c.default_partitions, 1, "int", "Partitions of a topic created on first use."),
            ("auto.create.topics.enable", str(c.auto_create_topics).lower(), "true", "boolean",
             "Create topics on first produce or metadata request."),
            ("max.broker.partitions", c.max_broker_partitions, 20000, "int",
             "Partitions this broker may hold in all (KIP-578)."),
            ("socket.request.max.bytes", c.max_frame_bytes, 100 << 20, "int", "Largest request accepted."),
            ("queued.max.request.bytes", c.limits.queued_max_request_bytes, -1, "long",
             "Memory for requests being read or waiting to be handled."),
            ("max.connections", c.limits.max_connections, 2147483647, "int", "Connections at once."),
            ("max.connections.per.ip", c.limits.max_connections_per_ip, 2147483647, "int",
             "Connections at once from one address."),
            ("connections.max.idle.ms", c.limits.connections_max_idle_ms, 600000, "long",
             "Close a connection idle this long."),
            ("fetch.max.bytes", c.limits.fetch_max_bytes, 57671680, "int", "Record bytes in one fetch response."),
            ("log.retention.check.interval.ms", int(c.retention_check_interval_s * 1000), 300000, "long",
             "How often retention runs."),
            ("group.initial.rebalance.delay.ms", c.group_initial_rebalance_delay_ms, 3000, "int",
             "How long a new group waits for more members."),
            ("group.min.session.timeout.ms", c.group_min_session_timeout_ms, 6000, "int",
             "Shortest session timeout a member may ask for."),
            ("group.max.session.timeout.ms", c.group_max_session_timeout_ms, 1800000, "int",
             "Longest session timeout a member may ask for."),
            ("offset.metadata.max.bytes", c.offset_metadata_max_bytes, 4096, "int",
             "Longest metadata of a committed offset."),
            ("producer.id.expiration.ms", c.producer_id_expiration_ms, 86400000, "int",
             "Forget an idempotent producer silent this long.")]
    for name, d in sorted(tc.TOPIC_CONFIGS.items()):
        rows.append((d.broker_name, tc.value_of(log, name), tc.value_of(_KAFKA_DEFAULTS, name), d.type, d.doc))
    return rows


def broker_entries(broker: Broker, keys: list[str] | None = None,
                   synonyms: bool = False, documentation: bool = False) -> list[dict]:
    out = []
    for name, value, default, kind, doc in _broker_settings(broker):
        if keys is not None and name not in keys:
            continue
        value = None if value is None else str(value)
        source = DEFAULT_CONFIG if default is not None and value == str(default) else STATIC_BROKER_CONFIG
        chain = [{"name": name, "value": value, "source": source}] if synonyms else []
        out.append(_entry(name, value, source, True, kind, doc, chain, documentation))
    return out


def _check_broker_name(broker: Broker, name: str) -> None:
    if name not in ("", str(broker.config.node_id)):
        raise InvalidRequestError(f"this broker is node {broker.config.node_id}, not {name!r}")


def _clustered(broker: Broker, topic: str) -> bool:
    """Whether `topic`'s configs are the controller's (cluster mode; not the broker's own offsets topic)."""
    return getattr(broker, "topic_configs", None) is not None and topic != OFFSETS_TOPIC


def _overrides(broker: Broker, topic: str) -> dict[str, str]:
    return broker.topic_configs.overrides(topic) if _clustered(broker, topic) else broker.store.topic_overrides(topic)


def _effective(broker: Broker, topic: str, overrides: dict[str, str]) -> LogConfig:
    if not _clustered(broker, topic):
        return broker.store.topic_config(topic)
    return tc.apply(broker.store.config, overrides) if overrides else broker.store.config


def _check_topic(broker: Broker, name: str) -> None:
    validate_topic_name(name)
    if _clustered(broker, name):
        exists = broker.cluster_metadata.partitions(name) is not None
    else:
        exists = bool(broker.store.partition_count(name))
    if not exists:
        raise UnknownTopicError(f"unknown topic {name!r}")


def _refusals(resources: list[dict], refuse_first_duplicate: bool) -> dict[int, LogshipError]:
    """{index: error} for the resources of a request that are not handled: beyond the first
    MAX_RESOURCES, and those repeated (Kafka refuses a resource named twice in an alter
    request, each time; describing one twice is answered once)."""
    refused: dict[int, LogshipError] = {}
    seen: dict[tuple, int] = {}
    said: set[str] = set()

    def refusal(reason: str) -> LogshipError:  # the reason once: the response stays small
        error = InvalidRequestError("" if reason in said else reason)
        said.add(reason)
        return error

    for i, resource in enumerate(resources):
        if i >= MAX_RESOURCES:
            refused[i] = refusal(f"more than {MAX_RESOURCES} resources in one request")
            continue
        key = (resource["resource_type"], resource["resource_name"])
        if key in seen:
            refused[i] = refusal("a resource appears more than once in the request")
            if refuse_first_duplicate:
                refused[seen[key]] = refused[i]
        else:
            seen[key] = i
    return refused


def describe_configs(broker: Broker, version: int, body: dict) -> Reply:
    synonyms = body.get("include_synonyms", False)
    documentation = body.get("include_documentation", False)
    results = []
    refused = _refusals(body["resources"], refuse_first_duplicate=False)
    for i, resource in enumerate(body["resources"]):
        kind, name, keys = resource["resource_type"], resource["resource_name"], resource["configuration_keys"]
        result = {"error_code": 0, "error_message": None, "resource_type": kind, "resource_name": name, "configs": []}
        try:
            if i in refused:
                raise refused[i]
            if kind == TOPIC:
                _check_topic(broker, name)
                result["configs"] = topic_entries(broker, name, keys, synonyms, documentation)
            elif kind == BROKER:
                _check_broker_name(broker, name)
                result["configs"] = broker_entries(broker, keys, synonyms, documentation)
            else:
                raise InvalidRequestError(f"configs of resource type {kind} are not supported; "
                                          f"only topics ({TOPIC}) and brokers ({BROKER})")
        except LogshipError as exc:
            result.update(error_code=error_code(exc), error_message=str(exc))
        results.append(result)
    return Reply({"throttle_time_ms": 0, "results": results})


# ------------------------------------------------------------------ altering

def _list_value(overrides: dict[str, str], effective: LogConfig, name: str) -> list[str]:
    current = overrides.get(name, tc.value_of(effective, name))
    return [item for item in current.split(",") if item]


def incremental_overrides(current: dict[str, str], effective: LogConfig, configs: list[dict]) -> dict[str, str]:
    """`current` overrides edited by IncrementalAlterConfigs `configs`; InvalidConfigError or
    InvalidRequestError naming the key when one cannot be applied."""
    names = [c["name"] for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequestError(f"config {', '.join(duplicates)} appears more than once in one request")
    updated = dict(current)
    for config in configs:
        name, op, value = config["name"], config["config_operation"], config["value"]
        d = tc.config_def(name)
        if op == SET:
            updated[name] = tc.format_value(name, tc.parse_value(name, value))
        elif op == DELETE:
            updated.pop(name, None)
        elif op in (APPEND, SUBTRACT):
            if d.type != "list":
                raise InvalidConfigError(f"{name} is not a list: APPEND and SUBTRACT apply to list configs "
                                         f"only ({', '.join(n for n, x in tc.TOPIC_CONFIGS.items() if x.type == 'list')})")
            items = _list_value(updated, effective, name)
            given = [v.strip() for v in (value or "").split(",") if v.strip()]
            if op == APPEND:
                items += [v for v in given if v not in items]
            else:
                items = [v for v in items if v not in given]
            if not items:
                raise InvalidConfigError(f"{name} cannot be empty: it needs {d.allowed()}")
            updated[name] = tc.format_value(name, tc.parse_value(name, ",".join(items)))
        else:
            raise InvalidRequestError(f"unknown config operation {op} for {name}: "
                                      f"0 SET, 1 DELETE, 2 APPEND or 3 SUBTRACT")
    return updated


def _alter(broker: Broker, resource: dict, incremental: bool) -> dict[str, str]:
    """The overrides `resource` asks for, checked (nothing written); raises what refuses it."""
    kind, name = resource["resource_type"], resource["resource_name"]
    if kind == BROKER:
        _check_broker_name(broker, name)
        raise InvalidConfigError("the broker's configs are read-only: they are set by `logship serve` options")
    if kind != TOPIC:
        raise InvalidRequestError(f"configs of resource type {kind} are not supported; only topics ({TOPIC})")
    _check_topic(broker, name)
    if name == OFFSETS_TOPIC:
        raise InvalidConfigError(f"the configs of {OFFSETS_TOPIC} belong to the broker and cannot be changed")
    nulls = [c["name"] for c in resource["configs"] if c["value"] is None and c.get("config_operation") != DELETE]
    if nulls:  # as Kafka's ConfigAdminManager, for AlterConfigs and IncrementalAlterConfigs alike
        raise InvalidRequestError(f"Null value not supported for : {', '.join(nulls)}")
    if incremental:
        current = _overrides(broker, name)
        overrides = incremental_overrides(current, _effective(broker, name, current), resource["configs"])
    else:
        overrides = {}
        for config in resource["configs"]:
            if config["name"] in overrides:
                raise InvalidRequestError(f"config {config['name']} appears more than once in one request")
            tc.config_def(config["name"])
            overrides[config["name"]] = config["value"]
    tc.apply(broker.store.config, tc.normalize(overrides))
    return overrides


def alter_all(broker: Broker, body: dict, incremental: bool,
              commit: Callable[[dict[str, dict[str, str]]], None] | None = None) -> Reply:
    """Each resource is checked on its own; those that pass are written together by `commit`
    ({topic: overrides}), by default with one write of the store's overrides file (its failure
    fails them all, KAFKA_STORAGE_ERROR)."""
    responses, changes = [], {}
    refused = _refusals(body["resources"], refuse_first_duplicate=True)
    for i, resource in enumerate(body["resources"]):
        entry = {"error_code": 0, "error_message": None, "resource_type": resource["resource_type"],
                 "resource_name": resource["resource_name"]}
        try:
            if i in refused:
                raise refused[i]
            changes[resource["resource_name"]] = (entry, _alter(broker, resource, incremental))
        except LogshipError as exc:
            entry.update(error_code=error_code(exc), error_message=str(exc))
        responses.append(entry)
    if changes and not body.get("validate_only", False):
        try:
            (commit or broker.store.alter_topic_configs)({name: overrides for name, (_, overrides) in changes.items()})
        except LogshipError as exc:
            for entry, _ in changes.values():
                entry.update(error_code=error_code(exc), error_message=str(exc))
    return Reply({"throttle_time_ms": 0, "responses": responses})


def alter_configs(broker: Broker, version: int, body: dict) -> Reply:
    return alter_all(broker, body, incremental=False)


def incremental_alter_configs(broker: Broker, version: int, body: dict) -> Reply:
    return alter_all(broker, body, incremental=True)


def create_topic_configs(broker: Broker, topic: dict) -> dict[str, str]:
    """The configs of a CreateTopics entry as overrides; InvalidConfigError / InvalidRequestError."""
    configs: dict[str, str] = {}
    for config in topic.get("configs") or []:
        if config["name"] in configs:
            raise InvalidRequestError(f"config {config['name']} appears more than once")
        if config["value"] is None:  # as Kafka's controller (ReplicationControlManager)
            raise InvalidConfigError(f"Null value not supported for topic configs: {config['name']}")
        configs[config["name"]] = config["value"]
    return tc.normalize(configs)


__all__ = ["describe_configs", "alter_configs", "incremental_alter_configs", "topic_entries", "broker_entries",
           "create_topic_configs", "incremental_overrides", "alter_all",
           "created_topic_configs"]

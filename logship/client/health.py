"""Health of a cluster as a monitoring check sees it, over the Kafka protocol only.

`check(cluster)` asks the bootstrap brokers for the metadata, then every broker it names for
its own metadata, its version and its log directory:

* Metadata: partitions led and held per broker; a partition without a leader is *offline*,
  one with fewer in-sync replicas than replicas is *under-replicated*. Each broker's own answer
  counts (a logship broker leaves itself out of the in-sync replicas of a partition whose copy
  it lost, so asking every broker finds those too);
* DescribeConfigs of the BROKER resource: `logship.version` on a logship broker; on Apache
  Kafka (which has no version config) `inter.broker.protocol.version` when it has one;
* DescribeLogDirs: bytes held by its partitions in all its log directories, a directory it
  reports failed (Kafka's JBOD), and from v4 (KIP-827, Kafka 3.3+ and logship) the total and
  usable bytes of the fullest volume; one with less than `min_free` usable is *nearly full*.
  A broker that answers Metadata is up, whatever DescribeLogDirs does.

The verdict (`Health.status`): UNREACHABLE when no broker answers at all; DEGRADED when a
broker named by the metadata does not answer, a partition is offline or under-replicated, or
a volume is nearly full (each reason is listed in `problems`); HEALTHY otherwise. Brokers are
asked one after the other, each request bounded by the cluster's timeout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum

from ..errors import LogshipError, UnsupportedVersionError, explain
from ..protocol import ApiKey
from .cluster import Cluster

__all__ = ["BrokerHealth", "Health", "Verdict", "check"]

_BROKER_RESOURCE = 4
_VERSION_KEYS = ["logship.version", "inter.broker.protocol.version"]


class Verdict(IntEnum):
    """The verdict, numbered as the exit status of `logship status`."""

    HEALTHY = 0
    DEGRADED = 1
    UNREACHABLE = 3


@dataclass
class BrokerHealth:
    node_id: int | None
    address: str
    up: bool = False
    error: str | None = None
    version: str | None = None
    topics: int = 0          # topics with a replica here
    partitions: int = 0      # replicas held here
    leaders: int = 0         # partitions led here
    log_dir: str | None = None
    used_bytes: int | None = None    # what the partitions' files take
    dir_errors: list[str] = field(default_factory=list)  # log directories it reports failed
    total_bytes: int | None = None   # the volume holding the log dir (None: not told)
    usable_bytes: int | None = None

    @property
    def free_fraction(self) -> float | None:
        if not self.total_bytes or self.usable_bytes is None or self.total_bytes < 0 or self.usable_bytes < 0:
            return None
        return self.usable_bytes / self.total_bytes


@dataclass
class Health:
    brokers: list[BrokerHealth] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)            # "topic-partition"
    under_replicated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    status: Verdict = Verdict.HEALTHY

    def to_json(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.name.lower()
        out["exit_status"] = int(self.status)
        return out


def check(cluster: Cluster, min_free: float = 0.1) -> Health:
    """See the module docstring. `min_free`: the usable fraction of a volume below which it is
    nearly full."""
    health = Health()
    try:
        cluster.refresh(None)
    except LogshipError as exc:
        health.status = Verdict.UNREACHABLE
        health.problems.append(str(exc))
        return health
    nodes = cluster.nodes()
    offline: set[tuple[str, int]] = set()
    under: set[tuple[str, int]] = set()
    for node_id, (host, port) in sorted(nodes.items()):
        broker = BrokerHealth(node_id, f"{host}:{port}")
        health.brokers.append(broker)
        try:
            _ask(cluster, broker, offline, under)
        except LogshipError as exc:
            broker.up, broker.error = False, str(exc)
            health.problems.append(f"broker {node_id} at {broker.address} does not answer: {exc}")
    health.offline = [f"{t}-{p}" for t, p in sorted(offline)]
    health.under_replicated = [f"{t}-{p}" for t, p in sorted(under - offline)]
    if health.offline:
        health.problems.append(f"{len(health.offline)} offline partition(s): {_few(health.offline)}")
    if health.under_replicated:
        health.problems.append(f"{len(health.under_replicated)} under-replicated partition(s): "
                               f"{_few(health.under_replicated)}")
    for broker in health.brokers:
        health.problems += [f"broker {broker.node_id}: {error}" for error in broker.dir_errors]
        free = broker.free_fraction
        if free is not None and free < min_free:
            health.problems.append(f"broker {broker.node_id}: {free:.1%} of its volume is free "
                                   f"(below {min_free:.0%})")
    if not any(b.up for b in health.brokers):
        health.status = Verdict.UNREACHABLE
    elif health.problems:
        health.status = Verdict.DEGRADED
    return health


def _ask(cluster: Cluster, broker: BrokerHealth, offline: set, under: set) -> None:
    node = broker.node_id
    meta = cluster.request(ApiKey.METADATA, {"topics": None, "allow_auto_topic_creation": False}, node_id=node)
    broker.up = True
    topics = set()
    for topic in meta["topics"]:
        if topic["error_code"]:
            continue
        for p in topic["partitions"]:
            key = (topic["name"], p["partition_index"])
            replicas = p["replica_nodes"]
            if node in replicas:
                topics.add(topic["name"])
                broker.partitions += 1
            if p["leader_id"] == node:
                broker.leaders += 1
            if p["leader_id"] < 0:
                offline.add(key)
            elif len(p["isr_nodes"]) < len(replicas):
                under.add(key)
    broker.topics = len(topics)
    broker.version = _version(cluster, node)
    try:
        dirs = cluster.request(ApiKey.DESCRIBE_LOG_DIRS, {"topics": None}, node_id=node)
    except UnsupportedVersionError:  # a broker without the API (librdkafka's mock): its disk unknown, not failed
        return
    except LogshipError as exc:  # it answered Metadata: up, its disk unknown
        broker.dir_errors.append(f"cannot describe its log directories: {exc}")
        return
    broker.log_dir = ", ".join(result["log_dir"] for result in dirs["results"]) or None
    broker.used_bytes = sum(p["partition_size"] for result in dirs["results"] for t in result["topics"]
                            for p in t["partitions"])
    for result in dirs["results"]:
        if result["error_code"]:
            broker.dir_errors.append(f"log directory {result['log_dir']}: {_code_text(result['error_code'])}")
        elif result.get("total_bytes", -1) >= 0:  # the fullest volume decides
            fraction = result["usable_bytes"] / result["total_bytes"] if result["total_bytes"] else 1.0
            if broker.free_fraction is None or fraction < broker.free_fraction:
                broker.total_bytes, broker.usable_bytes = result["total_bytes"], result["usable_bytes"]


def _version(cluster: Cluster, node: int) -> str | None:
    try:
        response = cluster.request(ApiKey.DESCRIBE_CONFIGS, {"resources": [
            {"resource_type": _BROKER_RESOURCE, "resource_name": str(node), "configuration_keys": _VERSION_KEYS}],
            "include_synonyms": False, "include_documentation": False}, node_id=node)
    except LogshipError:
        return None
    values = {c["name"]: c["value"] for r in response["results"] if not r["error_code"] for c in r["configs"]}
    if values.get("logship.version"):
        return f"logship {values['logship.version']}"
    if values.get("inter.broker.protocol.version"):
        return f"kafka {values['inter.broker.protocol.version']}"
    return None


def _code_text(code: int) -> str:
    return explain(code)


def _few(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more

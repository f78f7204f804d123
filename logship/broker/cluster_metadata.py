"""The cluster's metadata image: which topics exist and, per partition, its `PartitionState`
(leader, leader epoch, replicas, in-sync replicas, version); the controller's copy and every
broker's, saved in DATA/cluster-metadata so a restarted broker answers Metadata at once.

The controller is the broker with the lowest id in the cluster file (static mode: it never
moves, so the controller epoch is always interbroker.CONTROLLER_EPOCH). It alone decides topic
creation, growth and deletion; `logship promote` and `cluster remove` change partition states directly
on the replicas and tell every broker (an UpdateMetadata "delta").

File format (JSON, replaced atomically and durably):

    {"version": 12, "topics": {"logs": {"0": {"leader": 1, "leader_epoch": 0, "replicas": [1, 2, 3],
                                             "isr": [1, 2, 3], "version": 4, "removed": []}}}}

Invariants: `version` is the controller's sequence number of the image and only grows. A
partition state's version equals its leader epoch: a new partition starts at 0/0 and every
change (leader, in-sync replicas) raises both by one, so `logship promote`, which reads the
current epochs from Metadata, knows the versions too. A partition's state is only ever
replaced by one with a higher `version` (`merge`), except by a whole image from the
controller, which also drops deleted topics (`install`) but still keeps a local state that
is newer than the controller's (a promote that reached this broker first).

UpdateMetadata v5 carries the image: `broker_epoch` holds the image version; `offline_replicas`
the removed replicas; `live_brokers` the brokers of the cluster file. Sent by the controller
(session broker-C, C the controller) it is a whole image; sent by `logship promote` or
`cluster remove` (session admin) it is a delta merged partition by partition (and passed on to
the controller: controller.py); sent with no
topics by another peer broker it asks the controller to send that broker everything again
(a broker that starts up).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..cluster_file import FENCE_FILE_NAME, ClusterFile
from ..errors import ConfigError, LogshipError, error_for_code
from ..storage.checkpoint import write_atomic
from ..storage.partition_state import PartitionState
from .peer_auth import ADMIN
from .reply import ClientInfo, Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["ClusterMetadata", "FILE_NAME", "update_metadata", "states_of_update", "require_peer", "fence_marker"]

log = logging.getLogger("logship.broker")

FILE_NAME = "cluster-metadata"
CLUSTER_AUTHORIZATION_FAILED = 31
INVALID_REQUEST = 42
_PLAINTEXT = 0

Topics = dict[str, dict[int, PartitionState]]


class ClusterMetadata:
    """One broker's copy of the image (the controller's is the reference)."""

    def __init__(self, data_dir: str | os.PathLike, cluster: ClusterFile, node_id: int):
        self.path = Path(data_dir) / FILE_NAME
        self.cluster = cluster
        self.node_id = node_id
        self.controller_id = min(cluster.ids)
        self.version = 0
        self.topics: Topics = {}
        self._load()
        marker = fence_marker(data_dir)
        if marker is not None:
            log.warning("this broker is fenced (%s%s): it will not lead any partition until "
                        "`logship cluster add %d`", FENCE_FILE_NAME, "".join(f", {k} {v}" for k, v in marker.items()),
                        node_id)

    @property
    def is_controller(self) -> bool:
        return self.node_id == self.controller_id

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text)
            self.version = int(doc["version"])
            self.topics = {name: {int(p): PartitionState.from_dict(s) for p, s in parts.items()}
                           for name, parts in doc["topics"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is damaged ({exc}); remove it: the controller sends it again") from None

    def save(self) -> None:
        doc = {"version": self.version,
               "topics": {name: {str(p): json.loads(s.to_json()) for p, s in sorted(parts.items())}
                          for name, parts in sorted(self.topics.items())}}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")) + "\n")

    def partitions(self, topic: str) -> dict[int, PartitionState] | None:
        return self.topics.get(topic)

    def fenced(self) -> set[int]:
        """Brokers `cluster remove` took out: removed from some partition and not added back."""
        return {r for parts in self.topics.values() for s in parts.values() for r in s.removed}

    def merge(self, topics: Topics) -> bool:
        """Take each state that is newer than the one held (topics unknown here are added);
        True if anything changed (then saved)."""
        changed = False
        for name, parts in topics.items():
            held = self.topics.setdefault(name, {})
            for index, state in parts.items():
                if state != held.get(index) and state.supersedes(held.get(index)):
                    held[index] = state
                    changed = True
        if changed:
            self.save()
        return changed

    def install(self, version: int, topics: Topics) -> bool:
        """Take the controller's whole image unless it is older than the one held."""
        if version < self.version:
            return False
        for name, parts in topics.items():
            for index, state in parts.items():
                mine = self.topics.get(name, {}).get(index)
                if mine is not None and mine.version > state.version:
                    parts[index] = mine
        self.version, self.topics = version, topics
        self.save()
        return True

    def publish(self, topics: Topics | None = None, deleted: tuple[str, ...] = ()) -> int:
        """The controller's change: merge `topics`, drop `deleted`, bump the image version; saved."""
        for name in deleted:
            self.topics.pop(name, None)
        for name, parts in (topics or {}).items():
            self.topics.setdefault(name, {}).update(parts)
        self.version += 1
        self.save()
        return self.version

    def live_brokers(self) -> list[tuple[int, str, int]]:
        """(id, host, port) of every broker of the cluster file."""
        return [(spec.id, *spec.advertise) for spec in self.cluster.brokers]


def fence_marker(data_dir: str | os.PathLike) -> dict | None:
    """The fence marker `cluster remove` wrote in DATA/fenced (cluster/fence.py), None if there
    is none. A fenced broker refuses to lead until `cluster add` removes it; a marker that
    cannot be read counts as a fence."""
    path = Path(data_dir) / FENCE_FILE_NAME
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"unreadable": str(exc)}
    return marker if isinstance(marker, dict) else {"unreadable": "not a JSON object"}


def states_of_update(body: dict) -> Topics:
    """The partition states an UpdateMetadata request carries (ConfigError if one is invalid)."""
    return {t["topic_name"]: {p["partition_index"]: PartitionState(
                leader=p["leader"], leader_epoch=p["leader_epoch"], replicas=tuple(p["replicas"]),
                isr=tuple(p["isr"]), version=p["zk_version"], removed=tuple(p["offline_replicas"]))
            for p in t["partition_states"]} for t in body["topic_states"]}


def require_peer(client: ClientInfo) -> str:
    """The principal of an authenticated peer session; CLUSTER_AUTHORIZATION_FAILED otherwise."""
    principal = client.principal
    if principal is None:
        raise error_for_code(CLUSTER_AUTHORIZATION_FAILED,
                             "inter-broker requests need a connection authenticated with the cluster secret")
    return principal


def take_states(broker: Broker, topics: Topics, principal: str) -> None:
    """Merge partition states that did not come from the controller: the controller then tells
    every broker; another broker passes what an operator's tool (promote, cluster remove) gave it
    on to the controller, which may have been down or asleep when the tool ran."""
    metadata = broker.cluster_metadata
    if metadata.merge(topics):
        if metadata.is_controller:
            broker.controller.changed(topics)
        elif principal == ADMIN:
            broker.controller.relay(topics)


def update_metadata(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    """UpdateMetadata v5 (see the module docstring for who sends what)."""
    try:
        principal = require_peer(client)
        metadata = broker.cluster_metadata
        topics = states_of_update(body)
        from_controller = principal == f"broker-{metadata.controller_id}" and not metadata.is_controller
        if from_controller:
            if metadata.install(body["broker_epoch"], topics):
                log.debug("installed the controller's metadata image %d", metadata.version)
        elif topics:
            take_states(broker, topics, principal)
        elif metadata.is_controller and client.session.peer_broker is not None:
            broker.controller.resync(client.session.peer_broker)
    except ConfigError as exc:  # an invalid partition state
        log.warning("refused an UpdateMetadata: %s", exc)
        return Reply({"error_code": INVALID_REQUEST})
    except LogshipError as exc:
        return Reply({"error_code": error_code(exc)})
    return Reply({"error_code": 0})

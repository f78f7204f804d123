"""Topic configs in a cluster: the controller owns them, every broker keeps a copy and every
replica applies them to its log.

As Kafka's controller (ZooKeeper's /config/topics, KRaft's ConfigRecords), the controller
(controller.py) decides a topic's configs: those of CreateTopics, and AlterConfigs or
IncrementalAlterConfigs of topic resources, which every other broker forwards to it
(`ControllerClient.forward`; resources of other types are answered where they arrive, and
both answers merged in the request's order). It checks them as a single broker does
(configs.py, against its own `serve` defaults), saves them in its `TopicConfigImage`, applies
them to its own log, and owes them to every other broker (`PeerSender.owe_configs`): the
sender delivers them, before the partition states and the metadata image owed with them, as
an AlterConfigs v1 request sent on its authenticated link (principal broker-C) - logship's own
use of the API: from the controller it means "this is decided", carries each topic's whole
overrides ({} = back to the defaults) and is never forwarded. A change of configs bumps the
metadata image version (metadata.publish(), as a KRaft ConfigRecord moves the metadata
offset), and the request is answered once every broker that is not fenced has that image
(hence the configs: a PeerSender sends the image taken when its round began, after what was
owed then), or with REQUEST_TIMED_OUT after ALTER_WAIT_MS (the change is made; late brokers
get it when they are reachable), as the controller answers CreateTopics.

What is owed is state, not messages: the newest overrides per topic. A created topic's
configs ({} included) are owed to every broker, so a stale copy left by a deletion a broker
missed never applies; a deleted topic's are owed as {}; a broker that (re)starts is owed
those of every topic (`resend`), with its partition states. A controller that starts gives
its own store the image's configs (`controller_started`); one without an image yet (a cluster
made before configs were carried) first takes its store's overrides as the cluster's. A
broker that receives them saves them in its image (`take`) and, for topics its store holds,
replaces the store's overrides (storage/topics.py) when they differ, so retention, rolling and
compaction follow them on followers as on leaders; a replica created later (LeaderAndIsr) is
created with them (ReplicaManager.apply). DescribeConfigs answers from the image on every broker (configs.py),
the same everywhere apart from each broker's own `serve` defaults, as in Kafka.

File DATA/cluster-topic-configs (JSON, replaced atomically and durably; topics without
overrides left out):

    {"version": 0, "topics": {"orders": {"retention.ms": "3600000"}}}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, InvalidRequestError, KafkaStorageError, LogshipError, RequestTimedOutError
from ..protocol import ApiKey
from ..storage import topic_config as tc
from ..storage.checkpoint import write_atomic
from . import configs
from .reply import ClientInfo, Deferred, Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker
    from .controller import Controller

__all__ = ["TopicConfigImage", "take", "created", "deleted", "resend", "push_body", "CLIENT_HANDLERS"]

log = logging.getLogger("logship.broker")

FILE_NAME = "cluster-topic-configs"
FILE_VERSION = 0
#: How long the controller waits for every broker to have a change before answering REQUEST_TIMED_OUT.
ALTER_WAIT_MS = 15_000
Overrides = dict[str, str]


class TopicConfigImage:
    """One broker's copy of the topic configs the controller decided ({topic: overrides});
    the controller's is the reference."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / FILE_NAME
        self.topics: dict[str, Overrides] = {}
        self.existed = self.path.exists()
        try:
            text = self.path.read_text(encoding="utf-8") if self.existed else None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if text is not None:
            try:
                doc = json.loads(text)
                if doc["version"] != FILE_VERSION:
                    raise ValueError(f"version {doc['version']}, not {FILE_VERSION}")
                self.topics = {str(t): {str(k): str(v) for k, v in o.items()} for t, o in doc["topics"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{self.path} is damaged ({exc}); on a broker other than the controller, remove "
                                  f"it: the controller sends it again") from None

    def overrides(self, topic: str) -> Overrides:
        return dict(self.topics.get(topic, {}))

    def update(self, changes: dict[str, Overrides]) -> bool:
        """Replace the overrides of each topic of `changes` ({} drops it); saved once, durably,
        when anything changed (KafkaStorageError if it cannot be; nothing changed then)."""
        updated = dict(self.topics)
        for topic, overrides in changes.items():
            if overrides:
                updated[topic] = dict(overrides)
            else:
                updated.pop(topic, None)
        if updated == self.topics:
            return False
        doc = {"version": FILE_VERSION, "topics": {t: dict(sorted(o.items())) for t, o in sorted(updated.items())}}
        try:
            write_atomic(self.path, json.dumps(doc, separators=(",", ":")) + "\n")
        except OSError as exc:
            raise KafkaStorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.topics = updated
        return True


# ------------------------------------------------------------------ every broker

def sync_store(broker: Broker, topic: str, overrides: Overrides) -> None:
    """Give the store's copy of `topic` (if it holds the topic) these overrides."""
    store = broker.store
    if store.partition_count(topic) and store.topic_overrides(topic) != overrides:
        store.alter_topic_config(topic, overrides)
        log.info("topic %s: configs now %s", topic,
                 " ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "the defaults")


def take(broker: Broker, body: dict) -> dict:
    """The answer to the controller's AlterConfigs: each topic's overrides saved in the image
    and applied to the store; a resource that cannot be is answered with its error."""
    responses, changes = [], {}
    for resource in body["resources"]:
        entry = {"error_code": 0, "error_message": None, "resource_type": resource["resource_type"],
                 "resource_name": resource["resource_name"]}
        try:
            if resource["resource_type"] != configs.TOPIC:
                raise InvalidRequestError("the controller sends the configs of topics only")
            overrides = tc.normalize({c["name"]: c["value"] for c in resource["configs"]})
            tc.apply(broker.store.config, overrides)
            changes[resource["resource_name"]] = (entry, overrides)
        except LogshipError as exc:
            entry.update(error_code=error_code(exc), error_message=str(exc))
        responses.append(entry)
    try:
        broker.topic_configs.update({topic: overrides for topic, (_, overrides) in changes.items()})
    except LogshipError as exc:
        for entry, _ in changes.values():
            entry.update(error_code=error_code(exc), error_message=str(exc))
        changes = {}
    for topic, (entry, overrides) in changes.items():
        try:
            sync_store(broker, topic, overrides)
        except LogshipError as exc:
            log.error("topic %s: cannot apply its configs here: %s", topic, exc)
            entry.update(error_code=error_code(exc), error_message=str(exc))
    return {"throttle_time_ms": 0, "responses": responses}


def push_body(changes: dict[str, Overrides]) -> dict:
    """The controller's AlterConfigs v1 request carrying `changes` (each topic's whole overrides)."""
    return {"resources": [{"resource_type": configs.TOPIC, "resource_name": topic,
                           "configs": [{"name": k, "value": v} for k, v in sorted(overrides.items())]}
                          for topic, overrides in sorted(changes.items())], "validate_only": False}


# ------------------------------------------------------------------ the controller

def _owe(controller: Controller, changes: dict[str, Overrides], broker_ids=None) -> None:
    for broker_id, sender in controller.senders.items():
        if broker_ids is None or broker_id in broker_ids:
            sender.owe_configs(changes)


def created(controller: Controller, topics: dict[str, Overrides], results=()) -> None:
    """Topics the controller is creating (before it publishes them): their configs saved here
    and owed to every broker, {} included; CreateTopics v5+ `results` of them get their configs."""
    try:
        controller.broker.topic_configs.update(topics)
    except LogshipError as exc:  # the brokers still get them; a restarted controller would not know them
        log.error("cannot save the configs of new topics %s on the controller: %s", ", ".join(sorted(topics)), exc)
    _owe(controller, topics)
    for result in results:
        if result["name"] in topics and not result["error_code"]:
            result["configs"] = configs.created_topic_configs(controller.broker, result["name"])


def deleted(controller: Controller, names: list[str]) -> None:
    """Topics the controller deleted: their configs forgotten here and on every broker."""
    changes = {name: {} for name in names}
    try:
        controller.broker.topic_configs.update(changes)
    except LogshipError as exc:  # harmless: a topic created again under the name gets its own configs
        log.warning("cannot forget the configs of deleted topics: %s", exc)
    _owe(controller, changes)


def resend(controller: Controller, broker_id: int) -> None:
    """`broker_id` (re)started: it is owed the configs of every topic again."""
    image = controller.broker.topic_configs
    _owe(controller, {name: image.overrides(name) for name in controller.metadata.topics}, {broker_id})


def controller_started(controller: Controller) -> None:
    """The controller starts: without a config image yet (a cluster made before topic configs
    were carried) its own store's overrides of the topics it knows become the cluster's; then
    its store is given the image's configs where they differ (a change it could not apply)."""
    image, store = controller.broker.topic_configs, controller.broker.store
    if not image.existed:
        found = {name: store.topic_overrides(name) for name in controller.metadata.topics}
        try:
            image.update({name: overrides for name, overrides in found.items() if overrides})
        except LogshipError as exc:
            log.warning("cannot save the topic configs found in the store: %s", exc)
    for name in controller.metadata.topics:
        try:
            sync_store(controller.broker, name, image.overrides(name))
        except LogshipError as exc:
            log.error("topic %s: cannot apply its configs on the controller's log: %s", name, exc)


def _decide(broker: Broker, body: dict, incremental: bool) -> Reply:
    """The controller's AlterConfigs / IncrementalAlterConfigs (see the module docstring)."""
    controller = broker.controller
    decided: dict[str, Overrides] = {}

    def commit(changes: dict[str, Overrides]) -> None:
        changes = {topic: tc.normalize(overrides) for topic, overrides in changes.items()}
        broker.topic_configs.update(changes)
        decided.update(changes)

    reply = configs.alter_all(broker, body, incremental, commit)
    if not decided:
        return reply
    for topic, overrides in sorted(decided.items()):
        log.info("topic %s: configs set to %s", topic,
                 " ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "the defaults")
        try:
            sync_store(broker, topic, overrides)
        except LogshipError as exc:  # the image has them; the next start applies them (controller_started)
            log.error("topic %s: cannot apply its configs on the controller's log: %s", topic, exc)
    _owe(controller, decided)
    version = controller.metadata.publish()  # the senders, woken by what they owe, send the new image after it
    return _answer_when_delivered(controller, version, reply.body)


def _answer_when_delivered(controller: Controller, version: int, body: dict) -> Reply:
    """`body`, once every broker that is neither fenced nor unreachable has the image `version`
    (so the configs owed before it); REQUEST_TIMED_OUT for the changes made if one of them does
    not within ALTER_WAIT_MS. An unreachable broker gets them when it is back, as in Kafka."""
    deferred, fenced = Deferred(), controller.metadata.fenced()

    async def wait() -> None:
        waiting = {broker_id: sender.synced(version, set(), ALTER_WAIT_MS / 1000, unless_unreachable=True)
                   for broker_id, sender in controller.senders.items() if broker_id not in fenced}
        outcomes = dict(zip(waiting, await asyncio.gather(*waiting.values())))
        late = sorted(b for b, ok in outcomes.items() if not ok and controller.senders[b].last_error is None)
        away = sorted(b for b, ok in outcomes.items() if not ok and b not in late)
        if away:
            log.info("topic configs: broker%s %s not reachable; they get the change when they are back",
                     "s" if len(away) > 1 else "", ", ".join(map(str, away)))
        named = f"broker{'s' if len(late) > 1 else ''} {', '.join(map(str, late))}"
        for entry in body["responses"] if late else ():
            if not entry["error_code"]:
                entry.update(error_code=RequestTimedOutError.code,
                             error_message=f"done, but {named} did not confirm it in time (they get it when they "
                                           f"are reachable)")
        deferred.resolve(body)

    controller._spawn(wait())
    return Reply(None, deferred=deferred)


def _alter(broker: Broker, version: int, body: dict, client: ClientInfo, incremental: bool) -> Reply:
    metadata = broker.cluster_metadata
    if metadata.is_controller:
        return _decide(broker, body, incremental)
    if client.principal == f"broker-{metadata.controller_id}" and not incremental:
        return Reply(take(broker, body))
    topics = [r for r in body["resources"] if r["resource_type"] == configs.TOPIC]
    others = [r for r in body["resources"] if r["resource_type"] != configs.TOPIC]
    local = configs.alter_all(broker, {**body, "resources": others}, incremental) if others else None
    if not topics:
        return local
    api = ApiKey.INCREMENTAL_ALTER_CONFIGS if incremental else ApiKey.ALTER_CONFIGS

    def failed(message: str) -> dict:
        return {"throttle_time_ms": 0, "responses": [
            {"error_code": RequestTimedOutError.code, "error_message": message, "resource_type": r["resource_type"],
             "resource_name": r["resource_name"]} for r in topics]}

    forwarded = broker.controller.forward(api, version, {**body, "resources": topics}, failed)
    if local is None:
        return forwarded
    deferred = Deferred()

    def merge(answer: dict) -> None:  # in the request's order
        mine, theirs = iter(local.body["responses"]), iter(answer["responses"])
        merged = [next(theirs) if r["resource_type"] == configs.TOPIC else next(mine) for r in body["resources"]]
        deferred.resolve({**answer, "responses": merged})

    forwarded.deferred.add_done_callback(merge)
    return Reply(None, deferred=deferred)


def alter_configs(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    return _alter(broker, version, body, client, incremental=False)


def incremental_alter_configs(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    return _alter(broker, version, body, client, incremental=True)


#: In cluster mode these replace configs.py's handlers (broker.py).
CLIENT_HANDLERS = {ApiKey.ALTER_CONFIGS: alter_configs, ApiKey.INCREMENTAL_ALTER_CONFIGS: incremental_alter_configs}

"""The controller (the broker with the lowest id in the cluster file) and every other broker's
way to it.

`Controller` decides: CreateTopics (replication factor from the request, -1 = the cluster
file's default; more than the brokers is INVALID_REPLICATION_FACTOR), CreatePartitions and
DeleteTopics, and auto-creation asked through Metadata. A new partition's state starts at
leader epoch 0 and version 0 (as Kafka's; cluster_metadata.py: version = leader epoch); its
leader is the first replica of the assignment (assignment.py) that is not fenced, fenced
replicas (`cluster remove`) being out of the in-sync replicas (`removed`). Topic configs (of
CreateTopics, AlterConfigs, IncrementalAlterConfigs) are decided here too and carried to every
broker: topic_configs_sync.py. The partition caps (partition_limits.py) hold as on a single
broker, the per-broker one counted on the controller's own store. Each decision is saved in the image first, then applied
here (`Broker.replicas.apply`) and sent to the other brokers by their PeerSender
(LeaderAndIsr to the replicas, UpdateMetadata to all, retried until delivered). The request is answered once every broker that is not fenced
has it, or with REQUEST_TIMED_OUT (the topic exists; late brokers still get it) after the
request's timeout.

A request's timeout_ms is capped at MAX_TIMEOUT_MS (a waiting request holds its connection's
later answers, which Kafka keeps in order).

`ControllerClient` (every other broker) forwards CreateTopics, CreatePartitions, DeleteTopics
and the topic resources of (Incremental)AlterConfigs to the controller over an authenticated
PeerLink and relays the answer, at most MAX_FORWARDED_BYTES of them unanswered at a time (beyond: REQUEST_TIMED_OUT at once); at start
it asks the controller for everything again (an UpdateMetadata without topics), retrying
until the controller answers; partition states an operator's tool gave it (promote, cluster
remove) it passes on to the controller on a link of their own (not queued behind a forward),
retrying until delivered, so a controller that was
asleep (SIGSTOP) or cut off during a promote learns of it when it is back. The controller
also reads the newer states of the others (their Metadata v7) when it starts and when one
says it is back (`_pull`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import (BrokerUnavailableError, FencedLeaderEpochError, InvalidPartitionsError,
                      InvalidReplicaAssignmentError, InvalidReplicationFactorError, LogshipError,
                      TopicAlreadyExistsError, UnknownTopicError)
from ..protocol import ApiKey, encode_request
from ..storage import topic_config, validate_topic_name
from ..storage.partition_state import PartitionState
from .assignment import assign_replicas
from ..protocol.apis.interbroker import update_metadata_body
from .cluster_metadata import ClusterMetadata
from .configs import create_topic_configs
from .partition_limits import PartitionBudget
from .peer_link import PeerLink
from .peer_sender import BACKOFF_S, MAX_BACKOFF_S, PeerSender
from . import topic_configs_sync
from .reply import Deferred, Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["Controller", "ControllerClient", "controller_for"]

log = logging.getLogger("logship.broker")

REQUEST_TIMED_OUT = 7
PULL_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 60_000  # a request's timeout_ms above this is taken as this (it holds a link and a task)
MAX_FORWARDED_BYTES = 8 << 20  # requests forwarded to the controller and not answered yet, per broker
Key = tuple[str, int]


def controller_for(broker: Broker) -> "Controller | ControllerClient":
    metadata = broker.cluster_metadata
    return Controller(broker) if metadata.is_controller else ControllerClient(broker)


def capped_timeout_ms(timeout_ms: int) -> int:
    """A request's timeout_ms as the controller waits: the default for none (<= 0), at most MAX_TIMEOUT_MS."""
    return min(timeout_ms if timeout_ms > 0 else DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)


def initial_state(replicas: tuple[int, ...], fenced: set[int]) -> PartitionState:
    """A new partition's state: the first replica not fenced leads; fenced ones are out of the ISR."""
    isr = tuple(r for r in replicas if r not in fenced)
    return PartitionState(leader=isr[0] if isr else -1, leader_epoch=0, replicas=replicas, isr=isr,
                          version=0, removed=tuple(r for r in replicas if r in fenced))


class Controller:
    def __init__(self, broker: Broker):
        self.broker = broker
        self.metadata: ClusterMetadata = broker.cluster_metadata
        cluster = self.metadata.cluster
        self.senders = {spec.id: PeerSender(spec, self.metadata.node_id, broker.config.secret, cluster.brokers,
                                            self._image)
                        for spec in cluster.brokers if spec.id != self.metadata.node_id}
        self._tasks: set[asyncio.Task] = set()

    def _image(self) -> tuple[int, dict]:
        m = self.metadata
        return m.version, update_metadata_body(m.node_id, m.version, m.topics, m.live_brokers())

    async def run(self) -> None:
        """Deliver what every broker is owed, for ever (cancel to stop)."""
        topic_configs_sync.controller_started(self)
        self._apply_local({(t, p): s for t, parts in self.metadata.topics.items() for p, s in parts.items()})
        for broker_id in self.senders:
            self.resync(broker_id)
        try:
            await asyncio.gather(*(sender.run() for sender in self.senders.values()))
        finally:
            for sender in self.senders.values():
                await sender.close()

    def resync(self, broker_id: int) -> None:
        """`broker_id` (re)started, or this controller did: take the newer states it knows
        (`_pull`), then send it its partition states and the image again."""
        sender = self.senders.get(broker_id)
        if sender is None:
            return

        async def pull_then_resend() -> None:
            await self._pull(broker_id)
            topic_configs_sync.resend(self, broker_id)
            sender.resend_all({(t, p): s for t, parts in self.metadata.topics.items() for p, s in parts.items()
                               if broker_id in s.replicas})

        self._spawn(pull_then_resend())

    async def _pull(self, broker_id: int) -> None:
        """Merge the partition states `broker_id` knows that are newer than this image's: a
        promote or cluster remove that happened while this controller was down or asleep.
        Read from its Metadata v7 (leader epochs; version = epoch); only topics this image
        has (a broker that missed a deletion does not bring the topic back)."""
        spec = self.metadata.cluster.broker(broker_id)
        link = PeerLink(*spec.advertise, principal=f"broker-{self.metadata.node_id}", secret=self.broker.config.secret,
                        client_id=f"logship-controller-{self.metadata.node_id}", connect_timeout=PULL_TIMEOUT_S)
        try:
            await link.connect()
            answer = await link.request(ApiKey.METADATA, 7, {"topics": None, "allow_auto_topic_creation": False},
                                        timeout=PULL_TIMEOUT_S)
        except BrokerUnavailableError:
            return  # down: its hello brings it here again when it is back
        finally:
            await link.close()
        found: dict[str, dict[int, PartitionState]] = {}
        for topic in answer["topics"]:
            held = self.metadata.partitions(topic["name"])
            for p in topic["partitions"] if topic["error_code"] == 0 and held is not None else ():
                mine = held.get(p["partition_index"])
                if mine is not None and p["leader_epoch"] > mine.version:
                    replicas, isr = tuple(p["replica_nodes"]), tuple(p["isr_nodes"])
                    found.setdefault(topic["name"], {})[p["partition_index"]] = PartitionState(
                        leader=p["leader_id"], leader_epoch=p["leader_epoch"], replicas=replicas, isr=isr,
                        version=p["leader_epoch"], removed=tuple(r for r in replicas if r not in isr))
        if found and self.metadata.merge(found):
            log.info("took %d newer partition state(s) from broker %d", sum(map(len, found.values())), broker_id)
            self.changed(found)

    def changed(self, topics: dict[str, dict[int, PartitionState]]) -> None:
        """States changed by promote / cluster remove (already merged): tell everyone."""
        self.metadata.publish()
        self._distribute({(t, p): s for t, parts in topics.items() for p, s in parts.items()})

    def _apply_local(self, states: dict[Key, PartitionState]) -> None:
        node = self.metadata.node_id
        for (topic, index), state in sorted(states.items()):
            if node in state.replicas:
                code = self.broker.replicas.apply(topic, index, state)
                if code:
                    log.log(logging.INFO if code == FencedLeaderEpochError.code else logging.WARNING,
                            "applying the state of %s-%d here failed (error %d)", topic, index, code)

    def _distribute(self, states: dict[Key, PartitionState], stops: dict[Key, tuple[int, ...]] | None = None) -> None:
        """Apply here, hand each sender its share and the new image. `stops` are partitions to
        delete, with their replicas."""
        stops = stops or {}
        self._apply_local(states)
        for (topic, index), replicas in sorted(stops.items()):
            if self.metadata.node_id in replicas:
                self.broker.replicas.stop(topic, index, True)
        for broker_id, sender in self.senders.items():
            share = {k: s for k, s in states.items() if broker_id in s.replicas}
            if share:
                sender.apply_states(share)
            stop_share = {k: True for k, replicas in stops.items() if broker_id in replicas}
            if stop_share:
                sender.stop_replicas(stop_share)
            sender.image_changed()

    def _spawn(self, coroutine) -> None:
        self._tasks = {t for t in self._tasks if not t.done()}
        self._tasks.add(asyncio.get_running_loop().create_task(coroutine))

    def _answer_when_synced(self, body: dict, results: list[dict], keys: set[Key], timeout_ms: int) -> Reply:
        """A deferred reply, resolved when every unfenced broker has the image (and its states)."""
        deferred = Deferred()
        version, fenced = self.metadata.version, self.metadata.fenced()

        async def wait() -> None:
            timeout = capped_timeout_ms(timeout_ms) / 1000
            waiting = {broker_id: sender.synced(version, keys, timeout) for broker_id, sender in self.senders.items()
                       if broker_id not in fenced}
            outcomes = await asyncio.gather(*waiting.values())
            late = sorted(b for b, ok in zip(waiting, outcomes) if not ok)
            if late:
                for result in results:
                    if not result["error_code"]:
                        result["error_code"] = REQUEST_TIMED_OUT
                        result["error_message"] = (f"done, but broker{'s' if len(late) > 1 else ''} "
                                                   f"{', '.join(map(str, late))} did not confirm it in time "
                                                   f"(they get it when they are reachable)")
            deferred.resolve(body)

        self._spawn(wait())
        return Reply(None, deferred=deferred)

    # CreateTopics ----------------------------------------------------------------------------

    def _new_topic(self, topic: dict, budget: PartitionBudget) -> dict[int, PartitionState]:
        name = topic["name"]
        validate_topic_name(name)
        topic_config.apply(self.broker.store.config, create_topic_configs(self.broker, topic))  # INVALID_CONFIG
        if self.metadata.partitions(name) is not None:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        cluster, fenced = self.metadata.cluster, self.metadata.fenced()
        if topic.get("assignments"):
            layout = {}
            for a in topic["assignments"]:
                replicas = tuple(a["broker_ids"])
                if not replicas or len(set(replicas)) != len(replicas) or not set(replicas) <= set(cluster.ids):
                    raise InvalidReplicaAssignmentError(f"assignment {list(replicas)} must name distinct brokers "
                                                        f"of the cluster ({', '.join(map(str, cluster.ids))})")
                layout[a["partition_index"]] = replicas
            if sorted(layout) != list(range(len(layout))):
                raise InvalidReplicaAssignmentError("assignments must cover partitions 0 .. N-1")
        else:
            partitions = topic.get("num_partitions", -1)
            partitions = self.broker.config.default_partitions if partitions == -1 else partitions
            if partitions < 1:
                raise InvalidPartitionsError(f"a topic needs at least one partition, not {partitions}")
            rf = topic.get("replication_factor", -1)
            rf = cluster.replication_factor if rf == -1 else rf
            if rf > len(cluster.ids):
                raise InvalidReplicationFactorError(
                    f"replication factor {rf} is larger than the {len(cluster.ids)} brokers of the cluster")
            layout = assign_replicas(cluster.ids, partitions, rf)
        budget.take(name, 0, len(layout))
        return {p: initial_state(replicas, fenced) for p, replicas in layout.items()}

    def create_topics(self, version: int, body: dict) -> Reply:
        results, created, configs, budget = [], {}, {}, PartitionBudget(self.broker)
        for topic in body["topics"]:
            result = {"name": topic["name"], "error_code": 0, "error_message": None, "num_partitions": -1,
                      "replication_factor": -1, "configs": None}
            try:
                if topic["name"] in created:
                    raise TopicAlreadyExistsError(f"topic {topic['name']!r} appears twice in the request")
                states = self._new_topic(topic, budget)
                result.update(num_partitions=len(states), replication_factor=len(states[0].replicas))
                if not body.get("validate_only", False):
                    created[topic["name"]] = states
                    configs[topic["name"]] = create_topic_configs(self.broker, topic)
            except LogshipError as exc:
                result.update(error_code=error_code(exc), error_message=str(exc))
            results.append(result)
        if not created:
            return Reply({"throttle_time_ms": 0, "topics": results})
        topic_configs_sync.created(self, configs, results if version >= 5 else ())
        return self._publish(created, (), {"throttle_time_ms": 0, "topics": results}, results,
                             body.get("timeout_ms", DEFAULT_TIMEOUT_MS))

    def _publish(self, topics: dict, deleted: tuple[str, ...], body: dict, results: list[dict],
                 timeout_ms: int, stops: dict[Key, tuple[int, ...]] | None = None) -> Reply:
        self.metadata.publish(topics, deleted)
        for name, parts in topics.items():
            log.info("topic %s: %s", name, ", ".join(f"{p} on {list(s.replicas)} led by {s.leader}"
                                                     for p, s in sorted(parts.items())))
        states = {(t, p): s for t, parts in topics.items() for p, s in parts.items()}
        self._distribute(states, stops)
        return self._answer_when_synced(body, results, set(states) | set(stops or {}), timeout_ms)

    def auto_create(self, name: str) -> None:
        """A topic a Metadata request asked for (auto-creation allowed): created with the defaults."""
        try:
            states = self._new_topic({"name": name, "num_partitions": -1, "replication_factor": -1},
                                     PartitionBudget(self.broker))
        except LogshipError as exc:
            log.info("cannot create topic %s on first use: %s", name, exc)
            return
        topic_configs_sync.created(self, {name: {}})
        self.metadata.publish({name: states})
        self._distribute({(name, p): s for p, s in states.items()})

    # CreatePartitions ------------------------------------------------------------------------

    def create_partitions(self, version: int, body: dict) -> Reply:
        results, grown, budget = [], {}, PartitionBudget(self.broker)
        for topic in body["topics"]:
            result = {"name": topic["name"], "error_code": 0, "error_message": None}
            try:
                states = self._grow(topic, budget)
                if not body.get("validate_only", False):
                    grown[topic["name"]] = states
            except LogshipError as exc:
                result.update(error_code=error_code(exc), error_message=str(exc))
            results.append(result)
        if not grown:
            return Reply({"throttle_time_ms": 0, "results": results})
        return self._publish(grown, (), {"throttle_time_ms": 0, "results": results}, results,
                             body.get("timeout_ms", DEFAULT_TIMEOUT_MS))

    def _grow(self, topic: dict, budget: PartitionBudget) -> dict[int, PartitionState]:
        name, total = topic["name"], topic["count"]
        parts = self.metadata.partitions(name)
        if parts is None:
            raise UnknownTopicError("the topic does not exist")
        current = len(parts)
        if total <= current:
            raise InvalidPartitionsError(f"the topic has {current} partition{'s' if current != 1 else ''} and the "
                                         f"count can only grow (asked for {total})")
        ids, fenced = sorted(self.metadata.cluster.ids), self.metadata.fenced()
        rf = len(parts[0].replicas)
        if topic.get("assignments") is not None:
            if len(topic["assignments"]) != total - current:
                raise InvalidReplicaAssignmentError(f"{len(topic['assignments'])} assignments given for "
                                                    f"{total - current} new partitions")
            layout = {current + i: tuple(a["broker_ids"]) for i, a in enumerate(topic["assignments"])}
            for replicas in layout.values():
                if len(replicas) != rf or len(set(replicas)) != rf or not set(replicas) <= set(ids):
                    raise InvalidReplicaAssignmentError(f"assignment {list(replicas)} must name {rf} distinct "
                                                        f"brokers of the cluster")
        else:
            layout = assign_replicas(ids, total - current, rf, first_partition=current,
                                     start=ids.index(parts[0].replicas[0]))
        budget.take(name, current, total)
        return {p: initial_state(replicas, fenced) for p, replicas in layout.items()}

    # DeleteTopics ----------------------------------------------------------------------------

    def delete_topics(self, version: int, body: dict) -> Reply:
        results, deleted, stops = [], [], {}
        for name in body["topic_names"]:
            parts = self.metadata.partitions(name)
            if parts is None:
                results.append({"name": name, "error_code": UnknownTopicError.code})
                continue
            deleted.append(name)
            stops.update({(name, index): state.replicas for index, state in parts.items()})
            results.append({"name": name, "error_code": 0})
        body_out = {"throttle_time_ms": 0, "responses": results}
        if not deleted:
            return Reply(body_out)
        for name in deleted:
            log.info("deleting topic %s", name)
        topic_configs_sync.deleted(self, deleted)
        return self._publish({}, tuple(deleted), body_out, results, body.get("timeout_ms", DEFAULT_TIMEOUT_MS), stops)


class ControllerClient:
    """A broker that is not the controller: forwards topic changes to it and relays answers."""

    FORWARDED = (ApiKey.CREATE_TOPICS, ApiKey.CREATE_PARTITIONS, ApiKey.DELETE_TOPICS, ApiKey.ALTER_CONFIGS,
                 ApiKey.INCREMENTAL_ALTER_CONFIGS)

    def __init__(self, broker: Broker):
        self.broker = broker
        self.metadata: ClusterMetadata = broker.cluster_metadata
        self.spec = self.metadata.cluster.broker(self.metadata.controller_id)
        self._link: PeerLink | None = None
        self._connecting: asyncio.Lock | None = None
        self._asked: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._relaying: dict[str, dict[int, PartitionState]] = {}
        self._relayer: asyncio.Task | None = None
        self._relay_link: PeerLink | None = None  # its own: a forward waiting on the other holds it
        self._forwarded = 0  # bytes of forwarded requests not answered yet

    async def _controller(self) -> PeerLink:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._link is None or self._link.closed:
                self._link = await self._connect()
            return self._link

    async def _connect(self) -> PeerLink:
        host, port = self.spec.advertise
        return await PeerLink(host, port, principal=f"broker-{self.metadata.node_id}", secret=self.broker.config.secret,
                              client_id=f"logship-broker-{self.metadata.node_id}").connect()

    async def run(self) -> None:
        """Ask the controller for everything (retrying until it answers), then hold the link."""
        backoff = BACKOFF_S
        hello = update_metadata_body(self.metadata.node_id, self.metadata.version, {}, [])
        while True:
            try:
                link = await self._controller()
                await link.request(ApiKey.UPDATE_METADATA, 5, hello)
                break
            except BrokerUnavailableError as exc:
                log.debug("the controller is not reachable yet: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        try:
            await asyncio.Event().wait()
        finally:
            for link in (self._link, self._relay_link):
                if link is not None:
                    await link.close()

    def forward(self, api_key: int, version: int, body: dict, failed: Callable[[str], dict]) -> Reply:
        """Send the request to the controller; the reply is its answer, or `failed(message)`
        (REQUEST_TIMED_OUT) when the controller is unreachable or MAX_FORWARDED_BYTES are
        forwarded and not answered yet (one request alone always goes)."""
        size = len(encode_request(api_key, version, 0, None, body))
        if self._forwarded and self._forwarded + size > MAX_FORWARDED_BYTES:
            return Reply(failed(f"{self._forwarded} bytes of requests are waiting for the controller "
                                f"(broker {self.spec.id}) already: try again later"))
        self._forwarded += size
        deferred = Deferred()
        timeout_ms = capped_timeout_ms(body.get("timeout_ms", DEFAULT_TIMEOUT_MS))
        if "timeout_ms" in body:
            body = {**body, "timeout_ms": timeout_ms}

        async def relay() -> None:
            try:
                link = await self._controller()
                deferred.resolve(await link.request(api_key, version, body, timeout=max(timeout_ms, 1000) / 1000 + 5))
            except BrokerUnavailableError as exc:
                deferred.resolve(failed(f"the controller (broker {self.spec.id}) is not reachable: {exc}"))
            finally:
                self._forwarded -= size

        self._spawn(relay())
        return Reply(None, deferred=deferred)

    def relay(self, topics: dict[str, dict[int, PartitionState]]) -> None:
        """States an operator's tool gave this broker (promote, cluster remove): passed on to
        the controller, retrying until it has them (it may be down or asleep right now)."""
        _keep_newer(self._relaying, topics)
        if self._relayer is None or self._relayer.done():
            self._relayer = asyncio.get_running_loop().create_task(self._relay())

    async def _relay(self) -> None:
        backoff = BACKOFF_S
        while self._relaying:
            topics, self._relaying = self._relaying, {}
            try:
                if self._relay_link is None or self._relay_link.closed:
                    self._relay_link = await self._connect()
                await self._relay_link.request(ApiKey.UPDATE_METADATA, 5, update_metadata_body(
                    self.metadata.node_id, -1, topics, []), timeout=PULL_TIMEOUT_S)
                backoff = BACKOFF_S
            except BrokerUnavailableError as exc:
                log.debug("the controller is not reachable to take new partition states: %s", exc)
                _keep_newer(self._relaying, topics)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def auto_create(self, name: str) -> None:
        """Ask the controller to create `name` with the defaults (once at a time per name)."""
        if name in self._asked:
            return
        self._asked.add(name)
        request = {"topics": [{"name": name, "num_partitions": -1, "replication_factor": -1, "assignments": [],
                               "configs": []}], "timeout_ms": DEFAULT_TIMEOUT_MS, "validate_only": False}

        async def ask() -> None:
            try:
                link = await self._controller()
                await link.request(ApiKey.CREATE_TOPICS, 5, request, timeout=DEFAULT_TIMEOUT_MS / 1000 + 5)
            except BrokerUnavailableError as exc:
                log.info("cannot ask the controller to create %s: %s", name, exc)
            finally:
                self._asked.discard(name)

        self._spawn(ask())

    def _spawn(self, coroutine) -> None:
        self._tasks = {t for t in self._tasks if not t.done()}
        self._tasks.add(asyncio.get_running_loop().create_task(coroutine))


def _keep_newer(held: dict[str, dict[int, PartitionState]], topics: dict[str, dict[int, PartitionState]]) -> None:
    for name, parts in topics.items():
        mine = held.setdefault(name, {})
        for index, state in parts.items():
            if state.supersedes(mine.get(index)):
                mine[index] = state

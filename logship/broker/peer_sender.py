"""`PeerSender`: the controller's channel to one other broker, which keeps trying until that
broker has what the controller decided.

What is owed to the broker is state, not a queue of messages: the partitions to stop
(StopReplica v1, with or without deleting them), topic configs (AlterConfigs v1 carrying each
topic's whole overrides, the newest per topic, at most MAX_CONFIG_RESOURCES topics a request:
topic_configs_sync.py), the partition states it must apply (LeaderAndIsr v2, the newest per
partition) and the metadata image (UpdateMetadata v5, the newest only). One task per broker
sends them in that order over a PeerLink (peer_link.py); the image sent is the one taken when
the round began, so an image version delivered means that everything owed before it was
delivered too. It reconnects with backoff (0.1 s doubling to 5 s, cut short when the broker
announces that it is back) when the broker is down or the link fails, so a broker that is
down now gets everything when it is back. A stop for a partition cancels
a state owed for it; a state owed after a stop is sent after it (a topic deleted and created
again). Partition (and topic config) errors in an answer are logged and not retried (the
broker refused that state for good: FENCED_LEADER_EPOCH when it holds a newer one, e.g. from a
promote). `synced(version, keys)` waits until the image
`version` and the states of `keys` are delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..cluster_file import BrokerSpec
from ..errors import BrokerUnavailableError, FencedLeaderEpochError
from ..protocol import ApiKey
from ..storage.partition_state import PartitionState
from ..protocol.apis.interbroker import CONTROLLER_EPOCH, leader_and_isr_body
from .peer_link import PeerLink
from .topic_configs_sync import push_body

__all__ = ["PeerSender", "BACKOFF_S", "MAX_BACKOFF_S"]

log = logging.getLogger("logship.broker")

BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
REQUEST_TIMEOUT_S = 30.0
MAX_CONFIG_RESOURCES = 1000  # configs.MAX_RESOURCES: what one AlterConfigs may carry
Key = tuple[str, int]


class PeerSender:
    """Delivers to broker `spec` what the controller (`sender_id`) owes it. `image()` returns
    (version, UpdateMetadata body) of the current image."""

    def __init__(self, spec: BrokerSpec, sender_id: int, secret: bytes, brokers: tuple[BrokerSpec, ...],
                 image: Callable[[], tuple[int, dict]]):
        self.spec = spec
        self.sender_id = sender_id
        self._secret = secret
        self._brokers = brokers
        self._image = image
        self._stops: dict[Key, bool] = {}
        self._states: dict[Key, PartitionState] = {}
        self._configs: dict[str, dict[str, str]] = {}
        self.image_sent = -1
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._back = asyncio.Event()
        self._link: PeerLink | None = None
        self.last_error: str | None = None

    def stop_replicas(self, keys: dict[Key, bool]) -> None:
        for key, delete in keys.items():
            self._states.pop(key, None)
            self._stops[key] = self._stops.get(key, False) or delete
        self._wake.set()

    def apply_states(self, states: dict[Key, PartitionState]) -> None:
        for key, state in states.items():
            held = self._states.get(key)
            if state.supersedes(held):
                self._states[key] = state
        self._wake.set()

    def owe_configs(self, changes: dict[str, dict[str, str]]) -> None:
        """The whole overrides of each topic of `changes` ({} = the defaults), to be sent."""
        self._configs.update({topic: dict(overrides) for topic, overrides in changes.items()})
        self._wake.set()

    def image_changed(self) -> None:
        self._wake.set()

    def resend_all(self, states: dict[Key, PartitionState]) -> None:
        """The broker restarted: send it its states and the image again, now."""
        self.image_sent = -1
        self.apply_states(states)
        self._back.set()

    async def synced(self, version: int, keys: set[Key], timeout: float, unless_unreachable: bool = False) -> bool:
        """True once the image `version` and the states of `keys` are delivered, within `timeout` s.
        With `unless_unreachable` the wait also ends (False) when a delivery fails (the broker
        is down or cut off: it gets them when it is back)."""
        def delivered() -> bool:
            return self.image_sent >= version and not (keys & (self._states.keys() | self._stops.keys()))

        def done() -> bool:
            return delivered() or (unless_unreachable and self.last_error is not None)
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
                return delivered()
            except asyncio.TimeoutError:
                return False

    async def run(self) -> None:
        backoff = BACKOFF_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._deliver()
                backoff = BACKOFF_S
                self.last_error = None
            except BrokerUnavailableError as exc:
                if self.last_error != str(exc):
                    log.warning("broker %d: %s (retrying)", self.spec.id, exc)
                self.last_error = str(exc)
                if self._link is not None:
                    await self._link.close()
                    self._link = None
                self._back.clear()
                try:  # the backoff ends early when the broker says it is back (resend_all)
                    await asyncio.wait_for(self._back.wait(), backoff)
                    backoff = BACKOFF_S
                except asyncio.TimeoutError:
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._wake.set()
            async with self._changed:
                self._changed.notify_all()

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()

    async def _deliver(self) -> None:
        if self._link is None:
            host, port = self.spec.advertise
            self._link = await PeerLink(host, port, principal=f"broker-{self.sender_id}", secret=self._secret,
                                        client_id=f"logship-controller-{self.sender_id}").connect()
        version, body = self._image()  # the image of now: what is owed now goes before it
        if self._stops:
            stops = dict(self._stops)
            for delete in (True, False):
                chosen = sorted(k for k, d in stops.items() if d is delete)
                if chosen:
                    await self._send(ApiKey.STOP_REPLICA, 1, _stop_body(self.sender_id, chosen, delete))
            for key in stops:
                if self._stops.get(key) == stops[key]:
                    del self._stops[key]
        if self._configs:
            await self._send_configs(dict(self._configs))
        if self._states:
            states = dict(self._states)
            live = [(b.id, *b.advertise) for b in self._brokers]
            answer = await self._send(ApiKey.LEADER_AND_ISR, 2, leader_and_isr_body(self.sender_id, states, live))
            for error in answer.get("partition_errors", []):
                if error["error_code"]:
                    log.log(logging.INFO if error["error_code"] == FencedLeaderEpochError.code else logging.WARNING,
                            "broker %d refused the state of %s-%d (error %d)", self.spec.id,
                            error["topic_name"], error["partition_index"], error["error_code"])
            for key, state in states.items():
                if self._states.get(key) is state:
                    del self._states[key]
        if version > self.image_sent:
            await self._send(ApiKey.UPDATE_METADATA, 5, body)
            self.image_sent = version

    async def _send_configs(self, configs: dict[str, dict[str, str]]) -> None:
        topics = sorted(configs)
        for start in range(0, len(topics), MAX_CONFIG_RESOURCES):
            chunk = {topic: configs[topic] for topic in topics[start:start + MAX_CONFIG_RESOURCES]}
            answer = await self._send(ApiKey.ALTER_CONFIGS, 1, push_body(chunk))
            for response in answer.get("responses", []):
                if response["error_code"]:
                    log.warning("broker %d refused the configs of topic %s (error %d: %s)", self.spec.id,
                                response["resource_name"], response["error_code"], response["error_message"])
            for topic, overrides in chunk.items():
                if self._configs.get(topic) is configs[topic]:
                    del self._configs[topic]

    async def _send(self, api_key: int, version: int, body: dict) -> dict:
        answer = await self._link.request(api_key, version, body, timeout=REQUEST_TIMEOUT_S)
        if answer.get("error_code"):
            raise BrokerUnavailableError(f"broker {self.spec.id} answered {ApiKey(api_key).name} with error "
                                         f"{answer['error_code']}")
        return answer


def _stop_body(sender_id: int, keys: list[Key], delete: bool) -> dict:
    topics: dict[str, list[int]] = {}
    for topic, index in keys:
        topics.setdefault(topic, []).append(index)
    return {"controller_id": sender_id, "controller_epoch": CONTROLLER_EPOCH, "broker_epoch": -1,
            "delete_partitions": delete,
            "topics": [{"name": name, "partition_indexes": indexes} for name, indexes in topics.items()]}

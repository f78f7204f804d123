"""Playing the controller in tests: LeaderAndIsr, StopReplica and replica-view ListOffsets
sent to a LocalCluster's brokers over a PeerLink authenticated as `admin` with the cluster
secret, so the replication tests do not depend on the controller. Each LeaderAndIsr is
followed, on brokers that answer UpdateMetadata, by the same state as an UpdateMetadata delta
(as `logship promote` sends), so that clients' Metadata names the leader set here.

    control = ClusterControl(cluster)
    control.lead("logs", 0, leader=1, epoch=1, replicas=[1, 2, 3])   # every broker told
    control.log_end("logs", 0, broker_id=2)                           # (offset, last epoch)

Each call opens its own links (asyncio.run), so it works from plain test code.
"""

from __future__ import annotations

import asyncio
import itertools

from logship.broker.peer_link import PeerLink
from logship.protocol import ApiKey

from local_cluster import LocalCluster

_versions = itertools.count(1)


class ClusterControl:
    def __init__(self, cluster: LocalCluster, controller_epoch: int = 1):
        self.cluster = cluster
        self.controller_epoch = controller_epoch

    def link(self, broker_id: int, principal: str = "admin", secret: bytes | None = None) -> PeerLink:
        host, port = self.cluster.address(broker_id).rsplit(":", 1)
        return PeerLink(host, int(port), principal=principal, secret=secret or self.cluster.secret,
                        connect_timeout=5)

    def request(self, broker_id: int, api_key: int, version: int, body: dict, timeout: float = 10,
                then: tuple[int, int, dict] | None = None) -> dict:
        """One request on a fresh admin link; with `then` (api_key, version, body), a second
        one on the same link when the first succeeded and the broker answers that API (its
        answer is not returned)."""
        async def ask() -> dict:
            link = self.link(broker_id)
            await link.connect()
            try:
                answer = await link.request(api_key, version, body, timeout=timeout)
                refused = answer.get("error_code") or any(e["error_code"] for e in answer.get("partition_errors", ()))
                if then is not None and not refused:
                    offered = await link.request(ApiKey.API_VERSIONS, 0, {}, timeout=timeout)
                    if any(entry["api_key"] == then[0] for entry in offered["api_keys"]):
                        await link.request(*then, timeout=timeout)
                return answer
            finally:
                await link.close()

        return asyncio.run(ask())

    def leader_and_isr(self, broker_id: int, topic: str, partition: int, *, leader: int, epoch: int,
                       replicas: list[int], isr: list[int] | None = None, version: int | None = None,
                       controller_epoch: int | None = None) -> dict:
        """Send one partition's state to one broker; the response body."""
        isr = list(replicas if isr is None else isr)
        epoch_of_controller = self.controller_epoch if controller_epoch is None else controller_epoch
        state = {"partition_index": partition, "controller_epoch": epoch_of_controller, "leader": leader,
                 "leader_epoch": epoch, "isr": isr, "zk_version": next(_versions) if version is None else version,
                 "replicas": list(replicas), "is_new": False}
        body = {"controller_id": min(self.cluster.ids), "controller_epoch": epoch_of_controller,
                "broker_epoch": -1, "topic_states": [{"topic_name": topic, "partition_states": [state]}],
                "live_leaders": [{"broker_id": leader, "host_name": "127.0.0.1",
                                  "port": self.cluster.ports.get(leader, 0)}]}
        return self.request(broker_id, ApiKey.LEADER_AND_ISR, 2, body,
                            then=(ApiKey.UPDATE_METADATA, 5, self._metadata_delta(topic, state)))

    def _metadata_delta(self, topic: str, state: dict) -> dict:
        """The same state as an UpdateMetadata delta, so that Metadata (where the broker keeps a
        cluster image) names the leader set here; a broker without the API is not sent it."""
        entry = {key: state[key] for key in ("partition_index", "controller_epoch", "leader", "leader_epoch", "isr",
                                             "zk_version", "replicas")}
        entry["offline_replicas"] = [r for r in state["replicas"] if r not in state["isr"]]
        brokers = [{"id": b, "rack": None, "endpoints": [{"host": "127.0.0.1", "port": self.cluster.ports[b],
                                                         "listener": "PLAINTEXT", "security_protocol": 0}]}
                   for b in self.cluster.ids]
        return {"controller_id": min(self.cluster.ids), "controller_epoch": state["controller_epoch"],
                "broker_epoch": -1, "topic_states": [{"topic_name": topic, "partition_states": [entry]}],
                "live_brokers": brokers}

    def lead(self, topic: str, partition: int, *, leader: int, epoch: int, replicas: list[int],
             isr: list[int] | None = None, to: list[int] | None = None) -> None:
        """Tell every replica (or those in `to`; the leader first) the same state;
        AssertionError on any error."""
        version = next(_versions)
        for broker_id in sorted(replicas if to is None else to, key=lambda b: b != leader):
            body = self.leader_and_isr(broker_id, topic, partition, leader=leader, epoch=epoch, replicas=replicas,
                                       isr=isr, version=version)
            codes = [body["error_code"]] + [e["error_code"] for e in body["partition_errors"]]
            assert not any(codes), f"broker {broker_id} refused LeaderAndIsr: {body}"

    def stop_replica(self, broker_id: int, topic: str, partition: int, delete: bool = False) -> dict:
        body = {"controller_id": min(self.cluster.ids), "controller_epoch": self.controller_epoch,
                "broker_epoch": -1, "delete_partitions": delete,
                "topics": [{"name": topic, "partition_indexes": [partition]}]}
        return self.request(broker_id, ApiKey.STOP_REPLICA, 1, body)

    def log_end(self, topic: str, partition: int, broker_id: int) -> tuple[int, int]:
        """(log end offset, last batch's leader epoch) of one replica (ListOffsets replica_id -2)."""
        body = {"replica_id": -2, "isolation_level": 0, "topics": [
            {"name": topic, "partitions": [{"partition_index": partition, "current_leader_epoch": -1,
                                            "timestamp": -1}]}]}
        answer = self.request(broker_id, ApiKey.LIST_OFFSETS, 4, body)["topics"][0]["partitions"][0]
        assert answer["error_code"] == 0, answer
        return answer["offset"], answer["leader_epoch"]

"""A connection that dies with responses still queued gives back every unsent byte it counted
toward the broker-wide bound (`Admission.queued_response_bytes`) and leaves no task running:
an in-process Server, a raw socket reset (RST) while a long poll holds the queue."""

from __future__ import annotations

import asyncio
import socket
import struct

from logship.broker.broker import Broker
from logship.broker.config import BrokerConfig
from logship.broker.server import Server
from logship.protocol import ApiKey, framing
from logship.storage import Store

FETCH = {"replica_id": -1, "max_wait_ms": 5000, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
         "session_id": 0, "session_epoch": -1,
         "topics": [{"topic": "t", "partitions": [{"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
                                                    "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}],
         "forgotten_topics_data": [], "rack_id": ""}
JOIN = {"group_id": "g", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
        "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]}


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _held_joins() -> list:
    return [t for t in asyncio.all_tasks() if not t.done() and "_await_deferred" in repr(t.get_coro())]


def test_a_reset_connection_gives_back_its_queued_response_bytes_and_cancels_held_tasks(tmp_path):
    async def main():
        store = Store(tmp_path / "data")
        store.create_topic("t", 1)
        server = Server(Broker(store, BrokerConfig(listen_host="127.0.0.1", listen_port=0)))
        host, port = await server.start()
        try:
            for round in range(3):
                sock = socket.create_connection((host, port))
                sock.sendall(framing.encode_request(ApiKey.FETCH, 10, 1, "t", FETCH))  # long poll, at the head
                for i in range(20):  # queued behind it
                    sock.sendall(framing.encode_request(ApiKey.API_VERSIONS, 0, 100 + i, "t", {}))
                sock.sendall(framing.encode_request(ApiKey.JOIN_GROUP, 1, 200, "t", JOIN))  # held: a new group
                await _until(lambda: server.admission.queued_response_bytes > 0 and _held_joins())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # RST with the responses unsent
                await _until(lambda: len(server.admission) == 0 and not server._connections)
                assert server.admission.queued_response_bytes == 0, f"round {round}"
                await _until(lambda: not _held_joins(), timeout=1.0)
        finally:
            await server.close(1)
            store.close()

    asyncio.run(main())

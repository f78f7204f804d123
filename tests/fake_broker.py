"""A loopback server speaking just enough Kafka for client-side tests, scripted by each test.

`ScriptedServer` listens on 127.0.0.1 (port 0) and serves each connection on its own thread.
It answers ApiVersions (advertising set N) and Metadata (the `topics` it was given, every
partition led by itself, node 1) on its own, and hands every other request to
`answer_other(request) -> response frame | None`. A test that needs more control per
connection (holding answers back, say) overrides `serve(conn)` and reads `incoming(conn)`.
"""

from __future__ import annotations

import socket
import struct
import threading

from logship.protocol import ADVERTISED, ApiKey, Request, api_versions_entries, decode_request, encode_response


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    """`n` bytes from `conn`; EOFError if it closes first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class ScriptedServer:
    def __init__(self, topics: dict[str, int]):
        self.topics = topics
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.metadata_requests = 0
        self.producer_ids = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_and_close, args=(conn,), daemon=True).start()

    def _serve_and_close(self, conn: socket.socket) -> None:
        with conn:
            self.serve(conn)

    def incoming(self, conn: socket.socket):
        """The decoded requests arriving on `conn`, until it closes."""
        while True:
            try:
                size = struct.unpack(">i", recv_exactly(conn, 4))[0]
                yield decode_request(recv_exactly(conn, size))
            except (EOFError, OSError):
                return

    def serve(self, conn: socket.socket) -> None:
        for request in self.incoming(conn):
            reply = self.answer(request)
            if reply is not None:
                conn.sendall(reply)

    def answer(self, request: Request) -> bytes | None:
        key, version, cid = request.api_key, request.api_version, request.correlation_id
        if key == ApiKey.API_VERSIONS:
            return encode_response(key, version, cid, {"error_code": 0, "api_keys": api_versions_entries(ADVERTISED),
                                                       "throttle_time_ms": 0})
        if key == ApiKey.METADATA:
            self.metadata_requests += 1
            asked = request.body["topics"]
            names = [t["name"] for t in asked] if asked is not None else list(self.topics)
            return encode_response(key, version, cid, {
                "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": self.port, "rack": None}],
                "cluster_id": "fake", "controller_id": 1,
                "topics": [{"error_code": 0, "name": name, "is_internal": False, "partitions": [
                    {"error_code": 0, "partition_index": p, "leader_id": 1, "replica_nodes": [1], "isr_nodes": [1],
                     "offline_replicas": []} for p in range(self.topics[name])]}
                    for name in names if name in self.topics]})
        if key == ApiKey.INIT_PRODUCER_ID:  # an idempotent producer's first request
            self.producer_ids += 1
            return encode_response(key, version, cid, {"throttle_time_ms": 0, "error_code": 0,
                                                       "producer_id": 1000 + self.producer_ids, "producer_epoch": 0})
        return self.answer_other(request)

    def answer_other(self, request: Request) -> bytes | None:
        raise AssertionError(f"unexpected request {request.api_key!r}")

    def close(self) -> None:
        self.sock.close()

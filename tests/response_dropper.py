"""A TCP proxy that loses responses, never requests: the client-side failure idempotence exists for.

    proxy = ResponseDropper(drop=0.02, seed=1)        # listening on 127.0.0.1, `proxy.port`
    broker = start_broker("--advertise", proxy.address)  # clients come back through the proxy
    proxy.upstream = ("127.0.0.1", broker_port)
    ...
    proxy.close()

Every request reaches the broker whole. Each response frame (4-byte length + body) is passed on,
or, with probability `drop`, swallowed: the proxy then closes both sides of that connection at
once, so the client sees its request unanswered and sends it again on a new connection. The
broker must be started advertising the proxy's address, so that clients that follow Metadata
(librdkafka, kafka-python) keep going through it. `dropped` counts the responses lost.
"""

from __future__ import annotations

import random
import socket
import threading

__all__ = ["ResponseDropper"]


class ResponseDropper:
    def __init__(self, drop: float, seed: int = 0):
        self.drop = drop
        self.upstream: tuple[str, int] | None = None
        self.dropped = 0
        self.connections = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._closed = False
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.upstream is None:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self.connections += 1
                self._sockets.update((client, server))
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while chunk := client.recv(1 << 16):
                server.sendall(chunk)
        except OSError:
            pass
        self._shut(client, server)

    def _responses(self, server: socket.socket, client: socket.socket) -> None:
        buf = b""
        try:
            while chunk := server.recv(1 << 16):
                buf += chunk
                while len(buf) >= 4:
                    size = int.from_bytes(buf[:4], "big") + 4
                    if len(buf) < size:
                        break
                    frame, buf = buf[:size], buf[size:]
                    with self._lock:
                        lose = self._random.random() < self.drop
                        self.dropped += lose
                    if lose:
                        self._shut(client, server)
                        return
                    client.sendall(frame)
        except OSError:
            pass
        self._shut(client, server)

    def _shut(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        self._shut(*sockets)

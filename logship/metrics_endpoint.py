"""The `/metrics` endpoint of `serve --metrics` and `agent --metrics`: Prometheus' text format
from a prometheus_client registry, over HTTP on its own threads.

Bounded like the Kafka listener: at most MAX_SCRAPES requests are served at once (a further
connection is closed at once), each connection is given up after TIMEOUT_S of silence, and a
request is answered from the registry as it is then (nothing is kept per client). Any path
gets the metrics, as prometheus_client's own server does.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from .errors import LogshipError

__all__ = ["MetricsEndpoint", "MetricsBindError"]


class MetricsBindError(LogshipError):
    """The metrics address cannot be listened on (in use, not this host's...)."""

MAX_SCRAPES = 8
TIMEOUT_S = 10.0


class _Quiet(WSGIRequestHandler):
    timeout = TIMEOUT_S

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _Bounded(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    slots = threading.BoundedSemaphore(MAX_SCRAPES)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class MetricsEndpoint:
    """Serves `registry` at http://HOST:PORT/metrics until close(); port 0 picks a free one."""

    def __init__(self, registry, host: str, port: int):
        server_class = type("_Server", (_Bounded,), {"slots": threading.BoundedSemaphore(MAX_SCRAPES)})
        if ":" in host:
            import socket

            server_class.address_family = socket.AF_INET6
        try:
            self._server = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=_Quiet)
        except OSError as exc:
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise MetricsBindError(f"cannot serve metrics on {shown}: {(exc.strerror or str(exc)).lower()}") from None
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="logship-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

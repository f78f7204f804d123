"""The asyncio shell around `Broker`: frames in, responses out, in request order.

Each connection has a reader loop and a writer task joined by a bounded queue, so requests
are pipelined (a produce waiting for its fdatasync does not stop the next one from being
read and appended) while responses leave in the order their requests came. A queue entry
is the parts of a ready response, a `_FetchTurn` (a long-polling fetch), a `DurableTurn`
(a produce or offset commit waiting for durability: futures, no task; durability.py), or a
task that will produce them (a JoinGroup or SyncGroup held by the group coordinator until
its phase ends). Responses ready one after another leave in one transport write. Parts are
bytes or `FileSlice`s of segment files; large slices go out with sendfile. Frames are
received by connection.py, each into its own bytearray (several in one read when they are
there). A request is handled in its connection's turn (request_turns.py: clients share the
loop's time fairly, however many connections each has; the controller's requests take no
turn). A malformed frame closes its own connection, never the broker; a frame larger than
the limit is refused on its length prefix, before allocation. What a client may make the
broker spend is bounded as limits.py describes: `Admission` books connections (caps, idle,
late frames, the request memory pool); a connection stops being read while its unsent
responses are over their bound, writes wait for the client (and give up after
write.timeout.ms), and a fetch is planned only when its turn to be written comes, so each
connection holds the descriptors of one response at most. When a connection ends with
responses still queued, their bytes are given back to the broker-wide bound and their tasks
cancelled. Whatever ends a connection is one log line, rate-limited per kind and address,
never a traceback.
The group coordinator's deadlines (join and sync phases, sessions) run on one loop timer,
re-armed whenever the coordinator asks for an earlier wake-up.

Shutdown (`close`) drains: the listener closes, every connection stops reading (the frames
already received are still handled), long-polling fetches answer at once with what they have,
held JoinGroup and SyncGroup answer NOT_COORDINATOR, produces waiting for their fdatasync get
it; each connection closes once its last response is written. Whatever is still unanswered
when the deadline passes is cut (its connection closed), never left hanging.
"""

from __future__ import annotations

import asyncio
import time
import logging
import socket

from ..errors import NotCoordinatorError, ProtocolError
from ..protocol import ApiKey, framing
from .broker import Broker
from .reply import ClientInfo, Deferred, Session
from .admission import Admission
from .connection import Connection, Outgoing, WriteStalledError
from .durability import DurableTurn, DurableWaits
from .fetch import FetchPlan, FetchWait
from .lingering_close import close_gently
from .write_parts import write_parts
from .request_turns import KEY_MAX_BYTES, TURN_S, RequestTurns
from .maintenance import FailureLog, maintain

log = logging.getLogger("logship.broker")

#: The controller's requests are handled at once, never after other clients' turns (Kafka's
#: control plane, KIP-291): a deposed leader learns it follows before it counts any more fetches.
CONTROL_PLANE = frozenset((ApiKey.LEADER_AND_ISR, ApiKey.STOP_REPLICA, ApiKey.UPDATE_METADATA))
MAX_IN_FLIGHT = 64  # per connection: decoded requests waiting for their response to be written
SWEEP_INTERVAL_S = 0.25
FETCH_ENTRY_WEIGHT = 1024  # bytes a partition of a decoded fetch and its response entry take, about
LINGER_S = 2.0  # while stopping: longest wait for a client to close its side (lingering_close.py)


class Server:
    """Serves one `Broker` on a TCP listener until `close()`."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.admission = Admission(broker.config.limits)
        self.turns = RequestTurns()
        self._fixed_responses: dict = {}  # framing.encode_fixed_response's cache
        self._server: asyncio.AbstractServer | None = None
        self._waiters: dict[tuple[str, int], set[asyncio.Future]] = {}
        self._connections: set[asyncio.Task] = set()
        self._durable = DurableWaits(broker.metrics.synced if broker.metrics is not None else None)
        self._group_timer: asyncio.TimerHandle | None = None
        self._group_timer_at = 0.0
        self._open: set[Connection] = set()  # for close(): what to stop reading
        self._stopping = self._cutting = False
        self._linger_s = LINGER_S
        self._group_failures = FailureLog("group coordinator deadlines", "the next deadlines are still kept")
        broker.on_append = self._wake_fetches
        broker.groups.on_wakeup = self._wake_groups_by

    async def start(self) -> tuple[str, int]:
        """Bind and listen; returns the bound (host, port)."""
        config = self.broker.config
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(config.max_frame_bytes, self.admission, self._connected),
            config.listen_host, config.listen_port, reuse_address=True, backlog=1024)
        host, port = self._server.sockets[0].getsockname()[:2]
        config.listen_port = port
        loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        self.broker.replicas.start()
        return host, port

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting and reading, answer every request already read, close: see the
        module docstring. Connections not done within `timeout` seconds are cut."""
        self._stopping = True
        self._linger_s = min(LINGER_S, timeout / 2)
        if self._server is not None:
            self._server.close()
        for conn in list(self._open):
            conn.eof_received()  # reading stops as at the end of the stream; what was read is answered
        for waiters in list(self._waiters.values()):
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        self.broker.groups.release_held(NotCoordinatorError.code)
        await self.broker.replicas.close()  # fetchers stop; acks=all waits answer NOT_LEADER_OR_FOLLOWER
        if self._connections:
            try:
                _, late = await asyncio.wait(list(self._connections), timeout=timeout)
            except asyncio.CancelledError:  # stop at once (a second signal)
                await self._cut(set(self._connections))
                raise
            if late:
                log.warning("shutdown: cutting %d connection(s) not done within %g s (responses not yet "
                            "written, or not read by the client)", len(late), timeout)
                await self._cut(late)
        if self._group_timer is not None:
            self._group_timer.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def _sweep(self) -> None:
        """Every SWEEP_INTERVAL_S while listening: idle and late connections, the request pool,
        due log summaries."""
        if self._server is None or not self._server.is_serving():
            return
        try:
            self.admission.sweep()
        finally:
            asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._sweep)

    async def _cut(self, tasks: set[asyncio.Task]) -> None:
        """Close these connections now, whatever they still had to send."""
        self._cutting = True
        for task in tasks:  # first: aborting a transport in the middle of a sendfile upsets asyncio
            task.cancel()
        await asyncio.wait(tasks, timeout=1)
        for conn in list(self._open):
            conn.transport.abort()

    def _wake_fetches(self, topic: str, partition: int) -> None:
        for future in self._waiters.pop((topic, partition), ()):
            if not future.done():
                future.set_result(None)

    def _wake_groups_by(self, deadline: float) -> None:
        """Make sure the coordinator ticks by `deadline` (its clock: time.monotonic, as the loop's)."""
        if self._group_timer is not None:
            if self._group_timer_at <= deadline:
                return
            self._group_timer.cancel()
        groups = self.broker.groups
        self._group_timer_at = deadline
        self._group_timer = asyncio.get_running_loop().call_later(max(0.0, deadline - groups.clock()),
                                                                  self._tick_groups)

    def _tick_groups(self) -> None:
        self._group_timer = None
        groups = self.broker.groups
        try:
            groups.tick()
            self._group_failures.succeeded()
        except Exception as exc:  # noqa: BLE001 - the deadlines after it must still be kept
            self._group_failures.failed(exc, groups.clock())
        finally:
            deadline = groups.next_deadline()
            if deadline is not None:
                self._wake_groups_by(deadline)

    def _connected(self, conn: Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        self._open.add(conn)
        task.add_done_callback(lambda _: self._open.discard(conn))
        if self._stopping:
            conn.eof_received()

    async def _serve(self, conn: Connection) -> None:
        """Read, handle and queue requests until the stream ends; every way out of here closes
        this connection only, with at most one log line (rate-limited), never a traceback."""
        host = conn.host
        session = Session()
        queue: asyncio.Queue = asyncio.Queue(MAX_IN_FLIGHT)
        sender = asyncio.create_task(self._send_responses(queue, conn))
        sender.add_done_callback(lambda task: task.cancelled() or task.exception() is None or conn.abort(None))
        turns, clock, held, began = self.turns, self.turns.clock, False, 0.0

        def end_turn() -> None:  # what the turn cost: handling, splitting, the reads since the last
            nonlocal held
            turns.done(conn.client_key, clock() - began + conn.take_read_seconds())
            turns.release()
            held = False

        try:
            while not sender.done():
                if held and not (conn.frame_ready() and clock() - began < TURN_S
                                 and not conn.over_response_bound()):
                    end_turn()  # before anything that may wait
                await conn.room_for_responses()
                frame = await conn.next_frame()
                if frame is None:
                    break
                conn.client_key = (host, framing.request_client_key(frame)[:KEY_MAX_BYTES])
                if not held and int.from_bytes(frame[:2], "big") not in CONTROL_PLANE:
                    granted = turns.take(conn.client_key)
                    if granted is not None:
                        try:
                            await granted
                        except asyncio.CancelledError:
                            turns.abandon(granted)
                            raise
                    held, began = True, clock()
                size = len(frame)
                try:
                    response = self._respond(frame, host, session)
                finally:
                    del frame
                    conn.handled(size, answered=False)
                if response is None:
                    conn.answered()
                    continue
                weight = _weight(response)
                conn.queue_response_bytes(weight)
                if queue.full() and held:
                    end_turn()
                if not await _put(queue, (response, weight), sender):
                    _drop(response)  # its bytes are given back below
                    break
        except asyncio.CancelledError:
            sender.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - logged as one line; the broker goes on
            self._closing(conn, exc)
            conn.abort(None)
        finally:
            if held:
                end_turn()
            if conn.closed:
                sender.cancel()  # nobody is there to answer
            elif not sender.done():
                await _put(queue, None, sender)
            try:
                await sender
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001
                self._closing(conn, exc)
            if sender.done():  # else (cancelled twice) it still counts what it is on
                _drop_unsent(queue, conn)
            await self._finish(conn)

    async def _finish(self, conn: Connection) -> None:
        """Close a connection whose responses are all written; gently while stopping."""
        if self._cutting:
            conn.transport.abort()
        elif self._stopping and not conn.closed:
            await close_gently(conn.transport, self._linger_s, on_lost=conn.connection_lost)
        else:
            conn.transport.close()

    def _closing(self, conn: Connection, exc: BaseException) -> None:
        """One log line (per kind, address and interval) for a connection closed by `exc`."""
        if isinstance(exc, WriteStalledError):
            kind, why = "stalled", str(exc)
        elif isinstance(exc, ConnectionError):
            return  # the client went away
        elif isinstance(exc, ProtocolError):
            kind, why = "malformed requests", f"{exc}"
        else:
            kind, why = "internal errors", f"an internal error: {type(exc).__name__}: {exc}"
            log.debug("internal error on a connection from %s", conn.peer, exc_info=exc)
        summary = why if kind == "stalled" else f"{kind} (the last: {why})"
        self.admission.refusals.note((kind, conn.host), f"closed a connection from {conn.host}: {why}",
                                     f"closed {{count}} connections from {conn.host} in the last "
                                     f"{{seconds}} s: {summary}")

    def _respond(self, frame: bytearray, host: str, session: Session):
        """What to queue for one request: response parts, a task giving them, a `_FetchTurn`,
        or None."""
        header = framing.decode_request_header(frame)
        if header.api_key == ApiKey.API_VERSIONS and header.api_version > self.broker.advertised[ApiKey.API_VERSIONS][1]:
            return [framing.encode_unsupported_api_versions(header.correlation_id, self.broker.advertised)]
        made = time.perf_counter() if self.broker.metrics is not None else 0.0
        request = framing.decode_request(frame, self.broker.versions(session.principal))
        reply = self.broker.handle(request.api_key, request.api_version, request.body,
                                   ClientInfo(request.client_id or "", host, session))
        respond = _Responder(request.api_key, request.api_version, request.correlation_id,
                             None if self.broker.metrics is None else self.broker.metrics.answered, made)
        if reply.fetch is not None:
            return _FetchTurn(reply.fetch, respond, asyncio.get_running_loop().time())
        if reply.deferred is not None:
            if reply.deferred.done:
                return respond.parts(reply.deferred.body)
            return asyncio.create_task(self._await_deferred(reply.deferred, respond))
        if reply.sync:
            return self._durable.turn(reply, respond, self.broker.replicas.until_replicated)
        if reply.body is None:
            return None
        if request.api_key == ApiKey.API_VERSIONS and reply.body["error_code"] == 0:
            respond.answered()
            return [framing.encode_fixed_response(ApiKey.API_VERSIONS, request.api_version, request.correlation_id,
                                                  reply.body, self._fixed_responses)]
        return respond.parts(reply.body)

    async def _await_deferred(self, deferred: Deferred, respond: "_Responder") -> list:
        """Wait for a body the group coordinator decides later (it resolves every one by a deadline)."""
        future = asyncio.get_running_loop().create_future()
        deferred.add_done_callback(lambda body: future.done() or future.set_result(body))
        if self._stopping:  # held after close() released the others
            self.broker.groups.release_held(NotCoordinatorError.code)
        return respond.parts(await future)

    async def _long_poll(self, turn: "_FetchTurn") -> tuple[list, FetchPlan]:
        """Plan a fetch response when it is its turn to be written, so that a connection holds
        the descriptors of one response at most; wait (from its arrival) for min_bytes."""
        wait, loop = turn.wait, asyncio.get_running_loop()
        deadline = turn.received + wait.max_wait_ms / 1000
        files, memory = self.admission.response_files, self.admission.response_memory
        while True:
            plan = wait.plan(files, memory)
            remaining = deadline - loop.time()
            if wait.ready(plan) or remaining <= 0 or self._stopping:
                try:
                    if self.broker.metrics is not None and wait.replica < 0:
                        self.broker.metrics.fetched(plan.body)
                    return turn.respond.parts(plan.body), plan
                except BaseException:
                    plan.close()
                    raise
            plan.close()
            woken = loop.create_future()
            for key in wait.partitions:
                self._waiters.setdefault(key, set()).add(woken)
            try:
                await asyncio.wait_for(woken, remaining)
            except TimeoutError:
                pass
            finally:
                for key in wait.partitions:
                    waiters = self._waiters.get(key)
                    if waiters is not None:
                        waiters.discard(woken)
                        if not waiters:
                            del self._waiters[key]

    async def _send_responses(self, queue: asyncio.Queue, conn: Connection) -> None:
        """Write the queued responses in order. Those ready one after another leave in one
        transport write (`Outgoing`); what is gathered is written before any wait."""
        loop, out = asyncio.get_running_loop(), Outgoing(conn, lambda seconds: self.turns.done(conn.client_key, seconds))
        while True:
            if queue.empty() or not conn.writable:  # the client must take what was written first
                out.flush()
                await conn.drain()
                entry = await queue.get()
            else:
                entry = queue.get_nowait()
            if entry is None:
                out.flush()
                return
            (item, queued), plan = entry, None
            try:
                if isinstance(item, _FetchTurn):
                    out.flush()
                    item, plan = await self._long_poll(item)
                elif isinstance(item, DurableTurn):
                    if not item.ready:
                        out.flush()
                    item = await item.parts()
                elif isinstance(item, asyncio.Task):
                    if not item.done():
                        out.flush()
                    item = await item
                if item is not None and not out.add(item):
                    out.flush()
                    await write_parts(loop, conn, item)
            finally:
                if plan is not None:
                    plan.close()
            out.sent(queued)


class _FetchTurn:
    """A fetch waiting in a connection's queue; planned by `Server._long_poll` at its turn."""

    __slots__ = ("wait", "respond", "received")

    def __init__(self, wait: FetchWait, respond: "_Responder", received: float):
        self.wait, self.respond, self.received = wait, respond, received


class _Responder:
    """Encodes the response to one request, once its body is known; tells `on_answer(api_key,
    seconds since it was made)` (the metrics) when it does."""

    __slots__ = ("api_key", "api_version", "correlation_id", "on_answer", "made")

    def __init__(self, api_key: int, api_version: int, correlation_id: int, on_answer=None, made: float = 0.0):
        self.api_key, self.api_version, self.correlation_id = api_key, api_version, correlation_id
        self.on_answer = on_answer
        self.made = made  # time.perf_counter() before the request was decoded

    def answered(self) -> None:
        if self.on_answer is not None:
            self.on_answer(self.api_key, time.perf_counter() - self.made)

    def parts(self, body: dict) -> list:
        self.answered()
        return framing.encode_response_parts(self.api_key, self.api_version, self.correlation_id, body)


async def _put(queue: asyncio.Queue, entry, sender: asyncio.Task) -> bool:
    """Queue `entry` for the sender, waiting while MAX_IN_FLIGHT wait; False if the sender
    ended first (its connection failed)."""
    if not queue.full():
        queue.put_nowait(entry)
        return True
    put = asyncio.ensure_future(queue.put(entry))
    await asyncio.wait((put, sender), return_when=asyncio.FIRST_COMPLETED)
    if put.done():
        return True
    put.cancel()
    return False


def _drop_unsent(queue: asyncio.Queue, conn: Connection) -> None:
    """Once a connection's sender has ended: drop the entries it left in the queue (their
    tasks cancelled) and give back every unsent response byte the connection still counts
    (left entries, the one the sender was on, one that could not be queued), so that the
    broker-wide bound on unsent responses does not keep what a dead connection held."""
    while not queue.empty():
        entry = queue.get_nowait()
        if entry is not None:
            _drop(entry[0])
    if conn.queued_response_bytes:
        conn.sent_response_bytes(conn.queued_response_bytes)


def _drop(response) -> None:
    """Forget a queued response that will not be sent: a task giving it (_await_deferred) is
    cancelled, or its outcome retrieved if it already has one, and so are a `DurableTurn`'s
    futures. Response parts and a `_FetchTurn` hold no descriptor (a fetch is planned, and
    its plan closed, by the sender only)."""
    if isinstance(response, DurableTurn):
        response.drop()
    elif isinstance(response, asyncio.Task):
        if not response.done():
            response.cancel()
        elif not response.cancelled():
            response.exception()


def _weight(response) -> int:
    """What a queued response holds in memory, for the bounds on unsent responses: its bytes,
    or for a fetch not yet planned, FETCH_ENTRY_WEIGHT per partition of its decoded request."""
    if isinstance(response, list):
        return sum(len(part) for part in response if isinstance(part, (bytes, bytearray, memoryview)))
    if isinstance(response, _FetchTurn):
        return FETCH_ENTRY_WEIGHT * len(response.wait.partitions)
    return 0


async def run(broker: Broker, on_listening, stop: asyncio.Event | None = None,
              shutdown_timeout: float = 10.0) -> None:
    """Serve until `stop` is set (or until cancelled), then close the server, answering the
    requests already read within `shutdown_timeout` seconds (Server.close).
    `on_listening(host, port)` is called once the socket listens."""
    endpoint = None
    if broker.config.metrics_address is not None:
        from .metrics import BrokerMetrics
        from ..metrics_endpoint import MetricsEndpoint

        broker.metrics = BrokerMetrics(broker, asyncio.get_running_loop())
    server = Server(broker)
    if broker.metrics is not None:
        broker.metrics.connections = lambda: len(server._open)
        endpoint = MetricsEndpoint(broker.metrics.registry, *broker.config.metrics_address)
        log.info("metrics for Prometheus at %s", endpoint.url)
    host, port = await server.start()
    if broker.config.advertised_host is None:
        broker.config.advertised_host = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    on_listening(host, port)
    maintenance = asyncio.create_task(maintain(broker.store, broker.config))
    controller = asyncio.create_task(broker.controller.run()) if broker.controller is not None else None
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        maintenance.cancel()
        if controller is not None:
            controller.cancel()
        await server.close(shutdown_timeout)
        if endpoint is not None:
            endpoint.close()

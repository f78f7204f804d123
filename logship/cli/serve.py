"""`logship serve`: run the broker on a data directory until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import socket
import threading
import time

import click

from .log_setup import configure_logging, log_options
from .units import DURATION, HOSTPORT, INT32_MAX, METRICS_ADDRESS, SIZE

DEFAULT_DATA_DIR = "./logship-data"
#: --max-message-bytes tops out here: a response carrying such a batch must still fit the
#: client's frame limit (client/connection.py, 128 MiB).
MAX_MESSAGE_BYTES_LIMIT = 100 << 20
#: How long start-up loads partitions before listening; the rest load in the background.
LOAD_BEFORE_LISTENING_S = 2.0
#: Partitions recovering at once after an unclean stop (Kafka's num.recovery.threads.per.data.dir):
#: their fdatasyncs share journal commits (2,000 partitions: 5.6 s alone, 1.4 s four at a time)
LOAD_THREADS = 4
#: Room for a produce request's headers around its largest batch.
_REQUEST_OVERHEAD = 1 << 20

#: Why a bind fails, for people: errno -> what it means and what to do.
_BIND_ADVICE = {
    errno.EADDRINUSE: "the port is in use (another broker running? pick a free one with --listen HOST:PORT "
                      "or port 0)",
    errno.EADDRNOTAVAIL: "that address is not one of this host's (use 127.0.0.1, 0.0.0.0 or an address of "
                         "this host)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="LOGSHIP_DATA_DIR",
              default=DEFAULT_DATA_DIR, show_default=True, help="Where topics are stored ($LOGSHIP_DATA_DIR).")
@click.option("--listen", type=HOSTPORT, default="127.0.0.1:9092", show_default=True,
              help="Address to bind; port 0 picks a free one.")
@click.option("--advertise", type=HOSTPORT, default=None,
              help="HOST:PORT that clients are told to connect to (default: the bound address).")
@click.option("--partitions", type=click.IntRange(min=1, max=INT32_MAX), default=1, show_default=True,
              help="Partitions of a topic created on first use.")
@click.option("--retention", type=DURATION.within(0, None, unlimited=True), default="7d", show_default=True,
              help="Delete segments older than this (-1: keep forever).")
@click.option("--retention-bytes", type=SIZE, default="-1", show_default=True,
              help="Per partition, delete the oldest segments beyond this size (-1: no limit).")
@click.option("--segment-bytes", type=SIZE, default="1G", show_default=True, help="Roll segments at this size.")
@click.option("--max-message-bytes", type=SIZE, default=str((1 << 20) + 12), show_default=True,
              help="Largest record batch accepted, compressed (Kafka's message.max.bytes); a topic's "
                   "max.message.bytes overrides it. At most 100M.")
@click.option("--no-auto-create", is_flag=True, help="Refuse to create topics on first produce or metadata request.")
@click.option("--group-initial-rebalance-delay", "rebalance_delay", type=DURATION.within(0, INT32_MAX, unlimited=True), default="3s", show_default=True,
              envvar="LOGSHIP_GROUP_INITIAL_REBALANCE_DELAY",
              help="How long a new consumer group waits for more members before its first assignment "
                   "(Kafka's group.initial.rebalance.delay.ms; $LOGSHIP_GROUP_INITIAL_REBALANCE_DELAY).")
@click.option("--group-min-session-timeout", "min_session_timeout", type=DURATION.within(1, INT32_MAX), default="6s", show_default=True,
              envvar="LOGSHIP_GROUP_MIN_SESSION_TIMEOUT",
              help="Shortest session timeout a group member may ask for (Kafka's group.min.session.timeout.ms; "
                   "$LOGSHIP_GROUP_MIN_SESSION_TIMEOUT).")
@click.option("--producer-id-expiration", "producer_id_expiration", type=DURATION.within(1000, 2**63 - 1),
              default="1d", show_default=True,
              help="Forget an idempotent producer that wrote nothing for this long (Kafka's "
                   "producer.id.expiration.ms); its retries after that may be stored twice.")
@click.option("--checkpoint-interval", "checkpoint_interval", type=DURATION.within(1, INT32_MAX), default="30s",
              show_default=True, envvar="LOGSHIP_CHECKPOINT_INTERVAL",
              help="How often recovery points and log start offsets are written (Kafka's "
                   "log.flush.offset.checkpoint.interval.ms; $LOGSHIP_CHECKPOINT_INTERVAL).")
@click.option("--shutdown-timeout", type=DURATION.within(0, INT32_MAX), default="10s", show_default=True,
              help="On SIGTERM or Ctrl-C, how long to keep answering the requests already received "
                   "(acks=all produces get their fsync) before closing what is left; a second signal "
                   "stops at once.")
@click.option("--retention-check-interval", "retention_check", type=DURATION.within(1, INT32_MAX), default="60s", show_default=True,
              envvar="LOGSHIP_RETENTION_CHECK_INTERVAL",
              help="How often retention deletes old segments (Kafka's log.retention.check.interval.ms; "
                   "$LOGSHIP_RETENTION_CHECK_INTERVAL).")
@click.option("--max-partitions-per-request", "per_request", type=click.IntRange(min=1), default=5_000,
              show_default=True, help="New partitions one request (CreateTopics, CreatePartitions, auto-creation) "
                                      "may ask for, over all its topics.")
@click.option("--max-partitions-per-topic", "per_topic", type=click.IntRange(min=1), default=10_000,
              show_default=True, help="Partitions one topic may have.")
@click.option("--max-broker-partitions", "per_broker", type=click.IntRange(min=1), default=20_000,
              show_default=True, help="Partitions this broker may hold in all (Kafka's max.broker.partitions, "
                                      "KIP-578).")
@click.option("--max-open-files", type=click.IntRange(min=16), default=None,
              help="Segment and index files kept open at once, over all partitions (a cache: the least "
                   "recently used are closed and reopened when needed; default 1000, at most two fifths "
                   "of the descriptor limit, which connections and fetch responses share).")
@click.option("--max-request-bytes", type=SIZE, default=None,
              help="Largest request frame, refused on its length prefix (Kafka's socket.request.max.bytes; "
                   "default 100M, or --max-message-bytes plus 1M if that is more).")
@click.option("--queued-max-request-bytes", type=SIZE.within(1 << 10, 1 << 30), default="64M", show_default=True,
              help="Memory for requests being read or waiting to be handled, all connections together "
                   "(Kafka's queued.max.request.bytes); connections wait while it is used up.")
@click.option("--max-connections", type=click.IntRange(min=1), default=None,
              help="Connections at once; at the cap the one quiet longest is closed, else a new one is "
                   "refused (Kafka's max.connections; default 4000, at most a fifth of the descriptor limit).")
@click.option("--max-connections-per-ip", type=click.IntRange(min=1), default=None,
              help="Connections at once from one address, as --max-connections (Kafka's "
                   "max.connections.per.ip; default as --max-connections).")
@click.option("--connections-max-idle", type=DURATION.within(1000, INT32_MAX), default="10m", show_default=True,
              help="Close a connection that moves no byte for this long (Kafka's connections.max.idle.ms).")
@click.option("--request-timeout", type=DURATION.within(1000, INT32_MAX), default="30s", show_default=True,
              help="Close a connection whose request has not arrived whole this long after its first byte.")
@click.option("--write-timeout", type=DURATION.within(1000, INT32_MAX), default="30s", show_default=True,
              help="Close a connection whose client reads none of its responses for this long.")
@click.option("--fetch-max-bytes", type=SIZE.within(1 << 10, 1 << 30), default="55M", show_default=True,
              help="Record bytes in one fetch response, whatever the client asks (Kafka's broker "
                   "fetch.max.bytes).")
@click.option("--max-response-files", type=click.IntRange(min=1), default=None,
              help="Segment file descriptors held by all fetch responses being sent (default 4000, at most "
                   "a fifth of the descriptor limit); a fetch beyond it gets fewer partitions' records.")
@click.option("--max-response-memory", type=SIZE.within(1 << 20, 1 << 40), default="32M", show_default=True,
              help="Record bytes all fetch responses being sent hold in memory (small slices of segments); "
                   "beyond it they are read from the segment file as the client takes them.")
@log_options
@click.option("--metrics", type=METRICS_ADDRESS, default=None, metavar="[HOST:]PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (a PORT alone: on 127.0.0.1).")
@click.option("--cluster", "cluster_path", type=click.Path(dir_okay=False), default=None,
              help="Run as one broker of the cluster this file describes (`logship cluster up` starts "
                   "brokers this way); --listen, --advertise and --data-dir default to its entry.")
@click.option("--broker-id", type=click.IntRange(min=0, max=INT32_MAX), default=None,
              help="This broker's id in the --cluster file.")
@click.pass_context
def serve(ctx, cluster_path, broker_id, data_dir, listen, advertise, partitions, retention, retention_bytes, segment_bytes,
          max_message_bytes, no_auto_create, rebalance_delay, min_session_timeout, retention_check,
          per_request, per_topic, per_broker, max_open_files, max_request_bytes, queued_max_request_bytes,
          max_connections, max_connections_per_ip, connections_max_idle, request_timeout, write_timeout,
          fetch_max_bytes, max_response_files, max_response_memory, checkpoint_interval, shutdown_timeout,
          log_level, log_format, metrics, producer_id_expiration) -> None:
    """Run the broker: Kafka clients (kcat, librdkafka, kafka-python) produce and consume here.

    Prints one line, `logship: listening on HOST:PORT`, to stderr once it accepts
    connections. SIGTERM or Ctrl-C stops it cleanly, so the next start needs no recovery:
    it stops reading requests, answers those it has (within --shutdown-timeout), then
    closes the store.

    \b
    Examples:
      logship serve
      logship serve --data-dir /var/lib/logship --listen 0.0.0.0:9092 --advertise logs.example:9092
      logship serve --listen 127.0.0.1:0 --retention 6h --segment-bytes 64M
      logship serve --max-message-bytes 8M
      logship serve --max-partitions-per-topic 20000 --max-broker-partitions 50000 --max-open-files 4000
      logship serve --max-connections-per-ip 200 --connections-max-idle 5m --queued-max-request-bytes 32M
      logship serve --shutdown-timeout 30s
      logship serve --cluster /var/lib/logship/cluster.toml --broker-id 2
    """
    from ..broker.broker import Broker
    from ..broker.config import BrokerConfig
    from ..broker.limits import Limits
    from ..storage import LogConfig, Store

    if not 61 <= max_message_bytes <= MAX_MESSAGE_BYTES_LIMIT:
        raise click.BadParameter(f"{max_message_bytes} is not within 61..{MAX_MESSAGE_BYTES_LIMIT} bytes (100M)",
                                 param_hint="--max-message-bytes")
    for cap, option in ((per_topic, "--max-partitions-per-topic"), (per_request, "--max-partitions-per-request"),
                        (per_broker, "--max-broker-partitions")):
        if partitions > cap:  # every auto-created topic would be refused
            raise click.BadParameter(f"{partitions} is more than {option} ({cap})", param_hint="--partitions")
    if max_connections and max_connections_per_ip and max_connections_per_ip > max_connections:
        raise click.BadParameter(f"{max_connections_per_ip} is more than --max-connections ({max_connections})",
                                 param_hint="--max-connections-per-ip")
    if max_request_bytes is None:
        max_request_bytes = max(BrokerConfig.max_frame_bytes, max_message_bytes + _REQUEST_OVERHEAD)
    elif not max_message_bytes + _REQUEST_OVERHEAD <= max_request_bytes < 1 << 31:
        raise click.BadParameter(f"{max_request_bytes} is not within {max_message_bytes + _REQUEST_OVERHEAD} "
                                 f"(--max-message-bytes plus 1M) .. 2G", param_hint="--max-request-bytes")
    cluster, secret = None, None
    if cluster_path is not None or broker_id is not None:
        cluster, secret, listen, advertise, data_dir = _cluster_identity(ctx, cluster_path, broker_id, listen,
                                                                          advertise, data_dir)
    configure_logging(log_level, log_format)
    with _options_named():
        log_config = LogConfig(segment_bytes=segment_bytes, retention_ms=retention, retention_bytes=retention_bytes,
                               max_batch_bytes=max_message_bytes)
        config = BrokerConfig(node_id=broker_id or 0, cluster=cluster, secret=secret, metrics_address=metrics,
                              listen_host=listen[0], listen_port=listen[1],
                              advertised_host=advertise[0] if advertise else None,
                              advertised_port=advertise[1] if advertise else None,
                              default_partitions=partitions, auto_create_topics=not no_auto_create, log=log_config,
                              group_initial_rebalance_delay_ms=max(rebalance_delay, 0),
                              group_min_session_timeout_ms=max(min_session_timeout, 0),
                              retention_check_interval_s=max(retention_check, 10) / 1000,
                              checkpoint_interval_s=max(checkpoint_interval, 10) / 1000,
                              producer_id_expiration_ms=producer_id_expiration,
                              max_frame_bytes=max_request_bytes,
                              max_partitions_per_request=per_request, max_partitions_per_topic=per_topic,
                              max_broker_partitions=per_broker,
                              limits=_limits(Limits.defaults_for(), queued_max_request_bytes, max_connections,
                                             max_connections_per_ip, connections_max_idle, request_timeout,
                                             write_timeout, fetch_max_bytes, max_response_files,
                                             max_response_memory))
    try:
        store = Store(os.path.abspath(data_dir), log_config, max_open_files=max_open_files or _default_open_files())
    except OSError as exc:
        raise click.ClickException(f"cannot use data directory {data_dir}: {_os_reason(exc, data_dir)}") from None
    with store:
        if store.recovered and store.total_partitions():
            logging.getLogger("logship.storage").warning(
                "%s was not closed cleanly: each partition is recovered from its recovery point before its "
                "first use", data_dir)
        # partitions load (and recover) for up to LOAD_BEFORE_LISTENING_S before the broker listens,
        # the rest in the background; a request for one not loaded yet loads it first
        until = time.monotonic() + LOAD_BEFORE_LISTENING_S
        threads = LOAD_THREADS if store.recovered else 1  # a clean load is CPU, recovery mostly fdatasync
        store.load_all(lambda: time.monotonic() > until, threads=threads)
        stop_loading = threading.Event()
        loader = threading.Thread(target=store.load_all, args=(stop_loading.is_set, threads),
                                  name="logship-load", daemon=True)
        try:
            loader.start()
            asyncio.run(_serve_until_signalled(Broker(store, config), max(shutdown_timeout, 0) / 1000))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {_hostport(*listen)}: {_bind_reason(exc)}") from None
        finally:
            stop_loading.set()
            loader.join()


def _cluster_identity(ctx, cluster_path, broker_id, listen, advertise, data_dir):
    """The cluster file, the secret, and this broker's listen, advertise and data directory
    (from its entry, unless given as options)."""
    from click.core import ParameterSource

    from ..cluster_file import SECRET_FILE_NAME, load, secret_path
    from ..errors import ConfigError

    if cluster_path is None or broker_id is None:
        raise click.UsageError("--cluster and --broker-id go together")
    try:
        cluster = load(cluster_path)
        spec = cluster.broker(broker_id)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--cluster") from None

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)

    listen = listen if given("listen") else spec.listen
    advertise = advertise if given("advertise") else spec.advertise
    data_dir = data_dir if given("data_dir") else spec.data_dir
    candidates = [os.path.join(data_dir, SECRET_FILE_NAME), str(secret_path(cluster_path))]
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                secret = f.read().strip()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise click.ClickException(f"cannot read the cluster secret {candidate}: {exc.strerror}") from None
        if len(secret) < 16:
            raise click.ClickException(f"the cluster secret {candidate} is shorter than 16 bytes")
        return cluster, secret, listen, advertise, data_dir
    raise click.ClickException(f"no cluster secret in {candidates[0]} or {candidates[1]} "
                               f"(`logship cluster up` writes it)")


def _default_open_files() -> int:
    """1000, or two fifths of the descriptor limit if that is less: connections and fetch
    responses get a fifth each (Limits.defaults_for), so that the three together fit in it."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1000 if nofile <= 0 else max(16, min(1000, nofile * 2 // 5))


def _limits(limits, queued_max_request_bytes, max_connections, max_connections_per_ip, connections_max_idle,
            request_timeout, write_timeout, fetch_max_bytes, max_response_files, max_response_memory):
    """The limits asked for, over the defaults fitted to this process's descriptor limit."""
    limits.queued_max_request_bytes = queued_max_request_bytes
    limits.max_connections = max_connections or limits.max_connections
    limits.max_connections_per_ip = max_connections_per_ip or min(limits.max_connections_per_ip,
                                                                  limits.max_connections)
    limits.connections_max_idle_ms = connections_max_idle
    limits.request_timeout_ms = request_timeout
    limits.write_timeout_ms = write_timeout
    limits.fetch_max_bytes = fetch_max_bytes
    limits.max_response_files = max_response_files or limits.max_response_files
    limits.max_response_memory_bytes = max_response_memory
    return limits


#: LogConfig and BrokerConfig fields -> the serve option that sets them (for their ConfigErrors).
_OPTION_OF_FIELD = {
    "segment_bytes": "--segment-bytes", "retention_ms": "--retention", "retention_bytes": "--retention-bytes",
    "max_batch_bytes": "--max-message-bytes", "default_partitions": "--partitions",
    "group_initial_rebalance_delay_ms": "--group-initial-rebalance-delay",
    "group_min_session_timeout_ms": "--group-min-session-timeout",
    "retention_check_interval_s": "--retention-check-interval", "listen_port": "--listen",
    "advertised_port": "--advertise", "advertised_host": "--advertise", "listen_host": "--listen",
}


@contextlib.contextmanager
def _options_named():
    """A ConfigError of the broker's or the log's settings, as a usage error naming the serve
    option that set the field (any field: the message is rewritten, not matched)."""
    from ..errors import ConfigError

    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        fields = [name for name in _OPTION_OF_FIELD if re.search(rf"\b{name}\b", message)]
        for name in fields:
            message = re.sub(rf"\b{name}\b", _OPTION_OF_FIELD[name], message)
        hint = _OPTION_OF_FIELD[fields[0]] if fields else None
        raise click.BadParameter(message, param_hint=hint) from None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _os_reason(exc: OSError, data_dir: str) -> str:
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    if exc.filename is not None and os.path.abspath(exc.filename) != os.path.abspath(data_dir):
        return f"{exc.filename}: {reason}"
    return reason


def _bind_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    return _BIND_ADVICE.get(exc.errno) or (exc.strerror or str(exc)).lower()


async def _serve_until_signalled(broker, shutdown_timeout_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then drain (server.run); a second signal stops at once."""
    from ..broker.server import run

    log = logging.getLogger("logship.broker")
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stop = asyncio.Event()

    def signalled() -> None:
        if stop.is_set():
            main.cancel()
            return
        log.info("shutting down: answering the requests already received (at most %g s)", shutdown_timeout_s)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled)

    def listening(host: str, port: int) -> None:
        click.echo(f"logship: listening on {host}:{port}", err=True)

    try:
        await run(broker, listening, stop, shutdown_timeout_s)
    except asyncio.CancelledError:
        log.info("shutting down at once")

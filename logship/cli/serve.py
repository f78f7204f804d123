"""`logship serve`: run the broker on a data directory until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket

import click

from .units import DURATION, HOSTPORT, SIZE

DEFAULT_DATA_DIR = "./logship-data"
#: --max-message-bytes tops out here: a response carrying such a batch must still fit the
#: client's frame limit (client/connection.py, 128 MiB).
MAX_MESSAGE_BYTES_LIMIT = 100 << 20
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
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True,
              help="Partitions of a topic created on first use.")
@click.option("--retention", type=DURATION, default="7d", show_default=True,
              help="Delete segments older than this (-1: keep forever).")
@click.option("--retention-bytes", type=SIZE, default="-1", show_default=True,
              help="Per partition, delete the oldest segments beyond this size (-1: no limit).")
@click.option("--segment-bytes", type=SIZE, default="1G", show_default=True, help="Roll segments at this size.")
@click.option("--max-message-bytes", type=SIZE, default=str((1 << 20) + 12), show_default=True,
              help="Largest record batch accepted, compressed (Kafka's message.max.bytes); a topic's "
                   "max.message.bytes overrides it. At most 100M.")
@click.option("--no-auto-create", is_flag=True, help="Refuse to create topics on first produce or metadata request.")
@click.option("--group-initial-rebalance-delay", "rebalance_delay", type=DURATION, default="3s", show_default=True,
              envvar="LOGSHIP_GROUP_INITIAL_REBALANCE_DELAY",
              help="How long a new consumer group waits for more members before its first assignment "
                   "(Kafka's group.initial.rebalance.delay.ms; $LOGSHIP_GROUP_INITIAL_REBALANCE_DELAY).")
@click.option("--group-min-session-timeout", "min_session_timeout", type=DURATION, default="6s", show_default=True,
              envvar="LOGSHIP_GROUP_MIN_SESSION_TIMEOUT",
              help="Shortest session timeout a group member may ask for (Kafka's group.min.session.timeout.ms; "
                   "$LOGSHIP_GROUP_MIN_SESSION_TIMEOUT).")
@click.option("--checkpoint-interval", "checkpoint_interval", type=DURATION, default="30s", show_default=True,
              envvar="LOGSHIP_CHECKPOINT_INTERVAL",
              help="How often recovery points and log start offsets are written (Kafka's "
                   "log.flush.offset.checkpoint.interval.ms; $LOGSHIP_CHECKPOINT_INTERVAL).")
@click.option("--retention-check-interval", "retention_check", type=DURATION, default="60s", show_default=True,
              envvar="LOGSHIP_RETENTION_CHECK_INTERVAL",
              help="How often retention deletes old segments (Kafka's log.retention.check.interval.ms; "
                   "$LOGSHIP_RETENTION_CHECK_INTERVAL).")
@click.option("--shutdown-timeout", type=DURATION, default="10s", show_default=True,
              help="On SIGTERM or Ctrl-C, how long to keep answering the requests already received "
                   "(acks=all produces get their fsync) before closing what is left; a second signal "
                   "stops at once.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Least severe event to log on stderr.")
def serve(data_dir, listen, advertise, partitions, retention, retention_bytes, segment_bytes,
          max_message_bytes, no_auto_create, rebalance_delay, min_session_timeout, checkpoint_interval,
          retention_check, shutdown_timeout, log_level) -> None:
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
      logship serve --shutdown-timeout 30s
    """
    from ..broker.broker import Broker
    from ..broker.config import BrokerConfig
    from ..storage import LogConfig, Store

    if not 61 <= max_message_bytes <= MAX_MESSAGE_BYTES_LIMIT:
        raise click.BadParameter(f"{max_message_bytes} is not within 61..{MAX_MESSAGE_BYTES_LIMIT} bytes (100M)",
                                 param_hint="--max-message-bytes")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_config = LogConfig(segment_bytes=segment_bytes, retention_ms=retention, retention_bytes=retention_bytes,
                           max_batch_bytes=max_message_bytes)
    config = BrokerConfig(listen_host=listen[0], listen_port=listen[1],
                          advertised_host=advertise[0] if advertise else None,
                          advertised_port=advertise[1] if advertise else None,
                          default_partitions=partitions, auto_create_topics=not no_auto_create, log=log_config,
                          group_initial_rebalance_delay_ms=max(rebalance_delay, 0),
                          group_min_session_timeout_ms=max(min_session_timeout, 0),
                          retention_check_interval_s=max(retention_check, 10) / 1000,
                          checkpoint_interval_s=max(checkpoint_interval, 10) / 1000,
                          max_frame_bytes=max(BrokerConfig.max_frame_bytes, max_message_bytes + _REQUEST_OVERHEAD))
    try:
        store = Store(os.path.abspath(data_dir), log_config)
    except OSError as exc:
        raise click.ClickException(f"cannot use data directory {data_dir}: {_os_reason(exc, data_dir)}") from None
    with store:
        if store.recovered and store.partitions():
            logging.getLogger("logship.storage").warning(
                "%s was not closed cleanly: recovered every partition from its recovery point", data_dir)
        try:
            asyncio.run(_serve_until_signalled(Broker(store, config), max(shutdown_timeout, 0) / 1000))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {_hostport(*listen)}: {_bind_reason(exc)}") from None


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

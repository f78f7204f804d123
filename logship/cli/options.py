"""Options shared by the client commands: the broker list, the timeout, machine-readable output.

`brokers_option` adds both --brokers and --timeout to a command, so every command that talks
to a broker has both; --timeout's value goes to the click context (no command parameter),
where `cluster_for` finds it.
"""

from __future__ import annotations

import click

_TIMEOUT_KEY = "logship.timeout"


#: In ctx.meta (shared by a command's contexts, and kept by `main`): the command has --timeout;
#: the options of the command that talks to a broker (so error hints name only those).
HAS_TIMEOUT_KEY = "logship.has_timeout"
OPTIONS_KEY = "logship.options"


def _keep_timeout(ctx: click.Context, param, value: float | None) -> None:
    ctx.meta[HAS_TIMEOUT_KEY] = True
    ctx.meta[OPTIONS_KEY] = {opt for p in ctx.command.params for opt in p.opts}
    if value is not None:
        ctx.meta[_TIMEOUT_KEY] = value


_brokers = click.option(
    "--brokers", "-b", envvar="LOGSHIP_BROKERS", default=None, metavar="HOST:PORT[,...]",
    help="Brokers to bootstrap from ($LOGSHIP_BROKERS, else 127.0.0.1:9092).")

_timeout = click.option(
    "--timeout", type=click.FloatRange(min=0.1, max=3600), envvar="LOGSHIP_TIMEOUT", default=None,
    metavar="SECONDS", expose_value=False, callback=_keep_timeout,
    help="Give up on a broker that does not connect and answer within SECONDS ($LOGSHIP_TIMEOUT; "
         "default 5 to connect, 30 per request).")


#: --brokers alone, for a command that retries for ever rather than giving up (the agent).
broker_list_option = _brokers


def brokers_option(command):
    """--brokers/-b and --timeout, for every command that talks to a broker."""
    return _brokers(_timeout(command))


class TopicName(click.ParamType):
    """A topic name, checked against Kafka's rule before any broker is asked: a bad one is a
    usage error naming the argument."""

    name = "topic"

    def convert(self, value, param, ctx):
        from ..errors import InvalidTopicError
        from ..topic_names import validate_topic_name

        try:
            validate_topic_name(value)
        except InvalidTopicError as exc:
            self.fail(str(exc), param, ctx)
        return value


TOPIC = TopicName()

json_option = click.option("--json", "as_json", is_flag=True, help="JSON lines, for scripts.")
no_idempotence_option = click.option(
    "--no-idempotence", is_flag=True,
    help="Do not ask the broker for a producer id: a retry after a lost answer may then store records twice "
         "(idempotence needs --acks all, and is on with it by default).")


def producer_limits(linger_ms: float) -> dict:
    """Producer options for --timeout: no request waits longer for an answer, and a record
    not delivered within --timeout (plus its linger) fails, so an unreachable leader ends
    the command in bounded time. Without --timeout: the producer's defaults."""
    ctx = click.get_current_context(silent=True)
    timeout = ctx.meta.get(_TIMEOUT_KEY) if ctx is not None else None
    if timeout is None:
        return {}
    return {"request_timeout_ms": timeout * 1000, "delivery_timeout_ms": linger_ms + timeout * 1000}


def _say_waiting(topic: str, what: str) -> None:
    """A lookup has waited a second for `topic` to be created (or to get a leader): say so once."""
    try:
        click.echo(f"logship: waiting for topic {topic!r} to {what}...", err=True)
    except OSError:
        pass


def cluster_for(brokers: str | None):
    """A client Cluster for the --brokers value (or its defaults) and --timeout."""
    from ..client.cluster import Cluster, default_brokers

    ctx = click.get_current_context(silent=True)
    timeout = ctx.meta.get(_TIMEOUT_KEY) if ctx is not None else None
    limits = {} if timeout is None else {"timeout": timeout, "connect_timeout": timeout}
    try:
        return Cluster(default_brokers(brokers), on_wait=_say_waiting, **limits)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--brokers") from None

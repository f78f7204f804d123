"""Options shared by the client commands: the broker list and machine-readable output."""

from __future__ import annotations

import click

brokers_option = click.option(
    "--brokers", "-b", envvar="LOGSHIP_BROKERS", default=None, metavar="HOST:PORT[,...]",
    help="Brokers to bootstrap from ($LOGSHIP_BROKERS, else 127.0.0.1:9092).")

json_option = click.option("--json", "as_json", is_flag=True, help="JSON lines, for scripts.")


def cluster_for(brokers: str | None):
    """A client Cluster for the --brokers value (or its defaults)."""
    from ..client.cluster import Cluster, default_brokers

    try:
        return Cluster(default_brokers(brokers))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--brokers") from None

"""`logship agent`: tail log files and ship their lines to a topic (logship/agent/)."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import click

from . import ExitStatus
from .log_setup import configure_logging, log_options
from .options import broker_list_option
from .signals import handle_on_thread
from .units import INT32_MAX, SIZE


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH_GLOB]...")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML config file (inputs, topics, options); instead of PATH_GLOB and --topic.")
@click.option("-t", "--topic", help="Topic for the lines of PATH_GLOB (quick form).")
@broker_list_option
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Checkpoints, the journal of batches in flight and the lock "
                   "(default: $XDG_STATE_HOME/logship/agent).")
@click.option("--key", default="", help="Record key template: {host}, {path}, {filename}, or a --field name.")
@click.option("-f", "--field", "fields", multiple=True, metavar="NAME=VALUE",
              help="Extra header on every record; repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching paths; repeatable.")
@click.option("--start-position", type=click.Choice(["beginning", "end"]), default=None,
              help="Where to start files found at the very first start (default: beginning).")
@click.option("--multiline-start", metavar="REGEX",
              help="Join lines into events: a line matching REGEX starts one (e.g. a timestamp).")
@click.option("--max-line-bytes", type=SIZE.within(1, INT32_MAX), default=None,
              help="Longer lines are truncated and flagged with a `truncated` header [default: 512K].")
@click.option("--encoding", default=None, metavar="NAME",
              help="Files' encoding: utf-8 (shipped as read), utf-16le, utf-16be, utf-16 (byte-order mark "
                   "decides); other than utf-8, lines are shipped as UTF-8 [default: utf-8].")
@click.option("--line-terminator", type=click.Choice(["auto", "lf"]), default=None,
              help="auto: a \\r before \\n is stripped; lf: kept [default: auto].")
@click.option("--metrics", default=None, metavar="[HOST:]PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (a PORT alone: on 127.0.0.1).")
@click.option("--status", is_flag=True, help="Show, per checkpointed file, shipped offset vs size, and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --status: JSON lines.")
@log_options
def agent(paths, config_path, topic, brokers, state_dir, key, fields, exclude, start_position,
          multiline_start, max_line_bytes, encoding, line_terminator, metrics, status, as_json, log_level,
          log_format) -> int:
    """Tail log files and ship every line to a topic, without losing one.

    Lines become records (value: the line; headers: host, path, offset; zstd-compressed,
    acks=all). Files are followed through rename and copytruncate rotation, truncation and
    deletion; a file's checkpoint moves only once the broker acknowledged its lines, so a
    crash or a broker outage loses nothing (files are the buffer). Each line is stored
    once, even across a kill -9 of the agent: batches are journaled in the state directory
    with their producer id and sequences before they are sent, and a restart sends the
    unacknowledged ones again, so the broker drops those it has (`idempotence = false`
    turns this off: at least once). One agent per state directory. SIGUSR1 logs the
    counters; SIGTERM, SIGHUP or Ctrl-C stops cleanly (to apply a changed config, restart:
    nothing is lost or sent twice).

    \b
    Examples:
      logship agent /var/log/nginx/*.log --topic nginx
      logship agent --config /etc/logship/agent.toml
      logship agent 'app/**/*.log' -t app --key '{filename}' -f env=prod --state-dir ./state
      logship agent --status --config /etc/logship/agent.toml
    """
    from ..agent import Agent, default_state_dir, file_status, load_config
    from ..agent.config import AgentConfig, make_input
    from ..agent.status import agent_pid

    if status:
        if config_path:
            directory = load_config(config_path).state_dir if not state_dir else Path(state_dir)
        else:
            directory = Path(state_dir) if state_dir else default_state_dir()
        _show_status(directory, file_status(directory), agent_pid(directory), as_json)
        return ExitStatus.OK

    overrides = {"brokers": brokers, "state_dir": Path(state_dir) if state_dir else None, "metrics": metrics}
    if config_path:
        if paths or topic:
            raise click.UsageError("give either --config or PATH_GLOB... --topic, not both")
        config = load_config(config_path, **overrides)
    else:
        if not paths or not topic:
            raise click.UsageError("give PATH_GLOB... and --topic (or --config FILE)")
        table = {"paths": list(paths), "topic": topic, "key": key, "exclude": list(exclude),
                 "fields": dict(_field(f) for f in fields)}
        if start_position:
            table["start_position"] = start_position
        if multiline_start:
            table["multiline"] = {"start_pattern": multiline_start}
        if max_line_bytes is not None:
            table["max_line_bytes"] = max_line_bytes
        if encoding is not None:
            table["encoding"] = encoding
        if line_terminator is not None:
            table["line_terminator"] = line_terminator
        config = AgentConfig(inputs=(make_input(table, "command line"),),
                             **{k: v for k, v in overrides.items() if v is not None})

    configure_logging(log_level, log_format)
    runner = Agent(config)
    interrupted = []

    def stop(signum):
        interrupted.append(signum)
        runner.stop()

    restore = handle_on_thread({signal.SIGTERM: stop, signal.SIGINT: stop,
                                signal.SIGHUP: stop,  # no live reload: restart instead
                                signal.SIGUSR1: lambda signum: runner.request_report()})
    try:
        runner.run()
    finally:
        restore()
    return ExitStatus.INTERRUPTED if signal.SIGINT in interrupted else ExitStatus.OK


def _field(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="--field")
    return name, value


def _show_status(directory: Path, rows: list[dict], pid: int | None, as_json: bool) -> None:
    from tabulate import tabulate

    running = f"an agent is running on it (pid {pid})" if pid else "no agent is running on it"
    click.echo(f"state directory {directory}: {running}", err=True)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, separators=(",", ":")))
        return
    if not rows:
        click.echo("no checkpoints yet", err=True)
        return
    table = [[row["path"], row["shipped"], "-" if row["size"] is None else row["size"],
              "-" if row["behind"] is None else row["behind"], row["status"]] for row in rows]
    click.echo(tabulate(table, headers=["path", "shipped", "size", "behind", "status"],
                        intfmt=",", disable_numparse=False))

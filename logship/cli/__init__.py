"""The `logship` command line: click commands that parse, call one library function, render.

This package is the only place that prints or chooses exit codes. Every LogshipError is
translated to a message and an exit status in one place, `main`.
"""

from __future__ import annotations

import errno
import os
import sys
from enum import IntEnum

import click

from .. import __version__
from ..errors import LogshipError


class ExitStatus(IntEnum):
    """Exit codes shared by every command (DESIGN.md, "Command line")."""

    OK = 0
    ERROR = 1
    USAGE = 2
    UNAVAILABLE = 3
    NOT_FOUND = 4
    INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="logship")
def cli() -> None:
    """A small log streaming system: a Kafka-compatible broker and Unix-style commands.

    \b
    Examples:
      logship serve --data-dir /var/lib/logship
      app | logship produce web-logs
      logship consume web-logs -o @-1h --json | jq .value
    """


def _register_commands() -> None:
    from .agent import agent
    from .consume import consume
    from .dump import dump
    from .groups import groups
    from .produce import produce
    from .replay import replay
    from .seek import seek
    from .serve import serve
    from .tail import tail
    from .topics import topics

    for command in (agent, consume, dump, groups, produce, replay, seek, serve, tail, topics):
        cli.add_command(command)


_register_commands()


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): end quietly, like `cat` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `logship` console script and `python -m logship`."""
    try:
        status = cli.main(args=argv, prog_name="logship", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("", err=True)
        status = ExitStatus.INTERRUPTED
    except KeyboardInterrupt:
        status = ExitStatus.INTERRUPTED
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        status = exc.exit_code
    except LogshipError as exc:
        click.echo(f"logship: {exc}", err=True)
        status = exc.exit_status
    except BrokenPipeError:
        _quiet_broken_pipe()
        status = ExitStatus.OK
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _quiet_broken_pipe()
        status = ExitStatus.OK
    sys.exit(int(status or 0))

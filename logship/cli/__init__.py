"""The `logship` command line: click commands that parse, call one library function, render.

This package is the only place that prints or chooses exit codes. Every LogshipError is
translated to a message and an exit status in one place, `main`.
"""

from __future__ import annotations

import errno
import importlib
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


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is used.

    `lazy` maps command names to module names under logship.cli; the module defines the
    command under the same name. Pipelines start commands often, so startup time matters.
    """

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module = importlib.import_module(f"{__name__}.{self.lazy[name]}")
            self.add_command(getattr(module, name), name)
        return super().get_command(ctx, name)


COMMANDS = {name: name for name in
            ("agent", "bench", "consume", "dump", "groups", "produce", "replay", "seek", "serve", "tail",
             "topics")}


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="logship")
def cli() -> None:
    """A small log streaming system: a Kafka-compatible broker and Unix-style commands.

    \b
    Examples:
      logship serve --data-dir /var/lib/logship
      app | logship produce web-logs
      logship consume web-logs -o @-1h --json | jq .value
    """


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

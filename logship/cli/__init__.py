"""The `logship` command line: click commands that parse, call one library function, render.

This package is the only place that prints or chooses exit codes. A command group run
without a subcommand (`logship`, `logship topics`) is a usage error: its help on stderr,
exit 2 (CommandGroup), as click 8.2+ does, enforced here for every click version. Every failure is
translated to one line on stderr and an exit status in one place, `main` (`error_line` says
how each kind of exception reads); commands never let a traceback through.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from enum import IntEnum

import click

from .. import __version__
from ..errors import LogshipError, explain_codes


class ExitStatus(IntEnum):
    """Exit codes shared by every command (DESIGN.md, "Command line")."""

    OK = 0
    ERROR = 1
    USAGE = 2
    UNAVAILABLE = 3
    NOT_FOUND = 4
    INTERRUPTED = 130


class CommandGroup(click.Group):
    """A group of subcommands that, run without one (`logship`, `logship topics`), prints its
    help on stderr and exits 2, a usage error, whatever click's version (click < 8.2 printed
    it on stdout and exited 0). `--help` prints it on stdout and exits 0."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), err=True)
            raise click.exceptions.Exit(ExitStatus.USAGE)
        return super().parse_args(ctx, args)


class LazyGroup(CommandGroup):
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
            ("agent", "bench", "cluster", "consume", "dump", "groups", "produce", "promote", "replay", "seek", "serve",
             "status", "tail", "top", "topics")}


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
    _check_environment()


#: Environment variables that set worker counts, checked for every command in one place (a
#: command that does not use one today may tomorrow; a typo should not pass unnoticed).
WORKER_VARIABLES = ("LOGSHIP_ENCODE_WORKERS", "LOGSHIP_DECODE_WORKERS")


def _check_environment() -> None:
    from ..workers.pool import workers_from_env

    for variable in WORKER_VARIABLES:
        if os.environ.get(variable, "").strip():
            try:
                workers_from_env(variable)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None


#: "meta": the running command's ctx.meta (which options it has: see options.HAS_TIMEOUT_KEY),
#: for error_line after its contexts are gone.
_RUN: dict = {}


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): end quietly, like `cat` does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def error_line(exc: BaseException) -> str:
    """The one line that reports `exc` on stderr: what happened and, when known, what to do.

    Any "Kafka error code N" left in a message is spelled out with the error's name and
    meaning; a LogshipError's `hint` (or that of the first error behind a DeliveryError)
    is added.
    """
    if isinstance(exc, LogshipError):
        return f"logship: {describe_error(exc)}"
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        path = exc.ctx.command_path
        return f"{path}: {_one_line(exc.format_message()).rstrip('.')}; see '{path} --help'"
    if isinstance(exc, click.ClickException):
        return f"logship: {_one_line(exc.format_message())}"
    if isinstance(exc, OSError):
        return f"logship: {_one_line(os_error_text(exc))}"
    if isinstance(exc, MemoryError):
        return "logship: out of memory; ask for less (smaller batches, sizes or counts)"
    return (f"logship: internal error ({type(exc).__name__}: {_one_line(str(exc))}); "
            "LOGSHIP_DEBUG=1 shows the traceback")


#: Kafka error code -> (option, what to do), added when the running command has that option.
_OPTION_HINTS = {
    26: ("--session-timeout", "choose a --session-timeout within it (Kafka's and logship serve's defaults: "
                              "6s..30m; logship serve --group-min-session-timeout sets the minimum)"),
}


def exit_status_of(exc: LogshipError) -> int:
    """`exc.exit_status`; for records not delivered (DeliveryError), 3 or 4 when what failed
    them was an unreachable broker or a missing topic, else 1."""
    first = getattr(exc, "first_error", None)
    if first is not None and isinstance(first, LogshipError) and first.exit_status in (ExitStatus.UNAVAILABLE,
                                                                                        ExitStatus.NOT_FOUND):
        return first.exit_status
    return exc.exit_status


def describe_error(exc: LogshipError) -> str:
    """A LogshipError for people, on one line: its message with every Kafka error code
    spelled out, and its hint (or that of the first error behind a DeliveryError)."""
    text = explain_codes(str(exc)) or type(exc).__name__
    hint = exc.hint or getattr(getattr(exc, "first_error", None), "hint", None)
    meta = _RUN.get("meta", {})
    if getattr(exc, "unanswered", False) and meta.get("logship.has_timeout"):
        hint = "--timeout sets how long to wait"  # only for a command that has the option
    option, option_hint = _OPTION_HINTS.get(exc.code, (None, None))
    if option is not None and option in meta.get("logship.options", ()):
        hint = option_hint
    missing = getattr(exc, "not_created", None) or getattr(getattr(exc, "first_error", None), "not_created", None)
    if missing is not None:  # asked for with auto-creation allowed, and not created
        hint = f"is auto-creation off? create it: logship topics create {missing}"
    if hint and hint not in text:
        text = f"{text}; {hint}"
    return _one_line(text)


def os_error_text(exc: OSError) -> str:
    """`FILE: reason` (or the reason alone) for an OSError, as `cat` would say it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason


def _run(argv: list[str] | None) -> int:
    """Parse and invoke, letting every exception through (click's own `main` would turn a
    closed pipe into exit status 1 and print a blank line on Ctrl-C)."""
    args = sys.argv[1:] if argv is None else list(argv)
    with cli.make_context("logship", args) as ctx:
        _RUN["meta"] = ctx.meta  # shared by the subcommand's contexts; outlives them
        return cli.invoke(ctx)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `logship` console script and `python -m logship`.

    Every failure ends in one line on stderr and an exit status (ExitStatus): usage errors
    2, LogshipErrors their `exit_status`, OSErrors 1; Ctrl-C ends silently with 130 and a
    closed standard output (`| head`) silently with 0. LOGSHIP_DEBUG=1 lets unexpected
    exceptions through with their traceback.
    """
    try:
        status = _run(argv)
    except (click.exceptions.Abort, KeyboardInterrupt):
        status = ExitStatus.INTERRUPTED
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except BrokenPipeError:
        _quiet_broken_pipe()
        status = ExitStatus.OK
    except (click.ClickException, LogshipError) as exc:
        status = _report(exc, exc.exit_code if isinstance(exc, click.ClickException) else exit_status_of(exc))
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _quiet_broken_pipe()
            status = ExitStatus.OK
        else:
            status = _report(exc, ExitStatus.ERROR)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, unless asked for the traceback
        if os.environ.get("LOGSHIP_DEBUG"):
            raise
        status = _report(exc, ExitStatus.ERROR)
    sys.exit(_flushed(int(status or 0)))


def _flushed(status: int) -> int:
    """Flush standard output here, not at interpreter exit where a closed pipe or a full disk
    would print "Exception ignored ..." and exit 120."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _quiet_broken_pipe()  # what is still buffered cannot be written anyway
        if exc.errno != errno.EPIPE and status == ExitStatus.OK:
            status = _report(exc, ExitStatus.ERROR)
    except ValueError:  # standard output was closed
        pass
    return status


def _report(exc: BaseException, status: int) -> int:
    try:
        click.echo(error_line(exc), err=True)
    except OSError:
        pass  # stderr is gone too: the status still says it
    return status

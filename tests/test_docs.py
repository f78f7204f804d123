"""Every command documents itself: help with an example, and an up-to-date man page."""

from pathlib import Path

import click
import pytest

from logship.cli import cli
from logship.cli.manpage import stale_pages

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    ctx = click.Context(cli, info_name="logship")
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        yield name, command
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, info_name=name, parent=ctx)
            for sub in command.list_commands(sub_ctx):
                yield f"{name} {sub}", command.get_command(sub_ctx, sub)


@pytest.mark.parametrize("name,command", list(_commands()), ids=lambda v: v if isinstance(v, str) else "")
def test_command_help_has_summary_and_example(name, command):
    assert command.help, f"`logship {name}` has no help"
    assert "Example" in command.help, f"`logship {name} --help` shows no example"


def test_man_pages_are_current():
    stale = stale_pages(ROOT / "man")
    assert not stale, f"stale man pages {stale}: run bin/logship-man"


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    head = "\n".join(lines[:12])
    assert "logship serve" in head and "bin/test" in head


def test_man_pages_document_every_option_and_nothing_empty():
    """Built from the options' own attributes, so a click release that changes its help records
    (8.5 returns one for arguments, with empty help) changes nothing here."""
    from logship.cli.manpage import pages

    text = "\n".join(pages().values())
    assert ".TP\n.B \n" not in text and "\n.B \n" not in text
    for name, command in _commands():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                longest = max(param.opts, key=len).replace("-", "\\-")
                assert longest in text, f"`logship {name}`: {longest} is not in the man pages"

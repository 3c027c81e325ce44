"""docs/cli.md is the commands' own help: complete, current, and every command shows an example."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import cli_reference  # noqa: E402

from nacento_sync.cli import app  # noqa: E402

COMMANDS = cli_reference.commands(typer.main.get_command(app))
REFERENCE = (ROOT / "docs" / "cli.md").read_text()


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("nacento-sync", *path))


def test_the_reference_is_what_the_commands_print_now():
    assert cli_reference.render() == REFERENCE, "docs/cli.md is stale: run scripts/cli_reference.py"


def test_every_command_is_in_the_reference():
    assert len(COMMANDS) >= 11
    for path, _ in COMMANDS:
        assert f"## `{_name(path)}`" in REFERENCE, _name(path)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_every_option_is_in_its_commands_section(path, command):
    section = REFERENCE.split(f"## `{_name(path)}`\n", 1)[1].split("\n## ", 1)[0]
    options = [opt for param in command.params for opt in param.opts if opt.startswith("-")]
    assert [opt for opt in options if opt not in section] == []


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_every_commands_help_has_an_example(path, command):
    assert "Example: nacento-sync" in (command.help or ""), f"{_name(path)} --help shows no example"

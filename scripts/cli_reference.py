#!/usr/bin/env python3
"""Write docs/cli.md, the command reference, from the commands' own `--help` (run after changing a command).

    .venv/bin/python scripts/cli_reference.py          # rewrite docs/cli.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 when docs/cli.md is not up to date

tests/test_cli_reference.py fails when the file is stale, when a command or option is missing from it, or
when a command's help has no example.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"
#: Help is rendered at a fixed width, without colour, so the file does not depend on the terminal.
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}

HEADER = """# Command reference

Generated from the commands' own `--help` by `scripts/cli_reference.py` (do not edit by hand). README explains
the concepts; this page lists every command and option as `nacento-sync` prints them.
"""


def commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the tree (typer's own click), the group itself first, in `--help`'s order."""
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(typer.Context(command)):
            sub = command.get_command(typer.Context(command), name)
            if sub is not None and not sub.hidden:
                found += commands(sub, (*path, name))
    return found


def help_text(path: tuple[str, ...]) -> str:
    from nacento_sync.cli import app

    result = CliRunner().invoke(app, [*path, "--help"], env=ENV)
    if result.exit_code != 0:
        raise SystemExit(f"nacento-sync {' '.join(path)} --help failed:\n{result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


def render() -> str:
    from nacento_sync.cli import app

    parts = [HEADER]
    for path, _ in commands(typer.main.get_command(app)):
        parts.append(f"\n## `nacento-sync{''.join(' ' + p for p in path)}`\n\n```text\n{help_text(path)}\n```\n")
    return "".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

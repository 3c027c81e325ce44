"""The command line (Typer): `nacento-sync` parses, calls the library, renders and sets the exit code.

One module per command group: `sync` (sync, sku), `undo`, `schema`, `doctor`, `asyncmode` (submit, worker, status,
requeue); `common` holds what they share.
"""

from __future__ import annotations

from nacento_sync.cli import asyncmode, doctor, schema, sync, undo  # noqa: F401  (each registers its commands)
from nacento_sync.cli.common import app


def main() -> None:
    app()

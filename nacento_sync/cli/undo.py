"""`undo JOURNAL...`: revert runs from their change journals (`nacento_sync.revert`), render, set the exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nacento_sync.cli.common import (
    EXIT_ACCESS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    JsonOpt,
    PlainCommand,
    _config,
    app,
    err,
    out,
)
from nacento_sync.console import error, plain, say
from nacento_sync.errors import AccessError, UsageError


@app.command(cls=PlainCommand)
def undo(
    ctx: typer.Context,
    journals: Annotated[list[Path], typer.Argument(
        help="Journals of `sync`, `sku`, the worker or `undo` (several: a bulk's worker journals); reverted "
             "newest first.", show_default=False, metavar="JOURNAL...")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be reverted and what conflicts; "
                                          "write nothing (no journal either).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Revert the rows a run wrote: delete what it inserted, restore what it updated, re-insert what it
    deleted (same ids). A SKU changed since the run is a conflict: left alone and listed (exit 1). The
    bucket's objects and purged resized copies are not restored.

    Example: nacento-sync --config store.yaml undo ~/.local/state/nacento-sync/journal/run-1.ndjson
    """
    cfg = _config(ctx)
    from nacento_sync.revert import undo as run_undo  # aiomysql: only when the command runs

    try:
        result = run_undo(cfg, journals, dry_run=dry_run)
    except AccessError as e:
        error(err, e)
        raise typer.Exit(EXIT_ACCESS) from None
    except UsageError as e:  # a refused journal (a dry run's, another store's), an unwritable journal dir
        error(err, e)
        raise typer.Exit(EXIT_USAGE) from None
    if json_out:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
    else:
        rows = result.rows
        say(out, f"nacento-sync undo{' (dry run)' if dry_run else ''}: {len(result.reverted)} SKUs reverted, "
                 f"{len(result.conflicts)} conflicts; rows {rows['deleted']} deleted, {rows['restored']} restored, "
                 f"{rows['reinserted']} re-inserted; {len(result.changed_product_ids)} products changed")
        if result.changed_product_ids:
            say(out, "changed product ids: " + " ".join(str(i) for i in result.changed_product_ids))
        if result.journal:
            say(out, f"journal {plain(result.journal)}")
        for c in result.conflicts[:50]:
            say(err, f"conflict: SKU {plain(c.sku)} not reverted: {plain(c.reason)}")
        if len(result.conflicts) > 50:
            say(err, f"… and {len(result.conflicts) - 50} more conflicts (see --json)")
    raise typer.Exit(EXIT_FAILED if result.conflicts else EXIT_OK)

"""`schema install | uninstall | status`: nacento-sync's own table, and how the store is shaped."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from nacento_sync.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PlainCommand,
    PlainGroup,
    _config,
    app,
    call,
    err,
    out,
)
from nacento_sync.console import error, plain, say
from nacento_sync.errors import SchemaError

if TYPE_CHECKING:  # pydantic and yaml: imported when a command runs
    from nacento_sync.config import Config

schema_app = typer.Typer(help="Install, remove or inspect nacento-sync's own table (nacento_media_gallery_meta).\n\n"
                         "Example: nacento-sync schema install",
                         no_args_is_help=True, cls=PlainGroup)
app.add_typer(schema_app, name="schema")


@schema_app.command("install", cls=PlainCommand)
def schema_install(ctx: typer.Context) -> None:
    """Create nacento_media_gallery_meta (a no-op if it exists: data from the PHP module is kept).

    Example: nacento-sync --config store.yaml schema install
    """
    cfg = _config(ctx)
    from nacento_sync import magento  # aiomysql: only when a command talks to the database

    created = _schema_call(cfg, magento.install_meta)
    table = cfg.database.table_prefix + magento.META_TABLE
    say(out, f"created table {table}" if created else f"table {table} already exists: nothing to do")


@schema_app.command("uninstall", cls=PlainCommand)
def schema_uninstall(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")] = False,
) -> None:
    """Drop nacento_media_gallery_meta (the remembered ETags; the next sync re-learns them).

    Example: nacento-sync schema uninstall --yes
    """
    cfg = _config(ctx)
    from nacento_sync import magento

    table = cfg.database.table_prefix + magento.META_TABLE
    if not yes:
        if not sys.stdin.isatty():
            error(err, "refusing to drop without confirmation: pass --yes")
            raise typer.Exit(EXIT_USAGE)
        typer.confirm(plain(f"Drop table {table} from database {cfg.database.name!r}?"), abort=True)
    dropped = _schema_call(cfg, magento.uninstall_meta)
    say(out, f"dropped table {table}" if dropped else f"table {table} does not exist: nothing to do")


@schema_app.command("status", cls=PlainCommand)
def schema_status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the status alone as JSON on stdout.")] = False,
) -> None:
    """Say whether the Magento tables and nacento_media_gallery_meta exist, and how the store is shaped.

    First, each setting with where it came from: flag, environment, config file, env.php or default.
    Secrets show only as set / not set. With --json: under config_sources.

    Example: nacento-sync schema status --json

    Exit codes: 0 both exist, 1 one is missing, 2 bad config, 3 database unreachable.
    """
    cfg = _config(ctx)
    if not json_out:  # first: most useful when the database cannot be reached
        _print_sources(cfg)

    from nacento_sync import magento

    async def status(conn, prefix):
        info = await magento.meta_status(conn, prefix)
        try:
            schema = await magento.detect_schema(conn, prefix)
            info.update(magento=True, link_field=schema.link, staging_version=schema.staging_version,
                        roles=list(schema.roles))
        except SchemaError as e:
            info.update(magento=False, problem=str(e))
        return info

    info = _schema_call(cfg, status)
    from nacento_sync.config import value_sources

    info["config_sources"] = value_sources(cfg)
    if json_out:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            if k != "config_sources":
                say(out, f"{k}: {v}")
    raise typer.Exit(EXIT_OK if info["exists"] and info.get("magento") else EXIT_FAILED)


def _print_sources(cfg: Config) -> None:
    """`key: value (source)`, one line per setting; a secret's value never shown."""
    from nacento_sync.config import shown_values, value_sources

    sources, values = value_sources(cfg), shown_values(cfg)
    say(out, "configuration (value, then where it came from):")
    for key, source in sources.items():
        say(out, f"  {key}: {values[key]} ({source})")


def _schema_call(cfg: Config, fn):
    from nacento_sync import magento

    async def go():
        conn = await magento.connect(cfg.database)
        try:
            return await fn(conn, cfg.database.table_prefix)
        finally:
            conn.close()

    return call(go())

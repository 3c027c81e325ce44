"""The command line: parse, load config, wire the adapters to the engine, render, set the exit code.

No SQL and no S3 here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nacento_sync import magento
from nacento_sync.config import Config, ConfigError, load_config
from nacento_sync.engine import Options, run_sync
from nacento_sync.feed import Feed, parse_record
from nacento_sync.models import Item, Rejection
from nacento_sync.report import Report, ReportBuilder, render
from nacento_sync.storage import StorageAccessError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ACCESS = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: Below this many looked-up images, "none found" is not evidence of a wrong bucket or prefix.
ALL_MISSING_THRESHOLD = 10

app = typer.Typer(
    name="nacento-sync",
    help=(
        "Keep Magento 2 product image galleries in sync with a PIM export.\n\n"
        "Images already live in the S3/R2 bucket Magento uses as remote storage; nacento-sync writes only "
        "the gallery rows, labels, positions and roles, and remembers each object's ETag so unchanged "
        "images cost nothing on the next run.\n\n"
        "Exit codes: 0 all SKUs ok (warnings allowed), 1 some SKU failed or a record was rejected, "
        "2 bad usage or config, 3 database or bucket unreachable / access denied / nothing found, "
        "130/143 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
schema_app = typer.Typer(help="Install, remove or inspect nacento-sync's own table (nacento_media_gallery_meta).",
                         no_args_is_help=True)
app.add_typer(schema_app, name="schema")

err = Console(stderr=True, soft_wrap=True)
out = Console()
log = logging.getLogger("nacento_sync")


class ModeChoice(str, Enum):
    merge = "merge"
    replace = "replace"


class EtagChoice(str, Enum):
    auto = "auto"
    head = "head"
    list = "list"


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file. Default: $NACENTO_CONFIG, else ./nacento-sync.yaml.",
                 show_default=False),
]
ModeOpt = Annotated[
    ModeChoice | None,
    typer.Option("--mode", help="merge (default): add and update, never remove. replace: also delete the "
                 "product's images that the export does not list.", show_default=False),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Compute the same report, write nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON report alone on stdout (logs go to stderr).")]


@app.callback()
def _main(ctx: typer.Context, config: ConfigOpt = None) -> None:
    ctx.obj = {"config": str(config) if config else None}
    logging.basicConfig(level=logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=err, show_path=False)])


def _config(ctx: typer.Context, need_storage: bool = False, **overrides) -> Config:
    try:
        cfg = load_config(ctx.obj["config"], overrides)
        if need_storage and cfg.storage is None:
            raise ConfigError("invalid configuration:\n  storage.bucket: Field required "
                              "(config file section storage, or NACENTO_STORAGE__BUCKET)")
        return cfg
    except ConfigError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def sync(
    ctx: typer.Context,
    exports: Annotated[list[str], typer.Argument(
        help="Export files: .ndjson/.jsonl (one {\"sku\", \"images\"} per line), .json (the bulk API body, "
             "{\"items\": [...]} or a list), optionally .gz; - reads stdin.", show_default=False)],
    mode: ModeOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    report_file: Annotated[Path | None, typer.Option("--report", help="Also write the JSON report to FILE.")] = None,
    request_id: Annotated[str | None, typer.Option(
        "--request-id", help="Id echoed in the report. Default: the export's request_id, else a timestamp.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="SKUs per transaction "
                                                   "(config sync.batch_size, default 200).")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Storage requests in flight "
                                                    "(config sync.concurrency, default 32).")] = None,
    etag_strategy: Annotated[EtagChoice | None, typer.Option(
        "--etag-strategy", help="How ETags are found: auto (default: LIST a dispersion folder when that costs "
        "less than HEADs of its images), head (one HEAD per image) or list (always LIST).",
        show_default=False)] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="In replace mode, let an item with an empty "
                                              "image list delete all of its product's images.")] = False,
) -> None:
    """Sync every SKU of one or more PIM exports.

    Example: nacento-sync --config store.yaml sync export.ndjson --json > report.json
    """
    cfg = _config(ctx, need_storage=True, sync={"mode": mode.value if mode else None, "batch_size": batch_size,
                                                "concurrency": concurrency,
                                                "etag_strategy": etag_strategy.value if etag_strategy else None})
    feed = Feed(exports)
    code = _run(cfg, feed, dry_run=dry_run, allow_empty=allow_empty, json_out=json_out, report_file=report_file,
                request_id=lambda: request_id or feed.request_id, total=feed.total_bytes(), done=feed.bytes_read)
    raise typer.Exit(code)


@app.command()
def sku(
    ctx: typer.Context,
    sku: Annotated[str, typer.Argument(help="The product's SKU.", show_default=False)],
    images: Annotated[Path | None, typer.Option("--images", help="JSON file: a list of ImageEntry objects, or "
                                                "{\"images\": [...]} as the REST endpoint takes.")] = None,
    image: Annotated[list[str] | None, typer.Option("--image", help="An image path (repeatable); list order "
                                                    "is gallery order.")] = None,
    mode: ModeOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Sync one SKU's gallery, e.g. nacento-sync sku SKU-001 --image m/y/front.jpg --image m/y/back.jpg"""
    if bool(images) == bool(image):
        err.print("[red]error:[/] give either --images FILE or one or more --image PATH")
        raise typer.Exit(EXIT_USAGE)
    if images:
        try:
            data = json.loads(images.read_text())
        except (OSError, ValueError) as e:
            err.print(f"[red]error:[/] cannot read {images}: {e}")
            raise typer.Exit(EXIT_USAGE) from None
        entries = data.get("images") if isinstance(data, dict) else data
        source = str(images)
    else:
        entries = [{"file_path": p} for p in image or []]
        source = "--image"
    cfg = _config(ctx, need_storage=True, sync={"mode": mode.value if mode else None})
    record = parse_record({"sku": sku, "images": entries}, source, 1)
    code = _run(cfg, [record], dry_run=dry_run, allow_empty=False, json_out=json_out, report_file=None,
                request_id=lambda: None)
    raise typer.Exit(code)


def _run(cfg: Config, records: Iterable[Item | Rejection], *, dry_run: bool, allow_empty: bool, json_out: bool,
         report_file: Path | None, request_id, total: int | None = None, done=lambda: 0) -> int:
    options = Options(cfg.sync.mode, dry_run, allow_empty, cfg.sync.batch_size, cfg.sync.etag_strategy)
    spill = report_file.with_name(report_file.name + ".partial") if report_file else None
    builder = ReportBuilder(None, cfg.sync.mode, dry_run, spill=spill)
    started = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[skus]} SKUs"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("syncing", total=total, skus=0)  # bytes of the export, when known
        skus = 0

        def advance(n: int) -> None:
            nonlocal skus
            skus += n
            progress.update(task, completed=done(), skus=skus)

        interrupted, counters = _call(run_sync(cfg, records, options, builder, handle_signals=True,
                                               on_progress=advance))
    builder.summary.request_id = request_id() or datetime.now(UTC).strftime("sync-%Y%m%dT%H%M%SZ")
    builder.summary.run = {"seconds": round(time.monotonic() - started, 3), "batches": counters.batches,
                           "s3_requests": counters.s3_requests, "sql_write_statements": counters.statements}
    report = _emit(builder, json_out, report_file)
    if counters.fatal:
        err.print(f"[red]error:[/] {counters.fatal}; the run stopped (completed batches are committed, "
                  "re-run to finish)", highlight=False)
        return EXIT_ACCESS
    if interrupted:
        err.print(f"interrupted by {interrupted.name}: stopped after the current batch")
        return EXIT_SIGNAL[interrupted]
    if counters.looked_up >= ALL_MISSING_THRESHOLD and counters.found == 0:
        err.print(f"[red]error:[/] none of the {counters.looked_up} listed images exists in bucket "
                  f"{cfg.storage.bucket!r} under prefix {cfg.storage.prefix!r}: the bucket or storage.prefix "
                  "looks wrong", highlight=False)
        return EXIT_ACCESS
    return EXIT_FAILED if report.failed else EXIT_OK


def _emit(builder: ReportBuilder, json_out: bool, report_file: Path | None) -> Report:
    """Stream the JSON report to FILE (atomically) and/or stdout; render the summary otherwise."""
    if report_file:
        tmp = report_file.with_name(report_file.name + ".tmp")
        with open(tmp, "w") as f:
            report = builder.finish(f)
        os.replace(tmp, report_file)
        report_file.with_name(report_file.name + ".partial").unlink(missing_ok=True)
        if json_out:
            with open(report_file) as f:
                shutil.copyfileobj(f, sys.stdout)
    elif json_out:
        report = builder.finish(sys.stdout)
    else:
        with open(os.devnull, "w") as f:
            report = builder.finish(f)
    sys.stdout.flush()
    if not json_out:
        render(report, out)
    return report


# ---------------------------------------------------------------- schema


@schema_app.command("install")
def schema_install(ctx: typer.Context) -> None:
    """Create nacento_media_gallery_meta (a no-op if it exists: data from the PHP module is kept)."""
    cfg = _config(ctx)
    created = _schema_call(cfg, magento.install_meta)
    table = cfg.database.table_prefix + magento.META_TABLE
    out.print(f"created table {table}" if created else f"table {table} already exists: nothing to do")


@schema_app.command("uninstall")
def schema_uninstall(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")] = False,
) -> None:
    """Drop nacento_media_gallery_meta (the remembered ETags; the next sync re-learns them)."""
    cfg = _config(ctx)
    table = cfg.database.table_prefix + magento.META_TABLE
    if not yes:
        if not sys.stdin.isatty():
            err.print("[red]error:[/] refusing to drop without confirmation: pass --yes")
            raise typer.Exit(EXIT_USAGE)
        typer.confirm(f"Drop table {table} from database {cfg.database.name!r}?", abort=True)
    dropped = _schema_call(cfg, magento.uninstall_meta)
    out.print(f"dropped table {table}" if dropped else f"table {table} does not exist: nothing to do")


@schema_app.command("status")
def schema_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Say whether the Magento tables and nacento_media_gallery_meta exist, and how the store is shaped."""
    cfg = _config(ctx)

    async def status(conn, prefix):
        info = await magento.meta_status(conn, prefix)
        try:
            schema = await magento.detect_schema(conn, prefix)
            info.update(magento=True, link_field=schema.link, staging_version=schema.staging_version,
                        roles=list(schema.roles))
        except magento.SchemaError as e:
            info.update(magento=False, problem=str(e))
        return info

    info = _schema_call(cfg, status)
    if json_out:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            out.print(f"{k}: {v}", highlight=False)
    raise typer.Exit(EXIT_OK if info["exists"] and info.get("magento") else EXIT_FAILED)


def _schema_call(cfg: Config, fn):
    async def go():
        conn = await magento.connect(cfg.database)
        try:
            return await fn(conn, cfg.database.table_prefix)
        finally:
            conn.close()

    return _call(go())


ACCESS_ERRORS: tuple[type[Exception], ...] = (magento.DatabaseAccessError, StorageAccessError)


def _call(coro, access_errors: tuple[type[Exception], ...] = ACCESS_ERRORS):
    """Run a coroutine; access problems exit 3, schema problems 2, each with its one-line message."""
    try:
        return asyncio.run(coro)
    except access_errors as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(EXIT_ACCESS) from None
    except (magento.SchemaError, ConfigError) as e:  # ConfigError: queue.url, checked by the queue commands
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def main() -> None:
    app()


from nacento_sync import cli_async  # noqa: E402,F401  (registers submit/worker/status/requeue)

"""`sync` and `sku`: parse, call `nacento_sync.api.sync`, render its report, map its status to an exit code."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nacento_sync.cli.common import (
    EXIT_ACCESS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGNAL,
    EXIT_USAGE,
    DryRunOpt,
    EtagChoice,
    JsonOpt,
    ModeOpt,
    PlainCommand,
    PurgeOpt,
    _config,
    app,
    err,
    out,
)
from nacento_sync.console import Mode, error, plain, say
from nacento_sync.errors import AccessError, UsageError

if TYPE_CHECKING:  # pydantic (config, feed, report) and rich.progress: imported when a command runs
    from rich.console import Console

    from nacento_sync import SyncResult
    from nacento_sync.config import Config
    from nacento_sync.models import Item, Rejection
    from nacento_sync.report import Report

JournalOpt = Annotated[Path | None, typer.Option(
    "--journal", metavar="FILE", show_default=False,
    help="Write every row the run changes (before and after) to FILE, one JSON line each, for reading or "
    "`undo`; with --dry-run, the rows it would change. Replace mode journals to sync.journal_dir without it.")]


@app.command(cls=PlainCommand)
def sync(
    ctx: typer.Context,
    exports: Annotated[list[str], typer.Argument(
        help="Export files: .ndjson/.jsonl (one {\"sku\", \"images\"} per line), .json (the bulk API body, "
             "{\"items\": [...]} or a list), optionally .gz; - reads stdin.", show_default=False,
        metavar="EXPORT...")],
    mode: ModeOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    report_file: Annotated[Path | None, typer.Option(
        "--report", metavar="FILE", help="Also write the JSON report to FILE (atomically at the end; "
        "FILE.partial holds the results as SKUs finish).", show_default=False)] = None,
    request_id: Annotated[str | None, typer.Option(
        "--request-id", metavar="ID", help="Id echoed in the report. Default: the export's request_id, else a "
        "timestamp.", show_default=False)] = None,
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
    purge_cache: PurgeOpt = False,
    journal_file: JournalOpt = None,
) -> None:
    """Sync every SKU of one or more PIM exports.

    Example: nacento-sync --config store.yaml sync export.ndjson --json > report.json
    """
    from nacento_sync.feed import Feed, FeedError

    cfg = _config(ctx, need_storage=True, sync={"mode": mode.value if mode else None, "batch_size": batch_size,
                                                "concurrency": concurrency,
                                                "etag_strategy": etag_strategy.value if etag_strategy else None,
                                                "purge_cache": purge_cache or None})
    try:
        feed = Feed(exports)
    except FeedError as e:  # `-` with stdin closed
        error(err, e)
        raise typer.Exit(EXIT_USAGE) from None
    code = _run(cfg, feed, dry_run=dry_run, allow_empty=allow_empty, json_out=json_out, report_file=report_file,
                request_id=request_id, total=feed.total_bytes(), done=feed.bytes_read, command="sync",
                journal_file=journal_file)
    raise typer.Exit(code)


@app.command(cls=PlainCommand)
def sku(
    ctx: typer.Context,
    sku: Annotated[str, typer.Argument(help="The product's SKU.", show_default=False, metavar="SKU")],
    images: Annotated[Path | None, typer.Option("--images", metavar="FILE", show_default=False,
                                                help="JSON file: a list of ImageEntry objects, or "
                                                "{\"images\": [...], \"store_roles\": {...}} as the REST "
                                                "endpoint takes.")] = None,
    image: Annotated[list[str] | None, typer.Option("--image", metavar="PATH", show_default=False,
                                                    help="An image path (repeatable); list order "
                                                    "is gallery order.")] = None,
    mode: ModeOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    purge_cache: PurgeOpt = False,
    journal_file: JournalOpt = None,
) -> None:
    """Sync one SKU's gallery (what a PIM's save hook calls per product).

    Example: nacento-sync sku SKU-001 --image m/y/front.jpg --image m/y/back.jpg
    """
    if bool(images) == bool(image):
        error(err, "give either --images FILE or one or more --image PATH")
        raise typer.Exit(EXIT_USAGE)
    if images:
        try:
            data = json.loads(images.read_text())
        except (OSError, ValueError) as e:
            error(err, f"cannot read {images}: {e}")
            raise typer.Exit(EXIT_USAGE) from None
        entries = data.get("images") if isinstance(data, dict) else data
        # {"images": [...], "store_roles": {...}}: the item's store-view roles come along (a bare list has none).
        extra = {"store_roles": data["store_roles"]} if isinstance(data, dict) and "store_roles" in data else {}
        source = str(images)
    else:
        entries = [{"file_path": p} for p in image or []]
        extra = {}
        source = "--image"
    cfg = _config(ctx, need_storage=True, sync={"mode": mode.value if mode else None,
                                                "purge_cache": purge_cache or None})
    from nacento_sync.feed import parse_record

    record = parse_record({"sku": sku, "images": entries, **extra}, source, 1)
    code = _run(cfg, [record], dry_run=dry_run, allow_empty=False, json_out=json_out, report_file=None,
                request_id=None, command="sku", journal_file=journal_file)
    raise typer.Exit(code)


def _run(cfg: Config, records: Iterable[Item | Rejection], *, dry_run: bool, allow_empty: bool, json_out: bool,
         report_file: Path | None, request_id: str | None, total: int | None = None,
         done: Callable[[], int] = lambda: 0, command: str, journal_file: Path | None = None) -> int:
    """Call the library's `sync` under a progress bar, then render its result; returns the exit code.

    The report is written (and the exit code decided) by the library before anything is rendered: a
    failure while rendering never loses the report nor changes the code beyond README's table."""
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from nacento_sync import Options, ReportFileError, sync  # aioboto3 and aiomysql: only when a command syncs

    options = Options.from_config(cfg, dry_run=dry_run, allow_empty=allow_empty)
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[skus]} SKUs", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("syncing", total=total, skus=0)  # bytes of the export, when known
        skus = 0

        def advance(n: int) -> None:
            nonlocal skus
            skus += n
            progress.update(task, completed=done(), skus=skus)

        try:
            result = sync(cfg, records, options, report_file=report_file, json_out=sys.stdout if json_out else None,
                          request_id=request_id, on_progress=advance, handle_signals=True,
                          journal_file=journal_file)
        except AccessError as e:
            error(err, e)
            raise typer.Exit(EXIT_ACCESS) from None
        except ReportFileError as e:  # checked by the library before anything is synced
            error(err, f"--report {plain(e.path)}: {e.problem}")
            raise typer.Exit(EXIT_USAGE) from None
        except UsageError as e:
            error(err, e)
            raise typer.Exit(EXIT_USAGE) from None
    _explain(result, cfg, json_out, command)
    return exit_code(result)


def exit_code(result: SyncResult) -> int:
    """README's exit code for a sync's status."""
    if result.status == "interrupted":
        return EXIT_SIGNAL[result.interrupted]  # type: ignore[index]
    return {"ok": EXIT_OK, "failed": EXIT_FAILED, "access": EXIT_ACCESS}[result.status]


def _explain(result: SyncResult, cfg: Config, json_out: bool, command: str) -> None:
    """The report's console summary and the lines that say why the run ended as it did."""
    if result.report_error:
        error(err, result.report_error)
    if result.report is not None and not json_out:
        if Mode.quiet:
            say(out, one_line(result.report, command))
        else:
            _render(result.report, command)
    if result.would_delete and not json_out and not Mode.quiet:
        say(out, "would delete (dry run, replace mode; first SKUs):")
        for sku_name, paths in result.would_delete:
            say(out, f"  {plain(sku_name)}: " + ", ".join(plain(p) for p in paths))
    if result.stale_images and not cfg.sync.purge_cache:
        say(err, f"{result.stale_images} image(s) changed bytes or were deleted: their resized copies "
                 "(media/catalog/product/cache/) may be stale; re-run with --purge-cache to delete them")
    if result.fatal:
        error(err, f"{result.fatal}; the run stopped (completed batches are committed, re-run to finish)")
    elif result.interrupted:
        say(err, f"interrupted by {result.interrupted.name}: stopped after the current batch")
    elif result.nothing_found:
        assert cfg.storage is not None
        if cfg.storage.backend == "filesystem":
            error(err, f"none of the {result.images_looked_up} listed images exists under {cfg.storage.where}"
                       "/catalog/product: storage.root looks wrong (it must be Magento's pub/media)")
        else:
            error(err, f"none of the {result.images_looked_up} listed images exists in {cfg.storage.where} "
                       f"under prefix {cfg.storage.prefix!r}: the bucket or storage.prefix looks wrong")


def one_line(report: Report, command: str) -> str:
    """The run in one line: `--quiet`'s summary on stdout."""
    st = report.stats
    return (f"nacento-sync {command}{' (dry run)' if report.dry_run else ''} {report.request_id}: "
            f"{st.skus_seen} SKUs, {st.ok} ok, {st.error} failed, {st.rejected} rejected records; images "
            f"{st.inserted} inserted, {st.updated_value} updated_value, {st.updated_meta} updated_meta, "
            f"{st.skipped_no_change} skipped_no_change, {st.deleted} deleted, {st.missing} missing; "
            f"{len(report.changed_product_ids)} products changed"
            + (f"; journal {plain(report.journal)}" if report.journal else ""))


def render(report: Report, console: Console, limit: int = 50, command: str = "sync") -> None:
    """`nacento_sync.report.render` (pydantic, rich tables), imported only when a summary is shown."""
    from nacento_sync.report import render as render_report

    render_report(report, console, limit=limit, command=command)


def _render(report: Report, command: str) -> None:
    """The console summary; should rendering fail, one plain line instead (the exit code is unchanged)."""
    try:
        render(report, out, command=command)
    except Exception as e:
        st = report.stats
        with contextlib.suppress(Exception):
            error(err, f"could not show the summary ({type(e).__name__}: {e}); request {report.request_id}: "
                       f"{st.skus_seen} SKUs seen, {st.ok} ok, {st.error} failed, {st.rejected} rejected records, "
                       f"{st.inserted} images inserted, {st.updated_value} updated_value, {st.updated_meta} "
                       f"updated_meta, {st.deleted} deleted, {st.missing} missing")

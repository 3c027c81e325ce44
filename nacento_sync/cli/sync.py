"""`sync` and `sku`: one run of the engine over an export (or one SKU), its report and exit code."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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
    call,
    err,
    out,
)
from nacento_sync.config import Config
from nacento_sync.console import error, plain, say
from nacento_sync.feed import Feed, FeedError, parse_record
from nacento_sync.models import Item, Rejection
from nacento_sync.report import FanOut, Report, ReportBuilder, render

#: Below this many looked-up images, "none found" is not evidence of a wrong bucket or prefix.
ALL_MISSING_THRESHOLD = 10


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
) -> None:
    """Sync every SKU of one or more PIM exports.

    Example: nacento-sync --config store.yaml sync export.ndjson --json > report.json
    """
    cfg = _config(ctx, need_storage=True, sync={"mode": mode.value if mode else None, "batch_size": batch_size,
                                                "concurrency": concurrency,
                                                "etag_strategy": etag_strategy.value if etag_strategy else None,
                                                "purge_cache": purge_cache or None})
    if report_file and (problem := report_path_problem(report_file)):
        error(err, f"--report {plain(report_file)}: {problem}")
        raise typer.Exit(EXIT_USAGE)
    try:
        feed = Feed(exports)
    except FeedError as e:  # `-` with stdin closed
        error(err, e)
        raise typer.Exit(EXIT_USAGE) from None
    code = _run(cfg, feed, dry_run=dry_run, allow_empty=allow_empty, json_out=json_out, report_file=report_file,
                request_id=lambda: request_id or feed.request_id, total=feed.total_bytes(), done=feed.bytes_read,
                command="sync")
    raise typer.Exit(code)


def report_path_problem(path: Path) -> str | None:
    """Why `--report FILE` could not be written, or None. Checked before anything is synced, by really
    creating (and removing) `FILE.partial` and `FILE.tmp`: permissions, read-only mounts and ACLs all
    answer, whoever runs it. Leaves nothing behind."""
    partial, tmp = (path.with_name(path.name + suffix) for suffix in (".partial", ".tmp"))
    parent = path.parent
    if not parent.is_dir():
        ancestor = parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if ancestor.exists() and not ancestor.is_dir():
            return f"{plain(ancestor)} is not a directory"
        return f"directory {plain(parent)} does not exist"
    for candidate in (path, partial, tmp):
        if candidate.is_dir():
            return f"{plain(candidate)} is a directory"
    for candidate in (partial, tmp):
        try:
            if candidate.exists():
                if not os.access(candidate, os.W_OK):
                    return f"cannot write {plain(candidate)}: permission denied"
                continue
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(candidate)
        except OSError as e:
            return f"cannot create {plain(candidate)}: {e.strerror or e}"
    return None


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
) -> None:
    """Sync one SKU's gallery, e.g. nacento-sync sku SKU-001 --image m/y/front.jpg --image m/y/back.jpg"""
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
    record = parse_record({"sku": sku, "images": entries, **extra}, source, 1)
    code = _run(cfg, [record], dry_run=dry_run, allow_empty=False, json_out=json_out, report_file=None,
                request_id=lambda: None, command="sku")
    raise typer.Exit(code)


def _run(cfg: Config, records: Iterable[Item | Rejection], *, dry_run: bool, allow_empty: bool, json_out: bool,
         report_file: Path | None, request_id, total: int | None = None, done=lambda: 0, command: str) -> int:
    """Sync, then (batches committed) write the report, then render it: a failure after the commit never
    loses the report nor changes the exit code beyond README's table."""
    from nacento_sync.engine import Options, run_sync  # aioboto3 and aiomysql: only when a command syncs

    options = Options(cfg.sync.mode, dry_run, allow_empty, cfg.sync.batch_size, cfg.sync.etag_strategy,
                      purge_cache=cfg.sync.purge_cache)
    spill = report_file.with_name(report_file.name + ".partial") if report_file else None
    builder = ReportBuilder(None, cfg.sync.mode, dry_run, spill=spill)
    started = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[skus]} SKUs", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("syncing", total=total, skus=0)  # bytes of the export, when known
        skus = 0

        def advance(n: int) -> None:
            nonlocal skus
            skus += n
            progress.update(task, completed=done(), skus=skus)

        interrupted, counters = call(run_sync(cfg, records, options, builder, handle_signals=True,
                                               on_progress=advance))
    # Everything below runs after commits: it must not raise, and the report goes out before any rendering.
    try:
        builder.summary.request_id = request_id() or datetime.now(UTC).strftime("sync-%Y%m%dT%H%M%SZ")
    except Exception:  # the feed's request id is only known once it was read; never worth losing the report
        builder.summary.request_id = datetime.now(UTC).strftime("sync-%Y%m%dT%H%M%SZ")
    builder.summary.run = {"seconds": round(time.monotonic() - started, 3), "batches": counters.batches,
                           "s3_requests": counters.s3_requests, "sql_write_statements": counters.statements,
                           "cache_purged": counters.cache_purged, "stale_images": counters.stale_images}
    report, report_ok = _emit(builder, json_out, report_file)
    if report is not None and not json_out:
        _render(report, command)
    if counters.stale_images and not options.purge_cache:
        say(err, f"{counters.stale_images} image(s) changed bytes or were deleted: their resized copies "
                 "(media/catalog/product/cache/) may be stale; re-run with --purge-cache to delete them")
    if counters.fatal:
        error(err, f"{counters.fatal}; the run stopped (completed batches are committed, re-run to finish)")
        code = EXIT_ACCESS
    elif interrupted:
        say(err, f"interrupted by {interrupted.name}: stopped after the current batch")
        code = EXIT_SIGNAL[interrupted]
    elif counters.looked_up >= ALL_MISSING_THRESHOLD and counters.found == 0:
        error(err, f"none of the {counters.looked_up} listed images exists in bucket {cfg.storage.bucket!r} "
                   f"under prefix {cfg.storage.prefix!r}: the bucket or storage.prefix looks wrong")
        code = EXIT_ACCESS
    else:
        code = EXIT_FAILED if report is None or report.failed else EXIT_OK
    return code if report_ok else max(code, EXIT_FAILED)  # a report not written is a failure (README)


def _emit(builder: ReportBuilder, json_out: bool, report_file: Path | None) -> tuple[Report | None, bool]:
    """Stream the JSON report to `FILE.tmp` (renamed to FILE at the end) and/or stdout, at once.

    Returns the console summary (None if the report could not be completed) and whether every asked-for
    output was written. On any failure, `FILE.partial` (every committed SKU's result) is kept and the
    one-line error says where it is."""
    outputs: dict[str, Any] = {}
    tmp = report_file.with_name(report_file.name + ".tmp") if report_file else None
    partial = report_file.with_name(report_file.name + ".partial") if report_file else None
    problems: list[str] = []
    if tmp:
        try:
            outputs["file"] = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed below, whatever happens)
        except OSError as e:
            problems.append(f"cannot write {tmp}: {e.strerror or e}")
    if json_out:
        outputs["stdout"] = sys.stdout
    sink = FanOut(**outputs)
    report: Report | None = None
    try:
        report = builder.finish(sink)
    except Exception as e:
        problems.append(f"the report could not be completed ({type(e).__name__}: {e})")
    for name, e in sink.errors.items():
        problems.append(f"cannot write {tmp if name == 'file' else 'stdout'}: {getattr(e, 'strerror', None) or e}")
    if "file" in outputs:
        written = report is not None and "file" not in sink.errors
        try:
            outputs["file"].close()
            if written:
                os.replace(tmp, report_file)  # type: ignore[arg-type]
        except OSError as e:
            written = False
            problems.append(f"cannot write {report_file}: {e.strerror or e}")
        with contextlib.suppress(OSError):
            (partial if written else tmp).unlink(missing_ok=True)  # type: ignore[union-attr]
    if problems:
        where = f"; every committed SKU's result is in {partial}" if partial and partial.exists() else ""
        error(err, "; ".join(problems) + where)
    return report, not problems


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

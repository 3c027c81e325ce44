"""Commands of asynchronous mode: `submit`, `worker`, `status`, `requeue`.

Wiring and exit codes only; the work is in `nacento_sync.asyncmode` (imported when a command runs: aio-pika
and aioboto3 are not needed for `--help`; nor are asyncio, rich.progress and rich.table).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from nacento_sync.cli.common import EXIT_FAILED, EXIT_OK, ModeOpt, PlainCommand, _config, app, err, out
from nacento_sync.cli.common import call as _call
from nacento_sync.console import Mode, error, plain, say, text, warning
from nacento_sync.errors import UnknownBulk

if TYPE_CHECKING:
    from nacento_sync.asyncmode.bulk import BulkSummary

#: The bulk states `status` maps to exit codes 0 and 1 (asyncmode.bulk's names; that module is imported
#: only when a command runs).
FINISHED_SUCCESSFULLY, FINISHED_WITH_FAILURE = "finished_successfully", "finished_with_failure"
#: `status`: the bulk is not finished yet / no such bulk.
EXIT_NOT_FINISHED, EXIT_UNKNOWN = 4, 5
#: `status --watch`: seconds between refreshes.
WATCH_INTERVAL = 1.0


@app.command("submit", cls=PlainCommand)
def submit_cmd(
    ctx: typer.Context,
    exports: Annotated[list[str], typer.Argument(
        help="Export files, as for sync (.ndjson/.jsonl, .json bulk body, .gz; - reads stdin).", show_default=False,
        metavar="EXPORT...")],
    mode: ModeOpt = None,
    request_id: Annotated[str | None, typer.Option(
        "--request-id", metavar="ID", show_default=False, help="Id named in the bulk's description and each "
        "operation. Default: the export's request_id, else a timestamp.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the async response alone on stdout.")] = False,
) -> None:
    """Queue the SKUs of PIM exports for the workers; answers at once with the bulk's UUID.

    Each valid SKU becomes one operation of a Magento bulk (Bulk Actions log of queue.admin_user_id).

    Example: nacento-sync submit export.ndjson --json > answer.json

    Exit codes: 0 all accepted, 1 some rejected or not published, 2 bad usage or config, 3 unreachable.
    """
    cfg = _config(ctx, sync={"mode": mode.value if mode else None})
    from nacento_sync.asyncmode.submit import SubmitResult, submit

    result: SubmitResult = _call(submit(cfg, exports, mode=cfg.sync.mode, request_id=request_id))
    if result.bulk_uuid and cfg.queue.admin_user_id is None:
        warning(err, f"queue.admin_user_id is not set: no admin will see bulk {result.bulk_uuid} "
                "in System › Action Logs › Bulk Actions")
    if json_out:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
        sys.stdout.flush()
    else:
        rejected = [i for i in result.request_items if i.status != "accepted"]
        say(out, f"bulk {result.bulk_uuid or '-'} (request {result.request_id}): {result.accepted} accepted, "
                 f"{len(rejected)} rejected")
        if rejected and not Mode.quiet:
            from rich.table import Table

            table = Table(title=Text(f"Rejected items ({len(rejected)})"), title_justify="left")
            table.add_column("id", justify="right")
            table.add_column("error", overflow="fold")
            for i in rejected[:50]:
                table.add_row(text(i.id), text(i.error_message or ""))
            out.print(table)
            if len(rejected) > 50:
                say(out, f"… and {len(rejected) - 50} more (see --json)")
        if result.bulk_uuid:
            say(out, f"follow it with: nacento-sync status {result.bulk_uuid} --watch")
    raise typer.Exit(EXIT_FAILED if result.errors else EXIT_OK)


@app.command("worker", cls=PlainCommand)
def worker_cmd(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=65535, help="SKUs in flight (the prefetch window). Default: twice "
        "sync.batch_size.", show_default=False)] = None,
    max_messages: Annotated[int | None, typer.Option(
        "--max-messages", min=1, help="Stop after taking this many messages.", show_default=False)] = None,
    idle_exit: Annotated[float | None, typer.Option(
        "--idle-exit", min=0, help="Stop when nothing is in flight, no retry is pending and no message "
        "arrived for SECONDS.", metavar="SECONDS", show_default=False)] = None,
) -> None:
    """Consume the queue: sync each message's SKU with the engine and record it in its Magento operation.

    Runs until SIGTERM/SIGINT (what is held is finished and acked), --max-messages or --idle-exit.

    Example: nacento-sync worker --idle-exit 60

    Exit codes: 0 stopped normally, 2 bad config, 3 database, bucket or
    broker unreachable at start, 130 a second signal stopped it at once
    (what it held is redelivered).
    """
    cfg = _config(ctx, need_storage=True)
    import asyncio

    from nacento_sync.asyncmode.worker import Worker, WorkerOptions

    options = WorkerOptions(concurrency or 2 * cfg.sync.batch_size, max_messages, idle_exit)
    try:
        _call(Worker(cfg, options).run(handle_signals=True))
    except (KeyboardInterrupt, asyncio.CancelledError):  # a second signal: stopped at once
        raise typer.Exit(130) from None
    raise typer.Exit(EXIT_OK)


@app.command("status", cls=PlainCommand)
def status_cmd(
    ctx: typer.Context,
    bulk_uuid: Annotated[str, typer.Argument(help="The bulk's UUID, as submit printed it.", show_default=False,
                                             metavar="BULK_UUID")],
    json_out: Annotated[bool, typer.Option("--json", help="Print bulk_uuid, state, operation_count, counts "
                                           "and failed as JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh with a progress bar until the bulk is "
                                        "finished.")] = False,
) -> None:
    """A bulk's operations per status, its state (Magento's rule) and its failed SKUs.

    Example: nacento-sync status 0f8fad5b-d9cb-469f-a165-70867728950e --watch

    Exit codes: 0 finished successfully, 1 finished with failures,
    2 bad usage or config, 3 database unreachable, 4 not finished yet,
    5 unknown bulk.

    With --json, an unknown bulk prints {"bulk_uuid": "…", "error": "unknown bulk"}.
    """
    cfg = _config(ctx)
    try:
        from nacento_sync.asyncmode.status import status

        summary = _call(status(cfg, bulk_uuid))
        if watch and summary.state not in (FINISHED_SUCCESSFULLY, FINISHED_WITH_FAILURE):
            summary = _watch(cfg, summary)
    except UnknownBulk as e:
        if json_out:
            sys.stdout.write(json.dumps({"bulk_uuid": bulk_uuid, "error": "unknown bulk"}) + "\n")
        error(err, e)
        raise typer.Exit(EXIT_UNKNOWN) from None
    if json_out:
        sys.stdout.write(json.dumps(summary.as_json()) + "\n")
    elif Mode.quiet:
        say(out, f"bulk {summary.bulk_uuid}: {summary.state}, {summary.done} of {summary.operation_count} "
                 f"operations done, {len(summary.failed)} failed")
    else:
        _render_status(summary)
    raise typer.Exit({FINISHED_SUCCESSFULLY: EXIT_OK, FINISHED_WITH_FAILURE: EXIT_FAILED}.get(
        summary.state, EXIT_NOT_FINISHED))


def _watch(cfg, summary: BulkSummary) -> BulkSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = max(summary.operation_count, sum(summary.counts.values()))
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as progress:
        task = progress.add_task(plain(f"bulk {summary.bulk_uuid}"), total=total or None, completed=summary.done)
        while summary.state not in (FINISHED_SUCCESSFULLY, FINISHED_WITH_FAILURE):
            time.sleep(WATCH_INTERVAL)
            from nacento_sync.asyncmode.status import status

            summary = _call(status(cfg, summary.bulk_uuid))
            progress.update(task, completed=summary.done, description=plain(
                f"bulk {summary.bulk_uuid} ({summary.state.replace('_', ' ')})"))
    return summary


def _render_status(s: BulkSummary) -> None:
    """The bulk as tables; every value read from Magento's rows is plain text."""
    from rich.table import Table

    table = Table(title=text(f"bulk {s.bulk_uuid}: {s.state.replace('_', ' ')}"), show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right", overflow="fold")
    table.add_row("description", text(s.description or "-"))
    table.add_row("operations", text(s.operation_count))
    for name, n in s.counts.items():
        table.add_row(text(name.replace("_", " ")), text(n))
    out.print(table)
    if s.failed:
        failed = Table(title=Text(f"Failed SKUs ({len(s.failed)})"), title_justify="left")
        for col in ("operation", "sku", "status", "error_code", "message"):
            failed.add_column(col, overflow="fold")
        for f in s.failed[:50]:
            failed.add_row(text(f["operation_key"]), text(f["sku"] or "-"), text(f["status"]), text(f["error_code"]),
                           text(f["result_message"] or ""))
        out.print(failed)
        if len(s.failed) > 50:
            say(out, f"… and {len(s.failed) - 50} more (see --json)")


@app.command("requeue", cls=PlainCommand)
def requeue_cmd(
    ctx: typer.Context,
    bulk_uuid: Annotated[str, typer.Argument(help="The bulk whose parked operations to re-drive.",
                                             show_default=False, metavar="BULK_UUID")],
) -> None:
    """Republish a bulk's parked (status 2) operations and take their copies out of the failed queue.

    Example: nacento-sync requeue 0f8fad5b-d9cb-469f-a165-70867728950e

    Exit codes: 0 done (also with nothing parked), 1 not all published, 2 bad config, 3 unreachable, 5 unknown bulk.
    """
    cfg = _config(ctx)
    try:
        from nacento_sync.asyncmode.status import requeue

        res = _call(requeue(cfg, bulk_uuid))
    except UnknownBulk as e:
        error(err, e)
        raise typer.Exit(EXIT_UNKNOWN) from None
    say(out, f"requeued {res.requeued} operation(s) of bulk {bulk_uuid}; removed {res.removed_copies} parked "
             f"cop{'y' if res.removed_copies == 1 else 'ies'} from the failed queue")
    if res.not_published:
        error(err, f"{res.not_published} operation(s) could not be published and stay parked")
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)

"""The library API: what the CLI does, as typed calls (`nacento_sync` re-exports these names, lazily).

`sync` runs the engine over records, writes the JSON report (to a file atomically and/or a stream) and
returns a `SyncResult` whose `status` the CLI maps to an exit code; `submit`, `bulk_status` and `requeue`
are asynchronous mode's calls. Every call is blocking (it runs its own event loop); errors are raised by
type (`errors.UsageError`, `errors.AccessError`, `errors.UnknownBulk`). Nothing here prints: rendering
belongs to the caller (the CLI renders with rich).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from nacento_sync import journal
from nacento_sync.config import Config
from nacento_sync.engine import STAGES, Options, run_sync
from nacento_sync.errors import UsageError
from nacento_sync.models import Item, Rejection
from nacento_sync.report import Report, ReportBuilder, partial_path, report_path_problem, write_report

if TYPE_CHECKING:  # asynchronous mode's modules import aio-pika: only when one of its calls runs
    from nacento_sync.asyncmode.bulk import BulkSummary
    from nacento_sync.asyncmode.status import RequeueResult
    from nacento_sync.asyncmode.submit import SubmitResult

#: Below this many looked-up images, "none found" is not evidence of a wrong bucket or prefix.
ALL_MISSING_THRESHOLD = 10

Status = Literal["ok", "failed", "access", "interrupted"]


class ReportFileError(UsageError):
    """The report file cannot be written (checked before anything is synced)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"report file {path}: {problem}")
        self.path, self.problem = path, problem


@dataclass
class SyncResult:
    """What a `sync` did: the report's summary, the run's figures and how the run ended."""

    #: The summary (stats, changed_product_ids, the first failed or warned SKUs and rejected records;
    #: every SKU's result is in the JSON written to `report_file` / `json_out`). None if the report could
    #: not be completed.
    report: Report | None
    seconds: float
    batches: int
    #: Storage requests by type (HEAD, LIST, DELETE), and "retries" / "throttled" when there were any.
    s3_requests: dict[str, int] = field(default_factory=dict)
    sql_write_statements: int = 0
    #: Resized copies deleted (or that a dry run would delete) with `purge_cache`.
    cache_purged: int = 0
    #: Images whose resized copies went stale (bytes changed or deleted).
    stale_images: int = 0
    images_looked_up: int = 0
    images_found: int = 0
    #: The signal that stopped the run after its current batch (`handle_signals=True`), if one did.
    interrupted: signal.Signals | None = None
    #: Why the run stopped early (the database connection was lost), if it did; committed batches stay.
    fatal: str | None = None
    #: Why an asked-for report output was not written (it names the kept `FILE.partial`), if one was not.
    report_error: str | None = None
    #: Database connections replaced after a loss mid-run (`database.retry_seconds`), and the seconds
    #: the run spent reconnecting.
    reconnects: int = 0
    seconds_reconnecting: float = 0.0
    #: The change journal written (`journal_file`, or replace mode's default one), if any.
    journal: Path | None = None
    #: A replace-mode dry run: the first SKUs that would lose images, and those images' paths.
    would_delete: list[tuple[str, list[str]]] = field(default_factory=list)
    #: Wall seconds per stage of the engine (`engine.STAGES`: feed, products, storage, lock, read, plan, write,
    #: commit, purge), summed over batches; the look-up stages overlap the transactions.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def nothing_found(self) -> bool:
        """At least `ALL_MISSING_THRESHOLD` images were looked up and none exists: the bucket or
        `storage.prefix` is most likely wrong."""
        return self.images_looked_up >= ALL_MISSING_THRESHOLD and self.images_found == 0

    @property
    def status(self) -> Status:
        """How the run ended, first match wins: `access` (the database was lost mid-run, or nothing was
        found in the bucket), `interrupted` (by a signal), `failed` (a SKU failed, a record was rejected,
        or the report was not written), else `ok` (warnings allowed)."""
        if self.fatal:
            return "access"
        if self.interrupted:
            return "interrupted"
        if self.nothing_found:
            return "access"
        if self.report is None or self.report.failed or self.report_error:
            return "failed"
        return "ok"


def sync(
    config: Config,
    records: Iterable[Item | Rejection],
    options: Options | None = None,
    *,
    report_file: Path | None = None,
    json_out: TextIO | None = None,
    request_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    handle_signals: bool = False,
    journal_file: Path | None = None,
) -> SyncResult:
    """Sync every record (an `Item` to apply, a `Rejection` to report), then write the JSON report.

    - `options`: default `Options.from_config(config)`.
    - `report_file`: written atomically when the run ends (through `FILE.tmp`); `FILE.partial` holds the
      results as SKUs finish and is kept whenever the report is not written. Checked before anything is
      synced (`ReportFileError`); a run that fails at start leaves no `FILE.partial` behind.
    - `json_out`: a text stream that gets the same JSON document.
    - `request_id`: default the records' `request_id` (a `Feed` of a bulk JSON body), else a timestamp.
    - `on_progress(n)`: called as each batch of `n` SKUs is done.
    - `handle_signals`: SIGINT/SIGTERM stop the run after the current batch (a second one at once); the
      signal is in `SyncResult.interrupted`. Only from the main thread.
    - `journal_file`: write the change journal there (README, "Change journal"; a dry run writes the
      lines it would write). Without it, a replace-mode run that writes journals to `sync.journal_dir`
      (a new file, 0600; older default journals than `sync.journal_keep_days` are deleted). Checked
      before anything is synced (`journal.JournalFileError`, a `UsageError`).

    Raises `AccessError` when the database or the bucket cannot be used at start, `UsageError` for a
    missing meta table or an unusable `report_file`. Once batches have committed nothing raises: a report
    that could not be written is `SyncResult.report_error`.
    """
    options = options or Options.from_config(config)
    if report_file is not None and (problem := report_path_problem(report_file)):
        raise ReportFileError(report_file, problem)
    journal_out = _open_journal(config, options, journal_file, _request_id(request_id, records))
    spill = partial_path(report_file) if report_file is not None else None
    try:
        with ReportBuilder(None, options.mode, options.dry_run, spill=spill) as builder:
            return _sync(config, records, options, builder, report_file, json_out, request_id, on_progress,
                         handle_signals, journal_out)
    except BaseException:  # the run could not start (a server unreachable…): no empty journal is left
        if journal_out is not None and journal_out.rows == 0:
            journal_out.close()
            journal_out.path.unlink(missing_ok=True)
        raise
    finally:
        if journal_out is not None:
            journal_out.close()


def _open_journal(config: Config, options: Options, given: Path | None, request_id: str) -> journal.JournalFile | None:
    """The journal to write, opened before anything is synced: `given`, else replace mode's default one."""
    if given is not None:
        return journal.JournalFile(given)
    if options.mode != "replace" or options.dry_run:
        return None
    directory = journal.default_dir(config.sync.journal_dir)
    journal.prune(directory, config.sync.journal_keep_days)
    return journal.create_default(directory, request_id)


def _sync(config: Config, records: Iterable[Item | Rejection], options: Options, builder: ReportBuilder,
          report_file: Path | None, json_out: TextIO | None, request_id: str | None,
          on_progress: Callable[[int], None] | None, handle_signals: bool,
          journal_out: journal.JournalFile | None) -> SyncResult:
    started = time.monotonic()
    interrupted, counters = asyncio.run(run_sync(config, records, options, builder,
                                                 handle_signals=handle_signals,
                                                 on_progress=on_progress or (lambda _n: None),
                                                 journal_file=journal_out,
                                                 request_id=_request_id(request_id, records)))
    # Batches are committed: nothing below may raise, and the report goes out before anything else.
    result = SyncResult(None, round(time.monotonic() - started, 3), counters.batches,
                        dict(counters.s3_requests), counters.statements, counters.cache_purged,
                        counters.stale_images, counters.looked_up, counters.found, interrupted, counters.fatal,
                        reconnects=counters.reconnects, seconds_reconnecting=counters.seconds_down,
                        stage_seconds={k: round(counters.stage_seconds[k], 3) for k in STAGES
                                       if k in counters.stage_seconds})
    builder.summary.request_id = _request_id(request_id, records)
    result.journal = journal_out.path if journal_out is not None else None
    result.would_delete = list(counters.would_delete)
    builder.summary.journal = str(result.journal) if result.journal else None
    builder.summary.run = {"seconds": result.seconds, "batches": result.batches,
                           "s3_requests": result.s3_requests, "sql_write_statements": result.sql_write_statements,
                           "cache_purged": result.cache_purged, "stale_images": result.stale_images,
                           "reconnects": result.reconnects, "seconds_reconnecting": result.seconds_reconnecting,
                           "stage_seconds": result.stage_seconds}
    stream_name = "stdout" if json_out is sys.stdout else str(getattr(json_out, "name", "the JSON stream"))
    result.report, result.report_error = write_report(builder, report_file, json_out, stream_name)
    return result


def _request_id(given: str | None, records: Iterable[Item | Rejection]) -> str:
    """The given id, else the feed's (known once it was read), else a timestamp."""
    try:
        found = given or getattr(records, "request_id", None)
    except Exception:  # a feed's property failing is never worth losing the report
        found = None
    return found if isinstance(found, str) and found else datetime.now(UTC).strftime("sync-%Y%m%dT%H%M%SZ")


def submit(config: Config, exports: list[str], *, mode: str | None = None,
           request_id: str | None = None) -> SubmitResult:
    """Asynchronous mode: validate the exports, write a Magento bulk (one operation per valid SKU) and
    publish its messages for the workers. `mode` defaults to `config.sync.mode`, `request_id` to the
    export's, else a timestamp. Raises `AccessError` (broker first: nothing is written when it cannot be
    reached) and `UsageError` (bulk tables missing, bad `queue.url`)."""
    from nacento_sync.asyncmode.submit import submit as submit_async

    return asyncio.run(submit_async(config, exports, mode=mode, request_id=request_id))


def bulk_status(config: Config, bulk_uuid: str) -> BulkSummary:
    """A bulk's progress from Magento's rows: operations per status, the bulk's state by Magento's rule,
    the failed SKUs with their messages. Raises `UnknownBulk` when no bulk has this UUID."""
    from nacento_sync.asyncmode.status import status

    return asyncio.run(status(config, bulk_uuid))


def requeue(config: Config, bulk_uuid: str) -> RequeueResult:
    """Republish a bulk's parked operations (status 2) from their rows and set them back to open.
    Raises `UnknownBulk` when no bulk has this UUID."""
    from nacento_sync.asyncmode.status import requeue as requeue_async

    return asyncio.run(requeue_async(config, bulk_uuid))

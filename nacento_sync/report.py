"""The run report: the original module's sync-bulk response shape, plus `deleted`, `missing`, `rejected`.

Results are merged per SKU (a SKU sent twice keeps one result), rendered as JSON or as rich tables.
Writing the report runs after batches have committed, so nothing in it may fail on a value: `to_json`
is total, a failing output sink (`FanOut`) never stops the others, `write_report` never raises, and
every console cell is plain text.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import re
import tempfile
from array import array
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nacento_sync import __version__
from nacento_sync.codes import WARNINGS
from nacento_sync.console import plain, text
from nacento_sync.models import Rejection, sku_key
from nacento_sync.plan import ImageStats
from nacento_sync.results import sku_result

#: Every warning is "<code>: <message>" with one of these codes (README documents them): see codes.Code.
WARNING_CODES = WARNINGS
COUNTERS = ImageStats.COUNTERS


#: Lone surrogates: a value read from a file name or JSON escape that is not valid Unicode text.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _dump(data: Any) -> str:
    """Readable JSON (UTF-8 text as is) in which a lone surrogate, which UTF-8 cannot encode, is
    written as its `\\udxxx` escape: the JSON decodes back to the exact value."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False))


def to_json(data: Any) -> str:
    """JSON text of report data that cannot fail: should the readable form ever raise, the same value
    is written ASCII-escaped (any object it cannot encode as its repr)."""
    try:
        return _dump(data)
    except Exception:
        return json.dumps(data, ensure_ascii=True, default=repr, skipkeys=True)


class FanOut:
    """A text sink writing to several outputs (`--report FILE`, stdout), where one failing output
    (a full disk, a closed pipe) is dropped and remembered instead of stopping the others."""

    def __init__(self, **outputs: TextIO) -> None:
        self.outputs = dict(outputs)
        self.errors: dict[str, Exception] = {}

    def write(self, data: str) -> None:
        for name, output in list(self.outputs.items()):
            try:
                output.write(data)
            except Exception as e:
                self.errors[name] = e
                del self.outputs[name]

    def flush(self) -> None:
        self.write("")
        for name, output in list(self.outputs.items()):
            try:
                output.flush()
            except Exception as e:
                self.errors[name] = e
                del self.outputs[name]


class ImageStatsModel(BaseModel):
    inserted: int = 0
    updated_value: int = 0
    updated_meta: int = 0
    skipped_no_change: int = 0
    deleted: int = 0
    missing: int = 0
    deletions_held: int = 0
    warnings: list[str] = Field(default_factory=list)


class SkuResult(BaseModel):
    sku: str
    product_id: int | None = None
    image_stats: ImageStatsModel = Field(default_factory=ImageStatsModel)
    error: str | None = None


class Stats(BaseModel):
    skus_seen: int = 0
    ok: int = 0
    error: int = 0
    inserted: int = 0
    updated_value: int = 0
    updated_meta: int = 0
    skipped_no_change: int = 0
    deleted: int = 0
    missing: int = 0
    #: SKUs whose replace-mode deletions and role resets were held back because a listed object is missing.
    deletions_held: int = 0
    rejected: int = 0


class RejectedRecord(BaseModel):
    source: str
    error: str


class Report(BaseModel):
    """The whole report, as written to `--report FILE` / `--json` (and parsed back by tests)."""

    request_id: str | None = None
    mode: str = "merge"
    dry_run: bool = False
    #: The nacento-sync version that wrote the report.
    version: str = __version__
    #: The change journal of the run (README, "Change journal"), if one was written.
    journal: str | None = None
    results: list[SkuResult] = Field(default_factory=list)
    rejected: list[RejectedRecord] = Field(default_factory=list)
    stats: Stats = Field(default_factory=Stats)
    #: entity_ids whose gallery or roles were written: what to reindex / cache-clean (tag cat_p_<id>).
    changed_product_ids: list[int] = Field(default_factory=list)
    #: Figures of the run: seconds, batches, S3 requests by type, SQL write statements.
    run: dict[str, Any] = Field(default_factory=dict)
    #: How many SKUs failed or warned in all (`results` of the console summary holds the first ones).
    notable_count: int = Field(default=0, exclude=True)

    @property
    def failed(self) -> bool:
        return bool(self.stats.error or self.stats.rejected)


class ReportBuilder:
    """Collects outcomes as batches finish, with memory that does not grow with the run.

    Results and rejections are appended to spill files as they come (`FILE.partial` next to
    `--report FILE`, or a temporary file); only counters, the changed product ids (4 bytes each), the
    keys of SKUs seen more than once, and the first `console_limit` failed or warned SKUs stay in
    memory. `finish` streams the final JSON document, merging a repeated SKU's results into one.

    Use it as a context manager: leaving the block closes the spill files and, when the block raised
    before any result was spilled (a run that failed at start), removes the empty `FILE.partial`. A
    spill holding results is always kept: those SKUs are committed.
    """

    def __init__(self, request_id: str | None, mode: str, dry_run: bool, *, spill: Path | None = None,
                 console_limit: int = 1000) -> None:
        self.summary = Report(request_id=request_id, mode=mode, dry_run=dry_run)
        self.console_limit = console_limit
        # Closed by `close()` (the context manager's exit, or `finish`).
        self._results: IO[str] = (open(spill, "w+", encoding="utf-8") if spill  # noqa: SIM115
                                  else tempfile.TemporaryFile("w+", encoding="utf-8"))  # noqa: SIM115
        self._rejected: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._repeated: set[str] = set()
        self._changed = array("I")
        self.rejected_count = 0
        self._spill = spill

    def __enter__(self) -> ReportBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
        if exc_type is not None and self._spill is not None:
            with contextlib.suppress(OSError):
                if self._spill.stat().st_size == 0:
                    self._spill.unlink()

    def close(self) -> None:
        """Close the spill files (`finish` does too); a spill file on disk stays where it is."""
        for spill in (self._results, self._rejected):
            with contextlib.suppress(OSError):
                spill.close()

    def reject(self, rejection: Rejection) -> None:
        self.rejected_count += 1
        record = RejectedRecord(source=rejection.source, error=rejection.error)
        self._rejected.write(to_json(record.model_dump(mode="json")) + "\n")

    def repeated(self, sku: str) -> None:
        """Tell the builder a SKU comes again: its results are merged when the report is written."""
        self._repeated.add(sku_key(sku))

    def add(
        self,
        sku: str,
        *,
        product_id: int | None = None,
        stats: ImageStats | None = None,
        error: str | None = None,
        warnings: list[str] | tuple[str, ...] = (),
        changed: bool = False,
    ) -> None:
        result = sku_result(sku, product_id=product_id, stats=stats, error=error, warnings=warnings)
        if changed and product_id is not None:
            self._changed.append(product_id)
        self._results.write(to_json(result) + "\n")

    def flush(self) -> None:
        """Push the spilled results to the file: called once per committed batch (a `FILE.partial` left by a
        killed run then holds every committed SKU), not once per SKU."""
        self._results.flush()

    def finish(self, out: TextIO | FanOut) -> Report:
        """Write the final JSON document to `out`; return the summary (stats, first failures) for the console.

        Spilled lines are copied as they were written (already JSON); only merged results are re-encoded."""
        r = self.summary
        st = Stats(rejected=self.rejected_count)
        notable: list[SkuResult] = []
        merged: dict[str, SkuResult] = {}

        def emit(result: SkuResult, line: str | None, first: bool) -> None:
            st.skus_seen += 1
            if result.error:
                st.error += 1
            else:
                st.ok += 1
            for name in COUNTERS:
                setattr(st, name, getattr(st, name) + getattr(result.image_stats, name))
            if result.error or result.image_stats.warnings:
                r.notable_count += 1
                if len(notable) < self.console_limit:
                    notable.append(result)
            out.write(("\n" if first else ",\n") + (line or to_json(result.model_dump(mode="json"))))

        out.write("{" + f'"request_id": {to_json(r.request_id)}, "mode": {to_json(r.mode)}, '
                  f'"dry_run": {to_json(r.dry_run)}, "version": {to_json(r.version)}, '
                  f'"journal": {to_json(r.journal)},\n"results": [')
        first = True
        self._results.seek(0)
        for line in self._results:
            result = SkuResult.model_validate(json.loads(line))
            key = sku_key(result.sku)
            if key in self._repeated:
                _merge_into(merged, key, result)
                continue
            emit(result, line.rstrip("\n"), first)
            first = False
        for result in merged.values():
            emit(result, None, first)
            first = False
        out.write("\n],\n\"rejected\": [")
        self._rejected.seek(0)
        for i, line in enumerate(self._rejected):
            out.write(("\n" if i == 0 else ",\n") + line.rstrip("\n"))
            if i < self.console_limit:
                r.rejected.append(RejectedRecord.model_validate(json.loads(line)))
        changed = sorted(set(self._changed))
        out.write(f"\n],\n\"stats\": {to_json(st.model_dump(mode='json'))},\n\"run\": {to_json(r.run)},\n"
                  f"\"changed_product_ids\": {to_json(changed)}}}\n")
        out.flush()
        self.close()
        r.stats, r.results, r.changed_product_ids = st, notable, changed
        return r


def _merge_into(merged: dict[str, SkuResult], key: str, result: SkuResult) -> None:
    prev = merged.get(key)
    if prev is None:
        merged[key] = result
        return
    prev.product_id = result.product_id if result.product_id is not None else prev.product_id
    prev.error = prev.error or result.error
    for name in COUNTERS:
        merge = max if name in ImageStats.FLAGS else operator.add
        setattr(prev.image_stats, name, merge(getattr(prev.image_stats, name), getattr(result.image_stats, name)))
    prev.image_stats.warnings.extend(result.image_stats.warnings)


def partial_path(report_file: Path) -> Path:
    """`FILE.partial`: every committed SKU's result, one JSON line each, as the run goes."""
    return report_file.with_name(report_file.name + ".partial")


def _tmp_path(report_file: Path) -> Path:
    return report_file.with_name(report_file.name + ".tmp")


def report_path_problem(path: Path) -> str | None:
    """Why a report FILE could not be written, or None. Checked before anything is synced, by really
    creating (and removing) `FILE.partial` and `FILE.tmp`: permissions, read-only mounts and ACLs all
    answer, whoever runs it. Leaves nothing behind."""
    partial, tmp = partial_path(path), _tmp_path(path)
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


def write_report(builder: ReportBuilder, report_file: Path | None = None, stream: TextIO | None = None,
                 stream_name: str = "stdout") -> tuple[Report | None, str | None]:
    """Stream the JSON report to `FILE.tmp` (renamed to FILE at the end) and/or `stream`, at once.

    Never raises: returns the summary (None if the report could not be completed) and, when an asked-for
    output was not written, the one-line reason. On any failure, `FILE.partial` (every committed SKU's
    result) is kept and the reason says where it is."""
    outputs: dict[str, Any] = {}
    tmp = _tmp_path(report_file) if report_file else None
    partial = partial_path(report_file) if report_file else None
    problems: list[str] = []
    if tmp:
        try:
            outputs["file"] = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed below, whatever happens)
        except OSError as e:
            problems.append(f"cannot write {tmp}: {e.strerror or e}")
    if stream is not None:
        outputs["stream"] = stream
    sink = FanOut(**outputs)
    report: Report | None = None
    try:
        report = builder.finish(sink)
    except Exception as e:
        problems.append(f"the report could not be completed ({type(e).__name__}: {e})")
    for name, failure in sink.errors.items():
        where = tmp if name == "file" else stream_name
        problems.append(f"cannot write {where}: {getattr(failure, 'strerror', None) or failure}")
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
    if not problems:
        return report, None
    where = f"; every committed SKU's result is in {partial}" if partial and partial.exists() else ""
    return report, "; ".join(problems) + where


def render(report: Report, console: Console, limit: int = 50, command: str = "sync") -> None:
    """A readable summary: the counters, then the SKUs that failed or warned, then rejected records.

    `command` names the run in the title (`sync`, `sku`). Every value from the export or the servers
    (SKUs, request id, warnings, sources) is plain text: see nacento_sync.console."""
    st = report.stats
    title = f"nacento-sync {command}" + (" dry run (nothing written)" if report.dry_run else "") + \
        f" — mode {plain(report.mode)}"
    summary = Table(title=Text(title), show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rows: list[tuple[str, Any, str | None]] = [
        ("request_id", report.request_id or "-", None),
        *([("journal", report.journal, None)] if report.journal else []),
        ("SKUs seen", st.skus_seen, None),
        ("ok", st.ok, None),
        ("error", st.error, "red" if st.error else None),
        ("rejected records", st.rejected, "red" if st.rejected else None),
        ("images inserted", st.inserted, None),
        ("updated_value", st.updated_value, None),
        ("updated_meta", st.updated_meta, None),
        ("skipped_no_change", st.skipped_no_change, None),
        ("deleted", st.deleted, None),
        ("missing", st.missing, "yellow" if st.missing else None),
        ("deletions held (replace)", st.deletions_held, "yellow" if st.deletions_held else None),
        ("products changed", len(report.changed_product_ids), None),
    ]
    for name, value, style in rows:
        summary.add_row(Text(name), text(value, style))
    console.print(summary)

    notable = report.results  # the first failed or warned SKUs only
    if notable:
        table = Table(title=Text(f"SKUs with errors or warnings ({report.notable_count})"), title_justify="left")
        for col in ("sku", "product_id", "error", "warnings"):
            table.add_column(col, overflow="fold")
        for r in notable[:limit]:
            table.add_row(text(r.sku), text(r.product_id or "-"), text(r.error or ""),
                          Text("\n").join(text(w) for w in r.image_stats.warnings))
        console.print(table)
        if report.notable_count > limit:
            console.print(Text(f"… and {report.notable_count - limit} more (see --json or --report FILE)"))
    if report.rejected:
        table = Table(title=Text(f"Rejected records ({st.rejected})"), title_justify="left")
        table.add_column("source", overflow="fold")
        table.add_column("error", overflow="fold")
        for rej in report.rejected[:limit]:
            table.add_row(text(rej.source), text(rej.error))
        console.print(table)
        if st.rejected > limit:
            console.print(Text(f"… and {st.rejected - limit} more"))

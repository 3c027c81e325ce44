"""The run report: the original module's sync-bulk response shape, plus `deleted`, `missing`, `rejected`.

Results are merged per SKU (a SKU sent twice keeps one result), rendered as JSON or as rich tables.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from nacento_sync.models import Rejection, sku_key
from nacento_sync.plan import ImageStats

#: Every warning is "<code>: <message>" with one of these codes (README documents them).
WARNING_CODES = {
    "unknown_role": "a role that is not a Magento image role was ignored",
    "duplicate_role": "two images claimed one role; the later one keeps it",
    "duplicate_image": "one image listed twice in an item; the later entry wins",
    "duplicate_sku": "a SKU appeared more than once; the later item wins (same batch) or applies after",
    "missing_object": "the image's object is not in the bucket; it was not inserted and its roles not written",
    "legacy_path": "an entry stored without the leading slash was respelled to Magento's form",
    "duplicate_entry": "two entries of the product had the same path; the extra one was removed",
    "duplicate_value_rows": "an entry had several store-0 value rows; the extra ones were removed",
    "shared_entry": "a gallery row shared with another product was left alone; this product got its own",
    "staging_future_rows": "Adobe Commerce scheduled updates of the product were left unchanged",
    "empty_image_list": "replace mode with an empty image list deleted nothing (see --allow-empty)",
    "all_missing": "replace mode deleted nothing because none of the listed objects exists",
    "role_unavailable": "the store has no such role attribute (e.g. swatch_image without Magento_Swatches)",
    "storage_error": "a storage request failed after retries; the SKU was not written",
    "database_error": "the SKU's transaction failed; nothing was written for it",
}
COUNTERS = ImageStats.COUNTERS


class ImageStatsModel(BaseModel):
    inserted: int = 0
    updated_value: int = 0
    updated_meta: int = 0
    skipped_no_change: int = 0
    deleted: int = 0
    missing: int = 0
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
    rejected: int = 0


class RejectedRecord(BaseModel):
    source: str
    error: str


class Report(BaseModel):
    request_id: str | None = None
    stats: Stats = Field(default_factory=Stats)
    results: list[SkuResult] = Field(default_factory=list)
    rejected: list[RejectedRecord] = Field(default_factory=list)
    mode: str = "merge"
    dry_run: bool = False
    #: entity_ids whose gallery or roles were written: what to reindex / cache-clean (tag cat_p_<id>).
    changed_product_ids: list[int] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.stats.error or self.stats.rejected)


class ReportBuilder:
    """Collects per-SKU outcomes as batches finish, merging repeated SKUs into one result."""

    def __init__(self, request_id: str | None, mode: str, dry_run: bool) -> None:
        self.report = Report(request_id=request_id, mode=mode, dry_run=dry_run)
        self._by_key: dict[str, SkuResult] = {}
        self._changed: set[int] = set()

    def reject(self, rejection: Rejection) -> None:
        self.report.rejected.append(RejectedRecord(source=rejection.source, error=rejection.error))

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
        result = self._by_key.get(sku_key(sku))
        if result is None:
            result = self._by_key[sku_key(sku)] = SkuResult(sku=sku)
        result.product_id = product_id if product_id is not None else result.product_id
        result.error = result.error or error
        s = result.image_stats
        s.warnings.extend(warnings)
        if stats is not None:
            for name in COUNTERS:
                setattr(s, name, getattr(s, name) + getattr(stats, name))
            s.warnings.extend(stats.warnings)
        if changed and product_id is not None:
            self._changed.add(product_id)

    def finish(self) -> Report:
        r = self.report
        r.results = list(self._by_key.values())
        st = Stats(skus_seen=len(r.results), rejected=len(r.rejected))
        for res in r.results:
            if res.error:
                st.error += 1
            else:
                st.ok += 1
            for name in COUNTERS:
                setattr(st, name, getattr(st, name) + getattr(res.image_stats, name))
        r.stats = st
        r.changed_product_ids = sorted(self._changed)
        return r


def to_json(report: Report) -> str:
    return report.model_dump_json(indent=2)


def render(report: Report, console: Console, limit: int = 50) -> None:
    """A readable summary: the counters, then the SKUs that failed or warned, then rejected records."""
    st = report.stats
    title = "nacento-sync " + ("dry run (nothing written)" if report.dry_run else "sync") + f" — mode {report.mode}"
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rows: list[tuple[str, Any]] = [
        ("request_id", report.request_id or "-"),
        ("SKUs seen", st.skus_seen),
        ("ok", st.ok),
        ("error", f"[red]{st.error}[/]" if st.error else 0),
        ("rejected records", f"[red]{st.rejected}[/]" if st.rejected else 0),
        ("images inserted", st.inserted),
        ("updated_value", st.updated_value),
        ("updated_meta", st.updated_meta),
        ("skipped_no_change", st.skipped_no_change),
        ("deleted", st.deleted),
        ("missing", f"[yellow]{st.missing}[/]" if st.missing else 0),
        ("products changed", len(report.changed_product_ids)),
    ]
    for name, value in rows:
        summary.add_row(name, str(value))
    console.print(summary)

    notable = [r for r in report.results if r.error or r.image_stats.warnings]
    if notable:
        table = Table(title=f"SKUs with errors or warnings ({len(notable)})", title_justify="left")
        for col in ("sku", "product_id", "error", "warnings"):
            table.add_column(col, overflow="fold")
        for r in notable[:limit]:
            table.add_row(r.sku, str(r.product_id or "-"), r.error or "", "\n".join(r.image_stats.warnings))
        console.print(table)
        if len(notable) > limit:
            console.print(f"… and {len(notable) - limit} more (see --json or --report FILE)")
    if report.rejected:
        table = Table(title=f"Rejected records ({len(report.rejected)})", title_justify="left")
        table.add_column("source")
        table.add_column("error", overflow="fold")
        for rej in report.rejected[:limit]:
            table.add_row(rej.source, rej.error)
        console.print(table)
        if len(report.rejected) > limit:
            console.print(f"… and {len(report.rejected) - limit} more")

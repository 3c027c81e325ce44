"""The streamed report: valid JSON, one merged result per SKU, bounded console summary."""

from __future__ import annotations

import io
import json

import pytest

from nacento_sync.models import Rejection
from nacento_sync.pipeline import SeenSet
from nacento_sync.plan import ImageStats
from nacento_sync.report import Report, ReportBuilder


def test_report_streams_merges_repeated_skus_and_counts_exactly(tmp_path):
    spill = tmp_path / "r.json.partial"
    b = ReportBuilder("op-1", "merge", False, spill=spill, console_limit=2)
    b.add("A", product_id=1, stats=ImageStats(inserted=2), changed=True)
    b.reject(Rejection("x.ndjson:2", "bad"))
    b.add("B", product_id=2, error="storage_error", warnings=["storage_error: k: HTTP 500"])
    b.flush()  # the pipeline's, after each committed batch
    assert spill.read_text().count("\n") == 2  # results are on disk as batches finish
    b.repeated("a ")
    b.add("a ", product_id=1, stats=ImageStats(updated_value=1, warnings=["legacy_path: x"]), changed=True)
    b.add("C", product_id=3, stats=ImageStats(skipped_no_change=1, warnings=["missing_object: y"]))
    b.add("D", product_id=4, error="product_not_found")
    out = io.StringIO()
    summary = b.finish(out)
    report = Report.model_validate_json(out.getvalue())
    assert json.loads(out.getvalue())["request_id"] == "op-1"
    assert [r.sku for r in report.results] == ["B", "C", "D", "A"]
    merged = report.results[-1]
    assert (merged.image_stats.inserted, merged.image_stats.updated_value) == (2, 1)
    assert merged.image_stats.warnings == ["legacy_path: x"]
    s = report.stats
    assert (s.skus_seen, s.ok, s.error, s.rejected, s.inserted, s.updated_value) == (4, 2, 2, 1, 2, 1)
    assert report.rejected[0].source == "x.ndjson:2"
    assert report.changed_product_ids == [1]
    assert summary.notable_count == 4 and len(summary.results) == 2  # console keeps the first 2 only
    assert summary.stats == report.stats


def test_seen_set_is_exact_across_merges():
    seen = SeenSet(buffer=100)
    keys = [f"sku-{i}" for i in range(1000)]
    for k in keys[::2]:
        seen.add(k)
    assert all(k in seen for k in keys[::2])
    assert not any(k in seen for k in keys[1::2])


def test_every_warning_code_is_documented():
    """Warnings are "<code>: <message>" from a fixed, documented set."""
    import re
    from pathlib import Path

    from nacento_sync import feed
    from nacento_sync.codes import Code
    from nacento_sync.report import WARNING_CODES

    root = Path(__file__).resolve().parent.parent
    source = "\n".join(p.read_text() for p in (root / "nacento_sync").rglob("*.py"))
    # Every warning is built as a typed notice from the one enum of codes; none as a bare string.
    assert re.findall(r'(?:warn\(|append\(|\+= \[)f?"([a-z_]+): ', source) == []
    emitted = {Code[name].value for name in re.findall(r"Code\.([A-Z_]+)\.notice\(", source)}
    emitted |= set(feed.WARNING_CODES)
    assert len(emitted) >= 20
    assert emitted <= set(WARNING_CODES)
    readme = (root / "README.md").read_text()
    assert [c for c in WARNING_CODES if f"`{c}`" not in readme] == []


@pytest.mark.parametrize(("code", "detail"), [("missing_object", "/a/b.jpg not found"), ("position_tie", "x and y"),
                                              ("storage_error", "media/x: HTTP 503")])
def test_a_warning_is_a_typed_notice_that_reads_as_the_reports_string(code, detail):
    import json

    from nacento_sync.codes import Code

    notice = Code(code).notice(detail)
    assert notice == f"{code}: {detail}" and notice.code is Code(code) and notice.detail == detail
    assert json.loads(json.dumps([notice])) == [f"{code}: {detail}"]
    assert notice.retriable is Code(code).retriable

"""The library API (README, "Library API"): what the CLI does, as typed calls, against the real servers."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from async_helpers import async_config
from helpers import config_dict, write_ndjson

import nacento_sync
from nacento_sync import (
    AccessError,
    Config,
    Feed,
    Options,
    ReportFileError,
    SyncResult,
    UnknownBulk,
    UsageError,
    bulk_status,
    parse_record,
    submit,
    sync,
)
from nacento_sync.plan import ImageStats
from nacento_sync.report import Report, ReportBuilder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(store, bucket, db_params) -> Config:
    return Config.model_validate(config_dict(store, bucket, db_params))


def _export(store, bucket, tmp_path, n=3) -> Path:
    for i in range(n):
        store.add_product(f"SKU-{i}")
        bucket.put(f"/a/b/{i}.jpg")
    return write_ndjson(tmp_path / "x.ndjson", [{"sku": f"SKU-{i}", "images": [{"file_path": f"a/b/{i}.jpg"}]}
                                                for i in range(n)])


def test_a_sync_through_the_api_writes_the_report_file_and_says_how_it_ended(store, bucket, config, tmp_path):
    export = _export(store, bucket, tmp_path)
    target = tmp_path / "r.json"
    result = sync(config, Feed([str(export)]), Options.from_config(config), report_file=target)
    assert result.status == "ok" and not result.nothing_found and result.report_error is None
    assert result.report is not None and result.report.stats.inserted == 3
    assert result.batches == 1 and result.s3_requests and result.sql_write_statements > 0 and result.seconds > 0
    doc = json.loads(target.read_text())
    assert doc["version"] == nacento_sync.__version__ and doc["stats"]["inserted"] == 3
    assert doc["run"]["batches"] == result.batches and doc["request_id"].startswith("sync-")
    assert sorted(os.listdir(tmp_path)) == ["r.json", "x.ndjson"]  # no FILE.partial, no FILE.tmp
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 3


def test_the_json_stream_gets_every_result_and_the_feeds_request_id(store, bucket, config, tmp_path):
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"request": {"request_id": "op-7", "items": [
        {"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}, {"sku": "NOPE", "images": []}]}}))
    stream = io.StringIO()
    result = sync(config, Feed([str(body)]), json_out=stream)  # options default to the config's
    report = Report.model_validate_json(stream.getvalue())
    assert report.request_id == "op-7" and {r.sku for r in report.results} == {"SKU-1", "NOPE"}
    assert result.status == "failed" and result.report is not None and result.report.stats.error == 1


def test_a_dry_run_of_one_record(store, bucket, config):
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    record = parse_record({"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}, "test", 1)
    result = sync(config, [record], Options.from_config(config, dry_run=True), request_id="op-dry")
    assert result.status == "ok" and result.report is not None
    assert (result.report.request_id, result.report.dry_run, result.report.stats.inserted) == ("op-dry", True, 1)
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 0


def test_nothing_found_in_the_bucket_is_an_access_problem(store, config):
    store.add_product("SKU-1")
    record = parse_record({"sku": "SKU-1", "images": [{"file_path": f"w/r/{i}.jpg"} for i in range(10)]}, "t", 1)
    result = sync(config, [record])
    assert result.nothing_found and result.images_looked_up == 10 and result.images_found == 0
    assert result.status == "access"


def test_a_run_failing_at_start_raises_by_type_and_leaves_no_partial(store, bucket, db_params, tmp_path):
    export = _export(store, bucket, tmp_path, n=1)
    cfg = config_dict(store, bucket, db_params)
    cfg["database"]["password"] = "wrong-password"
    target = tmp_path / "r.json"
    with pytest.raises(AccessError, match="1045"):
        sync(Config.model_validate(cfg), Feed([str(export)]), report_file=target)
    assert sorted(os.listdir(tmp_path)) == ["x.ndjson"]


def test_an_unusable_report_file_is_refused_before_anything_is_synced(store, bucket, config, tmp_path):
    export = _export(store, bucket, tmp_path, n=1)
    with pytest.raises(ReportFileError, match="does not exist") as raised:
        sync(config, Feed([str(export)]), report_file=tmp_path / "missing" / "r.json")
    assert isinstance(raised.value, UsageError)
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 0


def test_bulk_status_of_an_unknown_bulk(config):
    with pytest.raises(UnknownBulk):
        bulk_status(config, "no-such-bulk")


def test_submit_then_bulk_status(store, bucket, db_params, queue_cfg, tmp_path):
    store.add_product("SKU-1")
    config = Config.model_validate(async_config(store, bucket, db_params, queue_cfg))
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    submitted = submit(config, [str(export)], request_id="op-async")
    assert submitted.bulk_uuid and submitted.accepted == 1 and not submitted.errors
    summary = bulk_status(config, submitted.bulk_uuid)
    assert (summary.operation_count, summary.state) == (1, "in_progress")


# ---------------------------------------------------------------- pure: options, status, the report builder


def test_options_from_config_with_overrides(config):
    config.sync.mode, config.sync.purge_cache = "replace", True
    options = Options.from_config(config, dry_run=True, batch_size=7)
    assert (options.mode, options.purge_cache, options.dry_run, options.batch_size) == ("replace", True, True, 7)
    assert options.etag_strategy == config.sync.etag_strategy and options.allow_empty is False
    with pytest.raises(TypeError):
        Options.from_config(config, no_such_option=1)


def test_status_says_how_the_run_ended_first_match_wins():
    def result(**kw) -> SyncResult:
        ok = Report()
        return SyncResult(**{"report": ok, "seconds": 1.0, "batches": 1, **kw})

    failed = Report()
    failed.stats.error = 1
    assert result().status == "ok"
    assert result(report=failed).status == "failed" and result(report=None).status == "failed"
    assert result(report_error="cannot write r.json.tmp").status == "failed"
    assert result(images_looked_up=10).status == "access" and result(images_looked_up=9).status == "ok"
    assert result(images_looked_up=10, interrupted=signal.SIGTERM).status == "interrupted"
    assert result(interrupted=signal.SIGINT, fatal="lost the database connection").status == "access"


def test_the_report_builder_removes_an_empty_partial_only_when_its_block_fails(tmp_path):
    spill = tmp_path / "r.json.partial"
    with pytest.raises(RuntimeError), ReportBuilder(None, "merge", False, spill=spill):
        assert spill.exists()
        raise RuntimeError("the database refused us")
    assert not spill.exists()
    with pytest.raises(RuntimeError), ReportBuilder(None, "merge", False, spill=spill) as builder:
        builder.add("SKU-1", product_id=1, stats=ImageStats(inserted=1))
        raise RuntimeError("lost the database after a commit")
    assert json.loads(spill.read_text())["sku"] == "SKU-1"  # committed results are kept
    spill.unlink()
    with ReportBuilder(None, "merge", False, spill=spill) as builder:
        builder.finish(io.StringIO())
    assert spill.exists()  # a finished run's spill is the report writer's to remove, not the builder's


# ---------------------------------------------------------------- the contract


def test_importing_the_package_and_the_cli_stays_light():
    code = ("import sys, nacento_sync; from nacento_sync import Config, load_config, __version__; "
            "import nacento_sync.cli; print(sorted({'aioboto3', 'aio_pika'} & set(sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_every_public_name_resolves_and_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Library API", 1)[1].split("\n## ", 1)[0]
    prose = re.sub(r"```.*?```", "", section, flags=re.S)
    documented = {word for span in re.findall(r"`([^`]+)`", prose) for word in re.findall(r"\w+", span)}
    for name in nacento_sync.__all__:
        assert getattr(nacento_sync, name) is not None
        assert name in documented, name

"""Test helpers shared by the integration tests: a bucket on the local S3 server, configs, runs."""

from __future__ import annotations

import functools
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from nacento_sync import Config, Feed, Options, Report, SyncResult, sync
from nacento_sync.paths import object_key


@dataclass
class Bucket:
    """A fresh bucket on the local S3 server, laid out like Magento's remote storage."""

    endpoint: str
    name: str
    prefix: str = ""

    @functools.cached_property
    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test",
                            config=BotoConfig(s3={"addressing_style": "path"}))

    def put(self, path: str, body: bytes | None = None) -> str:
        """Upload an image at canonical path `path`; returns its ETag without quotes."""
        body = body if body is not None else f"image bytes of {path} {uuid.uuid4()}".encode()
        resp = self.client.put_object(Bucket=self.name, Key=object_key(path, self.prefix), Body=body)
        return resp["ETag"].strip('"')

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=object_key(path, self.prefix))


def make_bucket(endpoint: str, prefix: str = "") -> Bucket:
    b = Bucket(endpoint, f"t-{uuid.uuid4().hex[:16]}", prefix)
    b.client.create_bucket(Bucket=b.name)
    return b


def config_dict(store, bucket: Bucket, db_params: dict[str, Any], **sync: Any) -> dict[str, Any]:
    return {
        "database": {"host": db_params["host"], "port": db_params["port"], "user": db_params["user"],
                     "password": db_params["password"], "name": store.database, "table_prefix": store.prefix},
        "storage": {"bucket": bucket.name, "endpoint": bucket.endpoint, "region": "us-east-1",
                    "access_key": "test", "secret_key": "test", "path_style": True, "prefix": bucket.prefix},
        "sync": {"batch_size": 50, "concurrency": 16, **sync},
    }


def write_ndjson(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


@dataclass
class Outcome:
    """A sync through the library API: the whole JSON report (every SKU's result) and the SyncResult."""

    report: Report
    sync: SyncResult

    @property
    def counters(self) -> SyncResult:
        """The run's figures (`cache_purged`, `stale_images`, …)."""
        return self.sync

    def result(self, sku: str):
        (r,) = [r for r in self.report.results if r.sku == sku]
        return r


def run(cfg: dict[str, Any], export: Path, *, mode: str = "merge", dry_run: bool = False,
        allow_empty: bool = False, purge_cache: bool = False) -> Outcome:
    """Sync an export through the library API (`nacento_sync.sync`) and return its whole report."""
    config = Config.model_validate(cfg)
    options = Options.from_config(config, mode=mode, dry_run=dry_run, allow_empty=allow_empty,
                                  purge_cache=purge_cache)
    text = io.StringIO()
    result = sync(config, Feed([str(export)]), options, json_out=text, request_id="test")
    return Outcome(Report.model_validate_json(text.getvalue()), result)


def install_meta(store) -> None:
    from nacento_sync.magento import meta_ddl

    store.execute(meta_ddl(store.prefix))


def enable_table_statistics(store) -> None:
    """Check that MariaDB's per-table row counters (userstat) are on, for `rows_changed` (MariaDB 10.11 has
    no Innodb_rows_* any more). The test server starts with them on (`--userstat=1`, scripts/lib.sh); a test
    never switches them on itself: SET GLOBAL would change the server under every other run."""
    (row,) = store.query("SELECT @@GLOBAL.userstat AS on_")
    if not int(row["on_"]):
        import pytest

        pytest.fail("the MariaDB test server runs without table statistics: start it with --userstat=1 "
                    "(scripts/lib.sh does; restart servers started before: scripts/services stop)", pytrace=False)


def rows_changed(store) -> dict[str, int]:
    """Rows changed per table of this store's database since the server started (userstat)."""
    rows = store.query(
        "SELECT table_name, rows_changed FROM information_schema.TABLE_STATISTICS WHERE table_schema = %s",
        (store.database,),
    )
    return {r["table_name"]: int(r["rows_changed"]) for r in rows}


class FlakyS3:
    """A tiny S3-speaking HTTP server on 127.0.0.1 that fails on purpose: HEAD of a key containing
    `fail` answers `fail_status` every time (500: botocore retries it; 403: a revoked credential, not
    retried), `gone` answers 404, anything else 200 with the ETag `ETAG`. For the storage-failure
    paths a healthy server cannot show; `heads` records every HEAD path."""

    ETAG = "0123456789abcdef0123456789abcdef"

    def __init__(self, fail_status: int = 500) -> None:
        import http.server
        import threading

        self.heads: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):  # http.server's naming
                outer.heads.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/", 1)
                status = 200
                if len(parts) == 2:
                    status = fail_status if "fail" in parts[1] else 404 if "gone" in parts[1] else 200
                self.send_response(status)
                if status == 200:
                    self.send_header("ETag", f'"{outer.ETAG}"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

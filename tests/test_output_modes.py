"""`--quiet` (cron: errors on stderr, one summary line on stdout) and `--log-format json` (log pipelines)."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import config_dict, write_ndjson
from typer.testing import CliRunner

from nacento_sync.cli import app
from nacento_sync.console import Mode


@pytest.fixture
def config_file(store, bucket, db_params, tmp_path):
    path = tmp_path / "nacento-sync.yaml"
    path.write_text(yaml.safe_dump(config_dict(store, bucket, db_params)))
    return path


@pytest.fixture(autouse=True)
def _reset_mode():
    yield
    Mode.quiet = Mode.json = False  # what the next in-process invocation's own flags will set anyway


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _export(store, bucket, tmp_path, *extra: dict):
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    return write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}, *extra])


def test_quiet_sync_prints_one_summary_line_and_nothing_on_stderr(store, bucket, config_file, tmp_path):
    export = _export(store, bucket, tmp_path)
    res = invoke("--config", str(config_file), "--quiet", "sync", str(export), "--request-id", "op-q")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    (line,) = res.stdout.splitlines()
    assert line.startswith("nacento-sync sync op-q: 1 SKUs, 1 ok, 0 failed, 0 rejected records; images 1 inserted")


@pytest.mark.parametrize("command", [["sync"], ["sync", "--dry-run"]])
def test_quiet_keeps_failures_in_the_exit_code_and_the_line(store, bucket, config_file, tmp_path, command):
    export = _export(store, bucket, tmp_path, {"sku": "NOPE", "images": []}, {"sku": 1})
    res = invoke("--config", str(config_file), "-q", *command, str(export))
    assert res.exit_code == 1 and res.stderr == ""
    (line,) = res.stdout.splitlines()
    assert "2 SKUs, 1 ok, 1 failed, 1 rejected records" in line
    assert ("(dry run)" in line) is ("--dry-run" in command)


def test_quiet_still_prints_errors_on_stderr(store, bucket, config_file, tmp_path):
    export = _export(store, bucket, tmp_path)
    res = invoke("--config", str(config_file), "--quiet", "sync", str(export), "--report",
                 str(tmp_path / "missing" / "r.json"))
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error: --report") and res.stderr.count("\n") == 1


@pytest.mark.parametrize("quiet", [[], ["--quiet"]])
def test_json_log_format_makes_every_stderr_line_a_json_object(store, bucket, config_file, tmp_path, quiet):
    export = _export(store, bucket, tmp_path)
    res = invoke("--config", str(config_file), "--log-format", "json", *quiet, "sync", str(export), "--report",
                 str(tmp_path / "missing" / "r.json"))
    assert res.exit_code == 2
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    assert [entry["level"] for entry in lines] == ["error"]
    assert lines[0]["message"].startswith("--report") and lines[0]["time"].endswith("Z") is False


def test_json_log_format_carries_log_records_and_notices(store, bucket, config_file, tmp_path):
    export = _export(store, bucket, tmp_path)
    assert invoke("--config", str(config_file), "sync", str(export)).exit_code == 0
    bucket.put("/a/b/c.jpg", b"new bytes")  # its resized copies may now be stale: an info line says so
    res = invoke("--config", str(config_file), "--log-format", "json", "sync", str(export), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["stats"]["updated_meta"] == 1  # stdout: the report alone
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    assert lines and all(set(entry) >= {"time", "level", "message"} for entry in lines)
    assert any("--purge-cache" in entry["message"] and entry["level"] == "info" for entry in lines)

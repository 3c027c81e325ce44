"""Console output never obeys the data, and no failure after a commit loses the report.

In-process (typer's CliRunner) against the real servers: the sync, the bucket and the bulk tables are
real; failures after the commit are injected with monkeypatch.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
from pathlib import Path

import pytest
import yaml
from helpers import config_dict, write_ndjson
from rich.console import Console
from typer.testing import CliRunner

from nacento_sync import api, report
from nacento_sync.cli import common
from nacento_sync.cli import sync as cli
from nacento_sync.console import error, plain
from nacento_sync.models import Rejection, printable
from nacento_sync.plan import ImageStats
from nacento_sync.report import ReportBuilder, render, to_json

#: Values that are markup to rich or control sequences to a terminal.
MARKUP = ["[/]", "[/bold]", "[bold red]x[/]", "[link=file:///etc]x[/link]"]
CONTROL = ["\x1b[31m", "\x1b]0;title\x07", "\x9b31m", "a\x08b\x7f", "\u202eevil"]
HOSTILE = MARKUP + CONTROL
#: Bytes that must never reach the terminal raw: ESC, BEL, CSI (C1), BS, DEL, RLO.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")


def shown(value: str) -> str:
    """How a value must appear on the console: literally, with control characters escaped."""
    return plain(value)


def assert_plain(output: str, *values: str) -> None:
    assert not RAW.search(output), repr(RAW.search(output).group())  # type: ignore[union-attr]
    for value in values:
        assert shown(value) in output, (value, output)


@pytest.fixture
def wide(monkeypatch):
    """Wide consoles, so table cells are not folded across lines."""
    monkeypatch.setattr(cli.out, "width", 400)
    monkeypatch.setattr(cli.err, "width", 400)


@pytest.fixture
def config_file(store, bucket, db_params, tmp_path):
    path = tmp_path / "nacento-sync.yaml"
    path.write_text(yaml.safe_dump(config_dict(store, bucket, db_params)))
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False)


# ---------------------------------------------------------------- pure: escaping, rendering, JSON


@pytest.mark.parametrize("value", HOSTILE + ["\x00", "\r", "\t", "\x85", "\ud800"])
def test_plain_escapes_control_characters_and_keeps_the_text(value):
    assert not RAW.search(plain(value)) and "\ud800" not in plain(value)
    assert plain(value).encode("utf-8")
    assert plain("ok [b]é\n") == "ok [b]é\\x0a" and plain("a\nb", newlines=True) == "a\nb"
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    error(console, f"at {value} end")
    assert_plain(console.file.getvalue(), f"at {value} end")


def test_render_prints_every_value_literally_and_names_the_command():
    b = ReportBuilder("op-" + "".join(HOSTILE), "merge", False)
    for i, value in enumerate(HOSTILE):
        b.add(f"SKU{value}", product_id=i + 1, stats=ImageStats(warnings=[f"legacy_path: {value}"]))
        b.reject(Rejection(f"x{value}.ndjson:{i}", f"images[0].file_path: {value}"))
    b.add("NOPE[/]", error="product_not_found")
    summary = b.finish(io.StringIO())
    for command in ("sync", "sku"):
        console = Console(file=io.StringIO(), width=400, force_terminal=True)  # styles on: only ours
        render(summary, console, command=command)
        output = re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())  # the renderer's own styling
        assert_plain(output, summary.request_id, "NOPE[/]", *(f"SKU{v}" for v in HOSTILE),
                     *(f"x{v}.ndjson:{i}" for i, v in enumerate(HOSTILE)), *(f"legacy_path: {v}" for v in HOSTILE))
        assert f"nacento-sync {command} — mode merge" in output


@pytest.mark.parametrize("value", HOSTILE + ["\ud800", "a\udcffb", "Größe 😀", '"\\'])
def test_report_json_keeps_the_exact_value_whatever_it_is(value):
    assert json.loads(to_json({"v": value})) == {"v": value}
    assert to_json(value).encode("utf-8")  # never a lone surrogate in the output
    b = ReportBuilder(value, "merge", False)
    b.add(value, product_id=1, stats=ImageStats(warnings=[value]))
    b.reject(Rejection(value, value))
    out = io.StringIO()
    b.finish(out)
    out.getvalue().encode("utf-8")
    doc = json.loads(out.getvalue())
    assert doc["request_id"] == value and doc["results"][0]["sku"] == value
    assert doc["results"][0]["image_stats"]["warnings"] == [value] and doc["rejected"] == [
        {"source": value, "error": value}]


def test_report_survives_a_failing_serialiser(monkeypatch, tmp_path):
    """Fault injection: the readable JSON encoder fails; the ASCII one writes the same values."""
    def broken(_data):
        raise ValueError("injected")

    monkeypatch.setattr(report, "_dump", broken)
    b = ReportBuilder("op-1", "merge", False, spill=tmp_path / "r.partial")
    b.add("Größe", product_id=1, stats=ImageStats(inserted=1), changed=True)
    b.repeated("Größe")
    b.add("größe", product_id=1, stats=ImageStats(updated_value=1), changed=True)
    b.reject(Rejection("x:1", "bad \x1b"))
    out = io.StringIO()
    b.finish(out)
    doc = json.loads(out.getvalue())
    assert [r["sku"] for r in doc["results"]] == ["Größe"] and doc["rejected"][0]["error"] == "bad \x1b"
    assert doc["stats"]["inserted"] == 1 and doc["stats"]["updated_value"] == 1


def test_log_records_are_plain_text():
    console = Console(file=io.StringIO(), width=400, force_terminal=False)
    logger = logging.getLogger("nacento_sync.test_output")
    logger.propagate = False
    logger.addHandler(common.log_handler(console))
    try:
        for value in HOSTILE:
            logger.warning("SKU %r failed: %s", value, f"server said {value}")
            logger.warning(f"literal {value}")
    finally:
        logger.handlers.clear()
    assert_plain(console.file.getvalue(), *(f"server said {v}" for v in HOSTILE), *(f"literal {v}" for v in HOSTILE))


# ---------------------------------------------------------------- --report FILE checked before anything


def test_report_path_problems_are_found_and_leave_nothing_behind(tmp_path, monkeypatch):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "p.json.partial").mkdir()
    cases = {
        tmp_path / "missing" / "r.json": "does not exist",
        regular / "r.json": "is not a directory",
        regular / "deeper" / "r.json": "is not a directory",
        tmp_path / "dir": "is a directory",
        tmp_path / "p.json": "is a directory",
        Path("/sys/nacento-report.json"): "cannot create",  # sysfs: read-only even for root
    }
    before = sorted(os.listdir(tmp_path))
    for path, problem in cases.items():
        found = report.report_path_problem(path)
        assert found and problem in found, (path, found)
    assert report.report_path_problem(tmp_path / "ok.json") is None
    assert sorted(os.listdir(tmp_path)) == before

    def read_only(path, _flags, _mode=0o777):  # what a read-only directory answers a non-root user
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(report.os, "open", read_only)
    assert "Permission denied" in report.report_path_problem(tmp_path / "ro.json")


@pytest.mark.parametrize("where", ["missing/r.json", "file.txt/r.json", "dir", "/sys/r.json"])
def test_a_bad_report_path_exits_2_before_syncing(store, bucket, config_file, tmp_path, where):
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    before = sorted(os.listdir(tmp_path))
    res = invoke("--config", str(config_file), "sync", str(export), "--report", str(tmp_path / where))
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: --report ") and not res.stdout
    assert sorted(os.listdir(tmp_path)) == before
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 0


# ---------------------------------------------------------------- flags named in errors


def test_an_out_of_range_flag_names_the_flag_and_a_file_value_the_key(store, bucket, db_params, config_file, tmp_path):
    for args, named in ((["--batch-size", "20000"], "--batch-size 20000"),
                        (["--concurrency", "5000"], "--concurrency 5000"),
                        (["--batch-size", "10001", "--concurrency", "2000"], "--concurrency 2000")):
        res = invoke("--config", str(config_file), "sync", "x.ndjson", *args)
        assert res.exit_code == 2 and named in res.stderr and "sync." not in res.stderr, res.stderr
    cfg = config_dict(store, bucket, db_params)
    cfg["sync"]["batch_size"] = 20000
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(cfg))
    res = invoke("--config", str(tmp_path / "big.yaml"), "sync", "x.ndjson")
    assert res.exit_code == 2 and "sync.batch_size" in res.stderr and "--batch-size" not in res.stderr
    assert common.flag_problems({"sync": {"batch_size": 200, "concurrency": None, "mode": "merge"}}) == []


# ---------------------------------------------------------------- help


def test_help_shows_no_type_labels_on_flags_and_proper_metavars():
    commands = [[], ["sync"], ["sku"], ["submit"], ["worker"], ["status"], ["requeue"], ["schema"],
                ["schema", "status"], ["schema", "uninstall"]]
    for command in commands:
        res = invoke(*command, "--help")
        assert res.exit_code == 0
        assert "<bool>" not in res.stdout and "{" + "exports}" not in res.stdout, command
    assert "Usage: nacento-sync sync [OPTIONS] EXPORT..." in invoke("sync", "--help").stdout
    assert "Usage: nacento-sync status [OPTIONS] BULK_UUID" in invoke("status", "--help").stdout


def test_status_help_lists_every_exit_code_of_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `status` |"))
    codes = [str(i) for i, cell in enumerate(row.split("|")[2:-1]) if cell.strip()]
    assert codes == ["0", "1", "2", "3", "4", "5"]
    helptext = " ".join(invoke("status", "--help").stdout.split())
    for code in codes:
        assert f" {code} " in helptext.split("Exit codes:")[1], code


# ---------------------------------------------------------------- real syncs with hostile data


@pytest.mark.usefixtures("wide")
def test_hostile_values_from_a_real_sync_print_as_plain_text(store, bucket, config_file, tmp_path):
    skus = [f"SKU{v}" for v in MARKUP]
    for sku in skus:
        store.add_product(sku)
    bucket.put("/a/b/c.jpg")
    items = [{"sku": sku, "images": [{"file_path": "a/b/c.jpg", "label": f"L{sku}", "roles": [f"role{sku}"]}]}
             for sku in skus]
    items.append({"sku": "GONE[/bold]", "images": []})
    name = "export[/]\x1b[31m\x07.ndjson"  # a directory `export[` holding `]\x1b[31m\x07.ndjson`
    (tmp_path / "export[").mkdir()
    export = write_ndjson(tmp_path / name, items)
    with export.open("a") as f:
        f.write("{not json [bold red]x[/] \x1b]0;t\x07\n")
    request_id = "op[/]\x1b]0;title\x07\x9b31m"
    res = invoke("--config", str(config_file), "sync", str(export), "--request-id", request_id)
    assert res.exit_code == 1, res.stderr
    assert_plain(res.stdout + res.stderr, request_id, "GONE[/bold]", f"{tmp_path / name}:{len(items) + 1}",
                 *skus, *(f"role{s}" for s in skus))
    assert "nacento-sync sync — mode merge" in res.stdout
    as_json = invoke("--config", str(config_file), "sync", str(export), "--request-id", request_id, "--json")
    doc = json.loads(as_json.stdout)
    # Sources are file names from argv: the feed writes their control characters as escapes everywhere.
    assert doc["request_id"] == request_id
    assert doc["rejected"][0]["source"] == printable(f"{export}:{len(items) + 1}")
    assert {r["sku"] for r in doc["results"]} == {*skus, "GONE[/bold]"}


@pytest.mark.usefixtures("wide")
def test_the_sku_summary_is_titled_sku(store, bucket, config_file):
    store.add_product("SKU[/]")
    bucket.put("/a/b/c.jpg")
    res = invoke("--config", str(config_file), "sku", "SKU[/]", "--image", "a/b/c.jpg")
    assert res.exit_code == 0, res.stderr
    assert "nacento-sync sku — mode merge" in res.stdout and "nacento-sync sync" not in res.stdout


@pytest.mark.usefixtures("wide")
def test_hostile_config_values_in_errors(store, bucket, db_params, tmp_path):
    for value in HOSTILE:
        path = str(tmp_path / f"c{value}" / "absent.yaml")
        res = invoke("--config", path, "schema", "status")
        assert res.exit_code == 2
        assert_plain(res.stderr, path)
    for i, value in enumerate(HOSTILE):
        cfg = config_dict(store, bucket, db_params)
        cfg["storage"]["prefix"] = f"p{value}"
        path = tmp_path / f"p{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        items = [{"sku": "SKU-1", "images": [{"file_path": f"w/r/{j}.jpg"} for j in range(10)]}]
        store.add_product("SKU-1") if i == 0 else None
        res = invoke("--config", str(path), "sync", str(write_ndjson(tmp_path / "x.ndjson", items)))
        assert res.exit_code == 3 and "storage.prefix" in res.stderr
        assert_plain(res.stderr, repr(f"p{value}")[1:-1])
    cfg = config_dict(store, bucket, db_params)
    cfg["storage"]["bucket"] = "no-such-bucket[/]\x1b[31m"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    res = invoke("--config", str(tmp_path / "b.yaml"), "sync", str(tmp_path / "x.ndjson"))
    assert res.exit_code == 3
    assert_plain(res.stderr, "no-such-bucket[/]")


@pytest.mark.usefixtures("wide")
def test_status_of_hostile_bulks(store, config_file):
    for value in HOSTILE:
        res = invoke("--config", str(config_file), "status", f"b{value}")
        assert res.exit_code == 5 and not res.stdout
        assert_plain(res.stderr, repr(f"b{value}")[1:-1] if value in CONTROL else f"b{value}")
        as_json = invoke("--config", str(config_file), "status", f"b{value}", "--json")
        assert as_json.exit_code == 5
        assert json.loads(as_json.stdout) == {"bulk_uuid": f"b{value}", "error": "unknown bulk"}
    uuid = "u[/]\x1b[31m"
    description = "desc [bold red]x[/] \x1b]0;t\x07"
    store.execute("INSERT INTO {magento_bulk} (uuid, description, operation_count) VALUES (%s, %s, 1)",
                  (uuid, description))
    store.execute("INSERT INTO {magento_operation} (operation_key, bulk_uuid, serialized_data, status, error_code, "
                  "result_message) VALUES (1, %s, %s, 3, 2, %s)",
                  (uuid, json.dumps({"sku": "S[/]\x9b1m"}), "msg [link=file:///etc]x[/link] \x1b[2J"))
    res = invoke("--config", str(config_file), "status", uuid)
    assert res.exit_code == 1, res.stderr
    assert_plain(res.stdout, uuid, description, "S[/]\x9b1m", "msg [link=file:///etc]x[/link] \x1b[2J")


# ---------------------------------------------------------------- failures after the commit


def _synced(store, bucket, tmp_path, n=3):
    for i in range(n):
        store.add_product(f"SKU-{i}")
        bucket.put(f"/a/b/{i}.jpg")
    return write_ndjson(tmp_path / "x.ndjson", [{"sku": f"SKU-{i}", "images": [{"file_path": f"a/b/{i}.jpg"}]}
                                                for i in range(n)])


def test_a_rendering_crash_keeps_the_report_and_the_exit_code(store, bucket, config_file, tmp_path, monkeypatch):
    export = _synced(store, bucket, tmp_path)

    def broken(*_args, **_kwargs):
        raise RuntimeError("injected [/] \x1b[31m")

    monkeypatch.setattr(cli, "render", broken)
    target = tmp_path / "r.json"
    res = invoke("--config", str(config_file), "sync", str(export), "--report", str(target))
    assert res.exit_code == 0, res.stderr  # what the sync deserved
    assert "could not show the summary" in res.stderr and "3 SKUs seen, 3 ok" in res.stderr
    assert_plain(res.stderr, "injected [/] \x1b[31m")
    assert json.loads(target.read_text())["stats"]["inserted"] == 3
    assert sorted(os.listdir(tmp_path)) == ["nacento-sync.yaml", "r.json", "x.ndjson"]


@pytest.mark.parametrize("stage", ["rename", "open", "write"])
def test_a_failing_report_file_keeps_the_partial_and_stdout(store, bucket, config_file, tmp_path, monkeypatch, stage):
    export = _synced(store, bucket, tmp_path)
    target = tmp_path / "r.json"
    if stage == "rename":
        def no_space(_src, _dst):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(report.os, "replace", no_space)
    elif stage == "open":  # FILE.tmp became a directory after the up-front checks (the CLI's, the library's)
        monkeypatch.setattr(api, "report_path_problem", lambda _path: (tmp_path / "r.json.tmp").mkdir())
    else:  # the disk fills up while the final document is written
        real_open = open

        class Full(io.StringIO):
            def write(self, _data):
                raise OSError(errno.ENOSPC, "No space left on device")

        def opener(path, *args, **kwargs):
            return Full() if str(path).endswith(".tmp") else real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", opener)
    res = invoke("--config", str(config_file), "sync", str(export), "--report", str(target), "--json")
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and f"every committed SKU's result is in {target}.partial" in res.stderr
    assert json.loads(res.stdout)["stats"]["inserted"] == 3  # stdout still has the whole report
    partial = [json.loads(line) for line in (tmp_path / "r.json.partial").read_text().splitlines()]
    assert sorted(r["sku"] for r in partial) == ["SKU-0", "SKU-1", "SKU-2"]
    assert not target.exists() and (stage == "open" or not (tmp_path / "r.json.tmp").exists())


@pytest.mark.usefixtures("wide")
def test_values_utf8_cannot_encode_never_break_the_report(store, bucket, config_file, tmp_path):
    """A file name and a request id that are not UTF-8 (argv decoded with surrogateescape)."""
    export = _synced(store, bucket, tmp_path, n=2)
    odd = tmp_path / "bad\udcff.ndjson"
    odd.write_bytes(export.read_bytes() + b"{broken\n")
    target = tmp_path / "r.json"
    res = invoke("--config", str(config_file), "sync", str(odd), "--request-id", "op-\udcfe", "--json",
                 "--report", str(target))
    assert res.exit_code == 1, res.stderr
    for doc in (json.loads(res.stdout), json.loads(target.read_text())):
        assert doc["request_id"] == "op-\udcfe" and doc["rejected"][0]["source"] == printable(f"{odd}:3")
        assert doc["stats"]["inserted"] == 2
    table = invoke("--config", str(config_file), "sync", str(odd), "--request-id", "op-\udcfe")
    assert table.exit_code == 1
    assert "op-\\udcfe" in table.stdout and "bad\\udcff.ndjson:3" in table.stdout

"""The change journal: its format, where it goes, how it is written (0600, fsync, never over a file) and read
(a torn last line, rolled-back transactions), a dry run's journal, and an unwritable journal (exit 2)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import pytest
from helpers import config_dict, install_meta, run, write_ndjson
from test_undo import checksums, export, seed
from typer.testing import CliRunner

from nacento_sync import Config, Feed, Options, sync
from nacento_sync import journal as jr
from nacento_sync.cli import app

UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def store(magento):
    install_meta(magento)
    magento.fr = magento.add_store("fr")
    return magento


@pytest.fixture
def cfg(store, bucket, db_params):
    return config_dict(store, bucket, db_params)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(cfg: dict, tmp_path: Path, *args: str):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(json.dumps(cfg))
    return CliRunner().invoke(app, ["--config", str(config_file), *args])


def test_format_header_rows_and_utc_timestamps(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    path = tmp_path / "j.ndjson"
    out = run_journal(cfg, export(tmp_path), path, mode="replace")
    assert out.journal == path
    header, *rest = lines(path)
    assert header["type"] == "header" and header["format"] == jr.FORMAT
    assert {k: header[k] for k in ("request_id", "mode", "dry_run", "database", "table_prefix", "link_field")} == {
        "request_id": "test", "mode": "replace", "dry_run": False, "database": store.database,
        "table_prefix": store.prefix, "link_field": store.link}
    assert header["version"]
    rows = [ln for ln in rest if ln["type"] == "row"]
    assert {ln["type"] for ln in rest} == {"row", "commit"}
    for ln in rows:
        assert ln["table"] in jr.CHILDREN_FIRST and not ln["table"].startswith(store.prefix or "\0")
        assert (ln["before"] is None) == (ln["action"] == "insert")
        assert (ln["after"] is None) == (ln["action"] == "delete")
        row = ln["after"] or ln["before"]
        assert set(ln["key"]) <= set(row) and all(row[k] == v for k, v in ln["key"].items())
    # a foreign-key cascade's rows are deleted explicitly and journaled: the dropped image's meta and store rows
    deleted = {(ln["table"], ln["sku"]) for ln in rows if ln["action"] == "delete"}
    assert {(jr.META, "SKU-A"), (jr.VALUE, "SKU-A"), (jr.TO_ENTITY, "SKU-A"), (jr.GALLERY, "SKU-A")} <= deleted
    meta_lines = [ln for ln in rows if ln["table"] == jr.META and ln["before"]]
    assert meta_lines and all(UTC_TEXT.fullmatch(ln["before"]["updated_at"]) for ln in meta_lines)
    assert all("updated_at" in ln["utc"] for ln in meta_lines)
    # grouped by SKU within a transaction
    skus = [ln["sku"] for ln in rows]
    assert skus == sorted(skus, key=skus.index) and len({(s, i) for i, s in enumerate(skus)}) == len(skus)
    seen: list[str] = []
    for sku in skus:
        if not seen or seen[-1] != sku:
            assert sku not in seen
            seen.append(sku)
    assert path.stat().st_mode & 0o777 == 0o600


def run_journal(cfg, export_path, path, **kw):
    config = Config.model_validate(cfg)
    return sync(config, Feed([str(export_path)]), Options.from_config(config, **kw), request_id="test",
                journal_file=path)


def test_dry_run_journal_predicts_the_real_run(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    before = checksums(store)
    dry, real = tmp_path / "dry.ndjson", tmp_path / "real.ndjson"
    result = run_journal(cfg, export(tmp_path), dry, mode="replace", dry_run=True)
    assert checksums(store) == before and result.journal == dry
    assert [w for w in result.would_delete if w[0] == "SKU-A"] == [("SKU-A", ["/d/r/drop.jpg"])]
    run_journal(cfg, export(tmp_path), real, mode="replace")
    assert lines(dry)[0]["dry_run"] is True

    def comparable(path: Path) -> list:
        found = []
        for ln in lines(path):
            if ln["type"] != "row":
                continue
            rows = [{k: v for k, v in (r or {}).items() if k not in ("value_id", "record_id", "updated_at")}
                    if ln["action"] == "insert" or ln["table"] == jr.META else r for r in (ln["before"], ln["after"])]
            found.append((ln["sku"], ln["table"], ln["action"], json.dumps(rows, sort_keys=True)))
        return sorted(found)

    assert comparable(dry) == comparable(real)
    inserted = [ln for ln in lines(dry) if ln.get("action") == "insert" and ln["table"] == jr.GALLERY]
    assert inserted and all(ln["key"] == {"value_id": None} and ln["after"]["value_id"] is None for ln in inserted)


def test_replace_mode_journals_by_default_merge_only_when_asked(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    home = Path(os.environ["XDG_STATE_HOME"])
    merged = run(cfg, export(tmp_path))
    assert merged.sync.journal is None and not (home / "nacento-sync").exists()
    config = Config.model_validate(cfg)
    result = sync(config, Feed([str(export(tmp_path))]), Options.from_config(config, mode="replace"),
                  request_id="bulk/ä 1", json_out=None)
    path = result.journal
    assert path is not None and path.parent == home / "nacento-sync" / "journal"
    assert re.fullmatch(r"bulk___1-\d{8}T\d+Z\.ndjson", path.name), path.name
    assert path.stat().st_mode & 0o777 == 0o600
    assert result.report is not None and result.report.journal == str(path)


def test_cli_summary_prints_the_journal(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    path = tmp_path / "j.ndjson"
    done = cli(cfg, tmp_path, "sync", str(export(tmp_path, "y.ndjson")), "--mode", "replace", "--dry-run")
    assert done.exit_code == 0, done.output
    assert "SKU-A: /d/r/drop.jpg" in done.stdout  # what a replace would take away, before running it
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "nacento-sync").exists()  # a dry run: no default journal
    done = cli(cfg, tmp_path, "--quiet", "sync", str(export(tmp_path)), "--mode", "replace", "--journal", str(path))
    assert done.exit_code == 0, done.output
    assert f"journal {path}" in done.stdout


def test_unwritable_journal_exits_2_before_anything_is_synced(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    before = checksums(store)
    done = cli(cfg, tmp_path, "sync", str(export(tmp_path)), "--journal", str(tmp_path / "no" / "dir" / "j.ndjson"))
    assert done.exit_code == 2 and "journal" in done.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = cli(config_dict(store, bucket, _db(cfg)) | {"sync": cfg["sync"] | {"journal_dir": str(blocker / "j")}},
               tmp_path, "sync", str(export(tmp_path)), "--mode", "replace")
    assert done.exit_code == 2 and "journal" in done.output
    assert checksums(store) == before


def _db(cfg: dict) -> dict:
    d = cfg["database"]
    return {"host": d["host"], "port": d["port"], "user": d["user"], "password": d["password"]}


# ---------------------------------------------------------------- the file, without a database


def _header(f: jr.JournalFile) -> None:
    f.header(request_id="r", mode="replace", dry_run=False, database="db", table_prefix="", link_field="entity_id",
             version="0")


def _change(n: int) -> jr.Change:
    return jr.Change(jr.GALLERY, "insert", {"value_id": n}, None, {"value_id": n, "value": f"/a/b/{n}.jpg"}, "S", 1)


def test_torn_last_line_is_ignored_and_rolled_back_transactions_are_skipped(tmp_path):
    path = tmp_path / "j.ndjson"
    f = jr.JournalFile(path)
    _header(f)
    f.committed(f.transaction([_change(1)]))
    f.rolled_back(f.transaction([_change(2)]))
    f.transaction([_change(3)])
    f.close()
    with path.open("a") as fh:
        fh.write('{"type": "row", "tx": 4, "table": "catal')  # the writer died mid-line
    read = jr.read(path)
    assert read.torn and [r["key"]["value_id"] for r in read.rows] == [1, 3]


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    for body in ("", "{}\n", "[1]\n", '{"type": "header", "format": 1}\nnot json\n'):
        (tmp_path / "x").write_text(body)
        with pytest.raises(jr.JournalRefused):
            jr.read(tmp_path / "x")


def test_default_journals_are_new_files_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setattr(jr, "file_stem", lambda *_args, **_kw: "same")
    first = jr.create_default(tmp_path / "d", "r")
    second = jr.create_default(tmp_path / "d", "r")
    assert (first.path.name, second.path.name) == ("same.ndjson", "same-1.ndjson")
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    assert first.path.stat().st_mode & 0o777 == 0o600


def test_file_stem_is_safe_and_stamped():
    stem = jr.file_stem("../a b/ä", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert stem == "_a_b__-20260102T030405000000Z"
    assert jr.file_stem("").startswith("run-")


def test_old_default_journals_are_pruned(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    directory = tmp_path / "journals"
    directory.mkdir()
    old, recent, other = directory / "old.ndjson", directory / "recent.ndjson", directory / "notes.txt"
    for p in (old, recent, other):
        p.write_text("x\n")
    os.utime(old, (time.time() - 31 * 86_400,) * 2)
    os.utime(other, (time.time() - 31 * 86_400,) * 2)
    run(cfg | {"sync": cfg["sync"] | {"journal_dir": str(directory)}}, export(tmp_path), mode="replace")
    assert not old.exists() and recent.exists() and other.exists()
    assert len(list(directory.glob("*.ndjson"))) == 2


def test_xdg_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert jr.default_dir(None) == tmp_path / "nacento-sync" / "journal"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert jr.default_dir(None) == Path.home() / ".local" / "state" / "nacento-sync" / "journal"
    assert jr.default_dir("~/j") == Path.home() / "j"


def test_merge_with_journal_writes_it(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    path = tmp_path / "m.ndjson"
    result = run_journal(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-C", "images": [{"file_path": "n/e/new.jpg", "label": "N"}]}]), path)
    rows = [ln for ln in lines(path) if ln["type"] == "row"]
    assert result.journal == path and rows and {ln["sku"] for ln in rows} == {"SKU-C"}
    assert {ln["action"] for ln in rows} == {"insert"}


def test_a_rolled_back_transaction_is_marked_and_undo_skips_it(store, bucket, cfg, tmp_path):
    """A deadlock after the lines were written (here: in the before-commit hook the worker uses) rolls the
    batch back and retries it: the first attempt's lines are marked, the retry's are the ones undo reads."""
    import asyncio

    import pymysql

    from nacento_sync.engine import Engine, open_adapters
    from nacento_sync.feed import parse_record
    from nacento_sync.revert import undo

    seed(store, bucket)
    before = checksums(store)
    config = Config.model_validate(cfg)
    path = tmp_path / "j.ndjson"
    calls = []

    async def deadlock_once(_cur, _outcomes):
        calls.append(1)
        if len(calls) == 1:
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock (injected)")

    async def go() -> None:
        out = jr.JournalFile(path)
        async with open_adapters(config) as (conn, schema, storage):
            out.header(request_id="t", mode="replace", dry_run=False, database=schema.database,
                       table_prefix=schema.prefix, link_field=schema.link, version="t")
            engine = Engine(conn, schema, storage, Options.from_config(config, mode="replace"),
                            before_commit=deadlock_once, journal=out)
            items = [parse_record({"sku": "SKU-A", "images": [{"file_path": "k/e/keep.jpg"}]}, "t", 1)]
            outcomes = await engine.sync_batch(items)
            assert outcomes[0].error is None
        out.close()

    asyncio.run(go())
    marks = [ln for ln in lines(path) if ln["type"] in ("rollback", "commit")]
    assert marks == [{"type": "rollback", "tx": 1}, {"type": "commit", "tx": 2}]
    read = jr.read(path)
    assert read.rows and {r["tx"] for r in read.rows} == {2}
    assert undo(config, [path]).conflicts == []
    assert checksums(store) == before

"""`undo`: a replace-mode run and its undo leave every written table as it was (CHECKSUM TABLE), on the three
schema variants; a SKU changed since the run is a conflict; journals that must not be applied are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import config_dict, install_meta, run, write_ndjson
from typer.testing import CliRunner

from nacento_sync import Config
from nacento_sync.cli import app
from nacento_sync.journal import GALLERY, META, TO_ENTITY, VALUE, VARCHAR, VIDEO
from nacento_sync.revert import undo

WRITTEN = (GALLERY, TO_ENTITY, VALUE, VIDEO, VARCHAR, META)


@pytest.fixture
def store(magento):
    install_meta(magento)
    magento.fr = magento.add_store("fr")
    return magento


@pytest.fixture
def cfg(store, bucket, db_params, tmp_path):
    return config_dict(store, bucket, db_params, journal_dir=str(tmp_path / "journals"))


def checksums(store) -> dict[str, Any]:
    return {name: store.query(f"CHECKSUM TABLE {{{name}}}")[0]["Checksum"] for name in WRITTEN}


def seed(store, bucket) -> dict[str, Any]:
    """Three products: store-view rows and roles, a gallery row shared by two of them, legacy spellings."""
    a, b, c = store.add_product("SKU-A"), store.add_product("SKU-B"), store.add_product("SKU-C")
    keep = store.add_gallery_entry(a.link_id, "k/e/keep.jpg", label="K", position=1)  # legacy: no slash
    drop = store.add_gallery_entry(a.link_id, "/d/r/drop.jpg", label="D", position=2)
    store.add_value_row(keep, a.link_id, store.fr, "K fr", 3)
    store.add_value_row(drop, a.link_id, store.fr, "D fr", None)
    store.execute("INSERT INTO {nacento_media_gallery_meta} (record_id, s3_etag, updated_at) SELECT record_id, "
                  "'stale', '2020-01-02 03:04:05' FROM {catalog_product_entity_media_gallery_value} "
                  "WHERE store_id = 0")
    store.set_varchar(a.link_id, "image", "/d/r/drop.jpg")
    store.set_varchar(a.link_id, "image_label", "D")
    store.set_varchar(a.link_id, "image", "/d/r/drop.jpg", store_id=store.fr)
    store.set_varchar(a.link_id, "small_image", "k/e/keep.jpg")
    shared = store.add_gallery_entry(b.link_id, "s/h/shared.jpg", label="S", position=1)
    store.link_entry(shared, c.link_id)
    store.add_value_row(shared, c.link_id, 0, "S for C", 1)
    store.add_gallery_entry(c.link_id, "/c/c/own.jpg", label="C", position=2)
    for path in ("/k/e/keep.jpg", "/n/e/new.jpg", "/c/c/own.jpg"):
        bucket.put(path)
    return {"a": a, "b": b, "c": c}


def export(tmp_path: Path, name: str = "x.ndjson") -> Path:
    return write_ndjson(tmp_path / name, [
        {"sku": "SKU-A", "images": [{"file_path": "k/e/keep.jpg", "label": "K2", "roles": ["thumbnail"]},
                                    {"file_path": "n/e/new.jpg", "label": "N", "roles": ["base"]}]},
        {"sku": "SKU-B", "images": [{"file_path": "n/e/new.jpg", "label": "B new"}]},  # drops the shared row
        {"sku": "SKU-C", "images": [{"file_path": "c/c/own.jpg"}]},  # drops it too: the row goes
    ])


def test_replace_then_undo_restores_every_table(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    before = checksums(store)
    out = run(cfg, export(tmp_path), mode="replace")
    assert out.report.stats.error == 0 and out.report.stats.deleted >= 3
    journal_path = out.sync.journal
    assert journal_path is not None and journal_path.parent == tmp_path / "journals"
    assert out.report.journal == str(journal_path)
    assert journal_path.stat().st_mode & 0o777 == 0o600
    assert checksums(store) != before

    result = undo(Config.model_validate(cfg), [journal_path])
    assert result.conflicts == [] and sorted(result.reverted) == ["SKU-A", "SKU-B", "SKU-C"]
    assert checksums(store) == before
    assert result.changed_product_ids and result.journal is not None

    # The undo has its own journal: undoing it brings the run's result back, and undoing that restores again.
    again = undo(Config.model_validate(cfg), [Path(result.journal)])
    assert again.conflicts == []
    after_run = checksums(store)
    assert after_run != before
    assert again.journal is not None
    undo(Config.model_validate(cfg), [Path(again.journal)])
    assert checksums(store) == before


def test_a_row_changed_since_the_run_is_a_conflict_the_others_revert(store, bucket, cfg, tmp_path):
    products = seed(store, bucket)
    out = run(cfg, export(tmp_path), mode="replace")
    a = products["a"]
    store.execute("UPDATE {catalog_product_entity_media_gallery_value} SET label = 'edited by hand' "
                  f"WHERE {store.link} = %s AND store_id = 0 AND label = 'K2'", (a.link_id,))
    runner = CliRunner()
    config_file = tmp_path / "c.yaml"
    config_file.write_text(json.dumps(cfg))
    done = runner.invoke(app, ["--config", str(config_file), "undo", str(out.sync.journal), "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert [c["sku"] for c in report["conflicts"]] == ["SKU-A"]
    assert "changed since the run" in report["conflicts"][0]["reason"]
    assert sorted(report["reverted"]) == ["SKU-B", "SKU-C"]
    # SKU-A kept its hand edit; B and C have their shared row back
    assert [g["value"] for g in store.gallery(products["b"].link_id)] == ["s/h/shared.jpg"]
    assert "edited by hand" in [r["label"] for r in store.value_rows(a.link_id)]


def test_a_merge_that_brings_deleted_images_back_makes_a_conflict(store, bucket, cfg, tmp_path):
    products = seed(store, bucket)
    bucket.put("/d/r/drop.jpg")
    out = run(cfg, export(tmp_path), mode="replace")
    run(cfg, write_ndjson(tmp_path / "m.ndjson", [{"sku": "SKU-A", "images": [{"file_path": "d/r/drop.jpg"}]}]))
    result = undo(Config.model_validate(cfg), [out.sync.journal])
    assert [c.sku for c in result.conflicts] == ["SKU-A"]
    # the merge's row stays, the run's deleted one is not re-inserted next to it
    paths = [g["value"] for g in store.gallery(products["a"].link_id)]
    assert paths.count("/d/r/drop.jpg") == 1


def test_dry_run_undo_writes_nothing(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    out = run(cfg, export(tmp_path), mode="replace")
    after = checksums(store)
    journals = sorted((tmp_path / "journals").iterdir())
    result = undo(Config.model_validate(cfg), [out.sync.journal], dry_run=True)
    assert result.conflicts == [] and result.rows["reinserted"] > 0 and result.journal is None
    assert checksums(store) == after
    assert sorted((tmp_path / "journals").iterdir()) == journals


def test_several_journals_are_reverted_newest_first(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    before = checksums(store)
    first = run(cfg, export(tmp_path), mode="replace")
    second = run(cfg, write_ndjson(tmp_path / "y.ndjson", [
        {"sku": "SKU-A", "images": [{"file_path": "k/e/keep.jpg", "label": "K3"}]}]), mode="replace")
    assert first.sync.journal != second.sync.journal
    result = undo(Config.model_validate(cfg), [first.sync.journal, second.sync.journal])  # given oldest first
    assert result.conflicts == []
    assert checksums(store) == before


def _cli(cfg: dict, tmp_path: Path, *args: str):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(json.dumps(cfg))
    return CliRunner().invoke(app, ["--config", str(config_file), "undo", *args])


def test_refused_journals_exit_2(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    run_dry = run(cfg, export(tmp_path), mode="replace", dry_run=True)
    assert run_dry.sync.journal is None  # a dry run writes no default journal
    out = run(cfg, export(tmp_path), mode="replace")
    header, *rest = out.sync.journal.read_text().splitlines()
    for name, change in (("dry", {"dry_run": True}), ("db", {"database": "another"}),
                         ("prefix", {"table_prefix": "zz_"}), ("link", {"link_field": "other_id"})):
        path = tmp_path / f"{name}.ndjson"
        path.write_text("\n".join([json.dumps(json.loads(header) | change), *rest]) + "\n")
        done = _cli(cfg, tmp_path, str(path))
        assert done.exit_code == 2, (name, done.output)
    (tmp_path / "junk.ndjson").write_text("not json\n")
    assert _cli(cfg, tmp_path, str(tmp_path / "junk.ndjson")).exit_code == 2


def test_unreachable_database_exits_3(store, bucket, cfg, tmp_path):
    seed(store, bucket)
    out = run(cfg, export(tmp_path), mode="replace")
    unreachable = cfg | {"database": cfg["database"] | {"port": 1, "connect_timeout": 2}}
    assert _cli(unreachable, tmp_path, str(out.sync.journal)).exit_code == 3

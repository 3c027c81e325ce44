"""`undo`: a replace-mode run and its undo leave every written table as it was (CHECKSUM TABLE), on the three
schema variants; a SKU changed since the run is a conflict; journals that must not be applied are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import config_dict, install_meta, run, write_ndjson
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nacento_sync import Config
from nacento_sync import journal as jr
from nacento_sync.cli import app
from nacento_sync.journal import GALLERY, META, TO_ENTITY, VALUE, VARCHAR, VIDEO
from nacento_sync.revert import undo
from nacento_sync.undo import plan_undo, units

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


def test_a_product_deleted_since_the_run_is_a_conflict_not_a_crash(store, bucket, cfg, tmp_path):
    products = seed(store, bucket)
    out = run(cfg, export(tmp_path), mode="replace")
    store.execute(f"DELETE FROM {{catalog_product_entity}} WHERE {store.link} = %s", (products["c"].link_id,))
    result = undo(Config.model_validate(cfg), [out.sync.journal])
    assert sorted(c.sku for c in result.conflicts) == ["SKU-B", "SKU-C"]  # they share a row: together
    assert result.reverted == ["SKU-A"]
    assert [g["value"] for g in store.gallery(products["a"].link_id)] == ["k/e/keep.jpg", "/d/r/drop.jpg"]


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


def test_worker_journals_each_replace_batch_and_undo_takes_them_all(store, bucket, db_params, queue_cfg, tmp_path):
    from async_helpers import async_config, run_submit, run_worker

    seed(store, bucket)
    before = checksums(store)
    cfg = async_config(store, bucket, db_params, queue_cfg, batch_size=1, journal_dir=str(tmp_path / "journals"))
    run_submit(cfg, export(tmp_path), mode="replace", request_id="op-undo")
    stats = run_worker(cfg)
    assert stats.complete == 3
    journals = sorted((tmp_path / "journals").glob("worker-*.ndjson"))
    assert journals and all(p.stat().st_mode & 0o777 == 0o600 for p in journals)
    assert all(json.loads(p.read_text().splitlines()[0])["command"] == "worker" for p in journals)
    assert checksums(store) != before
    result = undo(Config.model_validate(cfg), journals)
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


# ---------------------------------------------------------------- the planner, without a database


L = "entity_id"


def _journal(changes: list[jr.Change], name: str = "j", created: str = "2026-01-01T00:00:00Z") -> jr.Journal:
    return jr.Journal(Path(name), {"type": "header", "created_at": created},
                      [jr.row_line(c, 1) for c in changes])


def _apply(world: dict, changes: list[jr.Change]) -> dict:
    out = {t: dict(rows) for t, rows in world.items()}
    for c in changes:
        key = tuple(c.key[k] for k in jr.key_columns(c.table, L))
        if c.action == "delete":
            del out[c.table][key]
        else:
            out.setdefault(c.table, {})[key] = c.after
    return out


def _gallery(vid: int, path: str) -> dict:
    return {"value_id": vid, "attribute_id": 90, "value": path, "media_type": "image", "disabled": 0}


def _link(vid: int, link: int) -> dict:
    return {"value_id": vid, L: link}


def _role(vid: int, link: int, value: str, attribute: int = 87, store: int = 0) -> dict:
    return {"value_id": vid, "attribute_id": attribute, "store_id": store, L: link, "value": value}


def test_a_run_is_inverted_row_by_row():
    before = {jr.GALLERY: {(1,): _gallery(1, "/a/a/old.jpg")}, jr.TO_ENTITY: {(1, 7): _link(1, 7)},
              jr.VARCHAR: {(5,): _role(5, 7, "/a/a/old.jpg")}}
    after = {jr.GALLERY: {(2,): _gallery(2, "/b/b/new.jpg")}, jr.TO_ENTITY: {(2, 7): _link(2, 7)},
             jr.VARCHAR: {(5,): _role(5, 7, "/b/b/new.jpg")}}
    owners = jr.owners(before, after, L, {7: ("S", 70)})
    changes = jr.diff(before, after, L, owners, ["S"])
    assert [(c.table, c.action) for c in changes] == [
        (jr.TO_ENTITY, "delete"), (jr.GALLERY, "delete"), (jr.VARCHAR, "update"), (jr.GALLERY, "insert"),
        (jr.TO_ENTITY, "insert")]
    plan = plan_undo([_journal(changes)], after, L)
    assert plan.conflicts == [] and plan.reverted == ["S"] and plan.product_ids == [70]
    assert _apply(after, plan.changes) == before
    # already reverted: nothing to do
    assert plan_undo([_journal(changes)], before, L).changes == []


def test_conflicts_changed_row_collisions_and_cascades():
    before = {jr.GALLERY: {(1,): _gallery(1, "/a/a/x.jpg")}, jr.TO_ENTITY: {(1, 7): _link(1, 7)},
              jr.VARCHAR: {}}
    after = {jr.GALLERY: {(3,): _gallery(3, "/n/n/new.jpg")}, jr.TO_ENTITY: {(3, 7): _link(3, 7)},
             jr.VARCHAR: {(5,): _role(5, 7, "/n/n/new.jpg")}}
    changes = jr.diff(before, after, L, jr.owners(before, after, L, {7: ("S", 70)}), ["S"])
    j = [_journal(changes)]

    def reason(world):
        plan = plan_undo(j, world, L)
        assert plan.changes == [] and [c.sku for c in plan.conflicts] == ["S"]
        return plan.conflicts[0].reason

    changed = _apply(after, []) | {jr.VARCHAR: {(5,): _role(5, 7, "/h/a/hand.jpg")}}
    assert "changed since the run" in reason(changed)
    same_key = {t: dict(r) for t, r in after.items()}
    same_key[jr.GALLERY][(1,)] = _gallery(1, "/o/t/other.jpg")  # the deleted row's id is used again
    assert "changed since the run" in reason(same_key)
    same_path = {t: dict(r) for t, r in after.items()}
    same_path[jr.GALLERY][(4,)] = _gallery(4, "a/a/x.jpg")  # a merge brought the image back (legacy spelling)
    same_path[jr.TO_ENTITY][(4, 7)] = _link(4, 7)
    assert "again" in reason(same_path)
    cascade = {t: dict(r) for t, r in after.items()}
    cascade[jr.TO_ENTITY][(3, 8)] = _link(3, 8)  # another product linked the run's new row since
    assert "reference it" in reason(cascade)
    role_key = {t: dict(r) for t, r in before.items()}
    role_key[jr.VARCHAR] = {(6,): _role(6, 7, "x")}
    gone = jr.diff({jr.VARCHAR: {(5,): _role(5, 7, "y")}}, {jr.VARCHAR: {}}, L,
                   {(jr.VARCHAR, (5,)): ("S", 70)}, ["S"])
    plan = plan_undo([_journal(gone)], role_key, L)
    assert "another row now" in plan.conflicts[0].reason


def test_skus_sharing_a_row_revert_together():
    shared = (jr.Change(jr.TO_ENTITY, "delete", {"value_id": 1, L: 7}, _link(1, 7), None, "A", 1),
              jr.Change(jr.TO_ENTITY, "delete", {"value_id": 1, L: 8}, _link(1, 8), None, "B", 2),
              jr.Change(jr.GALLERY, "delete", {"value_id": 1}, _gallery(1, "/s/s/s.jpg"), None, "A", 1),
              jr.Change(jr.VARCHAR, "delete", {"value_id": 9}, _role(9, 9, "v"), None, "C", 3))
    j = _journal(list(shared))
    assert sorted(map(sorted, units([j]))) == [["A", "B"], ["C"]]
    world = {jr.GALLERY: {}, jr.TO_ENTITY: {(1, 8): _link(1, 8) | {"x": 1}}, jr.VARCHAR: {}}  # B's link changed
    plan = plan_undo([j], world, L)
    assert sorted(c.sku for c in plan.conflicts) == ["A", "B"] and plan.reverted == ["C"]


def test_newest_journal_is_reverted_first():
    w0 = {jr.VARCHAR: {(5,): _role(5, 7, "v0")}}
    w1 = {jr.VARCHAR: {(5,): _role(5, 7, "v1")}}
    w2 = {jr.VARCHAR: {(5,): _role(5, 7, "v2")}}
    own = {(jr.VARCHAR, (5,)): ("S", 70)}
    first = _journal(jr.diff(w0, w1, L, own, ["S"]), "first", "2026-01-01T00:00:00Z")
    second = _journal(jr.diff(w1, w2, L, own, ["S"]), "second", "2026-01-02T00:00:00Z")
    plan = plan_undo([first, second], w2, L)
    assert plan.conflicts == [] and _apply(w2, plan.changes) == w0


_paths = st.sampled_from(["/a/a/1.jpg", "/b/b/2.jpg", "/c/c/3.jpg"])


@st.composite
def _worlds(draw):
    """Gallery rows with links to products 7/8 and role rows: consistent (each path once per product)."""
    world: dict = {jr.GALLERY: {}, jr.TO_ENTITY: {}, jr.VARCHAR: {}}
    for link in (7, 8):
        for path in draw(st.sets(_paths)):
            vid = draw(st.integers(1, 60).filter(lambda v: (v,) not in world[jr.GALLERY]))
            world[jr.GALLERY][(vid,)] = _gallery(vid, path)
            world[jr.TO_ENTITY][(vid, link)] = _link(vid, link)
        for attribute in draw(st.sets(st.sampled_from([85, 86, 87]))):
            rid = draw(st.integers(1, 60).filter(lambda v: (v,) not in world[jr.VARCHAR]))
            world[jr.VARCHAR][(rid,)] = _role(rid, link, draw(_paths), attribute)
    return world


@settings(max_examples=150, deadline=None)
@given(_worlds(), _worlds())
def test_undo_of_any_run_restores_the_world_before_it(before, after):
    products = {7: ("A", 70), 8: ("B", 80)}
    changes = jr.diff(before, after, L, jr.owners(before, after, L, products), ["A", "B"])
    plan = plan_undo([_journal(changes)], after, L)
    assert plan.conflicts == []
    assert _apply(after, plan.changes) == before
    # and the undo's own journal undoes the undo
    again = plan_undo([_journal(plan.changes)], before, L)
    assert again.conflicts == [] and _apply(before, again.changes) == after

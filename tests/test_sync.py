"""End-to-end sync against the real MariaDB and S3 (moto) servers, on the three schema variants."""

from __future__ import annotations

import io

import pytest
from helpers import (
    Bucket,
    FlakyS3,
    config_dict,
    enable_table_statistics,
    install_meta,
    make_bucket,
    rows_changed,
    run,
    write_ndjson,
)
from rich.console import Console

from nacento_sync.errors import SchemaError
from nacento_sync.models import NO_SELECTION
from nacento_sync.report import render


@pytest.fixture
def store(magento):
    install_meta(magento)
    enable_table_statistics(magento)
    return magento


@pytest.fixture
def cfg(store, bucket, db_params):
    return config_dict(store, bucket, db_params)


def _rendered(report, row_name: str) -> str:
    """The console summary's line for `row_name`, as plain text."""
    buf = io.StringIO()
    render(report, Console(file=buf, width=160, color_system=None))
    (line,) = [ln for ln in buf.getvalue().splitlines() if row_name in ln]
    return line.replace("│", " ").strip()


def meta(store, record_id):
    rows = store.query("SELECT s3_etag FROM {nacento_media_gallery_meta} WHERE record_id = %s", (record_id,))
    return rows[0]["s3_etag"] if rows else None


def test_first_sync_inserts_then_rerun_and_dry_run_write_nothing(store, bucket, cfg, tmp_path):
    a, b = store.add_product("SKU-A"), store.add_product("SKU-B")
    e1, e2 = bucket.put("/f/r/front.jpg"), bucket.put("/b/a/back.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-A", "images": [
            {"file_path": "f/r/front.jpg", "label": "Front", "roles": ["base", "small", "thumbnail"]},
            {"file_path": "catalog/product/b/a/back.jpg", "label": "Back", "disabled": True}]},
        {"sku": "sku-b ", "images": [{"file_path": "https://cdn.example.com/media/catalog/product/b/a/back.jpg"}]},
    ])
    out = run(cfg, export)
    assert out.report.stats.inserted == 3 and out.report.stats.ok == 2 and out.report.stats.skus_seen == 2
    ga = store.gallery(a.link_id)
    assert [(g["value"], g["label"], g["position"], g["store0_disabled"], g["media_type"]) for g in ga] == [
        ("/f/r/front.jpg", "Front", 1, 0, "image"), ("/b/a/back.jpg", "Back", 2, 1, "image")]
    assert meta(store, ga[0]["record_id"]) == e1 and meta(store, ga[1]["record_id"]) == e2
    roles = store.roles(a.link_id)
    for role in ("image", "small_image", "thumbnail"):
        assert roles[(role, 0)] == "/f/r/front.jpg"
        assert roles[(role + "_label", 0)] == "Front"
    gb = store.gallery(b.link_id)
    assert [(g["value"], g["label"], g["position"]) for g in gb] == [("/b/a/back.jpg", None, 1)]
    assert out.result("sku-b ").product_id == b.entity_id
    assert sorted(out.report.changed_product_ids) == sorted([a.entity_id, b.entity_id])

    counts = store.table_counts()
    before = rows_changed(store)
    assert before[store.t("catalog_product_entity_media_gallery")] == 3  # the counters do count our writes
    predicted = run(cfg, write_ndjson(tmp_path / "more.ndjson", [  # a dry run names what would change
        {"sku": "SKU-B", "images": [{"file_path": "f/r/front.jpg"}]}, {"sku": "SKU-A", "images": []}]),
        dry_run=True)
    assert predicted.report.changed_product_ids == [b.entity_id] and predicted.report.stats.inserted == 1
    assert _rendered(predicted.report, "products changed").split()[-1] == "1"
    again = run(cfg, export)
    dry = run(cfg, export, dry_run=True, mode="replace")
    assert rows_changed(store) == before
    assert store.table_counts() == counts
    for rep in (again.report, dry.report):
        assert rep.stats.skipped_no_change == 3
        assert (rep.stats.inserted, rep.stats.updated_value, rep.stats.updated_meta, rep.stats.deleted) == (0,) * 4
    assert again.report.changed_product_ids == [] and dry.report.changed_product_ids == []


def test_changes_are_counted_and_dry_run_predicts_them(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    bucket.put("/a/a/one.jpg"), bucket.put("/a/a/two.jpg")
    first = [{"file_path": "a/a/one.jpg", "label": "One"}, {"file_path": "a/a/two.jpg", "label": "Two"}]
    run(cfg, write_ndjson(tmp_path / "1.ndjson", [{"sku": "SKU-1", "images": first}]))
    new_etag = bucket.put("/a/a/two.jpg", b"new bytes")  # re-uploaded under the same name
    second = [{"file_path": "a/a/one.jpg", "label": "Uno"}, {"file_path": "a/a/two.jpg", "label": "Two"}]
    export = write_ndjson(tmp_path / "2.ndjson", [{"sku": "SKU-1", "images": second}])
    dry = run(cfg, export, dry_run=True)
    out = run(cfg, export)
    for rep in (dry.report, out.report):
        s = rep.results[0].image_stats
        assert (s.updated_value, s.updated_meta, s.skipped_no_change, s.inserted) == (1, 1, 0, 0)
        assert rep.changed_product_ids == [p.entity_id]
    g = store.gallery(p.link_id)
    assert [x["label"] for x in g] == ["Uno", "Two"]
    assert meta(store, g[1]["record_id"]) == new_etag


def test_missing_label_and_disabled_keep_stored_values(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    vid = store.add_gallery_entry(p.link_id, "/k/e/keep.jpg", label="Stored", position=4, disabled=1)
    bucket.put("/k/e/keep.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "k/e/keep.jpg", "position": 4}]}]))
    (g,) = store.gallery(p.link_id)
    assert (g["value_id"], g["label"], g["store0_disabled"]) == (vid, "Stored", 1)
    assert out.report.stats.updated_meta == 1 and out.report.stats.updated_value == 0


def test_magento_slashed_entries_are_matched_not_duplicated(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    vid = store.add_gallery_entry(p.link_id, "/m/y/image.jpg", label="Mine", position=1)
    bucket.put("/m/y/image.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "m/y/image.jpg", "label": "Mine", "position": 1}]}]))
    assert [g["value_id"] for g in store.gallery(p.link_id)] == [vid]
    s = out.report.stats
    assert (s.inserted, s.updated_meta, s.updated_value) == (0, 1, 0)  # only the meta row was learned


def test_legacy_and_duplicate_entries_are_merged_with_their_roles(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    legacy = store.add_gallery_entry(p.link_id, "l/e/legacy.jpg", label="L", position=1)
    dup_old = store.add_gallery_entry(p.link_id, "d/u/dup.jpg", label="D", position=2)
    dup_new = store.add_gallery_entry(p.link_id, "/d/u/dup.jpg", label="D", position=2)
    store.set_varchar(p.link_id, "image", "l/e/legacy.jpg")
    store.set_varchar(p.link_id, "thumbnail", "d/u/dup.jpg")
    store.set_varchar(p.link_id, "thumbnail", "d/u/dup.jpg", store_id=1)
    bucket.put("/l/e/legacy.jpg"), bucket.put("/d/u/dup.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "l/e/legacy.jpg", "label": "L"}, {"file_path": "d/u/dup.jpg", "label": "D"}]}]))
    g = store.gallery(p.link_id)
    assert [(x["value_id"], x["value"]) for x in g] == [(legacy, "/l/e/legacy.jpg"), (dup_new, "/d/u/dup.jpg")]
    assert store.query("SELECT COUNT(*) AS n FROM {catalog_product_entity_media_gallery} WHERE value_id = %s",
                       (dup_old,))[0]["n"] == 0
    roles = store.roles(p.link_id)
    assert roles[("image", 0)] == "/l/e/legacy.jpg"
    assert roles[("thumbnail", 0)] == "/d/u/dup.jpg"
    # Store 1 held a copy of store 0's value: it now inherits it (issue 8's store-view rule), same image shown.
    assert ("thumbnail", 1) not in roles
    s = out.report.stats
    assert (s.deleted, s.updated_value) == (1, 2)
    codes = {w.split(":")[0] for w in out.report.results[0].image_stats.warnings}
    assert {"legacy_path", "duplicate_entry"} <= codes


def test_shared_gallery_row_is_never_changed_for_the_other_product(store, bucket, cfg, tmp_path):
    a, b, c = store.add_product("SKU-A"), store.add_product("SKU-B"), store.add_product("SKU-C")
    shared = store.add_gallery_entry(a.link_id, "s/h/shared.jpg", label="S", position=1)
    for other in (b, c):
        store.link_entry(shared, other.link_id)
        store.add_value_row(shared, other.link_id, 0, "other label", 1)
    bucket.put("/s/h/shared.jpg"), bucket.put("/o/t/other.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-A", "images": [
        {"file_path": "s/h/shared.jpg", "label": "New"}]}]))
    assert any(w.startswith("shared_entry:") for w in out.result("SKU-A").image_stats.warnings)
    (ga,) = store.gallery(a.link_id)
    assert ga["value"] == "/s/h/shared.jpg" and ga["value_id"] != shared and ga["label"] == "New"
    for other in (b, c):
        (g,) = store.gallery(other.link_id)
        assert (g["value_id"], g["value"], g["label"]) == (shared, "s/h/shared.jpg", "other label")
    # replace mode removing the shared image from B only unlinks it: C keeps it untouched
    run(cfg, write_ndjson(tmp_path / "y.ndjson", [{"sku": "SKU-B", "images": [
        {"file_path": "o/t/other.jpg"}]}]), mode="replace")
    assert [g["value"] for g in store.gallery(b.link_id)] == ["/o/t/other.jpg"]
    (gc,) = store.gallery(c.link_id)
    assert (gc["value_id"], gc["value"], gc["label"]) == (shared, "s/h/shared.jpg", "other label")


def test_videos_are_untouched_even_in_replace_mode(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    video = store.add_gallery_entry(p.link_id, "/v/i/video-thumb.jpg", media_type="external-video", position=1)
    store.add_video_row(video, "https://youtube.com/watch?v=x")
    bucket.put("/v/i/video-thumb.jpg"), bucket.put("/i/m/img.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "i/m/img.jpg", "roles": ["base"]}, {"file_path": "v/i/video-thumb.jpg"}]}]), mode="replace")
    assert any(w.startswith("media_conflict:") for w in out.result("SKU-1").image_stats.warnings)
    rows = [(g["value_id"], g["value"], g["media_type"]) for g in store.gallery(p.link_id)]
    # the video is left alone, and no image entry duplicates its path (Magento would drop one of the two)
    assert sorted(r[1:] for r in rows) == [("/i/m/img.jpg", "image"), ("/v/i/video-thumb.jpg", "external-video")]
    assert video in [r[0] for r in rows]
    assert len(store.query("SELECT * FROM {catalog_product_entity_media_gallery_value_video}")) == 1


def test_unknown_and_ambiguous_skus_and_rejected_records(store, bucket, cfg, tmp_path):
    ok = store.add_product("SKU-OK")
    store.add_product("TWIN"), store.add_product("twin")
    bucket.put("/o/k/ok.jpg")
    export = tmp_path / "x.ndjson"
    export.write_text(
        '{"sku": "NOPE", "images": [{"file_path": "o/k/ok.jpg"}]}\n'
        "{not json\n"
        '{"sku": "TWIN", "images": [{"file_path": "o/k/ok.jpg"}]}\n'
        "\n"
        '{"sku": "SKU-OK", "images": [{"file_path": "../etc/passwd"}]}\n'
        '{"sku": "SKU-OK", "images": [{"file_path": "o/k/ok.jpg"}]}\n'
    )
    out = run(cfg, export)
    assert out.result("NOPE").error == "product_not_found" and out.result("NOPE").product_id is None
    assert out.result("TWIN").error == "ambiguous_sku"
    assert out.result("SKU-OK").error is None and out.result("SKU-OK").image_stats.inserted == 1
    assert [r.source for r in out.report.rejected] == [f"{export}:2", f"{export}:5"]
    s = out.report.stats
    assert (s.skus_seen, s.ok, s.error, s.rejected) == (3, 1, 2, 2)
    assert [g["value"] for g in store.gallery(ok.link_id)] == ["/o/k/ok.jpg"]
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 1


def test_missing_objects_are_reported_and_leave_entries_alone(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    vid = store.add_gallery_entry(p.link_id, "/g/o/gone.jpg", label="Old", position=1)
    bucket.put("/h/e/here.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "g/o/gone.jpg", "label": "New", "roles": ["image"]},
        {"file_path": "n/o/never.jpg", "roles": ["thumbnail"]},
        {"file_path": "h/e/here.jpg"}]}]), mode="replace")
    r = out.result("SKU-1")
    assert (r.image_stats.missing, r.image_stats.inserted, r.error) == (2, 1, None)
    assert any("media/catalog/product/n/o/never.jpg" in w for w in r.image_stats.warnings)
    g = {x["value"]: x for x in store.gallery(p.link_id)}
    assert g["/g/o/gone.jpg"]["value_id"] == vid and g["/g/o/gone.jpg"]["label"] == "Old"
    assert ("image", 0) not in store.roles(p.link_id) and ("thumbnail", 0) not in store.roles(p.link_id)


def test_replace_mode_deletes_resets_roles_and_is_seen_by_changelog(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    keep = store.add_gallery_entry(p.link_id, "/k/e/keep.jpg", label="K", position=1)
    store.add_gallery_entry(p.link_id, "/d/r/drop.jpg", label="D", position=2)
    store.add_value_row(keep, p.link_id, 1, "K in store 1", None)
    store.set_varchar(p.link_id, "image", "/d/r/drop.jpg")
    store.set_varchar(p.link_id, "image_label", "D")
    store.set_varchar(p.link_id, "image", "/d/r/drop.jpg", store_id=1)
    store.set_varchar(p.link_id, "small_image", "/k/e/keep.jpg")
    bucket.put("/k/e/keep.jpg")
    store.clear_changelog()
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "k/e/keep.jpg", "label": "K", "roles": ["thumbnail"]}]}]), mode="replace")
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/k/e/keep.jpg"]
    assert out.report.stats.deleted == 1
    roles = store.roles(p.link_id)
    assert roles[("image", 0)] == NO_SELECTION and roles[("image_label", 0)] is None
    assert ("image", 1) not in roles
    assert roles[("small_image", 0)] == NO_SELECTION  # the feed manages roles: unclaimed ones are cleared
    assert roles[("thumbnail", 0)] == "/k/e/keep.jpg"
    assert p.entity_id in store.changelog()  # explicit deletes fire Magento's triggers
    # keep's store-0 row only: replace mode makes every store view show store 0 (issue 8), so the
    # store-1 label row went
    assert len(store.value_rows(p.link_id)) == 1


def test_replace_safety_nets(store, cfg, tmp_path):
    p = store.add_product("SKU-1")
    store.add_gallery_entry(p.link_id, "/a/a/a.jpg", position=1)
    empty = run(cfg, write_ndjson(tmp_path / "e.ndjson", [{"sku": "SKU-1", "images": []}]), mode="replace")
    missing = run(cfg, write_ndjson(tmp_path / "m.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "n/o/nope.jpg"}]}]), mode="replace")
    assert len(store.gallery(p.link_id)) == 1
    assert empty.result("SKU-1").image_stats.warnings[0].startswith("empty_image_list:")
    assert any(w.startswith("all_missing:") for w in missing.result("SKU-1").image_stats.warnings)
    run(cfg, write_ndjson(tmp_path / "e.ndjson", [{"sku": "SKU-1", "images": []}]), mode="replace",
        allow_empty=True)
    assert store.gallery(p.link_id) == []


def test_same_sku_twice_applies_in_order_and_merges_the_result(store, bucket, cfg, tmp_path):
    cfg["sync"]["batch_size"] = 2
    p = store.add_product("SKU-1")
    store.add_product("SKU-2"), store.add_product("SKU-3")
    bucket.put("/a/a/one.jpg"), bucket.put("/b/b/two.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-1", "images": [{"file_path": "a/a/one.jpg", "label": "first"}]},
        {"sku": "sku-1", "images": [{"file_path": "a/a/one.jpg", "label": "second"}]},  # same batch: wins
        {"sku": "SKU-2", "images": []},
        {"sku": "SKU-3", "images": []},
        {"sku": "SKU-1", "images": [{"file_path": "b/b/two.jpg"}]},  # later batch: applied after
    ]))
    assert [(g["value"], g["label"]) for g in store.gallery(p.link_id)] == [("/a/a/one.jpg", "second"),
                                                                            ("/b/b/two.jpg", None)]
    results = [r for r in out.report.results if r.sku.lower() == "sku-1"]
    assert len(results) == 1 and results[0].image_stats.inserted == 2
    assert sum(w.startswith("duplicate_sku:") for w in results[0].image_stats.warnings) == 2
    assert out.report.stats.skus_seen == 3


def test_adobe_commerce_writes_the_active_row_only(magento_factory, bucket, db_params, tmp_path):
    store = magento_factory("ee")
    install_meta(store)
    p = store.add_product("SKU-EE", version_rows=[(1, 1_700_000_000), (1_700_000_000, 1_800_000_000),
                                                  (1_800_000_000, 2_147_483_647)])
    past, future = p.link_ids[0], p.link_ids[2]
    assert p.link_id == p.link_ids[1]
    bucket.put("/e/e/ee.jpg")
    out = run(config_dict(store, bucket, db_params), write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-EE", "images": [{"file_path": "e/e/ee.jpg", "roles": ["base"]}]}]))
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/e/e/ee.jpg"]
    assert store.gallery(past) == [] and store.gallery(future) == []
    assert store.roles(future) == {}
    r = out.result("SKU-EE")
    assert r.product_id == p.entity_id
    assert any(w.startswith("staging_future_rows:") for w in r.image_stats.warnings)


def test_storage_prefix_is_honoured(magento_factory, s3_endpoint, db_params, tmp_path):
    store = magento_factory("ce")
    install_meta(store)
    bucket = make_bucket(s3_endpoint, prefix="shop-a")
    p = store.add_product("SKU-1")
    bucket.put("/p/r/prefixed.jpg")
    out = run(config_dict(store, bucket, db_params), write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-1", "images": [{"file_path": "p/r/prefixed.jpg"}]}]))
    assert out.report.stats.inserted == 1 and [g["value"] for g in store.gallery(p.link_id)] == ["/p/r/prefixed.jpg"]


def test_a_failing_sku_does_not_fail_its_batch(store, bucket, cfg, tmp_path):
    """A database error inside a batch: the batch is retried SKU by SKU; only the bad SKU fails."""
    store.execute(
        "CREATE TRIGGER nacento_test_boom BEFORE INSERT ON {catalog_product_entity_media_gallery_value} "
        "FOR EACH ROW BEGIN IF NEW.label = 'boom' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'; "
        "END IF; END")
    products = [store.add_product(f"SKU-{i}") for i in range(3)]
    bucket.put("/a/b/ok.jpg"), bucket.put("/a/b/other.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-0", "images": [{"file_path": "a/b/ok.jpg", "label": "fine"}]},
        {"sku": "SKU-1", "images": [{"file_path": "a/b/ok.jpg", "label": "fine"},
                                    {"file_path": "a/b/other.jpg", "label": "boom"}]},
        {"sku": "SKU-2", "images": [{"file_path": "a/b/ok.jpg", "label": "fine"}]}]))
    assert out.result("SKU-1").error == "database_error"
    assert any("boom" in w for w in out.result("SKU-1").image_stats.warnings)
    assert out.result("SKU-0").error is None and out.result("SKU-2").error is None
    assert [len(store.gallery(p.link_id)) for p in products] == [1, 0, 1]  # SKU-1: nothing half-written
    assert out.report.stats.inserted == 2 and out.report.stats.error == 1


@pytest.mark.parametrize("lock_mode", ["consecutive", "interleaved"])
def test_mysql_paths_without_returning_give_the_same_result(store, bucket, cfg, tmp_path, monkeypatch, lock_mode):
    """Without MariaDB's INSERT … RETURNING (MySQL 8): ids computed from LAST_INSERT_ID() and the
    increment (lock mode ≤ 1), or one insert per row (lock mode 2).

    Ids step by 3, as on Galera (the node count): every connection the tool opens sets
    auto_increment_increment for its own session (init_command), which is what the tool reads and what its
    inserts get; the server's global value, which every other test sees, is left alone."""
    import nacento_sync.magento as m

    monkeypatch.setattr(m, "_mariadb_at_least", lambda _version, _wanted: False)
    real_detect = m.detect_schema
    monkeypatch.setattr(m, "SESSION_INIT", m.SESSION_INIT + ", SESSION auto_increment_increment = 3")

    async def detect(conn, prefix):
        schema = await real_detect(conn, prefix)
        assert schema.consecutive_ids  # MariaDB's default lock mode is 1
        assert schema.autoinc_step == 3  # the session setting reached the tool
        schema.consecutive_ids = lock_mode == "consecutive"
        return schema

    monkeypatch.setattr(m, "detect_schema", detect)
    ps = [store.add_product(f"SKU-{i}") for i in range(3)]
    for i in range(3):
        bucket.put(f"/m/y/{i}.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": f"SKU-{i}", "images": [{"file_path": f"m/y/{j}.jpg", "label": f"{i}-{j}"} for j in range(3)]}
        for i in range(3)]))
    assert out.report.stats.inserted == 9
    for i, p in enumerate(ps):
        g = store.gallery(p.link_id)
        assert [(x["value"], x["label"]) for x in g] == [(f"/m/y/{j}.jpg", f"{i}-{j}") for j in range(3)]
        assert all(meta(store, x["record_id"]) for x in g)
        assert all(x["value_id"] % 3 == 1 and x["record_id"] % 3 == 1 for x in g)  # the ids did step by 3


def test_surplus_store0_rows_are_removed_keeping_the_one_with_meta(store, bucket, cfg, tmp_path):
    p = store.add_product("SKU-1")
    vid = store.add_gallery_entry(p.link_id, "/d/u/dup.jpg", label="first", position=1)
    second = store.add_value_row(vid, p.link_id, 0, "second", 1)
    store.execute("INSERT INTO {nacento_media_gallery_meta} (record_id, s3_etag) VALUES (%s, 'old')", (second,))
    etag = bucket.put("/d/u/dup.jpg")
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "d/u/dup.jpg"}]}]))
    rows = [r for r in store.value_rows(p.link_id) if r["store_id"] == 0]
    assert [(r["record_id"], r["label"]) for r in rows] == [(second, "second")]
    assert meta(store, second) == etag
    assert any(w.startswith("duplicate_value_rows:") for w in out.result("SKU-1").image_stats.warnings)


def test_storage_failures_fail_the_sku_and_write_nothing(magento_factory, db_params, tmp_path):
    store = magento_factory("ce")
    install_meta(store)
    flaky = FlakyS3()
    try:
        a, b = store.add_product("SKU-A"), store.add_product("SKU-B")
        cfg = config_dict(store, Bucket(flaky.endpoint, "flaky"), db_params)
        cfg["storage"]["max_backoff"] = 0.2  # a persistent 500 spends the whole retry budget: quickly here
        out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [
            {"sku": "SKU-A", "images": [{"file_path": "o/k/fine.jpg"}, {"file_path": "f/a/fail.jpg"}]},
            {"sku": "SKU-B", "images": [{"file_path": "o/k/fine.jpg"}, {"file_path": "g/o/gone.jpg"}]}]))
    finally:
        flaky.close()
    ra, rb = out.result("SKU-A"), out.result("SKU-B")
    assert ra.error == "storage_error" and any("media/catalog/product/f/a/fail.jpg" in w
                                               for w in ra.image_stats.warnings)
    assert store.gallery(a.link_id) == []
    assert rb.error is None and (rb.image_stats.inserted, rb.image_stats.missing) == (1, 1)
    assert [g["value"] for g in store.gallery(b.link_id)] == ["/o/k/fine.jpg"]
    assert sum("fail.jpg" in h for h in flaky.heads) == 12  # storage.max_attempts, then it gives up


def test_replace_with_missing_objects_holds_deletions_and_role_resets(store, bucket, cfg, tmp_path):
    """Issue 7.1: `O` (letter) typed for `0`, with the roles: replace used to delete `0` and reset its roles."""
    typo = store.add_product("SKU-TYPO")
    zero = store.add_gallery_entry(typo.link_id, "/t/y/0.jpg", label="Zero", position=1)
    for i in (1, 2):
        store.add_gallery_entry(typo.link_id, f"/t/y/{i}.jpg", label=f"L{i}", position=i + 1)
    for role in ("image", "small_image", "thumbnail"):
        store.set_varchar(typo.link_id, role, "/t/y/0.jpg")
        store.set_varchar(typo.link_id, f"{role}_label", "Zero")
    unlisted = store.add_product("SKU-UNLISTED")  # a missing extra image; an unlisted one with a store-view role
    store.add_gallery_entry(unlisted.link_id, "/u/n/keep.jpg", label="old", position=1)
    store.add_gallery_entry(unlisted.link_id, "/u/n/other.jpg", position=2)
    store.set_varchar(unlisted.link_id, "image", "/u/n/other.jpg", store_id=1)
    harmless = store.add_product("SKU-HARMLESS")  # replace would destroy nothing: no deletions_held
    store.add_gallery_entry(harmless.link_id, "h/a/legacy.jpg", position=1)
    for path in ("/t/y/0.jpg", "/t/y/1.jpg", "/t/y/2.jpg", "/u/n/keep.jpg", "/h/a/legacy.jpg"):
        bucket.put(path)
    before = {p.sku: (store.gallery(p.link_id), store.roles(p.link_id)) for p in (typo, unlisted)}
    out = run(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-TYPO", "images": [{"file_path": "t/y/O.jpg", "roles": ["base", "small", "thumbnail"]},
                                       {"file_path": "t/y/1.jpg"}, {"file_path": "t/y/2.jpg"}]},
        {"sku": "SKU-UNLISTED", "images": [{"file_path": "u/n/keep.jpg", "label": "new", "roles": ["thumbnail"]},
                                           {"file_path": "u/n/typo.jpg"}, {"file_path": "u/n/typ0.jpg"}]},
        {"sku": "SKU-HARMLESS", "images": [{"file_path": "h/a/legacy.jpg"}, {"file_path": "h/a/nope.jpg"}]},
    ]), mode="replace")
    assert not out.report.failed  # exit code 0, as for other warnings
    assert store.gallery(typo.link_id) == before["SKU-TYPO"][0]
    assert store.roles(typo.link_id) == before["SKU-TYPO"][1]
    assert zero in [g["value_id"] for g in store.gallery(typo.link_id)]
    g = store.gallery(unlisted.link_id)
    assert [(x["value"], x["label"]) for x in g] == [("/u/n/keep.jpg", "new"), ("/u/n/other.jpg", None)]
    roles = store.roles(unlisted.link_id)
    assert roles[("image", 1)] == "/u/n/other.jpg" and ("image", 0) not in roles and ("small_image", 0) not in roles
    assert roles[("thumbnail", 0)] == "/u/n/keep.jpg"  # merge's changes still apply
    assert [x["value"] for x in store.gallery(harmless.link_id)] == ["/h/a/legacy.jpg"]  # and its repairs
    held = {sku: [w for w in out.result(sku).image_stats.warnings if w.startswith("deletions_held:")]
            for sku in ("SKU-TYPO", "SKU-UNLISTED", "SKU-HARMLESS")}
    assert "/t/y/O.jpg" in held["SKU-TYPO"][0]
    assert "/u/n/typo.jpg" in held["SKU-UNLISTED"][0] and "/u/n/typ0.jpg" in held["SKU-UNLISTED"][0]
    assert held["SKU-HARMLESS"] == []
    assert [out.result(s).image_stats.deletions_held for s in held] == [1, 1, 0]
    s = out.report.stats
    assert (s.deletions_held, s.deleted, s.missing) == (2, 0, 4)
    assert _rendered(out.report, "deletions held").split()[-1] == "2"


def _shared_row(store, products, path, **entry):
    """One gallery row linked to every product, with a store-0 value row for each (as old imports did)."""
    vid = store.add_gallery_entry(products[0].link_id, path, **entry)
    for p in products[1:]:
        store.link_entry(vid, p.link_id)
        store.add_value_row(vid, p.link_id, 0, entry.get("label"), entry.get("position"))
    return vid


def _orphans(store):
    return store.query("SELECT g.value_id FROM {catalog_product_entity_media_gallery} g WHERE NOT EXISTS "
                       "(SELECT 1 FROM {catalog_product_entity_media_gallery_value_to_entity} e "
                       "WHERE e.value_id = g.value_id)")


def test_end_state_does_not_depend_on_the_batch_size(store, bucket, cfg, tmp_path):
    """Issue 7.3: products sharing a gallery row, synced with batch sizes 1, 2 and 3, end the same, and
    the row whose last link the run removed is deleted (explicitly: the changelog sees it)."""
    views = {}
    for size in (1, 2, 3):
        cfg["sync"]["batch_size"] = size
        trio = [store.add_product(f"R{size}-{i}") for i in range(3)]  # replace drops the row shared by three
        shared = _shared_row(store, trio, f"/s/h/{size}.jpg", label="S", position=1)
        alone = store.add_product(f"R{size}-ALONE")  # not shared: deleted as always
        own = store.add_gallery_entry(alone.link_id, f"/o/w/{size}.jpg", position=1)
        pair = [store.add_product(f"M{size}-{i}") for i in range(2)]  # merge: a shared legacy row respelled
        _shared_row(store, pair, f"l/g/b{size}.jpg", label="Leg", position=2)
        bucket.put(f"/l/g/b{size}.jpg")
        for i in range(3):
            bucket.put(f"/k/p/b{size}-{i}.jpg")
        bucket.put(f"/k/p/b{size}-alone.jpg")
        store.clear_changelog()
        replaced = run(cfg, write_ndjson(tmp_path / f"r{size}.ndjson", [
            *({"sku": p.sku, "images": [{"file_path": f"k/p/b{size}-{i}.jpg"}]} for i, p in enumerate(trio)),
            {"sku": alone.sku, "images": [{"file_path": f"k/p/b{size}-alone.jpg"}]}]), mode="replace")
        merged = run(cfg, write_ndjson(tmp_path / f"m{size}.ndjson", [
            {"sku": p.sku, "images": [{"file_path": f"l/g/b{size}.jpg"}]} for p in pair]))
        assert replaced.report.stats.deleted == 4 and merged.report.stats.error == 0
        assert store.query("SELECT value_id FROM {catalog_product_entity_media_gallery} WHERE value_id IN "
                           "(%s, %s)", (shared, own)) == []
        assert [r for r in store.value_rows(trio[0].link_id) if r["value_id"] == shared] == []
        assert {p.entity_id for p in trio} <= set(store.changelog())
        assert _orphans(store) == []
        assert len(store.query("SELECT value_id FROM {catalog_product_entity_media_gallery} WHERE value IN "
                               "(%s, %s)", (f"/l/g/b{size}.jpg", f"l/g/b{size}.jpg"))) == 2  # one per product
        views[size] = [[(g["value"].replace(f"b{size}", "bN"), g["label"], g["position"])
                        for g in store.gallery(p.link_id)] for p in (*trio, alone, *pair)]
    assert views[1] == views[2] == views[3]
    assert views[1][0] == [("/k/p/bN-0.jpg", None, 1)] and views[1][-1] == [("/l/g/bN.jpg", "Leg", 1)]


@pytest.mark.filterwarnings("ignore:Row .* was cut by GROUP_CONCAT")  # the server's own word for it
def test_a_cut_gallery_aggregate_is_an_error_never_a_shorter_gallery(store, bucket, cfg, tmp_path, monkeypatch):
    """The gallery is read as one aggregated row per product; were it cut (a server capping
    `group_concat_max_len` below what every connection sets), replace mode would plan deletions from half a
    gallery. The run stops instead, and nothing is written."""
    import nacento_sync.magento as m

    p = store.add_product("SKU-1")
    for name in ("a", "b", "c"):
        store.add_gallery_entry(p.link_id, f"/m/y/{name}.jpg", label=name.upper(), position=1)
        bucket.put(f"/m/y/{name}.jpg")
    before = store.gallery(p.link_id)
    monkeypatch.setattr(m, "SESSION_INIT", "SET SESSION group_concat_max_len = 64")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "m/y/a.jpg"}]}])
    with pytest.raises(SchemaError, match="cut gallery aggregate"):
        run(cfg, export, mode="replace")
    assert store.gallery(p.link_id) == before

"""`--purge-cache`: stale resized copies are deleted after the batch commits, and nothing else is."""

from __future__ import annotations

import pytest
from helpers import config_dict, install_meta, make_bucket, run, write_ndjson

from nacento_sync.plan import Entry, InsertEntry, ProductState, RemoveEntry, UpsertMeta, ValueRow
from nacento_sync.purge import PathCounts, bytes_changed, cache_keys, chunks, stale_paths
from nacento_sync.storage import Storage

MD5_A, MD5_B = "0" * 32, "f" * 32

# ---------------------------------------------------------------- pure rules


@pytest.mark.parametrize(("old", "new", "changed"), [
    (None, MD5_A, False),  # first sight: nothing cached can be stale
    (MD5_A, MD5_A, False),
    (MD5_A, MD5_B, True),
    (MD5_A + "-2", MD5_B + "-3", True),
    (MD5_A + "-2", MD5_A, False),  # form only: a multipart ETag replaced by a plain MD5 tells nothing
    (MD5_B, MD5_A + "-4", False),
    ("opaque-etag", "other-etag", True),
])
def test_bytes_changed(old, new, changed):
    assert bytes_changed(old, new) is changed


def _state() -> ProductState:
    return ProductState(7, (
        Entry(1, "/a/b/a.jpg", rows=(ValueRow(11, None, 1, False, True, MD5_A),)),
        Entry(2, "c/d/c.jpg", rows=(ValueRow(12, None, 2, False, True, MD5_A),)),  # legacy spelling
        Entry(3, "/e/f/e.jpg", rows=(ValueRow(13, None, 3, False, False, None),)),  # no meta yet
    ))


def test_stale_paths_changed_deleted_and_first_seen():
    ops = [UpsertMeta(11, MD5_B), RemoveEntry(7, 2, True), UpsertMeta(13, MD5_B)]
    stale = stale_paths(_state(), ops)
    assert stale.changed == ("/a/b/a.jpg",)
    assert stale.deleted == ("/c/d/c.jpg",)  # canonical form of the legacy row


def test_stale_paths_of_a_shared_entry_replaced_by_an_own_one():
    ops = [RemoveEntry(7, 1, False), InsertEntry(7, "/a/b/a.jpg", None, 1, False, MD5_B)]
    stale = stale_paths(_state(), ops)
    assert stale.changed == ("/a/b/a.jpg",) and stale.deleted == ()
    same = stale_paths(_state(), [RemoveEntry(7, 1, False), InsertEntry(7, "/a/b/a.jpg", None, 1, False, MD5_A)])
    assert not same


def test_cache_keys_with_and_without_prefix():
    assert cache_keys(["/a/b/a.jpg"], ["h1", "h2"]) == [
        "media/catalog/product/cache/h1/a/b/a.jpg", "media/catalog/product/cache/h2/a/b/a.jpg"]
    assert cache_keys(["/a/b/a.jpg"], ["h1"], "shop/") == ["shop/media/catalog/product/cache/h1/a/b/a.jpg"]
    assert [len(c) for c in chunks([str(i) for i in range(2500)])] == [1000, 1000, 500]


def test_path_counts_follow_inserts_and_deletes():
    counts = PathCounts.of(["/a/b/a.jpg", "a/b/a.jpg", "/c/d/c.jpg"])
    assert counts.held("/a/b/a.jpg") and counts.held("/c/d/c.jpg") and not counts.held("/x/y/x.jpg")
    counts.add("/a/b/a.jpg", -1)
    assert counts.held("/a/b/a.jpg")
    counts.add("/a/b/a.jpg", -1)
    assert not counts.held("/a/b/a.jpg")


# ---------------------------------------------------------------- against MariaDB and the S3 server


@pytest.fixture
def store(magento):
    install_meta(magento)
    return magento


def _cached(bucket, path: str, hashes=("h1", "h2")) -> list[str]:
    keys = cache_keys([path], list(hashes), bucket.prefix)
    for key in keys:
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"resized")
    return keys


def _exists(bucket, key: str) -> bool:
    return "Contents" in bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=key)


def _two_images(store, bucket, tmp_path, cfg, sku="SKU-1", upload=True):
    store.add_product(sku)
    if upload:
        bucket.put("/a/b/a.jpg")
        bucket.put("/c/d/c.jpg")
    export = write_ndjson(tmp_path / "first.ndjson", [{"sku": sku, "images": [
        {"file_path": "a/b/a.jpg"}, {"file_path": "c/d/c.jpg"}]}])
    assert run(cfg, export, purge_cache=True).report.stats.inserted == 2
    return export


@pytest.mark.parametrize("prefix", ["", "shop1"])
def test_changed_bytes_purge_their_copies_only(store, s3_endpoint, db_params, tmp_path, prefix):
    bucket = make_bucket(s3_endpoint, prefix=prefix)
    cfg = config_dict(store, bucket, db_params)
    export = _two_images(store, bucket, tmp_path, cfg)
    stale, kept = _cached(bucket, "/a/b/a.jpg"), _cached(bucket, "/c/d/c.jpg")
    bucket.put("/a/b/a.jpg", b"new bytes")
    out = run(cfg, export, purge_cache=True)
    assert out.counters.cache_purged == 2 and out.counters.stale_images == 1
    assert out.report.stats.updated_meta == 1
    assert not any(_exists(bucket, k) for k in stale)
    assert all(_exists(bucket, k) for k in kept)
    assert _exists(bucket, bucket_key(bucket, "/a/b/a.jpg"))  # the original is never touched
    again = run(cfg, export, purge_cache=True)
    assert again.counters.cache_purged == 0 and all(_exists(bucket, k) for k in kept)


def bucket_key(bucket, path):
    from nacento_sync.paths import object_key

    return object_key(path, bucket.prefix)


def test_first_seen_and_form_only_changes_purge_nothing(store, bucket, db_params, tmp_path):
    cfg = config_dict(store, bucket, db_params)
    export = _two_images(store, bucket, tmp_path, cfg)
    keys = _cached(bucket, "/a/b/a.jpg") + _cached(bucket, "/c/d/c.jpg")
    # The meta row holds a multipart-style ETag of the same object: only the form differs.
    store.execute("UPDATE {nacento_media_gallery_meta} SET s3_etag = %s", (MD5_A + "-2",))
    out = run(cfg, export, purge_cache=True)
    assert out.report.stats.updated_meta == 2 and out.counters.cache_purged == 0
    assert all(_exists(bucket, k) for k in keys)


def test_replace_deletion_purges_unless_another_product_has_the_path(store, bucket, db_params, tmp_path):
    cfg = config_dict(store, bucket, db_params)
    _two_images(store, bucket, tmp_path, cfg, "SKU-1")
    _two_images(store, bucket, tmp_path, cfg, "SKU-2", upload=False)
    copies_a, copies_c = _cached(bucket, "/a/b/a.jpg"), _cached(bucket, "/c/d/c.jpg")
    only_a = write_ndjson(tmp_path / "a.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/a.jpg"}]}])
    out = run(cfg, only_a, mode="replace", purge_cache=True)
    assert out.report.stats.deleted == 1 and out.counters.cache_purged == 0  # SKU-2 still shows c
    assert all(_exists(bucket, k) for k in copies_c)
    only_a2 = write_ndjson(tmp_path / "a2.ndjson", [{"sku": "SKU-2", "images": [{"file_path": "a/b/a.jpg"}]}])
    out = run(cfg, only_a2, mode="replace", purge_cache=True)
    assert out.report.stats.deleted == 1 and out.counters.cache_purged == 2
    assert not any(_exists(bucket, k) for k in copies_c)
    assert all(_exists(bucket, k) for k in copies_a)


def test_dry_run_and_no_flag_count_but_delete_nothing(store, bucket, db_params, tmp_path):
    cfg = config_dict(store, bucket, db_params)
    export = _two_images(store, bucket, tmp_path, cfg)
    keys = _cached(bucket, "/a/b/a.jpg", ("h1", "h2", "h3"))
    bucket.put("/a/b/a.jpg", b"new bytes")
    dry = run(cfg, export, dry_run=True, purge_cache=True)
    assert dry.counters.cache_purged == 3 and dry.counters.stale_images == 1
    plain = run(cfg, export)
    assert plain.counters.cache_purged == 0 and plain.counters.stale_images == 1
    assert all(_exists(bucket, k) for k in keys)
    assert plain.report.changed_product_ids  # only the meta row was written, yet the product changed


def test_a_failed_purge_is_a_warning_and_keeps_the_sync(store, bucket, db_params, tmp_path, monkeypatch):
    cfg = config_dict(store, bucket, db_params)
    export = _two_images(store, bucket, tmp_path, cfg)
    _cached(bucket, "/a/b/a.jpg")
    bucket.put("/a/b/a.jpg", b"new bytes")

    async def denied(_self, _keys):
        raise PermissionError("AccessDenied on DeleteObjects")

    monkeypatch.setattr(Storage, "delete_keys", denied)
    out = run(cfg, export, purge_cache=True)
    result = out.result("SKU-1")
    assert result.error is None and result.image_stats.updated_meta == 1
    assert any(w.startswith("cache_purge_failed:") for w in result.image_stats.warnings)
    assert out.counters.cache_purged == 0
    assert run(cfg, export).report.stats.skipped_no_change == 2  # the new ETag was committed


def test_the_cli_flag_purges_and_without_it_the_summary_says_how(store, bucket, db_params, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from nacento_sync import cli

    cfg = config_dict(store, bucket, db_params)
    export = _two_images(store, bucket, tmp_path, cfg)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    keys = _cached(bucket, "/a/b/a.jpg")
    bucket.put("/a/b/a.jpg", b"new bytes")

    def invoke(*args):
        return CliRunner().invoke(cli.app, ["--config", str(config_file), *args], catch_exceptions=False)

    dry = invoke("sync", str(export), "--json", "--dry-run")
    assert json.loads(dry.stdout)["run"]["cache_purged"] == 0
    assert "1 image(s) changed bytes or were deleted" in dry.stderr and "--purge-cache" in dry.stderr
    done = invoke("sync", str(export), "--json", "--purge-cache")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["run"]["cache_purged"] == 2 and "may be stale" not in done.stderr
    assert not any(_exists(bucket, k) for k in keys)

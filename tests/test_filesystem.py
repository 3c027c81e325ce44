"""`storage.backend: filesystem`: images as files under Magento's pub/media, against the real MariaDB and a
real directory tree on disk (tmp_path), with the hash cache in a test-owned `$XDG_CACHE_HOME`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run, write_ndjson

from nacento_sync import hashcache
from nacento_sync.config import Config, ConfigError, load_config
from nacento_sync.engine import open_storage
from nacento_sync.errors import StorageAccessError
from nacento_sync.filestore import FileStorage
from nacento_sync.hashcache import Fingerprint, HashCache, cache_dir, cache_file, cached_md5, settled

#: Longer than hashcache.SETTLE_NS: files written before it are old enough to be cached.
SETTLE = hashcache.SETTLE_NS / 1e9 + 0.1


@pytest.fixture(autouse=True)
def xdg_cache(tmp_path, monkeypatch) -> Path:
    """Every test's hash caches in its own directory, never the user's."""
    path = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


@pytest.fixture
def media(tmp_path) -> Path:
    """An empty pub/media."""
    root = tmp_path / "pub" / "media"
    (root / "catalog" / "product").mkdir(parents=True)
    return root


def fs_config(store, db_params: dict[str, Any], root: Path, **sync: Any) -> dict[str, Any]:
    return {
        "database": {"host": db_params["host"], "port": db_params["port"], "user": db_params["user"],
                     "password": db_params["password"], "name": store.database, "table_prefix": store.prefix},
        "storage": {"backend": "filesystem", "root": str(root)},
        "sync": {"batch_size": 50, "concurrency": 8, **sync},
    }


def put(root: Path, path: str, body: bytes | None = None) -> str:
    """Write an image at canonical path `path` (`/m/y/a.jpg`); returns the MD5 hex of its bytes."""
    body = body if body is not None else f"image bytes of {path}".encode()
    file = root / "catalog" / "product" / path.lstrip("/")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(body)
    return hashlib.md5(body).hexdigest()


def resized(root: Path, path: str, hashes=("0f1e2d", "9a8b7c")) -> list[Path]:
    """Resized copies of an image, as Magento writes them under catalog/product/cache/<hash>/."""
    files = []
    for h in hashes:
        file = root / "catalog" / "product" / "cache" / h / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"resized")
        files.append(file)
    return files


def meta(store, record_id: int) -> str | None:
    rows = store.query("SELECT s3_etag FROM {nacento_media_gallery_meta} WHERE record_id = %s", (record_id,))
    return rows[0]["s3_etag"] if rows else None


def warnings_of(out, sku: str) -> list[str]:
    return out.result(sku).image_stats.warnings


# ---------------------------------------------------------------- syncs


def test_sync_stores_the_md5_and_a_no_change_resync_reads_no_file(store, db_params, media, tmp_path):
    product = store.add_product("SKU-1")
    md5_front, md5_back = put(media, "/f/r/front.jpg"), put(media, "/b/a/back.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "f/r/front.jpg", "label": "Front", "roles": ["base"]},
        {"file_path": "pub/media/catalog/product/b/a/back.jpg"},
        {"file_path": "n/o/none.jpg"}]}])
    cfg = fs_config(store, db_params, media)
    time.sleep(SETTLE)  # old enough to be cached

    first = run(cfg, export)
    assert first.report.stats.inserted == 2 and first.report.stats.missing == 1
    assert first.sync.s3_requests == {"STAT": 3, "READ": 2}
    gallery = store.gallery(product.link_id)
    assert [(g["value"], meta(store, g["record_id"])) for g in gallery] == [
        ("/f/r/front.jpg", md5_front), ("/b/a/back.jpg", md5_back)]
    assert store.roles(product.link_id)[("image", 0)] == "/f/r/front.jpg"
    assert warnings_of(first, "SKU-1") == [
        "missing_object: media/catalog/product/n/o/none.jpg not found in storage; image not synced"]

    again = run(cfg, export)
    assert again.report.stats.skipped_no_change == 2 and again.report.stats.inserted == 0
    assert again.sync.s3_requests == {"STAT": 3, "READ": 0}  # stat'ed, never read
    assert again.report.changed_product_ids == []


def test_changed_files_are_hashed_again(store, db_params, media, tmp_path):
    product = store.add_product("SKU-1")
    put(media, "/a/a/grow.jpg", b"12345")
    put(media, "/a/a/same.jpg", b"abcde")
    put(media, "/a/a/kept.jpg", b"kept!")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "a/a/grow.jpg"}, {"file_path": "a/a/same.jpg"}, {"file_path": "a/a/kept.jpg"}]}])
    cfg = fs_config(store, db_params, media)
    time.sleep(SETTLE)
    assert run(cfg, export).report.stats.inserted == 3

    grown = put(media, "/a/a/grow.jpg", b"123456")  # size changes
    same = media / "catalog/product/a/a/same.jpg"
    before = same.stat()
    rewritten = put(media, "/a/a/same.jpg", b"ABCDE")  # same size, then the old mtime put back: only ctime moves
    os.utime(same, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert same.stat().st_mtime_ns == before.st_mtime_ns and same.stat().st_size == before.st_size
    out = run(cfg, export)
    assert out.sync.s3_requests == {"STAT": 3, "READ": 2}
    assert out.report.stats.updated_meta == 2 and out.report.stats.skipped_no_change == 1
    assert [meta(store, g["record_id"]) for g in store.gallery(product.link_id)][:2] == [grown, rewritten]


def test_files_changed_in_the_last_seconds_are_not_cached(store, db_params, media, tmp_path):
    store.add_product("SKU-1")
    put(media, "/r/e/recent.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "r/e/recent.jpg"}]}])
    cfg = fs_config(store, db_params, media)
    assert run(cfg, export).sync.s3_requests == {"STAT": 1, "READ": 1}
    again = run(cfg, export)  # within 2 s of the write: read again, as a write in the same tick could hide
    assert again.sync.s3_requests == {"STAT": 1, "READ": 1} and again.report.stats.skipped_no_change == 1


def test_a_symlinked_root_works_and_a_symlink_out_of_it_is_missing(store, db_params, tmp_path):
    release = tmp_path / "releases" / "42" / "pub" / "media"
    (release / "catalog" / "product").mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "42")  # as deployment tools do
    root = tmp_path / "current" / "pub" / "media"
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not an image")
    md5_real = put(release, "/r/e/real.jpg")
    (release / "catalog/product/o/u").mkdir(parents=True)
    (release / "catalog/product/o/u/out.jpg").symlink_to(secret)
    (release / "catalog/product/i/n").mkdir(parents=True)
    (release / "catalog/product/i/n/in.jpg").symlink_to(release / "catalog/product/r/e/real.jpg")
    (release / "catalog/product/d").mkdir()
    (release / "catalog/product/d/x").symlink_to(tmp_path, target_is_directory=True)  # a folder pointing out
    (tmp_path / "esc.jpg").write_bytes(b"outside")
    product = store.add_product("SKU-1")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "r/e/real.jpg"}, {"file_path": "i/n/in.jpg"}, {"file_path": "o/u/out.jpg"},
        {"file_path": "d/x/esc.jpg"}]}])

    out = run(fs_config(store, db_params, root), export)
    assert out.report.stats.inserted == 2 and out.report.stats.missing == 2
    assert [(g["value"], meta(store, g["record_id"])) for g in store.gallery(product.link_id)] == [
        ("/r/e/real.jpg", md5_real), ("/i/n/in.jpg", md5_real)]
    assert warnings_of(out, "SKU-1") == [
        "missing_object: media/catalog/product/o/u/out.jpg not found in storage (a symlink that resolves "
        "outside storage.root); image not synced",
        "missing_object: media/catalog/product/d/x/esc.jpg not found in storage (its folder resolves outside "
        "storage.root); image not synced"]


def test_a_fifo_or_folder_is_missing_and_never_blocks(store, db_params, media, tmp_path):
    store.add_product("SKU-1")
    (media / "catalog/product/f/i").mkdir(parents=True)
    os.mkfifo(media / "catalog/product/f/i/pipe.jpg")
    (media / "catalog/product/f/i/dir.jpg").mkdir()
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "f/i/pipe.jpg"}, {"file_path": "f/i/dir.jpg"}]}])
    out = run(fs_config(store, db_params, media), export)
    assert out.report.stats.missing == 2 and out.sync.s3_requests["READ"] == 0
    assert all("(not a regular file)" in w for w in warnings_of(out, "SKU-1"))


def test_replace_mode_purge_cache_and_dry_run(store, db_params, media, tmp_path):
    product = store.add_product("SKU-1")
    put(media, "/k/e/keep.jpg")
    put(media, "/g/o/gone.jpg")
    put(media, "/c/h/changed.jpg", b"v1")
    both = write_ndjson(tmp_path / "both.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "k/e/keep.jpg"}, {"file_path": "g/o/gone.jpg"}, {"file_path": "c/h/changed.jpg"}]}])
    cfg = fs_config(store, db_params, media)
    assert run(cfg, both).report.stats.inserted == 3
    kept, gone, changed = resized(media, "/k/e/keep.jpg"), resized(media, "/g/o/gone.jpg"), resized(
        media, "/c/h/changed.jpg")
    put(media, "/c/h/changed.jpg", b"v2 bytes")
    fewer = write_ndjson(tmp_path / "fewer.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "k/e/keep.jpg"}, {"file_path": "c/h/changed.jpg"}]}])

    dry = run(cfg, fewer, mode="replace", dry_run=True, purge_cache=True)
    assert dry.report.stats.deleted == 1 and dry.report.stats.updated_meta == 1
    assert dry.counters.cache_purged == 4 and all(f.exists() for f in kept + gone + changed)
    assert len(store.gallery(product.link_id)) == 3

    out = run(cfg, fewer, mode="replace", purge_cache=True)
    assert out.report.stats.deleted == 1 and out.report.stats.updated_meta == 1
    assert out.counters.cache_purged == 4 and out.sync.s3_requests["DELETE"] == 4
    assert not any(f.exists() for f in gone + changed) and all(f.exists() for f in kept)
    assert (media / "catalog/product/g/o/gone.jpg").exists()  # the original is never touched
    assert [g["value"] for g in store.gallery(product.link_id)] == ["/k/e/keep.jpg", "/c/h/changed.jpg"]


def test_replace_mode_holds_deletions_when_a_file_is_missing(store, db_params, media, tmp_path):
    product = store.add_product("SKU-1")
    put(media, "/a/a/a.jpg")
    put(media, "/b/b/b.jpg")
    cfg = fs_config(store, db_params, media)
    run(cfg, write_ndjson(tmp_path / "1.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "a/a/a.jpg"}, {"file_path": "b/b/b.jpg"}]}]))
    out = run(cfg, write_ndjson(tmp_path / "2.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": "a/a/a.jpg"}, {"file_path": "t/y/typo.jpg"}]}]), mode="replace")
    assert out.report.stats.deleted == 0 and out.report.stats.deletions_held == 1
    assert any(w.startswith("deletions_held: /t/y/typo.jpg not found in storage") for w in warnings_of(out, "SKU-1"))
    assert len(store.gallery(product.link_id)) == 2


def test_an_unusable_cache_directory_only_costs_reads(store, db_params, media, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    store.add_product("SKU-1")
    put(media, "/a/a/a.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/a/a.jpg"}]}])
    cfg = fs_config(store, db_params, media)
    time.sleep(SETTLE)
    with caplog.at_level(logging.WARNING, logger="nacento_sync"):
        assert run(cfg, export).report.stats.inserted == 1
        assert sum("hash cache unavailable" in r.getMessage() for r in caplog.records) == 1  # once per run
        again = run(cfg, export)
    assert again.report.stats.skipped_no_change == 1 and again.sync.s3_requests["READ"] == 1


def test_a_missing_root_is_an_access_error(store, db_params, tmp_path):
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/a/a.jpg"}]}])
    with pytest.raises(StorageAccessError, match=r"storage.root .*/nowhere does not exist"):
        run(fs_config(store, db_params, tmp_path / "nowhere"), export)


# ---------------------------------------------------------------- what doctor uses


def test_check_access_and_cache_probe(tmp_path, media, xdg_cache):
    cfg = Config.model_validate({"storage": {"backend": "filesystem", "root": str(media)}}).storage
    assert cfg is not None
    files = FileStorage(cfg)
    asyncio.run(files.check_access())
    assert files.cache_writable() and files.cache_problem() is None
    assert files.cache.path is not None and files.cache.path.parent == xdg_cache / "nacento-sync"

    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    bad = Config.model_validate({"storage": {"backend": "filesystem", "root": str(not_dir)}}).storage
    assert bad is not None
    with pytest.raises(StorageAccessError, match="is not a directory"):
        asyncio.run(FileStorage(bad).check_access())
    os.environ["XDG_CACHE_HOME"] = str(not_dir)  # the autouse fixture's monkeypatch restores it
    problem = FileStorage(cfg).cache_problem()
    assert problem is not None and str(not_dir) in problem and not FileStorage(cfg).cache_writable()


def test_open_storage_chooses_the_backend(media):
    fs = Config.model_validate({"storage": {"backend": "filesystem", "root": str(media)}}).storage
    s3 = Config.model_validate({"storage": {"bucket": "shop-media"}}).storage
    assert fs is not None and s3 is not None
    assert isinstance(open_storage(fs), FileStorage)
    assert type(open_storage(s3)).__name__ == "Storage"


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("storage", "message"), [
    ({"backend": "filesystem"}, "storage.root: Field required"),
    ({}, "storage.bucket: Field required"),
    ({"backend": "filesystem", "root": "/srv/pub/media", "prefix": "shop"}, "storage.prefix: Value error, only"),
    ({"backend": "nfs", "root": "/x"}, "storage.backend: Input should be 's3' or 'filesystem'"),
])
def test_each_backend_requires_its_own_keys(tmp_path, storage, message):
    file = tmp_path / "c.yaml"
    import yaml

    file.write_text(yaml.safe_dump({"storage": storage}))
    with pytest.raises(ConfigError, match=message):
        load_config(str(file), env={})


def test_filesystem_from_the_environment(tmp_path):
    cfg = load_config(None, env={"NACENTO_STORAGE__BACKEND": "filesystem", "NACENTO_STORAGE__ROOT": str(tmp_path)})
    assert cfg.storage is not None and cfg.storage.backend == "filesystem" and cfg.storage.bucket is None


# ---------------------------------------------------------------- the hash cache


def test_settled_and_cached_md5_are_pure_rules():
    now = 10_000_000_000
    fp = Fingerprint(size=5, mtime_ns=now - 3_000_000_000, ctime_ns=now - 3_000_000_000, inode=7)
    assert settled(fp, now)
    assert not settled(Fingerprint(5, now - 3_000_000_000, now - 1_000_000_000, 7), now)  # recent ctime
    assert not settled(Fingerprint(5, now - 500, now - 3_000_000_000, 7), now)
    assert cached_md5((fp, "abc"), fp) == "abc"
    assert cached_md5(None, fp) is None
    for changed in (Fingerprint(6, fp.mtime_ns, fp.ctime_ns, 7), Fingerprint(5, fp.mtime_ns + 1, fp.ctime_ns, 7),
                    Fingerprint(5, fp.mtime_ns, fp.ctime_ns + 1, 7), Fingerprint(5, fp.mtime_ns, fp.ctime_ns, 8)):
        assert cached_md5((fp, "abc"), changed) is None


def test_cache_location_follows_xdg_and_is_one_file_per_root():
    assert cache_dir({"XDG_CACHE_HOME": "/var/cache/u", "HOME": "/home/u"}) == Path("/var/cache/u/nacento-sync")
    assert cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/nacento-sync")
    assert cache_dir({"XDG_CACHE_HOME": "relative", "HOME": "/home/u"}) == Path("/home/u/.cache/nacento-sync")
    env = {"XDG_CACHE_HOME": "/c"}
    a, b = cache_file("/srv/a/pub/media", env), cache_file("/srv/b/pub/media", env)
    assert a != b and a == cache_file("/srv/a/pub/media", env) and a.parent == Path("/c/nacento-sync")


def test_a_locked_cache_drops_writes_and_never_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(hashcache, "BUSY_TIMEOUT", 0.05)
    path = tmp_path / "c.sqlite"
    fp = Fingerprint(1, 2, 3, 4)

    async def scenario() -> dict:
        cache, other = HashCache(path), HashCache(path)  # two workers on one host
        await cache.open()
        await other.open()
        await cache.put([("/a/a/a.jpg", fp, "aa")])
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        try:
            await cache.put([("/b/b/b.jpg", fp, "bb")])  # dropped, no exception
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        seen = await other.get(["/a/a/a.jpg", "/b/b/b.jpg"])
        await cache.close()
        await other.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen == {"/a/a/a.jpg": (fp, "aa")}


def test_list_etags_reads_a_folder(media):
    md5 = put(media, "/m/y/a.jpg")
    put(media, "/m/z/b.jpg")
    cfg = Config.model_validate({"storage": {"backend": "filesystem", "root": str(media)}}).storage
    assert cfg is not None

    async def listing():
        async with FileStorage(cfg) as files:
            return await files.list_etags("m/y/")

    assert asyncio.run(listing()) == {"a.jpg": md5}


def test_the_cli_syncs_from_a_filesystem_root(store, db_params, media, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from nacento_sync import cli

    store.add_product("SKU-1")
    put(media, "/a/a/a.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/a/a.jpg"}]}])
    ghosts = write_ndjson(tmp_path / "g.ndjson", [{"sku": "SKU-1", "images": [
        {"file_path": f"g/h/ghost-{i}.jpg"} for i in range(10)]}])

    def invoke(root: Path, *args: str):
        config_file = tmp_path / "c.yaml"
        config_file.write_text(yaml.safe_dump(fs_config(store, db_params, root)))
        return CliRunner().invoke(cli.app, ["--config", str(config_file), *args], catch_exceptions=False)

    done = invoke(media, "sync", str(export), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["stats"]["inserted"] == 1
    nothing = invoke(media, "sync", str(ghosts), "--json")
    assert nothing.exit_code == 3 and "storage.root looks wrong" in nothing.stderr
    gone = invoke(tmp_path / "nowhere", "sync", str(export))
    assert gone.exit_code == 3 and "does not exist" in gone.stderr


def test_no_place_for_the_cache_is_one_warning(caplog):
    async def scenario() -> dict:
        cache = HashCache(None, "no cache directory: set XDG_CACHE_HOME or HOME")
        await cache.open()
        await cache.put([("/a/a/a.jpg", Fingerprint(1, 2, 3, 4), "aa")])
        found = await cache.get(["/a/a/a.jpg"])
        await cache.close()
        return found

    with caplog.at_level(logging.WARNING, logger="nacento_sync"):
        assert asyncio.run(scenario()) == {}
    assert [r.getMessage() for r in caplog.records] == [
        "hash cache unavailable (no cache directory: set XDG_CACHE_HOME or HOME): every file is read and hashed "
        "this run"]


def test_an_async_worker_syncs_from_a_filesystem_root(store, db_params, media, queue_cfg, tmp_path):
    from async_helpers import run_submit, run_worker, status_counts

    from nacento_sync.asyncmode.bulk import Status

    products = [store.add_product(f"SKU-{i}") for i in range(3)]
    etags = [put(media, f"/w/k/img-{i}.jpg") for i in range(3)]
    export = write_ndjson(tmp_path / "x.ndjson", [
        {"sku": f"SKU-{i}", "images": [{"file_path": f"w/k/img-{i}.jpg"}, {"file_path": "w/k/gone.jpg"}]}
        for i in range(3)])
    cfg = {**fs_config(store, db_params, media), "queue": queue_cfg}
    res = run_submit(cfg, export)
    run_worker(cfg, idle_exit=1.0)
    assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: 3}
    for product, etag in zip(products, etags, strict=True):
        (entry,) = store.gallery(product.link_id)
        assert meta(store, entry["record_id"]) == etag

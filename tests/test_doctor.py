"""`nacento-sync doctor` against the real servers: one line per check, exit codes, JSON, time limits, secrets."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import yaml
from async_helpers import declare_topology, free_port
from helpers import config_dict, install_meta
from test_cli import cli

from nacento_sync import storage
from nacento_sync.asyncmode import queue
from nacento_sync.config import StorageConfig

KEYS = {"name", "ok", "info", "detail", "hint"}


def _doctor(tmp_path, cfg: dict, *args: str):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cli("--config", str(path), "doctor", *args)


def _checks(res) -> dict[str, dict]:
    body = json.loads(res.stdout)
    assert set(body) == {"checks", "ok"} and all(set(c) == KEYS for c in body["checks"])
    return {c["name"]: c for c in body["checks"]}


def _healthy(store, bucket, db_params, queue_cfg=None, **sync):
    """A store with the meta table, one image in the gallery and in the bucket, and a resized copy."""
    install_meta(store)
    p = store.add_product("SKU-1")
    store.add_gallery_entry(p.link_id, "/a/b/c.jpg")
    bucket.put("/a/b/c.jpg")
    bucket.client.put_object(Bucket=bucket.name, Key="media/catalog/product/cache/0f3a/a/b/c.jpg", Body=b"x")
    cfg = config_dict(store, bucket, db_params, **sync)
    if queue_cfg is not None:
        cfg["queue"] = queue_cfg
    return cfg


def test_a_healthy_store_passes_every_check(store, bucket, db_params, queue_cfg, tmp_path):
    declare_topology(queue_cfg)
    cfg = _healthy(store, bucket, db_params, queue_cfg, purge_cache=True)
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 0, res.stdout
    checks = _checks(res)
    assert list(checks) == ["configuration", "database", "privileges", "magento tables", "character set",
                            "meta table", "storage", "sample image", "cache folder", "cache purge", "broker"]
    assert json.loads(res.stdout)["ok"] is True and all(c["ok"] for c in checks.values())
    assert [n for n, c in checks.items() if c["info"]] == ["character set"]  # Magento's utf8mb3 tables
    assert "link field entity_id" in checks["magento tables"]["detail"]
    assert "store views default" in checks["magento tables"]["detail"]
    assert "media/catalog/product/a/b/c.jpg readable" in checks["sample image"]["detail"]
    assert "HTTP 204" in checks["cache purge"]["detail"]  # moto: DeleteObject of a missing key allowed
    assert f"queue {queue_cfg['queue']}: 0 ready" in checks["broker"]["detail"]

    text = _doctor(tmp_path, cfg)
    assert text.returncode == 0
    assert "✓ meta table: nacento_media_gallery_meta installed" in text.stdout
    assert "i character set:" in text.stdout and text.stdout.rstrip().endswith("doctor: 11 checks, 0 failed")


def test_adobe_commerce_and_a_table_prefix_are_found(magento, bucket, db_params, tmp_path):
    cfg = _healthy(magento, bucket, db_params)
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 0, res.stdout
    detail = _checks(res)["magento tables"]["detail"]
    assert f"prefix {magento.prefix or '(none)'}, link field {magento.link}" in detail
    assert f"media_gallery attribute {magento.attribute_id('media_gallery')}" in detail


def test_missing_meta_table_fails_with_the_install_hint(magento_factory, bucket, db_params, tmp_path):
    store = magento_factory("ce")
    res = _doctor(tmp_path, config_dict(store, bucket, db_params), "--json")
    assert res.returncode == 1
    meta = _checks(res)["meta table"]
    assert not meta["ok"] and meta["hint"] == "nacento-sync schema install"
    text = _doctor(tmp_path, config_dict(store, bucket, db_params))
    assert "✗ meta table: nacento_media_gallery_meta is missing\n    hint: nacento-sync schema install" in text.stdout


def test_an_empty_gallery_no_cache_and_an_undeclared_queue_are_information(store, bucket, db_params, queue_cfg,
                                                                          tmp_path):
    cfg = {**config_dict(store, bucket, db_params), "queue": queue_cfg}
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 0, res.stdout
    checks = _checks(res)
    for name in ("sample image", "cache folder", "broker"):
        assert checks[name]["ok"] and checks[name]["info"], checks[name]
    assert "not declared yet" in checks["broker"]["detail"] and "submit" in checks["broker"]["hint"]


def test_one_readable_sample_is_enough_and_none_fails(store, bucket, db_params, tmp_path):
    cfg = _healthy(store, bucket, db_params)
    p = store.add_product("SKU-2")
    store.add_gallery_entry(p.link_id, "/g/o/gone.jpg")  # the newest entry: not in the bucket
    sample = _checks(_doctor(tmp_path, cfg, "--json"))["sample image"]
    assert sample["ok"] and sample["info"] and "media/catalog/product/g/o/gone.jpg" in sample["detail"]

    cfg["storage"]["prefix"] = "wrong"
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 1
    sample = _checks(res)["sample image"]
    assert not sample["ok"] and "storage.prefix" in sample["hint"]


def test_a_wrong_bucket_fails_and_skips_what_depends_on_it(store, bucket, db_params, tmp_path):
    cfg = _healthy(store, bucket, db_params, purge_cache=True)
    cfg["storage"]["bucket"] = "no-such-bucket-here"
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 1
    checks = _checks(res)
    assert not checks["storage"]["ok"] and "does not exist" in checks["storage"]["detail"]
    for name in ("sample image", "cache folder", "cache purge"):
        assert not checks[name]["ok"] and checks[name]["detail"] == "not checked: storage unreachable"
    assert checks["database"]["ok"] and checks["meta table"]["ok"]
    text = _doctor(tmp_path, cfg)
    assert text.stdout.rstrip().endswith("doctor: 10 checks, 1 failed, 3 not checked")
    assert "hint: fix the storage check first" not in text.stdout  # said once, on the line that failed


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint whose credentials may do nothing: 403 to every request."""

    def _deny(self) -> None:
        body = b"<Error><Code>AccessDenied</Code></Error>"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET = do_DELETE = do_POST = _deny  # http.server's naming

    def log_message(self, *args):
        pass


def test_denied_listing_fails_with_the_permission_named(store, bucket, db_params, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = _healthy(store, bucket, db_params)
        cfg["storage"]["endpoint"] = f"http://127.0.0.1:{server.server_address[1]}"
        res = _doctor(tmp_path, cfg, "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 1
    check = _checks(res)["storage"]
    assert not check["ok"] and "denied" in check["detail"] and "s3:ListBucket" in check["hint"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_silent_servers_fail_within_their_time_limits(store, bucket, db_params, queue_cfg, silent_port, tmp_path):
    cfg = _healthy(store, bucket, db_params)
    cfg["database"].update(port=silent_port, connect_timeout=1, read_timeout=1)
    cfg["storage"].update(endpoint=f"http://127.0.0.1:{silent_port}", connect_timeout=1, read_timeout=1)
    cfg["queue"] = {**queue_cfg, "url": f"amqp://guest:guest@127.0.0.1:{silent_port}/"}
    bound = max(1.0, storage.startup_bound(StorageConfig.model_validate(cfg["storage"])), queue.startup_bound())
    started = time.monotonic()
    res = _doctor(tmp_path, cfg, "--json")
    took = time.monotonic() - started
    assert res.returncode == 1
    checks = _checks(res)
    assert not checks["database"]["ok"] and "no answer within 1 s" in checks["database"]["detail"]
    assert not checks["storage"]["ok"] and "unreachable" in checks["storage"]["detail"]
    assert not checks["broker"]["ok"] and "no answer within 10 s" in checks["broker"]["detail"]
    assert checks["meta table"]["detail"] == "not checked: database unreachable"
    assert took < bound + 5, took  # the database, the bucket and the broker are asked at the same time


def test_an_unreachable_broker_fails(store, bucket, db_params, queue_cfg, tmp_path):
    cfg = {**_healthy(store, bucket, db_params), "queue": {**queue_cfg, "url": f"amqp://guest:guest@127.0.0.1:"
                                                                             f"{free_port()}/"}}
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 1
    broker = _checks(res)["broker"]
    assert not broker["ok"] and "cannot connect to RabbitMQ" in broker["detail"] and "queue.url" in broker["hint"]


def test_bad_configuration_exits_2(store, bucket, db_params, tmp_path):
    cfg = config_dict(store, bucket, db_params, batch_size=0)
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 2
    (check,) = json.loads(res.stdout)["checks"]
    assert check["name"] == "configuration" and not check["ok"] and "sync.batch_size" in check["detail"]
    assert "\n" not in check["detail"] and check["hint"]
    assert cli("--config", str(tmp_path / "missing.yaml"), "doctor").returncode == 2
    bad_url = {**config_dict(store, bucket, db_params), "queue": {"url": "http://not-amqp/"}}
    assert _doctor(tmp_path, bad_url).returncode == 2


def test_secrets_are_never_printed(store, bucket, db_params, queue_cfg, tmp_path):
    cfg = _healthy(store, bucket, db_params)
    password, secret_key = "Db-Pass-7Q9xZ", "Sk-Secret-4Kp2W"
    cfg["database"]["password"] = password  # wrong: the server's message is printed, masked
    cfg["storage"].update(secret_key=secret_key, bucket="no-such-bucket-here")
    cfg["queue"] = {**queue_cfg, "url": f"amqp://guest:{password}@127.0.0.1:{free_port()}/"}
    for args in ((), ("--json",)):
        res = _doctor(tmp_path, cfg, *args)
        assert res.returncode == 1
        assert password not in res.stdout + res.stderr and secret_key not in res.stdout + res.stderr
    checks = _checks(_doctor(tmp_path, cfg, "--json"))
    assert "Access denied" in checks["database"]["detail"]


def test_no_storage_section_fails_the_storage_check(store, bucket, db_params, tmp_path):
    cfg = config_dict(store, bucket, db_params)
    del cfg["storage"]
    res = _doctor(tmp_path, cfg, "--json")
    assert res.returncode == 1
    checks = _checks(res)
    assert not checks["storage"]["ok"] and "NACENTO_STORAGE__BUCKET" in checks["storage"]["hint"]
    assert checks["sample image"]["detail"] == "not checked: storage not configured"
    assert checks["database"]["ok"] and checks["meta table"]["ok"]


def test_a_filesystem_root_is_checked_readable_with_a_writable_hash_cache(store, db_params, tmp_path, monkeypatch):
    install_meta(store)
    p = store.add_product("SKU-1")
    store.add_gallery_entry(p.link_id, "/a/b/c.jpg")
    media = tmp_path / "pub" / "media"
    image = media / "catalog" / "product" / "a" / "b" / "c.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    cfg = {
        "database": {"host": db_params["host"], "port": db_params["port"], "user": db_params["user"],
                     "password": db_params["password"], "name": store.database},
        "storage": {"backend": "filesystem", "root": str(media)}, "sync": {"purge_cache": True}}
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    checks = _checks(_doctor(tmp_path, cfg, "--json"))
    assert [n for n in checks if n in ("storage", "hash cache", "cache folder", "cache purge", "sample image")] == [
        "storage", "sample image", "hash cache", "cache folder", "cache purge"]
    assert checks["storage"]["ok"] and not checks["storage"]["info"]
    assert checks["sample image"]["ok"] and "a/b/c.jpg" in checks["sample image"]["detail"]
    assert checks["hash cache"]["ok"] and str(cache_home) in checks["hash cache"]["detail"]
    assert checks["cache folder"]["info"] and checks["cache purge"]["info"]

    # The hash cache's directory is a file: that line fails with a hint, the rest stays as it was.
    cache_home.mkdir(exist_ok=True)
    for child in cache_home.iterdir():
        import shutil

        shutil.rmtree(child) if child.is_dir() else child.unlink()
    (cache_home / "nacento-sync").write_text("not a directory")
    res = _doctor(tmp_path, cfg, "--json")
    checks = _checks(res)
    assert res.returncode == 1 and not checks["hash cache"]["ok"] and "XDG_CACHE_HOME" in checks["hash cache"]["hint"]

    cfg["storage"]["root"] = str(tmp_path / "no-such-media")
    res = _doctor(tmp_path, cfg, "--json")
    checks = _checks(res)
    assert res.returncode == 1 and not checks["storage"]["ok"] and "does not exist" in checks["storage"]["detail"]
    assert "pub/media" in checks["storage"]["hint"]

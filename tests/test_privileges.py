"""Least privilege: syncs and the queue run as a MariaDB user with exactly the grants README documents.

The `restricted_user` fixture grants what `nacento_sync.grants` lists, table by table; a statement the
list does not cover fails these tests. A user missing one grant gets a doctor ✗ naming it, and a sync
that needs it fails cleanly.
"""

from __future__ import annotations

import json

import pytest
import yaml
from async_helpers import async_config, run_submit, run_worker, write_config
from helpers import config_dict, install_meta, write_ndjson
from test_cli import cli

from nacento_sync import grants

SYNC, ASYNC, SCHEMA = (grants.SYNC,), (grants.SYNC, grants.ASYNC), (grants.SYNC, grants.SCHEMA)


def _config_file(tmp_path, store, bucket, params, **extra):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**config_dict(store, bucket, params), **extra}))
    return str(path)


def _checks_named(res, name: str) -> dict:
    (check,) = [c for c in json.loads(res.stdout)["checks"] if c["name"] == name]
    return check


def test_full_sync_merge_then_replace_as_the_restricted_user(magento, bucket, restricted_user, tmp_path):
    install_meta(magento)
    fr = magento.add_store("fr")
    one, two = magento.add_product("SKU-1"), magento.add_product("SKU-2")
    magento.add_gallery_entry(one.link_id, "/o/l/old.jpg", label="Old", position=1)
    magento.set_varchar(one.link_id, "image", "/o/l/old.jpg")
    for path in ("/o/l/old.jpg", "/a/b/front.jpg", "/a/b/back.jpg", "/c/d/two.jpg"):
        bucket.put(path)
    user = restricted_user(magento, SYNC)
    config = _config_file(tmp_path, magento, bucket, user)

    merge = write_ndjson(tmp_path / "merge.ndjson", [
        {"sku": "SKU-1", "images": [
            {"file_path": "a/b/front.jpg", "label": "Front", "roles": ["base", "small_image", "thumbnail"],
             "stores": {"fr": {"label": "Devant", "position": 3}}},
            {"file_path": "a/b/back.jpg", "label": "Back"}],
         "store_roles": {"fr": {"thumbnail": "a/b/back.jpg"}}},
        {"sku": "SKU-2", "images": [{"file_path": "c/d/two.jpg", "roles": ["swatch_image"]}]}])
    res = cli("--config", config, "sync", str(merge), "--json")
    assert res.returncode == 0, res.stderr
    assert [g["value"] for g in magento.gallery(one.link_id)] == ["/o/l/old.jpg", "/a/b/front.jpg", "/a/b/back.jpg"]
    assert magento.roles(one.link_id)[("image", 0)] == "/a/b/front.jpg"
    assert magento.roles(one.link_id)[("thumbnail", fr)] == "/a/b/back.jpg"
    assert {r["label"] for r in magento.value_rows(one.link_id) if r["store_id"] == fr} == {"Devant"}

    replace = write_ndjson(tmp_path / "replace.ndjson", [
        {"sku": "SKU-1", "images": [{"file_path": "a/b/back.jpg", "label": "Back", "roles": ["base"]}]}])
    res = cli("--config", config, "sync", str(replace), "--mode", "replace", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stats"]["deleted"] == 2
    assert [g["value"] for g in magento.gallery(one.link_id)] == ["/a/b/back.jpg"]
    roles = magento.roles(one.link_id)
    assert roles[("image", 0)] == "/a/b/back.jpg" and roles[("small_image", 0)] == "no_selection"
    assert magento.roles(two.link_id)[("swatch_image", 0)] == "/c/d/two.jpg"

    again = cli("--config", config, "sync", str(replace), "--mode", "replace", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["stats"]["skipped_no_change"] == 1


def test_sku_as_the_restricted_user(store, bucket, restricted_user, tmp_path):
    p = store.add_product("SKU-1")
    bucket.put("/a/b/one.jpg"), bucket.put("/a/b/two.jpg")
    config = _config_file(tmp_path, store, bucket, restricted_user(store, SYNC))
    res = cli("--config", config, "sku", "SKU-1", "--image", "a/b/one.jpg", "--image", "a/b/two.jpg", "--json")
    assert res.returncode == 0, res.stderr
    res = cli("--config", config, "sku", "SKU-1", "--image", "a/b/two.jpg", "--mode", "replace", "--json")
    assert res.returncode == 0, res.stderr
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/a/b/two.jpg"]


def test_submit_worker_status_requeue_as_the_restricted_user(magento_factory, bucket, restricted_user, queue_cfg,
                                                            tmp_path):
    store = magento_factory("ce", "mg_")
    install_meta(store)
    p = store.add_product("S-1")
    bucket.put("/a/b/c.jpg")
    cfg = async_config(store, bucket, restricted_user(store, ASYNC), queue_cfg)
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    submitted = run_submit(cfg, export)
    assert submitted.bulk_uuid and not submitted.errors
    assert run_worker(cfg).complete == 1
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/a/b/c.jpg"]
    config = str(write_config(tmp_path / "c.yaml", cfg))
    status = cli("--config", config, "status", submitted.bulk_uuid, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "finished_successfully"

    # requeue locks and updates parked operations (status 2, set here as Magento's cron would).
    store.execute("UPDATE {magento_operation} SET status = 2 WHERE bulk_uuid = %s", (submitted.bulk_uuid,))
    requeued = cli("--config", config, "requeue", submitted.bulk_uuid)
    assert requeued.returncode == 0, requeued.stderr
    assert run_worker(cfg).received == 1
    assert json.loads(cli("--config", config, "status", submitted.bulk_uuid, "--json").stdout)["state"] == \
        "finished_successfully"


def test_schema_install_and_uninstall_with_the_schema_grants(magento_factory, bucket, restricted_user, tmp_path):
    store = magento_factory("ce", "mg_")
    config = _config_file(tmp_path, store, bucket, restricted_user(store, SCHEMA))
    res = cli("--config", config, "schema", "install")
    assert res.returncode == 0 and "created table mg_nacento_media_gallery_meta" in res.stdout, res.stderr
    assert cli("--config", config, "schema", "uninstall", "--yes").returncode == 0


def test_a_missing_grant_is_named_by_doctor_and_fails_the_sync_cleanly(store, bucket, restricted_user, tmp_path,
                                                                       caplog):
    p = store.add_product("SKU-1")
    store.add_gallery_entry(p.link_id, "/o/l/old.jpg")
    bucket.put("/o/l/old.jpg"), bucket.put("/a/b/new.jpg")
    user = restricted_user(store, SYNC, without=("catalog_product_entity_media_gallery", "DELETE"))
    config = _config_file(tmp_path, store, bucket, user)

    res = cli("--config", config, "doctor", "--json")
    assert res.returncode == 1
    (check,) = [c for c in json.loads(res.stdout)["checks"] if c["name"] == "privileges"]
    assert not check["ok"] and "DELETE on catalog_product_entity_media_gallery" in check["detail"]
    assert (f"GRANT DELETE ON `{store.database}`.`catalog_product_entity_media_gallery` TO '{user['user']}'@'%';"
            in check["hint"])
    text = cli("--config", config, "doctor")
    assert "✗ privileges: missing for sync/sku: DELETE on catalog_product_entity_media_gallery" in text.stdout
    assert user["password"] not in text.stdout + text.stderr + res.stdout

    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/new.jpg"}]}])
    res = cli("--config", config, "sync", str(export), "--mode", "replace", "--json")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    (result,) = json.loads(res.stdout)["results"]
    assert result["error"] == "database_error" and "DELETE command denied" in caplog.text  # the log names it
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/o/l/old.jpg"]  # the SKU's transaction rolled back


@pytest.mark.parametrize("without", [("catalog_product_entity", "SELECT"), ("eav_attribute", "SELECT")])
def test_doctor_names_any_missing_read_grant(store, bucket, restricted_user, tmp_path, without):
    config = _config_file(tmp_path, store, bucket, restricted_user(store, SYNC, without=without))
    res = cli("--config", config, "doctor", "--json")
    assert res.returncode == 1
    (check,) = [c for c in json.loads(res.stdout)["checks"] if c["name"] == "privileges"]
    assert f"SELECT on {without[0]}" in check["detail"]
    magento_tables = _checks_named(res, "magento tables")  # a table we may not read looks absent
    assert not magento_tables["ok"] and "grant what the privileges check names" in magento_tables["hint"]
    if without[0] == "eav_attribute":
        assert magento_tables["detail"].startswith("error 1142: SELECT command denied")


def test_grants_through_a_default_role_count(store, bucket, restricted_user, tmp_path):
    config = _config_file(tmp_path, store, bucket, restricted_user(store, SYNC, via_role=True))
    res = cli("--config", config, "doctor", "--json")
    (check,) = [c for c in json.loads(res.stdout)["checks"] if c["name"] == "privileges"]
    assert check["ok"], check

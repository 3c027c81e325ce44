"""`submit`, `worker`, `status`, `requeue` as operators run them: real processes, exit codes, output."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from async_helpers import async_config, cli, cli_env, depth, operations, write_config
from helpers import install_meta, write_ndjson


@pytest.fixture
def store(magento_factory):
    s = magento_factory("ce", "mg_")  # a prefix: the bulk tables carry it too
    install_meta(s)
    return s


@pytest.fixture
def cfg(store, bucket, db_params, queue_cfg):
    return async_config(store, bucket, db_params, queue_cfg)


@pytest.fixture
def config_file(cfg, tmp_path):
    return write_config(tmp_path / "c.yaml", cfg)


def test_submit_exit_codes_and_the_async_response(store, bucket, cfg, config_file, tmp_path):
    store.add_product("S-1")
    bucket.put("/a/b/c.jpg")
    good = write_ndjson(tmp_path / "good.ndjson", [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]},
                                                   {"sku": "S-2", "images": []}])
    res = cli("--config", str(config_file), "submit", str(good), "--json", "--request-id", "op-1")
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert set(body) == {"bulk_uuid", "request_items", "errors"} and body["errors"] is False
    assert body["request_items"] == [
        {"id": 1, "data_hash": hashlib.md5(b"S-1").hexdigest(), "status": "accepted", "error_message": None},
        {"id": 2, "data_hash": hashlib.md5(b"S-2").hexdigest(), "status": "accepted", "error_message": None}]
    assert "admin_user_id" not in res.stderr  # it is set here

    # A record over 65,535 bytes of operation data, and a bad one: rejected, exit 1.
    big = {"sku": "S-3", "images": [{"file_path": f"b/i/{i:04d}-{'x' * 80}.jpg", "label": "L" * 200}
                                    for i in range(300)]}
    mixed = write_ndjson(tmp_path / "mixed.ndjson", [big, {"sku": "", "images": []},
                                                     {"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    res = cli("--config", str(config_file), "submit", str(mixed), "--json")
    assert res.returncode == 1, res.stderr
    items = json.loads(res.stdout)["request_items"]
    assert [(i["id"], i["status"]) for i in items] == [(1, "rejected"), (2, "rejected"), (3, "accepted")]
    assert "65,535" in items[0]["error_message"] and "sku: must not be empty" in items[1]["error_message"]
    uuid = json.loads(res.stdout)["bulk_uuid"]
    assert store.query("SELECT operation_count FROM {magento_bulk} WHERE uuid = %s", (uuid,))[0][
        "operation_count"] == 1

    # Without --json: a summary; without admin_user_id: a warning that no admin will see the bulk.
    no_admin = {**cfg, "queue": {**cfg["queue"], "admin_user_id": None}}
    res = cli("--config", str(write_config(tmp_path / "na.yaml", no_admin)), "submit", str(good))
    assert res.returncode == 0 and "2 accepted, 0 rejected" in res.stdout
    assert "queue.admin_user_id is not set" in res.stderr and "Bulk Actions" in res.stderr
    (row,) = store.query("SELECT user_id, user_type FROM {magento_bulk} ORDER BY id DESC LIMIT 1")
    assert (row["user_id"], row["user_type"]) == (None, 2)


def test_submit_with_the_broker_or_database_away_exits_3_and_writes_nothing(store, cfg, tmp_path):
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": []}])
    away = {**cfg, "queue": {**cfg["queue"], "url": "amqp://guest:broker-secret@127.0.0.1:1/"}}
    res = cli("--config", str(write_config(tmp_path / "q.yaml", away)), "submit", str(export))
    assert res.returncode == 3 and "RabbitMQ" in res.stderr and "127.0.0.1:1" in res.stderr
    assert "broker-secret" not in res.stdout + res.stderr
    assert store.table_counts()["magento_bulk"] == 0
    no_db = {**cfg, "database": {**cfg["database"], "port": 1}}
    res = cli("--config", str(write_config(tmp_path / "d.yaml", no_db)), "submit", str(export))
    assert res.returncode == 3 and "MySQL" in res.stderr
    bad = {**cfg, "queue": {**cfg["queue"], "retry_delays": [10, 0]}}
    res = cli("--config", str(write_config(tmp_path / "b.yaml", bad)), "submit", str(export))
    assert res.returncode == 2 and "queue.retry_delays" in res.stderr
    res = cli("--config", str(write_config(tmp_path / "c.yaml", cfg)), "submit", str(export),
              env={"NACENTO_QUEUE__URL": "http://not-amqp"})
    assert res.returncode == 2 and "queue.url" in res.stderr


def test_submit_without_magento_bulk_tables_exits_2(store, config_file, tmp_path):
    store.execute("DROP TABLE {magento_operation}")
    res = cli("--config", str(config_file), "submit", str(write_ndjson(tmp_path / "x.ndjson", [])))
    assert res.returncode == 2 and "mg_magento_operation" in res.stderr


def test_status_exit_codes_json_keys_and_watch(store, bucket, config_file, tmp_path):
    store.add_product("S-1")
    bucket.put("/a/b/c.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    uuid = json.loads(cli("--config", str(config_file), "submit", str(export), "--json").stdout)["bulk_uuid"]

    pending = cli("--config", str(config_file), "status", uuid, "--json")
    assert pending.returncode == 4
    assert json.loads(pending.stdout) == {
        "bulk_uuid": uuid, "state": "in_progress", "operation_count": 1, "failed": [],
        "counts": {"complete": 0, "retriably_failed": 0, "not_retriably_failed": 0, "open": 1, "rejected": 0}}
    table = cli("--config", str(config_file), "status", uuid)
    assert table.returncode == 4 and "in progress" in table.stdout
    assert cli("--config", str(config_file), "status", "no-such-bulk").returncode == 5

    # --watch waits for the worker, then exits like status.
    watch = subprocess.Popen([sys.executable, "-m", "nacento_sync", "--config", str(config_file), "status", uuid,
                              "--watch", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    worker = cli("--config", str(config_file), "worker", "--idle-exit", "1")
    assert worker.returncode == 0, worker.stderr
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert json.loads(out)["state"] == "finished_successfully"
    done = cli("--config", str(config_file), "status", uuid)
    assert done.returncode == 0 and "finished successfully" in done.stdout

    # A bulk with a failure: exit 1, listed with its message.
    export = write_ndjson(tmp_path / "y.ndjson", [{"sku": "S-1", "images": []}, {"sku": "S-1 ", "images": []}])
    store.add_product("S-1")  # now ambiguous
    uuid = json.loads(cli("--config", str(config_file), "submit", str(export), "--json").stdout)["bulk_uuid"]
    assert cli("--config", str(config_file), "worker", "--idle-exit", "1").returncode == 0
    failed = cli("--config", str(config_file), "status", uuid)
    assert failed.returncode == 1 and "ambiguous_sku" in failed.stdout and "S-1" in failed.stdout

    # Magento's rule for a bulk without operations: not started (not finished: 4).
    store.execute("INSERT INTO {magento_bulk} (uuid, operation_count) VALUES ('empty-bulk', 0)")
    empty = cli("--config", str(config_file), "status", "empty-bulk", "--json")
    assert empty.returncode == 4 and json.loads(empty.stdout)["state"] == "not_started"


def test_worker_exit_codes_at_start(store, cfg, tmp_path, queue_cfg):
    no_storage = {k: v for k, v in cfg.items() if k != "storage"}
    res = cli("--config", str(write_config(tmp_path / "s.yaml", no_storage)), "worker", "--idle-exit", "0")
    assert res.returncode == 2 and "storage.bucket" in res.stderr
    away = {**cfg, "queue": {**cfg["queue"], "url": "amqp://guest:broker-secret@127.0.0.1:1/"}}
    res = cli("--config", str(write_config(tmp_path / "q.yaml", away)), "worker", "--idle-exit", "0")
    assert res.returncode == 3 and "broker-secret" not in res.stdout + res.stderr
    refused = {**cfg, "queue": {**cfg["queue"], "url": queue_cfg["url"].replace("guest:guest", "guest:wrong-secret")}}
    res = cli("--config", str(write_config(tmp_path / "r.yaml", refused)), "worker", "--idle-exit", "0")
    assert res.returncode == 3 and "wrong-secret" not in res.stdout + res.stderr
    no_db = {**cfg, "database": {**cfg["database"], "port": 1}}
    assert cli("--config", str(write_config(tmp_path / "d.yaml", no_db)), "worker").returncode == 3
    no_bucket = {**cfg, "storage": {**cfg["storage"], "bucket": "no-such-bucket"}}
    assert cli("--config", str(write_config(tmp_path / "b.yaml", no_bucket)), "worker").returncode == 3
    store.execute("DROP TABLE {magento_operation}")
    res = cli("--config", str(write_config(tmp_path / "c.yaml", cfg)), "worker", "--idle-exit", "0")
    assert res.returncode == 2 and "mg_magento_operation" in res.stderr


def test_worker_max_messages_and_the_consumer_count_log(store, config_file, queue_cfg, tmp_path):
    for i in range(5):
        store.add_product(f"M-{i}")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": f"M-{i}", "images": []} for i in range(5)])
    assert cli("--config", str(config_file), "submit", str(export)).returncode == 0
    res = cli("--config", str(config_file), "worker", "--max-messages", "2", "--concurrency", "5")
    assert res.returncode == 0, res.stderr
    assert "5 messages ready, 0 other consumer(s)" in " ".join(res.stderr.split())
    assert sorted(o["status"] for o in operations(store)) == [1, 1, 4, 4, 4]
    assert depth(queue_cfg["url"], queue_cfg["queue"]) == (3, 0)  # the others were given back


def test_requeue_of_an_unknown_bulk_exits_5_and_config_example_loads(config_file):
    assert cli("--config", str(config_file), "requeue", "no-such-bulk").returncode == 5
    example = yaml.safe_load((Path(__file__).parent.parent / "config.example.yaml").read_text())
    assert set(example["queue"]) == {"url", "exchange", "topic", "queue", "admin_user_id", "retry_delays"}
    from nacento_sync.config import Config

    queue = Config.model_validate(example).queue
    assert (queue.exchange, queue.topic, queue.queue, queue.retry_delays) == (
        "magento", "nacento.gallery.process", "nacento.gallery.process", [10, 60, 600])
    assert queue.url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    env = {**cli_env(), "NACENTO_QUEUE__RETRY_DELAYS": "5,15"}
    from nacento_sync.config import load_config

    assert load_config(str(config_file), env=env).queue.retry_delays == [5, 15]

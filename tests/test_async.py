"""Asynchronous mode end to end: submit → RabbitMQ → worker → the same state as `sync`, tracked in
Magento's bulk tables. Real RabbitMQ, MariaDB and S3 (moto) servers."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
from async_helpers import (
    ThreadWorker,
    async_config,
    bulk_products,
    cli,
    declare_plain,
    declare_topology,
    depth,
    gallery_state,
    operations,
    peek,
    publish,
    run_submit,
    run_worker,
    status_counts,
    take,
    wait_for,
    worker_process,
    write_config,
)
from helpers import Bucket, FlakyS3, config_dict, install_meta, run, write_ndjson

from nacento_sync.asyncmode.bulk import ErrorCode, Status

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def cfg(store, bucket, db_params, queue_cfg):
    return async_config(store, bucket, db_params, queue_cfg, batch_size=20)


def _catalog(store, bucket):
    """Products in several starting states, and an export touching all of them."""
    a, b, c = store.add_product("RT-A"), store.add_product("RT-B"), store.add_product("RT-C")
    store.add_product("RT-D")
    store.add_gallery_entry(b.link_id, "m/y/legacy.jpg", label="Old", position=1)  # no leading slash
    store.set_varchar(b.link_id, "image", "m/y/legacy.jpg")
    store.add_gallery_entry(c.link_id, "/k/e/keep.jpg", label="Keep", position=5)
    for path in ("/f/r/front.jpg", "/b/a/back.jpg", "/m/y/legacy.jpg", "/s/i/side.jpg"):
        bucket.put(path)
    items = [
        {"sku": "RT-A", "images": [
            {"file_path": "f/r/front.jpg", "label": "Front", "roles": ["base", "small", "thumbnail", "nope"]},
            {"file_path": "catalog/product/b/a/back.jpg", "label": "Back", "disabled": True},
            {"file_path": "/f/r/front.jpg", "label": "Front again"}]},
        {"sku": "rt-b ", "images": [{"file_path": "/m/y/legacy.jpg", "label": "New", "roles": ["base"]}]},
        {"sku": "RT-C", "images": [{"file_path": "s/i/side.jpg"}, {"file_path": "g/o/gone.jpg"}]},
        {"sku": "RT-D", "images": []},
    ]
    return [a.link_id, b.link_id, c.link_id], items


@pytest.mark.parametrize("variant,prefix", [("ce", ""), ("ee", ""), ("ce", "mg_")], ids=["ce", "ee", "prefix"])
def test_round_trip_ends_exactly_as_sync_and_rows_and_messages_have_magento_shapes(
        magento_factory, bucket, db_params, queue_cfg, tmp_path, variant, prefix):
    sync_store, async_store = magento_factory(variant, prefix), magento_factory(variant, prefix)
    for s in (sync_store, async_store):
        install_meta(s)
    _, items = _catalog(sync_store, bucket)
    _catalog(async_store, bucket)
    export = write_ndjson(tmp_path / "x.ndjson", items)
    (tmp_path / "x.ndjson").write_text(export.read_text() + "\n{not json\n" + json.dumps(items[3]) + "\n")
    sync_report = run(config_dict(sync_store, bucket, db_params), export, mode="replace").report

    cfg = async_config(async_store, bucket, db_params, queue_cfg, batch_size=2)
    res = run_submit(cfg, export, mode="replace", request_id="op-rt")

    # The async response: ids are record positions (blank lines not counted), md5 of the SKU.
    assert res.as_json()["errors"] is True and UUID4.match(res.bulk_uuid)
    answer = res.as_json()["request_items"]
    assert [(i["id"], i["status"]) for i in answer] == [(1, "accepted"), (2, "accepted"), (3, "accepted"),
                                                        (4, "rejected"), (5, "rejected"), (6, "accepted")]
    assert answer[0]["data_hash"] == hashlib.md5(b"RT-A").hexdigest() and answer[0]["error_message"] is None
    assert "invalid JSON" in answer[4]["error_message"] and answer[4]["data_hash"] is None
    assert "superseded by item 6" in answer[3]["error_message"]

    # Magento's rows, committed before publishing: the bulk, one open operation per accepted item.
    (bulk,) = async_store.query("SELECT * FROM {magento_bulk}")
    assert (bulk["uuid"].decode(), bulk["user_id"], bulk["user_type"], bulk["operation_count"]) == (
        res.bulk_uuid, 1, 2, 4)
    assert "op-rt" in bulk["description"]
    ops = operations(async_store)
    assert [(o["operation_key"], o["status"], o["topic_name"]) for o in ops] == [
        (k, 4, queue_cfg["topic"]) for k in (1, 2, 3, 6)]
    data = json.loads(ops[1]["serialized_data"])
    assert data == {"sku": "rt-b ", "images": items[1]["images"], "mode": "replace", "request_id": "op-rt"}

    # Messages: Magento's envelope, persistent, unique message_id, through the topic exchange.
    messages = peek(queue_cfg["url"], queue_cfg["queue"])
    assert len(messages) == 4 and len({m.message_id for m in messages}) == 4 and all(m.message_id for m in messages)
    for m, op in zip(sorted(messages, key=lambda m: m.json["id"]), ops, strict=True):
        assert (m.delivery_mode, m.exchange, m.routing_key) == (2, "magento", queue_cfg["topic"])
        assert m.json == {"bulk_uuid": res.bulk_uuid, "topic_name": queue_cfg["topic"],
                          "serialized_data": op["serialized_data"], "status": 4, "id": op["operation_key"]}

    stats = run_worker(cfg)
    assert (stats.complete, stats.failed, stats.retried, stats.parked) == (4, 0, 0, 0)

    # Exactly what sync left, and each operation's result is sync's per-SKU result.
    for sku in ("RT-A", "RT-B", "RT-C", "RT-D"):
        assert gallery_state(async_store, sku) == gallery_state(sync_store, sku), sku
    ops = operations(async_store)
    assert {o["status"] for o in ops} == {1} and all(o["started_at"] for o in ops)
    by_sku = {r.sku: r for r in sync_report.results}
    for op in ops:
        result = json.loads(op["result_serialized_data"])
        expected = by_sku[result["sku"]]
        counters = {k: v for k, v in result["image_stats"].items() if k != "warnings"}
        assert counters == expected.image_stats.model_dump(exclude={"warnings"}), result["sku"]
        assert sorted(result["image_stats"]["warnings"]) == sorted(
            w for w in expected.image_stats.warnings if not w.startswith("duplicate_sku"))  # sync saw RT-D twice
        assert result["error"] is None and op["error_code"] is None and op["result_message"] is None
    assert depth(queue_cfg["url"], queue_cfg["queue"]) == (0, 0)
    # Still Magento's plain queue: a declaration without arguments (as Magento makes it) succeeds.
    declare_plain(queue_cfg["url"], queue_cfg["queue"])


def test_storage_outage_retries_then_parks_and_requeue_completes(store, bucket, db_params, queue_cfg, cfg, tmp_path):
    a, b = store.add_product("OUT-A"), store.add_product("OUT-B")
    bucket.put("/f/a/fail-1.jpg"), bucket.put("/o/k/ok-1.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "OUT-A", "images": [{"file_path": "o/k/ok-1.jpg"}, {"file_path": "f/a/fail-1.jpg"}]},
        {"sku": "OUT-B", "images": [{"file_path": "o/k/ok-1.jpg"}]}])
    res = run_submit(cfg, export)
    outage = FlakyS3(fail_status=403)  # a revoked credential: each attempt fails at once
    try:
        broken = async_config(store, Bucket(outage.endpoint, bucket.name), db_params, queue_cfg)
        started = time.monotonic()
        stats = run_worker(broken, idle_exit=1)
        elapsed = time.monotonic() - started
    finally:
        outage.close()
    assert (stats.complete, stats.retried, stats.parked, stats.failed) == (1, 2, 1, 0)
    assert sum("fail-1.jpg" in h for h in outage.heads) == 3  # the first try and two retries
    assert elapsed >= 2  # retry_delays [1, 1]: the copies waited in the retry queues
    assert store.gallery(a.link_id) == [] and len(store.gallery(b.link_id)) == 1
    op_a = next(o for o in operations(store) if o["operation_key"] == 1)
    assert (op_a["status"], op_a["error_code"]) == (Status.RETRIABLY_FAILED, ErrorCode.STORAGE_ERROR)
    assert op_a["result_message"].startswith("storage_error: ") and "parked after 2 retries" in op_a["result_message"]
    assert len(op_a["result_message"]) <= 255
    (parked,) = peek(queue_cfg["url"], f"{queue_cfg['queue']}.failed")
    assert parked.json["id"] == 1 and parked.json["bulk_uuid"] == res.bulk_uuid
    assert parked.headers["x-nacento-attempt"] == 2 and "storage_error" in parked.headers["x-nacento-error"]
    assert [depth(queue_cfg["url"], f"{queue_cfg['queue']}.retry.1"), depth(queue_cfg["url"], queue_cfg["queue"])
            ] == [(0, 0), (0, 0)]

    requeued = cli("--config", str(write_config(tmp_path / "c.yaml", cfg)), "requeue", res.bulk_uuid)
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued 1 operation(s)" in requeued.stdout and "removed 1 parked copy" in requeued.stdout
    op_a = next(o for o in operations(store) if o["operation_key"] == 1)
    assert (op_a["status"], op_a["started_at"], op_a["error_code"]) == (Status.OPEN, None, None)
    assert depth(queue_cfg["url"], f"{queue_cfg['queue']}.failed") == (0, 0)
    assert depth(queue_cfg["url"], queue_cfg["queue"]) == (1, 0)

    stats = run_worker(cfg)  # the storage is back
    assert stats.complete == 1
    assert [g["value"] for g in store.gallery(a.link_id)] == ["/o/k/ok-1.jpg", "/f/a/fail-1.jpg"]
    assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: 2}


def test_a_product_created_after_submit_still_gets_its_images(store, bucket, queue_cfg, cfg, tmp_path):
    queue_cfg["retry_delays"] = [1, 1, 1, 1]
    bucket.put("/l/a/late.jpg")
    res = run_submit(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "LATE-1", "images": [{"file_path": "l/a/late.jpg", "roles": ["base"]}]}]))
    worker = ThreadWorker(cfg, idle_exit=1)

    def noted():
        (op,) = operations(store)
        return op["status"] == Status.OPEN and "product_not_found" in (op["result_message"] or "") and op

    op = wait_for(noted, 30, what="the first product_not_found retry")
    # Waiting for a retry: no error_code (Magento's "Retry" button would delete the operation), the message says.
    assert op["error_code"] is None and "retry 1 of 4" in op["result_message"]
    p = store.add_product("LATE-1")
    stats = worker.join()
    assert stats.complete == 1 and stats.parked == 0 and stats.retried >= 1
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/l/a/late.jpg"]
    assert store.roles(p.link_id)[("image", 0)] == "/l/a/late.jpg"
    (op,) = operations(store)
    assert (op["status"], op["error_code"], op["result_message"]) == (Status.COMPLETE, None, None)
    assert json.loads(op["result_serialized_data"])["product_id"] == p.entity_id
    assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: 1}


def test_a_message_from_the_original_php_module_is_processed(store, bucket, queue_cfg, cfg):
    """No `id`, no `mode`: found by bulk and SKU, or its row is created; merge mode (the config's)."""
    p1, p2 = store.add_product("PHP-1"), store.add_product("PHP-2")
    store.add_gallery_entry(p1.link_id, "/o/l/old.jpg", label="Old", position=1)
    bucket.put("/n/e/new-1.jpg"), bucket.put("/n/e/new-2.jpg")
    uuid = "6f0f7d5e-8a57-4b39-9d36-2f7c1c7e0b11"
    store.execute("INSERT INTO {magento_bulk} (uuid, user_id, user_type, description, operation_count) "
                  "VALUES (%s, 1, 2, 'Nacento Connector async request', 2)", (uuid,))
    data1 = json.dumps({"sku": "PHP-1", "images": [{"file_path": "n/e/new-1.jpg", "label": "New",
                                                     "position": 2, "disabled": False, "roles": ["small_image"]}]})
    data2 = json.dumps({"sku": "PHP-2", "images": [{"file_path": "n/e/new-2.jpg"}]})
    store.execute("INSERT INTO {magento_operation} (bulk_uuid, topic_name, serialized_data, status) "
                  "VALUES (%s, %s, %s, 4)", (uuid, queue_cfg["topic"], data1))
    declare_topology(queue_cfg)
    for data in (data1, data2):
        publish(queue_cfg["url"], "magento", queue_cfg["topic"], json.dumps(
            {"bulk_uuid": uuid, "topic_name": queue_cfg["topic"], "serialized_data": data, "status": 4}).encode())
    stats = run_worker(cfg)
    assert (stats.complete, stats.parked, stats.failed) == (2, 0, 0)
    assert [(g["value"], g["label"]) for g in store.gallery(p1.link_id)] == [("/o/l/old.jpg", "Old"),
                                                                             ("/n/e/new-1.jpg", "New")]
    assert store.roles(p1.link_id)[("small_image", 0)] == "/n/e/new-1.jpg"
    assert [g["value"] for g in store.gallery(p2.link_id)] == ["/n/e/new-2.jpg"]
    ops = operations(store)
    assert [(o["operation_key"], o["status"], json.loads(o["serialized_data"])["sku"]) for o in ops] == [
        (None, Status.COMPLETE, "PHP-1"), (None, Status.COMPLETE, "PHP-2")]  # the first row reused, one created
    assert json.loads(ops[0]["result_serialized_data"])["image_stats"]["inserted"] == 1


def test_poison_messages_are_parked_with_their_reason_while_the_rest_completes(store, bucket, queue_cfg, cfg,
                                                                                tmp_path):
    good = store.add_product("GOOD-1")
    store.add_product("AMB"), store.add_product("AMB")  # one SKU, two products
    bucket.put("/g/o/good.jpg")
    res = run_submit(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "GOOD-1", "images": [{"file_path": "g/o/good.jpg"}]},
        {"sku": "AMB", "images": [{"file_path": "g/o/good.jpg"}]}]))
    url, topic = queue_cfg["url"], queue_cfg["topic"]
    envelope = {"topic_name": topic, "status": 4}
    publish(url, "magento", topic,
            b"\xff\xfe not json",
            json.dumps({**envelope, "bulk_uuid": "00000000-0000-4000-8000-000000000000", "id": 1,
                        "serialized_data": json.dumps({"sku": "GOOD-1", "images": []})}).encode(),
            json.dumps({**envelope, "bulk_uuid": res.bulk_uuid, "serialized_data": "{}"}).encode(),
            json.dumps({**envelope, "bulk_uuid": res.bulk_uuid, "id": 99,
                        "serialized_data": json.dumps({"sku": "BAD", "images": "nope"})}).encode())
    stats = run_worker(cfg)
    assert (stats.complete, stats.failed, stats.parked, stats.retried) == (1, 2, 3, 0)
    assert [g["value"] for g in store.gallery(good.link_id)] == ["/g/o/good.jpg"]

    parked = take(url, f"{queue_cfg['queue']}.failed")
    reasons = sorted(m.headers["x-nacento-error"] for m in parked)
    assert reasons == ["poison: neither an id nor a SKU in serialized_data: no operation to record it in",
                       "poison: the body is not JSON",
                       "poison: unknown bulk 00000000-0000-4000-8000-000000000000"]
    assert b"\xff\xfe not json" in [m.body for m in parked]  # parked as received

    ops = {o["operation_key"]: o for o in operations(store)}
    assert (ops[1]["status"], ops[2]["status"]) == (Status.COMPLETE, Status.NOT_RETRIABLY_FAILED)
    assert (ops[2]["error_code"], ops[2]["result_message"]) == (ErrorCode.AMBIGUOUS_SKU, "ambiguous_sku: several "
                                                                "products have this SKU")
    assert (ops[99]["status"], ops[99]["error_code"]) == (Status.NOT_RETRIABLY_FAILED, ErrorCode.INVALID_DATA)
    assert ops[99]["result_message"] == "invalid_data: images: must be a list"

    status = cli("--config", str(write_config(tmp_path / "c.yaml", cfg)), "status", res.bulk_uuid, "--json")
    assert status.returncode == 1, status.stderr
    summary = json.loads(status.stdout)
    assert set(summary) == {"bulk_uuid", "state", "operation_count", "counts", "failed"}
    assert (summary["state"], summary["operation_count"]) == ("finished_with_failure", 2)
    assert summary["counts"] == {"complete": 1, "retriably_failed": 0, "not_retriably_failed": 2, "open": 0,
                                 "rejected": 0}
    assert [(f["operation_key"], f["sku"], f["error_code"]) for f in summary["failed"]] == [
        (2, "AMB", ErrorCode.AMBIGUOUS_SKU), (99, "BAD", ErrorCode.INVALID_DATA)]


def test_the_same_sku_in_two_bulks_at_once_never_duplicates_images(store, bucket, queue_cfg, cfg, db_params,
                                                                    tmp_path):
    bulk_products(store, 60, "TWO")
    items = [{"sku": f"TWO-{i:05d}", "images": [{"file_path": f"t/w/two-{i}-{j}.jpg"} for j in range(2)]}
             for i in range(60)]
    for item in items:
        for img in item["images"]:
            bucket.put("/" + img["file_path"], b"x")
    first, second = items[:30], items[30:]
    # One worker that gets both bulks in one batch: the repeated SKUs go to a later engine batch.
    bulks = [run_submit(cfg, write_ndjson(tmp_path / f"a{n}.ndjson", first)).bulk_uuid for n in range(2)]
    stats = run_worker(async_config(store, bucket, db_params, queue_cfg, batch_size=100))
    assert stats.complete == 60
    # Two worker processes at once, small batches.
    bulks += [run_submit(cfg, write_ndjson(tmp_path / f"b{n}.ndjson", second)).bulk_uuid for n in range(2)]
    config_file = write_config(tmp_path / "c.yaml", async_config(store, bucket, db_params, queue_cfg, batch_size=4))
    procs = [worker_process(config_file, "--idle-exit", "1", "--concurrency", "8") for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    rows = store.query("SELECT p.sku, g.value, COUNT(*) AS n FROM {catalog_product_entity} p "
                       "JOIN {catalog_product_entity_media_gallery_value_to_entity} e ON e.entity_id = p.entity_id "
                       "JOIN {catalog_product_entity_media_gallery} g ON g.value_id = e.value_id "
                       "GROUP BY p.sku, g.value")
    assert len(rows) == 120 and {r["n"] for r in rows} == {1}
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 120
    for uuid in bulks:
        assert status_counts(store, uuid) == {Status.COMPLETE: 30}
    inserted = sum(json.loads(o["result_serialized_data"])["image_stats"]["inserted"] for o in operations(store))
    assert inserted == 120  # each image inserted by exactly one of the two operations of its SKU


def test_text_utf8mb3_cannot_hold_submit_rejects_paths_and_skus_the_worker_fails_or_drops_it(
        store, bucket, queue_cfg, cfg, tmp_path):
    """Magento's tables are utf8mb3: submit rejects an unstorable SKU or path, leaves labels to the worker
    (dropped with a warning); a message that still carries an unstorable path fails for good (invalid_data)."""
    p = store.add_product("EMO-1")
    bucket.put("/e/m/emo.jpg")
    res = run_submit(cfg, write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "EMO-1", "images": [{"file_path": "e/m/emo.jpg", "label": "Smile 😀"}]},
        {"sku": "EMO-😀", "images": [{"file_path": "e/m/emo.jpg"}]},
        {"sku": "EMO-1b", "images": [{"file_path": "e/m/🎉.jpg"}]}]))
    assert [(i.status, (i.error_message or "").split(": ", 1)[-1]) for i in res.request_items] == [
        ("accepted", ""), ("rejected", "sku: U+1F600 cannot be stored: the column is utf8mb3"),
        ("rejected", "images[0].file_path: U+1F389 cannot be stored: the column is utf8mb3")]
    uuid = res.bulk_uuid
    store.add_product("EMO-2")  # a message of the PHP module's format, never checked by our submit
    data = json.dumps({"sku": "EMO-2", "images": [{"file_path": "e/m/🎉.jpg"}]}, ensure_ascii=False)
    publish(queue_cfg["url"], "magento", queue_cfg["topic"], json.dumps(
        {"bulk_uuid": uuid, "topic_name": queue_cfg["topic"], "serialized_data": data, "status": 4}).encode())
    stats = run_worker(cfg)
    assert (stats.complete, stats.failed, stats.parked) == (1, 1, 0)
    assert [(g["value"], g["label"]) for g in store.gallery(p.link_id)] == [("/e/m/emo.jpg", None)]
    ops = {o["id"]: o for o in operations(store)}
    done = [o for o in ops.values() if o["status"] == Status.COMPLETE]
    warnings = json.loads(done[0]["result_serialized_data"])["image_stats"]["warnings"]
    assert warnings == ["unstorable_text: images[0].label: U+1F600 cannot be stored: the column is utf8mb3"]
    (failed,) = [o for o in ops.values() if o["status"] == Status.NOT_RETRIABLY_FAILED]
    assert failed["error_code"] == ErrorCode.INVALID_DATA and "U+1F389" in failed["result_message"]


def test_a_worker_lists_a_folder_once_while_draining_and_never_uses_a_listing_older_than_a_message(
        store, bucket, db_params, queue_cfg, tmp_path, monkeypatch):
    """Draining one submission, the worker keeps its bucket listings across batches (as `sync` does for a
    run); a message published later gets a fresh listing, so an image uploaded since is found."""
    from faultproxy import FaultProxy

    from nacento_sync.asyncmode import decisions

    monkeypatch.setattr(decisions, "LISTING_MARGIN", 1.0)  # AMQP timestamps have whole seconds: 1 s is the least
    skus = [f"W-{i}" for i in range(10)]
    for i, sku in enumerate(skus):
        store.add_product(sku)
        bucket.put(f"/w/a/img-{i}.jpg")
    with FaultProxy(bucket.endpoint) as proxy:  # no faults: it counts the requests
        cfg = async_config(store, Bucket(proxy.endpoint, bucket.name), db_params, queue_cfg, batch_size=2,
                           etag_strategy="list")
        first = run_submit(cfg, write_ndjson(tmp_path / "a.ndjson", [
            {"sku": sku, "images": [{"file_path": f"w/a/img-{i}.jpg"}]} for i, sku in enumerate(skus)]))
        time.sleep(decisions.LISTING_MARGIN + 0.2)  # the clock condition itself, not a synchronisation
        worker = ThreadWorker(cfg, idle_exit=4)
        wait_for(lambda: status_counts(store, first.bulk_uuid) == {Status.COMPLETE: 10},
                 60, what="the first submission complete")
        lists = [target for method, target in proxy.requests if method == "GET" and "list-type=2" in target]
        assert len(lists) == 1, lists  # five batches, one listing (was one per batch)

        bucket.put("/w/a/late.jpg")  # uploaded after that listing, then submitted
        run_submit(cfg, write_ndjson(tmp_path / "b.ndjson", [
            {"sku": "W-0", "images": [{"file_path": "w/a/img-0.jpg"}, {"file_path": "w/a/late.jpg"}]}]))
        stats = worker.join()
    assert stats.complete == 11 and stats.parked == 0
    values = [r["value"] for r in store.query(
        "SELECT g.value FROM {catalog_product_entity_media_gallery} g "
        "JOIN {catalog_product_entity_media_gallery_value_to_entity} e ON e.value_id = g.value_id "
        "JOIN {catalog_product_entity} p ON p.entity_id = e.entity_id WHERE p.sku = 'W-0' ORDER BY g.value_id")]
    assert values == ["/w/a/img-0.jpg", "/w/a/late.jpg"]
    assert len([target for method, target in proxy.requests if method == "GET" and "list-type=2" in target]) == 2

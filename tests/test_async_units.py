"""Pure pieces of asynchronous mode: Magento's bulk state rule, result trimming, submission planning,
engine sub-batches, names and message bodies, URL redaction. No servers."""

from __future__ import annotations

import json

import pytest

from nacento_sync.asyncmode import bulk, queue
from nacento_sync.asyncmode.batcher import Held, sub_batches
from nacento_sync.asyncmode.submit import data_hash, plan_submission
from nacento_sync.config import Config, QueueConfig, redact_url
from nacento_sync.feed import parse_record
from nacento_sync.models import Item


@pytest.mark.parametrize("statuses,state", [
    ([], "not_started"), ([0, 0], "not_started"), ([1, 1], "finished_successfully"), ([1, 4], "in_progress"),
    ([2, 4], "in_progress"), ([1, 2], "finished_with_failure"), ([1, 3], "finished_with_failure"),
    ([3, 1, 1], "finished_with_failure"), ([5], "finished_with_failure")])
def test_bulk_state_is_magentos_max_rule(statuses, state):
    assert bulk.bulk_state(statuses) == state


def test_a_result_over_the_blob_is_cut_as_late_as_possible():
    warnings = [f"missing_object: image {i}: " + "x" * 200 for i in range(1000)]
    result = {"sku": "S", "product_id": 1, "image_stats": {"inserted": 2, "warnings": warnings}, "error": None}
    text = bulk.fit_result(result)
    assert len(text.encode()) <= bulk.BLOB_BYTES
    data = json.loads(text)
    assert data["truncated"] is True and data["image_stats"]["inserted"] == 2
    assert 0 < len(data["image_stats"]["warnings"]) < 1000
    assert data["image_stats"]["warnings"] == warnings[: len(data["image_stats"]["warnings"])]
    # One more warning would not have fitted: the cut is as late as possible.
    longer = {**result, "image_stats": {**result["image_stats"],
                                        "warnings": warnings[: len(data["image_stats"]["warnings"]) + 1]},
              "truncated": True}
    assert len(json.dumps(longer, ensure_ascii=False, separators=(",", ":")).encode()) > bulk.BLOB_BYTES


def test_a_result_that_fits_is_untouched():
    small = {"sku": "S", "image_stats": {"warnings": ["a"]}}
    assert json.loads(bulk.fit_result(small)) == small


def test_messages_are_cut_to_255_characters():
    assert len(bulk.fit_message("é" * 300)) == 255 and bulk.fit_message("short") == "short"


def _records(*objs):
    raw = {}
    out = []
    for n, obj in enumerate(objs, 1):
        rec = parse_record(obj, f"x:{n}", n)
        if isinstance(rec, Item):
            raw[n] = obj
        out.append(rec)
    return out, raw


def test_submission_plan_numbers_items_dedups_last_wins_and_bounds_the_data():
    big = {"sku": "BIG", "images": [{"file_path": f"a/b/{i}-{'y' * 100}.jpg", "label": "z" * 250}
                                    for i in range(200)]}
    records, raw = _records({"sku": "A", "images": []}, {"sku": "B"}, big, {"sku": "a ", "images": [
        {"file_path": "m/y/x.jpg", "roles": ["base"]}]}, {"sku": "C", "images": []})
    answers, valid = plan_submission(records, raw, "replace", "op-7")
    assert [(a.id, a.status) for a in answers] == [(1, "rejected"), (2, "rejected"), (3, "rejected"),
                                                   (4, "accepted"), (5, "accepted")]
    assert answers[0].error_message == "x:1: superseded by item 4 (x:4) for the same SKU"
    assert answers[1].error_message == "x:2: images: is required"
    assert "operation data is" in answers[2].error_message and "65,535" in answers[2].error_message
    assert answers[3].data_hash == data_hash("a ") and answers[3].error_message is None
    assert [v.item.ordinal for v in valid] == [4, 5]
    assert json.loads(valid[0].data) == {"sku": "a ", "images": [{"file_path": "m/y/x.jpg", "roles": ["base"]}],
                                         "mode": "replace", "request_id": "op-7"}
    assert data_hash(None) is None


def _held(sku: str, mode: str, n: int) -> Held:
    h = Held(message=None, generation=1, ordinal=n, mode=mode)  # type: ignore[arg-type]
    h.item = Item(sku=sku, images=(), source=f"s{n}", ordinal=n)
    return h


def test_engine_sub_batches_have_one_mode_and_distinct_skus_in_order():
    held = [_held("A", "merge", 1), _held("a ", "merge", 2), _held("B", "replace", 3), _held("A", "merge", 4),
            _held("C", "merge", 5)]
    batches = [[h.ordinal for h in b] for b in sub_batches(held)]
    assert batches == [[1, 5], [2], [4], [3]]


def test_retry_and_parking_queues_are_named_after_the_work_queue():
    topo = queue.Topology.from_config(QueueConfig(queue="q", retry_delays=[10, 60, 10]))
    assert topo.retry_queues == ["q.retry.10", "q.retry.60"] and topo.failed_queue == "q.failed"


def test_operation_bodies_are_magentos_envelope():
    body = json.loads(queue.operation_body("u-1", "t", '{"sku":"A"}', 3))
    assert body == {"bulk_uuid": "u-1", "topic_name": "t", "serialized_data": '{"sku":"A"}', "status": 4, "id": 3}
    assert "id" not in json.loads(queue.operation_body("u-1", "t", "{}", None))


def test_messages_are_persistent_with_a_unique_id():
    msg = queue.message(b"x")
    assert msg.delivery_mode == 2 and len(msg.message_id) == 32


def test_the_broker_password_is_redacted():
    assert redact_url("amqp://magento:s3cr@t@rabbit:5672/shop") == "amqp://magento:***@rabbit:5672/shop"
    assert redact_url("amqp://rabbit/") == "amqp://rabbit/"
    cfg = Config.model_validate({"queue": {"url": "amqp://u:hunter2@h/"}})
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_queue_config_defaults_and_bounds():
    assert Config().queue.admin_user_id is None
    with pytest.raises(ValueError):
        QueueConfig(retry_delays=[0])


@pytest.mark.parametrize("junk", ["\ud800", "\udcff tail", "x" * 70_000])
def test_operation_data_carries_only_the_fields_the_worker_reads(junk):
    from nacento_sync.asyncmode.submit import operation_data

    raw = {"sku": "S", "images": [{"file_path": "a/b/c.jpg", "label": "L", "roles": ["base"], "note": junk,
                                   "position": 2, "disabled": False}], "extra": junk}
    data = json.loads(operation_data(raw, "merge", "op-1"))
    assert data == {"sku": "S", "images": [{"file_path": "a/b/c.jpg", "label": "L", "position": 2,
                                            "disabled": False, "roles": ["base"]}],
                    "mode": "merge", "request_id": "op-1"}
    assert isinstance(parse_record(data, "op", 1), Item)


@pytest.mark.parametrize(("delays", "ok"), [([10, 60, 600], True), ([43_200], True), ([21_600, 21_600], True),
                                             ([43_201], False), ([30_000, 13_201], False), ([86_400], False)])
def test_retry_delays_over_twelve_hours_are_a_config_error(delays, ok):
    from pydantic import ValidationError

    if ok:
        assert QueueConfig(retry_delays=delays).retry_delays == delays
    else:
        with pytest.raises(ValidationError, match="12 h"):
            QueueConfig(retry_delays=delays)


def test_operation_data_round_trips_store_values_and_store_roles():
    """`submit` carries `stores` and `store_roles`; the worker's `parse_record` of that data is the same Item
    as the export's (an unknown role, never validated, and unknown keys of a store object are dropped)."""
    from nacento_sync.asyncmode.submit import operation_data
    from nacento_sync.models import StoreValues

    raw = {"sku": "S", "images": [
        {"file_path": "m/y/a.jpg", "label": "Front", "note": "\ud800",
         "stores": {"fr": {"label": "Devant", "position": None, "disabled": 1, "note": "\udcff"},
                    "de": {"label": ""}}},
        {"file_path": "/m/y/b.jpg", "stores": {}},
        {"file_path": "c.jpg", "stores": None},
    ], "store_roles": {"fr": {"base": "catalog/product/m/y/b.jpg", "small": None, "hero": "\ud800" * 3},
                       "de": {"thumbnail": "m/y/a.jpg"}}}
    original = parse_record(raw, "op", 1)
    assert isinstance(original, Item)
    data = json.loads(operation_data(raw, "replace", "op-1"))
    assert data["store_roles"] == {"fr": {"base": "catalog/product/m/y/b.jpg", "small": None},
                                   "de": {"thumbnail": "m/y/a.jpg"}}
    assert data["images"][0]["stores"] == {"fr": {"label": "Devant", "position": None, "disabled": 1},
                                           "de": {"label": ""}}
    assert data["mode"] == "replace" and data["request_id"] == "op-1"
    decoded = parse_record(data, "op", 1)
    assert isinstance(decoded, Item)
    assert decoded.images == original.images and decoded.store_roles == original.store_roles
    assert decoded.images[0].stores == (
        ("fr", StoreValues(label="Devant", disabled=True, given=frozenset({"label", "position", "disabled"}))),
        ("de", StoreValues(given=frozenset({"label"}))))
    assert decoded.store_roles == (("fr", (("image", "/m/y/b.jpg"), ("small_image", None))),
                                   ("de", (("thumbnail", "/m/y/a.jpg"),)))
    assert [w.split(":")[0] for w in original.warnings] == ["unknown_role"] and decoded.warnings == ()


def test_operation_data_without_store_fields_is_unchanged():
    from nacento_sync.asyncmode.submit import operation_data

    raw = {"sku": "S", "images": [{"file_path": "a.jpg"}], "store_roles": None}
    assert json.loads(operation_data(raw, "merge", "r")) == {"sku": "S", "images": [{"file_path": "a.jpg"}],
                                                             "mode": "merge", "request_id": "r"}


def test_submission_plan_rejects_bad_store_fields_and_accepts_good_ones():
    good = {"sku": "G", "images": [{"file_path": "a.jpg", "stores": {"fr": {"position": 2}}}],
            "store_roles": {"fr": {"base": "a.jpg"}}}
    records, raw = _records({"sku": "A", "images": [], "store_roles": {"admin": {}}},
                            {"sku": "B", "images": [{"file_path": "a.jpg", "stores": {"fr!": {}}}]}, good)
    answers, valid = plan_submission(records, raw, "merge", "op")
    assert [(a.id, a.status) for a in answers] == [(1, "rejected"), (2, "rejected"), (3, "accepted")]
    assert answers[0].error_message.startswith('x:1: store_roles["admin"]: store "admin" is store 0')
    assert answers[1].error_message.startswith('x:2: images[0].stores["fr!"]: a store code has only')
    (op,) = valid
    assert parse_record(json.loads(op.data), "op", 3) == parse_record(good, "op", 3)


def test_submission_rejects_skus_and_paths_the_narrow_columns_cannot_hold_and_leaves_labels():
    from nacento_sync.charset import LABEL, PATH, ROLE_VALUE, SKU

    narrow = {SKU: "utf8mb3", PATH: "utf8mb3", LABEL: "utf8mb3", ROLE_VALUE: "utf8mb3"}
    raws = [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg", "label": "😀"}]},
            {"sku": "S-😀", "images": [{"file_path": "a/b/c.jpg"}]},
            {"sku": "S-3", "images": [{"file_path": "a/b/𠀀.jpg"}]}]
    records = [parse_record(r, f"x:{i}", i) for i, r in enumerate(raws, 1)]
    answers, valid = plan_submission(records, dict(enumerate(raws, 1)), "merge", "op", narrow)
    assert [a.status for a in answers] == ["accepted", "rejected", "rejected"]
    assert answers[1].error_message == "x:2: sku: U+1F600 cannot be stored: the column is utf8mb3"
    assert answers[2].error_message == "x:3: images[0].file_path: U+20000 cannot be stored: the column is utf8mb3"
    assert json.loads(valid[0].data)["images"][0]["label"] == "😀"  # the worker drops it, with a warning
    assert [a.status for a in plan_submission(records, dict(enumerate(raws, 1)), "merge", "op", {})[0]] == [
        "accepted"] * 3

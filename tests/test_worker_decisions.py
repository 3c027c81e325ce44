"""The worker's pure decisions and the shared codes: envelopes, verdicts, retries, results. No servers."""

from __future__ import annotations

import json

import pymysql
import pytest

from nacento_sync import dberrors
from nacento_sync.asyncmode.bulk import ErrorCode
from nacento_sync.asyncmode.decisions import (
    Action,
    Envelope,
    Poison,
    Verdict,
    classify,
    decode_envelope,
    next_retry,
    read_operation,
    reconnect_backoff,
    settle,
    sku_result,
    status_message,
)
from nacento_sync.asyncmode.recorder import error_code
from nacento_sync.codes import WARNINGS, Code, Failure
from nacento_sync.models import Item
from nacento_sync.plan import ImageStats
from nacento_sync.results import Outcome

UUID = "6f0f7d5e-8a57-4b39-9d36-2f7c1c7e0b11"
DELAYS = (10, 60, 600)


def _item(sku: str) -> Item:
    return Item(sku=sku, images=(), source="x:1")


def _body(**envelope) -> bytes:
    return json.dumps({"bulk_uuid": UUID, "topic_name": "t", "status": 4, **envelope}).encode()


# ---------------------------------------------------------------- codes


def test_retriable_codes_are_the_readmes():
    retriable = {c.value for c in Code if c.retriable}
    assert retriable == {"product_not_found", "storage_error", "database_error", "timeout", "internal_error"}


def test_every_failure_code_has_an_operation_error_code():
    assert {c: error_code(c) for c in Code if c.error or c.retriable} == {
        Code.PRODUCT_NOT_FOUND: ErrorCode.PRODUCT_NOT_FOUND, Code.AMBIGUOUS_SKU: ErrorCode.AMBIGUOUS_SKU,
        Code.STORAGE_ERROR: ErrorCode.STORAGE_ERROR, Code.DATABASE_ERROR: ErrorCode.DATABASE_ERROR,
        Code.TIMEOUT: ErrorCode.TIMEOUT, Code.INVALID_DATA: ErrorCode.INVALID_DATA,
        Code.INTERNAL_ERROR: ErrorCode.INTERNAL_ERROR}


def test_warning_codes_are_derived_from_the_enum():
    from nacento_sync.report import WARNING_CODES

    assert WARNING_CODES is WARNINGS
    assert "missing_object" in WARNINGS and "invalid_data" in WARNINGS
    assert "ambiguous_sku" not in WARNINGS and "timeout" not in WARNINGS


def test_a_failure_renders_as_the_reports_code_and_detail():
    assert str(Failure(Code.STORAGE_ERROR, "a/b.jpg: 403")) == "storage_error: a/b.jpg: 403"


def test_a_lock_wait_timeout_is_a_database_error_in_the_report():
    failure = Failure(Code.TIMEOUT, "(1205, 'Lock wait timeout exceeded')")
    assert str(failure) == "database_error: (1205, 'Lock wait timeout exceeded')"
    assert Outcome(_item("S"), failure=failure).error == "database_error"


def test_a_lookup_failure_carries_the_codes_description():
    assert str(Failure.of("product_not_found")) == "product_not_found: no product with this SKU (yet)"
    assert str(Failure.of("ambiguous_sku")) == "ambiguous_sku: several products have this SKU"


def test_an_outcome_without_failure_has_no_error():
    assert Outcome(_item("S")).error is None


# ---------------------------------------------------------------- database errors


@pytest.mark.parametrize("exc", [
    pymysql.err.OperationalError(2013, "Lost connection"), pymysql.err.OperationalError(2006, "gone away"),
    pymysql.err.OperationalError(1927, "Connection was killed"), pymysql.err.OperationalError(1053, "shutdown"),
    pymysql.err.InterfaceError(0, ""), ConnectionResetError()])
def test_these_errors_mean_the_connection_is_lost(exc):
    assert dberrors.connection_lost(exc)


@pytest.mark.parametrize("exc", [
    pymysql.err.OperationalError(1205, "Lock wait timeout"), pymysql.err.OperationalError(1213, "Deadlock"),
    pymysql.err.IntegrityError(1062, "Duplicate entry"), pymysql.err.ProgrammingError(2013, "not operational"),
    ValueError("x")])
def test_these_errors_leave_the_connection_usable(exc):
    assert not dberrors.connection_lost(exc)


def test_only_error_1205_is_a_lock_wait_timeout():
    assert dberrors.lock_wait_timeout(pymysql.err.OperationalError(1205, "Lock wait timeout"))
    assert not dberrors.lock_wait_timeout(pymysql.err.OperationalError(1213, "Deadlock"))
    assert not dberrors.lock_wait_timeout(ValueError(1205))


# ---------------------------------------------------------------- envelopes


def test_an_envelope_with_an_id_is_decoded():
    env = decode_envelope(_body(id=3, serialized_data='{"sku": "A"}'), {"x-nacento-attempt": 2}, "default")
    assert env == Envelope(UUID, 3, "t", '{"sku": "A"}', {"sku": "A"}, 2)
    assert env.source == f"{UUID}#3" and env.sku == "A"


def test_a_numeric_string_id_is_an_operation_key():
    assert decode_envelope(_body(id="7", serialized_data="{}"), {}, "t").key == 7


def test_a_message_of_the_original_module_is_found_by_sku():
    env = decode_envelope(json.dumps({"bulk_uuid": UUID, "serialized_data": '{"sku": "B"}'}).encode(), {}, "dflt")
    assert (env.key, env.topic, env.sku, env.source) == (None, "dflt", "B", f"{UUID}#sku")


@pytest.mark.parametrize("headers", [{}, {"x-nacento-attempt": "junk"}, {"x-nacento-attempt": -3}])
def test_a_missing_or_bad_attempt_header_is_attempt_zero(headers):
    assert decode_envelope(_body(id=1, serialized_data="{}"), headers, "t").attempt == 0


def test_serialized_data_that_is_not_json_decodes_to_none():
    env = decode_envelope(_body(id=1, serialized_data="{nope"), {}, "t")
    assert (env.data_text, env.data) == ("{nope", None)


@pytest.mark.parametrize(("body", "reason"), [
    (b"\xff\xfe not json", "poison: the body is not JSON"),
    (b"[1, 2]", "poison: the body is not a JSON object"),
    (json.dumps({"id": 1}).encode(), "poison: no valid bulk_uuid"),
    (json.dumps({"bulk_uuid": "x" * 40, "id": 1}).encode(), "poison: no valid bulk_uuid"),
    (_body(id=True), "poison: id is not an operation key"),
    (_body(id=2**32), "poison: id is not an operation key"),
    (_body(id="-1"), "poison: id is not an operation key"),
    (_body(serialized_data="{}"), "poison: neither an id nor a SKU in serialized_data: no operation to record it in"),
    (_body(serialized_data='{"sku": "  "}'), "poison: neither an id nor a SKU in serialized_data: no operation to "
                                             "record it in"),
])
def test_poison_names_its_reason(body, reason):
    assert decode_envelope(body, {}, "t") == Poison(reason)


# ---------------------------------------------------------------- operations' data


def _envelope(data) -> Envelope:
    return Envelope(UUID, 1, "t", None if data is None else json.dumps(data), data)


def test_an_operation_is_read_into_its_item_and_mode():
    mode, item = read_operation(_envelope({"sku": "A", "images": [], "mode": "replace"}), 5, "merge")
    assert mode == "replace" and isinstance(item, Item) and (item.sku, item.ordinal) == ("A", 5)


def test_an_operation_without_mode_takes_the_configured_one():
    assert read_operation(_envelope({"sku": "A", "images": []}), 1, "replace")[0] == "replace"


def test_an_operation_with_a_bad_mode_is_invalid_data():
    mode, failure = read_operation(_envelope({"sku": "A", "images": [], "mode": "wipe"}), 1, "merge")
    assert (mode, failure) == ("merge", Failure(Code.INVALID_DATA, "mode must be merge or replace, not 'wipe'"))


def test_an_operation_without_json_data_is_invalid_data():
    assert read_operation(_envelope(None), 1, "merge")[1] == Failure(Code.INVALID_DATA,
                                                                     "serialized_data is not a JSON string")


def test_an_operation_whose_item_does_not_validate_names_the_field():
    failure = read_operation(_envelope({"sku": "A", "images": "nope"}), 1, "merge")[1]
    assert str(failure) == "invalid_data: images: must be a list" and not failure.retriable


# ---------------------------------------------------------------- verdicts and retries


@pytest.mark.parametrize(("attempt", "delay"), [(0, 10), (1, 60), (2, 600), (3, None), (9, None), (-1, None)])
def test_next_retry_walks_the_delays_then_gives_up(attempt, delay):
    assert next_retry(attempt, DELAYS) == delay


def test_no_delays_means_no_retry():
    assert next_retry(0, ()) is None


def test_a_written_sku_completes():
    stats = ImageStats()
    assert classify(Outcome(_item("A"), stats=stats), 0, DELAYS) == Verdict(Action.COMPLETE)


def test_a_sku_the_engine_left_for_another_spelling_runs_again():
    assert classify(Outcome(_item("A")), 0, DELAYS) == Verdict(Action.AGAIN)


def test_a_not_retriable_failure_fails_at_once():
    failure = Failure.of(Code.AMBIGUOUS_SKU)
    assert settle(failure, 0, DELAYS) == Verdict(Action.FAIL, failure)


def test_a_retriable_failure_retries_after_the_next_delay():
    failure = Failure(Code.STORAGE_ERROR, "k: 503")
    assert settle(failure, 1, DELAYS) == Verdict(Action.RETRY, failure, 60)


def test_a_retriable_failure_is_parked_when_the_delays_are_used_up():
    failure = Failure(Code.TIMEOUT, "(1205, 'x')")
    assert settle(failure, 3, DELAYS) == Verdict(Action.PARK, failure)


def test_an_outcome_is_classified_by_its_failure_code_not_its_text():
    outcome = Outcome(_item("A"), failure=Failure(Code.PRODUCT_NOT_FOUND, "ambiguous_sku: (1205,"))
    assert classify(outcome, 0, DELAYS).action is Action.RETRY


def test_the_status_message_says_which_retry_is_scheduled():
    verdict = settle(Failure.of(Code.PRODUCT_NOT_FOUND), 0, [1, 1, 1, 1])
    assert status_message(verdict, 0, [1, 1, 1, 1]) == \
        "product_not_found: no product with this SKU (yet) (retry 1 of 4 in 1s)"


@pytest.mark.parametrize(("delays", "tail"), [([5], "(parked after 1 retry)"), ([1, 1], "(parked after 2 retries)")])
def test_the_status_message_of_a_parked_operation_counts_the_retries(delays, tail):
    verdict = settle(Failure(Code.STORAGE_ERROR, "k: 403"), len(delays), delays)
    assert status_message(verdict, len(delays), delays) == f"storage_error: k: 403 {tail}"


def test_the_status_message_of_a_failed_operation_is_the_failure():
    verdict = settle(Failure.of(Code.AMBIGUOUS_SKU), 0, DELAYS)
    assert status_message(verdict, 0, DELAYS) == "ambiguous_sku: several products have this SKU"


def test_reconnecting_backs_off_doubling_up_to_three_seconds():
    backoff = reconnect_backoff()
    assert [next(backoff) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


# ---------------------------------------------------------------- results


def test_an_operations_result_is_the_sync_reports_shape():
    stats = ImageStats(inserted=2, warnings=["missing_object: /a.jpg"])
    result = json.loads(sku_result("A", "merge", product_id=7, stats=stats, warnings=["duplicate_sku: x"],
                                   changed=True))
    assert result == {"sku": "A", "product_id": 7, "image_stats": {
        "inserted": 2, "updated_value": 0, "updated_meta": 0, "skipped_no_change": 0, "deleted": 0, "missing": 0,
        "deletions_held": 0, "warnings": ["duplicate_sku: x", "missing_object: /a.jpg"]},
        "error": None, "mode": "merge", "changed": True}


def test_a_failed_operations_result_has_the_same_shape_with_its_error():
    failure = Failure(Code.INVALID_DATA, "images: must be a list")
    result = json.loads(sku_result("BAD", "merge", failure=failure, warnings=[str(failure)]))
    assert (result["error"], result["image_stats"]["warnings"], result["changed"]) == (
        "invalid_data", ["invalid_data: images: must be a list"], False)
    assert list(result) == ["sku", "product_id", "image_stats", "error", "mode", "changed"]


def test_a_listing_answers_only_for_messages_published_before_it_with_the_margin():
    from nacento_sync.asyncmode.decisions import LISTING_MARGIN, listings_fresh_for

    t = 1_000_000.0
    assert listings_fresh_for(t, [t - LISTING_MARGIN, t - 100])
    assert not listings_fresh_for(t, [t - LISTING_MARGIN + 0.001])  # within the margin: maybe after it
    assert not listings_fresh_for(t, [t - 100, None])  # no timestamp (another publisher): never reused
    assert not listings_fresh_for(t, [])
    assert not listings_fresh_for(t, [t + 30])  # published after the listings were taken

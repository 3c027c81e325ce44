"""The worker's decisions, as pure functions: decode an envelope, read an operation's data, classify an
outcome (complete, run again, fail, retry, park), the next retry, the reconnection back-off and an
operation's result. No I/O: the worker's shell (session, batcher, recorder) acts on what they return."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nacento_sync import results
from nacento_sync.codes import Code, Failure
from nacento_sync.feed import parse_record
from nacento_sync.models import Item, Rejection
from nacento_sync.plan import ImageStats
from nacento_sync.results import Outcome

MODES = ("merge", "replace")
#: `magento_bulk.uuid` is VARCHAR(39).
UUID_BYTES = 39

#: `magento_operation.serialized_data` / `result_serialized_data` are BLOBs, `result_message` VARCHAR(255).
BLOB_BYTES = 65_535
MESSAGE_CHARS = 255
#: Headers of the worker's retry and parking copies: retries so far, and the last failure.
ATTEMPT_HEADER = "x-nacento-attempt"
ERROR_HEADER = "x-nacento-error"


def fit_message(text: str) -> str:
    """`result_message` holds 255 characters."""
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def fit_result(result: dict[str, Any]) -> str:
    """The result as JSON within the BLOB's 65,535 bytes: warnings are dropped from the end, and
    `"truncated": true` is added, when it does not fit."""
    text = _dump(result)
    if len(text.encode()) <= BLOB_BYTES:
        return text
    stats = dict(result.get("image_stats") or {})
    warnings = list(stats.get("warnings") or [])
    lo, hi = 0, len(warnings)  # the largest number of warnings that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = _dump({**result, "image_stats": {**stats, "warnings": warnings[:mid]}, "truncated": True})
        lo, hi = (mid, hi) if len(trial.encode()) <= BLOB_BYTES else (lo, mid - 1)
    text = _dump({**result, "image_stats": {**stats, "warnings": warnings[:lo]}, "truncated": True})
    if len(text.encode()) > BLOB_BYTES:  # not the warnings: keep the essentials only
        text = _dump({"sku": str(result.get("sku"))[:64], "product_id": result.get("product_id"),
                      "error": result.get("error"), "truncated": True})
    return text


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))



# ---------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class Envelope:
    """Magento's operation message, decoded: which operation it is for and its data."""

    bulk_uuid: str
    #: `operation_key`; None in the original module's messages (found by bulk and SKU).
    key: int | None
    topic: str
    #: `serialized_data` as sent (a JSON string), and decoded (None when it is not JSON).
    data_text: str | None
    data: Any
    #: Retries so far (`x-nacento-attempt`).
    attempt: int = 0

    @property
    def source(self) -> str:
        return f"{self.bulk_uuid}#{self.key if self.key is not None else 'sku'}"

    @property
    def sku(self) -> str | None:
        sku = self.data.get("sku") if isinstance(self.data, dict) else None
        return sku if isinstance(sku, str) else None


@dataclass(frozen=True)
class Poison:
    """A message that cannot be tied to an operation: parked with this reason."""

    reason: str


def decode_envelope(body: bytes, headers: Mapping[str, Any], default_topic: str) -> Envelope | Poison:
    """The operation a message is for, or why it is poison."""
    try:
        env = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Poison("poison: the body is not JSON")
    if not isinstance(env, dict):
        return Poison("poison: the body is not a JSON object")
    bulk_uuid = env.get("bulk_uuid")
    if not isinstance(bulk_uuid, str) or not bulk_uuid or len(bulk_uuid.encode()) > UUID_BYTES:
        return Poison("poison: no valid bulk_uuid")
    key = env.get("id")
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if key is not None and (isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 2**32):
        return Poison("poison: id is not an operation key")
    topic = env.get("topic_name")
    data_text = env.get("serialized_data")
    data_text = data_text if isinstance(data_text, str) else None
    try:
        data = json.loads(data_text) if data_text is not None else None
    except (ValueError, RecursionError):
        data = None
    envelope = Envelope(bulk_uuid, key, topic if isinstance(topic, str) and topic else default_topic, data_text,
                        data, _attempt(headers))
    if key is None and not (envelope.sku or "").strip():
        return Poison("poison: neither an id nor a SKU in serialized_data: no operation to record it in")
    return envelope


def _attempt(headers: Mapping[str, Any]) -> int:
    try:
        return max(0, int(headers.get(ATTEMPT_HEADER, 0)))
    except (TypeError, ValueError):
        return 0


def read_operation(envelope: Envelope, ordinal: int, default_mode: str) -> tuple[str, Item | Failure]:
    """The operation's mode and item, or the invalid_data failure that says why there is none."""
    data = envelope.data
    mode = data.get("mode") if isinstance(data, dict) else None
    if data is None:
        record: Item | Rejection = Rejection(envelope.source, "serialized_data is not a JSON string", ordinal)
    elif mode is not None and mode not in MODES:
        record = Rejection(envelope.source, f"mode must be merge or replace, not {mode!r}", ordinal)
    else:
        record = parse_record(data, envelope.source, ordinal)
    mode = mode if mode in MODES else default_mode
    return mode, Failure(Code.INVALID_DATA, record.error) if isinstance(record, Rejection) else record


# ---------------------------------------------------------------- outcomes


class Action(StrEnum):
    COMPLETE = "complete"  # status 1 (committed with the data), ack
    AGAIN = "again"  # not written: another spelling of its product was in the batch; run it alone
    FAIL = "fail"  # status 3, ack
    RETRY = "retry"  # to the retry queue of `delay`; status stays 4
    PARK = "park"  # retries used up: to the parking queue, status 2


@dataclass(frozen=True)
class Verdict:
    action: Action
    failure: Failure | None = None
    #: RETRY: seconds the copy waits in its retry queue.
    delay: int | None = None

    @property
    def why(self) -> Failure:
        """The failure of a FAIL, RETRY or PARK verdict."""
        assert self.failure is not None, f"a {self.action} verdict has no failure"
        return self.failure

    @property
    def wait(self) -> int:
        """The delay of a RETRY verdict."""
        assert self.delay is not None, f"a {self.action} verdict has no delay"
        return self.delay


def next_retry(attempt: int, delays: Sequence[int]) -> int | None:
    """The delay before retry `attempt + 1` (`attempt` retries so far), or None when they are used up."""
    return delays[attempt] if 0 <= attempt < len(delays) else None


def settle(failure: Failure, attempt: int, delays: Sequence[int]) -> Verdict:
    """A failed operation: fail it for good, retry it after the next delay, or park it."""
    if not failure.retriable:
        return Verdict(Action.FAIL, failure)
    delay = next_retry(attempt, delays)
    return Verdict(Action.PARK, failure) if delay is None else Verdict(Action.RETRY, failure, delay)


def classify(outcome: Outcome, attempt: int, delays: Sequence[int]) -> Verdict:
    """What to do with an operation after the engine's outcome for its SKU."""
    if outcome.failure is not None:
        return settle(outcome.failure, attempt, delays)
    return Verdict(Action.COMPLETE if outcome.stats is not None else Action.AGAIN)


def status_message(verdict: Verdict, attempt: int, delays: Sequence[int]) -> str:
    """The operation's `result_message` for a failure verdict."""
    if verdict.action is Action.RETRY:
        return f"{verdict.failure} (retry {attempt + 1} of {len(delays)} in {verdict.delay}s)"
    if verdict.action is Action.PARK:
        n = len(delays)
        return f"{verdict.failure} (parked after {n} retr{'y' if n == 1 else 'ies'})"
    return str(verdict.failure)


def reconnect_backoff(first: float = 0.5, cap: float = 3.0) -> Iterator[float]:
    """Seconds to wait before each attempt to reconnect (broker or database): doubling, capped."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


# ---------------------------------------------------------------- reusing bucket listings

#: Seconds a listing must postdate a message's publishing to answer for it: AMQP timestamps have whole
#: seconds, and the submitting host's clock may differ a little from the worker's.
LISTING_MARGIN = 5.0


def listings_fresh_for(created_at: float, published: Sequence[float | None]) -> bool:
    """May a worker's ETag finder created at `created_at` (and so every listing it holds) answer for these
    messages? Only if it was created after each was published, with `LISTING_MARGIN`: the images a
    message names were uploaded before it was submitted, so a listing taken later has seen them. A message
    without a timestamp (published by another tool) never reuses a listing. Pure."""
    return bool(published) and all(p is not None and created_at >= p + LISTING_MARGIN for p in published)


# ---------------------------------------------------------------- results


def sku_result(sku: str | None, mode: str, *, product_id: int | None = None, stats: ImageStats | None = None,
               failure: Failure | None = None, warnings: Sequence[str] = (), changed: bool = False) -> str:
    """An operation's `result_serialized_data`: the SKU's result as in the sync report, plus `mode` and
    `changed`, within the BLOB's size."""
    error = None if failure is None else failure.code.reported.value
    result = results.sku_result(sku, product_id=product_id, stats=stats, error=error, warnings=warnings)
    return fit_result({**result, "mode": mode, "changed": bool(changed)})


def outcome_result(outcome: Outcome, mode: str) -> str:
    return sku_result(outcome.item.sku, mode, product_id=outcome.product_id, stats=outcome.stats,
                      failure=outcome.failure, warnings=outcome.warnings, changed=outcome.changed)

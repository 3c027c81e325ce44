"""`submit`: validate an export, record a Magento bulk, publish one message per SKU, answer at once.

The answer is the original module's async response. The bulk and its operations are committed before
anything is published, so a worker never receives a message whose operation row does not exist yet;
a message the broker did not confirm (or returned as unroutable) marks its operation "not published".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nacento_sync import charset, magento
from nacento_sync.asyncmode import bulk, queue
from nacento_sync.config import Config
from nacento_sync.feed import Feed, parse_record
from nacento_sync.models import Item, Rejection, sku_key
from nacento_sync.paths import normalize_role

log = logging.getLogger("nacento_sync")


@dataclass
class RequestItem:
    id: int
    data_hash: str | None
    status: str  # accepted | rejected
    error_message: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "data_hash": self.data_hash, "status": self.status,
                "error_message": self.error_message}


@dataclass
class SubmitResult:
    """The async response: `bulk_uuid` (None when nothing was valid), `request_items`, `errors`."""

    bulk_uuid: str | None
    request_id: str
    request_items: list[RequestItem] = field(default_factory=list)

    @property
    def errors(self) -> bool:
        return any(i.status != "accepted" for i in self.request_items)

    @property
    def accepted(self) -> int:
        return sum(1 for i in self.request_items if i.status == "accepted")

    def as_json(self) -> dict[str, Any]:
        return {"bulk_uuid": self.bulk_uuid, "request_items": [i.as_json() for i in self.request_items],
                "errors": self.errors}


def data_hash(sku: str | None) -> str | None:
    """md5 of the SKU, as the original module answers."""
    return hashlib.md5(sku.encode()).hexdigest() if sku is not None else None


#: The ImageEntry keys an operation carries: what the worker reads. Other keys of the export are dropped,
#: so a key the tool ignores (and never validated) cannot break the encoding or the size limit.
IMAGE_KEYS = ("file_path", "label", "position", "disabled", "roles", "stores")
#: The keys of one store view's values (`stores["<code>"]`) an operation carries.
STORE_KEYS = ("label", "position", "disabled")


def _image_data(image: dict[str, Any]) -> dict[str, Any]:
    data = {k: image[k] for k in IMAGE_KEYS if k in image}
    if isinstance(data.get("stores"), dict):
        data["stores"] = {code: {k: values[k] for k in STORE_KEYS if k in values}
                          for code, values in data["stores"].items()}
    return data


def _store_roles_data(store_roles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The validated `store_roles`; an unknown role (ignored, its value never validated) is dropped."""
    return {code: {name: path for name, path in roles.items() if normalize_role(name) is not None}
            for code, roles in store_roles.items()}


def operation_data(raw: dict[str, Any], mode: str, request_id: str) -> str:
    """`serialized_data`: exactly the JSON string the message carries (validated fields only)."""
    data: dict[str, Any] = {"sku": raw["sku"], "images": [_image_data(image) for image in raw["images"]]}
    if raw.get("store_roles") is not None:
        data["store_roles"] = _store_roles_data(raw["store_roles"])
    data |= {"mode": mode, "request_id": request_id}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Valid:
    item: Item
    data: str


def plan_submission(records: Iterable[Item | Rejection], raw: dict[int, Any], mode: str,
                    request_id: str, narrow: Mapping[str, str] | None = None) -> tuple[list[RequestItem], list[_Valid]]:
    """Per record (by ordinal): accepted → an operation; rejected (invalid, a SKU or path the store's
    `narrow` columns cannot hold, too big for the BLOB, superseded by a later item for the same SKU) → its
    reason. Labels the columns cannot hold are left to the worker, which drops them with a warning. Pure."""
    answers: dict[int, RequestItem] = {}
    valid: dict[str, _Valid] = {}
    keys = {col: cs for col, cs in (narrow or {}).items() if col in (charset.SKU, charset.PATH)}
    for record in records:
        rec = charset.fit_item(record, keys) if isinstance(record, Item) and keys else record
        if isinstance(rec, Rejection):
            answers[rec.ordinal] = RequestItem(rec.ordinal, data_hash(rec.sku), "rejected",
                                               f"{rec.source}: {rec.error}")
            continue
        data = operation_data(raw[rec.ordinal], mode, request_id)
        size = len(data.encode())
        if size > bulk.BLOB_BYTES:
            answers[rec.ordinal] = RequestItem(
                rec.ordinal, data_hash(rec.sku), "rejected",
                f"{rec.source}: operation data is {size:,} bytes; Magento's serialized_data column holds "
                f"{bulk.BLOB_BYTES:,}")
            continue
        key = sku_key(rec.sku)
        if key in valid:
            prev = valid[key].item
            answers[prev.ordinal] = RequestItem(
                prev.ordinal, data_hash(prev.sku), "rejected",
                f"{prev.source}: superseded by item {rec.ordinal} ({rec.source}) for the same SKU")
            del valid[key]
        valid[key] = _Valid(rec, data)
        answers[rec.ordinal] = RequestItem(rec.ordinal, data_hash(rec.sku), "accepted")
    ordered = sorted(valid.values(), key=lambda v: v.item.ordinal)
    return [answers[k] for k in sorted(answers)], ordered


async def submit(cfg: Config, exports: list[str], *, mode: str | None = None,
                 request_id: str | None = None) -> SubmitResult:
    """Read and validate the exports, write the bulk, publish. Raises the access errors (broker first:
    nothing is written when it cannot be reached)."""
    mode = mode or cfg.sync.mode
    raw: dict[int, Any] = {}

    def keep_raw(obj: Any, source: str, ordinal: int) -> Item | Rejection:
        rec = parse_record(obj, source, ordinal)
        if isinstance(rec, Item):
            raw[ordinal] = obj
        return rec

    feed = Feed(exports, parse=keep_raw)
    records = list(feed)
    rid = request_id or feed.request_id or datetime.now(UTC).strftime("submit-%Y%m%dT%H%M%SZ")
    topo = queue.Topology.from_config(cfg.queue)

    broker = await queue.connect(cfg.queue.url)
    try:
        channel = await queue.open_channel(broker)
        exchange, _ = await queue.declare(channel, topo)
        conn = await magento.connect(cfg.database)
        try:
            await bulk.check_tables(conn, cfg.database.table_prefix)
            narrow = await magento.narrow_columns(conn, cfg.database.table_prefix)
            answers, valid = plan_submission(records, raw, mode, rid, narrow)
            result = SubmitResult(None, rid, answers)
            if not valid:
                return result
            result.bulk_uuid = bulk.new_uuid()
            description = f"nacento-sync: image galleries of {len(valid)} SKU(s), request {rid}"
            operations = [bulk.NewOperation(v.item.ordinal, topo.topic, v.data) for v in valid]
            await bulk.create_bulk(conn, cfg.database.table_prefix, result.bulk_uuid, cfg.queue.admin_user_id,
                                   description, operations)
            messages = [(op.key, topo.topic, queue.message(queue.operation_body(result.bulk_uuid, op.topic,
                                                                                op.data, op.key)))
                        for op in operations]
            outcome = await queue.publish_all(exchange, messages)
            failed = sorted(k for k, why in outcome.items() if why is not None)
            if failed:
                log.error("%d of %d messages were not published (first: %s)", len(failed), len(messages),
                          outcome[failed[0]])
                await bulk.mark_not_published(conn, cfg.database.table_prefix, result.bulk_uuid, failed)
                by_id = {i.id: i for i in result.request_items}
                for key in failed:
                    by_id[key].status, by_id[key].error_message = "rejected", "not published"
        finally:
            conn.close()
    finally:
        await broker.close()
    return result

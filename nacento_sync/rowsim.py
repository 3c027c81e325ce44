"""What `magento.Writer` would do to the rows, computed: a dry run's journal (pure, no database).

`simulate(rows, ops, …)` applies a batch's operations to a snapshot of its rows (`magento.snapshot`) the way
the Writer's statements would, so `journal.diff` gives the lines the real run would write. Ids the database
would generate are unknown: they are placeholders here (negative) and null in the journal (`unknown_ids`).
Values the server would set (a meta row's `updated_at`) are null too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from nacento_sync.journal import GALLERY, META, TO_ENTITY, VALUE, VARCHAR, VIDEO, Change, Snapshot
from nacento_sync.plan import (
    DeleteAttribute,
    DeleteValueRows,
    InsertEntry,
    InsertValueRow,
    Op,
    RemoveEntry,
    SetAttribute,
    SetEntryValue,
    UpdateValueRow,
    UpsertMeta,
)

ID_COLUMNS = ("value_id", "record_id")


def simulate(rows: Snapshot, ops: Iterable[Op], link: str, attribute_ids: Mapping[str, int]) -> Snapshot:
    """The rows after the Writer applied `ops` (in its order: deletions, updates, inserts, roles)."""
    world: Snapshot = {table: {k: dict(r) for k, r in found.items()} for table, found in rows.items()}
    for table in (GALLERY, TO_ENTITY, VALUE, VIDEO, VARCHAR, META):
        world.setdefault(table, {})
    new_id = itertools.count(-1, -1)
    ops = list(ops)

    def drop_value_rows(match) -> None:
        for key, row in list(world[VALUE].items()):
            if match(row):
                world[META].pop((row["record_id"],), None)
                del world[VALUE][key]

    def drop_entry(value_id: int) -> None:
        drop_value_rows(lambda r: r["value_id"] == value_id)
        for table in (VIDEO, TO_ENTITY):
            for key in [k for k, r in world[table].items() if r["value_id"] == value_id]:
                del world[table][key]
        world[GALLERY].pop((value_id,), None)

    def upsert_meta(record_id: int, etag: str | None) -> None:
        old = world[META].get((record_id,))
        if old is None:
            world[META][(record_id,)] = {"record_id": record_id, "s3_etag": etag, "updated_at": None}
        elif old.get("s3_etag") != etag:
            world[META][(record_id,)] = old | {"s3_etag": etag, "updated_at": None}

    def add_value_row(value_id: int, store_id: int, link_id: int, label: Any, position: Any, disabled: bool) -> int:
        record_id = next(new_id)
        world[VALUE][(record_id,)] = {"record_id": record_id, "value_id": value_id, "store_id": store_id,
                                      link: link_id, "label": label, "position": position, "disabled": int(disabled)}
        return record_id

    for op in ops:
        if isinstance(op, DeleteValueRows):
            for record_id in op.record_ids:
                world[META].pop((record_id,), None)
                world[VALUE].pop((record_id,), None)
    removals = [op for op in ops if isinstance(op, RemoveEntry)]
    for op in removals:
        drop_value_rows(lambda r, op=op: (r["value_id"], r[link]) == (op.value_id, op.link_id))
        world[TO_ENTITY].pop((op.value_id, op.link_id), None)
    for op in removals:
        if op.delete_gallery_row:
            drop_entry(op.value_id)
    linked = {r["value_id"] for r in world[TO_ENTITY].values()}
    for value_id in sorted({op.value_id for op in removals if not op.delete_gallery_row} - linked):
        drop_entry(value_id)
    for op in ops:
        if isinstance(op, SetEntryValue) and (op.value_id,) in world[GALLERY]:
            world[GALLERY][(op.value_id,)]["value"] = op.value
        elif isinstance(op, UpdateValueRow) and (op.record_id,) in world[VALUE]:
            world[VALUE][(op.record_id,)].update(label=op.label, position=op.position, disabled=int(op.disabled))
    for op in ops:
        if isinstance(op, UpsertMeta):
            upsert_meta(op.record_id, op.etag)
    for op in ops:
        if isinstance(op, InsertEntry):
            value_id = next(new_id)
            world[GALLERY][(value_id,)] = {"value_id": value_id, "attribute_id": attribute_ids["media_gallery"],
                                           "value": op.value, "media_type": "image", "disabled": 0}
            world[TO_ENTITY][(value_id, op.link_id)] = {"value_id": value_id, link: op.link_id}
            record_id = add_value_row(value_id, 0, op.link_id, op.label, op.position, op.disabled)
            if op.etag is not None:
                upsert_meta(record_id, op.etag)
            for store_id, label, position, disabled in op.store_rows:
                add_value_row(value_id, store_id, op.link_id, label, position, disabled)
        elif isinstance(op, InsertValueRow):
            record_id = add_value_row(op.value_id, op.store_id, op.link_id, op.label, op.position, op.disabled)
            if op.store_id == 0 and op.etag is not None:
                upsert_meta(record_id, op.etag)
    by_unique = {(r[link], r["attribute_id"], r["store_id"]): k for k, r in world[VARCHAR].items()}
    for op in ops:
        if isinstance(op, SetAttribute) and op.attribute in attribute_ids:
            unique = (op.link_id, attribute_ids[op.attribute], op.store_id)
            if unique in by_unique:
                world[VARCHAR][by_unique[unique]]["value"] = op.value
            else:
                value_id = next(new_id)
                by_unique[unique] = (value_id,)
                world[VARCHAR][(value_id,)] = {"value_id": value_id, "attribute_id": unique[1],
                                               "store_id": op.store_id, link: op.link_id, "value": op.value}
    for op in ops:
        if isinstance(op, DeleteAttribute) and op.attribute in attribute_ids:
            unique = (op.link_id, attribute_ids[op.attribute], op.store_id)
            if unique in by_unique:
                world[VARCHAR].pop(by_unique.pop(unique), None)
    return world


def unknown_ids(changes: Iterable[Change]) -> list[Change]:
    """The changes with placeholder (negative) ids as null: ids the database would generate."""

    def clean(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {k: (None if k in ID_COLUMNS and isinstance(v, int) and v < 0 else v) for k, v in row.items()}

    return [Change(c.table, c.action, clean(c.key) or {}, clean(c.before), clean(c.after), c.sku, c.product_id)
            for c in changes]

"""asyncmode.bulk on Magento's own `magento_operation`, which has no unique key on (bulk_uuid, operation_key)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomysql
import pytest
from magento_schema import MagentoStore

from nacento_sync.asyncmode import bulk
from nacento_sync.asyncmode.bulk import Operation, Status

UUID = "6f0f7d5e-8a57-4b39-9d36-2f7c1c7e0b11"


def _op(op_id: int, key: int | None, sku: str | None, status: Status = Status.OPEN) -> Operation:
    return Operation(op_id, UUID, key, "t", int(status), None if sku is None else json.dumps({"sku": sku}))


def test_matching_operation_by_key_then_by_sku() -> None:
    ops = [_op(1, 1, "A"), _op(2, 2, "B", Status.COMPLETE), _op(3, 2, "B"), _op(4, None, "b ")]
    assert bulk.matching_operation(ops, 2, None).id == 2  # by key: the lowest id
    assert bulk.matching_operation(ops, 9, json.dumps({"sku": "A"})) is None  # a key never falls back to the SKU
    # Without a key: the same SKU as Magento matches it (case, trailing spaces), an unfinished one first.
    assert bulk.matching_operation(ops, None, json.dumps({"sku": "B"})).id == 3
    assert bulk.matching_operation(ops[:2], None, json.dumps({"sku": "b"})).id == 2
    assert bulk.matching_operation(ops, None, json.dumps({"sku": "C"})) is None
    assert bulk.matching_operation(ops, None, "not json") is None


@pytest.fixture
def bulk_store(magento_factory) -> MagentoStore:
    store = magento_factory("ce", "mg_")
    store.execute("INSERT INTO {magento_bulk} (uuid, user_id, user_type, operation_count) VALUES (%s, 1, 2, 1)",
                  (UUID,))
    return store


async def _connect(db_params: dict[str, Any], store: MagentoStore) -> aiomysql.Connection:
    return await aiomysql.connect(**db_params, db=store.database, charset="utf8mb4", autocommit=False)


def _keys(store: MagentoStore) -> list[tuple[int | None, str]]:
    rows = store.query("SELECT operation_key, serialized_data FROM {magento_operation} ORDER BY id")
    return [(r["operation_key"], json.loads(r["serialized_data"])["sku"]) for r in rows]


@pytest.mark.parametrize("key", [7, None], ids=["keyed", "original-module"])
def test_an_operation_created_meanwhile_is_found_not_inserted_twice(bulk_store, db_params, key) -> None:
    """Another worker holds the bulk's lock while it inserts the operation: we wait, then find its row."""
    store = bulk_store

    async def go() -> tuple[Operation | None, int]:
        other, ours = await _connect(db_params, store), await _connect(db_params, store)
        try:
            async with other.cursor() as cur:
                await cur.execute("SELECT id FROM mg_magento_bulk WHERE uuid = %s FOR UPDATE", (UUID,))
                mine = asyncio.create_task(bulk.insert_operation(
                    ours, "mg_", UUID, key, "t", json.dumps({"sku": "php-1 "})))
                await asyncio.sleep(0.5)
                assert not mine.done()  # it waits for the bulk's lock
                await cur.execute("INSERT INTO mg_magento_operation (bulk_uuid, operation_key, topic_name, "
                                  "serialized_data, status) VALUES (%s, %s, 't', %s, 4)",
                                  (UUID, key, json.dumps({"sku": "PHP-1"})))
                other_id = cur.lastrowid
            await other.commit()
            return await asyncio.wait_for(mine, 30), other_id
        finally:
            other.close(), ours.close()

    found, other_id = asyncio.run(go())
    assert found is not None and found.id == other_id and found.key == key
    assert _keys(store) == [(key, "PHP-1")]


def test_insert_operation_inserts_once_and_knows_unknown_bulks(bulk_store, db_params) -> None:
    store = bulk_store

    async def go() -> tuple[Operation | None, Operation | None, Operation | None]:
        conn = await _connect(db_params, store)
        try:
            first = await bulk.insert_operation(conn, "mg_", UUID, 3, "t", json.dumps({"sku": "A"}))
            again = await bulk.insert_operation(conn, "mg_", UUID, 3, "t", json.dumps({"sku": "A"}))
            gone = await bulk.insert_operation(conn, "mg_", "no-such-bulk", 3, "t", json.dumps({"sku": "A"}))
            return first, again, gone
        finally:
            conn.close()

    first, again, gone = asyncio.run(go())
    assert first is not None and (first.key, first.status) == (3, Status.OPEN)
    assert again is not None and again.id == first.id
    assert gone is None
    assert _keys(store) == [(3, "A")]

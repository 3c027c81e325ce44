"""Magento's bulk tracking tables (`Magento_AsynchronousOperations`): all their SQL, with the table prefix.

We write Magento's own rows rather than a table of ours so operators follow an asynchronous run where
they already look (System › Action Logs › Bulk Actions), and Magento's tooling reads the outcome.
`magento_bulk`: one row per submission; `magento_operation`: one row per SKU, found by
(`bulk_uuid`, `operation_key`), whose `status` tells where it stands. Magento has no unique key on
(`bulk_uuid`, `operation_key`): nothing here relies on the database to keep an operation single.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from nacento_sync.asyncmode.decisions import BLOB_BYTES, MESSAGE_CHARS, fit_message, fit_result  # noqa: F401
from nacento_sync.errors import SchemaError
from nacento_sync.models import sku_key

BULK_TABLE = "magento_bulk"
OPERATION_TABLE = "magento_operation"
#: `magento_bulk.user_type` of an admin user (UserContextInterface::USER_TYPE_ADMIN).
USER_TYPE_ADMIN = 2
#: Rows per multi-row statement.
CHUNK = 500


class Status(IntEnum):
    """`magento_operation.status` (OperationInterface::STATUS_TYPE_*)."""

    COMPLETE = 1
    RETRIABLY_FAILED = 2
    NOT_RETRIABLY_FAILED = 3
    OPEN = 4
    REJECTED = 5


#: Operations in these statuses are done: a redelivered message for them is acked without processing.
FINISHED = (Status.COMPLETE, Status.NOT_RETRIABLY_FAILED, Status.REJECTED)


class ErrorCode(IntEnum):
    """`magento_operation.error_code`: a fixed table (README, "Asynchronous mode"), one code per cause.
    A failure's `codes.Code` maps to the member of the same name; whether it is retriable is the Code's."""

    UNKNOWN = 0  # Magento's own cron: an operation open for over 12 h was marked failed ("Unknown Error")
    PRODUCT_NOT_FOUND = 1  # retriable: the product may not be committed yet
    AMBIGUOUS_SKU = 2  # not retriable: several products have this SKU
    STORAGE_ERROR = 3  # retriable: the bucket failed (after the client's own retries)
    DATABASE_ERROR = 4  # retriable: the SKU's transaction failed
    TIMEOUT = 5  # retriable: a lock wait or the broker timed out
    INVALID_DATA = 6  # not retriable: the operation's data does not validate
    NOT_PUBLISHED = 7  # `submit` could not hand the message to the broker
    INTERNAL_ERROR = 8  # retriable: an unexpected error in the worker


def new_uuid() -> str:
    """A random lowercase UUID v4, as Magento's bulk UUIDs."""
    return str(uuid.uuid4())




def _ph(n: int) -> str:
    return ", ".join(["%s"] * n)


def _chunks(seq: Sequence, size: int = CHUNK):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return value


class Tables:
    """The two tables' names with the store's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.bulk = f"`{prefix}{BULK_TABLE}`"
        self.operation = f"`{prefix}{OPERATION_TABLE}`"


async def check_tables(conn, prefix: str) -> None:
    """SchemaError (exit 2) unless both tables exist: they come with Magento_AsynchronousOperations."""
    names = [f"{prefix}{BULK_TABLE}", f"{prefix}{OPERATION_TABLE}"]
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
            f"AND table_name IN ({_ph(2)})",
            names,
        )
        found = {r[0] for r in await cur.fetchall()}
    await conn.rollback()
    missing = [n for n in names if n not in found]
    if missing:
        raise SchemaError(f"table {missing[0]} is missing: asynchronous mode needs Magento's "
                          "Magento_AsynchronousOperations tables (check database.name and database.table_prefix)")


# ---------------------------------------------------------------- submit


@dataclass(frozen=True)
class NewOperation:
    key: int
    topic: str
    data: str


async def create_bulk(conn, prefix: str, bulk_uuid: str, user_id: int | None, description: str,
                      operations: Sequence[NewOperation]) -> None:
    """The bulk and its open operations, in one committed transaction."""
    t = Tables(prefix)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                f"INSERT INTO {t.bulk} (uuid, user_id, user_type, description, operation_count) "
                "VALUES (%s, %s, %s, %s, %s)",
                (bulk_uuid, user_id, USER_TYPE_ADMIN, fit_message(description), len(operations)),
            )
            for chunk in _chunks(operations):
                await cur.execute(
                    f"INSERT INTO {t.operation} (bulk_uuid, operation_key, topic_name, serialized_data, status) "
                    f"VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(chunk))}",
                    [x for op in chunk for x in (bulk_uuid, op.key, op.topic, op.data, int(Status.OPEN))],
                )
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise


async def mark_not_published(conn, prefix: str, bulk_uuid: str, keys: Sequence[int]) -> None:
    """Operations whose message the broker did not take: status 3, "not published"."""
    t = Tables(prefix)
    async with conn.cursor() as cur:
        for chunk in _chunks(list(keys)):
            await cur.execute(
                f"UPDATE {t.operation} SET status = %s, error_code = %s, result_message = 'not published' "
                f"WHERE bulk_uuid = %s AND operation_key IN ({_ph(len(chunk))})",
                [int(Status.NOT_RETRIABLY_FAILED), int(ErrorCode.NOT_PUBLISHED), bulk_uuid, *chunk],
            )
    await conn.commit()


# ---------------------------------------------------------------- worker


@dataclass
class Operation:
    id: int
    bulk_uuid: str
    key: int | None
    topic: str | None
    status: int
    data: str | None


_OP_COLUMNS = "id, bulk_uuid, operation_key, topic_name, status, serialized_data"


def _operation(row: Sequence[Any]) -> Operation:
    return Operation(int(row[0]), _text(row[1]) or "", None if row[2] is None else int(row[2]), _text(row[3]),
                     int(row[4] or 0), _text(row[5]))


async def operations_by_key(conn, prefix: str, pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Operation]:
    """Operations by (bulk_uuid, operation_key); the lowest id wins if a store has duplicates."""
    t = Tables(prefix)
    wanted = sorted(set(pairs))
    out: dict[tuple[str, int], Operation] = {}
    async with conn.cursor() as cur:
        for chunk in _chunks(wanted):
            await cur.execute(
                f"SELECT {_OP_COLUMNS} FROM {t.operation} WHERE (bulk_uuid, operation_key) IN "
                f"({', '.join(['(%s, %s)'] * len(chunk))}) ORDER BY id",
                [x for p in chunk for x in p],
            )
            for row in await cur.fetchall():
                op = _operation(row)
                out.setdefault((op.bulk_uuid, op.key or 0), op)
    await conn.rollback()
    return out


async def operations_of_bulk(conn, prefix: str, bulk_uuid: str, statuses: Sequence[int] = ()) -> list[Operation]:
    """A bulk's operations (optionally only those in `statuses`), by id."""
    t = Tables(prefix)
    where = f" AND status IN ({_ph(len(statuses))})" if statuses else ""
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT {_OP_COLUMNS} FROM {t.operation} WHERE bulk_uuid = %s{where} ORDER BY id",
                          [bulk_uuid, *[int(s) for s in statuses]])
        rows = [_operation(r) for r in await cur.fetchall()]
    await conn.rollback()
    return rows


async def existing_bulks(conn, prefix: str, uuids: Iterable[str]) -> set[str]:
    t = Tables(prefix)
    wanted = sorted(set(uuids))
    found: set[str] = set()
    async with conn.cursor() as cur:
        for chunk in _chunks(wanted):
            await cur.execute(f"SELECT uuid FROM {t.bulk} WHERE uuid IN ({_ph(len(chunk))})", chunk)
            found.update(_text(r[0]) or "" for r in await cur.fetchall())
    await conn.rollback()
    return found


def matching_operation(ops: Sequence[Operation], key: int | None, data: str | None) -> Operation | None:
    """The operation a message belongs to, among its bulk's `ops` (by id): the lowest id with its `key`; for
    a message without a key (the original module's), one with the same SKU, an unfinished one first."""
    if key is not None:
        return next((op for op in ops if op.key == key), None)
    sku = _sku_of(data)
    if sku is None:
        return None
    same = [op for op in ops if (other := _sku_of(op.data)) is not None and sku_key(other) == sku_key(sku)]
    return next((op for op in same if op.status not in FINISHED), same[0] if same else None)


async def insert_operation(conn, prefix: str, bulk_uuid: str, key: int | None, topic: str,
                           data: str) -> Operation | None:
    """The operation of a message that had no row (the original module's async endpoint may not write
    one): an open one is inserted unless one now matches (`matching_operation`); committed. None when the
    bulk no longer exists. `operation_count` is left alone: it counts what the bulk planned.

    Magento's table has no unique key to stop two workers inserting the same operation, so the bulk's row
    is locked first: whoever waited for the lock then reads (a consistent read, whose snapshot starts after
    the lock is granted) the row the other committed."""
    t = Tables(prefix)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT id FROM {t.bulk} WHERE uuid = %s FOR UPDATE", (bulk_uuid,))
            if await cur.fetchone() is None:
                await conn.rollback()
                return None
            where = "" if key is None else " AND operation_key = %s"
            await cur.execute(f"SELECT {_OP_COLUMNS} FROM {t.operation} WHERE bulk_uuid = %s{where} ORDER BY id",
                              (bulk_uuid,) if key is None else (bulk_uuid, key))
            found = matching_operation([_operation(r) for r in await cur.fetchall()], key, data)
            if found is not None:
                await conn.commit()
                return found
            await cur.execute(
                f"INSERT INTO {t.operation} (bulk_uuid, operation_key, topic_name, serialized_data, status) "
                "VALUES (%s, %s, %s, %s, %s)",
                (bulk_uuid, key, topic, data, int(Status.OPEN)),
            )
            op_id = cur.lastrowid
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return Operation(int(op_id), bulk_uuid, key, topic, int(Status.OPEN), data)


async def mark_started(conn, prefix: str, ids: Sequence[int]) -> None:
    """`started_at` = now for operations a worker takes; committed."""
    t = Tables(prefix)
    async with conn.cursor() as cur:
        for chunk in _chunks(sorted(set(ids))):
            await cur.execute(f"UPDATE {t.operation} SET started_at = CURRENT_TIMESTAMP "
                              f"WHERE id IN ({_ph(len(chunk))})", chunk)
    await conn.commit()


async def complete(cur, prefix: str, results: Sequence[tuple[int, str]]) -> None:
    """Status 1 with each operation's result JSON, on the caller's cursor (inside its transaction)."""
    t = Tables(prefix)
    for chunk in _chunks(list(results)):
        case = " ".join(["WHEN %s THEN %s"] * len(chunk))
        await cur.execute(
            f"UPDATE {t.operation} SET status = %s, error_code = NULL, result_message = NULL, "
            f"result_serialized_data = CASE id {case} END WHERE id IN ({_ph(len(chunk))})",
            [int(Status.COMPLETE), *(x for op_id, text in chunk for x in (op_id, text)),
             *(op_id for op_id, _ in chunk)],
        )


@dataclass(frozen=True)
class Failure:
    """An operation's new status after a failure. A retry keeps status 4 with no code (`None`): Magento's
    admin "Retry" button deletes every operation that carries an `error_code`, whatever its status."""

    id: int
    status: Status
    code: ErrorCode | None
    message: str
    result: str | None = None


async def record_failures(conn, prefix: str, failures: Sequence[Failure]) -> None:
    """Write failure statuses, codes and messages; committed."""
    t = Tables(prefix)
    async with conn.cursor() as cur:
        for f in failures:
            await cur.execute(
                f"UPDATE {t.operation} SET status = %s, error_code = %s, result_message = %s, "
                "result_serialized_data = COALESCE(%s, result_serialized_data) WHERE id = %s",
                (int(f.status), None if f.code is None else int(f.code), fit_message(f.message),
                 f.result, f.id),
            )
    await conn.commit()


# ---------------------------------------------------------------- status and requeue


#: Bulk states, by Magento's rule: the MAX of its operations' statuses; no operation → not started.
NOT_STARTED, IN_PROGRESS, FINISHED_SUCCESSFULLY, FINISHED_WITH_FAILURE = (
    "not_started", "in_progress", "finished_successfully", "finished_with_failure")
STATUS_NAMES = {s: s.name.lower() for s in Status}


def bulk_state(statuses: Iterable[int]) -> str:
    top = max(statuses, default=None)
    if top is None or top == 0:
        return NOT_STARTED
    if top == Status.COMPLETE:
        return FINISHED_SUCCESSFULLY
    if top == Status.OPEN:
        return IN_PROGRESS
    return FINISHED_WITH_FAILURE


@dataclass
class BulkSummary:
    bulk_uuid: str
    description: str | None
    operation_count: int
    counts: dict[str, int]
    state: str
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(n for name, n in self.counts.items() if name != STATUS_NAMES[Status.OPEN])

    def as_json(self) -> dict[str, Any]:
        return {"bulk_uuid": self.bulk_uuid, "state": self.state, "operation_count": self.operation_count,
                "counts": self.counts, "failed": self.failed}


def _sku_of(data: str | None) -> str | None:
    try:
        obj = json.loads(data or "")
    except ValueError:
        return None
    sku = obj.get("sku") if isinstance(obj, dict) else None
    return sku if isinstance(sku, str) else None


async def summary(conn, prefix: str, bulk_uuid: str) -> BulkSummary | None:
    """Counts per status, the state and the failed operations of a bulk; None when it does not exist."""
    t = Tables(prefix)
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT description, operation_count FROM {t.bulk} WHERE uuid = %s", (bulk_uuid,))
        bulk = await cur.fetchone()
        if bulk is None:
            await conn.rollback()
            return None
        await cur.execute(f"SELECT status, COUNT(*) FROM {t.operation} WHERE bulk_uuid = %s GROUP BY status",
                          (bulk_uuid,))
        by_status = {int(s or 0): int(n) for s, n in await cur.fetchall()}
        await cur.execute(
            f"SELECT operation_key, status, error_code, result_message, serialized_data FROM {t.operation} "
            f"WHERE bulk_uuid = %s AND status IN ({_ph(3)}) ORDER BY operation_key, id",
            (bulk_uuid, int(Status.RETRIABLY_FAILED), int(Status.NOT_RETRIABLY_FAILED), int(Status.REJECTED)),
        )
        failed = [{"operation_key": key, "sku": _sku_of(_text(data)), "status": int(status),
                   "error_code": code, "result_message": message}
                  for key, status, code, message, data in await cur.fetchall()]
    await conn.rollback()
    counts = {STATUS_NAMES[s]: by_status.get(int(s), 0) for s in Status}
    return BulkSummary(bulk_uuid, _text(bulk[0]), int(bulk[1]), counts, bulk_state(by_status), failed)


async def lock_parked(cur, prefix: str, bulk_uuid: str) -> list[Operation]:
    """The bulk's status-2 operations, locked and set back to 4 (`started_at` NULL) on the caller's
    transaction: a worker that gets a requeued message before the commit waits for it."""
    t = Tables(prefix)
    await cur.execute(f"SELECT {_OP_COLUMNS} FROM {t.operation} WHERE bulk_uuid = %s AND status = %s "
                      "ORDER BY id FOR UPDATE", (bulk_uuid, int(Status.RETRIABLY_FAILED)))
    ops = [_operation(r) for r in await cur.fetchall()]
    for chunk in _chunks([op.id for op in ops]):
        await cur.execute(
            f"UPDATE {t.operation} SET status = %s, started_at = NULL, error_code = NULL, result_message = NULL "
            f"WHERE id IN ({_ph(len(chunk))})",
            [int(Status.OPEN), *chunk],
        )
    return ops


async def unlock_unpublished(cur, prefix: str, ids: Sequence[int], reason: str) -> None:
    """Requeued operations whose message the broker did not take go back to status 2."""
    t = Tables(prefix)
    for chunk in _chunks(list(ids)):
        await cur.execute(
            f"UPDATE {t.operation} SET status = %s, error_code = %s, result_message = %s "
            f"WHERE id IN ({_ph(len(chunk))})",
            [int(Status.RETRIABLY_FAILED), int(ErrorCode.NOT_PUBLISHED), fit_message(reason), *chunk],
        )

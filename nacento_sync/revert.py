"""Undo, the shell: read journals, lock the products as `sync` does, read their rows, plan (`undo.plan_undo`),
write the reverting rows and their own journal, commit. Units of SKUs go in transactions of a bounded size.

The journals must be of this database, table prefix and link field, and not of a dry run
(`journal.JournalRefused`, exit 2). Objects in the bucket and purged resized copies are not restored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from nacento_sync import __version__, dberrors, journal, magento
from nacento_sync.config import Config
from nacento_sync.journal import Journal, JournalRefused, key_columns
from nacento_sync.undo import Conflict, UndoPlan, plan_undo, units

#: SKUs per undo transaction (whole units: a unit is never split).
UNIT_BATCH = 200


@dataclass
class UndoResult:
    """What `undo` did (or, with `dry_run`, would do)."""

    journals: list[str]
    dry_run: bool
    reverted: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: {"deleted": 0, "restored": 0, "reinserted": 0})
    changed_product_ids: list[int] = field(default_factory=list)
    #: The undo's own journal (so it can be undone in turn); None for a dry run.
    journal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"journals": self.journals, "dry_run": self.dry_run, "journal": self.journal,
                "reverted": self.reverted, "rows": self.rows,
                "conflicts": [{"sku": c.sku, "product_id": c.product_id, "journal": c.journal, "reason": c.reason}
                              for c in self.conflicts],
                "changed_product_ids": self.changed_product_ids}


def read_journals(paths: Sequence[Path]) -> list[Journal]:
    """Read the journals; refuse a dry run's."""
    journals = [journal.read(p) for p in paths]
    for j in journals:
        if j.header.get("dry_run"):
            raise JournalRefused(f"{j.path} is a dry run's journal: nothing was written, nothing to undo")
    return journals


def check_store(journals: Sequence[Journal], schema: magento.Schema) -> None:
    """Refuse a journal of another database, table prefix or link field."""
    here = {"database": schema.database, "table_prefix": schema.prefix, "link_field": schema.link}
    for j in journals:
        for name, value in here.items():
            if j.header.get(name) != value:
                raise JournalRefused(f"{j.path} was written for {name} {j.header.get(name)!r}, not {value!r}")


def _restricted(journals: Sequence[Journal], skus: set[str]) -> list[Journal]:
    return [Journal(j.path, j.header, [ln for ln in j.rows if str(ln.get("sku")) in skus], j.torn) for j in journals]


def _ids(journals: Sequence[Journal], link: str) -> tuple[list[int], list[int]]:
    """The link ids and gallery ids the journals' rows name."""
    links, value_ids = set(), set()
    for j in journals:
        for line in j.rows:
            for row in (line.get("before"), line.get("after"), line.get("key")):
                if not isinstance(row, dict):
                    continue
                if isinstance(row.get(link), int):
                    links.add(row[link])
                if isinstance(row.get("value_id"), int) and line.get("table") != journal.VARCHAR:
                    value_ids.add(row["value_id"])
    return sorted(links), sorted(value_ids)


async def _apply(cur, schema: magento.Schema, plan: UndoPlan) -> None:
    """One statement per reverted row, every column written explicitly (ids included)."""
    for i, change in enumerate(plan.changes):
        table = schema.t(change.table)
        cols = key_columns(change.table, schema.link)
        where = " AND ".join(f"`{c}` = %s" for c in cols)
        key = [change.key[c] for c in cols]
        utc = set(plan.utc.get(i, ()))
        if change.action == "delete":
            await cur.execute(f"DELETE FROM {table} WHERE {where}", key)
            continue
        assert change.after is not None
        values = {c: journal.decode(v, c in utc) for c, v in change.after.items()}
        if change.action == "update":
            sets = [c for c in values if c not in cols]
            await cur.execute(f"UPDATE {table} SET {', '.join(f'`{c}` = %s' for c in sets)} WHERE {where}",
                              [*(values[c] for c in sets), *key])
        else:
            names = list(values)
            await cur.execute(f"INSERT INTO {table} ({', '.join(f'`{c}`' for c in names)}) "
                              f"VALUES ({', '.join(['%s'] * len(names))})", [values[c] for c in names])


async def undo_async(config: Config, paths: Sequence[Path], *, dry_run: bool = False) -> UndoResult:
    journals = read_journals(paths)
    conn = await magento.connect(config.database)
    try:
        schema = await magento.detect_schema(conn, config.database.table_prefix)
        check_store(journals, schema)
        async with conn.cursor() as cur:
            await magento.use_utc(cur)
        result = UndoResult([str(p) for p in paths], dry_run)
        out: journal.JournalFile | None = None
        if not dry_run:
            request = "undo-" + "+".join(str(j.header.get("request_id") or "run") for j in journals)[:80]
            out = journal.create_default(journal.default_dir(config.sync.journal_dir), request)
            result.journal = str(out.path)
            try:
                out.header(request_id=request, mode="undo", dry_run=False, database=schema.database,
                           table_prefix=schema.prefix, link_field=schema.link, version=__version__, command="undo",
                           undoes=[str(p) for p in paths])
            except OSError as e:
                out.close()
                raise journal.JournalFileError(out.path, f"cannot write: {e.strerror or e}") from None
        try:
            batch: list[list[str]] = []
            for unit in [*units(journals), []]:
                if unit:
                    batch.append(unit)
                if batch and (sum(map(len, batch)) >= UNIT_BATCH or not unit):
                    await _undo_units(conn, schema, journals, batch, result, out)
                    batch = []
        finally:
            if out is not None:
                out.close()
        result.changed_product_ids = sorted(set(result.changed_product_ids))
        return result
    finally:
        conn.close()


async def _undo_units(conn, schema: magento.Schema, journals: list[Journal], batch: list[list[str]],
                      result: UndoResult, out: journal.JournalFile | None) -> None:
    """Units in one transaction; after a database error (a product deleted since…), unit by unit, and a
    unit that fails alone is a conflict with the server's message. A lost connection is exit 3."""
    tries = [batch] if len(batch) == 1 else [batch, *([unit] for unit in batch)]
    for attempt, units_here in enumerate(tries):
        skus = {sku for unit in units_here for sku in unit}
        try:
            await _undo_batch(conn, schema, _restricted(journals, skus), result, out)
        except pymysql.err.MySQLError as e:
            if dberrors.connection_lost(e):
                raise magento.DatabaseAccessError(f"lost the database connection: {e}") from None
            if attempt == 0 and len(tries) > 1:
                continue
            product_ids = {ln.get("sku"): ln.get("product_id") for j in journals for ln in j.rows}
            result.conflicts += [Conflict(sku, product_ids.get(sku), "", f"database error: {e}")
                                 for sku in sorted(skus)]
            continue
        if attempt == 0:
            return


async def _undo_batch(conn, schema: magento.Schema, journals: list[Journal], result: UndoResult,
                      out: journal.JournalFile | None) -> None:
    """One transaction: lock the products, read their rows, plan, write, journal, commit."""
    links, value_ids = _ids(journals, schema.link)
    tx = None
    try:
        async with conn.cursor() as cur:
            if not result.dry_run:
                await magento.lock_products(conn, schema, links)
            rows, _ = await magento.snapshot(cur, schema, links, value_ids, lock=not result.dry_run, linked=True)
            world = {table: {k: journal.encode_row(r) or {} for k, r in found.items()} for table, found in rows.items()}
            plan = plan_undo(journals, world, schema.link)
            if not result.dry_run and plan.changes:
                assert out is not None
                tx = out.transaction(plan.changes)
                await _apply(cur, schema, plan)
        if result.dry_run:
            await conn.rollback()
        else:
            await conn.commit()
            if out is not None and tx is not None:
                out.committed(tx)
    except BaseException:
        with contextlib.suppress(pymysql.err.MySQLError):
            await conn.rollback()
        if out is not None and tx is not None:
            out.rolled_back(tx)
        raise
    result.reverted += plan.reverted
    result.conflicts += plan.conflicts
    for change in plan.changes:
        name = {"delete": "deleted", "update": "restored", "insert": "reinserted"}[change.action]
        result.rows[name] += 1
    result.changed_product_ids += plan.product_ids


def undo(config: Config, paths: Sequence[Path], *, dry_run: bool = False) -> UndoResult:
    """Revert the runs whose journals these are (newest first); see `undo_async`."""
    return asyncio.run(undo_async(config, paths, dry_run=dry_run))

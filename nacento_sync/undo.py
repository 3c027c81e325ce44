"""Undo, the pure part: which rows to delete, restore or re-insert to revert journals, and which SKUs conflict.

`plan_undo(journals, world, link)` inverts the journals' row lines, newest journal first and, within one,
last line first, against `world` (the rows as they are now: every row of the journals' products and
gallery ids, encoded as the journal encodes them). It changes a copy of the world as it goes, so several
journals touching one row revert in turn. A unit of SKUs that share a row (a gallery row linked to two
of them) reverts together or not at all. A unit is a conflict when one of its rows changed since the run
(now neither the journal's "after" nor already its "before"), when a re-insert would collide with a row
that exists now (the same key, the same role key, or the same product and image path), or when deleting a
row the run inserted would take rows added since with it (a foreign-key cascade).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacento_sync.journal import (
    CHILDREN_FIRST,
    GALLERY,
    META,
    PARENTS_FIRST,
    TO_ENTITY,
    VALUE,
    VARCHAR,
    VIDEO,
    Change,
    Journal,
    Row,
    key_columns,
)
from nacento_sync.paths import stored_to_canonical

#: World: table → key tuple → encoded row (every column).
World = dict[str, dict[tuple, Row]]


@dataclass(frozen=True)
class Conflict:
    """A SKU that is not reverted, and why."""

    sku: str
    product_id: int | None
    journal: str
    reason: str


@dataclass
class UndoPlan:
    """The changes that revert the journals (in the order to apply them), per unit of SKUs, and the conflicts."""

    changes: list[Change] = field(default_factory=list)
    #: Per changed row: the columns that hold UTC timestamps (how to write them back).
    utc: dict[int, list[str]] = field(default_factory=dict)
    reverted: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def product_ids(self) -> list[int]:
        return sorted({c.product_id for c in self.changes if c.product_id is not None})


class _Conflict(Exception):
    def __init__(self, reason: str, journal: str = "") -> None:
        super().__init__(reason)
        self.reason, self.journal = reason, journal


def units(journals: Sequence[Journal]) -> list[list[str]]:
    """The SKUs that revert together: SKUs (of any journal) whose lines touch a common row or gallery id."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first: dict[Any, str] = {}
    order: list[str] = []
    for j in journals:
        for line in j.rows:
            sku = str(line.get("sku"))
            if sku not in parent:
                order.append(sku)
            find(sku)
            for token in _tokens(line):
                if token in first:
                    parent[find(sku)] = find(first[token])
                else:
                    first[token] = sku
    groups: dict[str, list[str]] = {}
    for sku in order:
        groups.setdefault(find(sku), []).append(sku)
    return list(groups.values())


def _tokens(line: Mapping[str, Any]) -> Iterable[Any]:
    yield ("row", line.get("table"), tuple(sorted((line.get("key") or {}).items())))
    for row in (line.get("before"), line.get("after")):
        if isinstance(row, dict):
            if row.get("value_id") is not None and line.get("table") != VARCHAR:
                yield ("gallery", row["value_id"])
            if line.get("table") in (VALUE, META) and row.get("record_id") is not None:
                yield ("record", row["record_id"])
            if line.get("table") == VARCHAR:  # its unique key: (link, attribute, store)
                yield ("role", tuple(sorted((k, v) for k, v in row.items() if k not in ("value_id", "value"))))


def plan_undo(journals: Sequence[Journal], world: World, link: str) -> UndoPlan:
    """Revert `journals` (any order: newest first is applied) against `world`; `world` is not changed."""
    ordered = sorted(journals, key=lambda j: (j.created_at, str(j.path)), reverse=True)
    state: World = {table: dict(rows) for table, rows in world.items()}
    plan = UndoPlan()
    for unit in units(ordered):
        skus = set(unit)
        trial: World = {table: dict(rows) for table, rows in state.items()}
        changes: list[tuple[Change, list[str]]] = []
        try:
            for j in ordered:
                for line in _revert_order([ln for ln in j.rows if str(ln.get("sku")) in skus]):
                    try:
                        change = _revert(line, trial, link)
                    except _Conflict as e:
                        raise _Conflict(e.reason, str(j.path)) from None
                    if change is not None:
                        changes.append((change, list(line.get("utc") or [])))
        except _Conflict as e:
            product_ids = _product_ids(ordered, skus)
            plan.conflicts += [Conflict(sku, product_ids.get(sku), e.journal, e.reason) for sku in unit]
            continue
        state = trial
        for change, utc in changes:
            plan.utc[len(plan.changes)] = utc
            plan.changes.append(change)
        plan.reverted += unit
    return plan


def _revert_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Last transaction first; within one, the run's inserts removed children first, its updates restored,
    then its deletions re-inserted parents first (a unit's lines of several SKUs interleave so)."""
    phase = {"insert": 0, "update": 1, "delete": 2}

    def rank(item: tuple[int, dict[str, Any]]) -> tuple:
        index, line = item
        table = str(line.get("table"))
        order = CHILDREN_FIRST if line.get("action") != "delete" else PARENTS_FIRST
        return (-_tx(line), phase.get(str(line.get("action")), 1),
                order.index(table) if table in order else len(order), -index)

    return [line for _, line in sorted(enumerate(lines), key=rank)]


def _tx(line: Mapping[str, Any]) -> int:
    tx = line.get("tx")
    return tx if isinstance(tx, int) else 0


def _product_ids(journals: Sequence[Journal], skus: set[str]) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for j in journals:
        for line in j.rows:
            if str(line.get("sku")) in skus and line.get("product_id") is not None:
                found.setdefault(str(line["sku"]), line["product_id"])
    return found


def _describe(table: str, key: Mapping[str, Any]) -> str:
    return f"{table} {', '.join(f'{k}={v}' for k, v in key.items())}"


def _revert(line: Mapping[str, Any], world: World, link: str) -> Change | None:
    """The change that reverts one line, applied to `world`; None when the row is already as before."""
    table, action = str(line["table"]), str(line["action"])
    cols = key_columns(table, link)
    key_map = dict(line["key"])
    try:
        key = tuple(key_map[c] for c in cols)
    except KeyError:
        raise _Conflict(f"{table}: a line's key lacks {cols}") from None
    rows = world.setdefault(table, {})
    now = rows.get(key)
    before, after = line.get("before"), line.get("after")
    sku, product_id = str(line.get("sku")), line.get("product_id")
    where = _describe(table, key_map)
    if now == before:  # already as before (or a transaction that never committed)
        return None
    if now != after:
        raise _Conflict(f"{where} changed since the run")
    if action == "insert":
        _no_dependents(table, key, world, where)
        del rows[key]
        return Change(table, "delete", key_map, now, None, sku, product_id)
    if action == "update":
        assert before is not None
        rows[key] = before
        return Change(table, "update", key_map, now, before, sku, product_id)
    assert before is not None and now is None
    _no_collision(table, before, world, link, where)
    rows[key] = before
    return Change(table, "insert", key_map, None, before, sku, product_id)


def _no_dependents(table: str, key: tuple, world: World, where: str) -> None:
    """Deleting a row the run inserted must not take rows added since with it (a cascade)."""
    if table == GALLERY:
        value_id = key[0]
        for child in (TO_ENTITY, VALUE, VIDEO):
            if any(row.get("value_id") == value_id for row in world.get(child, {}).values()):
                raise _Conflict(f"{where}: rows added since reference it ({child})")
    elif table == VALUE and key in world.get(META, {}):
        raise _Conflict(f"{where}: a row added since references it ({META})")


def _no_collision(table: str, row: Row, world: World, link: str, where: str) -> None:
    """A re-insert must not collide with a row that exists now: the same role key, or the same product and
    image path (one product never shows one image twice)."""
    if table == VARCHAR:
        unique = (row.get(link), row.get("attribute_id"), row.get("store_id"))
        if any((r.get(link), r.get("attribute_id"), r.get("store_id")) == unique
               for r in world.get(VARCHAR, {}).values()):
            raise _Conflict(f"{where}: its attribute, store and product have another row now")
    elif table == TO_ENTITY:
        gallery = world.get(GALLERY, {})
        mine = gallery.get((row["value_id"],))
        if mine is None or mine.get("value") is None:
            return
        path = stored_to_canonical(str(mine["value"]))
        for other in world.get(TO_ENTITY, {}).values():
            if other.get(link) != row.get(link) or other.get("value_id") == row["value_id"]:
                continue
            entry = gallery.get((other["value_id"],))
            if entry is not None and entry.get("value") is not None \
                    and stored_to_canonical(str(entry["value"])) == path:
                raise _Conflict(f"{where}: the product has image {path} again (value_id {other['value_id']}), "
                                "added since")

"""What Magento shows: a test-side reimplementation of Magento's own storefront reads (the referee).

- `gallery(store, link_id, store_id)`: Magento 2.4's ``Gallery::createBatchBaseSelect`` +
  ``loadProductGalleryByAttributeId`` + ``ReadHandler``: the gallery rows JOIN ``_value_to_entity`` on the link
  field, LEFT JOIN the store-X ``_value`` row and LEFT JOIN the store-0 ``_value`` row (for store 0 both joins
  are store 0), WHERE ``main.attribute_id = <media_gallery>`` AND ``main.disabled = 0``; ``label``,
  ``position`` and ``disabled`` are each ``IFNULL(store X, store 0)``. ``ReadHandler`` sorts by position,
  NULLs last, then keys the entries by ``value_id``. Equal positions come out in no defined order: we sort
  them by ``value_id``, and `order` gives the order as groups of tied entries so tests never depend on it.
  No value row is needed for an entry to appear. ``removeDuplicates`` (which *deletes* entries with the same
  path) is not reproduced: `duplicate_files` reports what it would act on.
- `visible(...)`: what the product page shows: the entries whose resolved ``disabled`` is 0.
- `role(store, link_id, code, store_id)`: EAV store fallback of a varchar attribute (roles, role labels): the
  store-X ``catalog_product_entity_varchar`` row when there is one, even if its value is NULL, else store 0's.

Several value rows for one (entry, product, store) make Magento's join return one row per combination and
keep the last one per ``value_id``: the result is undefined. We take the lowest ``record_id`` of each and
flag the entry `ambiguous`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: What Magento stores in a role attribute to mean "no image".
NO_SELECTION = "no_selection"


@dataclass(frozen=True)
class Shown:
    """One gallery entry as Magento reads it for a store."""

    value_id: int
    file: str
    media_type: str
    label: str | None
    position: int | None
    disabled: bool
    #: The store-0 row's values (Magento's ``label_default`` etc.; None when there is no store-0 row).
    label_default: str | None
    position_default: int | None
    disabled_default: bool | None
    #: Whether the store-X join found a row (X = the store read; for store 0 that is the store-0 row).
    has_store_row: bool
    #: Several value rows for this entry and store (or store 0): Magento's result would be undefined.
    ambiguous: bool = False


def _rows(store: Any, link_id: int, store_id: int) -> list[dict[str, Any]]:
    lk = store.link
    return store.query(
        "SELECT main.value_id, main.value AS file, main.media_type, "
        "  v.record_id AS x_record, v.label AS x_label, v.position AS x_position, v.disabled AS x_disabled, "
        "  d.record_id AS d_record, d.label AS d_label, d.position AS d_position, d.disabled AS d_disabled "
        "FROM {catalog_product_entity_media_gallery} main "
        "JOIN {catalog_product_entity_media_gallery_value_to_entity} entity ON main.value_id = entity.value_id "
        "LEFT JOIN {catalog_product_entity_media_gallery_value} v ON main.value_id = v.value_id "
        f"  AND v.store_id = %s AND v.{lk} = entity.{lk} "
        "LEFT JOIN {catalog_product_entity_media_gallery_value} d ON main.value_id = d.value_id "
        f"  AND d.store_id = 0 AND d.{lk} = entity.{lk} "
        f"WHERE main.attribute_id = %s AND main.disabled = 0 AND entity.{lk} = %s "
        "ORDER BY main.value_id, v.record_id, d.record_id",
        (store_id, store.attribute_id("media_gallery"), link_id),
    )


def _ifnull(a: Any, b: Any) -> Any:
    return b if a is None else a


def _sort_key(e: Shown) -> tuple:
    return (e.position is None, e.position if e.position is not None else 0, e.value_id)


def gallery(store: Any, link_id: int, store_id: int) -> list[Shown]:
    """Every entry Magento's gallery read returns for product (row) `link_id` on `store_id`, with the
    resolved values, in Magento's order (position, NULLs last; ties by value_id, which Magento does not
    promise: compare orders with `order`)."""
    first: dict[int, dict[str, Any]] = {}
    count: dict[int, int] = {}
    for r in _rows(store, link_id, store_id):
        first.setdefault(r["value_id"], r)
        count[r["value_id"]] = count.get(r["value_id"], 0) + 1
    out = []
    for vid, r in first.items():
        disabled = _ifnull(r["x_disabled"], r["d_disabled"])
        out.append(Shown(
            value_id=vid, file=r["file"], media_type=r["media_type"],
            label=_ifnull(r["x_label"], r["d_label"]),
            position=_ifnull(r["x_position"], r["d_position"]),
            disabled=bool(disabled) if disabled is not None else False,
            label_default=r["d_label"], position_default=r["d_position"],
            disabled_default=bool(r["d_disabled"]) if r["d_disabled"] is not None else None,
            has_store_row=r["x_record"] is not None,
            ambiguous=count[vid] > 1,
        ))
    return sorted(out, key=_sort_key)


def visible(store: Any, link_id: int, store_id: int) -> list[Shown]:
    """The entries the storefront shows on `store_id`: resolved ``disabled`` = 0."""
    return [e for e in gallery(store, link_id, store_id) if not e.disabled]


def order(entries: list[Shown]) -> list[frozenset[str]]:
    """The order the entries are shown in, as groups of files with the same position (whose relative order
    Magento does not define); NULL positions form the last group."""
    groups: list[frozenset[str]] = []
    last: object = object()
    for e in sorted(entries, key=_sort_key):
        if groups and e.position == last:
            groups[-1] = groups[-1] | {e.file}
        else:
            groups.append(frozenset({e.file}))
        last = e.position
    return groups


def by_file(entries: list[Shown]) -> dict[str, Shown]:
    """`{file: entry}` (files are unique per product once Magento's removeDuplicates has run)."""
    return {e.file: e for e in entries}


def duplicate_files(store: Any, link_id: int) -> list[str]:
    """Files held by several entries of the product: Magento's ``removeDuplicates`` would delete all but one."""
    files = [e.file for e in gallery(store, link_id, 0)]
    return sorted({f for f in files if files.count(f) > 1})


_MISSING = object()


def _varchar_rows(store: Any, link_id: int, code: str) -> dict[int, str | None]:
    rows = store.query(
        "SELECT v.store_id, v.value FROM {catalog_product_entity_varchar} v "
        "JOIN {eav_attribute} a ON a.attribute_id = v.attribute_id "
        "JOIN {eav_entity_type} et ON et.entity_type_id = a.entity_type_id "
        f"WHERE et.entity_type_code = 'catalog_product' AND a.attribute_code = %s AND v.{store.link} = %s",
        (code, link_id),
    )
    return {int(r["store_id"]): r["value"] for r in rows}


def role(store: Any, link_id: int, code: str, store_id: int) -> str | None:
    """The value of varchar attribute `code` (a role or a role label) Magento uses on `store_id`: the store's
    own row if there is one (even with a NULL value), else store 0's, else None."""
    rows = _varchar_rows(store, link_id, code)
    if store_id in rows:
        return rows[store_id]
    return rows.get(0)


def has_store_value(store: Any, link_id: int, code: str, store_id: int) -> bool:
    """Whether `store_id` has its own row for attribute `code` (else it inherits store 0)."""
    return store_id in _varchar_rows(store, link_id, code)


def holds_image(value: str | None) -> bool:
    """Whether a resolved role value points at an image (not NULL, not ``no_selection``)."""
    return value not in (None, NO_SELECTION)

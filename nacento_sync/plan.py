"""The functional core: decide the minimal writes that make one product's gallery match its feed item.

No I/O, no clock, no randomness. The database adapter reads a `ProductState`, the storage adapter
gives the ETags, `plan_product` returns the operations and the per-image counters, and the adapter
applies the operations of a whole batch in a few statements. Planning again after applying a plan
yields no operation (see tests/test_plan.py).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from nacento_sync.models import MANAGED_ROLES, NO_SELECTION, ROLE_LABELS, Item
from nacento_sync.paths import stored_to_canonical
from nacento_sync.storeviews import StoreRow

Mode = Literal["merge", "replace"]

# ---------------------------------------------------------------- current state (read by the adapter)


@dataclass(frozen=True)
class ValueRow:
    """A store-0 `_media_gallery_value` row of the entry for this product, with its meta ETag."""

    record_id: int
    label: str | None
    position: int | None
    disabled: bool
    has_meta: bool = False
    etag: str | None = None


@dataclass(frozen=True)
class Entry:
    """A `media_type='image'` gallery entry linked to the product."""

    value_id: int
    value: str
    #: Linked to another product or staging row too: never update or delete the gallery row itself.
    shared: bool = False
    rows: tuple[ValueRow, ...] = ()
    #: Its store-view (store_id > 0) value rows for this product.
    store_rows: tuple[StoreRow, ...] = ()


@dataclass(frozen=True)
class ProductState:
    """What the database holds for one product (its active row on Adobe Commerce)."""

    link_id: int
    entries: tuple[Entry, ...] = ()
    #: `catalog_product_entity_varchar` values of the role and role-label attributes: (code, store_id) → value.
    attributes: Mapping[tuple[str, int], str | None] = field(default_factory=dict)
    #: Canonical paths of the product's non-image entries (videos): an image with the same path would be
    #: a duplicate value, which Magento removes on product load.
    other_media: frozenset[str] = frozenset()
    #: The non-image entries' (videos') positions: value_id → store_id → position (rows that exist).
    other_positions: Mapping[int, Mapping[int, int | None]] = field(default_factory=dict)


# ---------------------------------------------------------------- operations (applied by the adapter)


@dataclass(frozen=True)
class InsertEntry:
    """New gallery row + link row + store-0 value row + meta row (+ its store-view value rows)."""

    link_id: int
    value: str
    label: str | None
    position: int
    disabled: bool
    etag: str
    #: Store-view value rows: (store_id, label, position, disabled).
    store_rows: tuple[tuple[int, str | None, int | None, bool], ...] = ()


@dataclass(frozen=True)
class RemoveEntry:
    """Delete this product's value rows and link row, then the gallery row unless it is shared."""

    link_id: int
    value_id: int
    delete_gallery_row: bool


@dataclass(frozen=True)
class SetEntryValue:
    """Respell a gallery row that only this product uses."""

    value_id: int
    value: str


@dataclass(frozen=True)
class InsertValueRow:
    """A missing value row for an existing entry: store 0 (with its meta row) or a store view (no meta)."""

    link_id: int
    value_id: int
    label: str | None
    position: int | None
    disabled: bool
    etag: str | None
    store_id: int = 0


@dataclass(frozen=True)
class UpdateValueRow:
    record_id: int
    label: str | None
    position: int | None
    disabled: bool


@dataclass(frozen=True)
class DeleteValueRows:
    """Value rows to delete: surplus rows of one entry and store (import bugs), or store-view rows that
    only repeat store 0."""

    record_ids: tuple[int, ...]


@dataclass(frozen=True)
class UpsertMeta:
    record_id: int
    etag: str


@dataclass(frozen=True)
class SetAttribute:
    """Upsert a `catalog_product_entity_varchar` value (roles and role labels)."""

    link_id: int
    attribute: str
    store_id: int
    value: str | None


@dataclass(frozen=True)
class DeleteAttribute:
    link_id: int
    attribute: str
    store_id: int


Op = (
    InsertEntry
    | RemoveEntry
    | SetEntryValue
    | InsertValueRow
    | UpdateValueRow
    | DeleteValueRows
    | UpsertMeta
    | SetAttribute
    | DeleteAttribute
)

# ---------------------------------------------------------------- result


@dataclass
class ImageStats:
    """Per-SKU counters, as in the original module's `image_stats` plus `deleted` and `missing`."""

    inserted: int = 0
    updated_value: int = 0
    updated_meta: int = 0
    skipped_no_change: int = 0
    deleted: int = 0
    missing: int = 0
    #: 1 when replace mode held back deletions or role resets because a listed object is missing.
    deletions_held: int = 0
    warnings: list[str] = field(default_factory=list)

    COUNTERS = ("inserted", "updated_value", "updated_meta", "skipped_no_change", "deleted", "missing",
                "deletions_held")
    #: Counters that are per-SKU flags: merging two results of one SKU keeps the larger, not the sum.
    FLAGS = ("deletions_held",)

    def add(self, other: ImageStats) -> None:
        for name in self.COUNTERS:
            merge = max if name in self.FLAGS else operator.add
            setattr(self, name, merge(getattr(self, name), getattr(other, name)))
        self.warnings.extend(other.warnings)


@dataclass
class ProductPlan:
    ops: list[Op]
    stats: ImageStats

    @property
    def writes(self) -> bool:
        return bool(self.ops)


@dataclass
class _Touched:
    """What happens to one listed, existing image (for the counters)."""

    value: bool = False
    meta: bool = False


def _keeper_order(path: str):
    """Which of an image's duplicate entries stays: the exact spelling, then the one with our meta row.

    Not whether it is shared: that changes as other products of the run drop their links, and the
    result must not depend on how SKUs fall into batches (a shared keeper is never changed anyway).
    """

    def key(e: Entry):
        return (e.value != path, not any(r.has_meta for r in e.rows), e.value_id)

    return key


def _row_order(r: ValueRow):
    return (not r.has_meta, r.record_id)


def plan_product(
    item: Item,
    state: ProductState,
    etags: Mapping[str, str | None],
    mode: Mode = "merge",
    allow_empty: bool = False,
    object_key=lambda path: path,
) -> ProductPlan:
    """Plan one product. `etags[path]` is the object's ETag, or None when the object is missing.

    `object_key` only serves the `missing_object` warning text.
    """
    link = state.link_id
    stats = ImageStats()
    warn = stats.warnings.append
    ops: list[Op] = []

    groups: dict[str, list[Entry]] = {}
    for e in sorted(state.entries, key=lambda e: e.value_id):
        groups.setdefault(stored_to_canonical(e.value), []).append(e)

    labels_after: dict[str, str | None] = {}  # listed images present after this plan → their label
    touched: dict[str, _Touched] = {}  # listed images that already existed
    inserted: set[str] = set()
    found_any = False

    for img in item.images:
        etag = etags.get(img.path)
        if etag is None:
            stats.missing += 1
            warn(f"missing_object: {object_key(img.path)} not found in the bucket; image not synced")
            continue
        found_any = True
        if img.path in state.other_media:
            touched[img.path] = _Touched()
            warn(f"media_conflict: {img.path} is the path of a video or other non-image entry of this "
                 "product; the image was not added")
            continue
        group = groups.get(img.path, [])
        if not group:
            label = img.label if img.label_given else None
            ops.append(InsertEntry(link, img.path, label, img.position, bool(img.disabled), etag))
            inserted.add(img.path)
            labels_after[img.path] = label
            continue

        t = touched[img.path] = _Touched()
        group = sorted(group, key=_keeper_order(img.path))
        keeper, duplicates = group[0], group[1:]
        for dup in duplicates:
            ops.append(RemoveEntry(link, dup.value_id, delete_gallery_row=not dup.shared))
            stats.deleted += 1
            t.value = True
            warn(f"duplicate_entry: {img.path}: removed duplicate gallery entry {dup.value_id} ({dup.value!r})")

        rows = sorted(keeper.rows, key=_row_order)
        row = rows[0] if rows else None
        if len(rows) > 1:
            ops.append(DeleteValueRows(tuple(r.record_id for r in rows[1:])))
            t.value = True
            warn(f"duplicate_value_rows: {img.path}: removed {len(rows) - 1} surplus store-0 value row(s)")

        label = img.label if img.label_given else (row.label if row else None)
        disabled = img.disabled if img.disabled is not None else (row.disabled if row else False)
        labels_after[img.path] = label
        meta_stale = row is None or not row.has_meta or row.etag != etag

        if keeper.value != img.path:
            t.value = True
            warn(f"legacy_path: {keeper.value!r} respelled {img.path!r}")
            if keeper.shared:
                warn(f"shared_entry: {img.path}: gallery entry {keeper.value_id} is shared with another "
                     "product; this product gets its own entry")
                ops.append(RemoveEntry(link, keeper.value_id, delete_gallery_row=False))
                ops.append(InsertEntry(link, img.path, label, img.position, disabled, etag))
                t.meta = meta_stale
                continue
            ops.append(SetEntryValue(keeper.value_id, img.path))

        if row is None:
            ops.append(InsertValueRow(link, keeper.value_id, label, img.position, disabled, etag))
            t.value = t.meta = True
            continue
        if (label, img.position, disabled) != (row.label, row.position, row.disabled):
            ops.append(UpdateValueRow(row.record_id, label, img.position, disabled))
            t.value = True
        if meta_stale:
            ops.append(UpsertMeta(row.record_id, etag))
            t.meta = True

    # Replace mode: entries absent from the feed go, behind safety nets. A listed object that is
    # missing is most often a typo'd path; the entry it meant would be deleted and its roles reset.
    listed = {img.path for img in item.images}
    unlisted = {canon: group for canon, group in groups.items() if canon not in listed}
    missing = [img.path for img in item.images if etags.get(img.path) is None]
    may_delete = mode == "replace"
    if may_delete and not item.images and not allow_empty:
        may_delete = False
        warn("empty_image_list: the item lists no image; nothing deleted (use --allow-empty to clear)")
    elif may_delete and missing:
        may_delete = False
        if not found_any:
            warn("all_missing: none of the listed objects exists; nothing deleted")
        held, _ = _plan_attributes(item, state, labels_after, set(unlisted), True)
        if unlisted or any(_is_reset(op) for op in held):
            stats.deletions_held = 1
            warn(f"deletions_held: {_names(missing)} not in the bucket; replace mode deleted no entry and "
                 "reset no role of this product (fix the paths or upload the objects, then run again)")
    removed: set[str] = set()
    if may_delete:
        for canon, group in unlisted.items():
            for e in group:
                ops.append(RemoveEntry(link, e.value_id, delete_gallery_row=not e.shared))
                stats.deleted += 1
            removed.add(canon)

    attribute_ops, role_holders = _plan_attributes(item, state, labels_after, removed, may_delete)
    ops.extend(attribute_ops)
    for path in role_holders & touched.keys():
        touched[path].value = True

    for t in touched.values():
        stats.updated_value += t.value
        stats.updated_meta += t.meta
        stats.skipped_no_change += not (t.value or t.meta)
    stats.inserted = len(inserted)
    return ProductPlan(ops, stats)


def _plan_attributes(
    item: Item,
    state: ProductState,
    labels_after: dict[str, str | None],
    removed: set[str],
    manage_roles: bool,
) -> tuple[list[Op], set[str]]:
    """Role and role-label writes: claimed roles, respelled paths, roles of removed images.

    Also returns the paths whose role or role label is written (they count as `updated_value`).
    A role claimed by a missing image (not in `labels_after`) is neither written nor reset: it stays
    with the image holding it, and the feed gives a duplicated role to the later claim only.
    """
    current = state.attributes
    wanted: dict[tuple[str, int], str | None] = {}
    delete: set[tuple[str, int]] = set()
    link = state.link_id

    for (code, store), value in current.items():
        if code not in MANAGED_ROLES or value in (None, NO_SELECTION):
            continue
        canon = stored_to_canonical(value)
        if canon in removed:
            if store == 0:
                wanted[(code, 0)] = NO_SELECTION
            else:
                delete.add((code, store))
        elif canon in labels_after and value != canon:
            wanted[(code, store)] = canon

    claimed: dict[str, str] = {}
    for img in item.images:
        for role in img.roles:
            claimed[role] = img.path
    for role, path in claimed.items():
        if path in labels_after:
            wanted[(role, 0)] = path
    if manage_roles and claimed:
        for role in MANAGED_ROLES:
            if role not in claimed and current.get((role, 0)) not in (None, NO_SELECTION):
                wanted[(role, 0)] = NO_SELECTION

    # Magento keeps each role's label attribute equal to the label of the image holding the role.
    for role, label_code in ROLE_LABELS.items():
        holder = wanted.get((role, 0), current.get((role, 0)))
        if holder in labels_after:
            wanted[(label_code, 0)] = labels_after[holder]
        elif holder == NO_SELECTION and (role, 0) in wanted:
            wanted[(label_code, 0)] = None

    ops: list[Op] = []
    holders: set[str] = set()
    for (code, store), value in wanted.items():
        if current.get((code, store)) == value:  # an absent row reads as NULL
            continue
        ops.append(SetAttribute(link, code, store, value))
        holder = value if code in MANAGED_ROLES else wanted.get((_role_of(code), 0), current.get((_role_of(code), 0)))
        if holder is not None:
            holders.add(holder)
    for code, store in sorted(delete):
        ops.append(DeleteAttribute(link, code, store))
    return ops, holders


def _role_of(label_code: str) -> str:
    return next((r for r, lc in ROLE_LABELS.items() if lc == label_code), "")


def _is_reset(op: Op) -> bool:
    """A role write that takes an image away: a store-view role row deleted, or a role set to none."""
    return isinstance(op, DeleteAttribute) or (
        isinstance(op, SetAttribute) and op.attribute in MANAGED_ROLES and op.value == NO_SELECTION)


def _names(paths: list[str], limit: int = 10) -> str:
    """Paths for a warning, at most `limit` of them (an item may list hundreds)."""
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")

"""The functional core: decide the minimal writes that make one product's gallery match its feed item.

No I/O, no clock, no randomness. The database adapter reads a `ProductState`, the storage adapter
gives the ETags, `plan_product` returns the operations and the per-image counters, and the adapter
applies the operations of a whole batch in a few statements. Planning again after applying a plan
yields no operation (see tests/test_plan.py).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from nacento_sync.codes import Code
from nacento_sync.models import MANAGED_ROLES, NO_SELECTION, ROLE_LABELS, Item, Missing, StoreValues
from nacento_sync.paths import stored_to_canonical
from nacento_sync.storeviews import (
    INHERIT,
    Shown,
    StoreRow,
    keeps_own_order,
    plan_image_rows,
    plan_view_roles,
    role_labels,
)

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
    #: The non-image entries (videos): value_id → path, and value_id → store_id → position (rows that exist).
    other_values: Mapping[int, str] = field(default_factory=dict)
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
    etags: Mapping[str, str | Missing | None],
    mode: Mode = "merge",
    allow_empty: bool = False,
    object_key=lambda path: path,
    views: Mapping[str, int] | None = None,
) -> ProductPlan:
    """Plan one product. `etags[path]` is the object's ETag, or None (or `Missing`) when it is missing.

    `views` maps the store views' codes to their ids (every store view of the shop: the store-view rules
    apply to all of them); without it only store 0 is planned. `object_key` only serves the
    `missing_object` warning text.
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
    present: dict[str, _Present] = {}  # listed images present after this plan: store-0 values, store rows

    for img in item.images:
        etag = etags.get(img.path)
        if etag is None or isinstance(etag, Missing):
            stats.missing += 1
            why = f" ({etag.reason})" if isinstance(etag, Missing) else ""
            warn(Code.MISSING_OBJECT.notice(f"{object_key(img.path)} not found in storage{why}; image not synced"))
            continue
        found_any = True
        if img.path in state.other_media:
            touched[img.path] = _Touched()
            warn(Code.MEDIA_CONFLICT.notice(f"{img.path} is the path of a video or other non-image entry of this "
                 "product; the image was not added"))
            continue
        group = groups.get(img.path, [])
        if not group:
            label = img.label if img.label_given else None
            present[img.path] = _Present(Shown(label, img.position, bool(img.disabled)), insert_at=len(ops))
            ops.append(InsertEntry(link, img.path, label, img.position, bool(img.disabled), etag))
            inserted.add(img.path)
            labels_after[img.path] = label
            continue

        t = touched[img.path] = _Touched()
        if len(group) > 1:
            group = sorted(group, key=_keeper_order(img.path))
        keeper, duplicates = group[0], group[1:]
        for dup in duplicates:
            ops.append(RemoveEntry(link, dup.value_id, delete_gallery_row=not dup.shared))
            stats.deleted += 1
            t.value = True
            warn(Code.DUPLICATE_ENTRY.notice(
                f"{img.path}: removed duplicate gallery entry {dup.value_id} ({dup.value!r})"))

        rows = sorted(keeper.rows, key=_row_order) if len(keeper.rows) > 1 else keeper.rows
        row = rows[0] if rows else None
        if len(rows) > 1:
            ops.append(DeleteValueRows(tuple(r.record_id for r in rows[1:])))
            t.value = True
            warn(Code.DUPLICATE_VALUE_ROWS.notice(f"{img.path}: removed {len(rows) - 1} surplus store-0 value row(s)"))

        label = img.label if img.label_given else (row.label if row else None)
        disabled = img.disabled if img.disabled is not None else (row.disabled if row else False)
        labels_after[img.path] = label
        meta_stale = row is None or not row.has_meta or row.etag != etag
        before = Shown(row.label, row.position, row.disabled) if row else None
        present[img.path] = _Present(Shown(label, img.position, disabled), before, keeper.value_id,
                                     keeper.store_rows)

        if keeper.value != img.path:
            t.value = True
            warn(Code.LEGACY_PATH.notice(f"{keeper.value!r} respelled {img.path!r}"))
            if keeper.shared:
                warn(Code.SHARED_ENTRY.notice(f"{img.path}: gallery entry {keeper.value_id} is shared with another "
                     "product; this product gets its own entry"))
                ops.append(RemoveEntry(link, keeper.value_id, delete_gallery_row=False))
                present[img.path] = _Present(Shown(label, img.position, disabled), insert_at=len(ops))
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
    missing = [img.path for img in item.images if not isinstance(etags.get(img.path), str)]
    may_delete = mode == "replace"
    if may_delete and not item.images and not allow_empty:
        may_delete = False
        warn(Code.EMPTY_IMAGE_LIST.notice("the item lists no image; nothing deleted (use --allow-empty to clear)"))
    elif may_delete and missing:
        may_delete = False
        if not found_any:
            warn(Code.ALL_MISSING.notice("none of the listed objects exists; nothing deleted"))
        held, _ = _plan_attributes(item, state, labels_after, set(unlisted), True)  # store 0 suffices
        if unlisted or any(_is_reset(op) for op in held):
            stats.deletions_held = 1
            warn(Code.DELETIONS_HELD.notice(f"{_names(missing)} not found in storage; replace mode deleted no entry "
                 "and reset no role of this product (fix the paths or upload the objects, then run again)"))
    removed: set[str] = set()
    if may_delete:
        for canon, group in unlisted.items():
            for e in group:
                ops.append(RemoveEntry(link, e.value_id, delete_gallery_row=not e.shared))
                stats.deleted += 1
            removed.add(canon)

    scope = _Views.resolve(item, views or {}, warn)
    if scope.ids:
        for path in _plan_view_rows(state, present, scope, "replace" if may_delete else "merge", ops, warn):
            if path in touched:
                touched[path].value = True
    if mode == "merge":
        _warn_position_ties(item, state, present, groups, warn)

    attribute_ops, role_holders = _plan_attributes(item, state, labels_after, removed, may_delete, present,
                                                   scope)
    ops.extend(attribute_ops)
    for path in role_holders & touched.keys():
        touched[path].value = True

    for t in touched.values():
        stats.updated_value += t.value
        stats.updated_meta += t.meta
        stats.skipped_no_change += not (t.value or t.meta)
    stats.inserted = len(inserted)
    return ProductPlan(ops, stats)


@dataclass
class _Present:
    """A listed image present after the plan: its store-0 values after (and before), its entry's store rows."""

    after: Shown
    before: Shown | None = None
    value_id: int | None = None
    store_rows: tuple[StoreRow, ...] = ()
    #: Index of its InsertEntry op when the plan inserts it (its store rows ride on that op).
    insert_at: int | None = None
    #: The label each store view shows after the plan (view id → label).
    view_labels: dict[int, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _Views:
    """The shop's store views and what the item says about them, by store id."""

    ids: tuple[int, ...] = ()
    values: Mapping[str, Mapping[int, StoreValues]] = field(default_factory=dict)  # path → view → values
    roles: Mapping[int, Mapping[str, str | None]] = field(default_factory=dict)  # view → role → path

    @classmethod
    def resolve(cls, item: Item, views: Mapping[str, int] | None, warn) -> _Views:
        """Store codes → ids (as Magento's unique `code`, case-insensitively); unknown codes warn once."""
        if views is None:
            return cls()
        by_code = {code.lower(): store_id for code, store_id in views.items()}
        unknown: list[str] = []

        def store_id(code: str) -> int | None:
            found = by_code.get(code.lower())
            if found is None and code not in unknown:
                unknown.append(code)
            return found

        values: dict[str, dict[int, StoreValues]] = {}
        for img in item.images:
            for code, given in img.stores:
                if (view := store_id(code)) is not None:
                    values.setdefault(img.path, {})[view] = given
        roles: dict[int, dict[str, str | None]] = {}
        for code, pairs in item.store_roles:
            if (view := store_id(code)) is not None:
                roles.setdefault(view, {}).update(pairs)
        for code in unknown:
            warn(Code.UNKNOWN_STORE.notice(f"store code {code!r} does not exist; its values were ignored"))
        return cls(tuple(sorted(set(views.values()))), values, roles)


def _first_row(entry: Entry) -> ValueRow | None:
    rows = entry.rows
    if len(rows) < 2:  # nearly always: no sort for one row
        return rows[0] if rows else None
    return min(rows, key=_row_order)


def _views_untouched(state: ProductState, scope: _Views) -> bool:
    """No store-view row anywhere in the product's gallery and no store-view value in the item (most
    products of most shops): every view inherits store 0 and nothing is written, which the rules of
    `plan_image_rows` give too, image by image and view by view, at several times the cost."""
    return (not scope.values and not any(e.store_rows for e in state.entries)
            and all(store == 0 for positions in state.other_positions.values() for store in positions))


def _plan_view_rows(state: ProductState, present: dict[str, _Present], scope: _Views, mode: str, ops: list[Op],
                    warn) -> set[str]:
    """Store-view value rows of the listed, present images (storeviews.py has the rules); returns the
    paths of existing images whose store-view rows are written."""
    if _views_untouched(state, scope):
        for p in present.values():
            p.view_labels = dict.fromkeys(scope.ids, p.after.label)
        return set()
    store0: dict[int, int | None] = {}
    view_positions: dict[int, dict[int, int]] = {view: {} for view in scope.ids}
    for e in state.entries:
        row = _first_row(e)
        store0[e.value_id] = row.position if row else None
        for r in sorted(e.store_rows, key=lambda r: r.record_id) if e.store_rows else ():
            if r.store_id in view_positions and r.position is not None:
                view_positions[r.store_id].setdefault(e.value_id, r.position)
    for value_id in state.other_values:
        positions = state.other_positions.get(value_id, {})
        store0[value_id] = positions.get(0)
        for view, pos in positions.items():
            if view in view_positions and pos is not None:
                view_positions[view][value_id] = pos
    kept = {view: mode == "merge" and keeps_own_order(store0, view_positions[view]) for view in scope.ids}
    next_position = {}
    for view in scope.ids:
        merged = [view_positions[view].get(vid, pos) for vid, pos in store0.items()]
        next_position[view] = max((p for p in merged if p is not None), default=0) + 1

    written: set[str] = set()
    for path, p in present.items():
        changes = plan_image_rows(scope.values.get(path, {}), p.after, p.before, p.store_rows, scope.ids,
                                  mode, kept, next_position)
        for change in changes:
            shown = change.want.label if change.want and change.want.label is not None else p.after.label
            p.view_labels[change.store_id] = shown
        for view in scope.ids:
            p.view_labels.setdefault(view, p.after.label)
        if p.insert_at is not None:
            new = ops[p.insert_at]
            assert isinstance(new, InsertEntry)
            ops[p.insert_at] = replace(new, store_rows=tuple(
                (c.store_id, c.want.label, c.want.position, c.want.disabled) for c in changes if c.want))
            continue
        assert p.value_id is not None
        deletes: list[int] = []
        for change in changes:
            if change.surplus:
                deletes += change.surplus
                warn(Code.DUPLICATE_VALUE_ROWS.notice(
                    f"{path}: removed {len(change.surplus)} surplus value row(s) of store "
                     f"{change.store_id}"))
            want, cur = change.want, change.current
            if want is None:
                if cur is not None:
                    deletes.append(cur.record_id)
            elif cur is None:
                ops.append(InsertValueRow(state.link_id, p.value_id, want.label, want.position, want.disabled, None,
                                          store_id=change.store_id))
            elif (cur.label, cur.position, cur.disabled) != (want.label, want.position, want.disabled):
                ops.append(UpdateValueRow(cur.record_id, want.label, want.position, want.disabled))
            if change.writes:
                written.add(path)
        if deletes:
            ops.append(DeleteValueRows(tuple(deletes)))
    return written


def _warn_position_ties(item: Item, state: ProductState, present: dict[str, _Present],
                        groups: Mapping[str, list[Entry]], warn) -> None:
    """Merge mode: an entry the item does not list (a video too) at a listed image's store-0 position."""
    listed = {img.path for img in item.images}
    at: dict[int, str] = {}
    for path, p in present.items():
        if p.after.position is not None:
            at.setdefault(p.after.position, path)
    others: list[tuple[str, int | None]] = []
    for canon, group in groups.items():
        if canon not in listed:
            others += [(canon, row.position if (row := _first_row(e)) else None) for e in group]
    others += [(f"{value} (video)", state.other_positions.get(vid, {}).get(0))
               for vid, value in state.other_values.items()]
    for other, pos in others:
        if pos is not None and pos in at:
            warn(Code.POSITION_TIE.notice(
                f"{at[pos]} and {other} share position {pos}; Magento shows them in no defined order"))


def _plan_attributes(
    item: Item,
    state: ProductState,
    labels_after: dict[str, str | None],
    removed: set[str],
    manage_roles: bool,
    present: Mapping[str, _Present] | None = None,
    scope: _Views | None = None,
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

    views = scope.ids if scope else ()
    for (code, store), value in current.items():
        if code not in MANAGED_ROLES or value in (None, NO_SELECTION) or (store != 0 and views):
            continue  # with the store views known, their roles follow the rules below
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

    if views and scope is not None:
        _plan_view_attributes(item, state, labels_after, removed, manage_roles, present or {}, scope, wanted,
                              delete)

    ops: list[Op] = []
    holders: set[str] = set()
    for (code, store), value in wanted.items():
        if current.get((code, store)) == value and (store == 0 or (code, store) in current):
            continue  # at store 0 an absent row reads as NULL; on a view a row holding NULL is not inheriting
        ops.append(SetAttribute(link, code, store, value))
        holder = value if code in MANAGED_ROLES else _holder(_role_of(code), store, wanted, current, delete)
        if holder not in (None, NO_SELECTION):
            holders.add(stored_to_canonical(holder))
    for code, store in sorted(delete):
        ops.append(DeleteAttribute(link, code, store))
    return ops, holders


def _plan_view_attributes(
    item: Item,
    state: ProductState,
    labels_after: Mapping[str, str | None],
    removed: set[str],
    manage_roles: bool,
    present: Mapping[str, _Present],
    scope: _Views,
    wanted: dict[tuple[str, int], str | None],
    delete: set[tuple[str, int]],
) -> None:
    """Roles and role labels on every store view (rules in storeviews.py), into `wanted` / `delete`."""
    current = state.attributes
    after0 = {role: wanted.get((role, 0), current.get((role, 0))) for role in MANAGED_ROLES}
    mode = "replace" if manage_roles else "merge"
    roles = plan_view_roles(item, current, set(labels_after), removed, scope.ids, scope.roles, mode)
    label_at: dict[tuple[str, int], str | None] = {}
    for e in state.entries:  # what each view shows for the images the item does not change
        path, row = stored_to_canonical(e.value), _first_row(e)
        for r in sorted(e.store_rows, key=lambda r: -r.record_id) if e.store_rows else ():
            label_at[(path, r.store_id)] = r.label
        for view in scope.ids:
            if label_at.get((path, view)) is None:
                label_at[(path, view)] = row.label if row else None
    for path, p in present.items():
        for view, label in p.view_labels.items():
            label_at[(path, view)] = label
    canon0 = {role: v if v in (None, NO_SELECTION) else stored_to_canonical(v) for role, v in after0.items()}
    holders = {key: v if v is INHERIT or v in (None, NO_SELECTION) else stored_to_canonical(str(v))
               for key, v in roles.items()}
    labels0 = {code: wanted.get((code, 0), current.get((code, 0))) for code in ROLE_LABELS.values()}
    labels = role_labels(holders, canon0, label_at, labels0, scope.ids)
    for key, value in [*roles.items(), *labels.items()]:
        if value is INHERIT:
            if key in current:
                delete.add(key)
        else:
            wanted[key] = value


def _holder(role: str, store: int, wanted, current, delete) -> str | None:
    """The image holding `role` on `store` after the plan (a view without its own value: store 0's)."""
    key = (role, store)
    if store != 0 and key not in delete and (key in wanted or key in current):
        return wanted.get(key, current.get(key))
    return wanted.get((role, 0), current.get((role, 0)))


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

"""The store-view rules: what every store view X (store_id > 0) must show after a sync. Pure.

Magento reads each of label, position and disabled as `IFNULL(store-X row, store-0 row)`, and a store-X
row's `disabled` (NOT NULL) always wins. Admin saves at store-view scope write *copies* of the store-0
values for every image, so a store-X value is kept only when it is *deliberate* (it differs from store 0
as stored before the run); copies are removed and the view follows the feed. The feed can also say per
view what to show (`stores`, `store_roles`). Rows are kept to the fewest: no store-X row where inheriting
from store 0 shows the right thing.

`plan_store_views` is called by `plan.plan_product` once the store-0 plan is known, and returns the
store-X operations; README ("Store views") states the same rules for integrators.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from nacento_sync.models import MANAGED_ROLES, NO_SELECTION, ROLE_LABELS, Item, StoreValues
from nacento_sync.paths import stored_to_canonical


@dataclass(frozen=True)
class Shown:
    """The three presentation values of one image on one scope."""

    label: str | None
    position: int | None
    disabled: bool


@dataclass(frozen=True)
class StoreRow:
    """A store-X `_media_gallery_value` row (store_id > 0) of an entry for this product."""

    store_id: int
    record_id: int
    label: str | None
    position: int | None
    disabled: bool


@dataclass(frozen=True)
class RowChange:
    """What a listed image's store-X row must become: None = no row (inherit store 0)."""

    store_id: int
    want: Shown | None
    #: The row kept today (lowest record_id), and surplus rows of the same store to delete.
    current: StoreRow | None = None
    surplus: tuple[int, ...] = ()

    @property
    def writes(self) -> bool:
        now = None if self.current is None else Shown(self.current.label, self.current.position,
                                                       self.current.disabled)
        return bool(self.surplus) or now != self.want


@dataclass
class ViewPlan:
    """Per listed image path: its store-X row changes; role attribute writes; warnings."""

    rows: dict[str, list[RowChange]] = field(default_factory=dict)
    #: (attribute code, store_id) → value to set (None = a row holding NULL); deletes: rows to remove.
    set_attributes: dict[tuple[str, int], str | None] = field(default_factory=dict)
    delete_attributes: set[tuple[str, int]] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


class _Inherit(Enum):
    """No row on the view: it inherits store 0."""

    INHERIT = "inherit"


_INHERIT = _Inherit.INHERIT
#: A role or label value on a view: a value (None = a row holding NULL), or no row at all.
ViewValue = str | None | _Inherit


def order_of(positions: Mapping[int, int | None]) -> list[frozenset[int]]:
    """Entries grouped by equal position, in gallery order (NULL positions last, as Magento sorts)."""
    groups: dict[int | None, set[int]] = {}
    for value_id, pos in positions.items():
        groups.setdefault(pos, set()).add(value_id)
    return [frozenset(groups[p]) for p in sorted(groups, key=lambda p: (p is None, p or 0))]


def keeps_own_order(store0: Mapping[int, int | None], view: Mapping[int, int | None]) -> bool:
    """Are the view's positions deliberate? They are when the order they give the product's entries
    (store-0 positions where the view has none) differs from the store-0 order, ties included."""
    merged = {vid: view.get(vid, pos) for vid, pos in store0.items()}
    return order_of(merged) != order_of(store0)


def _pick(given: StoreValues | None, name: str, mode: str, current, deliberate: bool):
    """One column's wish: a value, or _INHERIT (show store 0)."""
    if given is not None and name in given.given:
        value = getattr(given, name)
        return _INHERIT if value is None or value == "" else value
    if mode == "replace" or not deliberate:
        return _INHERIT
    return current


def plan_image_rows(
    feed: Mapping[int, StoreValues],
    after0: Shown,
    before0: Shown | None,
    rows: Iterable[StoreRow],
    views: Iterable[int],
    mode: str,
    kept_orders: Mapping[int, bool],
    next_position: dict[int, int],
) -> list[RowChange]:
    """The store-X rows of one listed, present image on every view. `before0` is None for a new image."""
    by_store: dict[int, list[StoreRow]] = {}
    for row in sorted(rows, key=lambda r: r.record_id):
        by_store.setdefault(row.store_id, []).append(row)
    changes = []
    for view in views:
        existing = by_store.get(view, [])
        cur = existing[0] if existing else None
        given = feed.get(view)
        label = _pick(given, "label", mode, cur.label if cur else None,
                      cur is not None and before0 is not None and bool(cur.label) and cur.label != before0.label)
        disabled = _pick(given, "disabled", mode, cur.disabled if cur else None,
                         cur is not None and before0 is not None and cur.disabled != before0.disabled)
        own_order = mode == "merge" and kept_orders.get(view, False)
        position = _pick(given, "position", mode, cur.position if cur else None,
                         own_order and cur is not None and cur.position is not None)
        if position is _INHERIT and own_order and before0 is None and not (given and "position" in given.given):
            position = next_position[view]  # a new image goes after the view's highest position
            next_position[view] += 1
        shown_disabled = after0.disabled if disabled is _INHERIT else disabled
        if label is _INHERIT and position is _INHERIT and shown_disabled == after0.disabled:
            want = None
        else:
            want = Shown(None if label is _INHERIT else label, None if position is _INHERIT else position,
                         bool(shown_disabled))
        change = RowChange(view, want, cur, tuple(r.record_id for r in existing[1:]))
        if change.writes or existing:
            changes.append(change)
    return changes


def plan_view_roles(
    item: Item,
    attributes: Mapping[tuple[str, int], str | None],
    present: set[str],
    removed: set[str],
    views: Iterable[int],
    store_roles: Mapping[int, Mapping[str, str | None]],
    mode: str,
    roles: Iterable[str] = MANAGED_ROLES,
) -> dict[tuple[str, int], ViewValue]:
    """Role values at every view after the run: (role, view) → path / NO_SELECTION, or _INHERIT (no row).

    `present` is the set of listed images that exist."""
    claims_any = any(img.roles for img in item.images) or any(store_roles.values())
    out: dict[tuple[str, int], ViewValue] = {}
    for view in views:
        given = store_roles.get(view, {})
        for role in roles:
            key = (role, view)
            current: ViewValue = attributes.get(key, _INHERIT)
            if role in given:
                path = given[role]
                if path is None:
                    out[key] = NO_SELECTION
                elif path in present:
                    out[key] = path
                else:  # its object is missing: not written, as at store 0
                    out[key] = current
                continue
            if isinstance(current, _Inherit):
                out[key] = _INHERIT
                continue
            if current is not None and current != NO_SELECTION and stored_to_canonical(current) in removed:
                out[key] = _INHERIT  # Magento's rule: a deleted image's store-view role values go
                continue
            if mode == "replace" and claims_any:
                out[key] = _INHERIT
                continue
            before0 = attributes.get((role, 0))
            if _same(current, before0):
                out[key] = _INHERIT  # a copy of store 0: follow it
            elif current is not None and current != NO_SELECTION and stored_to_canonical(current) in present:
                out[key] = stored_to_canonical(current)  # kept, respelled to Magento's form
            else:
                out[key] = current
    return out


def _same(a: str | None, b: str | None) -> bool:
    if a in (None, NO_SELECTION) or b in (None, NO_SELECTION):
        return (a or NO_SELECTION) == (b or NO_SELECTION)
    return stored_to_canonical(a) == stored_to_canonical(b)


def role_labels(
    holders: Mapping[tuple[str, int], ViewValue],
    after_roles0: Mapping[str, str | None],
    label_at: Mapping[tuple[str, int], str | None],
    label_attrs0: Mapping[str, str | None],
    views: Iterable[int],
) -> dict[tuple[str, int], ViewValue]:
    """`*_label` at each view: the label shown there for the image holding the role there; no value when no
    image holds it. _INHERIT (no row) where the store-0 label attribute already gives that."""
    out: dict[tuple[str, int], ViewValue] = {}
    for view in views:
        for role, label_code in ROLE_LABELS.items():
            holder = holders.get((role, view), _INHERIT)
            if isinstance(holder, _Inherit):
                holder = after_roles0.get(role)
            shown = None if holder is None or holder == NO_SELECTION else label_at.get((holder, view))
            out[(label_code, view)] = _INHERIT if shown == label_attrs0.get(label_code) else shown
    return out


INHERIT = _INHERIT

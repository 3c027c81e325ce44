"""Unit and property tests of the pure planning core, against an in-memory model of the tables."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nacento_sync.models import NO_SELECTION, DesiredImage, Item
from nacento_sync.plan import (
    DeleteAttribute,
    DeleteValueRows,
    Entry,
    InsertEntry,
    InsertValueRow,
    ProductState,
    RemoveEntry,
    SetAttribute,
    SetEntryValue,
    UpdateValueRow,
    UpsertMeta,
    ValueRow,
    plan_product,
)

_ids = itertools.count(10_000)


@dataclass
class World:
    """An in-memory model of the gallery tables of several products, as the SQL adapter sees them."""

    gallery: dict[int, str] = field(default_factory=dict)  # value_id → value
    links: set[tuple[int, int]] = field(default_factory=set)  # (value_id, link_id)
    rows: dict[int, tuple[int, int, ValueRow]] = field(default_factory=dict)  # record_id → (value_id, link, row)
    attrs: dict[int, dict] = field(default_factory=dict)  # link_id → {(code, store): value}
    other_media: dict[int, frozenset] = field(default_factory=dict)

    def state(self, link: int) -> ProductState:
        """What `read_states` returns for one product."""
        entries = tuple(
            Entry(vid, self.gallery[vid], sum(1 for v, _ in self.links if v == vid) > 1,
                  tuple(r for rid, (v, lk, r) in sorted(self.rows.items()) if (v, lk) == (vid, link)))
            for vid in sorted(v for v, lk in self.links if lk == link)
        )
        return ProductState(link, entries, dict(self.attrs.get(link, {})), self.other_media.get(link, frozenset()))

    def orphans(self) -> list[int]:
        return sorted(vid for vid in self.gallery if not any(v == vid for v, _ in self.links))


def world_of(state: ProductState) -> World:
    """One product's state as a world; a shared entry is also linked to a product that is not synced."""
    w = World(attrs={state.link_id: dict(state.attributes)}, other_media={state.link_id: state.other_media})
    for e in state.entries:
        w.gallery[e.value_id] = e.value
        w.links.add((e.value_id, state.link_id))
        if e.shared:
            w.links.add((e.value_id, -1))
        for r in e.rows:
            w.rows[r.record_id] = (e.value_id, state.link_id, r)
    return w


def apply_world(world: World, ops) -> World:
    """Apply a batch's operations the way `magento.Writer.apply` does to the tables: deletions (the
    gallery rows whose last link went included), then updates, then inserts, then attributes."""
    w = World(dict(world.gallery), set(world.links), dict(world.rows),
              {k: dict(v) for k, v in world.attrs.items()}, dict(world.other_media))
    ops = list(ops)
    for op in ops:
        match op:
            case DeleteValueRows():
                for rid in op.record_ids:
                    w.rows.pop(rid, None)
            case RemoveEntry():
                w.rows = {rid: x for rid, x in w.rows.items() if (x[0], x[1]) != (op.value_id, op.link_id)}
                w.links.discard((op.value_id, op.link_id))
    for op in ops:
        if isinstance(op, RemoveEntry) and (op.delete_gallery_row or op.value_id in w.orphans()):
            w.gallery.pop(op.value_id, None)
            w.rows = {rid: x for rid, x in w.rows.items() if x[0] != op.value_id}
            w.links = {(v, lk) for v, lk in w.links if v != op.value_id}
    for op in ops:
        match op:
            case SetEntryValue():
                w.gallery[op.value_id] = op.value
            case UpdateValueRow() | UpsertMeta():
                vid, link, r = w.rows[op.record_id]
                w.rows[op.record_id] = (vid, link, _apply_row(r, op))
    for op in ops:
        match op:
            case InsertEntry():
                vid = next(_ids)
                w.gallery[vid] = op.value
                w.links.add((vid, op.link_id))
                rid = next(_ids)
                w.rows[rid] = (vid, op.link_id, ValueRow(rid, op.label, op.position, op.disabled, True, op.etag))
            case InsertValueRow():
                rid = next(_ids)
                w.rows[rid] = (op.value_id, op.link_id,
                               ValueRow(rid, op.label, op.position, op.disabled, True, op.etag))
    for op in ops:
        match op:
            case SetAttribute():
                w.attrs.setdefault(op.link_id, {})[(op.attribute, op.store_id)] = op.value
            case DeleteAttribute():
                w.attrs.get(op.link_id, {}).pop((op.attribute, op.store_id), None)
    return w


def apply(state: ProductState, ops) -> ProductState:
    """Apply one product's plan to the in-memory state, the way the SQL adapter does to the tables."""
    return apply_world(world_of(state), ops).state(state.link_id)


def _apply_row(r: ValueRow, op) -> ValueRow:
    if isinstance(op, UpsertMeta):
        return replace(r, has_meta=True, etag=op.etag)
    return replace(r, label=op.label, position=op.position, disabled=op.disabled)


def img(path, position=1, label="L", roles=(), disabled=None, label_given=True):
    return DesiredImage(path, position, label, label_given, disabled, tuple(roles))


def item(*images, sku="S"):
    return Item(sku, tuple(images), "t:1")


def row(record_id, label="L", position=1, disabled=False, etag="e1"):
    return ValueRow(record_id, label, position, disabled, etag is not None, etag)


# ---------------------------------------------------------------- examples


def test_insert_into_empty_gallery():
    p = plan_product(item(img("/a/b/x.jpg", roles=["image", "thumbnail"])), ProductState(7), {"/a/b/x.jpg": "e1"})
    assert p.ops[0] == InsertEntry(7, "/a/b/x.jpg", "L", 1, False, "e1")
    assert SetAttribute(7, "image", 0, "/a/b/x.jpg") in p.ops
    assert SetAttribute(7, "image_label", 0, "L") in p.ops
    assert SetAttribute(7, "thumbnail_label", 0, "L") in p.ops
    assert (p.stats.inserted, p.stats.skipped_no_change) == (1, 0)


def test_unchanged_image_is_skipped_with_no_op():
    state = ProductState(7, (Entry(1, "/a/b/x.jpg", False, (row(5),)),), {("image", 0): "/a/b/x.jpg",
                                                                             ("image_label", 0): "L"})
    p = plan_product(item(img("/a/b/x.jpg", roles=["image"])), state, {"/a/b/x.jpg": "e1"})
    assert p.ops == []
    assert p.stats.skipped_no_change == 1


def test_label_change_is_updated_value_and_etag_change_is_updated_meta():
    state = ProductState(7, (Entry(1, "/x.jpg", False, (row(5, label="old"),)),))
    p = plan_product(item(img("/x.jpg", label="new")), state, {"/x.jpg": "e2"})
    assert UpdateValueRow(5, "new", 1, False) in p.ops and UpsertMeta(5, "e2") in p.ops
    assert (p.stats.updated_value, p.stats.updated_meta, p.stats.skipped_no_change) == (1, 1, 0)


def test_missing_label_and_disabled_keep_stored_values():
    state = ProductState(7, (Entry(1, "/x.jpg", False, (row(5, label="kept", disabled=True),)),))
    p = plan_product(item(img("/x.jpg", label=None, label_given=False)), state, {"/x.jpg": "e1"})
    assert p.ops == []


def test_missing_object_not_inserted_and_roles_not_written():
    p = plan_product(item(img("/x.jpg", roles=["image"])), ProductState(7), {"/x.jpg": None},
                     object_key=lambda p: "media/catalog/product" + p)
    assert p.ops == []
    assert p.stats.missing == 1
    assert p.stats.warnings == ["missing_object: media/catalog/product/x.jpg not found in storage; image not synced"]


def test_legacy_unslashed_entry_is_respelled_with_its_roles():
    state = ProductState(7, (Entry(1, "a/b/x.jpg", False, (row(5),)),),
                         {("image", 0): "a/b/x.jpg", ("image", 1): "a/b/x.jpg", ("image_label", 0): "L"})
    p = plan_product(item(img("/a/b/x.jpg")), state, {"/a/b/x.jpg": "e1"})
    assert SetEntryValue(1, "/a/b/x.jpg") in p.ops
    assert SetAttribute(7, "image", 0, "/a/b/x.jpg") in p.ops
    assert SetAttribute(7, "image", 1, "/a/b/x.jpg") in p.ops
    assert p.stats.updated_value == 1
    assert any(w.startswith("legacy_path:") for w in p.stats.warnings)


def test_duplicate_spellings_merge_into_the_slashed_one():
    state = ProductState(7, (Entry(1, "a/x.jpg", False, (row(5),)), Entry(2, "/a/x.jpg", False, (row(6),))))
    p = plan_product(item(img("/a/x.jpg")), state, {"/a/x.jpg": "e1"})
    assert p.ops == [RemoveEntry(7, 1, delete_gallery_row=True)]
    assert (p.stats.deleted, p.stats.updated_value) == (1, 1)


def test_shared_legacy_entry_gets_a_row_of_its_own():
    state = ProductState(7, (Entry(1, "a/x.jpg", True, (row(5, label="s", position=3),)),))
    p = plan_product(item(img("/a/x.jpg", label=None, label_given=False, position=3)), state, {"/a/x.jpg": "e1"})
    assert p.ops == [RemoveEntry(7, 1, delete_gallery_row=False), InsertEntry(7, "/a/x.jpg", "s", 3, False, "e1")]


def test_surplus_store0_rows_keep_the_one_with_meta():
    e = Entry(1, "/x.jpg", False, (ValueRow(4, "L", 1, False), row(9)))
    p = plan_product(item(img("/x.jpg")), ProductState(7, (e,)), {"/x.jpg": "e1"})
    assert p.ops == [DeleteValueRows((4,))]


def test_replace_deletes_unlisted_and_resets_roles():
    state = ProductState(7, (Entry(1, "/keep.jpg", False, (row(5),)), Entry(2, "/old.jpg", True, (row(6),))),
                         {("image", 0): "/old.jpg", ("image_label", 0): "L", ("image", 1): "/old.jpg",
                          ("thumbnail", 0): "/keep.jpg", ("small_image", 0): "/keep.jpg"})
    p = plan_product(item(img("/keep.jpg", roles=["thumbnail"])), state, {"/keep.jpg": "e1"}, mode="replace")
    assert RemoveEntry(7, 2, delete_gallery_row=False) in p.ops
    assert SetAttribute(7, "image", 0, NO_SELECTION) in p.ops
    assert SetAttribute(7, "image_label", 0, None) in p.ops
    assert DeleteAttribute(7, "image", 1) in p.ops
    assert SetAttribute(7, "small_image", 0, NO_SELECTION) in p.ops  # unclaimed managed role
    assert p.stats.deleted == 1


def test_replace_without_claimed_roles_leaves_other_roles():
    state = ProductState(7, (Entry(1, "/keep.jpg", False, (row(5),)),),
                         {("small_image", 0): "/keep.jpg", ("small_image_label", 0): "L", ("thumbnail", 0): "/gone"})
    p = plan_product(item(img("/keep.jpg")), state, {"/keep.jpg": "e1"}, mode="replace")
    assert p.ops == []


def test_replace_safety_nets():
    state = ProductState(7, (Entry(1, "/a.jpg", False, (row(5),)),))
    empty = plan_product(item(), state, {}, mode="replace")
    assert empty.ops == [] and empty.stats.warnings[0].startswith("empty_image_list:")
    allowed = plan_product(item(), state, {}, mode="replace", allow_empty=True)
    assert allowed.ops == [RemoveEntry(7, 1, True)]
    missing = plan_product(item(img("/b.jpg")), state, {"/b.jpg": None}, mode="replace")
    assert not any(isinstance(o, RemoveEntry) for o in missing.ops)
    assert any(w.startswith("all_missing:") for w in missing.stats.warnings)


def test_merge_never_deletes_unlisted():
    state = ProductState(7, (Entry(1, "/a.jpg", False, (row(5),)),))
    assert plan_product(item(img("/b.jpg")), state, {"/b.jpg": "e"}).ops == [InsertEntry(7, "/b.jpg", "L", 1,
                                                                                          False, "e")]


def test_role_label_follows_label_change_of_the_holder():
    state = ProductState(7, (Entry(1, "/x.jpg", False, (row(5, label="old"),)),),
                         {("image", 0): "/x.jpg", ("image_label", 0): "old"})
    p = plan_product(item(img("/x.jpg", label="new")), state, {"/x.jpg": "e1"})
    assert SetAttribute(7, "image_label", 0, "new") in p.ops


def test_an_image_never_duplicates_a_videos_path():
    state = ProductState(7, (), {}, frozenset({"/v/i/video.jpg"}))
    p = plan_product(item(img("/v/i/video.jpg", roles=["image"])), state, {"/v/i/video.jpg": "e1"})
    assert p.ops == [] and p.stats.skipped_no_change == 1
    assert p.stats.warnings[0].startswith("media_conflict:")


def test_missing_value_row_is_recreated():
    state = ProductState(7, (Entry(1, "/x.jpg", False, ()),))
    p = plan_product(item(img("/x.jpg")), state, {"/x.jpg": "e1"})
    assert p.ops == [InsertValueRow(7, 1, "L", 1, False, "e1")]
    assert (p.stats.updated_value, p.stats.updated_meta) == (1, 1)


# ---------------------------------------------------------------- properties

NAMES = ["/a/b/one.jpg", "/a/b/two.jpg", "/c/d/three.png", "/c/d/four.webp"]
ROLES = ["image", "small_image", "thumbnail", "swatch_image"]
labels = st.one_of(st.none(), st.sampled_from(["", "Front", "Back"]).map(lambda s: s or None))


@st.composite
def states(draw):
    entries = []
    for i, name in enumerate(draw(st.lists(st.sampled_from(NAMES), max_size=6))):
        spelling = draw(st.sampled_from([name, name.lstrip("/")]))
        rows = tuple(
            ValueRow(100 * (i + 1) + j, draw(labels), draw(st.one_of(st.none(), st.integers(0, 5))),
                     draw(st.booleans()), m := draw(st.booleans()), draw(st.sampled_from(["e1", "e2"])) if m else None)
            for j in range(draw(st.integers(0, 2)))
        )
        entries.append(Entry(i + 1, spelling, draw(st.booleans()), rows))
    attrs = {}
    for role in draw(st.lists(st.sampled_from(ROLES), unique=True)):
        store = draw(st.sampled_from([0, 0, 1]))
        attrs[(role, store)] = draw(st.sampled_from(NAMES + [n.lstrip("/") for n in NAMES] + [NO_SELECTION]))
    return ProductState(7, tuple(entries), attrs)


@st.composite
def items(draw):
    paths = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    images = []
    for i, p in enumerate(paths):
        given = draw(st.booleans())
        images.append(DesiredImage(p, draw(st.integers(0, 5)) if draw(st.booleans()) else i + 1,
                                   draw(labels) if given else None, given,
                                   draw(st.one_of(st.none(), st.booleans())), ()))
    claimed = {}
    for role in draw(st.lists(st.sampled_from(ROLES), unique=True)):
        if images:
            claimed.setdefault(draw(st.integers(0, len(images) - 1)), []).append(role)
    images = [replace(im, roles=tuple(claimed.get(i, ()))) for i, im in enumerate(images)]
    return Item("S", tuple(images), "t:1")


etag_maps = st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), st.sampled_from(["e1", "e2"])))


def _canon_paths(state):
    return sorted("/" + e.value.lstrip("/") for e in state.entries)


@settings(max_examples=400, deadline=None)
@given(states(), items(), etag_maps, st.sampled_from(["merge", "replace"]), st.booleans())
def test_replanning_after_apply_is_a_no_op(state, it, etags, mode, allow_empty):
    etags = {im.path: etags.get(im.path, "e1") for im in it.images} | etags
    first = plan_product(it, state, etags, mode, allow_empty)
    after = apply(state, first.ops)
    again = plan_product(it, after, etags, mode, allow_empty)
    assert again.ops == [], again.ops
    found = [im for im in it.images if etags[im.path] is not None]
    assert again.stats.skipped_no_change == len(found)
    assert again.stats.missing == len(it.images) - len(found)


@settings(max_examples=400, deadline=None)
@given(states(), items(), etag_maps, st.sampled_from(["merge", "replace"]))
def test_counters_are_exhaustive_and_exact(state, it, etags, mode):
    etags = {im.path: etags.get(im.path, "e1") for im in it.images} | etags
    p = plan_product(it, state, etags, mode)
    s = p.stats
    existing = {"/" + e.value.lstrip("/") for e in state.entries}
    found = [im for im in it.images if etags[im.path] is not None]
    assert s.inserted == sum(im.path not in existing for im in found)
    touched = [im for im in found if im.path in existing]
    assert s.skipped_no_change <= len(touched) <= s.updated_value + s.updated_meta + s.skipped_no_change
    assert s.skipped_no_change + max(s.updated_value, s.updated_meta) <= len(touched)
    if not p.ops:
        assert s.skipped_no_change == len(touched) and s.inserted == 0 and s.deleted == 0


@settings(max_examples=400, deadline=None)
@given(states(), items(), etag_maps)
def test_replace_mode_ends_with_exactly_the_feeds_images(state, it, etags):
    etags = {im.path: "e1" for im in it.images} | {k: v for k, v in etags.items() if v}
    after = apply(state, plan_product(it, state, etags, "replace", allow_empty=True).ops)
    assert _canon_paths(after) == sorted(im.path for im in it.images)
    assert all(e.value.startswith("/") for e in after.entries)
    by_path = {e.value: e for e in after.entries}
    for im in it.images:
        (r,) = by_path[im.path].rows
        assert r.position == im.position and r.etag == etags[im.path]
        if im.label_given:
            assert r.label == im.label
        for role in im.roles:
            assert after.attributes[(role, 0)] == im.path
    claimed = {r for im in it.images for r in im.roles}
    if claimed:
        for (code, store), value in after.attributes.items():
            if code in ROLES and store == 0 and code not in claimed:
                assert value == NO_SELECTION


@settings(max_examples=300, deadline=None)
@given(states(), items(), etag_maps)
def test_merge_mode_never_loses_an_unlisted_image(state, it, etags):
    etags = {im.path: etags.get(im.path, "e1") for im in it.images}
    after = apply(state, plan_product(it, state, etags, "merge").ops)
    listed = {im.path for im in it.images}
    before_unlisted = sorted(e.value for e in state.entries if "/" + e.value.lstrip("/") not in listed)
    after_unlisted = sorted(e.value for e in after.entries if "/" + e.value.lstrip("/") not in listed)
    assert before_unlisted == after_unlisted


@settings(max_examples=300, deadline=None)
@given(states(), items(), etag_maps, st.sampled_from(["merge", "replace"]))
def test_shared_gallery_rows_are_never_changed_or_deleted(state, it, etags, mode):
    etags = {im.path: etags.get(im.path, "e1") for im in it.images} | etags
    shared = {e.value_id for e in state.entries if e.shared}
    for op in plan_product(it, state, etags, mode).ops:
        if isinstance(op, SetEntryValue):
            assert op.value_id not in shared
        if isinstance(op, RemoveEntry) and op.value_id in shared:
            assert not op.delete_gallery_row


# ---------------------------------------------------------------- issue 7: missing objects hold replace's deletions

TYPO = "/p/r/O.jpg"  # letter O: no such object
GALLERY = ("/p/r/0.jpg", "/p/r/1.jpg", "/p/r/2.jpg")


def _typo_state(**attrs):
    entries = tuple(Entry(i + 1, path, False, (row(10 + i, label=f"L{i}", position=i + 1),))
                    for i, path in enumerate(GALLERY))
    roles = {("image", 0): "/p/r/0.jpg", ("small_image", 0): "/p/r/0.jpg", ("thumbnail", 0): "/p/r/0.jpg",
             ("image_label", 0): "L0", ("small_image_label", 0): "L0", ("thumbnail_label", 0): "L0"}
    return ProductState(7, entries, roles | attrs)


def _etags(*missing):
    return {p: (None if p in missing else "e1") for p in (*GALLERY, TYPO, "/n/e/new.jpg")}


def _destructive(ops):
    return [op for op in ops if isinstance(op, RemoveEntry | DeleteAttribute)
            or (isinstance(op, SetAttribute) and op.value == NO_SELECTION)]


def test_a_typod_path_holding_the_roles_deletes_nothing_in_replace_mode():
    """The issue's case: `O` listed instead of `0`, with the roles; replace used to delete `0`."""
    it = item(img(TYPO, 1, "L0", roles=["image", "small_image", "thumbnail"]), img(GALLERY[1], 2, "L1"),
              img(GALLERY[2], 3, "L2"))
    state = _typo_state()
    p = plan_product(it, state, _etags(TYPO), mode="replace", object_key=lambda path: "media/catalog/product" + path)
    assert p.ops == plan_product(it, state, _etags(TYPO), mode="merge").ops == []
    assert (p.stats.deleted, p.stats.missing, p.stats.deletions_held) == (0, 1, 1)
    (held,) = [w for w in p.stats.warnings if w.startswith("deletions_held:")]
    assert TYPO in held
    assert apply(state, p.ops).attributes == state.attributes


@pytest.mark.parametrize("case", ["unlisted_entry", "unclaimed_role", "store_view_role", "two_missing"])
def test_any_missing_object_holds_every_deletion_and_role_reset(case):
    """Each way a replace plan destroys something is held back while a listed object is missing."""
    state = _typo_state()
    images = [img(GALLERY[0], 1, "L0", roles=["image", "small_image", "thumbnail"]), img(GALLERY[1], 2, "L1"),
              img(GALLERY[2], 3, "L2")]
    missing = [TYPO]
    if case == "unlisted_entry":  # image 2 not listed: replace would delete it
        images = images[:2]
    elif case == "unclaimed_role":  # roles claimed elsewhere; thumbnail unclaimed would be reset
        images[0] = img(GALLERY[0], 1, "L0", roles=["image", "small_image"])
    elif case == "store_view_role":  # a store-view role row on an unlisted image would be deleted
        state = replace(state, entries=state.entries + (Entry(9, "/p/r/9.jpg", False, (row(19, position=9),)),),
                        attributes={**state.attributes, ("image", 1): "/p/r/9.jpg"})
    elif case == "two_missing":
        images = images[:2]
        missing = [TYPO, "/m/i/ssing.jpg"]
    images += [img(path, 4 + i) for i, path in enumerate(missing)]
    it = item(*images)
    etags = _etags(*missing) | dict.fromkeys(missing)
    unheld = plan_product(it, state, {k: v or "e1" for k, v in etags.items()}, mode="replace")
    assert _destructive(unheld.ops)  # the plan would destroy something were the objects there
    p = plan_product(it, state, etags, mode="replace")
    merge = plan_product(it, state, etags, mode="merge")
    assert p.ops == merge.ops and not _destructive(p.ops)
    assert p.stats.deletions_held == 1 and p.stats.deleted == 0
    (held,) = [w for w in p.stats.warnings if w.startswith("deletions_held:")]
    assert all(path in held for path in missing)


def test_held_replace_still_applies_merges_repairs_and_changes():
    state = ProductState(7, (Entry(1, "p/r/0.jpg", False, (row(10, label="old"),)),  # legacy spelling
                             Entry(2, "/p/r/1.jpg", False, (row(11),)), Entry(3, "p/r/1.jpg", False, (row(12),)),
                             Entry(4, "/u/n/listed.jpg", False, (row(13),))),
                         {("thumbnail", 0): "/u/n/listed.jpg"})
    it = item(img("/p/r/0.jpg", 1, "new", roles=["image"]), img("/p/r/1.jpg", 2), img(TYPO, 3, roles=["small_image"]),
              img("/n/e/new.jpg", 4))
    p = plan_product(it, state, _etags(TYPO), mode="replace")
    assert SetEntryValue(1, "/p/r/0.jpg") in p.ops  # legacy_path repair
    assert RemoveEntry(7, 3, delete_gallery_row=True) in p.ops  # duplicate_entry repair
    assert UpdateValueRow(10, "new", 1, False) in p.ops
    assert SetAttribute(7, "image", 0, "/p/r/0.jpg") in p.ops
    assert any(isinstance(op, InsertEntry) and op.value == "/n/e/new.jpg" for op in p.ops)
    assert not any(isinstance(op, RemoveEntry) and op.value_id == 4 for op in p.ops)  # unlisted: kept
    assert ("thumbnail", 0) not in {(op.attribute, op.store_id) for op in p.ops if isinstance(op, SetAttribute)}
    assert p.stats.deletions_held == 1 and p.stats.deleted == 1


def test_no_deletions_held_when_replace_would_destroy_nothing():
    """Every entry listed, every role claimed by a present image: a missing extra image holds nothing."""
    it = item(img(GALLERY[0], 1, "L0", roles=["image", "small_image", "thumbnail", "swatch_image"]),
              img(GALLERY[1], 2, "L1"), img(GALLERY[2], 3, "L2"), img(TYPO, 4))
    p = plan_product(it, _typo_state(), _etags(TYPO), mode="replace")
    assert p.stats.deletions_held == 0 and not any(w.startswith("deletions_held:") for w in p.stats.warnings)
    assert p.ops == [SetAttribute(7, "swatch_image", 0, GALLERY[0])]
    assert plan_product(it, _typo_state(), _etags(TYPO), mode="merge").stats.deletions_held == 0


@pytest.mark.parametrize("mode", ["merge", "replace"])
@pytest.mark.parametrize("earlier_claims", [False, True])
def test_a_role_claimed_by_a_missing_image_stays_where_it_was(mode, earlier_claims):
    """Neither reset nor moved to an earlier, present claimant (the feed gives the role to the later claim;
    an item built without the feed may still carry both claims)."""
    roles = ["image", "small_image", "thumbnail"]
    it = item(img(GALLERY[1], 1, "L1", roles=roles if earlier_claims else ()), img(GALLERY[2], 2, "L2"),
              img(TYPO, 3, roles=roles))
    state = _typo_state()
    p = plan_product(it, state, _etags(TYPO), mode=mode)
    after = apply(state, p.ops)
    for role in roles:
        assert after.attributes[(role, 0)] == "/p/r/0.jpg"
        assert after.attributes[(f"{role}_label", 0)] == "L0"


# ---------------------------------------------------------------- properties of issue 7


def _canon(value):
    return "/" + value.lstrip("/") if value not in (None, NO_SELECTION) else value


@settings(max_examples=300, deadline=None)
@given(states(), items(), etag_maps, st.data())
def test_replace_with_any_missing_object_plans_exactly_merge(state, it, etags, data):
    """Never deletes an unlisted entry or resets a role; `deletions_held` says whether it would have."""
    etags = {im.path: etags.get(im.path, "e1") for im in it.images}
    if it.images and all(etags.values()):
        etags[data.draw(st.sampled_from([im.path for im in it.images]))] = None
    missing = [path for path, etag in etags.items() if etag is None]
    p = plan_product(it, state, etags, "replace")
    merge = plan_product(it, state, etags, "merge")
    assert p.ops == merge.ops
    for name in ("inserted", "updated_value", "updated_meta", "skipped_no_change", "deleted", "missing"):
        assert getattr(p.stats, name) == getattr(merge.stats, name)
    if not missing:
        return  # an empty item: the empty_image_list net holds it
    present = plan_product(it, state, {path: etag or "e1" for path, etag in etags.items()}, "replace")
    listed = {im.path for im in it.images}
    would = [op for op in _destructive(present.ops)
             if not isinstance(op, RemoveEntry) or _canon(state_value(state, op.value_id)) not in listed]
    assert p.stats.deletions_held == (1 if would else 0)
    assert any(w.startswith("deletions_held:") for w in p.stats.warnings) == bool(would)
    assert merge.stats.deletions_held == 0


def state_value(state, value_id):
    return next(e.value for e in state.entries if e.value_id == value_id)


@st.composite
def items_with_repeated_claims(draw):
    """Items whose roles may be claimed by several images, as an item built without the feed may be."""
    it = draw(items())
    images = [replace(im, roles=tuple(sorted(set(im.roles) | set(draw(st.lists(st.sampled_from(ROLES)))))))
              for im in it.images]
    return replace(it, images=tuple(images))


@settings(max_examples=300, deadline=None)
@given(states(), items_with_repeated_claims(), etag_maps, st.sampled_from(["merge", "replace"]))
def test_roles_of_missing_claimants_stay_where_they_were(state, it, etags, mode):
    etags = {im.path: etags.get(im.path, "e1") for im in it.images}
    after = apply(state, plan_product(it, state, etags, mode).ops)
    last_claim = {role: im.path for im in it.images for role in im.roles}
    for role, path in last_claim.items():
        if etags[path] is None:
            for store in (0, 1):
                assert _canon(after.attributes.get((role, store))) == _canon(state.attributes.get((role, store)))


# ---------------------------------------------------------------- properties of issue 7: batching

LINKS = (1, 2, 3)


@st.composite
def worlds(draw):
    """Up to three products whose gallery rows may be shared (as old imports did)."""
    w = World()
    record_ids = itertools.count(500)
    for vid in range(1, draw(st.integers(0, 5)) + 1):
        name = draw(st.sampled_from(NAMES))
        w.gallery[vid] = draw(st.sampled_from([name, name.lstrip("/")]))
        for link in draw(st.lists(st.sampled_from(LINKS), min_size=1, max_size=3, unique=True)):
            w.links.add((vid, link))
            for _ in range(draw(st.integers(0, 1))):
                rid = next(record_ids)
                m = draw(st.booleans())
                w.rows[rid] = (vid, link, ValueRow(rid, draw(labels), draw(st.integers(0, 5)), draw(st.booleans()),
                                                   m, "e1" if m else None))
    for link in LINKS:
        w.attrs[link] = {(role, 0): draw(st.sampled_from(NAMES + [NO_SELECTION]))
                         for role in draw(st.lists(st.sampled_from(ROLES), unique=True))}
    return w


def _view(w: World):
    """The end state, ids aside: each product's images, value rows and roles; how many gallery rows; orphans."""
    products = {}
    for link in LINKS:
        s = w.state(link)
        products[link] = (sorted((e.value, tuple(sorted((r.label or "", r.position, r.disabled, r.etag or "")
                                                        for r in e.rows))) for e in s.entries),
                          sorted(s.attributes.items()))
    return products, len(w.gallery), w.orphans()


@settings(max_examples=300, deadline=None)
@given(worlds(), st.lists(items(), min_size=3, max_size=3), etag_maps, st.sampled_from(["merge", "replace"]),
       st.sampled_from([1, 2, 3]))
def test_end_state_does_not_depend_on_the_batching(world, its, etags, mode, batch_size):
    """Plans of one batch are all made against the state before it, then applied together."""
    etags = {im.path: etags.get(im.path, "e1") for it in its for im in it.images}
    batches = [LINKS[i:i + batch_size] for i in range(0, len(LINKS), batch_size)]
    by_link = dict(zip(LINKS, its, strict=True))

    def sync(w, batch):
        return apply_world(w, [op for link in batch for op in plan_product(by_link[link], w.state(link), etags,
                                                                           mode).ops])

    one_by_one, batched = world, world
    for link in LINKS:
        one_by_one = sync(one_by_one, (link,))
    for batch in batches:
        batched = sync(batched, batch)
    assert _view(batched) == _view(one_by_one)
    assert batched.orphans() == []


@settings(max_examples=400, deadline=None)
@given(states(), items(), etag_maps, st.sampled_from(["merge", "replace"]), st.booleans())
def test_the_no_store_view_rows_shortcut_plans_what_the_rules_plan(state, it, etags, mode, allow_empty):
    """A product without store-view rows and an item without store-view values skip the per-image, per-view
    rules (`plan._views_untouched`); with the shortcut turned off the rules must give the same plan."""
    import nacento_sync.plan as plan_module

    views = {"fr": 1, "de": 2}
    etags = {im.path: etags.get(im.path, "e1") for im in it.images} | etags
    fast = plan_product(it, state, etags, mode, allow_empty, views=views)
    real = plan_module._views_untouched
    plan_module._views_untouched = lambda _state, _scope: False
    try:
        slow = plan_product(it, state, etags, mode, allow_empty, views=views)
    finally:
        plan_module._views_untouched = real
    assert real(state, plan_module._Views.resolve(it, views, lambda _w: None))  # the shortcut was taken
    assert fast.ops == slow.ops
    assert fast.stats == slow.stats

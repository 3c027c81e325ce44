"""Unit and property tests of the pure planning core, against an in-memory model of the tables."""

from __future__ import annotations

import itertools
from dataclasses import replace

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


def apply(state: ProductState, ops) -> ProductState:
    """Apply a plan to the in-memory state, the way the SQL adapter does to the tables."""
    entries = {e.value_id: e for e in state.entries}
    attrs = dict(state.attributes)
    for op in ops:
        match op:
            case InsertEntry():
                row = ValueRow(next(_ids), op.label, op.position, op.disabled, True, op.etag)
                vid = next(_ids)
                entries[vid] = Entry(vid, op.value, False, (row,))
            case RemoveEntry():
                entries.pop(op.value_id)
            case SetEntryValue():
                entries[op.value_id] = replace(entries[op.value_id], value=op.value)
            case InsertValueRow():
                e = entries[op.value_id]
                row = ValueRow(next(_ids), op.label, op.position, op.disabled, True, op.etag)
                entries[op.value_id] = replace(e, rows=e.rows + (row,))
            case UpdateValueRow() | UpsertMeta() | DeleteValueRows():
                for vid, e in entries.items():
                    entries[vid] = replace(e, rows=tuple(_apply_row(r, op) for r in e.rows if _keeps(r, op)))
            case SetAttribute():
                attrs[(op.attribute, op.store_id)] = op.value
            case DeleteAttribute():
                attrs.pop((op.attribute, op.store_id), None)
    return ProductState(state.link_id, tuple(entries.values()), attrs, state.other_media)


def _keeps(r: ValueRow, op) -> bool:
    return not (isinstance(op, DeleteValueRows) and r.record_id in op.record_ids)


def _apply_row(r: ValueRow, op) -> ValueRow:
    if getattr(op, "record_id", None) != r.record_id:
        return r
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
    assert p.stats.warnings == ["missing_object: media/catalog/product/x.jpg not found in the bucket; image not synced"]


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

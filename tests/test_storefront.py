"""What Magento shows after a sync, on store 0 and on two store views (issue 8: the store-view rules).

The referee is `storefront` (Magento's own gallery read and EAV fallback, reimplemented); its own tests come
first, on hand-made rows. Then the contract, scenario by scenario, on real syncs, and one long test that
replays a sequence of syncs and compares every product's storefront with what the contract derives from the
feed (`expect`, below).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import storefront as sf
from helpers import config_dict, enable_table_statistics, install_meta, rows_changed, run, write_ndjson

ROLE_ALIASES = {"base": "image", "image": "image", "small": "small_image", "small_image": "small_image",
                "thumbnail": "thumbnail", "swatch": "swatch_image", "swatch_image": "swatch_image"}
ROLES = ("image", "small_image", "thumbnail", "swatch_image")
ROLE_LABELS = {"image": "image_label", "small_image": "small_image_label", "thumbnail": "thumbnail_label"}


# ================================================================ the referee on hand-made rows


@pytest.fixture
def ce(magento_factory):
    s = magento_factory("ce")
    s.fr = s.add_store("fr")
    return s


def test_referee_store_row_overrides_column_by_column(ce):
    p = ce.add_product("R-1")
    a = ce.add_gallery_entry(p.link_id, "/a/a/a.jpg", label="A", position=1)
    b = ce.add_gallery_entry(p.link_id, "/b/b/b.jpg", label="B", position=2, disabled=1)
    ce.add_value_row(a, p.link_id, ce.fr, None, 5, 0)  # label NULL → store 0's; position 5
    ce.add_value_row(b, p.link_id, ce.fr, "", None, 0)  # '' is not NULL; any row overrides disabled
    fr = sf.by_file(sf.gallery(ce, p.link_id, ce.fr))
    assert (fr["/a/a/a.jpg"].label, fr["/a/a/a.jpg"].position, fr["/a/a/a.jpg"].disabled) == ("A", 5, False)
    assert (fr["/b/b/b.jpg"].label, fr["/b/b/b.jpg"].position, fr["/b/b/b.jpg"].disabled) == ("", 2, False)
    assert fr["/a/a/a.jpg"].has_store_row and fr["/a/a/a.jpg"].label_default == "A"
    assert [e.file for e in sf.gallery(ce, p.link_id, ce.fr)] == ["/b/b/b.jpg", "/a/a/a.jpg"]
    s0 = sf.by_file(sf.gallery(ce, p.link_id, 0))
    assert (s0["/b/b/b.jpg"].label, s0["/b/b/b.jpg"].disabled) == ("B", True)
    assert [e.file for e in sf.visible(ce, p.link_id, 0)] == ["/a/a/a.jpg"]
    assert [e.file for e in sf.visible(ce, p.link_id, ce.fr)] == ["/b/b/b.jpg", "/a/a/a.jpg"]
    # a store with no row of its own shows store 0
    other = ce.add_store("de")
    assert sf.gallery(ce, p.link_id, other) == [
        sf.Shown(a, "/a/a/a.jpg", "image", "A", 1, False, "A", 1, False, False),
        sf.Shown(b, "/b/b/b.jpg", "image", "B", 2, True, "B", 2, True, False)]


def test_referee_order_nulls_last_ties_grouped_and_main_disabled_skipped(ce):
    p = ce.add_product("R-2")
    ce.add_gallery_entry(p.link_id, "/n/n/null.jpg", position=None)
    ce.add_gallery_entry(p.link_id, "/t/t/t1.jpg", position=3)
    ce.add_gallery_entry(p.link_id, "/t/t/t2.jpg", position=3)
    ce.add_gallery_entry(p.link_id, "/f/f/first.jpg", position=0)
    ce.add_gallery_entry(p.link_id, "/v/v/video.jpg", position=2, media_type="external-video")
    ce.add_gallery_entry(p.link_id, "/o/o/off.jpg", position=1, main_disabled=1)  # hidden everywhere
    ce.add_gallery_entry(p.link_id, "/n/o/norow.jpg", store_rows=False)  # appears, position NULL
    shown = sf.gallery(ce, p.link_id, 0)
    assert sf.order(shown) == [frozenset({"/f/f/first.jpg"}), frozenset({"/v/v/video.jpg"}),
                               frozenset({"/t/t/t1.jpg", "/t/t/t2.jpg"}),
                               frozenset({"/n/n/null.jpg", "/n/o/norow.jpg"})]
    assert sf.by_file(shown)["/n/o/norow.jpg"].label_default is None
    assert not any(e.ambiguous for e in shown)
    assert sf.by_file(shown)["/v/v/video.jpg"].media_type == "external-video"


def test_referee_flags_duplicate_rows_and_files(ce):
    p = ce.add_product("R-3")
    a = ce.add_gallery_entry(p.link_id, "/a/a/a.jpg", label="A", position=1)
    ce.add_value_row(a, p.link_id, ce.fr, "first", 4)
    ce.add_value_row(a, p.link_id, ce.fr, "second", 9)
    ce.add_gallery_entry(p.link_id, "/a/a/a.jpg", label="again", position=2)
    (e, *_) = [x for x in sf.gallery(ce, p.link_id, ce.fr) if x.value_id == a]
    assert e.ambiguous and (e.label, e.position) == ("first", 4)  # lowest record_id taken
    assert sf.duplicate_files(ce, p.link_id) == ["/a/a/a.jpg"]


def test_referee_role_fallback(ce):
    p = ce.add_product("R-4")
    ce.set_varchar(p.link_id, "image", "/a/a/a.jpg")
    ce.set_varchar(p.link_id, "image", "/b/b/b.jpg", store_id=ce.fr)
    ce.set_varchar(p.link_id, "thumbnail", "/a/a/a.jpg")
    ce.set_varchar(p.link_id, "thumbnail", None, store_id=ce.fr)  # a NULL store row still wins
    assert sf.role(ce, p.link_id, "image", 0) == "/a/a/a.jpg"
    assert sf.role(ce, p.link_id, "image", ce.fr) == "/b/b/b.jpg"
    assert sf.role(ce, p.link_id, "thumbnail", ce.fr) is None
    assert sf.has_store_value(ce, p.link_id, "thumbnail", ce.fr)
    assert sf.role(ce, p.link_id, "small_image", ce.fr) is None
    assert not sf.has_store_value(ce, p.link_id, "image", 5)
    assert sf.role(ce, p.link_id, "image", 5) == "/a/a/a.jpg"
    assert not sf.holds_image("no_selection") and not sf.holds_image(None) and sf.holds_image("/a/a/a.jpg")


# ================================================================ the contract, on real syncs


@pytest.fixture
def store(magento):
    install_meta(magento)
    enable_table_statistics(magento)
    magento.fr = magento.add_store("fr")
    magento.de = magento.add_store("de")
    return magento


@pytest.fixture
def cfg(store, bucket, db_params):
    return config_dict(store, bucket, db_params)


@pytest.fixture
def sync(cfg, tmp_path):
    n = [0]

    def do(items: list[dict[str, Any]], mode: str = "merge"):
        n[0] += 1
        return run(cfg, write_ndjson(tmp_path / f"run{n[0]}.ndjson", items), mode=mode)

    return do


def put(bucket, *paths: str) -> None:
    for path in paths:
        bucket.put(path)


def admin_copies(store, link_id: int, store_id: int) -> None:
    """What an admin save at store-view scope writes: a store-X row for every entry (videos included), label
    '' and store 0's position and disabled flag."""
    for e in sf.gallery(store, link_id, 0):
        store.add_value_row(e.value_id, link_id, store_id, "", e.position_default, int(bool(e.disabled_default)))


def set_store_row(store, link_id: int, file: str, store_id: int, **values: Any) -> None:
    """Change columns of the (only) store-X row of `file` (it must exist: make copies first)."""
    vid = sf.by_file(sf.gallery(store, link_id, 0))[file].value_id
    sets = ", ".join(f"{k} = %s" for k in values)
    store.execute(f"UPDATE {{catalog_product_entity_media_gallery_value}} SET {sets} "
                  f"WHERE value_id = %s AND store_id = %s AND {store.link} = %s",
                  (*values.values(), vid, store_id, link_id))


def drag(store, link_id: int, store_id: int, files: list[str]) -> None:
    """An admin drag on store view X: every entry's store-X position renumbered from 0 in the order `files`."""
    for i, f in enumerate(files):
        set_store_row(store, link_id, f, store_id, position=i)


def shown(store, p, sid) -> dict[str, sf.Shown]:
    return sf.by_file(sf.gallery(store, p.link_id, sid))


def lpd(e: sf.Shown) -> tuple:
    return (e.label, e.position, e.disabled)


def warnings(out, sku: str, code: str) -> list[str]:
    return [w for w in out.result(sku).image_stats.warnings if w.startswith(code + ":")]


def no_image(value: str | None) -> bool:
    return not sf.holds_image(value)


def assert_role_labels(store, p, store_ids) -> None:
    """At every scope, each `*_label` equals the label shown there for the image holding that role there;
    no value ('' or NULL) when no image holds it."""
    for sid in store_ids:
        g = shown(store, p, sid)
        for role_code, label_code in ROLE_LABELS.items():
            holder = sf.role(store, p.link_id, role_code, sid)
            label = sf.role(store, p.link_id, label_code, sid)
            want = g[holder].label if sf.holds_image(holder) and holder in g else None
            assert (label or None) == (want or None), (sid, role_code, holder, label, want)


def base_product(store, bucket, sku="SKU-1", n=3, video=False):
    """A product with images a, b, c… at positions 1…n, labels A, B, C…, optionally a video after them."""
    p = store.add_product(sku)
    files = []
    for i in range(n):
        ch = "abcdefgh"[i]
        f = f"/{ch}/{ch}/{ch}.jpg"
        store.add_gallery_entry(p.link_id, f, label=ch.upper(), position=i + 1)
        bucket.put(f)
        files.append(f)
    if video:
        vid = store.add_gallery_entry(p.link_id, "/v/v/video.jpg", media_type="external-video", position=n + 1)
        store.add_video_row(vid, "https://youtube.com/watch?v=x")
    return p, files


def img(path: str, **kw: Any) -> dict[str, Any]:
    return {"file_path": path.lstrip("/"), **kw}


# ---------------------------------------------------------------- image values


def test_feed_store_values_given_null_and_empty(store, bucket, sync):
    p, (a, b, c) = base_product(store, bucket)
    admin_copies(store, p.link_id, store.fr)
    set_store_row(store, p.link_id, a, store.fr, label="A-fr")  # deliberate translation
    set_store_row(store, p.link_id, b, store.fr, disabled=1)  # deliberately hidden on fr
    admin_copies(store, p.link_id, store.de)
    set_store_row(store, p.link_id, c, store.de, label="C-de")
    out = sync([{"sku": "SKU-1", "images": [
        img(a, label="A", stores={"fr": {"label": "A-fr2", "position": 7, "disabled": True}}),
        img(b, label="B", stores={"fr": {"label": None, "disabled": None}}),
        img(c, label="C", stores={"de": {"label": "", "position": None}})]}])
    assert out.result("SKU-1").error is None
    fr, de = shown(store, p, store.fr), shown(store, p, store.de)
    assert lpd(fr[a]) == ("A-fr2", 7, True)
    assert lpd(fr[b]) == ("B", 2, False)  # null = no store-view value: store 0's
    assert lpd(fr[c]) == ("C", 3, False)
    assert lpd(de[c]) == ("C", 3, False)  # "" = no store-view value
    assert lpd(de[a]) == ("A", 1, False) and lpd(de[b]) == ("B", 2, False)  # copies follow store 0
    assert [lpd(shown(store, p, 0)[f]) for f in (a, b, c)] == [("A", 1, False), ("B", 2, False), ("C", 3, False)]
    assert not any(e.ambiguous for sid in (0, store.fr, store.de) for e in sf.gallery(store, p.link_id, sid))


def deliberate_and_copies(store, bucket):
    """Five images and a video; fr: admin copies plus a translation of a, c hidden, e translated and hidden;
    de: admin copies, then an order dragged (renumbered from 0). Returns (p, (a, b, c, d, e), video)."""
    p, (a, b, c, d, e) = base_product(store, bucket, n=5, video=True)
    v = "/v/v/video.jpg"
    admin_copies(store, p.link_id, store.fr)
    set_store_row(store, p.link_id, a, store.fr, label="A-fr")
    set_store_row(store, p.link_id, c, store.fr, disabled=1)
    set_store_row(store, p.link_id, e, store.fr, label="E-fr", disabled=1)
    admin_copies(store, p.link_id, store.de)
    drag(store, p.link_id, store.de, [d, c, v, b, a, e])
    return p, (a, b, c, d, e), v


def test_merge_keeps_deliberate_values_and_makes_copies_follow(store, bucket, sync):
    p, (a, b, c, d, e), v = deliberate_and_copies(store, bucket)
    out = sync([{"sku": "SKU-1", "images": [  # e is not listed: it keeps its store-view rows
        img(a, label="A2"), img(b, label="B2", disabled=True), img(c, label="C2"), img(d, label="D2")]}])
    assert out.result("SKU-1").error is None
    s0, fr, de = shown(store, p, 0), shown(store, p, store.fr), shown(store, p, store.de)
    assert [lpd(s0[f]) for f in (a, b, c, d)] == [("A2", 1, False), ("B2", 2, True), ("C2", 3, False),
                                                  ("D2", 4, False)]
    assert [lpd(fr[f]) for f in (a, b, c, d)] == [("A-fr", 1, False), ("B2", 2, True), ("C2", 3, True),
                                                  ("D2", 4, False)]
    assert lpd(fr[e]) == ("E-fr", 5, True)  # unlisted: untouched
    assert [lpd(de[f]) for f in (d, c, b, a)] == [("D2", 0, False), ("C2", 1, False), ("B2", 3, True),
                                                  ("A2", 4, False)]
    assert (de[v].position, de[e].position, de[e].label) == (2, 5, "")  # video and unlisted image untouched
    assert sf.order(list(de.values()))[:3] == [{d}, {c}, {v}]


def test_a_new_image_goes_after_the_views_highest_position_when_its_order_is_kept(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2, video=True)
    v = "/v/v/video.jpg"
    admin_copies(store, p.link_id, store.de)
    drag(store, p.link_id, store.de, [b, a])
    set_store_row(store, p.link_id, v, store.de, position=5)
    bucket.put("/n/n/new.jpg")
    sync([{"sku": "SKU-1", "images": [img(a), img(b), img("/n/n/new.jpg"), img("/m/m/missing.jpg")]}])
    de, fr = shown(store, p, store.de), shown(store, p, store.fr)
    assert (de[b].position, de[a].position, de[v].position) == (0, 1, 5)
    assert de["/n/n/new.jpg"].position is not None and de["/n/n/new.jpg"].position > 5
    assert [f for group in sf.order(list(de.values())) for f in group] == [b, a, v, "/n/n/new.jpg"]
    assert (fr[a].position, fr[b].position, fr["/n/n/new.jpg"].position) == (1, 2, 3)  # fr: store 0's order


def test_copies_of_the_store0_order_follow_a_new_store0_order(store, bucket, sync):
    p, (a, b, c) = base_product(store, bucket)
    admin_copies(store, p.link_id, store.fr)
    sync([{"sku": "SKU-1", "images": [img(c), img(a), img(b)]}])
    assert [f for g in sf.order(sf.gallery(store, p.link_id, store.fr)) for f in g] == [c, a, b]
    assert [shown(store, p, store.fr)[f].position for f in (c, a, b)] == [1, 2, 3]


def test_a_store_value_the_feed_stops_giving_stays_until_it_sends_null(store, bucket, sync):
    p, (a,) = base_product(store, bucket, n=1)
    sync([{"sku": "SKU-1", "images": [img(a, label="A", stores={"fr": {"label": "A-fr", "disabled": True}})]}])
    assert lpd(shown(store, p, store.fr)[a]) == ("A-fr", 1, True)
    sync([{"sku": "SKU-1", "images": [img(a, label="A")]}])
    assert lpd(shown(store, p, store.fr)[a]) == ("A-fr", 1, True)  # looks deliberate: kept in merge mode
    sync([{"sku": "SKU-1", "images": [img(a, label="A", stores={"fr": {"label": None, "disabled": None}})]}])
    assert lpd(shown(store, p, store.fr)[a]) == ("A", 1, False)


def test_replace_shows_store0_on_every_view_unless_the_feed_gives_stores(store, bucket, sync):
    p, (a, b, c) = base_product(store, bucket, video=True)
    v = "/v/v/video.jpg"
    admin_copies(store, p.link_id, store.fr)
    set_store_row(store, p.link_id, a, store.fr, label="A-fr")
    set_store_row(store, p.link_id, b, store.fr, disabled=1)
    admin_copies(store, p.link_id, store.de)
    drag(store, p.link_id, store.de, [v, c, b, a])
    out = sync([{"sku": "SKU-1", "images": [
        img(a, label="A"), img(b, label="B", stores={"de": {"label": "B-de", "position": 9}})]}], mode="replace")
    assert out.result("SKU-1").image_stats.deleted == 1
    for sid in (0, store.fr, store.de):
        g = shown(store, p, sid)
        assert set(g) == {a, b, v}
    fr, de = shown(store, p, store.fr), shown(store, p, store.de)
    assert (lpd(fr[a]), lpd(fr[b])) == (("A", 1, False), ("B", 2, False))
    assert (lpd(de[a]), lpd(de[b])) == (("A", 1, False), ("B-de", 9, False))
    assert de[v].position == 0  # videos are never touched


# ---------------------------------------------------------------- roles


def test_store_roles_given_null_and_missing_object(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2)
    for role in ("image", "small_image", "thumbnail"):
        store.set_varchar(p.link_id, role, a)
        store.set_varchar(p.link_id, ROLE_LABELS[role], "A")
    out = sync([{"sku": "SKU-1", "images": [img(a, label="A"), img(b, label="B"), img("/m/m/missing.jpg")],
                 "store_roles": {"fr": {"base": b.lstrip("/"), "small": None, "thumbnail": "m/m/missing.jpg"}}}])
    assert out.result("SKU-1").error is None
    fr = store.fr
    assert sf.role(store, p.link_id, "image", fr) == b
    assert no_image(sf.role(store, p.link_id, "small_image", fr))
    assert sf.role(store, p.link_id, "thumbnail", fr) == a  # not written: fr inherits store 0
    for role in ("image", "small_image", "thumbnail"):
        assert sf.role(store, p.link_id, role, 0) == a
        assert sf.role(store, p.link_id, role, store.de) == a
    assert_role_labels(store, p, (0, fr, store.de))


def test_merge_role_rules_keep_different_values_and_remove_equal_ones(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2)
    store.set_varchar(p.link_id, "image", a)
    store.set_varchar(p.link_id, "small_image", a)
    store.set_varchar(p.link_id, "thumbnail", b)
    store.set_varchar(p.link_id, "image", b, store_id=store.fr)  # differs: deliberate
    store.set_varchar(p.link_id, "small_image", a, store_id=store.fr)  # equal: an admin copy
    store.set_varchar(p.link_id, "thumbnail", b, store_id=store.fr)  # equal
    store.set_varchar(p.link_id, "image", "no_selection", store_id=store.de)  # differs: no image on de
    sync([{"sku": "SKU-1", "images": [img(a, label="A"), img(b, label="B", roles=["base"])]}])
    assert sf.role(store, p.link_id, "image", 0) == b
    assert sf.role(store, p.link_id, "image", store.fr) == b and sf.has_store_value(store, p.link_id, "image",
                                                                                   store.fr)
    assert not sf.has_store_value(store, p.link_id, "small_image", store.fr)
    assert not sf.has_store_value(store, p.link_id, "thumbnail", store.fr)
    assert sf.role(store, p.link_id, "image", store.de) == "no_selection"
    assert_role_labels(store, p, (0, store.fr, store.de))


def test_replace_role_rules(store, bucket, sync):
    p, (a, b, c) = base_product(store, bucket)
    store.set_varchar(p.link_id, "image", a)
    store.set_varchar(p.link_id, "small_image", c)
    store.set_varchar(p.link_id, "thumbnail", b)
    store.set_varchar(p.link_id, "image", b, store_id=store.fr)
    store.set_varchar(p.link_id, "thumbnail", c, store_id=store.fr)  # c is deleted: removed (Magento's rule)
    store.set_varchar(p.link_id, "image", "no_selection", store_id=store.de)
    store.set_varchar(p.link_id, "small_image", a, store_id=store.de)
    sync([{"sku": "SKU-1", "images": [img(a, label="A", roles=["base"]), img(b, label="B")],
           "store_roles": {"de": {"thumbnail": a.lstrip("/")}}}], mode="replace")
    assert sf.role(store, p.link_id, "image", 0) == a
    assert sf.role(store, p.link_id, "small_image", 0) == "no_selection"  # the deleted c's role
    assert sf.role(store, p.link_id, "thumbnail", 0) == "no_selection"  # unclaimed, reset
    for role in ROLES:
        assert not sf.has_store_value(store, p.link_id, role, store.fr), role
    assert sf.role(store, p.link_id, "thumbnail", store.de) == a
    for role in ("image", "small_image", "swatch_image"):
        assert not sf.has_store_value(store, p.link_id, role, store.de), role
    assert_role_labels(store, p, (0, store.fr, store.de))


def test_replace_without_any_claim_leaves_store_view_roles_alone(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2)
    store.set_varchar(p.link_id, "image", a)
    store.set_varchar(p.link_id, "image", b, store_id=store.fr)
    sync([{"sku": "SKU-1", "images": [img(a), img(b)]}], mode="replace")
    assert sf.role(store, p.link_id, "image", store.fr) == b and sf.role(store, p.link_id, "image", 0) == a


def test_role_labels_at_every_scope(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2)
    admin_copies(store, p.link_id, store.fr)
    set_store_row(store, p.link_id, a, store.fr, label="A-fr")
    admin_copies(store, p.link_id, store.de)
    store.set_varchar(p.link_id, "thumbnail", a)
    store.set_varchar(p.link_id, "thumbnail", b, store_id=store.fr)  # deliberate
    store.set_varchar(p.link_id, "thumbnail_label", "stale", store_id=store.fr)
    store.set_varchar(p.link_id, "image_label", "stale", store_id=store.de)
    sync([{"sku": "SKU-1", "images": [
        img(a, label="A", roles=["base"]), img(b, label="B", stores={"fr": {"label": "B-fr"}})],
        "store_roles": {"de": {"small": b.lstrip("/")}}}])
    ids = (0, store.fr, store.de)
    assert_role_labels(store, p, ids)
    assert sf.role(store, p.link_id, "image_label", 0) == "A"
    assert sf.role(store, p.link_id, "image_label", store.fr) == "A-fr"
    assert sf.role(store, p.link_id, "thumbnail_label", store.fr) == "B-fr"
    assert sf.role(store, p.link_id, "image_label", store.de) == "A"
    assert sf.role(store, p.link_id, "small_image_label", store.de) == "B"
    assert not sf.role(store, p.link_id, "small_image_label", 0)
    assert not sf.role(store, p.link_id, "small_image_label", store.fr)


# ---------------------------------------------------------------- repairs, warnings, re-runs


def test_duplicate_store_rows_keep_the_lowest_record_id(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2)
    va = shown(store, p, 0)[a].value_id
    keep = store.add_value_row(va, p.link_id, store.fr, "A-fr", None)
    store.add_value_row(va, p.link_id, store.fr, "junk", 7, 1)
    out = sync([{"sku": "SKU-1", "images": [img(a, label="A"), img(b, label="B")]}])
    rows = [r for r in store.value_rows(p.link_id) if r["store_id"] == store.fr]
    assert [r["record_id"] for r in rows] == [keep]
    assert warnings(out, "SKU-1", "duplicate_value_rows")
    fr = shown(store, p, store.fr)
    assert lpd(fr[a]) == ("A-fr", 1, False) and not fr[a].ambiguous


def test_unknown_store_code_is_warned_and_ignored(store, bucket, sync):
    p, (a, b) = base_product(store, bucket, n=2)
    out = sync([{"sku": "SKU-1", "images": [
        img(a, label="A", stores={"xx": {"label": "?"}, "fr": {"label": "A-fr"}}), img(b, label="B2")],
        "store_roles": {"xx": {"base": b.lstrip("/")}, "de": {"base": b.lstrip("/")}}}])
    r = out.result("SKU-1")
    assert r.error is None and warnings(out, "SKU-1", "unknown_store")
    assert shown(store, p, store.fr)[a].label == "A-fr"
    assert shown(store, p, 0)[b].label == "B2"
    assert sf.role(store, p.link_id, "image", store.de) == b
    codes = {r["store_id"] for r in store.value_rows(p.link_id)}
    assert codes <= {0, store.fr, store.de}


def test_position_tie_with_an_unlisted_entry_is_warned_and_nothing_else_changes(store, bucket, sync):
    p = store.add_product("SKU-1")
    a, u, n = "/a/a/a.jpg", "/u/u/unlisted.jpg", "/n/n/new.jpg"
    v = "/v/v/video.jpg"
    store.add_gallery_entry(p.link_id, a, label="A", position=1)
    store.add_gallery_entry(p.link_id, u, label="U", position=1)
    store.add_gallery_entry(p.link_id, v, media_type="external-video", position=2)
    put(bucket, a, u, n)
    out = sync([{"sku": "SKU-1", "images": [img(a, label="A"), img(n)]}])
    ties = warnings(out, "SKU-1", "position_tie")
    assert any(a in w and u in w for w in ties), ties
    assert any(n in w and v in w for w in ties), ties
    s0 = shown(store, p, 0)
    assert (s0[a].position, s0[u].position, s0[n].position, s0[v].position) == (1, 1, 2, 2)
    assert (s0[u].label, s0[a].label) == ("U", "A")
    again = sync([{"sku": "SKU-1", "images": [img(a, label="A"), img(u, label="U", position=2)]}])
    assert not any(a in w and u in w for w in warnings(again, "SKU-1", "position_tie"))


def test_no_change_rerun_writes_nothing_and_store_changes_count_as_updated_value(store, bucket, sync):
    p, (a, b, c) = base_product(store, bucket, video=True)
    admin_copies(store, p.link_id, store.fr)
    set_store_row(store, p.link_id, a, store.fr, label="A-fr")
    admin_copies(store, p.link_id, store.de)
    drag(store, p.link_id, store.de, [c, b, a, "/v/v/video.jpg"])
    store.set_varchar(p.link_id, "thumbnail", b, store_id=store.fr)
    items = [{"sku": "SKU-1", "images": [
        img(a, label="A", roles=["base", "small", "thumbnail"]),
        img(b, label="B", stores={"fr": {"label": "B-fr", "disabled": True}, "de": {"label": "B-de"}}),
        img(c, label="C", stores={"de": {"position": 1}})],
        "store_roles": {"de": {"base": c.lstrip("/"), "small": None}}}]
    sync(items)
    counts, before = store.table_counts(), rows_changed(store)
    s = sync(items).result("SKU-1").image_stats
    assert (s.inserted, s.updated_value, s.updated_meta, s.deleted, s.skipped_no_change) == (0, 0, 0, 0, 3)
    assert store.table_counts() == counts
    assert rows_changed(store) == before
    items[0]["images"][1]["stores"]["fr"]["label"] = "B-fr2"  # a store-level change only
    s = sync(items).result("SKU-1").image_stats
    assert (s.updated_value, s.skipped_no_change) == (1, 2)
    assert shown(store, p, store.fr)[b].label == "B-fr2"


# ================================================================ the long test: storefront vs the feed


@dataclass
class Snapshot:
    """One product's raw rows before a run."""

    entries: dict[str, tuple[int, str]]  # file → (value_id, media_type)
    rows: dict[tuple[int, int], tuple[str | None, int | None, bool]]  # (value_id, store) → lowest record's
    varchar: dict[tuple[str, int], str | None]
    shown: dict[int, dict[str, sf.Shown]]  # store → what Magento showed


def snapshot(store, p, store_ids) -> Snapshot:
    entries = {e.file: (e.value_id, e.media_type) for e in sf.gallery(store, p.link_id, 0)}
    rows: dict[tuple[int, int], tuple] = {}
    for r in store.value_rows(p.link_id):
        rows.setdefault((r["value_id"], r["store_id"]), (r["label"], r["position"], bool(r["disabled"])))
    varchar = dict(store.roles(p.link_id))
    return Snapshot(entries, rows, varchar, {sid: shown(store, p, sid) for sid in store_ids})


def _weak_order(keys: dict[str, int | None]) -> set[tuple[str, str, int]]:
    def k(x):
        return (1, 0) if x is None else (0, x)

    files = sorted(keys)
    return {(f, g, (k(keys[f]) > k(keys[g])) - (k(keys[f]) < k(keys[g]))) for f in files for g in files}


AFTER = "after"  # expected position: after every other entry of the view


def expect(before: Snapshot, item: dict[str, Any], mode: str, stores: dict[str, int]):
    """What the contract says Magento shows after syncing `item` (every listed object exists; canonical paths).

    Returns ({store_id: {file: (label, position, disabled)}}, {store_id: {role: value}}); a position may be
    (AFTER, n): greater than n."""
    def canon(path: str) -> str:
        return "/" + path.lstrip("/")

    images = [(canon(i["file_path"]), i) for i in item["images"]]
    listed = {f for f, _ in images}
    s0_before = {f: before.rows.get((vid, 0), (None, None, False)) for f, (vid, _) in before.entries.items()}
    s0: dict[str, tuple] = {}
    for n, (f, i) in enumerate(images, 1):
        old = s0_before.get(f)
        label = (i["label"] or None) if "label" in i else (old[0] if old else None)
        position = i["position"] if i.get("position") is not None else n
        disabled = bool(i["disabled"]) if i.get("disabled") is not None else (old[2] if old else False)
        s0[f] = (label, position, disabled)
    deleted = set()
    for f, (_, media) in before.entries.items():
        if f in listed:
            continue
        if mode == "replace" and images and media == "image":
            deleted.add(f)
        else:
            s0[f] = s0_before[f]
    views: dict[int, dict[str, tuple]] = {0: s0}
    for code, sid in stores.items():
        eff = {f: (before.rows[(vid, sid)][1] if (vid, sid) in before.rows and before.rows[(vid, sid)][1]
                   is not None else s0_before[f][1]) for f, (vid, _) in before.entries.items()}
        kept = _weak_order(eff) != _weak_order({f: s0_before[f][1] for f in before.entries})
        highest = max((x for x in eff.values() if x is not None), default=None)
        view = {}
        for f, i in images:
            sv = (i.get("stores") or {}).get(code, {})
            vid = before.entries[f][0] if f in before.entries else None
            x = before.rows.get((vid, sid)) if vid is not None else None
            old0 = s0_before.get(f)
            cols = []
            for c, name in enumerate(("label", "position", "disabled")):
                if name in sv:
                    given = sv[name] or None if name == "label" else sv[name]
                    cols.append(s0[f][c] if given is None else (bool(given) if name == "disabled" else given))
                elif mode == "merge" and name == "position" and kept:
                    if x is None and vid is None:
                        cols.append((AFTER, highest) if highest is not None else s0[f][1])
                    else:
                        cols.append(x[1] if x is not None and x[1] is not None else s0[f][1])
                elif mode == "merge" and name != "position" and x is not None and x[c] != old0[c] and (
                        name != "label" or x[c]):
                    cols.append(x[c])
                else:
                    cols.append(s0[f][c])
            view[f] = tuple(cols)
        for f in before.entries:
            if f not in listed and f not in deleted:
                e = before.shown[sid][f]
                view[f] = (e.label, e.position, e.disabled)
        views[sid] = view

    claims0: dict[str, str] = {}
    for f, i in images:
        for r in i.get("roles", []):
            claims0[ROLE_ALIASES[r]] = f
    store_roles = {code: {ROLE_ALIASES[r]: (canon(v) if v else None) for r, v in rs.items()}
                   for code, rs in (item.get("store_roles") or {}).items()}
    any_claim = bool(claims0) or any(store_roles.values())
    roles0 = {}
    for r in ROLES:
        value = before.varchar.get((r, 0))
        if value is not None and value in deleted:
            value = sf.NO_SELECTION
        if r in claims0:
            value = claims0[r]
        elif mode == "replace" and claims0 and sf.holds_image(value):
            value = sf.NO_SELECTION
        roles0[r] = value
    roles = {0: roles0}
    for code, sid in stores.items():
        rs = {}
        for r in ROLES:
            given = store_roles.get(code, {})
            if r in given:
                rs[r] = given[r] if given[r] is not None else sf.NO_SELECTION
                continue
            if (r, sid) not in before.varchar:
                rs[r] = roles0[r]
                continue
            value = before.varchar[(r, sid)]
            if value in deleted:
                rs[r] = roles0[r]
            elif mode == "merge":
                rs[r] = value if value != before.varchar.get((r, 0)) else roles0[r]
            else:
                rs[r] = roles0[r] if any_claim else value
        roles[sid] = rs
    return views, roles


def assert_shows(store, p, before: Snapshot, item, mode, stores) -> None:
    views, roles = expect(before, item, mode, stores)
    for sid, want in views.items():
        got = shown(store, p, sid)
        assert set(got) == set(want), (p.sku, sid)
        for f, (label, position, disabled) in want.items():
            e = got[f]
            assert not e.ambiguous, (p.sku, sid, f)
            if isinstance(position, tuple):
                others = [g.position for g in got.values() if g.file != f and g.position is not None
                          and not isinstance(want[g.file][1], tuple)]
                assert e.position is not None and e.position > max([position[1], *others]), (p.sku, sid, f)
            else:
                assert e.position == position, (p.sku, sid, f, "position", e.position, position)
            assert (e.label or None) == (label or None) if sid else e.label == label, (p.sku, sid, f, e.label, label)
            assert e.disabled == disabled, (p.sku, sid, f, "disabled")
        for r, value in roles[sid].items():
            got_role = sf.role(store, p.link_id, r, sid)
            if sf.holds_image(value):
                assert got_role == value, (p.sku, sid, r, got_role, value)
            else:
                assert no_image(got_role), (p.sku, sid, r, got_role, value)
    assert_role_labels(store, p, list(views))


def test_storefront_read_matches_the_feed_over_a_sequence_of_syncs(store, bucket, sync):
    stores = {"fr": store.fr, "de": store.de}
    ids = [0, store.fr, store.de]
    p1, (a, b, c, d) = base_product(store, bucket, "P-1", n=4, video=True)
    admin_copies(store, p1.link_id, store.fr)
    set_store_row(store, p1.link_id, a, store.fr, label="A-fr")
    set_store_row(store, p1.link_id, c, store.fr, disabled=1)
    admin_copies(store, p1.link_id, store.de)
    drag(store, p1.link_id, store.de, [d, "/v/v/video.jpg", c, b, a])
    store.set_varchar(p1.link_id, "image", a)
    store.set_varchar(p1.link_id, "image", b, store_id=store.fr)
    store.set_varchar(p1.link_id, "thumbnail", a, store_id=store.de)
    p2, (e, f, g) = base_product(store, bucket, "P-2", n=3)
    admin_copies(store, p2.link_id, store.fr)
    store.set_varchar(p2.link_id, "small_image", g)
    store.set_varchar(p2.link_id, "small_image", g, store_id=store.fr)
    store.set_varchar(p2.link_id, "image", f, store_id=store.de)
    p3 = store.add_product("P-3")
    put(bucket, "/n/n/new.jpg", "/x/x/x.jpg", "/y/y/y.jpg")
    strip = str.lstrip

    steps = [
        ("merge", [
            {"sku": "P-1", "images": [
                img(a, label="A", roles=["base"]),
                img(b, label="B", stores={"fr": {"label": "B-fr"}, "de": {"disabled": True}}),
                img(c, label="C"), img(d, label="D"), img("/n/n/new.jpg", label="New")],
             "store_roles": {"fr": {"thumbnail": strip(c, "/")}}},
            {"sku": "P-2", "images": [img(e, label="E2"), img(f, label="F", stores={"de": {"position": 9}}),
                                      img(g, label="G")]},
            {"sku": "P-3", "images": [img("/x/x/x.jpg", label="X", roles=["base", "small"],
                                          stores={"fr": {"label": "X-fr"}}),
                                      img("/y/y/y.jpg", label="Y")],
             "store_roles": {"de": {"base": "y/y/y.jpg"}}}]),
        ("merge", [
            {"sku": "P-1", "images": [
                img(d, label="D"), img(c, label="C"), img(b, label="B", stores={"fr": {"label": None}}),
                img(a, label="A2")]},
            {"sku": "P-3", "images": [img("/y/y/y.jpg", label="Y2"), img("/x/x/x.jpg", label="X")]}]),
        ("replace", [
            {"sku": "P-2", "images": [img(f, label="F", roles=["thumbnail"]), img(g, label="G2")],
             "store_roles": {"fr": {"image": strip(g, "/")}}},
            {"sku": "P-3", "images": [img("/x/x/x.jpg", label="X", stores={"de": {"label": "X-de"}})]}]),
        ("merge", [
            {"sku": "P-1", "images": [img(a, label="A2"), img(b, label="B")]},
            {"sku": "P-2", "images": [img(f, label="F"), img(g, label="G2")]}]),
    ]
    products = {"P-1": p1, "P-2": p2, "P-3": p3}
    for n, (mode, items) in enumerate(steps, 1):
        before = {sku: snapshot(store, pr, ids) for sku, pr in products.items()}
        out = sync(json.loads(json.dumps(items)), mode=mode)
        for item in items:
            assert out.result(item["sku"]).error is None, (n, item["sku"])
            assert_shows(store, products[item["sku"]], before[item["sku"]], item, mode, stores)
        for sku in set(products) - {i["sku"] for i in items}:
            after = snapshot(store, products[sku], ids)
            assert after.shown == before[sku].shown and after.varchar == before[sku].varchar, (n, sku)
        written = rows_changed(store)
        again = sync(json.loads(json.dumps(items)), mode=mode)
        assert rows_changed(store) == written, n
        assert again.report.stats.updated_value == again.report.stats.inserted == 0, n


def test_expect_agrees_with_the_hand_written_scenarios(magento_factory):
    """The oracle of the long test, checked without a sync against the scenarios' hand-written values."""
    store = magento_factory("ce")
    store.fr, store.de = store.add_store("fr"), store.add_store("de")
    stores = {"fr": store.fr, "de": store.de}

    class NoBucket:
        def put(self, path):
            pass

    p, (a, b, c, d, e), v = deliberate_and_copies(store, NoBucket())
    store.set_varchar(p.link_id, "image", a)
    store.set_varchar(p.link_id, "small_image", a)
    store.set_varchar(p.link_id, "image", b, store_id=store.fr)
    store.set_varchar(p.link_id, "small_image", a, store_id=store.fr)
    store.set_varchar(p.link_id, "thumbnail", e, store_id=store.de)
    before = snapshot(store, p, [0, store.fr, store.de])
    item = {"sku": "SKU-1", "images": [
        img(a, label="A2"), img(b, label="B2", disabled=True, stores={"de": {"label": "B-de", "disabled": None}}),
        img(c, label="C2"), img(d, label="D2"), img("/n/n/new.jpg", label="N")],
        "store_roles": {"de": {"small": None}}}
    views, roles = expect(before, item, "merge", stores)
    assert views[store.fr] == {a: ("A-fr", 1, False), b: ("B2", 2, True), c: ("C2", 3, True), d: ("D2", 4, False),
                               "/n/n/new.jpg": ("N", 5, False), e: ("E-fr", 5, True), v: ("", 6, False)}
    assert views[store.de] == {d: ("D2", 0, False), c: ("C2", 1, False), b: ("B-de", 3, True),
                               a: ("A2", 4, False), "/n/n/new.jpg": ("N", (AFTER, 5), False),
                               v: ("", 2, False), e: ("", 5, False)}
    assert views[0][e] == ("E", 5, False) and views[0]["/n/n/new.jpg"] == ("N", 5, False)
    assert roles[0] == {"image": a, "small_image": a, "thumbnail": None, "swatch_image": None}
    assert roles[store.fr] == {"image": b, "small_image": a, "thumbnail": None, "swatch_image": None}
    assert roles[store.de] == {"image": a, "small_image": "no_selection", "thumbnail": e, "swatch_image": None}

    views, roles = expect(before, {**item, "images": [img(a, roles=["thumbnail"]), img(b)]}, "replace", stores)
    assert set(views[store.de]) == {a, b, v}
    assert views[store.fr] == {a: ("A", 1, False), b: ("B", 2, False), v: ("", 6, False)}
    assert views[store.de][b] == ("B", 2, False) and views[store.de][a] == ("A", 1, False)
    assert roles[0] == {"image": "no_selection", "small_image": "no_selection", "thumbnail": a,
                        "swatch_image": None}
    assert roles[store.fr] == roles[0]  # claims: every store-view role not given is removed
    assert roles[store.de] == {**roles[0], "small_image": "no_selection"}

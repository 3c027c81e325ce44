"""Text Magento's utf8mb3 columns cannot hold: labels dropped with a warning, SKUs and paths rejected."""

from __future__ import annotations

import pytest

from nacento_sync.charset import LABEL, PATH, ROLE_VALUE, SKU, first_unstorable, fit_item
from nacento_sync.models import DesiredImage, Item, Rejection

NARROW = {SKU: "utf8mb3", PATH: "utf8mb3", LABEL: "utf8mb3", ROLE_VALUE: "utf8mb3"}


def _item(sku="SKU-1", path="/a/b/a.jpg", label="Front", given=True) -> Item:
    return Item(sku, (DesiredImage("/x/y/x.jpg", 1), DesiredImage(path, 2, label, given)), "f.ndjson:3", 3)


@pytest.mark.parametrize(("text", "code"), [
    ("plain ascii", None), ("ñandú ✓ 日本語 €", None), ("\uffff", None),
    ("smile 😀", "U+1F600"), ("𠀀 cjk ext b", "U+20000"), ("a😀b🎉", "U+1F600"), ("\U0010FFFF", "U+10FFFF"),
])
def test_first_unstorable(text, code):
    assert first_unstorable(text) == code


@pytest.mark.parametrize("label", ["Front 😀", "🎉", "𠀀 label"])
def test_an_unstorable_label_is_treated_as_absent_with_a_warning(label):
    fitted = fit_item(_item(label=label), NARROW)
    assert isinstance(fitted, Item)
    image = fitted.images[1]
    assert image.label is None and image.label_given is False  # the stored label stays
    (warning,) = fitted.warnings
    assert warning.startswith("unstorable_text: images[1].label: U+")
    assert warning.endswith("cannot be stored: the column is utf8mb3")
    assert fitted.images[0] == _item().images[0]


def test_a_label_only_the_role_attribute_cannot_hold_is_dropped_too():
    fitted = fit_item(_item(label="x😀"), {ROLE_VALUE: "utf8mb3"})
    assert isinstance(fitted, Item) and fitted.images[1].label is None
    assert "the column is utf8mb3" in fitted.warnings[0]


@pytest.mark.parametrize(("item", "field"), [
    (_item(sku="SKU-😀"), "sku: U+1F600"),
    (_item(path="/a/b/😀.jpg"), "images[1].file_path: U+1F600"),
    (_item(path="/a/b/𠀀.jpg", label="😀"), "images[1].file_path: U+20000"),
])
def test_an_unstorable_sku_or_path_rejects_the_record(item, field):
    fitted = fit_item(item, NARROW)
    assert isinstance(fitted, Rejection)
    assert fitted.source == "f.ndjson:3" and fitted.error.startswith(field)
    assert fitted.error.endswith("the column is utf8mb3")


def test_wide_columns_store_everything():
    item = _item(sku="SKU-😀", path="/a/b/😀.jpg", label="😀")
    assert fit_item(item, {}) is item
    assert fit_item(_item(label="😀"), {SKU: "utf8mb3", PATH: "utf8mb3"}).images[1].label == "😀"


def test_storable_items_come_back_unchanged():
    item = _item(label="Vista frontal ✓")
    assert fit_item(item, NARROW) is item


# ---------------------------------------------------------------- against MariaDB

_TABLES = ("catalog_product_entity", "catalog_product_entity_media_gallery",
           "catalog_product_entity_media_gallery_value", "catalog_product_entity_varchar")


def _detect(store, params):
    import asyncio

    from nacento_sync import magento
    from nacento_sync.config import DatabaseConfig

    async def go():
        conn = await magento.connect(DatabaseConfig(host=params["host"], port=params["port"], user=params["user"],
                                                    password=params["password"], name=store.database,
                                                    table_prefix=store.prefix))
        try:
            return (await magento.detect_schema(conn, store.prefix)).narrow
        finally:
            conn.close()

    return asyncio.run(go())


@pytest.mark.parametrize("charset", ["utf8mb3", "utf8mb4"])
def test_detect_schema_finds_the_narrow_columns(magento, db_params, charset):
    for table in _TABLES:
        magento.execute(f"ALTER TABLE {{{table}}} CONVERT TO CHARACTER SET {charset}")
    narrow = _detect(magento, db_params)
    assert narrow == ({SKU: "utf8mb3", PATH: "utf8mb3", LABEL: "utf8mb3", ROLE_VALUE: "utf8mb3"}
                      if charset == "utf8mb3" else {})
    magento.execute("ALTER TABLE {catalog_product_entity_media_gallery_value} MODIFY label VARCHAR(255) "
                    "CHARACTER SET utf8mb3 NULL")
    assert _detect(magento, db_params).get(LABEL) == "utf8mb3"


def test_a_sync_on_magentos_utf8mb3_tables_drops_labels_and_rejects_skus_and_paths(magento, bucket, db_params,
                                                                                     tmp_path):
    from helpers import config_dict, install_meta, run, write_ndjson

    install_meta(magento)
    product = magento.add_product("SKU-1")
    magento.add_product("SKU-2")
    bucket.put("/a/b/a.jpg")
    bucket.put("/a/b/b.jpg")
    cfg = config_dict(magento, bucket, db_params)
    first = write_ndjson(tmp_path / "1.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/a.jpg",
                                                                              "label": "Front"}]}])
    assert run(cfg, first).report.stats.inserted == 1
    export = write_ndjson(tmp_path / "2.ndjson", [
        {"sku": "SKU-1", "images": [{"file_path": "a/b/a.jpg", "label": "Front 😀", "roles": ["base"]}]},
        {"sku": "SKU-😀", "images": [{"file_path": "a/b/a.jpg"}]},
        {"sku": "SKU-2", "images": [{"file_path": "a/b/🎉.jpg"}, {"file_path": "a/b/b.jpg"}]},
    ])
    out = run(cfg, export)
    assert out.report.stats.rejected == 2 and out.report.stats.error == 0
    errors = sorted(r.error for r in out.report.rejected)
    assert errors == ["images[0].file_path: U+1F389 cannot be stored: the column is utf8mb3",
                      "sku: U+1F600 cannot be stored: the column is utf8mb3"]
    result = out.result("SKU-1")
    assert result.image_stats.warnings == [
        "unstorable_text: images[0].label: U+1F600 cannot be stored: the column is utf8mb3"]
    (row,) = magento.gallery(product.link_id)
    assert row["label"] == "Front"  # the stored label stays
    assert magento.roles(product.link_id)[("image_label", 0)] == "Front"


def test_an_unstorable_store_view_label_is_treated_as_not_sent():
    from nacento_sync.models import StoreValues

    fr = StoreValues(label="Avant 😀", disabled=True, given=frozenset({"label", "disabled"}))
    de = StoreValues(label="Vorne", given=frozenset({"label"}))
    item = Item("SKU-1", (DesiredImage("/a/b/a.jpg", 1, "Front", True, stores=(("fr", fr), ("de", de))),),
                "f.ndjson:1", 1)
    fitted = fit_item(item, NARROW)
    assert isinstance(fitted, Item)
    (image,) = fitted.images
    assert image.label == "Front" and image.stores[1] == ("de", de)
    code, values = image.stores[0]
    assert code == "fr" and values.given == frozenset({"disabled"}) and values.disabled is True
    assert fitted.warnings == (
        'unstorable_text: images[0].stores["fr"].label: U+1F600 cannot be stored: the column is utf8mb3',)

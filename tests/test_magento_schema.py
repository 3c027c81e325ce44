"""The test stores have Magento's own tables (from its schema files), where nacento-sync depends on them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import magento_schema
import pymysql
import pytest
from magento_schema import (
    EE_CURRENT_VERSION,
    EXTRA_TABLES,
    MAX_VERSION,
    SCHEMA_DIR_ENV,
    MagentoStore,
    SchemaFilesMissing,
    magento_ddl,
    schema_dir,
)

GALLERY = "catalog_product_entity_media_gallery"
VALUE = "catalog_product_entity_media_gallery_value"
TO_ENTITY = "catalog_product_entity_media_gallery_value_to_entity"
VIDEO = "catalog_product_entity_media_gallery_value_video"
VARCHAR = "catalog_product_entity_varchar"


def columns(store: MagentoStore, table: str) -> dict[str, dict]:
    rows = store.query(
        "SELECT column_name AS name, column_type AS type, is_nullable AS nullable, column_default AS dflt, "
        "extra FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (store.database, store.t(table)),
    )
    return {r["name"]: r for r in rows}


def indexes(store: MagentoStore, table: str) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """{index name: (unique, columns)}"""
    rows = store.query(
        "SELECT index_name AS name, non_unique, column_name AS col FROM information_schema.statistics "
        "WHERE table_schema = %s AND table_name = %s ORDER BY index_name, seq_in_index",
        (store.database, store.t(table)),
    )
    out: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for r in rows:
        unique, cols = out.get(r["name"], (not r["non_unique"], ()))
        out[r["name"]] = (unique, (*cols, r["col"]))
    return out


def foreign_keys(store: MagentoStore, table: str) -> dict[str, tuple[str, str, str, str]]:
    """{column: (constraint name, referenced table, referenced column, delete rule)}"""
    rows = store.query(
        "SELECT k.constraint_name AS name, k.column_name AS col, k.referenced_table_name AS rt, "
        "k.referenced_column_name AS rc, r.delete_rule AS rule "
        "FROM information_schema.key_column_usage k JOIN information_schema.referential_constraints r "
        "  ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name "
        "WHERE k.table_schema = %s AND k.table_name = %s AND k.referenced_table_name IS NOT NULL",
        (store.database, store.t(table)),
    )
    return {r["col"]: (r["name"], r["rt"], r["rc"], r["rule"]) for r in rows}


# -- structure ---------------------------------------------------------------------------------------------


def test_tables_are_innodb_utf8mb3_general_ci_with_prefix(magento: MagentoStore) -> None:
    rows = magento.query(
        "SELECT table_name AS name, engine, table_collation AS coll FROM information_schema.tables "
        "WHERE table_schema = %s",
        (magento.database,),
    )
    assert sorted(r["name"] for r in rows) == sorted(magento.t(t) for t in magento.tables)
    for r in rows:
        assert r["name"].startswith(magento.prefix)
        assert (r["engine"], r["coll"]) == ("InnoDB", "utf8mb3_general_ci"), r["name"]
    # The database's own default is utf8mb3 too, as a Magento install's is.
    (schema,) = magento.query(
        "SELECT default_character_set_name AS cs, default_collation_name AS coll FROM information_schema.schemata "
        "WHERE schema_name = %s",
        (magento.database,),
    )
    assert (schema["cs"], schema["coll"]) == ("utf8mb3", "utf8mb3_general_ci")


def _file_columns(variant: str) -> dict[str, list[str]]:
    """{table: column names in order}, read from Magento's schema file."""
    out = {}
    for sql in magento_ddl(variant):
        if m := re.match(r"CREATE TABLE `(\w+)`", sql):
            out[m.group(1)] = re.findall(r"^  `(\w+)` ", sql, flags=re.MULTILINE)
    return out


def test_tables_are_those_of_magentos_schema_file(magento: MagentoStore) -> None:
    from_file = _file_columns(magento.variant)
    # Every table of the file, the hand-written extras and nothing else.
    assert set(magento.tables) == set(from_file) | set(EXTRA_TABLES)
    assert {"catalog_eav_attribute", "magento_acknowledged_bulk"} <= set(from_file)
    assert ("sequence_product" in from_file) == (magento.variant == "ee")
    for table, names in from_file.items():
        rows = magento.query(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s ORDER BY ordinal_position",
            (magento.database, magento.t(table)),
        )
        assert [r["name"] for r in rows] == names, table
        (create,) = magento.query(f"SHOW CREATE TABLE `{magento.t(table)}`")
        assert "CHARSET=utf8mb3" in create["Create Table"], table
    # The file turned foreign-key checks off; the store's session has them on again.
    assert magento.query("SELECT @@SESSION.foreign_key_checks AS fk")[0]["fk"] == 1


def test_a_four_byte_character_cannot_be_stored(magento: MagentoStore) -> None:
    p = magento.add_product("SKU-1")
    vid = magento.add_gallery_entry(p.link_id, "/a/b/ab.jpg", label="ok é ü", position=1)
    assert magento.gallery(p.link_id)[0]["label"] == "ok é ü"  # 2-byte characters are fine
    with pytest.raises(pymysql.err.DataError) as raised:
        magento.add_value_row(vid, p.link_id, 1, "smile \U0001F600", 2)
    assert raised.value.args[0] == 1366  # Incorrect string value


def test_prefix_applies_to_indexes_foreign_keys_and_triggers(magento: MagentoStore) -> None:
    names = magento.query(
        "SELECT index_name AS n, table_name AS t FROM information_schema.statistics "
        "WHERE table_schema = %s AND index_name <> 'PRIMARY' "
        "UNION SELECT constraint_name, table_name FROM information_schema.referential_constraints "
        "WHERE constraint_schema = %s",
        (magento.database, magento.database),
    )
    assert names
    for row in names:
        # Like Magento, names longer than 64 characters become <kind>_<md5 of the prefixed name>.
        assert row["n"].startswith(magento.prefix.upper()) or re.fullmatch(
            r"(FK|UNQ|IDX)_[0-9A-F]{32}", row["n"]
        ), row
    if magento.prefix:
        assert sum(1 for r in names if re.fullmatch(r"(FK|UNQ|IDX)_[0-9A-F]{32}", r["n"])) < len(names) / 4
    refs = magento.query(
        "SELECT referenced_table_name AS rt FROM information_schema.referential_constraints "
        "WHERE constraint_schema = %s",
        (magento.database,),
    )
    assert all(r["rt"].startswith(magento.prefix) for r in refs)
    triggers = magento.query(
        "SELECT trigger_name AS n, event_object_table AS t FROM information_schema.triggers "
        "WHERE trigger_schema = %s",
        (magento.database,),
    )
    assert {r["t"] for r in triggers} == {magento.t(VALUE)}
    assert {r["n"] for r in triggers} == {
        f"trg_{magento.t(VALUE)}_after_{e}" for e in ("insert", "update", "delete")
    }


def test_gallery_columns(magento: MagentoStore) -> None:
    cols = columns(magento, GALLERY)
    assert cols["value_id"]["type"] == "int(10) unsigned" and "auto_increment" in cols["value_id"]["extra"]
    assert cols["value"]["type"] == "varchar(255)" and cols["value"]["nullable"] == "YES"
    assert cols["media_type"]["type"] == "varchar(32)" and cols["media_type"]["dflt"] == "'image'"
    assert cols["disabled"]["type"] == "smallint(5) unsigned" and cols["disabled"]["dflt"] == "0"
    # No index on `value`: entries must never be looked up by path alone.
    assert indexes(magento, GALLERY) == {
        "PRIMARY": (True, ("value_id",)),
        magento.prefix.upper() + "CATALOG_PRODUCT_ENTITY_MEDIA_GALLERY_ATTRIBUTE_ID": (False, ("attribute_id",)),
    }


def test_value_table_columns_and_link_field(magento: MagentoStore) -> None:
    link = magento.link
    other = "entity_id" if link == "row_id" else "row_id"
    for table in (VARCHAR, VALUE, TO_ENTITY):
        cols = columns(magento, table)
        assert link in cols and other not in cols, table
        assert cols[link]["type"] == "int(10) unsigned"
        assert foreign_keys(magento, table)[link][1:] == (magento.t("catalog_product_entity"), link, "CASCADE")
    cols = columns(magento, VALUE)
    assert cols["position"]["type"] == "int(10) unsigned" and cols["position"]["nullable"] == "YES"
    assert cols["label"]["type"] == "varchar(255)" and cols["label"]["nullable"] == "YES"
    assert cols["disabled"]["nullable"] == "NO" and cols["disabled"]["dflt"] == "0"
    assert "auto_increment" in cols["record_id"]["extra"]


def test_product_entity(magento: MagentoStore) -> None:
    cols = columns(magento, "catalog_product_entity")
    assert cols["sku"]["type"] == "varchar(64)" and cols["sku"]["nullable"] == "NO"
    idx = indexes(magento, "catalog_product_entity")
    assert idx[magento.prefix.upper() + "CATALOG_PRODUCT_ENTITY_SKU"] == (False, ("sku",))
    if magento.variant == "ee":
        assert idx["PRIMARY"] == (True, ("row_id",))
        assert cols["created_in"]["type"] == "bigint(20) unsigned" and cols["created_in"]["dflt"] == "1"
        assert cols["updated_in"]["dflt"] == str(MAX_VERSION)
        fk = foreign_keys(magento, "catalog_product_entity")["entity_id"]
        assert fk[1:] == (magento.t("sequence_product"), "sequence_value", "CASCADE")
    else:
        assert idx["PRIMARY"] == (True, ("entity_id",))
        assert "row_id" not in cols and "created_in" not in cols
    # The sku column's collation: case- and trailing-space-insensitive.
    magento.add_product("Abc-1")
    assert magento.query("SELECT COUNT(*) AS n FROM {catalog_product_entity} WHERE sku = 'abc-1  '")[0]["n"] == 1


def test_gallery_cascades_to_value_link_and_video_rows(magento: MagentoStore) -> None:
    p = magento.add_product("SKU-1")
    keep = magento.add_gallery_entry(p.link_id, "/k/e/keep.jpg", label="Keep", position=1)
    gone = magento.add_gallery_entry(
        p.link_id, "/g/o/gone.jpg", label="Gone", position=2, media_type="external-video"
    )
    magento.add_value_row(gone, p.link_id, 1, "Store view", 5)
    magento.add_video_row(gone, "https://youtu.be/x")
    before = magento.table_counts()
    assert (before[VALUE], before[TO_ENTITY], before[VIDEO]) == (3, 2, 1)

    magento.execute(f"DELETE FROM {{{GALLERY}}} WHERE value_id = %s", (gone,))

    after = magento.table_counts()
    assert (after[GALLERY], after[VALUE], after[TO_ENTITY], after[VIDEO]) == (1, 1, 1, 0)
    assert [e["value_id"] for e in magento.gallery(p.link_id)] == [keep]


def test_video_table_primary_key_is_value_and_store(magento: MagentoStore) -> None:
    idx = indexes(magento, VIDEO)
    assert idx["PRIMARY"] == (True, ("value_id", "store_id"))
    assert [name for name, (unique, _) in idx.items() if unique] == ["PRIMARY"]
    p = magento.add_product("SKU-1")
    vid = magento.add_gallery_entry(p.link_id, "/v/i/video.jpg", media_type="external-video")
    magento.add_video_row(vid, "https://youtu.be/x")
    magento.add_video_row(vid, "https://youtu.be/y", store_id=1)  # one row per store
    with pytest.raises(pymysql.err.IntegrityError):
        magento.add_video_row(vid, "https://youtu.be/z")


def test_product_and_store_deletes_cascade(magento: MagentoStore) -> None:
    p = magento.add_product("SKU-1")
    vid = magento.add_gallery_entry(p.link_id, "/a/b/ab.jpg", label="x", position=1)
    magento.add_value_row(vid, p.link_id, 1, "store 1", 1)
    magento.set_varchar(p.link_id, "image", "/a/b/ab.jpg", store_id=1)
    magento.execute("DELETE FROM {store} WHERE store_id = 1")
    assert [r["store_id"] for r in magento.value_rows(p.link_id)] == [0]
    assert magento.roles(p.link_id) == {}
    magento.execute(f"DELETE FROM {{catalog_product_entity}} WHERE {magento.link} = %s", (p.link_id,))
    counts = magento.table_counts()
    assert (counts[VALUE], counts[TO_ENTITY], counts[GALLERY]) == (0, 0, 1)  # the gallery row stays


def test_value_table_has_no_unique_key(magento: MagentoStore) -> None:
    idx = indexes(magento, VALUE)
    assert [name for name, (unique, _) in idx.items() if unique] == ["PRIMARY"]
    assert (False, (magento.link, "value_id", "store_id")) in idx.values()

    p = magento.add_product("SKU-1")
    vid = magento.add_gallery_entry(p.link_id, "/a/b/ab.jpg", label="first", position=1)
    magento.add_value_row(vid, p.link_id, 0, "duplicate", 1)  # a plain duplicate insert succeeds
    # ... and so "upserts" with ON DUPLICATE KEY UPDATE always insert here.
    magento.execute(
        f"INSERT INTO {{{VALUE}}} (value_id, store_id, {magento.link}, label, position) "
        "VALUES (%s, 0, %s, 'odku', 1) ON DUPLICATE KEY UPDATE label = VALUES(label)",
        (vid, p.link_id),
    )
    rows = magento.value_rows(p.link_id)
    assert [r["label"] for r in rows] == ["first", "duplicate", "odku"]
    # gallery() reports the store-0 row with the lowest record_id.
    assert magento.gallery(p.link_id)[0]["label"] == "first"


def test_varchar_unique_link_attribute_store(magento: MagentoStore) -> None:
    unique = sorted(cols for name, (is_unique, cols) in indexes(magento, VARCHAR).items() if is_unique)
    assert unique == [(magento.link, "attribute_id", "store_id"), ("value_id",)]

    p = magento.add_product("SKU-1")
    magento.set_varchar(p.link_id, "image", "/a/b/one.jpg")
    magento.set_varchar(p.link_id, "image", "/a/b/two.jpg")  # upsert
    magento.set_varchar(p.link_id, "image", "/a/b/view.jpg", store_id=1)
    magento.set_varchar(p.link_id, "image_label", "Front")
    assert magento.roles(p.link_id) == {
        ("image", 0): "/a/b/two.jpg",
        ("image", 1): "/a/b/view.jpg",
        ("image_label", 0): "Front",
    }
    with pytest.raises(pymysql.err.IntegrityError):
        magento.execute(
            f"INSERT INTO {{{VARCHAR}}} (attribute_id, store_id, {magento.link}, value) VALUES (%s, 0, %s, 'x')",
            (magento.attribute_id("image"), p.link_id),
        )


def test_shared_gallery_rows_and_link_primary_key(magento: MagentoStore) -> None:
    a = magento.add_product("A")
    b = magento.add_product("B")
    vid = magento.add_gallery_entry(a.link_id, "/s/h/shared.jpg", label="A", position=1)
    magento.link_entry(vid, b.link_id)
    magento.add_value_row(vid, b.link_id, 0, "B", 3)
    assert magento.gallery(b.link_id)[0]["label"] == "B"
    assert magento.gallery(a.link_id)[0]["label"] == "A"
    with pytest.raises(pymysql.err.IntegrityError):
        magento.link_entry(vid, b.link_id)


# -- seed data ---------------------------------------------------------------------------------------------


def test_seed_stores_and_attributes(magento: MagentoStore) -> None:
    stores = magento.query("SELECT store_id, code, website_id, group_id FROM {store} ORDER BY store_id")
    assert stores == [
        {"store_id": 0, "code": "admin", "website_id": 0, "group_id": 0},
        {"store_id": 1, "code": "default", "website_id": 1, "group_id": 1},
    ]
    types = magento.query("SELECT entity_type_id AS id, entity_type_code AS code FROM {eav_entity_type}")
    assert {r["code"]: r["id"] for r in types} == {"catalog_category": 3, "catalog_product": 4}
    ids = {c: magento.attribute_id(c) for c in ("media_gallery", "image", "small_image", "thumbnail")}
    # Not a stock install's ids, so hard-coded ids fail.
    assert ids != {"media_gallery": 90, "image": 87, "small_image": 88, "thumbnail": 89}
    assert magento.attribute_id("image", "catalog_category") != ids["image"]
    attrs = magento.query(
        "SELECT attribute_code AS code, backend_type AS bt, frontend_input AS fi FROM {eav_attribute} "
        "WHERE entity_type_id = 4"
    )
    kinds = {r["code"]: (r["bt"], r["fi"]) for r in attrs}
    assert kinds["media_gallery"] == ("static", "gallery")
    for code in ("image", "small_image", "thumbnail", "swatch_image"):
        assert kinds[code] == ("varchar", "media_image")
    for code in ("image_label", "small_image_label", "thumbnail_label"):
        assert kinds[code] == ("varchar", "text")
    with pytest.raises(KeyError):
        magento.attribute_id("no_such_attribute")


def test_staging_flag(magento: MagentoStore) -> None:
    flags = magento.query("SELECT flag_code, flag_data FROM {flag}")
    if magento.variant == "ee":
        assert [f["flag_code"] for f in flags] == ["staging"]
        assert json.loads(flags[0]["flag_data"])["current_version"] == str(EE_CURRENT_VERSION)
    else:
        assert flags == []


def test_ee_products_and_staging_rows(magento_factory) -> None:
    ee = magento_factory("ee")
    first = ee.add_product("FIRST", version_rows=[(1, 1800000000), (1800000000, MAX_VERSION)])
    assert len(first.link_ids) == 2 and first.link_id == first.link_ids[0]
    p = ee.add_product("SKU-1")
    assert p.link_id != p.entity_id  # row ids and entity ids diverge, as on a real store
    future = ee.add_staging_row(p.entity_id, 1800000000, MAX_VERSION)
    rows = ee.query(
        "SELECT row_id, entity_id, sku, created_in, updated_in FROM {catalog_product_entity} "
        "WHERE entity_id = %s ORDER BY row_id",
        (p.entity_id,),
    )
    assert [(r["row_id"], r["sku"], r["created_in"], r["updated_in"]) for r in rows] == [
        (p.link_id, "SKU-1", 1, MAX_VERSION),
        (future, "SKU-1", 1800000000, MAX_VERSION),
    ]
    assert ee.entity_id_of(future) == p.entity_id
    with pytest.raises(ValueError):
        ee.add_product("BAD", version_rows=[(1800000000, MAX_VERSION)])  # nothing active now
    ce = magento_factory("ce")
    with pytest.raises(ValueError):
        ce.add_staging_row(1, 1, MAX_VERSION)


# -- changelog triggers ------------------------------------------------------------------------------------


def test_changelog_sees_explicit_deletes_but_not_cascades(magento: MagentoStore) -> None:
    if magento.variant == "ee":
        magento.add_product("FILLER", version_rows=[(1, 1800000000), (1800000000, MAX_VERSION)])
    p = magento.add_product("SKU-1")
    explicit = magento.add_gallery_entry(p.link_id, "/e/x/explicit.jpg", label="e", position=1)
    cascaded = magento.add_gallery_entry(p.link_id, "/c/a/cascaded.jpg", label="c", position=2)
    assert magento.changelog() == [p.entity_id, p.entity_id]  # inserts, recorded by entity_id
    magento.clear_changelog()

    magento.execute(
        f"UPDATE {{{VALUE}}} SET label = label WHERE {magento.link} = %s", (p.link_id,)
    )  # no change, no record
    assert magento.changelog() == []
    magento.execute(f"UPDATE {{{VALUE}}} SET label = 'new' WHERE value_id = %s", (explicit,))
    assert magento.changelog() == [p.entity_id]
    magento.clear_changelog()

    # Explicit delete of the child rows first: the trigger sees it.
    magento.execute(f"DELETE FROM {{{VALUE}}} WHERE value_id = %s", (explicit,))
    magento.execute(f"DELETE FROM {{{GALLERY}}} WHERE value_id = %s", (explicit,))
    assert magento.changelog() == [p.entity_id]
    magento.clear_changelog()

    # Deleting only the parent: the cascade removes the _value row silently.
    magento.execute(f"DELETE FROM {{{GALLERY}}} WHERE value_id = %s", (cascaded,))
    assert magento.table_counts()[VALUE] == 0
    assert magento.changelog() == []


def test_ee_with_prefix(magento_factory) -> None:
    store = magento_factory("ee", "mg_")
    tables = {r["t"] for r in store.query(
        "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = %s", (store.database,)
    )}
    assert tables == {f"mg_{t}" for t in store.tables}
    assert "mg_sequence_product" in tables
    p = store.add_product("SKU-1")
    store.add_gallery_entry(p.link_id, "/a/b/ab.jpg", label="x", position=1)
    store.execute("DELETE FROM {catalog_product_entity_media_gallery_value}")
    assert store.changelog() == [p.entity_id, p.entity_id]


# -- bulk tracking (Magento_AsynchronousOperations) --------------------------------------------------------


def test_bulk_tables_match_magento(magento: MagentoStore) -> None:
    bulk = columns(magento, "magento_bulk")
    assert {k: (v["type"], v["nullable"]) for k, v in bulk.items()} == {
        "id": ("int(10) unsigned", "NO"), "uuid": ("varbinary(39)", "YES"),
        "user_id": ("int(10) unsigned", "YES"), "user_type": ("int(11)", "YES"), "description": ("varchar(255)", "YES"),
        "operation_count": ("int(10) unsigned", "NO"), "start_time": ("timestamp", "NO")}
    assert "auto_increment" in bulk["id"]["extra"] and bulk["start_time"]["dflt"] == "current_timestamp()"
    op = columns(magento, "magento_operation")
    assert {k: (v["type"], v["nullable"]) for k, v in op.items()} == {
        "id": ("int(10) unsigned", "NO"), "operation_key": ("int(10) unsigned", "YES"),
        "bulk_uuid": ("varbinary(39)", "YES"), "topic_name": ("varchar(255)", "YES"),
        "serialized_data": ("blob", "YES"), "result_serialized_data": ("blob", "YES"),
        "status": ("smallint(6)", "YES"), "error_code": ("smallint(6)", "YES"),
        "result_message": ("varchar(255)", "YES"), "started_at": ("timestamp", "YES")}
    assert op["status"]["dflt"] == "0" and op["started_at"]["dflt"] in (None, "NULL")
    p = magento.prefix.upper()
    assert indexes(magento, "magento_bulk") == {
        "PRIMARY": (True, ("id",)), p + "MAGENTO_BULK_UUID": (True, ("uuid",)),
        p + "MAGENTO_BULK_USER_ID": (False, ("user_id",)), p + "MAGENTO_BULK_START_TIME": (False, ("start_time",))}
    idx = indexes(magento, "magento_operation")
    # No unique key on (bulk_uuid, operation_key): Magento does not have one.
    assert idx == {
        "PRIMARY": (True, ("id",)),
        p + "MAGENTO_OPERATION_BULK_UUID_ERROR_CODE": (False, ("bulk_uuid", "error_code")),
        p + "MAGENTO_OPERATION_STATUS_STARTED_AT": (False, ("status", "started_at"))}
    assert foreign_keys(magento, "magento_operation")["bulk_uuid"][1:] == (magento.t("magento_bulk"), "uuid",
                                                                           "CASCADE")


def test_bulk_uuid_is_unique_and_deleting_a_bulk_removes_its_operations(magento: MagentoStore) -> None:
    magento.execute("INSERT INTO {magento_bulk} (uuid, operation_count) VALUES ('u-1', 2)")
    with pytest.raises(pymysql.err.IntegrityError):
        magento.execute("INSERT INTO {magento_bulk} (uuid, operation_count) VALUES ('u-1', 1)")
    magento.execute("INSERT INTO {magento_operation} (bulk_uuid, operation_key, status) VALUES ('u-1', 1, 4), "
                    "('u-1', 2, 4), ('u-1', NULL, 4), ('u-1', NULL, 4)")
    # Nothing stops a second operation with the same key: code must not rely on the database for that.
    magento.execute("INSERT INTO {magento_operation} (bulk_uuid, operation_key) VALUES ('u-1', 1)")
    keyed = magento.query("SELECT COUNT(*) AS n FROM {magento_operation} WHERE operation_key = 1")
    assert keyed[0]["n"] == 2
    with pytest.raises(pymysql.err.IntegrityError):  # the bulk must exist
        magento.execute("INSERT INTO {magento_operation} (bulk_uuid, operation_key) VALUES ('nope', 1)")
    magento.execute("DELETE FROM {magento_bulk} WHERE uuid = 'u-1'")
    assert magento.table_counts()["magento_operation"] == 0


# -- where the schema files come from ---------------------------------------------------------------------


def test_schema_dir_is_shared_beside_the_repository_unless_overridden(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SCHEMA_DIR_ENV, raising=False)
    repo = Path(magento_schema.__file__).resolve().parents[1]
    assert schema_dir() == repo.parent / "shared" / "magento-schema"  # found there, as in CI
    for name in ("ce.sql", "ee.sql"):
        (tmp_path / name).write_text("-- a comment\nSET FOREIGN_KEY_CHECKS = 0;\n\nCREATE TABLE `t` (\n  `a` int\n);\n")
    monkeypatch.setenv(SCHEMA_DIR_ENV, str(tmp_path))
    assert schema_dir() == tmp_path
    assert magento_ddl("ee") == ("SET FOREIGN_KEY_CHECKS = 0", "CREATE TABLE `t` (\n  `a` int\n)")


def test_missing_schema_files_fail_the_test_with_a_clear_message(monkeypatch, tmp_path: Path, magento_factory) -> None:
    monkeypatch.setenv(SCHEMA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SchemaFilesMissing, match=SCHEMA_DIR_ENV):
        schema_dir()
    with pytest.raises(pytest.fail.Exception, match=r"nowhere/ce\.sql not found"):  # a failure, not a skip
        magento_factory("ce")


def test_prefix_renames_tables_references_and_keys() -> None:
    sql = ("CREATE TABLE `store` (\n  `group_id` smallint,\n"
           "  CONSTRAINT `STORE_GROUP_ID_STORE_GROUP_GROUP_ID` FOREIGN KEY (`group_id`) REFERENCES `store_group` "
           "(`group_id`) ON DELETE CASCADE,\n  INDEX `STORE_GROUP_ID` (`group_id`)\n)")
    assert magento_schema._with_prefix(sql, "mg_") == (
        "CREATE TABLE `mg_store` (\n  `group_id` smallint,\n"
        "  CONSTRAINT `MG_STORE_GROUP_ID_STORE_GROUP_GROUP_ID` FOREIGN KEY (`group_id`) REFERENCES `mg_store_group` "
        "(`group_id`) ON DELETE CASCADE,\n  INDEX `MG_STORE_GROUP_ID` (`group_id`)\n)")
    assert magento_schema._with_prefix(sql, "") == sql

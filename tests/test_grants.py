"""The privileges list and `doctor`'s pure part: the SHOW GRANTS parser and checker, and the line decisions."""

from __future__ import annotations

import pytest

from nacento_sync import doctor, grants
from nacento_sync.doctor import GrantLine, missing_privileges, parse_grant
from nacento_sync.results import StorageFailure

TO = " TO `nacento`@`%`"


def test_the_table_names_are_the_adapters_own():
    from nacento_sync import magento
    from nacento_sync.asyncmode import bulk

    assert (grants.META_TABLE, grants.BULK_TABLE, grants.OPERATION_TABLE) == (
        magento.META_TABLE, bulk.BULK_TABLE, bulk.OPERATION_TABLE)


@pytest.mark.parametrize(("line", "expected"), [
    ("GRANT ALL PRIVILEGES ON *.*" + TO + " WITH GRANT OPTION", GrantLine(frozenset({"ALL"}), None, None)),
    ("GRANT ALL ON `shop`.*" + TO, GrantLine(frozenset({"ALL"}), "shop", None)),
    ("GRANT SELECT, INSERT ON `shop`.*" + TO, GrantLine(frozenset({"SELECT", "INSERT"}), "shop", None)),
    ("GRANT SELECT,INSERT,UPDATE ON `shop`.`store`" + TO,  # MySQL 8 prints no spaces
     GrantLine(frozenset({"SELECT", "INSERT", "UPDATE"}), "shop", "store")),
    ("GRANT SELECT ON `my\\_shop`.*" + TO, GrantLine(frozenset({"SELECT"}), "my\\_shop", None)),
    ("GRANT SELECT ON shop.store" + TO, GrantLine(frozenset({"SELECT"}), "shop", "store")),
    ("GRANT SELECT ON TABLE `shop`.`store`" + TO, GrantLine(frozenset({"SELECT"}), "shop", "store")),
    ("GRANT DELETE ON `we``ird`.`t on x`" + TO, GrantLine(frozenset({"DELETE"}), "we`ird", "t on x")),
    ("GRANT SELECT (`sku`), INSERT ON `shop`.`catalog_product_entity`" + TO,  # column-level: left out
     GrantLine(frozenset({"INSERT"}), "shop", "catalog_product_entity")),
    ("GRANT USAGE ON *.* TO `nacento`@`%` IDENTIFIED BY PASSWORD '*15CCA1FCD17FE705F7857C47F6B3CCD2DB47D2B9'",
     GrantLine(frozenset(), None, None)),
    ("grant lock tables, select on `shop`.*" + TO, GrantLine(frozenset({"LOCK TABLES", "SELECT"}), "shop", None)),
])
def test_parse_grant(line, expected):
    assert parse_grant(line) == expected


@pytest.mark.parametrize("line", [
    "GRANT `nacento_role` TO `nacento`@`%`",  # a role membership: the role's lines are listed when active
    "GRANT EXECUTE ON PROCEDURE `shop`.`p`" + TO,
    "GRANT EXECUTE ON FUNCTION `shop`.`f`" + TO,
    "GRANT PROXY ON ''@'%'" + TO,
    "SET DEFAULT ROLE `nacento_role` FOR `nacento`@`%`",
])
def test_lines_that_grant_no_table_privilege(line):
    assert parse_grant(line) is None


@pytest.mark.parametrize("line", ["GRANT SELECT ON `shop`" + TO, "GRANT SELECT ON `shop`.`t`",
                                  "GRANT SELECT ON `shop`.`t` FROM x"])
def test_unreadable_lines_raise(line):
    with pytest.raises(ValueError):
        parse_grant(line)


SYNC = grants.needed((grants.SYNC,), mysql=False)


def _missing(*lines: str, database: str = "shop", prefix: str = "", wanted=SYNC):
    return missing_privileges([*lines], database, prefix, wanted)


def _table_grants(database: str = "shop", prefix: str = "", wanted=SYNC) -> list[str]:
    return [s.replace("'nacento'@'%'", "`nacento`@`%`") for s in grants.statements(database, prefix, "'nacento'@'%'",
                                                                                  wanted)]


def test_the_documented_statements_are_exactly_enough():
    assert _missing(*_table_grants()) == {}
    assert _missing(*_table_grants(prefix="mg_"), prefix="mg_") == {}
    assert _missing(*_table_grants(prefix="mg_")) != {}  # another prefix's tables


def test_each_missing_privilege_is_named_per_table():
    lines = [line.replace("SELECT, INSERT, UPDATE, DELETE ON `shop`.`catalog_product_entity_media_gallery`",
                          "SELECT, INSERT, UPDATE ON `shop`.`catalog_product_entity_media_gallery`")
             for line in _table_grants()]
    assert _missing(*lines) == {"catalog_product_entity_media_gallery": ("DELETE",)}
    assert _missing("GRANT USAGE ON *.*" + TO) == {f"{t}": p for t, p in grants.by_table(SYNC).items()}


def test_global_and_database_level_grants_cover_every_table():
    assert _missing("GRANT ALL PRIVILEGES ON *.*" + TO) == {}
    assert _missing("GRANT SELECT, INSERT, UPDATE, DELETE ON *.*" + TO) == {}
    assert _missing("GRANT ALL ON `shop`.*" + TO) == {}
    assert _missing("GRANT SELECT, INSERT, UPDATE ON `shop`.*" + TO, "GRANT DELETE ON `shop`.*" + TO) == {}
    assert _missing("GRANT ALL ON `other`.*" + TO) != {}


def test_database_names_are_patterns_with_escapes():
    assert _missing("GRANT ALL ON `my\\_shop`.*" + TO, database="my_shop") == {}
    assert _missing("GRANT ALL ON `my\\_shop`.*" + TO, database="myXshop") != {}  # escaped: literal
    assert _missing("GRANT ALL ON `my_shop`.*" + TO, database="myXshop") == {}  # unescaped: any character
    assert _missing("GRANT ALL ON `shop%`.*" + TO, database="shop_2") == {}
    assert _missing("GRANT ALL ON `shop%`.*" + TO, database="old_shop") != {}


def test_table_level_names_are_literal():
    lines = [line.replace("`shop`", "`my_shop`") for line in _table_grants()]
    assert _missing(*lines, database="my_shop") == {}
    assert _missing(*lines, database="myXshop") != {}


def test_column_level_and_unreadable_lines_grant_nothing():
    lines = [*_table_grants(), "GRANT garbage"]
    assert _missing(*lines) == {}
    lines = [line for line in _table_grants() if "`store`" not in line]
    lines.append("GRANT SELECT (`code`) ON `shop`.`store`" + TO)
    assert _missing(*lines) == {"store": ("SELECT",)}


def test_mysql_needs_update_for_select_for_update_and_async_the_bulk_tables():
    mysql = grants.needed((grants.SYNC,), mysql=True)
    assert _missing(*_table_grants(), wanted=mysql) == {"catalog_product_entity": ("UPDATE",)}
    both = grants.needed((grants.SYNC, grants.ASYNC), mysql=False)
    assert _missing(*_table_grants(), wanted=both) == {"magento_bulk": ("SELECT", "INSERT"),
                                                       "magento_operation": ("SELECT", "INSERT", "UPDATE")}


def test_statements_quote_and_prefix():
    (line,) = grants.statements("sh`op", "mg_", "'u'@'%'", (grants.Grant(("SELECT",), "store", "why"),))
    assert line == "GRANT SELECT ON `sh``op`.`mg_store` TO 'u'@'%'"


def test_privileges_check_names_the_grant_in_its_hint():
    check = doctor.privileges_check({"catalog_product_entity_media_gallery": ("DELETE",)}, "shop", "'u'@'%'",
                                    (grants.SYNC,))
    assert not check.ok and "DELETE on catalog_product_entity_media_gallery" in check.detail
    assert check.hint == ("as an administrator: GRANT DELETE ON `shop`.`catalog_product_entity_media_gallery` "
                          "TO 'u'@'%';")
    assert doctor.privileges_check({}, "shop", "'u'@'%'", (grants.SYNC,)).ok
    later = doctor.privileges_check({"nacento_media_gallery_meta": ("SELECT",)}, "shop", "'u'@'%'", (grants.SYNC,),
                                    absent=("nacento_media_gallery_meta",))
    assert (later.hint or "").startswith("run `nacento-sync schema install` first")


def test_account_sql():
    assert doctor.account_sql("nacento@10.0.0.%") == "'nacento'@'10.0.0.%'"
    assert doctor.account_sql("o'brien@%") == "'o''brien'@'%'"


KEYS = {"/a/b/1.jpg": "media/catalog/product/a/b/1.jpg", "/a/b/2.jpg": "media/catalog/product/a/b/2.jpg"}


def test_sample_image_rules():
    assert doctor.sample_check({}, {}).info
    check = doctor.sample_check({"/a/b/1.jpg": "etag", "/a/b/2.jpg": "etag2"}, KEYS)
    assert check.ok and not check.info
    check = doctor.sample_check({"/a/b/1.jpg": None, "/a/b/2.jpg": "etag2"}, KEYS)
    assert check.ok and check.info and "media/catalog/product/a/b/1.jpg" in check.detail
    check = doctor.sample_check({"/a/b/1.jpg": None, "/a/b/2.jpg": None}, KEYS)
    assert not check.ok and "storage.prefix" in (check.hint or "")
    check = doctor.sample_check({"/a/b/1.jpg": StorageFailure("k", "HTTP 403 AccessDenied")}, KEYS)
    assert not check.ok and "s3:GetObject" in (check.hint or "")


def test_information_lines_never_fail():
    infos = [doctor.charset_check({"label": "utf8mb3"}), doctor.cache_folder_check([], "cache/"),
             doctor.queue_check(None, "q", "amqp://h/"), doctor.sample_check({}, {})]
    assert all(c.ok and c.info for c in infos)
    assert doctor.report_json(infos)["ok"] is True
    assert doctor.report_json([*infos, doctor.meta_check(False, "t")])["ok"] is False


def test_purge_and_meta_rules():
    assert doctor.purge_check(204, "cache/").ok
    denied = doctor.purge_check(403, "cache/")
    assert not denied.ok and "s3:DeleteObject" in (denied.hint or "")
    assert doctor.meta_check(False, "nacento_media_gallery_meta").hint == "nacento-sync schema install"


def test_skipped_lines_are_not_ok_and_say_why():
    line = doctor.skipped("meta table", "database unreachable")
    assert not line.ok and line.detail == "not checked: database unreachable"


def test_config_detail_lists_the_sources_given():
    assert doctor.config_detail("x.yaml", True, None) == "config file x.yaml"
    detail = doctor.config_detail("x.yaml", True, {"database.password": "environment", "sync.mode": "default"})
    assert detail == "config file x.yaml; values: database.password (environment)"


def test_the_readme_shows_exactly_the_list():
    """README's "Database privileges" holds every statement of the list (merged per table and scope)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Database privileges", 1)[1].split("\n### ", 1)[0]
    shown = {line.rstrip(";") for line in section.splitlines() if line.startswith("GRANT ")}
    expected = set()
    for scope in (grants.SYNC, grants.ASYNC, grants.SCHEMA):
        for mysql_only in (False, True):
            wanted = tuple(g for g in grants.needed((scope,)) if g.mysql_only == mysql_only)
            expected.update(grants.statements("magento", "", "'nacento'@'%'", wanted))
    assert shown == expected

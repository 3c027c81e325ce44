"""Magento's own tables nacento-sync touches, with seed data, for tests, the demo and the benchmark.

`create_magento_store()` drops and recreates a database (default character set ``utf8mb3``, as a Magento
install's is) and creates Magento's tables from the DDL generated from Magento's own ``db_schema.xml``:
``<repo>/../shared/magento-schema/ce.sql`` or ``ee.sql`` (folder overridable with
``$NACENTO_MAGENTO_SCHEMA_DIR``; see its README). Only the DDL comes from those files; this module adds:

- the seed data: ``store_website``, ``store_group``, ``store`` (ids 0 and 1; store 0 = ``admin``,
  store 1 = ``default``); ``eav_entity_type`` (``catalog_category`` = 3, ``catalog_product`` = 4) and
  ``eav_attribute`` with the gallery, role and role-label attributes plus a category ``image`` attribute,
  at ids that differ from a stock install (so hard-coded ids fail; look them up by code and entity type);
  on Adobe Commerce the ``flag`` row ``staging`` with ``current_version`` 1750000000;
- one hand-written extra the files cannot express (Magento's mview creates it, not a schema file):
  ``catalog_product_gallery_cl``, a changelog fed by AFTER INSERT/UPDATE/DELETE triggers on
  ``..._media_gallery_value`` like Magento's mview triggers (rows removed by an FK cascade fire no trigger).

Variants: ``"ce"`` (Open Source, link field ``entity_id``) and ``"ee"`` (Adobe Commerce: ``row_id`` in
``catalog_product_entity`` and in the value tables). A table prefix (``prefix="mg_"``) renames every table
(CREATE TABLE and REFERENCES) and, as Magento does, every key and trigger name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

#: Variants create_magento_store() understands.
VARIANTS = ("ce", "ee")
#: Adobe Commerce's "forever" updated_in, and the current_version seeded in its `flag` row.
MAX_VERSION = 2147483647
EE_CURRENT_VERSION = 1750000000

#: Role attributes (varchar, frontend_input media_image) and their label attributes.
ROLE_CODES: tuple[str, ...] = ("image", "small_image", "thumbnail", "swatch_image")
LABEL_CODES: tuple[str, ...] = ("image_label", "small_image_label", "thumbnail_label")

# Each row: attribute_id, entity_type_id, code, backend_type, frontend_input, frontend_label, frontend_model.
# Ids are deliberately not those of a stock install (image 87, small_image 88, thumbnail 89,
# media_gallery 90): 87 is the *category* image here, so code that hard-codes ids or forgets to
# filter by entity type breaks.
_ATTRIBUTES: tuple[tuple[int, int, str, str, str, str, str | None], ...] = (
    (87, 3, "image", "varchar", "image", "Category Image", None),
    (88, 4, "swatch_image", "varchar", "media_image", "Swatch",
     "Magento\\Catalog\\Model\\Product\\Attribute\\Frontend\\Image"),
    (89, 4, "media_gallery", "static", "gallery", "Media Gallery", None),
    (90, 4, "thumbnail", "varchar", "media_image", "Thumbnail",
     "Magento\\Catalog\\Model\\Product\\Attribute\\Frontend\\Image"),
    (91, 4, "image_label", "varchar", "text", "Base Image Label", None),
    (92, 4, "small_image", "varchar", "media_image", "Small Image",
     "Magento\\Catalog\\Model\\Product\\Attribute\\Frontend\\Image"),
    (93, 4, "image", "varchar", "media_image", "Base Image",
     "Magento\\Catalog\\Model\\Product\\Attribute\\Frontend\\Image"),
    (94, 4, "small_image_label", "varchar", "text", "Small Image Label", None),
    (95, 4, "thumbnail_label", "varchar", "text", "Thumbnail Label", None),
)


class SchemaFilesMissing(RuntimeError):
    """Magento's DDL files are not where they are looked for (see `schema_dir`)."""


#: Environment variable naming the folder that holds Magento's ``ce.sql`` and ``ee.sql``.
SCHEMA_DIR_ENV = "NACENTO_MAGENTO_SCHEMA_DIR"
#: Where CI clones them: ``shared/`` beside the repository.
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "magento-schema"


def schema_dir() -> Path:
    """The folder of Magento's DDL files: ``$NACENTO_MAGENTO_SCHEMA_DIR``, else ``<repo>/../shared/magento-schema``.

    Raises SchemaFilesMissing (the fixtures turn it into a failed test, never a skip) when a file is absent.
    """
    env = os.environ.get(SCHEMA_DIR_ENV)
    folder = Path(env) if env else DEFAULT_SCHEMA_DIR
    missing = [name for name in ("ce.sql", "ee.sql") if not (folder / f"{name}").is_file()]
    if missing:
        origin = f"${SCHEMA_DIR_ENV}" if env else f"the default (set ${SCHEMA_DIR_ENV} to override)"
        raise SchemaFilesMissing(
            f"Magento's schema file {folder / missing[0]} not found ({origin}): the tests create Magento's "
            "tables from ce.sql / ee.sql, generated from Magento's db_schema.xml; clone the shared material "
            f"beside the repository or point ${SCHEMA_DIR_ENV} at its magento-schema folder"
        )
    return folder


def magento_ddl(variant: str) -> tuple[str, ...]:
    """The statements of ``<schema_dir()>/<variant>.sql`` (SET and CREATE TABLE), comments removed."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return _read_ddl(schema_dir() / f"{variant}.sql")


@functools.cache
def _read_ddl(path: Path) -> tuple[str, ...]:
    text = path.read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return tuple(s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip())


def table_names(variant: str) -> tuple[str, ...]:
    """Logical names of every table a store of `variant` has, in creation order:
    the file's tables, then the hand-written extras."""
    created = [m.group(1) for s in magento_ddl(variant) if (m := re.match(r"CREATE TABLE `(\w+)`", s))]
    return (*created, *EXTRA_TABLES)


# Hand-written extras: what Magento's schema files cannot express. Magento's mview creates the changelog
# table and its triggers when an indexer is set to "Update by Schedule"; the tests keep one (for the
# gallery value table) to prove that deletes are explicit, since a foreign-key cascade fires no trigger.
EXTRA_TABLES: tuple[str, ...] = ("catalog_product_gallery_cl",)
_CHANGELOG_DDL = """CREATE TABLE `{table}` (
  `version_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Version ID',
  `entity_id` int unsigned NOT NULL DEFAULT 0 COMMENT 'Entity ID',
  PRIMARY KEY (`version_id`)
) ENGINE=InnoDB COMMENT='{table}'"""

_COLUMNS_WATCHED = ("value_id", "store_id", "@L", "label", "position", "disabled")


def _short_name(name: str, kind: str) -> str:
    """Magento's rule for identifiers over 64 characters: ``<kind>_`` + upper-case md5 of the full name
    (kind FK, UNQ, IDX or TRG), so with a prefix some key names become e.g. ``UNQ_9FCE…``."""
    return name if len(name) <= 64 else f"{kind}_{hashlib.md5(name.encode()).hexdigest().upper()}"


def _with_prefix(sql: str, prefix: str) -> str:
    """Prefix every table name (CREATE TABLE, REFERENCES) and, as Magento does, every key name."""
    if not prefix:
        return sql
    sql = re.sub(r"\b(CREATE TABLE|REFERENCES) `(\w+)`", lambda m: f"{m.group(1)} `{prefix}{m.group(2)}`", sql)

    def key(line: str) -> str:
        kind = "FK" if "FOREIGN KEY" in line else "UNQ" if "UNIQUE" in line else "IDX"
        return re.sub(r"^(\s*(?:CONSTRAINT|INDEX) )`(\w+)`",
                      lambda m: f"{m.group(1)}`{_short_name(prefix.upper() + m.group(2), kind)}`", line)

    return "\n".join(key(line) for line in sql.split("\n"))


@dataclass(frozen=True)
class ProductRef:
    """A product created by `MagentoStore.add_product`.

    `link_id` is the value of the link field in the row active now (`entity_id` on Open Source, the
    active `row_id` on Adobe Commerce); `link_ids` lists every row of the product (staging rows too).
    """

    sku: str
    entity_id: int
    link_id: int
    link_ids: tuple[int, ...] = ()


@dataclass
class MagentoStore:
    """A test Magento database: its variant, table prefix, name and an autocommit pymysql connection."""

    variant: str
    prefix: str
    database: str
    conn: pymysql.connections.Connection

    # -- naming ----------------------------------------------------------------------------------------

    def t(self, name: str) -> str:
        """The real (prefixed) name of logical table `name`, e.g. ``t("flag") == "mg_flag"``."""
        return f"{self.prefix}{name}"

    @property
    def link(self) -> str:
        """The link field of the product value tables: ``entity_id`` (ce) or ``row_id`` (ee)."""
        return "row_id" if self.variant == "ee" else "entity_id"

    @property
    def tables(self) -> tuple[str, ...]:
        """Logical names of every table this store has, parents first."""
        return table_names(self.variant)

    # -- raw SQL ---------------------------------------------------------------------------------------

    def execute(self, sql: str, args: Any = None) -> int:
        """Run one statement; returns the cursor's ``lastrowid``. Use ``{name}`` for ``t(name)``."""
        with self.conn.cursor() as cur:
            cur.execute(self._expand(sql), args)
            return int(cur.lastrowid or 0)

    def query(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts. Use ``{name}`` for ``t(name)``."""
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(self._expand(sql), args)
            return list(cur.fetchall())

    def _expand(self, sql: str) -> str:
        return re.sub(r"\{([a-z_]+)\}", lambda m: f"`{self.t(m.group(1))}`", sql)

    # -- look-ups --------------------------------------------------------------------------------------

    def attribute_id(self, code: str, entity_type: str = "catalog_product") -> int:
        """The id of attribute `code` of `entity_type`, looked up as real code must do."""
        rows = self.query(
            "SELECT a.attribute_id FROM {eav_attribute} a "
            "JOIN {eav_entity_type} et ON et.entity_type_id = a.entity_type_id "
            "WHERE et.entity_type_code = %s AND a.attribute_code = %s",
            (entity_type, code),
        )
        if not rows:
            raise KeyError(f"no attribute {code!r} for {entity_type!r}")
        return int(rows[0]["attribute_id"])

    def entity_id_of(self, link_id: int) -> int:
        """The product's entity_id for a link id (identity on Open Source)."""
        if self.variant != "ee":
            return link_id
        rows = self.query("SELECT entity_id FROM {catalog_product_entity} WHERE row_id = %s", (link_id,))
        if not rows:
            raise KeyError(f"no catalog_product_entity row_id {link_id}")
        return int(rows[0]["entity_id"])

    # -- writers ---------------------------------------------------------------------------------------

    def add_product(
        self, sku: str, *, version_rows: list[tuple[int, int]] | None = None
    ) -> ProductRef:
        """Create a simple product.

        Adobe Commerce: takes a new entity_id from ``sequence_product`` and adds one
        ``catalog_product_entity`` row per ``(created_in, updated_in)`` in `version_rows` (default: one
        row ``(1, 2147483647)``); `link_id` is the row active at the seeded current_version. Open Source
        rejects `version_rows`.
        """
        if self.variant != "ee":
            if version_rows is not None:
                raise ValueError("version_rows only exists on Adobe Commerce (variant 'ee')")
            entity_id = self.execute(
                "INSERT INTO {catalog_product_entity} (attribute_set_id, type_id, sku) "
                "VALUES (4, 'simple', %s)",
                (sku,),
            )
            return ProductRef(sku=sku, entity_id=entity_id, link_id=entity_id, link_ids=(entity_id,))
        ranges = version_rows if version_rows is not None else [(1, MAX_VERSION)]
        if not ranges:
            raise ValueError("version_rows must not be empty")
        entity_id = self.execute("INSERT INTO {sequence_product} () VALUES ()")
        row_ids = tuple(self.add_staging_row(entity_id, lo, hi, sku=sku) for lo, hi in ranges)
        active = [rid for rid, (lo, hi) in zip(row_ids, ranges, strict=True) if lo <= EE_CURRENT_VERSION < hi]
        if len(active) != 1:
            raise ValueError(f"version_rows must contain exactly one row active at {EE_CURRENT_VERSION}")
        return ProductRef(sku=sku, entity_id=entity_id, link_id=active[0], link_ids=row_ids)

    def add_staging_row(
        self, entity_id: int, created_in: int, updated_in: int, *, sku: str | None = None
    ) -> int:
        """Adobe Commerce: add a ``catalog_product_entity`` row (e.g. a scheduled update) for
        `entity_id`, copying the sku of an existing row unless `sku` is given. Returns its row_id."""
        if self.variant != "ee":
            raise ValueError("staging rows only exist on Adobe Commerce (variant 'ee')")
        if sku is None:
            rows = self.query(
                "SELECT sku FROM {catalog_product_entity} WHERE entity_id = %s ORDER BY row_id LIMIT 1",
                (entity_id,),
            )
            if not rows:
                raise KeyError(f"no product with entity_id {entity_id}")
            sku = rows[0]["sku"]
        return self.execute(
            "INSERT INTO {catalog_product_entity} (entity_id, created_in, updated_in, attribute_set_id, "
            "type_id, sku) VALUES (%s, %s, %s, 4, 'simple', %s)",
            (entity_id, created_in, updated_in, sku),
        )

    def add_gallery_entry(
        self,
        link_id: int,
        value: str,
        *,
        label: str | None = None,
        position: int | None = None,
        disabled: int = 0,
        media_type: str = "image",
        store_rows: bool = True,
        main_disabled: int = 0,
    ) -> int:
        """Add one gallery entry to a product the way Magento stores it; returns its value_id.

        Writes the ``_media_gallery`` row (`value`, `media_type`, ``disabled`` = `main_disabled`), its
        ``_value_to_entity`` link and, when `store_rows`, the store-0 ``_value`` row with `label`,
        `position` and `disabled` ("Hide from Product Page").
        """
        value_id = self.execute(
            "INSERT INTO {catalog_product_entity_media_gallery} (attribute_id, value, media_type, disabled) "
            "VALUES (%s, %s, %s, %s)",
            (self.attribute_id("media_gallery"), value, media_type, main_disabled),
        )
        self.link_entry(value_id, link_id)
        if store_rows:
            self.add_value_row(value_id, link_id, 0, label, position, disabled)
        return value_id

    def link_entry(self, value_id: int, link_id: int) -> None:
        """Link an existing gallery row to another product (row): shared entries, as old imports made."""
        self.execute(
            f"INSERT INTO {{catalog_product_entity_media_gallery_value_to_entity}} (value_id, {self.link}) "
            "VALUES (%s, %s)",
            (value_id, link_id),
        )

    def add_value_row(
        self,
        value_id: int,
        link_id: int,
        store_id: int,
        label: str | None,
        position: int | None,
        disabled: int = 0,
    ) -> int:
        """Insert a ``_media_gallery_value`` row (never an upsert: the table has no unique key)."""
        return self.execute(
            f"INSERT INTO {{catalog_product_entity_media_gallery_value}} "
            f"(value_id, store_id, {self.link}, label, position, disabled) VALUES (%s, %s, %s, %s, %s, %s)",
            (value_id, store_id, link_id, label, position, disabled),
        )

    def add_video_row(self, value_id: int, url: str, *, store_id: int = 0, title: str | None = None) -> None:
        """Attach product-video details to a gallery entry (make it with ``media_type="external-video"``)."""
        self.execute(
            "INSERT INTO {catalog_product_entity_media_gallery_value_video} "
            "(value_id, store_id, provider, url, title) VALUES (%s, %s, 'youtube', %s, %s)",
            (value_id, store_id, url, title),
        )

    def set_varchar(self, link_id: int, attribute_code: str, value: str | None, store_id: int = 0) -> None:
        """Set a product varchar attribute (roles, labels) at a store, as Magento does (upsert)."""
        self.execute(
            f"INSERT INTO {{catalog_product_entity_varchar}} (attribute_id, store_id, {self.link}, value) "
            "VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE value = VALUES(value)",
            (self.attribute_id(attribute_code), store_id, link_id, value),
        )

    def add_store(self, code: str, store_id: int | None = None) -> int:
        """Add a store view to website 1 / group 1; returns its store_id."""
        return self.execute(
            "INSERT INTO {store} (store_id, code, website_id, group_id, name, sort_order, is_active) "
            "VALUES (%s, %s, 1, 1, %s, 0, 1)",
            (store_id, code, code.title()),
        )

    # -- readers for assertions --------------------------------------------------------------------------

    def gallery(self, link_id: int) -> list[dict[str, Any]]:
        """The entries linked to a product (row), in Magento's order (position, NULLs last).

        Keys: ``value_id``, ``value``, ``media_type``, ``disabled`` (the gallery row's), ``label``,
        ``position``, ``store0_disabled`` and ``record_id`` of the store-0 ``_value`` row (lowest
        record_id if there are several; all None when there is none).
        """
        lk = self.link
        return self.query(
            "SELECT g.value_id, g.value, g.media_type, g.disabled, v.label, v.position, "
            "v.disabled AS store0_disabled, v.record_id "
            "FROM {catalog_product_entity_media_gallery} g "
            "JOIN {catalog_product_entity_media_gallery_value_to_entity} e "
            f"  ON e.value_id = g.value_id AND e.{lk} = %s "
            "LEFT JOIN {catalog_product_entity_media_gallery_value} v ON v.record_id = ("
            "  SELECT MIN(v2.record_id) FROM {catalog_product_entity_media_gallery_value} v2 "
            f"  WHERE v2.value_id = g.value_id AND v2.{lk} = e.{lk} AND v2.store_id = 0) "
            "ORDER BY v.position IS NULL, v.position, g.value_id",
            (link_id,),
        )

    def value_rows(self, link_id: int) -> list[dict[str, Any]]:
        """Every ``_media_gallery_value`` row of a product (row), by record_id."""
        return self.query(
            "SELECT record_id, value_id, store_id, label, position, disabled "
            f"FROM {{catalog_product_entity_media_gallery_value}} WHERE {self.link} = %s ORDER BY record_id",
            (link_id,),
        )

    def roles(self, link_id: int) -> dict[tuple[str, int], str | None]:
        """``{(attribute_code, store_id): value}`` for the role and role-label attributes of a product."""
        codes = ROLE_CODES + LABEL_CODES
        rows = self.query(
            "SELECT a.attribute_code, v.store_id, v.value FROM {catalog_product_entity_varchar} v "
            "JOIN {eav_attribute} a ON a.attribute_id = v.attribute_id "
            "JOIN {eav_entity_type} et ON et.entity_type_id = a.entity_type_id "
            f"WHERE et.entity_type_code = 'catalog_product' AND v.{self.link} = %s "
            f"AND a.attribute_code IN ({', '.join(['%s'] * len(codes))})",
            (link_id, *codes),
        )
        return {(r["attribute_code"], int(r["store_id"])): r["value"] for r in rows}

    def changelog(self) -> list[int]:
        """entity_ids recorded by the gallery changelog triggers, oldest first."""
        rows = self.query("SELECT entity_id FROM {catalog_product_gallery_cl} ORDER BY version_id")
        return [int(r["entity_id"]) for r in rows]

    def clear_changelog(self) -> None:
        """Empty the changelog (e.g. after arranging a test's starting state)."""
        self.execute("DELETE FROM {catalog_product_gallery_cl}")

    def table_counts(self) -> dict[str, int]:
        """``{logical table name: exact row count}`` for every table of this store."""
        counts = {}
        for name in self.tables:
            counts[name] = int(self.query(f"SELECT COUNT(*) AS n FROM `{self.t(name)}`")[0]["n"])
        return counts

    def drop(self) -> None:
        """Drop the database and close the connection."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        finally:
            self.conn.close()


def _trigger_sql(prefix: str, link: str) -> list[str]:
    table = f"{prefix}catalog_product_entity_media_gallery_value"
    cl = f"`{prefix}catalog_product_gallery_cl`"
    cpe = f"`{prefix}catalog_product_entity`"

    def record(row: str) -> str:
        if link == "row_id":
            return f"INSERT INTO {cl} (entity_id) SELECT entity_id FROM {cpe} WHERE row_id = {row}.row_id;"
        return f"INSERT INTO {cl} (entity_id) VALUES ({row}.entity_id);"

    changed = " OR ".join(f"NOT(NEW.`{c}` <=> OLD.`{c}`)" for c in _COLUMNS_WATCHED).replace("@L", link)
    bodies = {
        "insert": record("NEW"),
        "update": f"IF ({changed}) THEN {record('NEW')} IF NOT(NEW.`{link}` <=> OLD.`{link}`) THEN "
        f"{record('OLD')} END IF; END IF;",
        "delete": record("OLD"),
    }
    return [
        f"CREATE TRIGGER `{_short_name(f'trg_{table}_after_{event}', 'TRG')}` AFTER {event.upper()} "
        f"ON `{table}` FOR EACH ROW BEGIN {body} END"
        for event, body in bodies.items()
    ]


def schema_statements(variant: str, prefix: str = "") -> list[str]:
    """The statements that create a variant's tables with `prefix`: Magento's file (which starts with
    ``SET FOREIGN_KEY_CHECKS = 0``), then the changelog table and its triggers (no seed data)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if not re.fullmatch(r"[A-Za-z0-9_]*", prefix):
        raise ValueError(f"unsupported table prefix {prefix!r}")
    link = "row_id" if variant == "ee" else "entity_id"
    tables = [_with_prefix(sql, prefix) for sql in magento_ddl(variant)]
    changelog = _CHANGELOG_DDL.format(table=f"{prefix}catalog_product_gallery_cl")
    return [*tables, changelog, *_trigger_sql(prefix, link)]


def _seed(store: MagentoStore) -> None:
    # Magento inserts the admin website/group/store with id 0 into AUTO_INCREMENT columns this way.
    store.execute("SET @nacento_sql_mode = @@SESSION.sql_mode")
    store.execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
    store.execute(
        "INSERT INTO {store_website} (website_id, code, name, sort_order, default_group_id, is_default) "
        "VALUES (0, 'admin', 'Admin', 0, 0, 0), (1, 'base', 'Main Website', 0, 1, 1)"
    )
    store.execute(
        "INSERT INTO {store_group} (group_id, website_id, name, root_category_id, default_store_id, code) "
        "VALUES (0, 0, 'Default', 0, 0, 'default'), (1, 1, 'Main Website Store', 2, 1, 'main_website_store')"
    )
    store.execute(
        "INSERT INTO {store} (store_id, code, website_id, group_id, name, sort_order, is_active) "
        "VALUES (0, 'admin', 0, 0, 'Admin', 0, 1), (1, 'default', 1, 1, 'Default Store View', 0, 1)"
    )
    rm = "Magento\\Catalog\\Model\\ResourceModel\\"
    entity_types = [
        (3, "catalog_category", rm + "Category", rm + "Eav\\Attribute", "catalog_category_entity", 3,
         "catalog_eav_attribute", rm + "Category\\Attribute\\Collection"),
        (4, "catalog_product", rm + "Product", rm + "Eav\\Attribute", "catalog_product_entity", 4,
         "catalog_eav_attribute", rm + "Product\\Attribute\\Collection"),
    ]
    with store.conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO `{store.t('eav_entity_type')}` (entity_type_id, entity_type_code, entity_model, "
            "attribute_model, entity_table, default_attribute_set_id, additional_attribute_table, "
            "entity_attribute_collection) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            entity_types,
        )
        cur.executemany(
            f"INSERT INTO `{store.t('eav_attribute')}` (attribute_id, entity_type_id, attribute_code, "
            "backend_type, frontend_input, frontend_label, frontend_model) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            _ATTRIBUTES,
        )
    if store.variant == "ee":
        store.execute(
            "INSERT INTO {flag} (flag_code, state, flag_data) VALUES ('staging', 0, %s)",
            (f'{{"current_version":"{EE_CURRENT_VERSION}"}}',),
        )
    store.execute("SET SESSION sql_mode = @nacento_sql_mode")


def create_magento_store(
    conn_params: dict[str, Any], database: str, variant: str, prefix: str = ""
) -> MagentoStore:
    """Drop and recreate `database` (utf8mb3), create Magento's tables of `variant` ("ce" | "ee") from its
    schema file with table `prefix`, seed stores/entity types/attributes (and the staging flag on "ee").
    Raises SchemaFilesMissing when the file is not found (see `schema_dir`).

    `conn_params` are pymysql.connect() keyword arguments (host, port, user, password, ...), without
    a database. The returned store's connection is in autocommit mode and uses the new database.
    """
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", database):
        raise ValueError(f"unsupported database name {database!r}")
    statements = schema_statements(variant, prefix)
    params = {k: v for k, v in conn_params.items() if k not in ("database", "db")}
    params.setdefault("charset", "utf8mb4")
    conn = pymysql.connect(autocommit=True, **params)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci")
        conn.select_db(database)
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
            # The file turns the checks off (some keys point at tables created later); our own inserts,
            # and every test after them, run with them on, as Magento's sessions do.
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        store = MagentoStore(variant=variant, prefix=prefix, database=database, conn=conn)
        _seed(store)
    except BaseException:
        conn.close()
        raise
    return store

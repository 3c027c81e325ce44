"""A faithful stand-in for the Magento 2.4.8 tables nacento-sync touches, for tests and the demo.

`create_magento_store()` drops and recreates a database and creates, with Magento's own column types,
defaults, keys, indexes and ``ON DELETE CASCADE`` foreign keys (InnoDB, utf8mb4_general_ci):

- ``store_website``, ``store_group``, ``store`` (ids 0 and 1; store 0 = ``admin``, store 1 = ``default``)
- ``eav_entity_type`` (``catalog_category`` = 3, ``catalog_product`` = 4) and ``eav_attribute`` with the
  gallery, role and role-label attributes plus a category ``image`` attribute, at ids that differ from a
  stock install (so hard-coded ids fail; look them up by code and entity type)
- ``catalog_product_entity`` (+ ``sequence_product`` for Adobe Commerce), ``catalog_product_entity_varchar``
- ``catalog_product_entity_media_gallery``, ``..._media_gallery_value``,
  ``..._media_gallery_value_to_entity``, ``..._media_gallery_value_video``
- ``flag`` (Adobe Commerce: row ``staging`` with ``current_version`` 1750000000)
- ``catalog_product_gallery_cl``: a changelog fed by AFTER INSERT/UPDATE/DELETE triggers on
  ``..._media_gallery_value`` like Magento's mview triggers (rows removed by an FK cascade fire no trigger).
- ``magento_bulk`` and ``magento_operation`` (Magento_AsynchronousOperations: bulk tracking for the
  asynchronous mode), with the unique bulk UUID and the operation → bulk foreign key.

Variants: ``"ce"`` (Open Source, link field ``entity_id``) and ``"ee"`` (Adobe Commerce: ``row_id`` in
``catalog_product_entity`` and in the value tables). Any table prefix (``prefix="mg_"``) applies to every
table, index, foreign key and trigger name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors

#: Variants create_magento_store() understands.
VARIANTS = ("ce", "ee")
#: Adobe Commerce's "forever" updated_in, and the current_version seeded in its `flag` row.
MAX_VERSION = 2147483647
EE_CURRENT_VERSION = 1750000000

#: Logical (unprefixed) names of every table created, parents first.
CE_TABLES: tuple[str, ...] = (
    "store_website",
    "store_group",
    "store",
    "eav_entity_type",
    "eav_attribute",
    "catalog_product_entity",
    "catalog_product_entity_varchar",
    "catalog_product_entity_media_gallery",
    "catalog_product_entity_media_gallery_value",
    "catalog_product_entity_media_gallery_value_to_entity",
    "catalog_product_entity_media_gallery_value_video",
    "flag",
    "catalog_product_gallery_cl",
    "magento_bulk",
    "magento_operation",
)
EE_TABLES: tuple[str, ...] = CE_TABLES[:5] + ("sequence_product",) + CE_TABLES[5:]

#: Role attributes (varchar, frontend_input media_image) and their label attributes.
ROLE_CODES: tuple[str, ...] = ("image", "small_image", "thumbnail", "swatch_image")
LABEL_CODES: tuple[str, ...] = ("image_label", "small_image_label", "thumbnail_label")

# (attribute_id, entity_type_id, code, backend_type, frontend_input, frontend_label, frontend_model)
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

_TABLE_OPTS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"

# DDL templates. Markers: @t:name -> prefixed table name; @k:NAME -> prefixed index/constraint name;
# @L -> link column (entity_id | row_id); @LU / @LS -> its long / short form inside Magento's key names
# (ENTITY_ID / ENTT_ID on Open Source, ROW_ID / ROW_ID on Adobe Commerce).
_DDL_STORE = (
    """CREATE TABLE @t:store_website (
  `website_id` smallint unsigned NOT NULL AUTO_INCREMENT COMMENT 'Website ID',
  `code` varchar(32) DEFAULT NULL COMMENT 'Code',
  `name` varchar(64) DEFAULT NULL COMMENT 'Website Name',
  `sort_order` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Sort Order',
  `default_group_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Default Group ID',
  `is_default` smallint unsigned DEFAULT 0 COMMENT 'Defines Is Website Default',
  PRIMARY KEY (`website_id`),
  UNIQUE KEY @k:STORE_WEBSITE_CODE (`code`),
  KEY @k:STORE_WEBSITE_SORT_ORDER (`sort_order`),
  KEY @k:STORE_WEBSITE_DEFAULT_GROUP_ID (`default_group_id`)
) COMMENT='Websites'""",
    """CREATE TABLE @t:store_group (
  `group_id` smallint unsigned NOT NULL AUTO_INCREMENT COMMENT 'Group ID',
  `website_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Website ID',
  `name` varchar(255) NOT NULL COMMENT 'Store Group Name',
  `root_category_id` int unsigned NOT NULL DEFAULT 0 COMMENT 'Root Category ID',
  `default_store_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Default Store ID',
  `code` varchar(32) DEFAULT NULL COMMENT 'Store group unique code',
  PRIMARY KEY (`group_id`),
  UNIQUE KEY @k:STORE_GROUP_CODE (`code`),
  KEY @k:STORE_GROUP_WEBSITE_ID (`website_id`),
  KEY @k:STORE_GROUP_DEFAULT_STORE_ID (`default_store_id`),
  CONSTRAINT @k:STORE_GROUP_WEBSITE_ID_STORE_WEBSITE_WEBSITE_ID FOREIGN KEY (`website_id`)
    REFERENCES @t:store_website (`website_id`) ON DELETE CASCADE
) COMMENT='Store Groups'""",
    """CREATE TABLE @t:store (
  `store_id` smallint unsigned NOT NULL AUTO_INCREMENT COMMENT 'Store ID',
  `code` varchar(32) DEFAULT NULL COMMENT 'Code',
  `website_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Website ID',
  `group_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Group ID',
  `name` varchar(255) NOT NULL COMMENT 'Store Name',
  `sort_order` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Store Sort Order',
  `is_active` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Store Activity',
  PRIMARY KEY (`store_id`),
  UNIQUE KEY @k:STORE_CODE (`code`),
  KEY @k:STORE_WEBSITE_ID (`website_id`),
  KEY @k:STORE_IS_ACTIVE_SORT_ORDER (`is_active`, `sort_order`),
  KEY @k:STORE_GROUP_ID (`group_id`),
  CONSTRAINT @k:STORE_GROUP_ID_STORE_GROUP_GROUP_ID FOREIGN KEY (`group_id`)
    REFERENCES @t:store_group (`group_id`) ON DELETE CASCADE,
  CONSTRAINT @k:STORE_WEBSITE_ID_STORE_WEBSITE_WEBSITE_ID FOREIGN KEY (`website_id`)
    REFERENCES @t:store_website (`website_id`) ON DELETE CASCADE
) COMMENT='Stores'""",
)

_DDL_EAV = (
    """CREATE TABLE @t:eav_entity_type (
  `entity_type_id` smallint unsigned NOT NULL AUTO_INCREMENT COMMENT 'Entity Type ID',
  `entity_type_code` varchar(50) NOT NULL COMMENT 'Entity Type Code',
  `entity_model` varchar(255) NOT NULL COMMENT 'Entity Model',
  `attribute_model` varchar(255) DEFAULT NULL COMMENT 'Attribute Model',
  `entity_table` varchar(255) DEFAULT NULL COMMENT 'Entity Table',
  `value_table_prefix` varchar(255) DEFAULT NULL COMMENT 'Value Table Prefix',
  `entity_id_field` varchar(255) DEFAULT NULL COMMENT 'Entity ID Field',
  `is_data_sharing` smallint unsigned NOT NULL DEFAULT 1 COMMENT 'Defines Is Data Sharing',
  `data_sharing_key` varchar(100) DEFAULT 'default' COMMENT 'Data Sharing Key',
  `default_attribute_set_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Default Attribute Set ID',
  `increment_model` varchar(255) DEFAULT NULL COMMENT 'Increment Model',
  `increment_per_store` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Increment Per Store',
  `increment_pad_length` smallint unsigned NOT NULL DEFAULT 8 COMMENT 'Increment Pad Length',
  `increment_pad_char` varchar(1) NOT NULL DEFAULT '0' COMMENT 'Increment Pad Char',
  `additional_attribute_table` varchar(255) DEFAULT NULL COMMENT 'Additional Attribute Table',
  `entity_attribute_collection` varchar(255) DEFAULT NULL COMMENT 'Entity Attribute Collection',
  PRIMARY KEY (`entity_type_id`),
  KEY @k:EAV_ENTITY_TYPE_ENTITY_TYPE_CODE (`entity_type_code`)
) COMMENT='Eav Entity Type'""",
    """CREATE TABLE @t:eav_attribute (
  `attribute_id` smallint unsigned NOT NULL AUTO_INCREMENT COMMENT 'Attribute ID',
  `entity_type_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Entity Type ID',
  `attribute_code` varchar(255) NOT NULL COMMENT 'Attribute Code',
  `attribute_model` varchar(255) DEFAULT NULL COMMENT 'Attribute Model',
  `backend_model` varchar(255) DEFAULT NULL COMMENT 'Backend Model',
  `backend_type` varchar(8) NOT NULL DEFAULT 'static' COMMENT 'Backend Type',
  `backend_table` varchar(255) DEFAULT NULL COMMENT 'Backend Table',
  `frontend_model` varchar(255) DEFAULT NULL COMMENT 'Frontend Model',
  `frontend_input` varchar(50) DEFAULT NULL COMMENT 'Frontend Input',
  `frontend_label` varchar(255) DEFAULT NULL COMMENT 'Frontend Label',
  `frontend_class` varchar(255) DEFAULT NULL COMMENT 'Frontend Class',
  `source_model` varchar(255) DEFAULT NULL COMMENT 'Source Model',
  `is_required` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Defines Is Required',
  `is_user_defined` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Defines Is User Defined',
  `default_value` text DEFAULT NULL COMMENT 'Default Value',
  `is_unique` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Defines Is Unique',
  `note` varchar(255) DEFAULT NULL COMMENT 'Note',
  PRIMARY KEY (`attribute_id`),
  UNIQUE KEY @k:EAV_ATTRIBUTE_ENTITY_TYPE_ID_ATTRIBUTE_CODE (`entity_type_id`, `attribute_code`),
  KEY @k:EAV_ATTRIBUTE_FRONTEND_INPUT_ENTITY_TYPE_ID_IS_USER_DEFINED
    (`frontend_input`, `entity_type_id`, `is_user_defined`),
  CONSTRAINT @k:EAV_ATTRIBUTE_ENTITY_TYPE_ID_EAV_ENTITY_TYPE_ENTITY_TYPE_ID FOREIGN KEY (`entity_type_id`)
    REFERENCES @t:eav_entity_type (`entity_type_id`) ON DELETE CASCADE
) COMMENT='Eav Attribute'""",
)

_PRODUCT_COLUMNS = """
  `attribute_set_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Attribute Set ID',
  `type_id` varchar(32) NOT NULL DEFAULT 'simple' COMMENT 'Type ID',
  `sku` varchar(64) NOT NULL COMMENT 'SKU',
  `has_options` smallint NOT NULL DEFAULT 0 COMMENT 'Has Options',
  `required_options` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Required Options',
  `created_at` timestamp NOT NULL DEFAULT current_timestamp() COMMENT 'Creation Time',
  `updated_at` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()
    COMMENT 'Update Time',"""

_DDL_PRODUCT_CE = (
    """CREATE TABLE @t:catalog_product_entity (
  `entity_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Entity ID',"""
    + _PRODUCT_COLUMNS
    + """
  PRIMARY KEY (`entity_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_ATTRIBUTE_SET_ID (`attribute_set_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_SKU (`sku`)
) COMMENT='Catalog Product Table'""",
)

_DDL_PRODUCT_EE = (
    """CREATE TABLE @t:sequence_product (
  `sequence_value` int unsigned NOT NULL AUTO_INCREMENT,
  PRIMARY KEY (`sequence_value`)
)""",
    """CREATE TABLE @t:catalog_product_entity (
  `row_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Version Id',
  `entity_id` int unsigned NOT NULL COMMENT 'Entity ID',
  `created_in` bigint unsigned NOT NULL DEFAULT 1 COMMENT 'Update Id',
  `updated_in` bigint unsigned NOT NULL DEFAULT 2147483647 COMMENT 'Next Update Id',"""
    + _PRODUCT_COLUMNS
    + """
  PRIMARY KEY (`row_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_ATTRIBUTE_SET_ID (`attribute_set_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_SKU (`sku`),
  KEY @k:CATALOG_PRODUCT_ENTITY_ENTITY_ID_CREATED_IN_UPDATED_IN (`entity_id`, `created_in`, `updated_in`),
  KEY @k:CATALOG_PRODUCT_ENTITY_CREATED_IN (`created_in`),
  KEY @k:CATALOG_PRODUCT_ENTITY_UPDATED_IN (`updated_in`),
  CONSTRAINT @k:CATALOG_PRODUCT_ENTITY_ENTITY_ID_SEQUENCE_PRODUCT_SEQUENCE_VALUE FOREIGN KEY (`entity_id`)
    REFERENCES @t:sequence_product (`sequence_value`) ON DELETE CASCADE
) COMMENT='Catalog Product Table'""",
)

_DDL_VALUES = (
    """CREATE TABLE @t:catalog_product_entity_varchar (
  `value_id` int NOT NULL AUTO_INCREMENT COMMENT 'Value ID',
  `attribute_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Attribute ID',
  `store_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Store ID',
  `@L` int unsigned NOT NULL DEFAULT 0,
  `value` varchar(255) DEFAULT NULL COMMENT 'Value',
  PRIMARY KEY (`value_id`),
  UNIQUE KEY @k:CATALOG_PRODUCT_ENTITY_VARCHAR_@LU_ATTRIBUTE_ID_STORE_ID (`@L`, `attribute_id`, `store_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_VARCHAR_ATTRIBUTE_ID (`attribute_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_VARCHAR_STORE_ID (`store_id`),
  CONSTRAINT @k:CAT_PRD_ENTT_VCHR_ATTR_ID_EAV_ATTR_ATTR_ID FOREIGN KEY (`attribute_id`)
    REFERENCES @t:eav_attribute (`attribute_id`) ON DELETE CASCADE,
  CONSTRAINT @k:CAT_PRD_ENTT_VCHR_@LS_CAT_PRD_ENTT_@LS FOREIGN KEY (`@L`)
    REFERENCES @t:catalog_product_entity (`@L`) ON DELETE CASCADE,
  CONSTRAINT @k:CATALOG_PRODUCT_ENTITY_VARCHAR_STORE_ID_STORE_STORE_ID FOREIGN KEY (`store_id`)
    REFERENCES @t:store (`store_id`) ON DELETE CASCADE
) COMMENT='Catalog Product Varchar Attribute Backend Table'""",
    """CREATE TABLE @t:catalog_product_entity_media_gallery (
  `value_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Value ID',
  `attribute_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Attribute ID',
  `value` varchar(255) DEFAULT NULL COMMENT 'Value',
  `media_type` varchar(32) NOT NULL DEFAULT 'image' COMMENT 'Media entry type',
  `disabled` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Visibility status',
  PRIMARY KEY (`value_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_MEDIA_GALLERY_ATTRIBUTE_ID (`attribute_id`),
  CONSTRAINT @k:CAT_PRD_ENTT_MDA_GLR_ATTR_ID_EAV_ATTR_ATTR_ID FOREIGN KEY (`attribute_id`)
    REFERENCES @t:eav_attribute (`attribute_id`) ON DELETE CASCADE
) COMMENT='Catalog Product Media Gallery Attribute Backend Table'""",
    """CREATE TABLE @t:catalog_product_entity_media_gallery_value (
  `value_id` int unsigned NOT NULL DEFAULT 0 COMMENT 'Value ID',
  `store_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Store ID',
  `@L` int unsigned NOT NULL DEFAULT 0,
  `label` varchar(255) DEFAULT NULL COMMENT 'Label',
  `position` int unsigned DEFAULT NULL COMMENT 'Position',
  `disabled` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Is Disabled',
  `record_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Record ID',
  PRIMARY KEY (`record_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_MEDIA_GALLERY_VALUE_STORE_ID (`store_id`),
  KEY @k:CATALOG_PRODUCT_ENTITY_MEDIA_GALLERY_VALUE_@LU (`@L`),
  KEY @k:CATALOG_PRODUCT_ENTITY_MEDIA_GALLERY_VALUE_VALUE_ID (`value_id`),
  KEY @k:CAT_PRD_ENTT_MDA_GLR_VAL_@LS_VAL_ID_STORE_ID (`@L`, `value_id`, `store_id`),
  CONSTRAINT @k:CAT_PRD_ENTT_MDA_GLR_VAL_VAL_ID_CAT_PRD_ENTT_MDA_GLR_VAL_ID FOREIGN KEY (`value_id`)
    REFERENCES @t:catalog_product_entity_media_gallery (`value_id`) ON DELETE CASCADE,
  CONSTRAINT @k:CAT_PRD_ENTT_MDA_GLR_VAL_STORE_ID_STORE_STORE_ID FOREIGN KEY (`store_id`)
    REFERENCES @t:store (`store_id`) ON DELETE CASCADE,
  CONSTRAINT @k:CAT_PRD_ENTT_MDA_GLR_VAL_@LS_CAT_PRD_ENTT_@LS FOREIGN KEY (`@L`)
    REFERENCES @t:catalog_product_entity (`@L`) ON DELETE CASCADE
) COMMENT='Catalog Product Media Gallery Attribute Value Table'""",
    """CREATE TABLE @t:catalog_product_entity_media_gallery_value_to_entity (
  `value_id` int unsigned NOT NULL COMMENT 'Value media Entry ID',
  `@L` int unsigned NOT NULL COMMENT 'Product Entity ID',
  PRIMARY KEY (`value_id`, `@L`),
  CONSTRAINT @k:FK_A6C6C8FAA386736921D3A7C4B50B1185 FOREIGN KEY (`value_id`)
    REFERENCES @t:catalog_product_entity_media_gallery (`value_id`) ON DELETE CASCADE,
  CONSTRAINT @k:CAT_PRD_ENTT_MDA_GLR_VAL_TO_ENTT_@LS_CAT_PRD_ENTT_@LS FOREIGN KEY (`@L`)
    REFERENCES @t:catalog_product_entity (`@L`) ON DELETE CASCADE
) COMMENT='Link Media value to Product entity table'""",
    """CREATE TABLE @t:catalog_product_entity_media_gallery_value_video (
  `value_id` int unsigned NOT NULL COMMENT 'Media Entity ID',
  `store_id` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Store ID',
  `provider` varchar(32) DEFAULT NULL COMMENT 'Video provider ID',
  `url` text DEFAULT NULL COMMENT 'Video URL',
  `title` varchar(255) DEFAULT NULL COMMENT 'Title',
  `description` text DEFAULT NULL COMMENT 'Page Meta Description',
  `metadata` text DEFAULT NULL COMMENT 'Video meta data',
  UNIQUE KEY @k:CAT_PRD_ENTT_MDA_GLR_VAL_VIDEO_VAL_ID_STORE_ID (`value_id`, `store_id`),
  CONSTRAINT @k:FK_6FDF205946906B0E653E60AA769899F8 FOREIGN KEY (`value_id`)
    REFERENCES @t:catalog_product_entity_media_gallery (`value_id`) ON DELETE CASCADE,
  CONSTRAINT @k:CAT_PRD_ENTT_MDA_GLR_VAL_VIDEO_STORE_ID_STORE_STORE_ID FOREIGN KEY (`store_id`)
    REFERENCES @t:store (`store_id`) ON DELETE CASCADE
) COMMENT='Catalog Product Video Table'""",
    """CREATE TABLE @t:flag (
  `flag_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Flag Id',
  `flag_code` varchar(255) NOT NULL COMMENT 'Flag Code',
  `state` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'Flag State',
  `flag_data` mediumtext DEFAULT NULL COMMENT 'Flag Data',
  `last_update` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()
    COMMENT 'Date of Last Flag Update',
  PRIMARY KEY (`flag_id`),
  KEY @k:FLAG_LAST_UPDATE (`last_update`)
) COMMENT='Flag'""",
    """CREATE TABLE @t:catalog_product_gallery_cl (
  `version_id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Version ID',
  `entity_id` int unsigned NOT NULL COMMENT 'Entity ID',
  PRIMARY KEY (`version_id`)
) COMMENT='catalog_product_gallery_cl'""",
)

# Magento_AsynchronousOperations (2.4.x db_schema.xml): the bulk tracking shown in System › Action Logs ›
# Bulk Actions. No FK from user_id to admin_user (2.4 dropped it for integration users, user_type 2/1).
_DDL_BULK = (
    """CREATE TABLE @t:magento_bulk (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Bulk Internal ID (must not be exposed)',
  `uuid` varbinary(39) DEFAULT NULL COMMENT 'Bulk UUID (can be exposed to reference bulk entity)',
  `user_id` int unsigned DEFAULT NULL COMMENT 'ID of the WebAPI user that performed an action',
  `user_type` int DEFAULT NULL COMMENT 'Which type of user',
  `description` varchar(255) DEFAULT NULL COMMENT 'Bulk Description',
  `operation_count` int unsigned NOT NULL COMMENT 'Total number of operations scheduled within this bulk',
  `start_time` timestamp NOT NULL DEFAULT current_timestamp() COMMENT 'Bulk start time',
  PRIMARY KEY (`id`),
  UNIQUE KEY @k:MAGENTO_BULK_UUID (`uuid`),
  KEY @k:MAGENTO_BULK_USER_ID (`user_id`),
  KEY @k:MAGENTO_BULK_START_TIME (`start_time`)
) COMMENT='Bulk entity that represents set of related asynchronous operations'""",
    """CREATE TABLE @t:magento_operation (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Operation ID',
  `operation_key` int unsigned DEFAULT NULL COMMENT 'Operation Key',
  `bulk_uuid` varbinary(39) DEFAULT NULL COMMENT 'Related Bulk UUID',
  `topic_name` varchar(255) DEFAULT NULL COMMENT 'Name of the related message queue topic',
  `serialized_data` blob DEFAULT NULL COMMENT 'Data (serialized) required to perform an operation',
  `result_serialized_data` blob DEFAULT NULL COMMENT 'Result data (serialized) after perform an operation',
  `status` smallint DEFAULT 0 COMMENT 'Operation status (OPEN | COMPLETE | RETRIABLY_FAILED | NOT_RETRIABLY_FAILED)',
  `error_code` smallint DEFAULT NULL COMMENT 'Code of the error that appeared during operation execution',
  `result_message` varchar(255) DEFAULT NULL COMMENT 'Operation result message',
  `started_at` timestamp NULL DEFAULT NULL COMMENT 'Datetime the operation started processing',
  PRIMARY KEY (`id`),
  UNIQUE KEY @k:MAGENTO_OPERATION_BULK_UUID_OPERATION_KEY (`bulk_uuid`, `operation_key`),
  KEY @k:MAGENTO_OPERATION_BULK_UUID_ERROR_CODE (`bulk_uuid`, `error_code`),
  KEY @k:MAGENTO_OPERATION_STATUS_STARTED_AT (`status`, `started_at`),
  CONSTRAINT @k:MAGENTO_OPERATION_BULK_UUID_MAGENTO_BULK_UUID FOREIGN KEY (`bulk_uuid`)
    REFERENCES @t:magento_bulk (`uuid`) ON DELETE CASCADE
) COMMENT='Operation entity'""",
)

_COLUMNS_WATCHED = ("value_id", "store_id", "@L", "label", "position", "disabled")


def _short_name(name: str, kind: str) -> str:
    """Magento's rule for identifiers over 64 characters: ``<kind>_`` + upper-case md5 of the full name
    (kind FK, UNQ, IDX or TRG), so with a prefix some key names become e.g. ``UNQ_9FCE…``."""
    return name if len(name) <= 64 else f"{kind}_{hashlib.md5(name.encode()).hexdigest().upper()}"


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
        return EE_TABLES if self.variant == "ee" else CE_TABLES

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

    def innodb_row_counters(self) -> dict[str, int]:
        """Server-wide row write counters: ``{"Innodb_rows_inserted": n, "Innodb_rows_updated": n,
        "Innodb_rows_deleted": n}``; diff two readings to count the writes in between.

        MariaDB 10.11 no longer has the ``Innodb_rows_*`` status variables, so they are taken from
        ``Handler_write`` / ``Handler_update`` / ``Handler_delete`` when absent: rows written through the
        SQL layer (an UPDATE that changes nothing counts 0; rows removed by an FK cascade are not counted;
        they are server-wide, so other sessions' writes show up too).
        """
        rows = self.query("SHOW GLOBAL STATUS WHERE Variable_name LIKE 'Innodb\\_rows\\_%' "
                          "OR Variable_name IN ('Handler_write', 'Handler_update', 'Handler_delete')")
        status = {r["Variable_name"]: int(r["Value"]) for r in rows}
        fallback = {"inserted": "Handler_write", "updated": "Handler_update", "deleted": "Handler_delete"}
        return {
            f"Innodb_rows_{op}": status.get(f"Innodb_rows_{op}", status.get(handler, 0))
            for op, handler in fallback.items()
        }

    def drop(self) -> None:
        """Drop the database and close the connection."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        finally:
            self.conn.close()


def _render(sql: str, prefix: str, link: str) -> str:
    long_tok, short_tok = ("ROW_ID", "ROW_ID") if link == "row_id" else ("ENTITY_ID", "ENTT_ID")
    sql = sql.replace("@LU", long_tok).replace("@LS", short_tok).replace("@L", link)
    sql = re.sub(r"@t:(\w+)", lambda m: f"`{prefix}{m.group(1)}`", sql)

    def key(m: re.Match[str]) -> str:
        line_start = sql.rfind("\n", 0, m.start()) + 1
        line_end = sql.find("\n", m.end())
        line = sql[line_start : line_end if line_end >= 0 else len(sql)]
        kind = "FK" if "FOREIGN KEY" in line else "UNQ" if "UNIQUE" in line else "IDX"
        return f"`{_short_name(prefix.upper() + m.group(1), kind)}`"

    return re.sub(r"@k:(\w+)", key, sql)


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
    """The CREATE TABLE / CREATE TRIGGER statements for a variant and prefix (no seed data)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if not re.fullmatch(r"[A-Za-z0-9_]*", prefix):
        raise ValueError(f"unsupported table prefix {prefix!r}")
    link = "row_id" if variant == "ee" else "entity_id"
    product = _DDL_PRODUCT_EE if variant == "ee" else _DDL_PRODUCT_CE
    ddls = (*_DDL_STORE, *_DDL_EAV, *product, *_DDL_VALUES, *_DDL_BULK)
    tables = [_render(f"{ddl} {_TABLE_OPTS}", prefix, link) for ddl in ddls]
    return tables + _trigger_sql(prefix, link)


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
    """Drop and recreate `database`, create the Magento tables of `variant` ("ce" | "ee") with table
    `prefix`, seed stores/entity types/attributes (and the staging flag on "ee").

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
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
        conn.select_db(database)
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
        store = MagentoStore(variant=variant, prefix=prefix, database=database, conn=conn)
        _seed(store)
    except BaseException:
        conn.close()
        raise
    return store

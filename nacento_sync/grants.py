"""The database privileges nacento-sync needs: one list, read by `doctor`, the README and the tests' restricted user.

Table-level grants on Magento's tables (with the store's prefix), by what a command does: `sync` / `sku`
read the catalog and write the gallery, roles and meta tables; `submit`, `worker`, `status` and `requeue`
also read and write Magento's bulk tables; `schema install` / `uninstall` create and drop the meta table.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Our table and Magento's bulk tables (`magento.META_TABLE`, `bulk.BULK_TABLE`, `bulk.OPERATION_TABLE`: named
#: again here, where no adapter is imported; a test holds them equal).
META_TABLE, BULK_TABLE, OPERATION_TABLE = "nacento_media_gallery_meta", "magento_bulk", "magento_operation"

#: Which commands a group of grants serves (`needed(scopes=…)`).
SYNC, ASYNC, SCHEMA = "sync", "async", "schema"


@dataclass(frozen=True)
class Grant:
    """Privileges on one of Magento's tables (its name without the prefix), and why they are needed."""

    privileges: tuple[str, ...]
    table: str
    why: str
    scope: str = SYNC
    #: Needed only on MySQL: MySQL ≥ 8.0.22 requires UPDATE (or DELETE) besides SELECT for `SELECT … FOR
    #: UPDATE`, and MySQL checks REFERENCES for a foreign key; MariaDB checks neither.
    mysql_only: bool = False


GALLERY_WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE")

GRANTS: tuple[Grant, ...] = (
    Grant(("SELECT",), "eav_entity_type", "the product entity type, to find attribute ids"),
    Grant(("SELECT",), "eav_attribute", "the ids of media_gallery and the role attributes"),
    Grant(("SELECT",), "store", "the store views' codes"),
    Grant(("SELECT",), "flag", "Adobe Commerce's current staging version"),
    Grant(("SELECT",), "catalog_product_entity", "products by SKU, locked with SELECT … FOR UPDATE"),
    Grant(("UPDATE",), "catalog_product_entity", "SELECT … FOR UPDATE on MySQL 8 (no product is updated)",
          mysql_only=True),
    Grant(GALLERY_WRITE, "catalog_product_entity_media_gallery", "gallery entries"),
    Grant(GALLERY_WRITE, "catalog_product_entity_media_gallery_value", "labels, positions, hidden flags"),
    Grant(("SELECT", "INSERT", "DELETE"), "catalog_product_entity_media_gallery_value_to_entity",
          "which product an entry belongs to"),
    Grant(GALLERY_WRITE, "catalog_product_entity_varchar", "roles and their labels"),
    Grant(("SELECT", "INSERT", "DELETE"), "catalog_product_entity_media_gallery_value_video",
          "a deleted entry's video details, deleted explicitly (a cascade fires no trigger and is not "
          "journaled) and re-inserted by undo"),
    Grant(GALLERY_WRITE, META_TABLE, "the ETags synced; a deleted entry's rows, deleted explicitly as above"),
    Grant(("SELECT", "INSERT"), BULK_TABLE, "bulks (submit) and their look-ups", scope=ASYNC),
    Grant(("UPDATE",), BULK_TABLE, "SELECT … FOR UPDATE on MySQL 8 (no bulk is updated)", scope=ASYNC,
          mysql_only=True),
    Grant(("SELECT", "INSERT", "UPDATE"), OPERATION_TABLE, "operations and their statuses", scope=ASYNC),
    Grant(("CREATE", "DROP"), META_TABLE, "schema install / uninstall", scope=SCHEMA),
    Grant(("REFERENCES",), "catalog_product_entity_media_gallery_value",
          "the meta table's foreign key (MySQL 8 checks it)", scope=SCHEMA, mysql_only=True),
)


def needed(scopes: tuple[str, ...] = (SYNC,), mysql: bool = True) -> tuple[Grant, ...]:
    """The grants of these command groups; `mysql=False` leaves out what only MySQL needs."""
    return tuple(g for g in GRANTS if g.scope in scopes and (mysql or not g.mysql_only))


def by_table(grants: tuple[Grant, ...]) -> dict[str, tuple[str, ...]]:
    """Table → its privileges, in the list's order, each once."""
    out: dict[str, list[str]] = {}
    for grant in grants:
        privileges = out.setdefault(grant.table, [])
        privileges += [p for p in grant.privileges if p not in privileges]
    return {table: tuple(privileges) for table, privileges in out.items()}


def quote(name: str) -> str:
    """A MySQL identifier in backticks."""
    return "`" + name.replace("`", "``") + "`"


def statements(database: str, prefix: str, account: str, grants: tuple[Grant, ...]) -> list[str]:
    """`GRANT … ON `db`.`table` TO account` per table: the SQL the README shows and the tests run."""
    return [f"GRANT {', '.join(privileges)} ON {quote(database)}.{quote(prefix + table)} TO {account}"
            for table, privileges in by_table(grants).items()]

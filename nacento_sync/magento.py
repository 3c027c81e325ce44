"""The database adapter: Magento 2.4.8's schema, read in a constant number of queries per batch.

All SQL lives here, parameterized. Table names carry the configured prefix; the link field of the
product value tables is `entity_id` (Open Source) or `row_id` (Adobe Commerce), detected from the
schema; on Adobe Commerce the product's active staging row is the one written.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from nacento_sync import charset
from nacento_sync.config import ConfigError, DatabaseConfig, mask
from nacento_sync.errors import AccessError, SchemaError
from nacento_sync.models import MANAGED_ROLES, ROLE_LABELS
from nacento_sync.paths import stored_to_canonical
from nacento_sync.plan import (
    DeleteAttribute,
    DeleteValueRows,
    Entry,
    InsertEntry,
    InsertValueRow,
    Op,
    ProductState,
    RemoveEntry,
    SetAttribute,
    SetEntryValue,
    UpdateValueRow,
    UpsertMeta,
    ValueRow,
)
from nacento_sync.storeviews import StoreRow

META_TABLE = "nacento_media_gallery_meta"
VIDEO_TABLE = "catalog_product_entity_media_gallery_value_video"
ATTRIBUTES = ("media_gallery", *MANAGED_ROLES, *ROLE_LABELS.values())
#: Rows per multi-row statement: keeps packets well under max_allowed_packet.
CHUNK = 1000
#: MySQL/MariaDB error numbers worth retrying a transaction for.
RETRIABLE = {1205, 1213}


class Cursor(Protocol):
    """What the adapter uses of a DB-API cursor (aiomysql's, or any driver with the same coroutines)."""

    lastrowid: int | None

    async def execute(self, query: str, args: Any = ...) -> int: ...

    async def fetchone(self) -> Any: ...

    async def fetchall(self) -> Any: ...


class Connection(Protocol):
    """What the engine and the adapters use of a database connection."""

    def cursor(self) -> AbstractAsyncContextManager[Cursor]: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    def close(self) -> None: ...


class DatabaseAccessError(AccessError):
    """The database cannot be reached or refuses us (exit code 3)."""


@dataclass(frozen=True)
class Product:
    """A product found by SKU: its entity_id, the link id we write to, and its scheduled updates."""

    entity_id: int
    link_id: int
    future_rows: int = 0


NOT_FOUND = "product_not_found"
AMBIGUOUS = "ambiguous_sku"


@dataclass
class Schema:
    """What we learned about this store's tables once per run."""

    prefix: str
    link: str
    attribute_ids: dict[str, int]
    sku_collation: str
    sku_charset: str
    staging_version: int | None = None
    returning: bool = False
    #: innodb_autoinc_lock_mode ≤ 1: a multi-row INSERT's ids are consecutive, stepping by `autoinc_step`.
    consecutive_ids: bool = False
    autoinc_step: int = 1
    has_meta: bool = True
    attribute_codes: dict[int, str] = field(default_factory=dict)
    #: Written columns that cannot hold 4-byte characters (`charset.SKU`… → their character set).
    narrow: dict[str, str] = field(default_factory=dict)
    #: The store views (`store.code` → `store_id`, store_id > 0), resolved once per run.
    views: dict[str, int] = field(default_factory=dict)
    #: The video table exists (Magento_ProductVideo): its rows of a deleted entry are deleted explicitly.
    has_video: bool = True
    database: str = ""

    def __post_init__(self) -> None:
        self.attribute_codes = {v: k for k, v in self.attribute_ids.items()}

    def t(self, name: str) -> str:
        return f"`{self.prefix}{name}`"

    @property
    def roles(self) -> tuple[str, ...]:
        """Role codes this store has (swatch_image exists only with Magento_Swatches)."""
        return tuple(r for r in MANAGED_ROLES if r in self.attribute_ids)


def _ph(n: int) -> str:
    return ", ".join(["%s"] * n)


def _unlinked(column: str, n: int, to_entity: str) -> str:
    """`column` is one of `n` gallery ids (the parameters, given twice) that no product links any more."""
    return (f"{column} IN ({_ph(n)}) AND {column} NOT IN "
            f"(SELECT value_id FROM {to_entity} WHERE value_id IN ({_ph(n)}))")


def _chunks(seq: Sequence, size: int = CHUNK):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


#: What aiomysql raises for a lost connection; a statement that outlives `database.read_timeout` raises it too.
LOST_CONNECTION = 2013
#: MySQL's CR_SSL_CONNECTION_ERROR.
TLS_ERROR = 2026


#: The session's `group_concat_max_len` (the largest both MariaDB and MySQL accept on any platform): a
#: product's gallery comes back as one aggregated value (`read_states`), never cut at the 1,024 bytes
#: MySQL allows by default.
GROUP_CONCAT_MAX_LEN = 4294967295
#: Run by every connection as it opens.
SESSION_INIT = f"SET SESSION group_concat_max_len = {GROUP_CONCAT_MAX_LEN}"


class _Connection(aiomysql.Connection):
    """aiomysql's connection, whose every wait for the server is bounded by `read_timeout`.

    aiomysql has no statement timeout: a server (or a lock) that never answers would hold the run
    forever. A read that gets nothing for `read_timeout` seconds closes the connection and raises
    error 2013, "Lost connection", which the engine and the worker already handle as a lost connection.
    """

    def __init__(self, *args, read_timeout: float | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self.read_timeout = read_timeout

    async def _request_authentication(self) -> None:
        # aiomysql silently goes on without TLS when the server does not offer it; PDO refuses, and so do we,
        # before a word of the login is sent.
        if self._ssl_context and not self.server_capabilities & CLIENT.SSL:
            raise pymysql.err.OperationalError(
                TLS_ERROR, "the server does not offer TLS, which database.ssl_ca / ssl_cert ask for")
        await super()._request_authentication()

    async def _read_bytes(self, num_bytes: int) -> bytes:
        reader = self._reader
        # Already buffered (most rows of a result): no timer needed.
        if self.read_timeout is None or reader is None or len(getattr(reader, "_buffer", b"")) >= num_bytes:
            return await super()._read_bytes(num_bytes)
        try:
            async with asyncio.timeout(self.read_timeout):
                return await super()._read_bytes(num_bytes)
        except TimeoutError:
            self.close()
            raise pymysql.err.OperationalError(
                LOST_CONNECTION, f"Lost connection to MySQL server during query (no answer for "
                f"{self.read_timeout:g} s: database.read_timeout)") from None


async def connect(cfg: DatabaseConfig, **kw) -> aiomysql.Connection:
    """Open one connection (utf8mb4, autocommit off); access problems become DatabaseAccessError.

    The whole of it (TCP connect, the server's greeting, login) takes at most `database.connect_timeout`:
    aiomysql's own `connect_timeout` bounds the TCP connect only.
    """
    args: dict[str, Any] = {
        "user": cfg.user,
        "password": cfg.password.get_secret_value(),
        "db": cfg.name,
        "charset": "utf8mb4",
        "autocommit": False,
        "connect_timeout": cfg.connect_timeout,
        "init_command": SESSION_INIT,
    }
    if cfg.unix_socket:
        args["unix_socket"] = cfg.unix_socket
    else:  # TLS on TCP only: a Unix socket never leaves the machine
        args.update(host=cfg.host, port=cfg.port, ssl=ssl_context(cfg))
    conn = _Connection(**args, read_timeout=cfg.read_timeout, **kw)
    try:
        async with asyncio.timeout(cfg.connect_timeout):
            await conn._connect()  # what aiomysql.connect() does, with our connection class
        return conn
    except TimeoutError:
        conn.close()
        raise access_error(cfg, _no_answer(cfg)) from None
    except pymysql.err.MySQLError as e:
        conn.close()
        raise access_error(cfg, _server_said(cfg, e)) from None
    except OSError as e:
        conn.close()
        raise access_error(cfg, e.strerror or type(e).__name__) from None
    except (ValueError, LookupError, struct.error) as e:  # garbage where a MySQL greeting should be
        conn.close()
        raise access_error(cfg, f"the server does not answer as MySQL does ({type(e).__name__})") from None


def ssl_context(cfg: DatabaseConfig) -> ssl.SSLContext | None:
    """TLS for the connection when `database.ssl_ca` or `ssl_cert` is set (env.php's `PDO::MYSQL_ATTR_SSL_*`);
    ConfigError naming the key and file when one cannot be loaded."""
    if not (cfg.ssl_ca or cfg.ssl_cert):
        return None
    key = "database.ssl_ca"
    try:
        context = ssl.create_default_context(cafile=cfg.ssl_ca or None)
        if cfg.ssl_cert:
            key = "database.ssl_cert"
            context.load_cert_chain(cfg.ssl_cert, cfg.ssl_key or None)
    except (OSError, ssl.SSLError) as e:
        file = cfg.ssl_cert if key == "database.ssl_cert" else cfg.ssl_ca
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ConfigError(f"{key}: cannot load {file}: {why}") from None
    if not cfg.ssl_verify:  # env.php PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => false
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _no_answer(cfg: DatabaseConfig) -> str:
    return f"no answer within {cfg.connect_timeout:g} s (database.connect_timeout)"


def _server_said(cfg: DatabaseConfig, e: pymysql.err.MySQLError) -> str:
    """`error <number>: <the server's message>`, with the socket error behind a failed connect."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    text = str(e.args[1]) if len(e.args) > 1 else (str(e.args[0]) if e.args and code is None else "")
    cause = e.__cause__
    if isinstance(cause, TimeoutError):
        return _no_answer(cfg)
    if isinstance(cause, OSError):
        text = f"{text} ({cause.strerror or type(cause).__name__})"
    return f"error {code}: {text}" if code is not None else text or type(e).__name__


def access_error(cfg: DatabaseConfig, detail: str) -> DatabaseAccessError:
    """The one-line message of a failed connect: where, as whom, which database, and what the server
    said; the password masked wherever it might appear; where the config was looked for if none was found."""
    where = cfg.unix_socket or f"{cfg.host}:{cfg.port}"
    text = f"cannot connect to MySQL at {where} as {cfg.user!r} (database {cfg.name!r}): {detail}"
    return DatabaseAccessError(cfg.explain(mask(text, cfg.password)))


async def server_session(conn: Connection) -> tuple[int, float]:
    """This connection's thread id and when its server started (Unix seconds, ±1): the server's own
    figures, so that a later `kill_connection` can tell the same server from a restarted one."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT CONNECTION_ID(), UNIX_TIMESTAMP()")
        thread_id, now = await cur.fetchone()
        await cur.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
        row = await cur.fetchone()
    await conn.rollback()
    return int(thread_id), float(now) - float(row[1] if row else 0)


#: `KILL` of a thread that has already ended; of a thread of another user.
UNKNOWN_THREAD, NOT_OWNER = 1094, 1095


async def kill_connection(conn: Connection, thread_id: int) -> bool:
    """End server thread `thread_id` (a lost connection of ours) so its transaction rolls back and its
    locks go; False when it had already ended."""
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"KILL CONNECTION {int(thread_id)}")
    except pymysql.err.OperationalError as e:
        if e.args and e.args[0] == UNKNOWN_THREAD:
            return False
        raise
    return True


async def _table_exists(cur, name: str) -> bool:
    await cur.execute(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s",
        (name,),
    )
    return (await cur.fetchone())[0] > 0


async def detect_schema(conn, prefix: str) -> Schema:
    """Link field, staging version, attribute ids and collation of this store, in a few queries."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT column_name, collation_name, character_set_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s",
            (f"{prefix}catalog_product_entity",),
        )
        cols = {r[0].lower(): (r[1], r[2]) for r in await cur.fetchall()}
        if "sku" not in cols:
            raise SchemaError(
                f"table {prefix}catalog_product_entity not found: check database.name and database.table_prefix"
            )
        link = "row_id" if "row_id" in cols else "entity_id"
        collation, charset = cols["sku"]
        if not re.fullmatch(r"\w+", collation or "") or not re.fullmatch(r"\w+", charset or ""):
            collation, charset = "utf8mb4_general_ci", "utf8mb4"
        await cur.execute(
            f"SELECT a.attribute_code, a.attribute_id FROM `{prefix}eav_attribute` a "
            f"JOIN `{prefix}eav_entity_type` t ON t.entity_type_id = a.entity_type_id "
            f"WHERE t.entity_type_code = 'catalog_product' AND a.attribute_code IN ({_ph(len(ATTRIBUTES))})",
            ATTRIBUTES,
        )
        ids = {code: int(aid) for code, aid in await cur.fetchall()}
        if "media_gallery" not in ids:
            raise SchemaError("product attribute media_gallery not found in eav_attribute")
        version = None
        if link == "row_id":
            version = 1
            await cur.execute(f"SELECT flag_data FROM `{prefix}flag` WHERE flag_code = 'staging'")
            row = await cur.fetchone()
            if row and row[0]:
                try:
                    version = int(json.loads(row[0]).get("current_version", 1))
                except (ValueError, TypeError, AttributeError):
                    version = 1
        await cur.execute("SELECT VERSION()")
        server = (await cur.fetchone())[0]
        returning = _mariadb_at_least(server, (10, 5))
        await cur.execute("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment")
        lock_mode, step = await cur.fetchone()
        has_meta = await _table_exists(cur, f"{prefix}{META_TABLE}")
        has_video = await _table_exists(cur, f"{prefix}{VIDEO_TABLE}")
        await cur.execute("SELECT DATABASE()")
        database = str((await cur.fetchone())[0] or "")
        narrow = await _narrow_columns(cur, prefix)
        await cur.execute(f"SELECT code, store_id FROM `{prefix}store` WHERE store_id > 0 ORDER BY store_id")
        views = {str(code): int(store_id) for code, store_id in await cur.fetchall() if code}
    await conn.rollback()
    return Schema(prefix, link, ids, collation, charset, version, returning, int(lock_mode) <= 1, int(step),
                  has_meta, narrow=narrow, views=views, has_video=has_video, database=database)


#: The columns whose character set decides what text can be written: (table, column) → charset.COLUMN.
_TEXT_COLUMNS = {
    ("catalog_product_entity", "sku"): charset.SKU,
    ("catalog_product_entity_media_gallery", "value"): charset.PATH,
    ("catalog_product_entity_media_gallery_value", "label"): charset.LABEL,
    ("catalog_product_entity_varchar", "value"): charset.ROLE_VALUE,
}


async def narrow_columns(conn, prefix: str) -> dict[str, str]:
    """`_narrow_columns` on its own connection's transaction (for `submit`, which needs no Schema)."""
    async with conn.cursor() as cur:
        narrow = await _narrow_columns(cur, prefix)
    await conn.rollback()
    return narrow


async def _narrow_columns(cur, prefix: str) -> dict[str, str]:
    """Which written columns cannot store 4-byte characters (Magento's `utf8mb3` tables on MariaDB)."""
    pairs = list(_TEXT_COLUMNS)
    await cur.execute(
        "SELECT table_name, column_name, character_set_name FROM information_schema.columns "
        f"WHERE table_schema = DATABASE() AND ({' OR '.join(['(table_name = %s AND column_name = %s)'] * len(pairs))})",
        [x for table, column in pairs for x in (prefix + table, column)],
    )
    narrow = {}
    for table, column, charset_name in await cur.fetchall():
        key = _TEXT_COLUMNS.get((table[len(prefix):], column.lower()))
        if key and charset_name and charset_name.lower() not in charset.WIDE_CHARSETS:
            narrow[key] = charset_name
    return narrow


def _mariadb_at_least(version: str, wanted: tuple[int, int]) -> bool:
    m = re.match(r"(\d+)\.(\d+)", version)
    return m is not None and "mariadb" in version.lower() and (int(m[1]), int(m[2])) >= wanted


# ---------------------------------------------------------------- our meta table


def meta_ddl(prefix: str) -> str:
    """`nacento_media_gallery_meta`, exactly as the original module created it."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{prefix}{META_TABLE}` (\n"
        "  `record_id` INT UNSIGNED NOT NULL,\n"
        "  `s3_etag` VARCHAR(255) NULL DEFAULT NULL,\n"
        "  `updated_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n"
        "  PRIMARY KEY (`record_id`),\n"
        f"  CONSTRAINT `{prefix}NACENTO_MEDIA_GALLERY_META_RECORD_ID` FOREIGN KEY (`record_id`)\n"
        f"    REFERENCES `{prefix}catalog_product_entity_media_gallery_value` (`record_id`) ON DELETE CASCADE\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


async def install_meta(conn, prefix: str) -> bool:
    """Create the meta table if missing; returns True when it was created."""
    async with conn.cursor() as cur:
        if await _table_exists(cur, f"{prefix}{META_TABLE}"):
            return False
        await cur.execute(meta_ddl(prefix))
    await conn.commit()
    return True


async def uninstall_meta(conn, prefix: str) -> bool:
    async with conn.cursor() as cur:
        if not await _table_exists(cur, f"{prefix}{META_TABLE}"):
            return False
        await cur.execute(f"DROP TABLE `{prefix}{META_TABLE}`")
    await conn.commit()
    return True


async def meta_status(conn, prefix: str) -> dict:
    async with conn.cursor() as cur:
        exists = await _table_exists(cur, f"{prefix}{META_TABLE}")
        rows = None
        if exists:
            await cur.execute(f"SELECT COUNT(*) FROM `{prefix}{META_TABLE}`")
            rows = (await cur.fetchone())[0]
    await conn.rollback()
    return {"table": f"{prefix}{META_TABLE}", "exists": exists, "rows": rows}


# ---------------------------------------------------------------- reading


async def find_products(conn, schema: Schema, skus: Sequence[str]) -> dict[str, Product | str]:
    """Map each SKU (as given) to its product, NOT_FOUND or AMBIGUOUS, in one query.

    The database compares with the `sku` column's own collation, so matching is exactly Magento's.
    """
    if not skus:
        return {}
    staged = schema.staging_version is not None
    extra = ", p.created_in, p.updated_in" if staged else ""
    derived = " UNION ALL ".join(["SELECT %s AS k"] * len(skus))
    sql = (
        f"SELECT q.k, p.entity_id, p.{schema.link}{extra} FROM ({derived}) q "
        f"JOIN {schema.t('catalog_product_entity')} p "
        f"ON p.sku = CONVERT(q.k USING {schema.sku_charset}) COLLATE {schema.sku_collation}"
    )
    found: dict[str, list[tuple]] = defaultdict(list)
    async with conn.cursor() as cur:
        await cur.execute(sql, list(skus))
        for row in await cur.fetchall():
            found[row[0]].append(row[1:])
    out: dict[str, Product | str] = {}
    for sku in skus:
        rows = found.get(sku, [])
        entities = {r[0] for r in rows}
        if not entities:
            out[sku] = NOT_FOUND
        elif len(entities) > 1:
            out[sku] = AMBIGUOUS
        elif not staged:
            out[sku] = Product(rows[0][0], rows[0][1])
        else:
            v = schema.staging_version
            active = [r for r in rows if r[2] <= v < r[3]]
            future = sum(1 for r in rows if r[2] > v)
            out[sku] = Product(active[0][0], active[0][1], future) if active else NOT_FOUND
    return out


async def folder_sizes(conn, schema: Schema) -> dict[str, int]:
    """Images per dispersion folder (`m` and `m/y`) in the store's gallery: the estimate of how many
    objects a folder listing returns, so a handful of SKUs never pays for listing a huge folder."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT SUBSTRING_INDEX(TRIM(LEADING '/' FROM value), '/', 2) AS d, COUNT(*) "
            f"FROM {schema.t('catalog_product_entity_media_gallery')} "
            "WHERE attribute_id = %s AND media_type = 'image' AND value IS NOT NULL GROUP BY d",
            (schema.attribute_ids["media_gallery"],),
        )
        rows = await cur.fetchall()
    sizes: dict[str, int] = defaultdict(int)
    for folder, n in rows:
        if folder and "/" in folder:
            sizes[folder] += int(n)
            sizes[folder.split("/", 1)[0]] += int(n)
    return dict(sizes)


async def gallery_values(conn, schema: Schema) -> list[str]:
    """Every path in the gallery table, of any product and media type: one full read (there is no
    index on `value`, and we never add one to Magento's tables)."""
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT value FROM {schema.t('catalog_product_entity_media_gallery')} "
                          "WHERE value IS NOT NULL")
        return [r[0] for r in await cur.fetchall()]


async def sample_images(conn, schema: Schema, limit: int = 3) -> list[str]:
    """The paths of the gallery's newest images (by primary key: no scan), for `doctor` to HEAD."""
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT value FROM {schema.t('catalog_product_entity_media_gallery')} "
                          "WHERE media_type = 'image' AND value IS NOT NULL AND value <> '' "
                          "ORDER BY value_id DESC LIMIT %s", (limit,))
        values = [str(r[0]) for r in await cur.fetchall()]
    await conn.rollback()
    return values


async def lock_products(conn, schema: Schema, link_ids: Sequence[int]) -> set[int]:
    """Lock the batch's product rows in a fixed order; returns the ones that still exist."""
    if not link_ids:
        return set()
    L = schema.link
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {L} FROM {schema.t('catalog_product_entity')} WHERE {L} IN ({_ph(len(link_ids))}) "
            f"ORDER BY {L} FOR UPDATE",
            list(link_ids),
        )
        return {r[0] for r in await cur.fetchall()}


def _aggregated(text: str | None, count: int, what: str) -> list[list[Any]]:
    """The `GROUP_CONCAT(JSON_ARRAY(…))` of one product, decoded; a cut or garbled aggregate is an error,
    never a shorter gallery (planning on it would add duplicates or, in replace mode, delete)."""
    try:
        rows = json.loads(f"[{text or ''}]")
    except ValueError:
        rows = None
    if rows is None or len(rows) != count:
        raise SchemaError(f"the server returned a cut {what} aggregate ({count} rows expected): check that "
                          f"nothing lowers group_concat_max_len below {GROUP_CONCAT_MAX_LEN}")
    return rows


async def read_states(conn, schema: Schema, link_ids: Sequence[int]) -> dict[int, ProductState]:
    """The image entries with their value rows (every store) and meta ETags, the shared-row check and the
    role values of these products: 3 queries (the shared check one more per 1,000 images).

    Each product's gallery and role values come back as one row each, aggregated by the server
    (`GROUP_CONCAT(JSON_ARRAY(…))`, decoded by `json` in C): the driver parses rows in Python, ~20 µs
    each, and a gallery is several rows per image."""
    L, t = schema.link, schema.t
    links = list(link_ids)
    if not links:
        return {}
    to_entity = t("catalog_product_entity_media_gallery_value_to_entity")
    #: link → value_id → [value, store-0 rows, store-view rows]
    entries: dict[int, dict[int, list[Any]]] = {link: {} for link in links}
    attrs: dict[int, dict[tuple[str, int], str | None]] = {link: {} for link in links}
    other_media: dict[int, set[str]] = defaultdict(set)
    other_ids: dict[int, dict[int, str]] = defaultdict(dict)
    other_positions: dict[int, dict[int, dict[int, int | None]]] = defaultdict(dict)
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT e.{L}, COUNT(*), GROUP_CONCAT(JSON_ARRAY(g.value_id, g.value, g.media_type, v.store_id, "
            f"v.record_id, v.label, v.position, v.disabled, m.record_id IS NOT NULL, m.s3_etag) "
            f"ORDER BY g.value_id, v.store_id, v.record_id SEPARATOR ',') "
            f"FROM {to_entity} e "
            f"JOIN {t('catalog_product_entity_media_gallery')} g ON g.value_id = e.value_id "
            f"LEFT JOIN {t('catalog_product_entity_media_gallery_value')} v "
            f"ON v.value_id = e.value_id AND v.{L} = e.{L} "
            f"LEFT JOIN {schema.t(META_TABLE)} m ON m.record_id = v.record_id "
            f"WHERE e.{L} IN ({_ph(len(links))}) AND g.attribute_id = %s AND g.value IS NOT NULL "
            f"GROUP BY e.{L}",
            [*links, schema.attribute_ids["media_gallery"]],
        )
        for link, count, gallery in await cur.fetchall():
            per_link = entries[link]
            for value_id, value, media_type, store, record_id, label, position, disabled, has_meta, etag \
                    in _aggregated(gallery, count, "gallery"):
                if media_type == "image":
                    entry = per_link.get(value_id)
                    if entry is None:
                        entry = per_link[value_id] = [value, [], []]
                    if record_id is None:  # an entry without value rows
                        continue
                    if store == 0:
                        entry[1].append(ValueRow(record_id, label, position, bool(disabled), bool(has_meta), etag))
                    else:
                        entry[2].append(StoreRow(store, record_id, label, position, bool(disabled)))
                else:  # videos and other media: never touched, but their paths must not be duplicated
                    if value_id not in other_ids[link]:
                        other_media[link].add(stored_to_canonical(value))
                        other_ids[link][value_id] = value
                    if record_id is not None:
                        other_positions[link].setdefault(value_id, {}).setdefault(store, position)
        shared: set[int] = set()
        value_ids = sorted({vid for per in entries.values() for vid in per})
        for chunk in _chunks(value_ids):
            await cur.execute(
                f"SELECT value_id FROM {to_entity} "
                f"WHERE value_id IN ({_ph(len(chunk))}) GROUP BY value_id HAVING COUNT(*) > 1",
                chunk,
            )
            shared.update(r[0] for r in await cur.fetchall())
        attr_ids = [schema.attribute_ids[c] for c in (*MANAGED_ROLES, *ROLE_LABELS.values())
                    if c in schema.attribute_ids]
        await cur.execute(
            f"SELECT {L}, COUNT(*), GROUP_CONCAT(JSON_ARRAY(attribute_id, store_id, value) SEPARATOR ',') "
            f"FROM {t('catalog_product_entity_varchar')} "
            f"WHERE {L} IN ({_ph(len(links))}) AND attribute_id IN ({_ph(len(attr_ids))}) GROUP BY {L}",
            [*links, *attr_ids],
        )
        codes = schema.attribute_codes
        for link, count, values in await cur.fetchall():
            per = attrs[link]
            for attribute_id, store_id, value in _aggregated(values, count, "role value"):
                per[(codes[attribute_id], store_id)] = value
    return {
        link: ProductState(
            link,
            tuple(Entry(vid, value, vid in shared, tuple(rows), tuple(store_rows))
                  for vid, (value, rows, store_rows) in entries[link].items()),
            attrs[link],
            frozenset(other_media[link]),
            other_ids[link],
            other_positions[link],
        )
        for link in links
    }


# ---------------------------------------------------------------- writing


class Writer:
    """Applies the operations of one batch with a few multi-row statements per kind, in a safe order."""

    def __init__(self, cur, schema: Schema) -> None:
        self.cur = cur
        self.schema = schema
        self.statements = 0

    async def execute(self, sql: str, args: Sequence = ()) -> None:
        self.statements += 1
        await self.cur.execute(sql, list(args))

    async def apply(self, ops: Iterable[Op]) -> None:
        by: dict[type, list] = defaultdict(list)
        for op in ops:
            by[type(op)].append(op)
        s, t, L = self.schema, self.schema.t, self.schema.link
        gallery = t("catalog_product_entity_media_gallery")
        value = t("catalog_product_entity_media_gallery_value")
        to_entity = t("catalog_product_entity_media_gallery_value_to_entity")
        varchar = t("catalog_product_entity_varchar")

        # 1. Deletions, children first: a foreign-key cascade fires no trigger, so Magento's
        #    changelogs would not see it. Meta rows go by a join (`DELETE m FROM meta m JOIN value v`):
        #    `DELETE … WHERE record_id IN (SELECT …)` ran the subquery once per row of the whole meta table.
        #    Rows a cascade would remove (meta, value, link, video rows) are deleted explicitly too, so the
        #    journal and the changelogs see every one of them.
        meta_table = t(META_TABLE)
        surplus = [rid for op in by[DeleteValueRows] for rid in op.record_ids]
        await self._delete_in(meta_table, "record_id", surplus)
        await self._delete_in(value, "record_id", surplus)
        removals = by[RemoveEntry]
        pairs = [(op.value_id, op.link_id) for op in removals]
        for chunk in _chunks(pairs):
            cond = ", ".join(["(%s, %s)"] * len(chunk))
            flat = [x for p in chunk for x in p]
            await self.execute(f"DELETE m FROM {meta_table} m JOIN {value} v ON v.record_id = m.record_id "
                               f"WHERE (v.value_id, v.{L}) IN ({cond})", flat)
            await self.execute(f"DELETE FROM {value} WHERE (value_id, {L}) IN ({cond})", flat)
            await self.execute(f"DELETE FROM {to_entity} WHERE (value_id, {L}) IN ({cond})", flat)
        await self._delete_entries([op.value_id for op in removals if op.delete_gallery_row])
        # A row shared by products of this batch was planned as shared for each of them (each saw the
        # others' links): once its last link is gone it is deleted here, children first, so the end
        # state is the same whichever way SKUs fall into batches and no row is left linked to nothing.
        unlinked = sorted({op.value_id for op in removals if not op.delete_gallery_row})
        for chunk in _chunks(unlinked):
            orphan, twice = _unlinked("value_id", len(chunk), to_entity), [*chunk, *chunk]
            await self.execute(f"DELETE m FROM {meta_table} m JOIN {value} v ON v.record_id = m.record_id "
                               f"WHERE {_unlinked('v.value_id', len(chunk), to_entity)}", twice)
            if s.has_video:
                await self.execute(f"DELETE FROM {t(VIDEO_TABLE)} WHERE {orphan}", twice)
            await self.execute(f"DELETE FROM {value} WHERE {orphan}", twice)
            await self.execute(f"DELETE FROM {gallery} WHERE {orphan}", twice)

        # 2. Updates of existing rows.
        respell = by[SetEntryValue]
        for chunk in _chunks(respell):
            case = " ".join(["WHEN %s THEN %s"] * len(chunk))
            await self.execute(
                f"UPDATE {gallery} SET value = CASE value_id {case} END WHERE value_id IN ({_ph(len(chunk))})",
                [*(x for op in chunk for x in (op.value_id, op.value)), *(op.value_id for op in chunk)],
            )
        for chunk in _chunks(by[UpdateValueRow]):
            sets = []
            args: list = []
            for col in ("label", "position", "disabled"):
                sets.append(f"{col} = CASE record_id {' '.join(['WHEN %s THEN %s'] * len(chunk))} END")
                args += [x for op in chunk for x in (op.record_id, _db(getattr(op, col)))]
            await self.execute(
                f"UPDATE {value} SET {', '.join(sets)} WHERE record_id IN ({_ph(len(chunk))})",
                [*args, *(op.record_id for op in chunk)],
            )
        meta: list[tuple[int, str | None]] = [(op.record_id, op.etag) for op in by[UpsertMeta]]

        # 3. Inserts: gallery rows, their links, store-0 value rows, then meta rows.
        new = by[InsertEntry]
        value_ids = await self._insert_ids(
            gallery, ("attribute_id", "value", "media_type", "disabled"),
            [(s.attribute_ids["media_gallery"], op.value, "image", 0) for op in new], "value_id",
        )
        await self._insert(to_entity, ("value_id", L), [(vid, op.link_id) for vid, op in zip(value_ids, new,
                                                                                            strict=True)])
        value_rows = [(vid, 0, op) for vid, op in zip(value_ids, new, strict=True)]
        value_rows += [(op.value_id, op.store_id, op) for op in by[InsertValueRow]]
        record_ids = await self._insert_ids(
            value, ("value_id", "store_id", L, "label", "position", "disabled"),
            [(vid, store, op.link_id, op.label, op.position, int(op.disabled)) for vid, store, op in value_rows],
            "record_id",
        )
        meta += [(rid, op.etag) for rid, (_, store, op) in zip(record_ids, value_rows, strict=True)
                 if store == 0 and op.etag is not None]
        await self._insert(value, ("value_id", "store_id", L, "label", "position", "disabled"), [
            (vid, store, op.link_id, label, position, int(disabled))
            for vid, op in zip(value_ids, new, strict=True) for store, label, position, disabled in op.store_rows])
        for chunk in _chunks(meta):
            await self.execute(
                f"INSERT INTO {t(META_TABLE)} (record_id, s3_etag) VALUES {', '.join(['(%s, %s)'] * len(chunk))} "
                "ON DUPLICATE KEY UPDATE s3_etag = VALUES(s3_etag)",
                [x for pair in chunk for x in pair],
            )

        # 4. Roles and role labels.
        attribute_rows = [(s.attribute_ids[op.attribute], op.store_id, op.link_id, op.value)
                          for op in by[SetAttribute] if op.attribute in s.attribute_ids]
        for chunk in _chunks(attribute_rows):
            await self.execute(
                f"INSERT INTO {varchar} (attribute_id, store_id, {L}, value) VALUES "
                f"{', '.join(['(%s, %s, %s, %s)'] * len(chunk))} ON DUPLICATE KEY UPDATE value = VALUES(value)",
                [x for row in chunk for x in row],
            )
        dels = [(op.link_id, s.attribute_ids[op.attribute], op.store_id)
                for op in by[DeleteAttribute] if op.attribute in s.attribute_ids]
        for chunk in _chunks(dels):
            await self.execute(
                f"DELETE FROM {varchar} WHERE ({L}, attribute_id, store_id) IN "
                f"({', '.join(['(%s, %s, %s)'] * len(chunk))})",
                [x for row in chunk for x in row],
            )

    async def _delete_entries(self, value_ids: list[int]) -> None:
        """Delete gallery rows with every row that references them, children first."""
        t = self.schema.t
        value = t("catalog_product_entity_media_gallery_value")
        for chunk in _chunks(value_ids):
            await self.execute(f"DELETE m FROM {t(META_TABLE)} m JOIN {value} v ON v.record_id = m.record_id "
                               f"WHERE v.value_id IN ({_ph(len(chunk))})", chunk)
            if self.schema.has_video:
                await self.execute(f"DELETE FROM {t(VIDEO_TABLE)} WHERE value_id IN ({_ph(len(chunk))})", chunk)
            await self.execute(f"DELETE FROM {value} WHERE value_id IN ({_ph(len(chunk))})", chunk)
            await self.execute(f"DELETE FROM {t('catalog_product_entity_media_gallery_value_to_entity')} "
                               f"WHERE value_id IN ({_ph(len(chunk))})", chunk)
            await self.execute(f"DELETE FROM {t('catalog_product_entity_media_gallery')} "
                               f"WHERE value_id IN ({_ph(len(chunk))})", chunk)

    async def _delete_in(self, table: str, col: str, ids: list[int]) -> None:
        for chunk in _chunks(ids):
            await self.execute(f"DELETE FROM {table} WHERE {col} IN ({_ph(len(chunk))})", chunk)

    async def _insert(self, table: str, cols: Sequence[str], rows: list[tuple]) -> None:
        for chunk in _chunks(rows):
            values = ", ".join([f"({_ph(len(cols))})"] * len(chunk))
            await self.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values}",
                               [x for r in chunk for x in r])

    async def _insert_ids(self, table: str, cols: Sequence[str], rows: list[tuple], id_col: str) -> list[int]:
        """Insert rows and return their auto-increment ids, in order.

        MariaDB's `INSERT … RETURNING` gives them exactly for a multi-row insert. MySQL has no
        RETURNING; there a multi-row insert's ids are LAST_INSERT_ID() + i × auto_increment_increment
        when innodb_autoinc_lock_mode ≤ 1 (InnoDB then reserves the whole range of a "simple insert"
        at once), and with lock mode 2 (interleaved) each row is inserted alone and read back.
        """
        ids: list[int] = []
        if self.schema.returning:
            for chunk in _chunks(rows):
                values = ", ".join([f"({_ph(len(cols))})"] * len(chunk))
                await self.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values} RETURNING {id_col}",
                    [x for r in chunk for x in r],
                )
                ids += [r[0] for r in await self.cur.fetchall()]
        elif self.schema.consecutive_ids:
            step = self.schema.autoinc_step
            for chunk in _chunks(rows):
                values = ", ".join([f"({_ph(len(cols))})"] * len(chunk))
                await self.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values}",
                                   [x for r in chunk for x in r])
                first = self.cur.lastrowid
                ids += [first + i * step for i in range(len(chunk))]
        else:
            for r in rows:
                await self.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({_ph(len(cols))})", r)
                ids.append(self.cur.lastrowid)
        if len(ids) != len(rows):
            raise RuntimeError(f"{table}: inserted {len(rows)} rows but got {len(ids)} ids back")
        return ids


def _db(v):
    return int(v) if isinstance(v, bool) else v


# ---------------------------------------------------------------- the journal's reads


async def _rows(cur, sql: str, args: Sequence) -> list[dict[str, Any]]:
    await cur.execute(sql, list(args))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


async def use_utc(cur) -> None:
    """Read and write TIMESTAMP columns in UTC on this session (the journal's timestamps are UTC). Harmless
    to the tool's other statements: they write TIMESTAMP columns with CURRENT_TIMESTAMP only."""
    await cur.execute("SET time_zone = '+00:00'")


async def snapshot(cur, schema: Schema, link_ids: Sequence[int], value_ids: Iterable[int] = (),
                   lock: bool = True, linked: bool = False) -> tuple[dict[str, dict[tuple, dict[str, Any]]], set[int]]:
    """Every row, every column, the tool may write for these products: their links, the gallery rows
    linked (plus `value_ids`), those rows' value, video and meta rows, and the products' role and label
    values. A constant number of statements per batch (chunked by CHUNK ids); `FOR UPDATE` reads the
    latest rows and keeps them until COMMIT. Returns the rows by table and key, and the gallery ids.
    `linked`: also every link of those gallery rows (of any product)."""
    from nacento_sync import journal

    L, t = schema.link, schema.t
    links = list(link_ids)
    tail = " FOR UPDATE" if lock else ""
    rows: dict[str, dict[tuple, dict[str, Any]]] = {name: {} for name in journal.CHILDREN_FIRST}

    def keep(table: str, found: list[dict[str, Any]]) -> None:
        cols = journal.key_columns(table, L)
        for row in found:
            rows[table][tuple(row[c] for c in cols)] = row

    if not links:
        return rows, set(value_ids)
    keep(journal.TO_ENTITY, await _rows(
        cur, f"SELECT * FROM {t(journal.TO_ENTITY)} WHERE {L} IN ({_ph(len(links))}){tail}", links))
    ids = sorted({k[0] for k in rows[journal.TO_ENTITY]} | set(value_ids))
    for chunk in _chunks(ids if linked else []):  # `undo`: links of other products to these rows too
        keep(journal.TO_ENTITY, await _rows(
            cur, f"SELECT * FROM {t(journal.TO_ENTITY)} WHERE value_id IN ({_ph(len(chunk))}){tail}", chunk))
    for chunk in _chunks(ids):
        keep(journal.GALLERY, await _rows(
            cur, f"SELECT * FROM {t(journal.GALLERY)} WHERE value_id IN ({_ph(len(chunk))}){tail}", chunk))
        if schema.has_video:
            keep(journal.VIDEO, await _rows(
                cur, f"SELECT * FROM {t(journal.VIDEO)} WHERE value_id IN ({_ph(len(chunk))}){tail}", chunk))
    # The value rows of these products, and of the gallery rows (an orphan's rows of other products).
    keep(journal.VALUE, await _rows(
        cur, f"SELECT * FROM {t(journal.VALUE)} WHERE {L} IN ({_ph(len(links))}){tail}", links))
    for chunk in _chunks(ids):
        keep(journal.VALUE, await _rows(
            cur, f"SELECT * FROM {t(journal.VALUE)} WHERE value_id IN ({_ph(len(chunk))}) "
                 f"AND {L} NOT IN ({_ph(len(links))}){tail}", [*chunk, *links]))
    record_ids = sorted(k[0] for k in rows[journal.VALUE])
    if schema.has_meta:
        for chunk in _chunks(record_ids):
            keep(journal.META, await _rows(
                cur, f"SELECT * FROM {t(META_TABLE)} WHERE record_id IN ({_ph(len(chunk))}){tail}", chunk))
    attr_ids = [schema.attribute_ids[c] for c in (*MANAGED_ROLES, *ROLE_LABELS.values()) if c in schema.attribute_ids]
    keep(journal.VARCHAR, await _rows(
        cur, f"SELECT * FROM {t(journal.VARCHAR)} WHERE {L} IN ({_ph(len(links))}) "
             f"AND attribute_id IN ({_ph(len(attr_ids))}){tail}", [*links, *attr_ids]))
    return rows, set(ids)

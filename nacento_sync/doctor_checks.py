"""`doctor`'s shell: asks the database, the bucket and the broker, each within its configured time limit.

Every failure or exception becomes a ✗ line, never a crash; a check that depends on a failed one is a
"not checked" line. The database, the bucket and the broker are asked at the same time, so a silent server
costs its own time limit once. The decisions are `doctor`'s pure functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nacento_sync import doctor, grants
from nacento_sync.config import Config, ConfigError, QueueConfig, mask, redact_url
from nacento_sync.doctor import Check, failed, informed, passed, skipped
from nacento_sync.errors import AccessError, SchemaError

if TYPE_CHECKING:
    from nacento_sync.filestore import FileStorage
    from nacento_sync.storage import Storage

log = logging.getLogger("nacento_sync")

#: Images of the gallery HEADed by the sample check.
SAMPLES = 3


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__


async def database_checks(cfg: Config, scopes: tuple[str, ...]) -> tuple[list[Check], list[str] | None]:
    """database, privileges, magento tables, character set, meta table; and the gallery's sample image
    paths (None when they could not be read)."""
    from nacento_sync import magento

    db = cfg.database
    where = db.unix_socket or f"{db.host}:{db.port}"
    later = ("privileges", "magento tables", "character set", "meta table")
    try:
        conn = await magento.connect(db)
    except AccessError as e:
        hint = "check database.host, database.port, database.user, database.password and database.name"
        return [failed("database", _why(e), hint), *(skipped(n, "database unreachable") for n in later)], None
    checks: list[Check] = []
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION(), CURRENT_USER()")
            version, current_user = await cur.fetchone()
            await cur.execute("SHOW GRANTS")
            lines = [str(r[0]) for r in await cur.fetchall()]
        await conn.rollback()
        checks.append(passed("database", f"{version} at {where}, database {db.name} as {current_user}"))
        is_mysql = "mariadb" not in str(version).lower()
        missing = doctor.missing_privileges(lines, db.name, db.table_prefix, grants.needed(scopes, mysql=is_mysql))
        meta = await magento.meta_status(conn, db.table_prefix)
        absent = () if meta["exists"] else (meta["table"],)
        checks.append(doctor.privileges_check(missing, db.name, doctor.account_sql(str(current_user)), scopes,
                                              absent))
        try:
            schema = await magento.detect_schema(conn, db.table_prefix)
        except SchemaError as e:
            hint = "check database.name and database.table_prefix"  # a table we may not read looks absent too
            hint = f"grant what the privileges check names, or {hint}" if missing else hint
            checks += [failed("magento tables", _why(e), hint),
                       *(skipped(n, "magento tables not found") for n in later[2:])]
            return checks, None
        roles = ", ".join(f"{r} {schema.attribute_ids[r]}" for r in schema.roles)
        views = ", ".join(schema.views) or "none"
        staging = f" (staging version {schema.staging_version})" if schema.staging_version is not None else ""
        gallery_id = schema.attribute_ids["media_gallery"]
        checks.append(passed("magento tables", f"prefix {db.table_prefix or '(none)'}, link field {schema.link}"
                             f"{staging}, media_gallery attribute {gallery_id}, roles {roles or 'none'}, "
                             f"store views {views}"))
        checks.append(doctor.charset_check(schema.narrow))
        checks.append(doctor.meta_check(schema.has_meta, db.table_prefix + magento.META_TABLE))
        return checks, await magento.sample_images(conn, schema, SAMPLES)
    except Exception as e:  # a lost connection or a server's error mid-way: a line, never a crash
        return _after_failure(checks, e, later), None
    finally:
        conn.close()


#: MySQL's "command denied" errors (table, column, database).
_DENIED = {1142, 1143, 1044}


def _after_failure(done: list[Check], e: BaseException, later: tuple[str, ...]) -> list[Check]:
    """`done` plus a ✗ for the check that was running (the server's error number and words) and
    "not checked" for the rest."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    why = f"error {code}: {e.args[1] if len(e.args) > 1 else ''}".strip() if code else _why(e)
    hint = ("grant what the privileges check names" if code in _DENIED else
            "the message says why; run doctor again once it is fixed")
    names = {c.name for c in done}
    running = next((n for n in ("database", *later) if n not in names), "database")
    rest = [n for n in later if n not in names and n != running]
    return [*done, failed(running, why, hint), *(skipped(n, f"{running} failed") for n in rest)]


async def storage_checks(store: Storage, purge_cache: bool) -> tuple[list[Check], bool]:
    """storage, cache folder, cache purge (with sync.purge_cache) on an S3 `storage.Storage`, entered;
    and whether the bucket answered. A filesystem root gets its own variant of this function."""
    from nacento_sync import storage

    cfg = store.cfg
    limit = storage.startup_bound(cfg)
    where = f"bucket {cfg.bucket}" + (f" at {cfg.endpoint}" if cfg.endpoint else "")
    later = ["cache folder", *(["cache purge"] if purge_cache else [])]
    try:
        await store.check_access()
    except AccessError as e:
        hint = ("check storage.bucket, storage.endpoint and the credentials: they need s3:GetObject and "
                "s3:ListBucket on the bucket")
        return [failed("storage", _why(e), hint), *(skipped(n, "storage unreachable") for n in later)], False
    checks = [passed("storage", f"{where} reachable, listing allowed")]
    cache = store.key("/cache/")
    try:
        async with asyncio.timeout(limit):
            folders = await store.cache_folders()
        checks.append(doctor.cache_folder_check(folders, cache))
    except Exception as e:  # a refused or silent LIST: a line, never a crash
        checks.append(failed("cache folder", f"LIST {cache}: {_storage_error(e)}",
                             "the credentials need s3:ListBucket on the bucket"))
    if purge_cache:
        try:
            async with asyncio.timeout(limit):
                status = await store.delete_object(f"{cache}nacento-doctor-{uuid.uuid4().hex}")
        except Exception as e:
            checks.append(failed("cache purge", f"DeleteObject under {cache}: {_storage_error(e)}",
                                 f"sync.purge_cache needs s3:DeleteObject on {cache}*"))
        else:
            checks.append(doctor.purge_check(status, cache))
    return checks, True


async def filesystem_checks(store: FileStorage, purge_cache: bool) -> tuple[list[Check], bool]:
    """storage (the root readable), hash cache (writable), cache folder, cache purge (with sync.purge_cache)
    on a `filestore.FileStorage`, entered; and whether the root can be read."""
    root = store.cfg.root
    later = ["hash cache", "cache folder", *(["cache purge"] if purge_cache else [])]
    try:
        await store.check_access()
    except AccessError as e:
        hint = ("set storage.root to Magento's pub/media and run nacento-sync as the user that owns the "
                "Magento files")
        return [failed("storage", _why(e), hint), *(skipped(n, "storage root unreadable") for n in later)], False
    checks = [passed("storage", f"root {root} readable (resolved: {store.root})")]
    problem = await asyncio.to_thread(store.cache_problem)
    if problem is None:
        checks.append(passed("hash cache", f"{store.cache.path} writable"))
    else:
        checks.append(failed("hash cache", problem, "set XDG_CACHE_HOME to a directory this user may write: "
                             "without the cache every re-sync reads and hashes every file"))
    cache = os.path.join(store.root, "catalog", "product", "cache")
    folders = await store.cache_folders()
    checks.append(doctor.cache_folder_check(folders, cache + "/"))
    if purge_cache:
        if not folders:
            checks.append(informed("cache purge", f"no {cache}/ yet: nothing to delete"))
        elif await asyncio.to_thread(os.access, cache, os.W_OK | os.X_OK):
            checks.append(passed("cache purge", f"deleting under {cache}/ allowed"))
        else:
            checks.append(failed("cache purge", f"{cache}/ is not writable by this user",
                                 "run nacento-sync as the user that owns the Magento files"))
    return checks, True


def _storage_error(e: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        return f"HTTP {e.response.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')} " \
               f"{e.response.get('Error', {}).get('Code', '')}".strip()
    return "no answer in time" if isinstance(e, TimeoutError) else type(e).__name__


async def sample_image_check(store: Storage, paths: list[str]) -> Check:
    """HEAD the gallery's newest images (bounded by the storage timeouts)."""
    from nacento_sync import storage

    try:
        async with asyncio.timeout(storage.startup_bound(store.cfg)):
            results = await store.head_etags(paths)
    except TimeoutError:
        return failed("sample image", "HEAD: no answer in time", "check storage.endpoint")
    return doctor.sample_check(results, {p: store.key(p) for p in paths})


async def broker_check(cfg: QueueConfig) -> Check:
    """Connect (bounded) and look for the work queue with a passive declare."""
    from nacento_sync.asyncmode import queue

    where = redact_url(cfg.url)
    try:
        conn = await queue.connect(cfg)
    except (AccessError, ConfigError) as e:
        return failed("broker", _why(e), "check queue.url: the broker's host, port, user and password")
    try:
        async with asyncio.timeout(queue.startup_bound()):
            depths = await queue.queue_depths(conn, [cfg.queue])
        return doctor.queue_check(depths[cfg.queue], cfg.queue, where)
    except Exception as e:  # a broker silent after the handshake, or a refused channel
        return failed("broker", f"RabbitMQ at {where}: {type(e).__name__}", "check the broker's permissions on "
                      "the virtual host")
    finally:
        try:
            async with asyncio.timeout(queue.startup_bound()):
                await conn.close()
        except Exception as e:  # closing a connection that failed: nothing left to report
            log.debug("closing the broker connection: %s", type(e).__name__)


async def _guarded(name: str, make: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    """`make()`, or one ✗ line for an exception nothing above expected."""
    try:
        return await make()
    except Exception as e:
        return [failed(name, f"{type(e).__name__}: {_why(e)}", "report this as a bug of nacento-sync doctor")]


async def run_checks(cfg: Config, queue_configured: bool) -> list[Check]:
    """Every check after the configuration's, in the report's order; secrets masked in every line."""
    from nacento_sync import storage

    scopes = (grants.SYNC, grants.ASYNC) if queue_configured else (grants.SYNC,)
    samples: list[str] | None = None

    async def database() -> list[Check]:
        nonlocal samples
        checks, samples = await database_checks(cfg, scopes)
        return checks

    async def bucket() -> list[Check]:
        if cfg.storage is None:
            later = ["sample image", "cache folder", *(["cache purge"] if cfg.sync.purge_cache else [])]
            return [failed("storage", "storage.bucket is not configured",
                           "set storage.bucket (config file section storage, or NACENTO_STORAGE__BUCKET)"),
                    *(skipped(n, "storage not configured") for n in later)]
        if cfg.storage.backend == "filesystem":
            from nacento_sync.filestore import FileStorage

            store: Any = FileStorage(cfg.storage, concurrency=SAMPLES)
            checks_of: Callable[[Any, bool], Awaitable[tuple[list[Check], bool]]] = filesystem_checks
        else:
            store, checks_of = storage.Storage(cfg.storage, concurrency=SAMPLES), storage_checks
        async with store:
            checks, reachable = await checks_of(store, cfg.sync.purge_cache)
            await database_done.wait()
            if not reachable:
                checks.insert(1, skipped("sample image", "storage unreachable"))
            elif samples is None:
                checks.insert(1, skipped("sample image", "database or magento tables failed"))
            else:
                checks.insert(1, await sample_image_check(store, samples))
            return checks

    async def broker() -> list[Check]:
        return [await broker_check(cfg.queue)] if queue_configured else []

    database_done = asyncio.Event()

    async def database_then_signal() -> list[Check]:
        try:
            return await _guarded("database", database)
        finally:
            database_done.set()

    groups = await asyncio.gather(database_then_signal(), _guarded("storage", bucket), _guarded("broker", broker))
    secrets = [cfg.database.password, cfg.queue.url,
               *((cfg.storage.access_key, cfg.storage.secret_key) if cfg.storage else ())]
    return [dataclasses.replace(c, detail=mask(c.detail, *secrets), hint=c.hint and mask(c.hint, *secrets))
            for group in groups for c in group]

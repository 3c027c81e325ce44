"""Fresh stores for the extra scenarios: the bench catalog's products in a database of their own.

The async, store-view and latency scenarios compare variants that must start from the same state, so
each variant gets a new database holding the same SKUs (galleries empty) and the main run's bucket.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pymysql
import yaml
from magento_schema import create_magento_store
from run import READ_TIMEOUT, _chunks, db_params, env

from nacento_sync.magento import meta_ddl


def fresh_store(database: str, skus: Iterable[str], views: Iterable[str] = ()) -> None:
    """(Re)create `database` with these products, galleries empty, and these store views."""
    store = create_magento_store(db_params(), database, "ce")
    try:
        store.execute(meta_ddl(""))
        for code in views:
            store.add_store(code)
        cur = store.conn.cursor()
        for chunk in _chunks(list(skus), 5000):
            cur.executemany("INSERT INTO catalog_product_entity (attribute_set_id, type_id, sku) "
                            "VALUES (4, 'simple', %s)", chunk)
    finally:
        store.conn.close()


def drop(database: str) -> None:
    conn = pymysql.connect(autocommit=True, **db_params())
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


def write_config(path: Path, database: str, bucket: str, queue: dict[str, Any] | None = None) -> Path:
    """A config like the main run's (bench.yaml), on `database`, with an optional `queue:` section."""
    db = db_params()
    cfg: dict[str, Any] = {
        "database": {**{k: db[k] for k in ("host", "port", "user", "password")}, "name": database},
        "storage": {"bucket": bucket, "endpoint": env("NACENTO_TEST_S3_ENDPOINT"), "access_key": "bench",
                    "secret_key": "bench", "path_style": True, "read_timeout": READ_TIMEOUT},
    }
    if queue:
        cfg["queue"] = queue
    path.write_text(yaml.safe_dump(cfg))
    return path

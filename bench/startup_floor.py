"""The start-up part of every floor: what any run must do before its first record, as one process.

    python bench/startup_floor.py CONFIG

Starts the interpreter, imports only what reaching the servers needs (yaml, aiomysql, and aioboto3 for a
bucket), reads the config, does the start-up look-ups the contract requires in one round trip (the store's
schema: link field and collation, attribute ids, store views, meta table), and checks the storage once (the
bucket, or the filesystem root). bench/latency_floor.py continues from here for `sku`; bench/run.py and
bench/filesystem.py add it to their scenarios' floors, so a ratio never rewards skipping start-up.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiomysql
import yaml

#: The start-up look-ups in one round trip: link field and collation, attribute ids, store views, meta table.
SCHEMA_SQL = (
    "SELECT (SELECT GROUP_CONCAT(column_name, ':', IFNULL(collation_name, '')) FROM information_schema.columns "
    "        WHERE table_schema = DATABASE() AND table_name = 'catalog_product_entity'), "
    "       (SELECT GROUP_CONCAT(a.attribute_code, ':', a.attribute_id) FROM eav_attribute a "
    "        JOIN eav_entity_type t ON t.entity_type_id = a.entity_type_id "
    "        WHERE t.entity_type_code = 'catalog_product' AND a.attribute_code IN "
    "        ('media_gallery', 'image', 'small_image', 'thumbnail', 'swatch_image', 'image_label', "
    "         'small_image_label', 'thumbnail_label')), "
    "       (SELECT GROUP_CONCAT(code, ':', store_id) FROM store WHERE store_id > 0), "
    "       (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
    "        AND table_name = 'nacento_media_gallery_meta'), VERSION()"
)


def read_config(config_file: str) -> dict[str, Any]:
    with open(config_file) as f:
        return yaml.safe_load(f)


async def connect(cfg: dict[str, Any]) -> aiomysql.Connection:
    """The database connection, the schema look-ups done on it."""
    db = cfg["database"]
    conn = await aiomysql.connect(host=db["host"], port=int(db["port"]), user=db["user"], password=db["password"],
                                  db=db["name"], charset="utf8mb4", autocommit=False)
    async with conn.cursor() as cur:
        await cur.execute(SCHEMA_SQL)
        await cur.fetchall()
    await conn.rollback()
    return conn


def s3_client(st: dict[str, Any]):
    import aioboto3
    from botocore.config import Config as BotoConfig

    return aioboto3.Session().client(
        "s3", endpoint_url=st["endpoint"], region_name="us-east-1", aws_access_key_id=st["access_key"],
        aws_secret_access_key=st["secret_key"], config=BotoConfig(s3={"addressing_style": "path"}))


async def startup(config_file: str) -> int:
    cfg = read_config(config_file)
    conn = await connect(cfg)
    try:
        st = cfg["storage"]
        if st.get("backend") == "filesystem":
            os.stat(st["root"])
        else:
            async with s3_client(st) as s3:
                await s3.head_bucket(Bucket=st["bucket"])
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(startup(sys.argv[1])))

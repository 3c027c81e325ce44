"""The latency floor: the least a `nacento-sync sku` run must do, as one process.

    python bench/latency_floor.py CONFIG SKU PATH [PATH ...]

Starts the interpreter and imports only what the command needs to reach its servers (yaml, aiomysql,
aioboto3), reads the config, does the start-up look-ups the contract requires (the store's schema in one
round trip, the bucket checked once), HEADs each image, then one transaction: the product locked by SKU
and its gallery read with the value rows and their ETags, committed. No write: the bench times the
command on a SKU whose gallery is already in sync, which writes nothing either.
"""

from __future__ import annotations

import asyncio
import sys

import aioboto3
import aiomysql
import yaml
from botocore.config import Config as BotoConfig

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
GALLERY_SQL = (
    "SELECT g.value_id, g.value, v.store_id, v.label, v.position, v.disabled, m.s3_etag "
    "FROM catalog_product_entity_media_gallery_value_to_entity e "
    "JOIN catalog_product_entity_media_gallery g ON g.value_id = e.value_id "
    "LEFT JOIN catalog_product_entity_media_gallery_value v ON v.value_id = g.value_id AND v.entity_id = e.entity_id "
    "LEFT JOIN nacento_media_gallery_meta m ON m.record_id = v.record_id WHERE e.entity_id = %s"
)


async def floor(config_file: str, sku: str, paths: list[str]) -> int:
    with open(config_file) as f:
        cfg = yaml.safe_load(f)
    db, st = cfg["database"], cfg["storage"]
    conn = await aiomysql.connect(host=db["host"], port=int(db["port"]), user=db["user"], password=db["password"],
                                  db=db["name"], charset="utf8mb4", autocommit=False)
    try:
        async with aioboto3.Session().client(
                "s3", endpoint_url=st["endpoint"], region_name="us-east-1", aws_access_key_id=st["access_key"],
                aws_secret_access_key=st["secret_key"], config=BotoConfig(s3={"addressing_style": "path"})) as s3:
            async with conn.cursor() as cur:
                await cur.execute(SCHEMA_SQL)
                await cur.fetchall()
            await conn.rollback()
            await s3.head_bucket(Bucket=st["bucket"])
            heads = await asyncio.gather(*(s3.head_object(Bucket=st["bucket"],
                                                          Key="media/catalog/product/" + p.lstrip("/"))
                                           for p in paths))
            async with conn.cursor() as cur:
                await cur.execute("SELECT entity_id FROM catalog_product_entity WHERE sku = %s FOR UPDATE", (sku,))
                (entity_id,) = await cur.fetchone()
                await cur.execute(GALLERY_SQL, (entity_id,))
                rows = await cur.fetchall()
            await conn.commit()
    finally:
        conn.close()
    return 0 if rows and all(h.get("ETag") for h in heads) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(floor(sys.argv[1], sys.argv[2], sys.argv[3:])))

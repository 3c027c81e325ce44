"""The latency floor: the least a `nacento-sync sku` run must do, as one process.

    python bench/latency_floor.py CONFIG SKU PATH [PATH ...]

Starts the interpreter and imports only what the command needs to reach its servers (yaml, aiomysql,
aioboto3), reads the config, does the start-up look-ups the contract requires (the store's schema in one
round trip, the bucket checked once: bench/startup_floor.py's part), HEADs each image, then one
transaction: the product locked by SKU and its gallery read with the value rows and their ETags,
committed. No write: the bench times the command on a SKU whose gallery is already in sync, which writes
nothing either.
"""

from __future__ import annotations

import asyncio
import sys

from startup_floor import connect, read_config, s3_client

GALLERY_SQL = (
    "SELECT g.value_id, g.value, v.store_id, v.label, v.position, v.disabled, m.s3_etag "
    "FROM catalog_product_entity_media_gallery_value_to_entity e "
    "JOIN catalog_product_entity_media_gallery g ON g.value_id = e.value_id "
    "LEFT JOIN catalog_product_entity_media_gallery_value v ON v.value_id = g.value_id AND v.entity_id = e.entity_id "
    "LEFT JOIN nacento_media_gallery_meta m ON m.record_id = v.record_id WHERE e.entity_id = %s"
)


async def floor(config_file: str, sku: str, paths: list[str]) -> int:
    cfg = read_config(config_file)
    st = cfg["storage"]
    conn = await connect(cfg)  # the start-up part: bench/startup_floor.py
    try:
        async with s3_client(st) as s3:
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

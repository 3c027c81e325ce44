"""`baseline`: the original PHP module's algorithm, re-implemented faithfully for comparison.

Per SKU (sequentially): load the product. Per image: a SELECT for the existing entry, an existence
check and a HEAD on the object (two requests), then writes with no batching: INSERT the gallery row,
its link, its store-0 value row and the meta row, or — for an existing entry — UPDATE its value row
and the meta row. Every image is rewritten on every run (the module never used the ETag it read), and
each statement commits on its own, as Magento's resource models do outside an explicit transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import boto3
import pymysql
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError


@dataclass
class BaselineResult:
    images: int
    seconds: float
    head_requests: int
    sql_statements: int

    @property
    def per_image_ms(self) -> float:
        return 1000 * self.seconds / max(self.images, 1)


def run_baseline(db: dict, database: str, s3: dict, bucket: str, items: list[dict]) -> BaselineResult:
    conn = pymysql.connect(autocommit=True, database=database, **db)
    client = boto3.client("s3", config=BotoConfig(s3={"addressing_style": "path"}), **s3)
    cur = conn.cursor()
    statements = heads = images = 0

    def q(sql, args=()):
        nonlocal statements
        statements += 1
        cur.execute(sql, args)
        return cur.fetchall()

    (attr,) = q("SELECT a.attribute_id FROM eav_attribute a JOIN eav_entity_type t USING (entity_type_id) "
                "WHERE t.entity_type_code = 'catalog_product' AND a.attribute_code = 'media_gallery'")[0]
    started = time.perf_counter()
    for item in items:
        rows = q("SELECT entity_id FROM catalog_product_entity WHERE sku = %s", (item["sku"],))
        if not rows:
            continue
        (entity_id,) = rows[0]
        q("SELECT * FROM catalog_product_entity_varchar WHERE entity_id = %s", (entity_id,))  # product load
        for position, image in enumerate(item["images"], 1):
            path = image["file_path"].lstrip("/")  # the module stored paths without the slash
            images += 1
            key = "media/catalog/product/" + path
            try:
                client.head_object(Bucket=bucket, Key=key)  # doesObjectExist()
                etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')  # getObjectMetadata()
                heads += 2
            except ClientError:
                heads += 1
                continue
            found = q("SELECT g.value_id FROM catalog_product_entity_media_gallery g "
                      "JOIN catalog_product_entity_media_gallery_value_to_entity e ON e.value_id = g.value_id "
                      "WHERE e.entity_id = %s AND g.value = %s", (entity_id, path))
            label = image.get("label")
            if found:
                (value_id,) = found[0]
                q("UPDATE catalog_product_entity_media_gallery_value SET label = %s, position = %s "
                  "WHERE value_id = %s AND entity_id = %s AND store_id = 0", (label, position, value_id, entity_id))
                (record_id,) = q("SELECT record_id FROM catalog_product_entity_media_gallery_value "
                                 "WHERE value_id = %s AND entity_id = %s AND store_id = 0",
                                 (value_id, entity_id))[0]
            else:
                q("INSERT INTO catalog_product_entity_media_gallery (attribute_id, value, media_type) "
                  "VALUES (%s, %s, 'image')", (attr, path))
                value_id = cur.lastrowid
                q("INSERT INTO catalog_product_entity_media_gallery_value_to_entity (value_id, entity_id) "
                  "VALUES (%s, %s)", (value_id, entity_id))
                q("INSERT INTO catalog_product_entity_media_gallery_value (value_id, store_id, entity_id, label, "
                  "position, disabled) VALUES (%s, 0, %s, %s, %s, 0)", (value_id, entity_id, label, position))
                record_id = cur.lastrowid
            q("INSERT INTO nacento_media_gallery_meta (record_id, s3_etag) VALUES (%s, %s) "
              "ON DUPLICATE KEY UPDATE s3_etag = VALUES(s3_etag)", (record_id, etag))
    seconds = time.perf_counter() - started
    conn.close()
    return BaselineResult(images, seconds, heads, statements)

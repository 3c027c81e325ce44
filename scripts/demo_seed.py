"""Seed the demo: a Magento (Open Source) database `nacento_demo`, the bucket `demo-media` with sample
images, and the config `.run/demo.yaml`. Used by scripts/demo; needs the servers of scripts/services
(reads NACENTO_TEST_DB_* and NACENTO_TEST_S3_ENDPOINT from the environment, see .run/env).

The feed the demo syncs is examples/demo.ndjson (and the same items in examples/demo.json); every image
it names is uploaded here, so the sync finds them all.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from magento_schema import create_magento_store  # noqa: E402

DATABASE = "nacento_demo"
BUCKET = "demo-media"
FEED = ROOT / "examples" / "demo.ndjson"
CONFIG = ROOT / ".run" / "demo.yaml"

#: What the demo store already has before the first sync: sku -> [(stored value, label, position, roles)].
EXISTING: dict[str, list[tuple[str, str, int, tuple[str, ...]]]] = {
    # Magento's own (slashed) spelling: the feed's `d/e/demo-1.jpg` is this same image.
    "DEMO-001": [("/d/e/demo-1.jpg", "Front (old label)", 1, ("image", "small_image", "thumbnail"))],
    # Written without the slash by the original PHP module: still the same image as the feed's.
    "DEMO-002": [("d/e/demo-2.jpg", "Side", 1, ("image",))],
    "DEMO-003": [],
    # Not in the feed: merge mode leaves it alone.
    "DEMO-004": [("/d/e/demo-4-old.jpg", "Old packshot", 1, ("image", "small_image", "thumbnail"))],
    "DEMO-005": [],
}


def relative_path(file_path: str) -> str:
    """`d/e/x.jpg` for any spelling the feed uses (`/d/e/x.jpg`, `catalog/product/...`, a media URL)."""
    path = file_path.strip()
    marker = path.find("catalog/product/")
    if marker >= 0:
        path = path[marker + len("catalog/product/") :]
    return path.lstrip("/")


def image_bytes(name: str) -> bytes:
    """A few hundred deterministic bytes that start and end like a JPEG (stable ETags across runs)."""
    seed = hashlib.sha256(name.encode()).digest()
    body = (seed * (8 + seed[0] % 8))[: 256 + seed[1]]
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9"


def feed_paths() -> list[str]:
    paths: list[str] = []
    for line in FEED.read_text(encoding="utf-8").splitlines():
        if line.strip():
            paths += [relative_path(img["file_path"]) for img in json.loads(line)["images"]]
    return paths


def main() -> int:
    env = os.environ
    try:
        db = {
            "host": env["NACENTO_TEST_DB_HOST"],
            "port": int(env["NACENTO_TEST_DB_PORT"]),
            "user": env["NACENTO_TEST_DB_USER"],
            "password": env["NACENTO_TEST_DB_PASSWORD"],
        }
        endpoint = env["NACENTO_TEST_S3_ENDPOINT"]
    except KeyError as exc:
        print(f"demo_seed: {exc.args[0]} is not set; run scripts/demo (or source .run/env)", file=sys.stderr)
        return 2

    # 1. The Magento database.
    store = create_magento_store(db, DATABASE, "ce")
    try:
        for sku, entries in EXISTING.items():
            product = store.add_product(sku)
            for value, label, position, roles in entries:
                store.add_gallery_entry(product.link_id, value, label=label, position=position)
                for role in roles:
                    store.set_varchar(product.link_id, role, value)
                    if role != "swatch_image":
                        store.set_varchar(product.link_id, f"{role}_label", label)
    finally:
        store.conn.close()

    # 2. The bucket and its images, under Magento's remote-storage keys.
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        config=Config(s3={"addressing_style": "path"}),
    )
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    existing = [relative_path(v) for entries in EXISTING.values() for v, *_ in entries]
    for rel in sorted(set(feed_paths() + existing)):
        s3.put_object(
            Bucket=BUCKET,
            Key=f"media/catalog/product/{rel}",
            Body=image_bytes(rel),
            ContentType="image/jpeg",
        )

    # 3. The tool's configuration.
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(
        f'database: {{host: {db["host"]}, port: {db["port"]}, user: {db["user"]}, '
        f'password: {json.dumps(db["password"])}, name: {DATABASE}, table_prefix: ""}}\n'
        f'storage: {{bucket: {BUCKET}, endpoint: "{endpoint}", region: us-east-1, access_key: demo, '
        'secret_key: demo, path_style: true, prefix: ""}\n'
        "sync: {mode: merge, batch_size: 200, concurrency: 32}\n",
        encoding="utf-8",
    )
    count = len(set(feed_paths() + existing))
    print(f"seeded database {DATABASE} ({len(EXISTING)} products), bucket {BUCKET} ({count} images), {CONFIG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""nacento-sync benchmark, local media (`storage.backend: filesystem`): bench/run.py's synthetic catalog with its
images as files on local disk, and three figures measured in one run.

    .venv/bin/python bench/filesystem.py                           # 20,000 SKUs x 5 images, 16 KiB files
    .venv/bin/python bench/filesystem.py --skus 2000 --file-kib 64

Needs the local MariaDB (`. .run/env`, or through scripts/bench's servers). Scenarios run a sync through the
library API as a process of their own (bench/scenario.py, as bench/run.py does):

  cold       empty galleries and an empty hash cache: every file is read and hashed (the page cache is warm:
             the files were just written)
  nochange   the same export again, the hash cache warm: one stat per file, no file read

Reference: `floor` = one `stat` per listed file + one streaming read of the gallery tables, measured right
after `nochange`. The target is nochange ≤ 1.5 × floor. Also shown: the `full floor`, which adds what every run
must do besides (start-up as bench/startup_floor.py does it, and reading the export with `json`); and, to
tell the backend's share from the engine's, the backend's own look-ups over every path with the warm hash
cache, without a sync; and the `batched floor`, a second reference: the stats plus the reads that per-batch
transactions cannot skip (products by SKU, gallery rows, role values, batch by batch, rows only fetched).
Prints the figures and writes bench/out/filesystem.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from magento_schema import create_magento_store  # noqa: E402
from run import GALLERY_ROWS, console, db_params, gallery_read, image_path, run_scenario, stages_line, startup_floor  # noqa: E402

from nacento_sync.config import load_config  # noqa: E402
from nacento_sync.hashcache import SETTLE_NS  # noqa: E402
from nacento_sync.magento import meta_ddl  # noqa: E402

#: The target: a no-change re-sync within this factor of the floor.
TARGET = 1.5


def generate(args, out: Path) -> dict:
    """The store, the files under `<out>/fs-media/pub/media`, the export and the config."""
    rng = random.Random(42)
    store = create_magento_store(db_params(), args.database, "ce")
    store.execute(meta_ddl(""))
    cur = store.conn.cursor()
    skus = [f"BENCH-{i:07d}" for i in range(args.skus)]
    for i in range(0, len(skus), 5000):
        cur.executemany("INSERT INTO catalog_product_entity (attribute_set_id, type_id, sku) "
                        "VALUES (4, 'simple', %s)", skus[i:i + 5000])
    store.conn.close()
    items = [{"sku": sku, "images": [{"file_path": image_path(rng, i, j).lstrip("/"), "label": f"{sku} view {j}",
                                      "roles": ["base", "small", "thumbnail"] if j == 0 else []}
                                     for j in range(args.images)]} for i, sku in enumerate(skus)]
    paths = ["/" + im["file_path"] for it in items for im in it["images"]]
    missing = set(rng.sample(paths, k=max(1, len(paths) // 500)))

    media = out / "fs-media" / "pub" / "media"
    shutil.rmtree(out / "fs-media", ignore_errors=True)
    product = media / "catalog" / "product"
    present = [p for p in dict.fromkeys(paths) if p not in missing]
    size = args.file_kib * 1024
    started = time.perf_counter()

    def write(path: str, folder: Path = product, body: bytes | None = None) -> None:
        file = folder / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        seed = path.encode()
        file.write_bytes(body if body is not None else (seed * (size // len(seed) + 1))[:size])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, present))
        # Resized copies, as a real store has them (never read by a sync).
        list(pool.map(lambda p: write(p, product / "cache" / "abc123", b"resized"), present[: len(present) // 10]))
    console.print(f"wrote {len(present)} files of {args.file_kib} KiB in {time.perf_counter() - started:.0f} s")

    feed = out / "fs-f0.ndjson"
    feed.write_text("".join(json.dumps(i) + "\n" for i in items))
    config = out / "fs-bench.yaml"
    db = db_params()
    config.write_text(yaml.safe_dump({
        "database": {**{k: db[k] for k in ("host", "port", "user", "password")}, "name": args.database},
        "storage": {"backend": "filesystem", "root": str(media)},
    }))
    return {"config": config, "feed": feed, "media": media, "paths": list(dict.fromkeys(paths)),
            "images": len(paths), "missing": len(missing)}


def stat_pass(product: Path, paths: list[str]) -> float:
    """The floor's storage part: one `stat` per listed file (a missing one included), sequentially."""
    started = time.perf_counter()
    base = str(product)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.stat(base + path)
    return time.perf_counter() - started


def export_pass(feed: Path) -> float:
    """Reading the export, each line decoded by `json` (no validation): part of issue 12's fuller floor."""
    started = time.perf_counter()
    with feed.open("rb") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - started


def batched_read_pass(database: str, feed: Path, batch: int = 200) -> float:
    """Not the target's floor, a second reference: the reads a design of per-batch transactions cannot skip,
    with nothing done to the rows. For each batch of the export's SKUs (200, the default `sync.batch_size`),
    the products by SKU, their gallery rows (the floor's columns) and their role values, by index, on one
    connection, each row only fetched. The floor's single streaming scan reads the same rows for less."""
    import pymysql

    skus = [json.loads(line)["sku"] for line in feed.open("rb")]
    conn = pymysql.connect(database=database, **db_params())
    with conn.cursor() as cur:
        cur.execute("SELECT attribute_id FROM eav_attribute WHERE entity_type_id = 4 AND attribute_code IN "
                    "('image', 'small_image', 'thumbnail', 'swatch_image', 'image_label', 'small_image_label', "
                    "'thumbnail_label')")
        roles = ", ".join(str(r[0]) for r in cur.fetchall())
        started = time.perf_counter()
        for i in range(0, len(skus), batch):
            chunk = skus[i:i + batch]
            cur.execute(f"SELECT entity_id FROM catalog_product_entity WHERE sku IN ({', '.join(['%s'] * len(chunk))})",
                        chunk)
            ids = ", ".join(str(r[0]) for r in cur.fetchall()) or "0"
            cur.execute(f"{GALLERY_ROWS} WHERE e.entity_id IN ({ids})")
            cur.fetchall()
            cur.execute(f"SELECT entity_id, attribute_id, store_id, value FROM catalog_product_entity_varchar "
                        f"WHERE entity_id IN ({ids}) AND attribute_id IN ({roles})")
            cur.fetchall()
        seconds = time.perf_counter() - started
    conn.close()
    return seconds


def lookup_pass(config: Path, paths: list[str], batch: int = 1000) -> float:
    """Not part of the floor: the backend's own share of a no-change re-sync (`FileStorage.head_etags` over
    every listed path, warm hash cache, a batch's worth at a time), to tell it from the engine's."""
    from nacento_sync.filestore import FileStorage

    cfg = load_config(str(config), env={}).storage
    assert cfg is not None

    async def go() -> float:
        async with FileStorage(cfg) as files:
            started = time.perf_counter()
            for i in range(0, len(paths), batch):
                await files.head_etags(paths[i:i + batch])
            assert files.requests["READ"] == 0, files.requests
            return time.perf_counter() - started

    return asyncio.run(go())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--file-kib", type=int, default=16, help="size of each image file")
    p.add_argument("--database", default="nacento_bench_fs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--keep-files", action="store_true", help="keep the image tree and the hash cache")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    console.print(f"generating {args.skus} SKUs x {args.images} images on disk …")
    g = generate(args, args.out)
    xdg = args.out / "fs-xdg-cache"  # the run's own hash cache, empty for `cold`
    shutil.rmtree(xdg, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = str(xdg)  # the scenarios' processes inherit it
    time.sleep(SETTLE_NS / 1e9 + 0.1)  # files written just now are not cached: let them settle, as a store's have
    try:
        results = []
        for name in ("cold", "nochange"):
            console.print(f"scenario {name} …")
            res = run_scenario(f"fs-{name}", g["config"], g["feed"], args.out)
            res["scenario"] = name
            results.append(res)
        stat_seconds = stat_pass(g["media"] / "catalog" / "product", g["paths"])
        read_seconds = gallery_read(args.database)
        extra = {"startup_seconds": startup_floor(g["config"]), "export_seconds": export_pass(g["feed"]),
                 "batched_read_seconds": batched_read_pass(args.database, g["feed"])}
        lookup_seconds = lookup_pass(g["config"], g["paths"])
        report(args, g, results, stat_seconds, read_seconds, lookup_seconds, extra)
    finally:
        if not args.keep_files:  # 100,000 unlinks can take minutes: after the figures are out
            shutil.rmtree(args.out / "fs-media", ignore_errors=True)
            shutil.rmtree(xdg, ignore_errors=True)


def report(args, g: dict, results: list[dict], stat_seconds: float, read_seconds: float,
           lookup_seconds: float, extra: dict[str, float]) -> None:
    floor = stat_seconds + read_seconds
    full = floor + extra["startup_seconds"] + extra["export_seconds"]
    batched = stat_seconds + extra["batched_read_seconds"] + extra["startup_seconds"] + extra["export_seconds"]
    nochange = results[1]
    summary = {
        "size": {"skus": args.skus, "images_per_sku": args.images, "images": g["images"], "missing": g["missing"],
                 "file_kib": args.file_kib},
        "scenarios": [{k: r[k] for k in ("scenario", "seconds", "images", "images_per_s", "requests",
                                         "sql_statements", "peak_rss_mb", "stats", "stage_seconds", "cpu_seconds")}
                      for r in results],
        "floor": {"stat_seconds": round(stat_seconds, 3), "gallery_read_seconds": round(read_seconds, 3),
                  "seconds": round(floor, 3)},
        "nochange_vs_floor": round(nochange["seconds"] / floor, 2),
        "full_floor": {"startup_seconds": round(extra["startup_seconds"], 3),
                       "export_seconds": round(extra["export_seconds"], 3), "seconds": round(full, 3)},
        "nochange_vs_full_floor": round(nochange["seconds"] / full, 2),
        "batched_floor": {"stat_seconds": round(stat_seconds, 3),
                          "batched_read_seconds": round(extra["batched_read_seconds"], 3),
                          "seconds": round(batched, 3)},
        "nochange_vs_batched_floor": round(nochange["seconds"] / batched, 2),
        "nochange_seconds_per_image": nochange["seconds"] / max(g["images"], 1),
        "backend_lookup_seconds": round(lookup_seconds, 3),
        "target": TARGET,
    }
    (args.out / "filesystem.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)


def print_summary(s: dict) -> None:
    size = s["size"]
    print(f"nacento-sync filesystem bench: {size['skus']} SKUs x {size['images_per_sku']} images "
          f"({size['images']} images, {size['missing']} missing files, {size['file_kib']} KiB each)")
    for r in s["scenarios"]:
        req = r["requests"]
        print(f"  {r['scenario']:<9} {r['seconds']:8.2f} s  {r['images_per_s']:9.0f} images/s  "
              f"STAT {req.get('STAT', 0)}  READ {req.get('READ', 0)}  SQL {r['sql_statements']}  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"            stages: {stages_line(r['stage_seconds'])}")
        print("            cpu s: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_seconds"].items()))
    f = s["floor"]
    print(f"  floor     {f['seconds']:8.2f} s  (one stat per file {f['stat_seconds']:.2f} s + gallery read "
          f"{f['gallery_read_seconds']:.2f} s)")
    print(f"  (the backend's own look-ups, warm hash cache, no sync: {s['backend_lookup_seconds']:.2f} s)")
    ff = s["full_floor"]
    print(f"  full floor {ff['seconds']:7.2f} s  (the floor + start-up {ff['startup_seconds']:.2f} s + reading the "
          f"export {ff['export_seconds']:.2f} s: what every run must do, issue 12)")
    bf = s["batched_floor"]
    print(f"  batched floor {bf['seconds']:4.2f} s  (stat {bf['stat_seconds']:.2f} s + the reads of per-batch "
          f"transactions, rows only fetched, {bf['batched_read_seconds']:.2f} s + start-up + export: a reference, "
          "not the target's floor)")
    print(f"  no-change re-sync: {1e6 * s['nochange_seconds_per_image']:.1f} µs per image")
    print(f"no-change re-sync ÷ floor: {s['nochange_vs_floor']:.2f} (target ≤ {s['target']}); "
          f"÷ full floor: {s['nochange_vs_full_floor']:.2f}; ÷ batched floor: {s['nochange_vs_batched_floor']:.2f}",
          flush=True)


if __name__ == "__main__":
    main()

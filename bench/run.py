"""nacento-sync benchmark: a synthetic store, five scenarios, and three references measured in the same run.

    ./scripts/bench                          # default: 20,000 SKUs x 5 images, 1,000,000-line RSS check
    ./scripts/bench --skus 2000 --images 5   # smaller

Needs the local servers (scripts/bench starts them). Prints a table and writes bench/out/results.json.
Scenarios run a sync through the library API (`nacento_sync.sync`, bench/scenario.py) as a separate process
each (wall time, peak RSS via wait4, S3 requests from the run's figures, SQL statements from the server's
`Questions` counter):

  cold       empty galleries (a few legacy unslashed and shared rows, a few missing objects)
  nochange   the same export again
  reupload   5 % of the objects re-uploaded with new bytes
  labels     5 % of the labels changed
  replace    replace mode with 5 % of the images dropped

`--only sync,async,latency,storeviews` picks parts (default: all); the last three are bench/extra.py's.

References: `baseline` (the original module's per-image algorithm, bench/baseline.py, on a sample of
separate SKUs), `floor` (start-up as bench/startup_floor.py does it + one parallel LIST pass over the
originals + one streaming read of the gallery tables + multi-row inserts of the rows the scenario wrote + in
replace mode, its journal written with one fsync per transaction), and the S3 server's own listing rate.
Each scenario also prints the CPU seconds its own process and each local server (moto, MariaDB, from their
pid files under .run/) used, and moto's CPU during the LIST pass measured after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aioboto3
import boto3
import pymysql
import yaml
from botocore.config import Config as BotoConfig
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # magento_schema: the store builder (never tests/)
sys.path.insert(0, str(ROOT / "bench"))

from baseline import run_baseline  # noqa: E402
from extra import PARTS, extra_parts, parts, print_extra  # noqa: E402
from magento_schema import create_magento_store  # noqa: E402

from nacento_sync.magento import meta_ddl  # noqa: E402

CHARS = string.ascii_lowercase + string.digits
#: `storage.read_timeout` of the bench's configs: botocore's own default, which the floor's LIST pass uses too.
#: moto lists a folder by walking the whole bucket, so with 100,000 keys and 32 LISTs at once a page can take
#: longer than the tool's 10 s default; every attempt cut short is redone (moto finishes the abandoned one
#: anyway), which the floor would not pay. The 10 s default is for real endpoints (a LIST page of S3, R2 or
#: MinIO takes well under a second).
READ_TIMEOUT = 60
#: Runs a command and prints its exit code and peak RSS (KB) as the last line of stderr.
_LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(code, u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr)")
#: The local servers' pid files (scripts/services writes them): their CPU seconds tell a server that was
#: slow because it was starved of CPU from one that had more to do.
SERVER_PIDFILES = {"s3": ROOT / ".run" / "moto.pid", "db": ROOT / ".run" / "mariadb.pid"}
console = Console(stderr=True)


def env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        sys.exit(f"{name} is not set: run through ./scripts/bench (it starts the local servers)")
    return value


def db_params() -> dict:
    return {"host": env("NACENTO_TEST_DB_HOST"), "port": int(env("NACENTO_TEST_DB_PORT")),
            "user": env("NACENTO_TEST_DB_USER"), "password": env("NACENTO_TEST_DB_PASSWORD")}


def s3_params() -> dict:
    return {"endpoint_url": env("NACENTO_TEST_S3_ENDPOINT"), "region_name": "us-east-1",
            "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def image_path(rng: random.Random, sku_index: int, j: int) -> str:
    name = rng.choice(CHARS) + rng.choice(CHARS) + "".join(rng.choices(CHARS, k=6)) + f"-{sku_index}-{j}.jpg"
    return f"/{name[0]}/{name[1]}/{name}"


# ---------------------------------------------------------------- the synthetic store


def generate(args, out: Path) -> dict:
    rng = random.Random(42)
    store = create_magento_store(db_params(), args.database, "ce")
    store.execute(meta_ddl(""))
    cur = store.conn.cursor()
    skus = [f"BENCH-{i:07d}" for i in range(args.skus)]
    base_skus = [f"BASE-{i:05d}" for i in range(args.baseline_skus)]
    for chunk in _chunks(skus + base_skus, 5000):
        cur.executemany("INSERT INTO catalog_product_entity (attribute_set_id, type_id, sku) "
                        "VALUES (4, 'simple', %s)", chunk)
    ids = {r["sku"]: r["entity_id"] for r in store.query("SELECT sku, entity_id FROM catalog_product_entity")}

    items = [{"sku": sku, "images": [{"file_path": image_path(rng, i, j).lstrip("/"), "label": f"{sku} view {j}",
                                      "roles": ["base", "small", "thumbnail"] if j == 0 else []}
                                     for j in range(args.images)]} for i, sku in enumerate(skus)]
    base_items = [{"sku": sku, "images": [{"file_path": image_path(rng, 10**7 + i, j), "label": f"view {j}"}
                                          for j in range(args.images)]} for i, sku in enumerate(base_skus)]
    all_paths = ["/" + im["file_path"].lstrip("/") for it in items + base_items for im in it["images"]]
    missing = set(rng.sample(all_paths[: len(items) * args.images], k=max(1, len(items) * args.images // 500)))

    # Pre-existing rows: 1 % of products have their first image as a legacy unslashed entry; 0.5 % of
    # products share one gallery row with the next product (which lists that image too).
    legacy = rng.sample(range(len(items)), k=max(1, len(items) // 100))
    for i in legacy:
        value = items[i]["images"][0]["file_path"].lstrip("/")
        store.add_gallery_entry(ids[items[i]["sku"]], value, label="old label", position=1)
    shared = [i for i in rng.sample(range(len(items) - 1), k=max(1, len(items) // 200)) if i not in legacy]
    for i in shared:
        path = "/" + items[i]["images"][1 % args.images]["file_path"].lstrip("/")
        items[i + 1]["images"].append({"file_path": path.lstrip("/"), "label": "shared"})
        vid = store.add_gallery_entry(ids[items[i]["sku"]], path, label="shared", position=9)
        store.link_entry(vid, ids[items[i + 1]["sku"]])
        store.add_value_row(vid, ids[items[i + 1]["sku"]], 0, "shared", 9)

    bucket = f"bench-{args.database.replace('_', '-')}-{int(time.time())}"
    boto3.client("s3", **s3_params()).create_bucket(Bucket=bucket)
    started = time.perf_counter()
    uploads = [p for p in dict.fromkeys(all_paths) if p not in missing]
    put_all(bucket, uploads, "media/catalog/product", b"")
    # Resized copies: the cache tree a real store has (never listed by nacento-sync).
    put_all(bucket, uploads[: len(uploads) // 10], "media/catalog/product/cache/abc123", b"resized")
    console.print(f"uploaded {len(uploads)} objects in {time.perf_counter() - started:.0f} s")

    feeds = {"f0": items}
    f1 = json.loads(json.dumps(items))
    for it in rng.sample(f1, k=max(1, len(f1) // 20)):
        it["images"][-1]["label"] = (it["images"][-1].get("label") or "") + " (new)"
    feeds["f1"] = f1
    f2 = json.loads(json.dumps(f1))
    for it in rng.sample(f2, k=max(1, len(f2) // 20)):
        it["images"].pop()
    feeds["f2"] = f2
    paths = {}
    for name, feed in feeds.items():
        paths[name] = out / f"{name}.ndjson"
        paths[name].write_text("".join(json.dumps(i) + "\n" for i in feed))
    config = out / "bench.yaml"
    db = db_params()
    config.write_text(yaml.safe_dump({
        "database": {**{k: db[k] for k in ("host", "port", "user", "password")}, "name": args.database},
        "storage": {"bucket": bucket, "endpoint": env("NACENTO_TEST_S3_ENDPOINT"), "access_key": "bench",
                    "secret_key": "bench", "path_style": True, "read_timeout": READ_TIMEOUT},
    }))
    store.conn.close()
    return {"config": config, "feeds": paths, "bucket": bucket, "base_items": base_items, "uploads": uploads,
            "images": sum(len(i["images"]) for i in items), "missing": len(missing)}


def put_all(bucket: str, paths: list[str], key_prefix: str, suffix: bytes) -> None:
    """Upload one small object per path, 32 at a time."""
    client = boto3.client("s3", config=BotoConfig(s3={"addressing_style": "path"}, max_pool_connections=32),
                          **s3_params())
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda p: client.put_object(Bucket=bucket, Key=key_prefix + p, Body=p.encode() + suffix),
                      paths))


def _chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# ---------------------------------------------------------------- measurements


def server_cpu() -> dict[str, float]:
    """CPU seconds (user + system) each local server has used so far, from /proc; {} where unknown."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pidfile in SERVER_PIDFILES.items():
        try:
            fields = Path(f"/proc/{int(pidfile.read_text().split()[0])}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    return used


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 2) for k in before if k in after}


def questions() -> int:
    conn = pymysql.connect(**db_params())
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
        n = int(cur.fetchone()[1])
    conn.close()
    return n


def startup_floor(config: Path, runs: int = 3) -> float:
    """Every floor's start-up part (bench/startup_floor.py as a process: interpreter, imports, config, the
    start-up look-ups, one storage check), the median of `runs`."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "bench" / "startup_floor.py"), str(config)], check=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def journal_floor(journal: str | None, transactions: int, scratch: Path) -> float:
    """The floor's journal part (replace mode always journals): the run's own journal bytes written to a
    scratch file in `transactions` pieces, each made durable with fsync, as the run does before each COMMIT."""
    if not journal:
        return 0.0
    lines = Path(journal).read_bytes().splitlines(keepends=True)
    step = max(1, -(-len(lines) // max(transactions, 1)))
    started = time.perf_counter()
    with scratch.open("wb") as f:
        for i in range(0, len(lines), step):
            f.write(b"".join(lines[i:i + step]))
            f.flush()
            os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    scratch.unlink()
    return seconds


def run_scenario(name: str, config: Path, feed: Path, out: Path, *extra: str) -> dict:
    report = out / f"{name}.report.json"
    q0 = questions()
    cpu0 = server_cpu()
    started = time.perf_counter()
    # Measured as a grandchild: a child forked from this (large) process would count our pages in its peak.
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, str(ROOT / "bench" / "scenario.py"),
                           str(config), str(feed), str(report), *extra],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    servers = cpu_between(cpu0, server_cpu())
    *log, last = proc.stderr.rstrip("\n").split("\n")
    code_text, maxrss_text, cpu_text = last.split()
    code, maxrss_kb, cpu = int(code_text), int(maxrss_text), float(cpu_text)
    if code != 0:
        sys.exit(f"scenario {name} failed with exit code {code}:\n" + "\n".join(log)[-2000:])
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    written = json.loads(report.read_text())
    st = written["stats"]
    images = sum(len(json.loads(line)["images"]) for line in feed.open())
    requests = figures["s3_requests"]
    return {"scenario": name, "seconds": round(seconds, 2), "images": images, "batches": figures["batches"],
            "images_per_s": round(images / seconds, 1), "s3_head": requests.get("HEAD", 0),
            "s3_list": requests.get("LIST", 0),
            "s3_per_image": round((requests.get("HEAD", 0) + requests.get("LIST", 0)) / max(images, 1), 4),
            "requests": requests,
            "sql_statements": questions() - q0 - 1, "sql_write_statements": figures["sql_write_statements"],
            "peak_rss_mb": round(maxrss_kb / 1024, 1), "exit_code": code,
            "cpu_seconds": {"sync": round(cpu, 2), **servers},
            "stage_seconds": figures.get("stage_seconds", {}), "journal": written.get("journal"),
            "stats": {k: st[k] for k in ("skus_seen", "ok", "error", "inserted", "updated_value", "updated_meta",
                                         "skipped_no_change", "deleted", "missing")},
            "rows_written": st["inserted"] * 4 + st["updated_value"] + st["updated_meta"] + st["deleted"] * 3}


async def list_pass(bucket: str, concurrency: int = 32) -> tuple[int, float]:
    """The floor's storage part: list every first-level folder of the originals in parallel."""
    session = aioboto3.Session()
    started = time.perf_counter()
    async with session.client("s3", config=BotoConfig(s3={"addressing_style": "path"},
                                                      max_pool_connections=concurrency), **s3_params()) as s3:
        top = await s3.list_objects_v2(Bucket=bucket, Prefix="media/catalog/product/", Delimiter="/")
        prefixes = [p["Prefix"] for p in top.get("CommonPrefixes", []) if not p["Prefix"].endswith("/cache/")]
        sem = asyncio.Semaphore(concurrency)

        async def one(prefix: str) -> int:
            n, token = 0, None
            while True:
                async with sem:
                    kw = {"ContinuationToken": token} if token else {}
                    page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000, **kw)
                n += len(page.get("Contents", []))
                token = page.get("NextContinuationToken")
                if not token:
                    return n

        keys = sum(await asyncio.gather(*(one(p) for p in prefixes)))
    return keys, time.perf_counter() - started


def listing_rate(bucket: str) -> float:
    """The S3 server's own sequential listing rate over the originals, keys/s."""
    client = boto3.client("s3", config=BotoConfig(s3={"addressing_style": "path"}), **s3_params())
    started, n = time.perf_counter(), 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="media/catalog/product/"):
        n += sum(1 for o in page.get("Contents", []) if "/cache/" not in o["Key"])
    return n / (time.perf_counter() - started)


#: The floor's gallery rows: each product's entries with their store-0 values and meta ETags.
GALLERY_ROWS = ("SELECT e.entity_id, g.value_id, g.value, v.record_id, v.label, v.position, v.disabled, m.s3_etag "
                "FROM catalog_product_entity_media_gallery_value_to_entity e "
                "JOIN catalog_product_entity_media_gallery g ON g.value_id = e.value_id "
                "LEFT JOIN catalog_product_entity_media_gallery_value v ON v.value_id = g.value_id "
                "AND v.entity_id = e.entity_id AND v.store_id = 0 "
                "LEFT JOIN nacento_media_gallery_meta m ON m.record_id = v.record_id")


def gallery_read(database: str) -> float:
    """The floor's database read: one streaming pass over the gallery tables."""
    conn = pymysql.connect(database=database, cursorclass=pymysql.cursors.SSCursor, **db_params())
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(GALLERY_ROWS)
        for _ in cur:
            pass
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def insert_rate(database: str, rows: int) -> float:
    """The floor's writes: multi-row inserts of gallery-shaped rows into a scratch table, rows/s."""
    conn = pymysql.connect(database=database, **db_params())
    rows = max(rows, 1000)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS floor_scratch")
        cur.execute("CREATE TABLE floor_scratch LIKE catalog_product_entity_media_gallery_value")
        started = time.perf_counter()
        for chunk in _chunks(range(rows), 1000):
            cur.execute("INSERT INTO floor_scratch (value_id, store_id, entity_id, label, position, disabled) VALUES "
                        + ", ".join(f"({i}, 0, {i}, 'label {i}', 1, 0)" for i in chunk))
        conn.commit()
        seconds = time.perf_counter() - started
        cur.execute("DROP TABLE floor_scratch")
    conn.close()
    return rows / seconds


def rss_check(config: Path, out: Path, lines: int) -> dict:
    """Peak RSS for an export of `lines` SKUs that do not exist in the store (all product_not_found)."""
    feed = out / "rss.ndjson"
    with feed.open("w") as f:
        for i in range(lines):
            f.write(json.dumps({"sku": f"GHOST-{i:08d}", "images": [{"file_path": f"g/h/ghost-{i}.jpg",
                                                                         "label": "ghost"}]}) + "\n")
    res = run_scenario("rss", config, feed, out)
    feed.unlink()
    return {"lines": lines, "seconds": res["seconds"], "peak_rss_mb": res["peak_rss_mb"],
            "skus_per_s": round(lines / res["seconds"], 1), "not_found": res["stats"]["error"]}


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--baseline-skus", type=int, default=300, help="SKUs the baseline syncs (per-image figures)")
    p.add_argument("--rss-lines", type=int, default=1_000_000)
    p.add_argument("--database", default="nacento_bench")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--only", type=parts, default=PARTS, metavar="PART,…",
                   help=f"run only these parts: {', '.join(PARTS)} (default: all)")
    p.add_argument("--latency-runs", type=int, default=20, help="runs of each command the latency part times")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    console.print(f"generating {args.skus} SKUs x {args.images} images …")
    g = generate(args, args.out)
    summary = {"size": {"skus": args.skus, "images_per_sku": args.images, "images": g["images"],
                        "missing": g["missing"]}, "scenarios": []}
    if "sync" in args.only:
        summary.update(sync_part(args, g))
    summary.update(extra_parts(args, g))  # bench/extra.py: async, latency, storeviews
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    if summary["scenarios"]:
        print_table(summary)
    print_extra(Console(width=None if sys.stdout.isatty() else 150), summary)


def sync_part(args, g: dict) -> dict:
    config, feeds, bucket = g["config"], g["feeds"], g["bucket"]
    results = []
    floors = {}
    lst_keys, lst_seconds = asyncio.run(list_pass(bucket))
    rate = insert_rate(args.database, g["images"] * 4)
    startup = startup_floor(config)

    def floor(res: dict) -> float:
        """Measured right after the scenario, so a server that slows down over the run is seen in both; with
        what the contract requires of every run: start-up, and the journal in replace mode."""
        cpu0 = server_cpu()
        _, seconds = asyncio.run(list_pass(bucket))
        res["list_pass"] = {"seconds": round(seconds, 2), "cpu_seconds": cpu_between(cpu0, server_cpu())}
        return (startup + seconds + gallery_read(args.database) + res["rows_written"] / rate
                + journal_floor(res["journal"], res["batches"], args.out / "journal-floor.scratch"))

    for name, feed, extra, before in (
        ("cold", "f0", (), None),
        ("nochange", "f0", (), None),
        ("reupload", "f0", (), "reupload"),
        ("labels", "f1", (), None),
        ("replace", "f2", ("--mode", "replace"), None),
    ):
        if before == "reupload":
            sample = random.Random(7).sample(g["uploads"], k=max(1, len(g["uploads"]) // 20))
            put_all(bucket, sample, "media/catalog/product", b" v2")
        console.print(f"scenario {name} …")
        res = run_scenario(name, config, feeds[feed], args.out, *extra)
        floors[name] = floor(res)
        res["floor_seconds"] = round(floors[name], 2)
        res["vs_floor"] = round(res["seconds"] / floors[name], 2)
        results.append(res)

    console.print("baseline …")
    db = db_params()
    base_cold = run_baseline(db, args.database, s3_params(), bucket, g["base_items"])
    base_again = run_baseline(db, args.database, s3_params(), bucket, g["base_items"])
    per_image_base = {"cold": base_cold.per_image_ms, "nochange": base_again.per_image_ms}
    for res in results:
        base = per_image_base.get(res["scenario"], base_again.per_image_ms)
        ours = 1000 * res["seconds"] / max(res["images"], 1)
        res["per_image_ms"] = round(ours, 4)
        res["baseline_per_image_ms"] = round(base, 3)
        res["speedup_vs_baseline"] = round(base / ours, 1) if ours else None
    keys_per_s = listing_rate(bucket)
    rss = rss_check(config, args.out, args.rss_lines) if args.rss_lines else None

    return {
        "scenarios": results,
        "baseline": {"images": base_cold.images, "cold_per_image_ms": round(base_cold.per_image_ms, 3),
                     "nochange_per_image_ms": round(base_again.per_image_ms, 3),
                     "s3_requests_per_image": round(base_cold.head_requests / max(base_cold.images, 1), 2),
                     "sql_statements_per_image": round(base_cold.sql_statements / max(base_cold.images, 1), 2)},
        "floor": {"list_pass_seconds": round(lst_seconds, 2), "listed_keys": lst_keys,
                  "insert_rows_per_s": round(rate), "startup_seconds": round(startup, 3)},
        "s3_listing_keys_per_s": {"sequential": round(keys_per_s), "parallel": round(lst_keys / lst_seconds)},
        "rss_1m": rss,
    }


def stages_line(stages: dict[str, float]) -> str:
    """`read 1.20  plan 0.80 …`: where a scenario's time went (`SyncResult.stage_seconds`)."""
    return "  ".join(f"{k} {v:.2f}" for k, v in stages.items()) or "(not measured)"


def cpu_line(r: dict) -> str:
    """Where the CPU went: the run's own process and each local server, then the same for the LIST pass of
    the floor measured right after (a storage stage much longer than that pass while the S3 server used no
    more CPU means the server was kept waiting, not that it had more to do)."""
    cpu, lp = r.get("cpu_seconds", {}), r.get("list_pass", {})
    line = "cpu s: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    if lp:
        line += f"; LIST pass {lp['seconds']:.1f} s, cpu s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in lp.get("cpu_seconds", {}).items())
    return line


def print_table(s: dict) -> None:
    out = Console(width=None if sys.stdout.isatty() else 150)
    t = Table(title=f"nacento-sync bench: {s['size']['skus']} SKUs x {s['size']['images_per_sku']} images "
                    f"({s['size']['images']} images, {s['size']['missing']} missing objects)", title_justify="left")
    for col in ("scenario", "seconds", "images/s", "HEAD", "LIST", "S3 req/image", "SQL stmts", "peak RSS MB",
                "floor s", "÷ floor", "× baseline"):
        t.add_column(col, justify="right")
    for r in s["scenarios"]:
        t.add_row(r["scenario"], f"{r['seconds']:.2f}", f"{r['images_per_s']:.0f}", str(r["s3_head"]),
                  str(r["s3_list"]), f"{r['s3_per_image']:.4f}", str(r["sql_statements"]), f"{r['peak_rss_mb']:.0f}",
                  f"{r['floor_seconds']:.2f}", f"{r['vs_floor']:.2f}", f"{r['speedup_vs_baseline']}")
    out.print(t)
    for r in s["scenarios"]:
        out.print(f"  {r['scenario']} stages: {stages_line(r.get('stage_seconds', {}))}")
        out.print(f"  {r['scenario']} {cpu_line(r)}")
    b = s["baseline"]
    out.print(f"baseline (original module's algorithm, {b['images']} images): {b['cold_per_image_ms']:.2f} ms/image "
              f"cold, {b['nochange_per_image_ms']:.2f} ms/image re-run, {b['s3_requests_per_image']} S3 requests and "
              f"{b['sql_statements_per_image']} SQL statements per image")
    f = s["floor"]
    out.print(f"floor: LIST pass {f['list_pass_seconds']} s for {f['listed_keys']} keys; inserts "
              f"{f['insert_rows_per_s']} rows/s; start-up {f.get('startup_seconds', 0):.2f} s; the replace "
              "scenario's floor includes writing its journal")
    lr = s["s3_listing_keys_per_s"]
    out.print(f"S3 server listing rate: {lr['sequential']} keys/s sequential, {lr['parallel']} keys/s parallel")
    nochange = next(r for r in s["scenarios"] if r["scenario"] == "nochange")
    out.print(f"no-change re-sync: {nochange['images_per_s']:.0f} images/s = "
              f"{nochange['images_per_s'] / lr['parallel']:.2f} x the server's parallel listing rate")
    if s["rss_1m"]:
        r = s["rss_1m"]
        out.print(f"{r['lines']}-line export of unknown SKUs: peak RSS {r['peak_rss_mb']} MB, {r['seconds']} s "
                  f"({r['skus_per_s']} SKUs/s)")


if __name__ == "__main__":
    main()

"""Store views keep the SQL per batch constant: the bench catalog with 10 % of products on two store views.

Two fresh stores, each with store views `fr` and `de`: one syncs the plain export, the other the same
export where 10 % of the products carry `stores` values (a label on both views, a position on `de`) on
every image and a `store_roles` thumbnail on `fr`. The second store is then synced again unchanged, and
with 5 % of those products' `fr` labels changed. Write statements per batch (the run's own count) are
compared with the plain run: a statement per store-view row or per product would show up as a ratio that
grows with the batch size.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pymysql
from fresh import drop, fresh_store, write_config
from run import console, db_params, run_scenario

VIEWS = ("fr", "de")
#: Share of products with store-view values, and of those whose `fr` labels change in the last run.
SHARE, CHANGED = 0.10, 0.05


def with_store_views(items: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], list[int]]:
    """A copy of `items` where SHARE of them carry values for both store views; the chosen indexes."""
    items = json.loads(json.dumps(items))
    chosen = sorted(rng.sample(range(len(items)), k=max(1, round(len(items) * SHARE))))
    for i in chosen:
        item = items[i]
        for n, image in enumerate(item["images"]):
            image["stores"] = {"fr": {"label": f"{item['sku']} vue {n}"},
                               "de": {"label": f"{item['sku']} Ansicht {n}", "position": len(item["images"]) - n}}
        item["store_roles"] = {"fr": {"thumbnail": item["images"][-1]["file_path"]}}
    return items, chosen


def store_value_rows(database: str) -> int:
    conn = pymysql.connect(database=database, **db_params())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM catalog_product_entity_media_gallery_value WHERE store_id > 0")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _row(name: str, res: dict[str, Any], database: str) -> dict[str, Any]:
    batches = max(res["batches"], 1)
    # The run's own count of write statements; the server's Questions counter also counts every other
    # session of a shared server, so it is kept in results.json only.
    return {"run": name, "seconds": res["seconds"], "batches": res["batches"],
            "server_questions": res["sql_statements"], "sql_write_statements": res["sql_write_statements"],
            "write_statements_per_batch": round(res["sql_write_statements"] / batches, 1),
            "store_value_rows": store_value_rows(database), "stats": res["stats"]}


def run_storeviews(database: str, feed: Path, bucket: str, out: Path) -> dict[str, Any]:
    items = [json.loads(line) for line in feed.open()]
    skus = [it["sku"] for it in items]
    rng = random.Random(12)
    views_items, chosen = with_store_views(items, rng)
    changed = json.loads(json.dumps(views_items))
    for i in rng.sample(chosen, k=max(1, round(len(chosen) * CHANGED))):
        for image in changed[i]["images"]:
            image["stores"]["fr"]["label"] += " (nouveau)"
    feeds = {}
    for name, feed_items in (("views", views_items), ("views-labels", changed)):
        feeds[name] = out / f"storeviews-{name}.ndjson"
        feeds[name].write_text("".join(json.dumps(it) + "\n" for it in feed_items))

    plain_db, views_db = f"{database}_sv_plain", f"{database}_sv_views"
    runs = []
    try:
        for db in (plain_db, views_db):
            fresh_store(db, skus, VIEWS)
        plain_cfg = write_config(out / "storeviews-plain.yaml", plain_db, bucket)
        views_cfg = write_config(out / "storeviews-views.yaml", views_db, bucket)
        for name, config, export, db in (("plain cold", plain_cfg, feed, plain_db),
                                         ("views cold", views_cfg, feeds["views"], views_db),
                                         ("views no-change", views_cfg, feeds["views"], views_db),
                                         ("views 5 % labels", views_cfg, feeds["views-labels"], views_db)):
            console.print(f"storeviews: {name} …")
            res = run_scenario("storeviews-" + name.replace(" ", "-").replace("%", "pc"), config, export, out)
            runs.append(_row(name, res, db))
    finally:
        drop(plain_db)
        drop(views_db)
    plain, cold = runs[0], runs[1]
    return {"skus": len(skus), "products_with_views": len(chosen), "views": list(VIEWS), "runs": runs,
            "cold_write_statements_per_batch_vs_plain": round(
                cold["write_statements_per_batch"] / max(plain["write_statements_per_batch"], 1e-9), 2)}


def print_storeviews(out: Any, sv: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"store views: {sv['skus']} SKUs, {sv['products_with_views']} of them with values on "
                    f"{' and '.join(sv['views'])}", title_justify="left")
    for col in ("run", "seconds", "batches", "write statements", "writes / batch", "store-view rows"):
        t.add_column(col, justify="right")
    for r in sv["runs"]:
        t.add_row(r["run"], f"{r['seconds']:.2f}", str(r["batches"]), str(r["sql_write_statements"]),
                  f"{r['write_statements_per_batch']}", str(r["store_value_rows"]))
    out.print(t)
    out.print(f"store views, cold: {sv['cold_write_statements_per_batch_vs_plain']} x the write statements per batch "
              "of the plain cold run")

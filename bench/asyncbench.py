"""Asynchronous mode's benchmark: the bench catalog submitted and drained by one worker, then by two.

Each variant starts from a fresh store (the same SKUs, empty galleries, the main run's bucket), so the
sync it is compared with (`sync` of the same export, cold) does the same work. Workers are the real CLI
(`nacento-sync worker --idle-exit 1`) run through bench/worker_probe.py, which adds stage timers. The
broker floor, measured in the same run: publish the same number of messages of the same size with
confirms (as `submit` does) to a throwaway queue, and consume and ack them with no work (as a worker does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pymysql
from fresh import drop, fresh_store, write_config
from run import ROOT, console, db_params, env, run_scenario

from nacento_sync.asyncmode.queue import IN_FLIGHT

#: Seconds a worker waits for more messages before it exits (its tail is not counted in the drain time).
IDLE_EXIT = 1.0
#: Longest wait for a variant's workers, seconds.
DRAIN_TIMEOUT = 3600


def bodies(feed: Path) -> list[bytes]:
    """Messages shaped and sized like `submit`'s (Magento's operation envelope around the item)."""
    out = []
    bulk_uuid = str(uuid.uuid4())
    for key, line in enumerate(feed.open(), 1):
        item = json.loads(line)
        data = json.dumps({"sku": item["sku"], "images": item["images"], "mode": "merge", "request_id": "bench"},
                          ensure_ascii=False, separators=(",", ":"))
        out.append(json.dumps({"bulk_uuid": bulk_uuid, "topic_name": "bench.floor", "serialized_data": data,
                               "status": 4, "id": key}, ensure_ascii=False, separators=(",", ":")).encode())
    return out


async def broker_floor(url: str, messages: list[bytes], prefetch: int) -> dict[str, float]:
    """Publish `messages` (persistent, mandatory, each confirmed, IN_FLIGHT at once), then consume and
    ack them one by one with `prefetch` in flight: the broker's part of submit + drain, with no work."""
    name = f"bench.floor.{uuid.uuid4().hex[:12]}"
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        await channel.declare_queue(name, durable=True)
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(body: bytes) -> None:
            async with sem:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=uuid.uuid4().hex), routing_key=name, mandatory=True)

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in messages))
        published = time.perf_counter() - started

        consumer = await conn.channel()
        await consumer.set_qos(prefetch_count=prefetch)
        queue = await consumer.declare_queue(name, durable=True)
        done = asyncio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count == len(messages):
                done.set()

        started = time.perf_counter()
        tag = await queue.consume(on_message)
        await done.wait()
        consumed = time.perf_counter() - started
        await queue.cancel(tag)
        await channel.queue_delete(name)
    finally:
        await conn.close()
    return {"publish_s": round(published, 3), "consume_s": round(consumed, 3)}


async def _delete_queues(url: str, name: str) -> None:
    conn = await aio_pika.connect(url)
    try:
        for queue in (name, f"{name}.failed", *(f"{name}.retry.{d}" for d in (10, 60, 600))):
            channel = await conn.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
            if not channel.is_closed:
                await channel.close()
    finally:
        await conn.close()


def operation_counts(database: str, bulk_uuid: str) -> dict[int, int]:
    conn = pymysql.connect(database=database, **db_params())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, COUNT(*) FROM magento_operation WHERE bulk_uuid = %s GROUP BY status",
                        (bulk_uuid,))
            return {int(s): int(n) for s, n in cur.fetchall()}
    finally:
        conn.close()


def run_variant(workers: int, database: str, skus: list[str], feed: Path, bucket: str, out: Path) -> dict[str, Any]:
    """Submit the export to a fresh store, then drain it with `workers` worker processes."""
    url = env("NACENTO_TEST_AMQP_URL")
    name = f"bench.{uuid.uuid4().hex[:12]}"
    fresh_store(database, skus)
    config = write_config(out / f"async-{workers}.yaml", database, bucket,
                          {"url": url, "exchange": "magento", "topic": name, "queue": name, "admin_user_id": 1})
    try:
        started = time.perf_counter()
        submitted = subprocess.run([sys.executable, "-m", "nacento_sync", "--config", str(config), "submit",
                                    str(feed), "--json"], capture_output=True, text=True)
        submit_s = time.perf_counter() - started
        if submitted.returncode != 0:
            sys.exit(f"submit failed ({submitted.returncode}):\n{submitted.stderr[-2000:]}")
        answer = json.loads(submitted.stdout)
        bulk_uuid, accepted = answer["bulk_uuid"], sum(i["status"] == "accepted" for i in answer["request_items"])

        figures = [out / f"async-{workers}-w{i}.json" for i in range(workers)]
        logs = [out / f"async-{workers}-w{i}.log" for i in range(workers)]
        t0 = time.time()
        procs = [subprocess.Popen([sys.executable, str(ROOT / "bench" / "worker_probe.py"), str(fig), "--config",
                                   str(config), "worker", "--idle-exit", str(IDLE_EXIT)],
                                  stdout=subprocess.DEVNULL, stderr=log.open("wb"))
                 for fig, log in zip(figures, logs, strict=True)]
        for proc, log in zip(procs, logs, strict=True):
            if proc.wait(DRAIN_TIMEOUT) != 0:
                sys.exit(f"worker exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        probes = [json.loads(f.read_text()) for f in figures]
        counts = operation_counts(database, bulk_uuid)
        if counts.get(1, 0) != accepted:
            sys.exit(f"{workers} worker(s) left the bulk incomplete: operations by status {counts}")
        ends = [p["marks"]["last_batch_done"] for p in probes if "last_batch_done" in p["marks"]]
        drain_s = max(ends) - t0
        return {"workers": workers, "skus": accepted, "submit_s": round(submit_s, 2), "drain_s": round(drain_s, 2),
                "per_worker": [breakdown(p, t0) for p in probes]}
    finally:
        asyncio.run(_delete_queues(url, name))
        drop(database)


def breakdown(probe: dict[str, Any], t0: float) -> dict[str, Any]:
    """Where one worker's wall time went, from its probe: seconds per stage, from its launch."""
    marks, stages = probe["marks"], probe["seconds"]
    end = marks.get("last_batch_done", marks["exit"])
    processing = stages.get("processing", 0.0)
    parts = {
        "interpreter + worker imports": marks["imported"] - t0,
        "CLI imports, config, start-up checks": marks["ready"] - marks["imported"],
        "first message": marks.get("first_batch", end) - marks["ready"],
        "engine look-ups (products, ETags)": stages.get("engine look-ups (products, ETags)", 0.0),
        "engine transaction": stages.get("engine transaction", 0.0),
        "operation look-up + mark started": (stages.get("operation look-up", 0.0) + stages.get("mark started", 0.0)),
        "acks": stages.get("acks", 0.0),
    }
    parts["rest of processing (decode, classify)"] = processing - sum(
        parts[k] for k in ("engine look-ups (products, ETags)", "engine transaction",
                           "operation look-up + mark started", "acks"))
    parts["between batches (waiting for messages)"] = (end - marks.get("first_batch", end)) - processing
    within = {"products": stages.get("products", 0.0), "HEAD calls": stages.get("HEAD calls", 0.0),
              "LIST calls (summed; they overlap)": stages.get("LIST calls", 0.0)}
    return {"seconds": round(end - t0, 2), "batches": probe["calls"].get("processing", 0),
            "s3_requests": probe.get("s3_requests", {}),
            "look_ups": {k: round(v, 3) for k, v in within.items()},
            "operation_statuses_in_transaction_s": round(stages.get("operation statuses (in the transaction)", 0), 3),
            "stages": {k: round(v, 3) for k, v in parts.items()}}


def run_async(database: str, feed: Path, bucket: str, out: Path, worker_counts: tuple[int, ...] = (1, 2)) -> dict:
    """sync vs 1 and 2 workers on the same export, each from a fresh store, and the broker floor."""
    lines = [json.loads(line) for line in feed.open()]
    skus = [it["sku"] for it in lines]
    images = sum(len(it["images"]) for it in lines)

    console.print("async: sync reference …")
    sync_db = f"{database}_async_sync"
    fresh_store(sync_db, skus)
    try:
        ref = run_scenario("async-sync", write_config(out / "async-sync.yaml", sync_db, bucket), feed, out)
    finally:
        drop(sync_db)
    console.print("async: broker floor …")
    floor = asyncio.run(broker_floor(env("NACENTO_TEST_AMQP_URL"), bodies(feed), prefetch=400))
    variants = []
    for n in worker_counts:
        console.print(f"async: {n} worker(s) …")
        v = run_variant(n, f"{database}_async_w{n}", skus, feed, bucket, out)
        v["images_per_s"] = round(images / v["drain_s"], 1)
        v["vs_sync"] = round(v["images_per_s"] / ref["images_per_s"], 2)
        v["drain_vs_consume_floor"] = round(v["drain_s"] / max(floor["consume_s"], 1e-6), 1)
        v["submit_vs_publish_floor"] = round(v["submit_s"] / max(floor["publish_s"], 1e-6), 1)
        v["end_to_end_images_per_s"] = round(images / (v["submit_s"] + v["drain_s"]), 1)
        variants.append(v)
    return {"skus": len(skus), "images": images,
            "sync": {"seconds": ref["seconds"], "images_per_s": ref["images_per_s"], "s3_head": ref["s3_head"],
                     "s3_list": ref["s3_list"],
                     "sql_write_statements": ref["sql_write_statements"]},
            "broker_floor": {"messages": len(skus), **floor}, "variants": variants}


def print_async(out: Any, a: dict) -> None:
    from rich.table import Table

    f = a["broker_floor"]
    t = Table(title=f"asynchronous mode: {a['skus']} SKUs, {a['images']} images, fresh store each; broker floor "
                    f"{f['messages']} messages: publish {f['publish_s']} s, consume {f['consume_s']} s",
              title_justify="left")
    for col in ("run", "submit s", "÷ publish floor", "drain s", "÷ consume floor", "images/s", "× sync",
                "end-to-end images/s"):
        t.add_column(col, justify="right")
    t.add_row("sync (cold)", "", "", f"{a['sync']['seconds']:.2f}", "", f"{a['sync']['images_per_s']:.0f}", "1.00", "")
    for v in a["variants"]:
        t.add_row(f"{v['workers']} worker(s)", f"{v['submit_s']:.2f}", f"{v['submit_vs_publish_floor']}",
                  f"{v['drain_s']:.2f}", f"{v['drain_vs_consume_floor']}", f"{v['images_per_s']:.0f}",
                  f"{v['vs_sync']:.2f}", f"{v['end_to_end_images_per_s']:.0f}")
    out.print(t)
    one = next((v for v in a["variants"] if v["workers"] == 1), None)
    if one:
        w = one["per_worker"][0]
        out.print(f"one worker's {w['seconds']} s ({w['batches']} batches; operation statuses inside the "
                  f"transaction: {w['operation_statuses_in_transaction_s']} s):")
        for stage, seconds in w["stages"].items():
            out.print(f"  {stage:<45} {seconds:8.2f} s  {100 * seconds / max(w['seconds'], 1e-9):5.1f} %")
            if stage.startswith("engine look-ups"):
                for part, part_s in w["look_ups"].items():
                    out.print(f"    {part:<43} {part_s:8.2f} s")
        requests = ", ".join(f"{n} {kind}" for kind, n in sorted(w["s3_requests"].items())) or "none"
        out.print(f"  S3 requests: {requests} (sync of the same export: {a['sync']['s3_head']} HEAD, "
                  f"{a['sync']['s3_list']} LIST)")

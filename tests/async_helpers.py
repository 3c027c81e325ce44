"""Helpers for the asynchronous-mode tests: configs, in-process and subprocess workers, queue inspection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import yaml
from helpers import Bucket, config_dict

from nacento_sync.asyncmode.submit import SubmitResult, submit
from nacento_sync.asyncmode.worker import Worker, WorkerOptions, WorkerStats
from nacento_sync.config import Config


def async_config(store, bucket: Bucket, db_params: dict[str, Any], queue_cfg: dict[str, Any],
                 **sync: Any) -> dict[str, Any]:
    cfg = config_dict(store, bucket, db_params, **sync)
    cfg["queue"] = queue_cfg
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_submit(cfg: dict[str, Any], *exports: Path, mode: str | None = None,
               request_id: str | None = None) -> SubmitResult:
    return asyncio.run(submit(Config.model_validate(cfg), [str(e) for e in exports], mode=mode,
                              request_id=request_id))


def run_worker(cfg: dict[str, Any], *, idle_exit: float = 1.0, concurrency: int = 100,
               max_messages: int | None = None) -> WorkerStats:
    """A worker in this process until it is idle."""
    worker = Worker(Config.model_validate(cfg), WorkerOptions(concurrency, max_messages, idle_exit))
    return asyncio.run(worker.run())


class ThreadWorker:
    """A worker on its own event loop in a thread, for tests that act while it runs."""

    def __init__(self, cfg: dict[str, Any], *, idle_exit: float = 1.0, concurrency: int = 100) -> None:
        self.worker: Worker | None = None
        self.stats: WorkerStats | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

        def main() -> None:
            async def go() -> WorkerStats:
                self._loop = asyncio.get_running_loop()
                self.worker = Worker(Config.model_validate(cfg), WorkerOptions(concurrency, None, idle_exit))
                return await self.worker.run()

            try:
                self.stats = asyncio.run(go())
            except BaseException as e:  # reported by join()
                self.error = e

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120) -> WorkerStats:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error:
            raise self.error
        assert self.stats is not None
        return self.stats


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NACENTO_") or k.startswith("NACENTO_TEST")}


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nacento_sync", *args], capture_output=True, text=True,
                          env={**cli_env(), **(env or {})}, timeout=timeout)


def worker_process(config_file: Path, *args: str, log_file: Path | None = None) -> subprocess.Popen:
    """`nacento-sync worker` as its own process; stderr (its log) goes to `log_file`."""
    err = open(log_file, "wb") if log_file else subprocess.PIPE  # noqa: SIM115 - owned by the process
    return subprocess.Popen([sys.executable, "-m", "nacento_sync", "--config", str(config_file), "worker", *args],
                            stdout=subprocess.PIPE, stderr=err, env=cli_env())


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.05, what: str = "",
             log: Path | None = None) -> Any:
    """Poll until `predicate()` is truthy; returns its value. On time-out, shows the end of `log`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}\n{tail}")
        time.sleep(interval)


# ---------------------------------------------------------------- the broker


@dataclass
class Peeked:
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    delivery_mode: int | None
    exchange: str
    routing_key: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def _peek(url: str, queue: str, take: bool) -> list[Peeked]:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        q = await channel.declare_queue(queue, passive=True)
        got, held = [], []
        while (msg := await q.get(no_ack=False, fail=False)) is not None:
            held.append(msg)
            got.append(Peeked(msg.body, dict(msg.headers or {}), msg.message_id, int(msg.delivery_mode or 0),
                              msg.exchange or "", msg.routing_key or ""))
        for msg in held:
            await (msg.ack() if take else msg.nack(requeue=True))
        return got
    finally:
        await conn.close()


def peek(url: str, queue: str) -> list[Peeked]:
    """Every ready message of a queue, left in it."""
    return asyncio.run(_peek(url, queue, take=False))


def take(url: str, queue: str) -> list[Peeked]:
    """Every ready message of a queue, removed from it."""
    return asyncio.run(_peek(url, queue, take=True))


async def _depth(url: str, queue: str) -> tuple[int, int] | None:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        try:
            res = (await channel.declare_queue(queue, passive=True)).declaration_result
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        return int(res.message_count or 0), int(res.consumer_count or 0)
    finally:
        await conn.close()


def depth(url: str, queue: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of a queue, on a plain connection; None when it does not exist."""
    return asyncio.run(_depth(url, queue))


async def _publish(url: str, exchange: str, routing_key: str, bodies: list[bytes]) -> None:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        ex = await channel.get_exchange(exchange) if exchange else channel.default_exchange
        for i, body in enumerate(bodies):
            await ex.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                              message_id=f"test-{time.time_ns()}-{i}"), routing_key=routing_key,
                             mandatory=True)
    finally:
        await conn.close()


def publish(url: str, exchange: str, routing_key: str, *bodies: bytes) -> None:
    asyncio.run(_publish(url, exchange, routing_key, list(bodies)))


def declare_topology(queue_cfg: dict[str, Any]) -> None:
    """The exchange, queues and binding, as submit and the worker declare them."""
    from nacento_sync.asyncmode import queue as q
    from nacento_sync.config import QueueConfig

    async def go() -> None:
        conn = await aio_pika.connect(queue_cfg["url"])
        try:
            await q.declare(await conn.channel(), q.Topology.from_config(QueueConfig.model_validate(queue_cfg)))
        finally:
            await conn.close()

    asyncio.run(go())


def declare_plain(url: str, queue: str) -> None:
    """Declare a queue as Magento does (durable, no arguments); fails if it exists with arguments."""

    async def go() -> None:
        conn = await aio_pika.connect(url)
        try:
            await (await conn.channel()).declare_queue(queue, durable=True)
        finally:
            await conn.close()

    asyncio.run(go())


def delete_queues(cfg: dict[str, Any]) -> None:
    names = [cfg["queue"], f"{cfg['queue']}.failed",
             *{f"{cfg['queue']}.retry.{d}" for d in [*cfg.get("retry_delays", []), 1, 2, 3, 10, 60, 600]}]

    async def go() -> None:
        try:
            conn = await aio_pika.connect(cfg["url"], timeout=5)
        except Exception:
            return  # the test's own broker may be gone (restart test)
        try:
            for name in names:
                channel = await conn.channel()
                with contextlib.suppress(aiormq.exceptions.AMQPError):
                    await channel.queue_delete(name, if_unused=False, if_empty=False)
                if not channel.is_closed:
                    await channel.close()
        finally:
            await conn.close()

    asyncio.run(go())


# ---------------------------------------------------------------- the database


def operations(store) -> list[dict[str, Any]]:
    """Every magento_operation row, with BLOBs decoded, by operation_key then id."""
    rows = store.query("SELECT * FROM {magento_operation} ORDER BY operation_key IS NULL, operation_key, id")
    for r in rows:
        for col in ("bulk_uuid", "serialized_data", "result_serialized_data"):
            if isinstance(r[col], bytes | bytearray):
                r[col] = r[col].decode()
    return rows


def status_counts(store, bulk_uuid: str) -> dict[int, int]:
    rows = store.query("SELECT status, COUNT(*) AS n FROM {magento_operation} WHERE bulk_uuid = %s GROUP BY status",
                       (bulk_uuid,))
    return {int(r["status"]): int(r["n"]) for r in rows}


def gallery_state(store, sku: str) -> dict[str, Any]:
    """A product's images (path, label, position, hidden, meta ETag) and roles, without ids, for comparing
    two stores."""
    (row,) = store.query(f"SELECT {store.link} AS link FROM {{catalog_product_entity}} WHERE sku = %s "
                         "ORDER BY 1 LIMIT 1", (sku,))
    link = row["link"]
    images = []
    for g in store.gallery(link):
        meta = store.query("SELECT s3_etag FROM {nacento_media_gallery_meta} WHERE record_id = %s",
                           (g["record_id"],))
        images.append((g["value"], g["label"], g["position"], g["store0_disabled"],
                       meta[0]["s3_etag"] if meta else None))
    return {"images": images, "roles": store.roles(link)}


def bulk_products(store, n: int, prefix: str = "SKU") -> None:
    """n products `<prefix>-00000`… in one statement per 1,000 (fast set-up for big bulks)."""
    if store.variant == "ee":
        for i in range(n):
            store.add_product(f"{prefix}-{i:05d}")
        return
    for start in range(0, n, 1000):
        rows = [f"{prefix}-{i:05d}" for i in range(start, min(n, start + 1000))]
        store.execute("INSERT INTO {catalog_product_entity} (attribute_set_id, type_id, sku) VALUES "
                      + ", ".join(["(4, 'simple', %s)"] * len(rows)), rows)


def slow_inserts(store, seconds: float) -> None:
    """Make every store-0 value-row insert take `seconds` (a trigger), so a batch is caught mid-way."""
    store.execute("CREATE TRIGGER nacento_test_slow BEFORE INSERT ON {catalog_product_entity_media_gallery_value} "
                  f"FOR EACH ROW BEGIN DO SLEEP({seconds:.3f}); END")


def fast_inserts(store) -> None:
    store.execute("DROP TRIGGER IF EXISTS nacento_test_slow")


def writing_transactions(store) -> int:
    """Sessions on this store's database caught inside a data transaction: running the `slow_inserts`
    trigger's sleep, i.e. between their first value-row insert and their COMMIT. (PROCESSLIST, not
    INNODB_TRX: MariaDB refreshes the latter's cache only when it was not read for 100 ms.)"""
    rows = store.query(
        "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID() "
        "AND STATE = 'User sleep'", (store.database,))
    return int(rows[0]["n"])


def whole_skus(store, prefix: str, images: int) -> dict[str, int]:
    """Per SKU `<prefix>-…`: how many images it has, asserting each is whole (one gallery row, one link, one
    store-0 value row, one meta row) and no image is linked twice."""
    rows = store.query(
        "SELECT p.sku, g.value, COUNT(DISTINCT g.value_id) AS entries, COUNT(DISTINCT v.record_id) AS vals, "
        "COUNT(DISTINCT m.record_id) AS metas FROM {catalog_product_entity} p "
        f"JOIN {{catalog_product_entity_media_gallery_value_to_entity}} e ON e.{store.link} = p.{store.link} "
        "JOIN {catalog_product_entity_media_gallery} g ON g.value_id = e.value_id "
        f"LEFT JOIN {{catalog_product_entity_media_gallery_value}} v ON v.value_id = g.value_id "
        f"AND v.{store.link} = p.{store.link} AND v.store_id = 0 "
        "LEFT JOIN {nacento_media_gallery_meta} m ON m.record_id = v.record_id "
        "WHERE p.sku LIKE %s GROUP BY p.sku, g.value", (prefix + "-%",))
    per_sku: dict[str, int] = {}
    for r in rows:
        assert (r["entries"], r["vals"], r["metas"]) == (1, 1, 1), r
        per_sku[r["sku"]] = per_sku.get(r["sku"], 0) + 1
    assert set(per_sku.values()) <= {images}, per_sku
    return per_sku


def put_many(bucket: Bucket, paths: list[str], threads: int = 8) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = bucket.client
    from nacento_sync.paths import object_key

    def put(path: str) -> None:
        client.put_object(Bucket=bucket.name, Key=object_key(path, bucket.prefix), Body=path.encode())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, paths))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    """A RabbitMQ node of the test's own (scripts/lib.sh's rabbitmq_node_*), which it may stop and restart
    without disturbing anyone else's tests on the shared node."""

    LIB = Path(__file__).resolve().parent.parent / "scripts" / "lib.sh"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port, self.dist, self.epmd = free_port(), free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _bash(self, script: str) -> None:
        res = subprocess.run(["bash", "-c", f'. "{self.LIB}"; {script}', "_", str(self.dir), str(self.port),
                              str(self.dist), str(self.epmd)], capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr

    def start(self) -> None:
        self._bash('rabbitmq_node_launch "$1" "$2" "$3" "$4" && rabbitmq_node_wait "$1" "$2"')

    def stop(self, keep_epmd: bool = True) -> None:
        self._bash(f'rabbitmq_node_stop "$1" {"keep-epmd" if keep_epmd else ""}')

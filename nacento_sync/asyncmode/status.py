"""`status` and `requeue`: read a bulk's progress, and re-drive its parked operations.

Both read Magento's rows, which are the truth; the parking queue only holds copies. `requeue` sets the
operations back to open inside a transaction that it commits only after the new messages are confirmed,
so a worker that receives one early waits for that commit instead of having its result overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nacento_sync import magento
from nacento_sync.asyncmode import bulk, queue
from nacento_sync.config import Config
from nacento_sync.errors import UnknownBulk

log = logging.getLogger("nacento_sync")



async def status(cfg: Config, bulk_uuid: str) -> bulk.BulkSummary:
    conn = await magento.connect(cfg.database)
    try:
        await bulk.check_tables(conn, cfg.database.table_prefix)
        found = await bulk.summary(conn, cfg.database.table_prefix, bulk_uuid)
    finally:
        conn.close()
    if found is None:
        raise UnknownBulk(f"no bulk {bulk_uuid!r} in {cfg.database.table_prefix}{bulk.BULK_TABLE}")
    return found


@dataclass
class RequeueResult:
    requeued: int
    removed_copies: int
    not_published: int


async def requeue(cfg: Config, bulk_uuid: str) -> RequeueResult:
    """Republish the bulk's status-2 operations from their rows, set them to 4 (`started_at` NULL) and
    take the bulk's copies out of the parking queue."""
    prefix = cfg.database.table_prefix
    topo = queue.Topology.from_config(cfg.queue)
    cfg.queue.checked_url()  # a bad queue.url is a config error (exit 2) before the database is touched
    conn = await magento.connect(cfg.database)
    try:
        await bulk.check_tables(conn, prefix)
        if not await bulk.existing_bulks(conn, prefix, [bulk_uuid]):
            raise UnknownBulk(f"no bulk {bulk_uuid!r} in {prefix}{bulk.BULK_TABLE}")
        broker = await queue.connect(cfg.queue.url)
        try:
            channel = await queue.open_channel(broker)
            exchange, _ = await queue.declare(channel, topo)
            try:
                async with conn.cursor() as cur:
                    ops = await bulk.lock_parked(cur, prefix, bulk_uuid)
                    removed = await queue.remove_bulk_copies(channel, topo.failed_queue, bulk_uuid)
                    messages = [(op.id, op.topic or topo.topic, queue.message(queue.operation_body(
                        bulk_uuid, op.topic or topo.topic, op.data or "", op.key))) for op in ops]
                    outcome = await queue.publish_all(exchange, messages)
                    failed = [op_id for op_id, why in outcome.items() if why is not None]
                    if failed:
                        first = next(why for why in outcome.values() if why)
                        log.error("%d of %d messages were not published: %s", len(failed), len(ops), first)
                        await bulk.unlock_unpublished(cur, prefix, failed, f"requeue: not published ({first})")
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
        finally:
            await broker.close()
    finally:
        conn.close()
    return RequeueResult(len(ops) - len(failed), removed, len(failed))

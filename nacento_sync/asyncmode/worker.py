"""The asynchronous worker: take operations from RabbitMQ and run their SKUs through the sync engine.

Messages arrive through a prefetch window (`--concurrency`) and are synced in batches by the unchanged
engine, with its product locks, so a worker and a `sync` never both insert one image. A message is
acked only after its operation's status is committed — together with the SKU's writes on success
(the engine's before-commit hook) — so a crash anywhere means a redelivery, which is harmless:
finished operations are acked without processing and the engine is idempotent.

Failures: not retriable → status 3. Retriable → republished to `<queue>.retry.<s>` (status stays 4),
then parked in `<queue>.failed` with status 2 when the delays are used up. A message that cannot be
tied to an operation (poison) is parked with its reason. Nothing is dropped.

The parts: `decisions` (pure: envelopes, verdicts, retries, results), `session` (the broker),
`batcher` (buffer and batches), `process` (one batch through the engine), `recorder` (statuses, copies,
acks); `Worker` wires them and runs the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage

from nacento_sync import signals
from nacento_sync.asyncmode import bulk, queue
from nacento_sync.asyncmode.batcher import Batcher
from nacento_sync.asyncmode.process import BatchProcessor
from nacento_sync.asyncmode.recorder import Recorder
from nacento_sync.asyncmode.session import BrokerSession
from nacento_sync.config import Config, redact_url
from nacento_sync.engine import open_adapters

log = logging.getLogger("nacento_sync")

#: Idle checks (retry queues' depth) at most this often.
IDLE_CHECK = 0.5


@dataclass
class WorkerOptions:
    #: SKUs in flight: the prefetch window.
    concurrency: int = 400
    max_messages: int | None = None
    idle_exit: float | None = None


@dataclass
class WorkerStats:
    received: int = 0
    complete: int = 0
    failed: int = 0  # status 3
    retried: int = 0
    parked: int = 0
    skipped: int = 0  # already finished (redelivered)
    signal: signal.Signals | None = None


@dataclass
class Worker:
    """One worker process's consumer loop; `run()` returns when it stops normally."""

    cfg: Config
    options: WorkerOptions
    stats: WorkerStats = field(default_factory=WorkerStats)

    def __post_init__(self) -> None:
        self.stop_taking = asyncio.Event()
        self.session = BrokerSession(self.cfg.queue, self.options.concurrency, self._on_message, self.stop_taking)
        self.batcher = Batcher(max(1, min(self.cfg.sync.batch_size, self.options.concurrency)))
        self.recorder = Recorder(self.session, self.cfg.database.table_prefix, self.stats)
        self.busy = False
        self._idle_looks = 0

    async def run(self, *, handle_signals: bool = False) -> WorkerStats:
        """Check the database, the bucket and the broker (raising their access errors), then consume
        until stopped by `--max-messages`, `--idle-exit` or a signal. A bad `queue.url` raises ConfigError
        before anything is opened; each check gives up within its start-up bound."""
        self.cfg.queue.checked_url()
        async with open_adapters(self.cfg) as (conn, schema, storage):
            await bulk.check_tables(conn, self.cfg.database.table_prefix)
            processor = BatchProcessor(self.cfg, conn, schema, storage, self.session, self.recorder, self.stats)
            await processor.start()
            await self.session.open()
            await self._log_queue()
            if handle_signals:
                signals.install(self._on_signal)
            broker = asyncio.ensure_future(self.session.keep(on_lost=self.batcher.drop))
            try:
                await self._consume(processor)
            finally:
                self.stop_taking.set()
                broker.cancel()
                with contextlib.suppress(BaseException):
                    await broker
                await self.session.close()
                if processor.db is not conn:
                    processor.db.close()
        log.info("worker stopped: %d messages, %d complete, %d failed, %d retried, %d parked, %d already done",
                 self.stats.received, self.stats.complete, self.stats.failed, self.stats.retried, self.stats.parked,
                 self.stats.skipped)
        return self.stats

    def request_stop(self) -> None:
        """Stop taking messages; what is held is finished and acked, then `run()` returns."""
        self.stop_taking.set()
        self.batcher.wake()

    def _on_signal(self, sig: signal.Signals) -> None:
        self.stats.signal = self.stats.signal or sig
        log.info("%s: finishing what it holds (the batch in progress and %d waiting), then stopping",
                 sig.name, len(self.batcher.buffer))
        self.request_stop()

    async def _log_queue(self) -> None:
        name = self.session.topo.queue
        ready, consumers = (await self.session.depths([name]))[name] or (0, 0)
        log.info("worker on queue %s at %s: %d messages ready, %d other consumer(s)", name,
                 redact_url(self.cfg.queue.url), ready, consumers)
        if consumers:
            log.warning("%d other consumer(s) take messages from %s: if one is Magento's "
                        "nacento.gallery.consumer, retire it (see README, Asynchronous mode)", consumers, name)

    async def _on_message(self, message: AbstractIncomingMessage, generation: int) -> None:
        limit = self.options.max_messages
        if self.stop_taking.is_set() or (limit is not None and self.stats.received >= limit):
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await message.nack(requeue=True)  # sent before our cancel took effect: give it back
            return
        self.stats.received += 1
        self.batcher.add(message, generation)
        if limit is not None and self.stats.received >= limit:
            self.request_stop()

    async def _consume(self, processor: BatchProcessor) -> None:
        last_check = 0.0
        while True:
            batch = await self.batcher.next_batch(self.session.generation, linger=not self.stop_taking.is_set())
            if batch:
                self.busy = True
                try:
                    await processor.process(batch)
                finally:
                    self.busy = False
                continue
            if self.stop_taking.is_set():
                return
            if self.options.idle_exit is not None and time.monotonic() - last_check >= IDLE_CHECK:
                last_check = time.monotonic()
                if await self._idle():
                    log.info("idle for %ss with no retry pending: stopping", self.options.idle_exit)
                    return
            await self.batcher.wait(IDLE_CHECK)

    async def _idle(self) -> bool:
        """Nothing held, connected, no message for `idle_exit` seconds, none of our retries still due and
        the work and retry queues empty — twice in a row, so a message moving from a retry queue back to
        the work queue between two looks is not missed."""
        quiet = (not self.busy and self.session.ready and self.batcher.quiet_for(self.options.idle_exit or 0)
                 and time.monotonic() >= self.recorder.retry_due + 1)
        if quiet:
            topo = self.session.topo
            try:
                depths = await self.session.depths([topo.queue, *topo.retry_queues])
                quiet = all(d is None or d[0] == 0 for d in depths.values())
            except queue.BROKER_ERRORS:
                quiet = False
        self._idle_looks = self._idle_looks + 1 if quiet else 0
        return self._idle_looks >= 2

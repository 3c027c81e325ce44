"""The asynchronous worker: take operations from RabbitMQ and run their SKUs through the sync engine.

Messages arrive through a prefetch window (`--concurrency`) and are synced in batches by the unchanged
engine, with its product locks, so a worker and a `sync` never both insert one image. A message is
acked only after its operation's status is committed — together with the SKU's writes on success
(the engine's before-commit hook) — so a crash anywhere means a redelivery, which is harmless:
finished operations are acked without processing and the engine is idempotent.

Failures: not retriable → status 3. Retriable → republished to `<queue>.retry.<s>` (status stays 4),
then parked in `<queue>.failed` with status 2 when the delays are used up. A message that cannot be
tied to an operation (poison) is parked with its reason. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from nacento_sync import magento
from nacento_sync.asyncmode import bulk, queue
from nacento_sync.asyncmode.bulk import ErrorCode, Failure, Status
from nacento_sync.config import Config, redact_url, scrub
from nacento_sync.engine import Engine, Options, Outcome, open_adapters
from nacento_sync.etags import EtagFinder
from nacento_sync.feed import parse_record
from nacento_sync.models import Item, Rejection, sku_key
from nacento_sync.plan import ImageStats

log = logging.getLogger("nacento_sync")

#: MySQL/MariaDB errors that mean the connection is gone (server restart, KILL, network).
DB_LOST = {1053, 1927, 2003, 2006, 2013, 2055}
#: How long to wait for more messages once the first of a batch has arrived.
LINGER = 0.05
#: Idle checks (retry queues' depth) at most this often.
IDLE_CHECK = 0.5
#: Seconds the per-folder image counts (an estimate for the ETag strategy) are reused.
SIZES_TTL = 600.0


def _db_lost(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError | ConnectionError | magento.DatabaseAccessError):
        return True
    return isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and exc.args[0] in DB_LOST


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


@dataclass(eq=False)
class Held:
    """One delivered message while the worker holds it."""

    message: AbstractIncomingMessage
    generation: int
    ordinal: int
    bulk_uuid: str = ""
    key: int | None = None
    topic: str = ""
    data_text: str | None = None
    data: Any = None
    attempt: int = 0
    op: bulk.Operation | None = None
    item: Item | None = None
    mode: str = "merge"
    settled: bool = False

    @property
    def source(self) -> str:
        return f"{self.bulk_uuid}#{self.key if self.key is not None else 'sku'}"


@dataclass
class _Problem:
    held: Held
    code: ErrorCode
    message: str
    result: str | None = None


@dataclass
class Worker:
    """One worker process's consumer loop; `run()` returns when it stops normally."""

    cfg: Config
    options: WorkerOptions
    stats: WorkerStats = field(default_factory=WorkerStats)

    def __post_init__(self) -> None:
        self.topo = queue.Topology.from_config(self.cfg.queue)
        self.prefix = self.cfg.database.table_prefix
        self.batch_size = max(1, min(self.cfg.sync.batch_size, self.options.concurrency))
        self.buffer: list[Held] = []
        self.arrived = asyncio.Event()
        self.stop_taking = asyncio.Event()
        self.generation = 0
        self.last_arrival = time.monotonic()
        self.busy = False
        self.conn: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self.work_queue: AbstractQueue | None = None
        self.consumer_tag: str | None = None
        self.consuming = False
        self.db: Any = None
        self._ordinal = 0
        self._signals = 0
        self._redeclare = False
        self._lost = asyncio.Event()
        self._sizes: dict[str, int] | None = None
        self._sizes_at = 0.0
        self._idle_looks = 0
        #: When the last retry this worker scheduled comes back (monotonic seconds).
        self.retry_due = 0.0

    # ------------------------------------------------------------ lifecycle

    async def run(self, *, handle_signals: bool = False) -> WorkerStats:
        """Check the database, the bucket and the broker (raising their access errors), then consume
        until stopped by `--max-messages`, `--idle-exit` or a signal. A bad `queue.url` raises ConfigError
        before anything is opened; each check gives up within its start-up bound."""
        self.cfg.queue.checked_url()
        async with open_adapters(self.cfg) as (conn, schema, storage):
            await bulk.check_tables(conn, self.prefix)
            self.db, self.schema, self.storage = conn, schema, storage
            await self._open_broker()
            depth = await queue.queue_depths(self.conn, [self.topo.queue])
            ready, consumers = depth[self.topo.queue] or (0, 0)
            log.info("worker on queue %s at %s: %d messages ready, %d other consumer(s)", self.topo.queue,
                     redact_url(self.cfg.queue.url), ready, consumers)
            if consumers:
                log.warning("%d other consumer(s) take messages from %s: if one is Magento's "
                            "nacento.gallery.consumer, retire it (see README, Asynchronous mode)",
                            consumers, self.topo.queue)
            if handle_signals:
                self._install_signals()
            broker = asyncio.ensure_future(self._broker_loop())
            try:
                await self._consume_loop()
            finally:
                self.stop_taking.set()
                broker.cancel()
                with contextlib.suppress(BaseException):
                    await broker
                await self._close_broker()
                if self.db is not conn:
                    self.db.close()
        log.info("worker stopped: %d messages, %d complete, %d failed, %d retried, %d parked, %d already done",
                 self.stats.received, self.stats.complete, self.stats.failed, self.stats.retried, self.stats.parked,
                 self.stats.skipped)
        return self.stats

    def request_stop(self) -> None:
        """Stop taking messages; what is held is finished and acked, then `run()` returns."""
        self.stop_taking.set()
        self.arrived.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def handler(sig: signal.Signals) -> None:
            self._signals += 1
            self.stats.signal = self.stats.signal or sig
            if self._signals > 1 and main:  # second signal: stop now; unacked messages are redelivered
                main.cancel()
            log.info("%s: finishing what it holds (the batch in progress and %d waiting), then stopping",
                     sig.name, len(self.buffer))
            self.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler, sig)

    # ------------------------------------------------------------ broker

    async def _open_broker(self) -> None:
        conn = await queue.connect(self.cfg.queue)
        try:
            async with asyncio.timeout(queue.CONNECT_TIMEOUT):  # a broker gone silent after the handshake
                channel = await queue.open_channel(conn, prefetch=self.options.concurrency)
                _, work = await queue.declare(channel, self.topo)
        except queue.BROKER_ERRORS as e:
            with contextlib.suppress(BaseException):
                await conn.close()
            reason = (f"no answer within {queue.CONNECT_TIMEOUT:g} s" if isinstance(e, TimeoutError)
                      else scrub(str(e), self.cfg.queue.url))
            raise queue.BrokerUnreachable(f"RabbitMQ at {redact_url(self.cfg.queue.url)}: {reason}") from None
        self.generation += 1
        self.conn, self.channel, self.work_queue = conn, channel, work
        lost = asyncio.Event()
        conn.close_callbacks.add(lambda *_: lost.set())
        channel.close_callbacks.add(lambda *_: lost.set())
        self._lost = lost

    async def _start_consuming(self) -> None:
        if self.stop_taking.is_set() or self.work_queue is None:
            return
        generation = self.generation

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._on_message(message, generation)

        self.consumer_tag = await self.work_queue.consume(on_message)
        self.consuming = True

    async def _on_message(self, message: AbstractIncomingMessage, generation: int) -> None:
        limit = self.options.max_messages
        if self.stop_taking.is_set() or (limit is not None and self.stats.received >= limit):
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await message.nack(requeue=True)  # sent before our cancel took effect: give it back
            return
        self.stats.received += 1
        self.last_arrival = time.monotonic()
        self._ordinal += 1
        self.buffer.append(Held(message, generation, self._ordinal))
        self.arrived.set()
        if limit is not None and self.stats.received >= limit:
            self.request_stop()

    async def _broker_loop(self) -> None:
        """Keep a connection and a consumer; reconnect (backing off) when the broker goes away."""
        backoff = 0.5
        while True:
            if self.conn is None:
                try:
                    await self._open_broker()
                    log.info("reconnected to RabbitMQ")
                    backoff = 0.5
                except queue.BrokerUnreachable as e:
                    log.warning("%s; retrying in %.1fs", e, backoff)
                    await self._sleep_unless_stopped(backoff)
                    backoff = min(backoff * 2, 3.0)
                    if self.stop_taking.is_set():
                        return
                    continue
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await self._start_consuming()
            stop = asyncio.ensure_future(self.stop_taking.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            done, pending = await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if lost in done:
                log.warning("lost the connection to RabbitMQ; held messages will be redelivered; reconnecting")
                self.consuming = False
                old = self.conn
                self.conn = self.channel = self.work_queue = None
                self.buffer.clear()  # delivered on the lost channel: the broker redelivers them
                with contextlib.suppress(BaseException):
                    await old.close()
                continue
            await self._cancel_consumer()
            return

    async def _cancel_consumer(self) -> None:
        if self.consuming and self.work_queue is not None and self.consumer_tag:
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await self.work_queue.cancel(self.consumer_tag)
        self.consuming = False

    async def _close_broker(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(BaseException):
                await self.conn.close()
        self.conn = self.channel = self.work_queue = None

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop_taking.wait(), seconds)

    # ------------------------------------------------------------ the loop

    async def _consume_loop(self) -> None:
        last_check = 0.0
        while True:
            self.buffer = [h for h in self.buffer if h.generation == self.generation]  # stale: redelivered
            if self.buffer:
                if len(self.buffer) < self.batch_size and not self.stop_taking.is_set():
                    await asyncio.sleep(LINGER)
                batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
                self.busy = True
                try:
                    await self._process(batch)
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
            self.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), IDLE_CHECK)

    async def _idle(self) -> bool:
        """Nothing held, connected, no message for `idle_exit` seconds, none of our retries still due and
        the work and retry queues empty — twice in a row, so a message moving from a retry queue back to
        the work queue between two looks is not missed."""
        now = time.monotonic()
        quiet = not (self.buffer or self.busy or self.conn is None or not self.consuming)
        quiet = quiet and now - self.last_arrival >= (self.options.idle_exit or 0) and now >= self.retry_due + 1
        if quiet:
            try:
                depths = await queue.queue_depths(self.conn, [self.topo.queue, *self.topo.retry_queues])
                quiet = all(d is None or d[0] == 0 for d in depths.values())
            except queue.BROKER_ERRORS:
                quiet = False
        self._idle_looks = self._idle_looks + 1 if quiet else 0
        return self._idle_looks >= 2

    # ------------------------------------------------------------ one batch

    async def _process(self, batch: list[Held]) -> None:
        """Decode, find the operations, sync, record and ack; after losing the database, reconnect and
        redo what is not settled yet (finished operations are then acked without processing)."""
        if self._redeclare and self.channel is not None:
            await asyncio.sleep(1)  # no hot loop when the broker keeps refusing
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await queue.declare(self.channel, self.topo)
                self._redeclare = False
        live = []
        for h in batch:
            reason = self._decode(h)
            if reason:
                await self._park([_Problem(h, ErrorCode.INVALID_DATA, reason)], poison=True)
            else:
                live.append(h)
        while True:
            todo = [h for h in live if not h.settled and h.generation == self.generation]
            if not todo:
                return
            try:
                await self._process_db(todo)
                return
            except Exception as e:
                if not _db_lost(e):
                    log.exception("unexpected error while processing %d messages", len(todo))
                    await self._unexpected(todo, e)
                    return
                log.warning("lost the database connection (%s); reconnecting", e)
                await self._reconnect_db()

    def _decode(self, h: Held) -> str | None:
        """Read the envelope; returns why the message is poison, or None."""
        try:
            env = json.loads(h.message.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "poison: the body is not JSON"
        if not isinstance(env, dict):
            return "poison: the body is not a JSON object"
        bulk_uuid = env.get("bulk_uuid")
        if not isinstance(bulk_uuid, str) or not bulk_uuid or len(bulk_uuid.encode()) > 39:
            return "poison: no valid bulk_uuid"
        h.bulk_uuid = bulk_uuid
        key = env.get("id")
        if isinstance(key, str) and key.isdigit():
            key = int(key)
        if key is not None and (isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 2**32):
            return "poison: id is not an operation key"
        h.key = key
        topic = env.get("topic_name")
        h.topic = topic if isinstance(topic, str) and topic else self.topo.topic
        data = env.get("serialized_data")
        h.data_text = data if isinstance(data, str) else None
        try:
            h.data = json.loads(h.data_text) if h.data_text is not None else None
        except (ValueError, RecursionError):
            h.data = None
        if key is None and not (isinstance(h.data, dict) and isinstance(h.data.get("sku"), str)
                                and h.data["sku"].strip()):
            return "poison: neither an id nor a SKU in serialized_data: no operation to record it in"
        headers = h.message.headers or {}
        try:
            h.attempt = max(0, int(headers.get(queue.ATTEMPT_HEADER, 0)))
        except (TypeError, ValueError):
            h.attempt = 0
        return None

    async def _process_db(self, todo: list[Held]) -> None:
        await self._find_operations(todo)
        unknown = [h for h in todo if h.op is None and not h.settled]
        if unknown:
            await self._park([_Problem(h, ErrorCode.INVALID_DATA, f"poison: unknown bulk {h.bulk_uuid}")
                              for h in unknown], poison=True)
        todo = [h for h in todo if h.op is not None and not h.settled]
        done = [h for h in todo if h.op.status in bulk.FINISHED]
        for h in done:
            self.stats.skipped += 1
            await self._ack(h)
        todo = [h for h in todo if h.op.status not in bulk.FINISHED]
        if not todo:
            return
        await bulk.mark_started(self.db, self.prefix, [h.op.id for h in todo])

        invalid: list[_Problem] = []
        for h in todo:
            mode = h.data.get("mode") if isinstance(h.data, dict) else None
            if h.data is None:
                record: Item | Rejection = Rejection(h.source, "serialized_data is not a JSON string", h.ordinal)
            elif mode is not None and mode not in ("merge", "replace"):
                record = Rejection(h.source, f"mode must be merge or replace, not {mode!r}", h.ordinal)
            else:
                record = parse_record(h.data, h.source, h.ordinal)
            h.mode = mode or self.cfg.sync.mode
            if isinstance(record, Rejection):
                sku = h.data.get("sku") if isinstance(h.data, dict) else None
                result = bulk.fit_result({"sku": sku, "product_id": None, "error": "invalid_data",
                                          "message": record.error})
                invalid.append(_Problem(h, ErrorCode.INVALID_DATA, f"invalid_data: {record.error}", result))
            else:
                h.item = record
        await self._fail(invalid)

        rounds = [[h for h in todo if h.item is not None and not h.settled]]
        while rounds:
            pending = rounds.pop(0)
            leftovers: list[Held] = []
            for group in _sub_batches(pending):
                leftovers += await self._sync(group)
            if len(leftovers) < len(pending):
                rounds.append(leftovers)
            else:  # no progress together: one at a time
                rounds.extend([h] for h in leftovers)

    async def _find_operations(self, todo: list[Held]) -> None:
        """Each message's operation row: by (bulk, key), or for the original module's messages (no id) by
        bulk and SKU; created when the bulk exists but the row does not."""
        keyed = [h for h in todo if h.key is not None]
        found = await bulk.operations_by_key(self.db, self.prefix, [(h.bulk_uuid, h.key) for h in keyed])
        for h in keyed:
            h.op = found.get((h.bulk_uuid, h.key))
        for bulk_uuid in dict.fromkeys(h.bulk_uuid for h in todo if h.key is None):
            index: dict[str, list[bulk.Operation]] = {}
            for op in await bulk.operations_of_bulk(self.db, self.prefix, bulk_uuid):
                sku = bulk._sku_of(op.data)
                if sku is not None:
                    index.setdefault(sku_key(sku), []).append(op)
            for h in todo:
                if h.key is None and h.bulk_uuid == bulk_uuid:
                    ops = index.get(sku_key(h.data["sku"]), [])
                    open_ops = [op for op in ops if op.status not in bulk.FINISHED]
                    h.op = (open_ops or ops or [None])[0]
        missing = [h for h in todo if h.op is None]
        if missing:
            exists = await bulk.existing_bulks(self.db, self.prefix, [h.bulk_uuid for h in missing])
            for h in missing:
                if h.bulk_uuid in exists:
                    log.info("operation %s has no magento_operation row: creating it", h.source)
                    h.op = await bulk.insert_operation(self.db, self.prefix, h.bulk_uuid, h.key, h.topic,
                                                       h.data_text or "")

    async def _sync(self, group: list[Held]) -> list[Held]:
        """One engine batch (distinct SKUs, one mode); returns the messages to run again alone (two
        spellings of one product in the batch: the engine wrote only one of them)."""
        by_ordinal = {h.ordinal: h for h in group}

        async def before_commit(cur, outcomes: list[Outcome]) -> None:
            await bulk.complete(cur, self.prefix, [(by_ordinal[o.item.ordinal].op.id, _result(o, by_ordinal[
                o.item.ordinal].mode)) for o in outcomes])

        options = Options(mode=group[0].mode, batch_size=len(group), etag_strategy=self.cfg.sync.etag_strategy,
                          purge_cache=self.cfg.sync.purge_cache)
        # A fresh ETag finder per batch: a listing cached for the worker's lifetime would go stale.
        finder = EtagFinder(self.storage, options.etag_strategy, folder_sizes=self._folder_sizes)
        engine = Engine(self.db, self.schema, self.storage, options, report=None, before_commit=before_commit,
                        etags=finder)
        outcomes = await engine.sync_batch([h.item for h in group])
        if engine.counters.fatal:  # the database went away: nothing of this batch was committed; redo it
            raise ConnectionError(engine.counters.fatal)
        leftovers, retriable, final = [], [], []
        for out in outcomes:
            h = by_ordinal[out.item.ordinal]
            if out.error is None and out.stats is not None:
                self.stats.complete += 1
                await self._ack(h)
            elif out.error is None:
                leftovers.append(h)
            else:
                code, can_retry = bulk.ENGINE_ERRORS.get(out.error, (ErrorCode.INTERNAL_ERROR, True))
                if code == ErrorCode.DATABASE_ERROR and any("(1205," in w for w in out.warnings):
                    code = ErrorCode.TIMEOUT
                detail = next((w for w in out.warnings if w.startswith(out.error + ":")), None)
                message = detail or _ERROR_TEXT.get(out.error, out.error)
                problem = _Problem(h, code, message, _result(out, h.mode))
                (retriable if can_retry else final).append(problem)
        await self._fail(final)
        await self._retry_or_park(retriable)
        return leftovers

    # ------------------------------------------------------------ outcomes

    async def _fail(self, problems: Sequence[_Problem]) -> None:
        """Not retriable: status 3, then ack."""
        if not problems:
            return
        await bulk.record_failures(self.db, self.prefix, [
            Failure(p.held.op.id, Status.NOT_RETRIABLY_FAILED, p.code, p.message, p.result) for p in problems])
        for p in problems:
            self.stats.failed += 1
            await self._ack(p.held)

    async def _retry_or_park(self, problems: Sequence[_Problem]) -> None:
        """Retriable: to the retry queue of the next delay (status stays 4, with the reason), or parked
        with status 2 when the delays are used up. Acked once the copy is confirmed."""
        if not problems:
            return
        delays = self.topo.retry_delays
        retries = [p for p in problems if p.held.attempt < len(delays)]
        parks = [p for p in problems if p.held.attempt >= len(delays)]
        if retries:
            await bulk.record_failures(self.db, self.prefix, [
                Failure(p.held.op.id, Status.OPEN, None,
                        f"{p.message} (retry {p.held.attempt + 1} of {len(delays)} in "
                        f"{delays[p.held.attempt]}s)") for p in retries])
            sent = await self._republish([(p, self.topo.retry_queue(delays[p.held.attempt]), p.held.attempt + 1)
                                          for p in retries])
            for p in sent:
                self.stats.retried += 1
                self.retry_due = max(self.retry_due, time.monotonic() + delays[p.held.attempt])
                await self._ack(p.held)
        if parks:
            await self._park(parks, poison=False)

    async def _park(self, problems: Sequence[_Problem], *, poison: bool) -> None:
        """To `<queue>.failed` with the reason in `x-nacento-error`; status 2 when there is an operation."""
        sent = await self._republish([(p, self.topo.failed_queue, p.held.attempt) for p in problems])
        if not poison and sent:
            n = len(self.topo.retry_delays)
            await bulk.record_failures(self.db, self.prefix, [
                Failure(p.held.op.id, Status.RETRIABLY_FAILED, p.code,
                        f"{p.message} (parked after {n} retr{'y' if n == 1 else 'ies'})", p.result)
                for p in sent])
        for p in sent:
            self.stats.parked += 1
            log.warning("parked %s in %s: %s", p.held.source if not poison else "a message",
                        self.topo.failed_queue, p.message)
            await self._ack(p.held)

    async def _republish(self, items: Sequence[tuple[_Problem, str, int]]) -> list[_Problem]:
        """Copies through the default exchange, confirmed; returns those the broker took. The others stay
        unacked and come back when the connection is replaced."""
        if not items:
            return []
        channel = self.channel
        if channel is None or channel.is_closed:
            log.warning("no broker connection: %d messages will be redelivered", len(items))
            for p, _, _ in items:
                p.held.settled = True
            return []
        batch = []
        for p, routing_key, attempt in items:
            src = p.held.message
            headers = {k: v for k, v in (src.headers or {}).items() if not k.startswith("x-death")}
            headers.update({queue.ATTEMPT_HEADER: attempt, queue.ERROR_HEADER: bulk.fit_message(p.message)})
            msg = queue.message(src.body, message_id=src.message_id, headers=headers)
            batch.append((id(p), routing_key, msg))
        results = await queue.publish_all(channel.default_exchange, batch)
        sent = []
        for p, routing_key, _ in items:
            if results[id(p)] is None:
                sent.append(p)
                continue
            log.warning("could not publish to %s (%s): the message goes back to the queue", routing_key,
                        results[id(p)])
            self._redeclare = True  # e.g. someone deleted a retry queue
            p.held.settled = True
            with contextlib.suppress(Exception):
                await p.held.message.nack(requeue=True)
        return sent

    async def _ack(self, h: Held) -> None:
        h.settled = True
        try:
            await h.message.ack()
        except Exception as e:  # the channel was replaced: the broker redelivers it, harmlessly
            log.debug("ack failed (%s): the message will be redelivered", e)

    async def _unexpected(self, todo: list[Held], exc: Exception) -> None:
        """A bug or an unforeseen failure: retried like any retriable error, so nothing is lost."""
        problems = [_Problem(h, ErrorCode.INTERNAL_ERROR, f"internal_error: {type(exc).__name__}: {exc}")
                    for h in todo if h.op is not None and not h.settled]
        try:
            await self._retry_or_park(problems)
        except Exception:
            log.exception("could not record the failure; the messages will be redelivered")
            await asyncio.sleep(1)
            for h in todo:
                if not h.settled:
                    h.settled = True
                    with contextlib.suppress(Exception):
                        await h.message.nack(requeue=True)
        for h in todo:
            if not h.settled:
                h.settled = True
                with contextlib.suppress(Exception):
                    await h.message.nack(requeue=True)

    async def _folder_sizes(self) -> dict[str, int]:
        """The store's images per dispersion folder (for the LIST-or-HEAD choice): an estimate, so one
        query per SIZES_TTL serves every batch."""
        now = time.monotonic()
        if self._sizes is None or now - self._sizes_at > SIZES_TTL:
            self._sizes = await magento.folder_sizes(self.db, self.schema)
            await self.db.rollback()
            self._sizes_at = now
        return self._sizes

    async def _reconnect_db(self) -> None:
        """Replace the database connection, backing off until the server answers again."""
        with contextlib.suppress(Exception):
            self.db.close()
        backoff = 0.5
        while True:
            try:
                self.db = await magento.connect(self.cfg.database)
                log.info("reconnected to the database")
                return
            except magento.DatabaseAccessError as e:
                log.warning("%s; retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 3.0)


_ERROR_TEXT = {
    "product_not_found": "product_not_found: no product with this SKU (yet)",
    "ambiguous_sku": "ambiguous_sku: several products have this SKU",
}


def _sub_batches(held: list[Held]) -> list[list[Held]]:
    """Engine batches: one mode each, distinct SKUs (a repeated SKU goes to a later batch, in order)."""
    out: list[list[Held]] = []
    by_mode: dict[str, list[Held]] = {}
    for h in held:
        by_mode.setdefault(h.mode, []).append(h)
    for group in by_mode.values():
        batches: list[tuple[set[str], list[Held]]] = []
        for h in group:
            key = sku_key(h.item.sku)
            target = next((b for b in batches if key not in b[0]), None)
            if target is None:
                target = (set(), [])
                batches.append(target)
            target[0].add(key)
            target[1].append(h)
        out += [b for _, b in batches]
    return out


def _result(out: Outcome, mode: str) -> str:
    """An operation's `result_serialized_data`: the SKU's result as in the sync report."""
    stats = out.stats
    image_stats: dict[str, Any] = {name: getattr(stats, name, 0) if stats else 0 for name in ImageStats.COUNTERS}
    image_stats["warnings"] = [*out.warnings, *(stats.warnings if stats else [])]
    return bulk.fit_result({"sku": out.item.sku, "product_id": out.product_id, "image_stats": image_stats,
                            "error": out.error, "mode": mode, "changed": bool(out.changed)})

"""One batch of held messages, from envelopes to committed operation statuses.

Decode each envelope (poison is parked), find the operations (finished ones are acked unread), read their
items, then sync them through the unchanged engine in sub-batches whose before-commit hook completes the
operations inside the data transaction. After losing the database, reconnect and redo what is not settled.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from nacento_sync import __version__, dberrors, journal, magento
from nacento_sync.asyncmode import bulk
from nacento_sync.asyncmode.batcher import Held, sub_batches
from nacento_sync.asyncmode.decisions import (
    Action,
    Poison,
    Verdict,
    classify,
    decode_envelope,
    listings_fresh_for,
    outcome_result,
    read_operation,
    settle,
    sku_result,
)
from nacento_sync.asyncmode.recorder import Decided, Recorder
from nacento_sync.asyncmode.session import BrokerSession
from nacento_sync.codes import Code, Failure
from nacento_sync.config import Config
from nacento_sync.engine import Engine, Options
from nacento_sync.etags import EtagFinder
from nacento_sync.failover import Reconnector
from nacento_sync.magento import Schema
from nacento_sync.models import sku_key
from nacento_sync.results import ImageStore, Outcome

log = logging.getLogger("nacento_sync")

#: Seconds the per-folder image counts (an estimate for the ETag strategy) are reused.
SIZES_TTL = 600.0


class BatchProcessor:
    """Processes the worker's batches on its database connection (replaced when it is lost)."""

    def __init__(self, cfg: Config, db: Any, schema: Schema, storage: ImageStore, session: BrokerSession,
                 recorder: Recorder, stats: Any) -> None:
        self.cfg, self.schema, self.storage, self.session = cfg, schema, storage, session
        self.recorder, self.stats = recorder, stats
        self.prefix = cfg.database.table_prefix
        self.delays = session.topo.retry_delays
        self.db = recorder.db = db
        #: Replaces a lost connection, for as long as it takes, killing the lost one's server thread.
        self.failover = Reconnector(cfg.database, budget=math.inf)
        self._sizes: dict[str, int] | None = None
        #: The ETag finder kept across batches, and when (wall clock) it was created: see `_finder`.
        self._etags: tuple[EtagFinder | None, float] = (None, 0.0)
        self._sizes_at = 0.0
        self._pruned_at = -3600.0

    async def process(self, batch: list[Held]) -> None:
        await self.session.redeclare_if_needed()
        poisoned, live = [], []
        for h in batch:
            decoded = decode_envelope(h.message.body, h.message.headers or {}, self.session.topo.topic)
            if isinstance(decoded, Poison):
                poisoned.append((h, decoded.reason))
            else:
                h.envelope = decoded
                live.append(h)
        await self.recorder.park_poison(poisoned)
        while todo := [h for h in live if not h.settled and h.generation == self.session.generation]:
            try:
                await self._process_db(todo)
                self.failover.progressed()
                return
            except Exception as e:
                if not dberrors.connection_lost(e):
                    log.exception("unexpected error while processing %d messages", len(todo))
                    await self._unexpected(todo, e)
                    return
                await self._reconnect_db(e)

    async def _process_db(self, todo: list[Held]) -> None:
        await find_operations(self.db, self.prefix, todo)
        await self.recorder.park_poison([(h, f"poison: unknown bulk {h.env.bulk_uuid}")
                                         for h in todo if h.op is None and not h.settled])
        todo = [h for h in todo if h.op is not None and not h.settled]
        for h in todo:
            if h.operation.status in bulk.FINISHED:  # a redelivery: already done
                self.stats.skipped += 1
                await self.recorder.ack(h)
        todo = [h for h in todo if h.operation.status not in bulk.FINISHED]
        if not todo:
            return
        await bulk.mark_started(self.db, self.prefix, [h.operation.id for h in todo])
        invalid = []
        for h in todo:
            h.mode, read = read_operation(h.env, h.ordinal, self.cfg.sync.mode)
            if isinstance(read, Failure):
                result = sku_result(h.env.sku, h.mode, failure=read, warnings=[str(read)])
                invalid.append(Decided(h, Verdict(Action.FAIL, read), result))
            else:
                h.item = read
        await self.recorder.record(invalid)

        rounds = [[h for h in todo if h.item is not None and not h.settled]]
        while rounds:
            pending = rounds.pop(0)
            again: list[Held] = []
            for group in sub_batches(pending):
                again += await self._sync(group)
            if len(again) < len(pending):
                rounds.append(again)
            else:  # no progress together: one at a time
                rounds.extend([h] for h in again)

    async def _sync(self, group: list[Held]) -> list[Held]:
        """One engine batch (distinct SKUs, one mode); returns the messages to run again alone (two
        spellings of one product in the batch: the engine wrote only one of them)."""
        by_ordinal = {h.ordinal: h for h in group}

        async def before_commit(cur, outcomes: list[Outcome]) -> None:
            held = [by_ordinal[o.item.ordinal] for o in outcomes]
            await bulk.complete(cur, self.prefix, [(h.operation.id, outcome_result(o, h.mode))
                                                   for h, o in zip(held, outcomes, strict=True)])

        options = Options(mode="replace" if group[0].mode == "replace" else "merge", batch_size=len(group),
                          etag_strategy=self.cfg.sync.etag_strategy,
                          purge_cache=self.cfg.sync.purge_cache)
        finder = self._finder(group, options)
        out = self._journal(group) if options.mode == "replace" else None
        engine = Engine(self.db, self.schema, self.storage, options, before_commit=before_commit,
                        etags=finder, journal=out)
        try:
            outcomes = await engine.sync_batch([h.desired for h in group])
        finally:
            if out is not None:
                out.close()
                if out.rows == 0:  # a batch that changed nothing leaves no file behind
                    out.path.unlink(missing_ok=True)
        if engine.counters.fatal:  # the database went away: nothing of this batch was committed; redo it
            raise ConnectionError(engine.counters.fatal)
        again, decided = [], []
        for outcome in outcomes:
            h = by_ordinal[outcome.item.ordinal]
            verdict = classify(outcome, h.attempt, self.delays)
            if verdict.action is Action.COMPLETE:
                self.stats.complete += 1
                await self.recorder.ack(h)
            elif verdict.action is Action.AGAIN:
                again.append(h)
            else:
                decided.append(Decided(h, verdict, outcome_result(outcome, h.mode)))
        await self.recorder.record(decided)
        return again

    def _finder(self, group: list[Held], options: Options) -> EtagFinder:
        """The ETag finder for this batch: the previous one (its bucket listings and demand) while every
        message of the batch was published before it was created, else a fresh one. Draining a large
        submission then lists each folder once, as `sync` does; a message submitted later (its images
        possibly uploaded since) never sees an older listing."""
        published = [h.message.timestamp.timestamp() if h.message.timestamp else None for h in group]
        finder, created = self._etags
        if finder is None or finder.strategy != options.etag_strategy or not listings_fresh_for(created, published):
            finder = EtagFinder(self.storage, options.etag_strategy, folder_sizes=self._folder_sizes)
            self._etags = (finder, time.time())
        return finder
    def _journal(self, group: list[Held]) -> journal.JournalFile:
        """A replace-mode batch's own journal in `sync.journal_dir` (pruned at most hourly). Raises
        `JournalFileError` when it cannot be written: the batch is then retried, never run unjournaled."""
        directory = journal.default_dir(self.cfg.sync.journal_dir)
        if time.monotonic() - self._pruned_at > 3600:
            journal.prune(directory, self.cfg.sync.journal_keep_days)
            self._pruned_at = time.monotonic()
        bulks = sorted({h.env.bulk_uuid for h in group})
        request_id = f"worker-{bulks[0]}" + (f"+{len(bulks) - 1}" if len(bulks) > 1 else "")
        out = journal.create_default(directory, request_id)
        try:
            out.header(request_id=request_id, mode="replace", dry_run=False, database=self.schema.database,
                       table_prefix=self.schema.prefix, link_field=self.schema.link, version=__version__,
                       command="worker")
        except OSError as e:
            out.close()
            raise journal.JournalFileError(out.path, f"cannot write: {e.strerror or e}") from None
        return out

    async def _unexpected(self, todo: list[Held], exc: Exception) -> None:
        """A bug or an unforeseen failure: retried like any retriable error, so nothing is lost."""
        failure = Failure(Code.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        try:
            await self.recorder.record([Decided(h, settle(failure, h.attempt, self.delays))
                                        for h in todo if h.op is not None and not h.settled])
        except Exception:
            log.exception("could not record the failure; the messages will be redelivered")
            await asyncio.sleep(1)
        await self.recorder.give_back(todo)

    async def _folder_sizes(self) -> dict[str, int]:
        """The store's images per dispersion folder (for the LIST-or-HEAD choice): an estimate, so one
        query per SIZES_TTL serves every batch."""
        now = time.monotonic()
        if self._sizes is None or now - self._sizes_at > SIZES_TTL:
            self._sizes = await magento.folder_sizes(self.db, self.schema)
            await self.db.rollback()
            self._sizes_at = now
        return self._sizes

    async def start(self) -> None:
        """Note the database connection's server thread, so that a lost one can be killed."""
        await self.failover.adopt(self.db)

    async def _reconnect_db(self, error: BaseException) -> None:
        """Replace the database connection, backing off until the server answers again; the lost
        connection's thread is killed so the locks of its open transaction go."""
        self.db = self.recorder.db = await self.failover.replace(self.db, error)


async def find_operations(db: Any, prefix: str, todo: list[Held]) -> None:
    """Each message's operation row: by (bulk, key), or for the original module's messages (no id) by
    bulk and SKU; created when the bulk exists but the row does not."""
    keyed = [(h, h.env.bulk_uuid, h.env.key) for h in todo if h.env.key is not None]
    found = await bulk.operations_by_key(db, prefix, [(uuid, key) for _, uuid, key in keyed])
    for h, uuid, key in keyed:
        h.op = found.get((uuid, key))
    for bulk_uuid in dict.fromkeys(h.env.bulk_uuid for h in todo if h.env.key is None):
        index: dict[str, list[bulk.Operation]] = {}
        for op in await bulk.operations_of_bulk(db, prefix, bulk_uuid):
            sku = bulk._sku_of(op.data)
            if sku is not None:
                index.setdefault(sku_key(sku), []).append(op)
        for h in todo:
            if h.env.key is None and h.env.bulk_uuid == bulk_uuid:
                ops = index.get(sku_key(h.env.sku or ""), [])
                open_ops = [op for op in ops if op.status not in bulk.FINISHED]
                h.op = next(iter(open_ops or ops), None)
    missing = [h for h in todo if h.op is None]
    if missing:
        exists = await bulk.existing_bulks(db, prefix, [h.env.bulk_uuid for h in missing])
        for h in missing:
            if h.env.bulk_uuid in exists:
                log.info("operation %s has no magento_operation row: creating it", h.source)
                h.op = await bulk.insert_operation(db, prefix, h.env.bulk_uuid, h.env.key,
                                                   h.env.topic, h.env.data_text or "")

"""The engine: feed → batches → look-ups → plan → apply → report.

Per batch: one product look-up, the ETags of its images (outside any lock), then one transaction
that locks the products in a fixed order, reads their galleries, plans and writes. A failing batch
is retried SKU by SKU so one bad SKU cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pymysql

from nacento_sync import dberrors, journal, magento, rowsim, signals
from nacento_sync.charset import fit_item
from nacento_sync.codes import Code, Failure
from nacento_sync.config import Config, StorageConfig
from nacento_sync.etags import EtagFinder, Strategy
from nacento_sync.failover import DatabaseGone, Reconnector, commit_took_effect
from nacento_sync.journal import Snapshot
from nacento_sync.magento import NOT_FOUND, Product, Schema, Writer
from nacento_sync.models import Item, Rejection, sku_key
from nacento_sync.pipeline import Pipeline
from nacento_sync.plan import Mode, ProductPlan, ProductState, RemoveEntry, plan_product
from nacento_sync.purge import Purger
from nacento_sync.report import ReportBuilder
from nacento_sync.results import ImageStore, Outcome, StorageFailure

log = logging.getLogger("nacento_sync")
#: SKUs a replace-mode dry run lists with the images they would lose.
WOULD_DELETE_SHOWN = 20


@dataclass
class Options:
    """How a run syncs: what `sync`'s flags and the configuration's `sync:` section say."""

    #: "merge" (add and update, never remove) or "replace" (also delete the images the export does not list).
    mode: Mode = "merge"
    #: Compute the same report, write nothing.
    dry_run: bool = False
    #: In replace mode, let an item with an empty image list delete all of its product's images.
    allow_empty: bool = False
    #: SKUs per transaction.
    batch_size: int = 200
    #: How ETags are found: "auto", "head" or "list" (README, "Finding ETags").
    etag_strategy: Strategy = "auto"
    #: Delete the resized copies of images whose bytes changed or that were deleted (`--purge-cache`).
    purge_cache: bool = False

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> Options:
        """The options the configuration's `sync:` section gives (mode, batch_size, etag_strategy,
        purge_cache), with `overrides` (any field, e.g. `dry_run=True`) applied on top."""
        sync = config.sync
        values: dict[str, Any] = {"mode": sync.mode, "batch_size": sync.batch_size,
                                  "etag_strategy": sync.etag_strategy, "purge_cache": sync.purge_cache}
        return cls(**(values | overrides))


@dataclass
class Counters:
    """Run-wide figures of the engine (`api.SyncResult` carries them to callers)."""

    looked_up: int = 0
    found: int = 0
    batches: int = 0
    statements: int = 0
    skus: int = 0
    s3_requests: dict[str, int] = field(default_factory=dict)
    #: Resized-copy keys deleted (or that a dry run would send); images whose copies went stale.
    cache_purged: int = 0
    stale_images: int = 0
    #: Why the run stopped early (the database went away), if it did.
    fatal: str | None = None
    #: Database connections replaced after a loss (failover), and seconds spent without a database.
    reconnects: int = 0
    seconds_down: float = 0.0
    #: A replace-mode dry run: the first SKUs that would lose images, with those images' paths.
    would_delete: list[tuple[str, list[str]]] = field(default_factory=list)
    #: Wall seconds spent in each stage (STAGES), summed over batches: where a run's time goes. The look-up
    #: stages (feed, products, storage) overlap the previous batch's transaction, so the sum can exceed the run.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the block to `stage_seconds[stage]` (two perf_counter calls: cheap)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


#: The stages `Counters.stage_seconds` names, in the order a batch goes through them.
STAGES = ("feed", "products", "storage", "lock", "read", "plan", "write", "commit", "purge")


#: Called inside a batch's transaction, after its writes and before COMMIT, with the outcomes of the
#: SKUs written in it: lets the async worker commit operation statuses atomically with the data.
BeforeCommit = Callable[[Any, list[Outcome]], Awaitable[None]]


@dataclass
class _Batch:
    """A looked-up batch waiting for its transaction."""

    outcomes: list[Outcome]
    writable: list[tuple[Outcome, Product]]
    etags: dict[str, Any]


@dataclass
class Engine:
    conn: magento.Connection
    schema: Schema
    storage: ImageStore
    options: Options
    before_commit: BeforeCommit | None = None
    #: A second connection for product look-ups, so they overlap the previous batch's transaction.
    lookup_conn: magento.Connection | None = None
    etags: EtagFinder | None = None
    purger: Purger | None = None
    counters: Counters = field(default_factory=Counters)
    stop_requested: bool = False
    #: Replaces a lost connection and the batch is redone (the sync run's); None: a lost connection
    #: stops the run (the worker, which redoes a batch from its operations' statuses, passes none).
    failover: Reconnector | None = None
    #: Where every written row goes (before and after) before each commit (`--journal`, replace mode).
    journal: journal.JournalFile | None = None

    def __post_init__(self) -> None:
        self._reads: magento.Connection = self.lookup_conn or self.conn
        #: Set while COMMIT is in flight: the batch's states before it and its plans (see `_transaction`).
        self._committing: tuple[list[ProductState], list[tuple[Outcome, ProductPlan]]] | None = None
        self._open_tx: int | None = None  # the journal's transaction not yet committed
        #: The journal transaction of the last COMMIT sent: marked committed if a lost COMMIT took effect.
        self._committing_tx: int | None = None
        if self.etags is None:
            self.etags = EtagFinder(self.storage, self.options.etag_strategy, folder_sizes=self._folder_sizes)
        if self.purger is None:
            self.purger = Purger(self.storage, self._gallery_values, enabled=self.options.purge_cache,
                                 dry_run=self.options.dry_run)

    async def _gallery_values(self) -> list[str]:
        """Every gallery path (one read per run, after a commit, on the idle writing connection)."""
        values = await magento.gallery_values(self.conn, self.schema)
        await self.conn.rollback()
        return values

    async def _folder_sizes(self) -> dict[str, int]:
        return await self._read(lambda conn: magento.folder_sizes(conn, self.schema))

    async def _read(self, query: Callable[[magento.Connection], Awaitable[Any]]) -> Any:
        """`query` on the look-up connection, then the read snapshot ended (before any storage look-up);
        with failover, asked again on a new connection when that one is lost."""
        while True:
            try:
                result = await query(self._reads)
                await self._reads.rollback()
                return result
            except pymysql.err.MySQLError as e:
                if self.failover is None or not dberrors.connection_lost(e):
                    raise
                shared = self._reads is self.conn
                self._reads = await self.failover.replace(self._reads, e)
                if shared:
                    self.conn = self._reads

    async def sync_batch(self, items: list[Item], early: dict[str, list[str]] | None = None) -> list[Outcome]:
        """Sync a batch of distinct SKUs; returns one outcome per item, in order.

        An item the store's columns cannot hold (a 4-byte character in its SKU or a path, on `utf8mb3`
        tables) is not looked up: its outcome is `invalid_data`."""
        fitted = [fit_item(item, self.schema.narrow) for item in items]
        storable = [f for f in fitted if isinstance(f, Item)]
        done = iter(await self.write(await self.lookup(storable, early or {})) if storable else [])
        return [next(done) if isinstance(f, Item) else
                Outcome(item, failure=Failure(Code.INVALID_DATA, f.error), warnings=[Code.INVALID_DATA.notice(f.error)])
                for item, f in zip(items, fitted, strict=True)]

    async def lookup(self, items: list[Item], early: dict[str, list[str]]) -> _Batch:
        """Products by SKU and the ETags of their images: no lock held, nothing written."""
        try:
            return await self._lookup(items, early)
        except DatabaseGone as e:  # the run stops (exit 3); this batch is neither written nor reported
            self._fatal(e)
            return _Batch([Outcome(item, failure=Failure(Code.DATABASE_ERROR, str(e))) for item in items], [], {})

    async def _lookup(self, items: list[Item], early: dict[str, list[str]]) -> _Batch:
        with self.counters.timed("products"):
            found = await self._read(lambda conn: magento.find_products(conn, self.schema, [i.sku for i in items]))
        outcomes = [Outcome(item, warnings=[*early.get(sku_key(item.sku), []), *item.warnings]) for item in items]
        ready: list[tuple[Outcome, Product]] = []
        by_entity: dict[int, int] = {}
        for out in outcomes:
            item, product = out.item, found[out.item.sku]
            if not isinstance(product, Product):
                out.failure = Failure.of(product)
                continue
            out.product_id = product.entity_id
            unknown = {r for im in item.images for r in im.roles} - set(self.schema.roles)
            out.warnings += [Code.ROLE_UNAVAILABLE.notice(f"this store has no {r!r} attribute; role not written")
                             for r in sorted(unknown)]
            if product.future_rows:
                out.warnings.append(Code.STAGING_FUTURE_ROWS.notice(
                    f"{product.future_rows} scheduled update(s) of this "
                                    "product keep their own gallery; only the active version was changed"))
            if product.entity_id in by_entity:  # two spellings the collation sees as one SKU
                prev = ready[by_entity[product.entity_id]][0]
                out.warnings.append(Code.DUPLICATE_SKU.notice(
                    f"{item.sku!r} at {item.source} replaces {prev.item.sku!r} "
                                    f"at {prev.item.source}"))
                prev.warnings.append(Code.DUPLICATE_SKU.notice(f"replaced by {item.sku!r} at {item.source}"))
                ready[by_entity[product.entity_id]] = (out, product)
                continue
            by_entity[product.entity_id] = len(ready)
            ready.append((out, product))

        assert self.etags is not None
        with self.counters.timed("storage"):
            etags = await self.etags.etags(im.path for out, _ in ready for im in out.item.images)
        self.counters.looked_up += len(etags)
        self.counters.found += sum(1 for v in etags.values() if isinstance(v, str))
        writable = []
        for out, product in ready:
            failures = [f for im in out.item.images if isinstance(f := etags[im.path], StorageFailure)]
            if failures:
                out.warnings += [Code.STORAGE_ERROR.notice(f"{f.key}: {f.reason}") for f in failures]
                out.failure = Failure(Code.STORAGE_ERROR, f"{failures[0].key}: {failures[0].reason}")
            else:
                writable.append((out, product))
        return _Batch(outcomes, writable, etags)

    async def write(self, batch: _Batch) -> list[Outcome]:
        """The batch's transaction (or one per SKU after a failure); the outcomes, in order."""
        outcomes, writable, etags = batch.outcomes, batch.writable, batch.etags
        self.counters.batches += 1
        errors: dict[int, Exception] = {}
        try:
            await self._transaction(writable, etags)
        except OSError as e:  # the journal cannot be written: nothing of this batch is committed
            await self._rollback()
            assert self.journal is not None
            self.counters.fatal = f"cannot write the journal {self.journal.path}: {e.strerror or e}"
            self.stop_requested = True
            errors = dict.fromkeys(range(len(writable)), e)
        except (pymysql.err.MySQLError, DatabaseGone) as e:
            await self._rollback()
            if dberrors.connection_lost(e):  # nothing of this batch was committed; stop the run (exit 3)
                self._fatal(e)
                errors = dict.fromkeys(range(len(writable)), e)
            elif len(writable) == 1:
                errors[0] = e
            else:
                log.warning("batch failed (%s); retrying its %d SKUs one by one", e, len(writable))
                for i, one in enumerate(writable):
                    try:
                        await self._transaction([one], etags)
                    except (pymysql.err.MySQLError, DatabaseGone) as e1:
                        await self._rollback()
                        errors[i] = e1
                        if dberrors.connection_lost(e1):  # the rest would fail the same way
                            self._fatal(e1)
                            errors.update(dict.fromkeys(range(i + 1, len(writable)), e1))
                            break
        for i, exc in errors.items():
            out = writable[i][0]
            log.error("SKU %r failed: %s", out.item.sku, exc)
            out.failure = Failure(Code.TIMEOUT if isinstance(exc, pymysql.err.MySQLError)
                                  and dberrors.lock_wait_timeout(exc) else Code.DATABASE_ERROR, str(exc))
            out.warnings.append(str(out.failure))
        self.counters.skus += len(outcomes)
        return outcomes

    def _fatal(self, e: BaseException) -> None:
        """The database is gone for good: stop the run after this batch (exit 3)."""
        if self.counters.fatal is None:
            self.counters.fatal = str(e) if isinstance(e, DatabaseGone) else f"lost the database connection: {e}"
        self.stop_requested = True

    async def _transaction(self, ready: list[tuple[Outcome, Product]], etags) -> None:
        """Lock, read, plan and write these products in one transaction (retried on deadlock).

        With failover, a lost connection is replaced and the transaction redone, planned afresh from what
        the database now holds; when the loss came during COMMIT, the redo first finds out whether the
        server had committed (`failover.commit_took_effect`), and then reports what that COMMIT wrote.
        Raises DatabaseGone when the database stays away for `database.retry_seconds`."""
        deadlocks = 0
        lost_commit = self._committing = None
        while True:
            try:
                await self._transaction_once(ready, etags, lost_commit)
                if self.failover is not None:
                    self.failover.progressed()
                return
            except pymysql.err.MySQLError as e:
                lost_commit, self._committing = self._committing or lost_commit, None
                if self.failover is not None and dberrors.connection_lost(e):
                    shared = self._reads is self.conn
                    self.conn = await self.failover.replace(self.conn, e)
                    if shared:
                        self._reads = self.conn
                    continue
                if isinstance(e, pymysql.err.OperationalError) and e.args and e.args[0] in magento.RETRIABLE \
                        and deadlocks < 2:
                    deadlocks += 1
                    await self._rollback()
                    continue
                raise

    async def _transaction_once(self, ready: list[tuple[Outcome, Product]], etags,
                                lost_commit: tuple[list[ProductState], list[tuple[Outcome, ProductPlan]]] | None
                                ) -> None:
        if not ready:
            return
        links = sorted(p.link_id for _, p in ready)
        timed = self.counters.timed
        if self.options.dry_run:
            present = set(links)
        else:
            with timed("lock"):
                present = await magento.lock_products(self.conn, self.schema, links)
        with timed("read"):
            states = await magento.read_states(self.conn, self.schema, sorted(present))
        plans: list[tuple[Outcome, ProductPlan]] = []
        before: list[ProductState] = []
        with timed("plan"):
            for out, product in ready:
                if product.link_id not in present:  # deleted between the look-up and the lock
                    continue
                item_etags = {im.path: etags[im.path] for im in out.item.images}
                plan = plan_product(out.item, states[product.link_id], item_etags, self.options.mode,
                                    self.options.allow_empty, object_key=self.storage.key, views=self.schema.views)
                plans.append((out, plan))
                before.append(states[product.link_id])
        if lost_commit is not None:
            then, lost_plans = lost_commit
            took = commit_took_effect(then, [states.get(s.link_id) for s in then], [p for _, p in plans])
            if took:  # the server committed before the connection dropped: report what it wrote
                log.warning("the COMMIT in flight when the connection dropped had taken effect; nothing to redo")
                await self.conn.rollback()
                if self.journal is not None and self._committing_tx is not None:
                    self.journal.committed(self._committing_tx)  # the server had committed it
                plans, before = lost_plans, then
                await self._after_commit(ready, present, plans, before)
                return
            if took is None:
                log.warning("cannot tell whether the COMMIT in flight when the connection dropped took effect "
                            "(the products changed meanwhile): writing what is left to do")
        products = {p.link_id: (out.item.sku, p.entity_id) for out, p in ready if p.link_id in present}
        # The journal reads back only the products this batch writes: one without operations changes no
        # row, and a batch that writes nothing (a no-change re-sync in replace mode) reads nothing back.
        changing = {state.link_id: products[state.link_id]
                    for (_, plan), state in zip(plans, before, strict=True) if plan.ops}
        if self.options.dry_run and self.options.mode == "replace":
            self._note_deletions(plans, before)
        if self.options.dry_run:
            if self.journal is not None:
                await self._journal_dry_run(products, [op for _, plan in plans for op in plan.ops])
            await self.conn.rollback()
        else:
            with timed("write"):
                async with self.conn.cursor() as cur:
                    rows = await self._rows_before(cur, changing) if self.journal is not None and changing else None
                    writer = Writer(cur, self.schema)
                    await writer.apply(op for _, plan in plans for op in plan.ops)
                    self.counters.statements += writer.statements
                    if rows is not None:
                        await self._journal_written(cur, changing, rows)
                    done = [replace(out, stats=plan.stats, changed=plan.writes) for out, plan in plans]
                    if self.before_commit:
                        await self.before_commit(cur, done)
            tx, self._open_tx = self._open_tx, None  # a failed COMMIT's outcome is unknown: no rollback mark
            self._committing, self._committing_tx = (before, plans), tx
            with timed("commit"):
                await self.conn.commit()
            self._committing = None
            if self.journal is not None and tx is not None:
                self.journal.committed(tx)
        await self._after_commit(ready, present, plans, before)

    async def _after_commit(self, ready: list[tuple[Outcome, Product]], present: set[int],
                            plans: list[tuple[Outcome, ProductPlan]], before: list[ProductState]) -> None:
        """The committed batch's outcomes, then its stale resized copies purged."""
        for out, product in ready:
            if product.link_id not in present:
                out.failure, out.product_id = Failure.of(NOT_FOUND), None
        for out, plan in plans:  # a dry run reports the products that would change, as the real run does
            out.stats, out.changed = plan.stats, plan.writes
        assert self.purger is not None
        with self.counters.timed("purge"):
            await self.purger.after_commit([(out.warnings, state, plan.ops)
                                            for (out, plan), state in zip(plans, before, strict=True)])
        self.counters.cache_purged, self.counters.stale_images = self.purger.purged, self.purger.stale

    async def _rows_before(self, cur, products: dict[int, tuple[str, int]]) -> tuple[Snapshot, set[int]]:
        """The rows the batch may write, locked, before it writes (the journal's "before")."""
        await magento.use_utc(cur)
        return await magento.snapshot(cur, self.schema, sorted(products))

    async def _journal_written(self, cur, products: dict[int, tuple[str, int]],
                               rows: tuple[Snapshot, set[int]]) -> None:
        """Read the rows back after the writes; journal (and fsync) the differences before COMMIT."""
        assert self.journal is not None
        link = self.schema.link
        after, _ = await magento.snapshot(cur, self.schema, sorted(products), rows[1])
        self._open_tx = self.journal.transaction(journal.batch_changes(rows[0], after, link, products))

    async def _journal_dry_run(self, products: dict[int, tuple[str, int]], ops: list) -> None:
        """A dry run's journal: the lines the run would write, computed from the rows it would change."""
        assert self.journal is not None
        link = self.schema.link
        async with self.conn.cursor() as cur:
            await magento.use_utc(cur)
            current, _ = await magento.snapshot(cur, self.schema, sorted(products), lock=False)
        after = rowsim.simulate(current, ops, link, self.schema.attribute_ids)
        self.journal.transaction(rowsim.unknown_ids(journal.batch_changes(current, after, link, products)))

    def _note_deletions(self, plans: list[tuple[Outcome, ProductPlan]], states: list[ProductState]) -> None:
        """Keep the first SKUs a replace-mode dry run would take images from, with their paths."""
        for (out, plan), state in zip(plans, states, strict=True):
            if len(self.counters.would_delete) >= WOULD_DELETE_SHOWN:
                return
            paths = {entry.value_id: entry.value for entry in state.entries}
            lost = [paths[op.value_id] for op in plan.ops if isinstance(op, RemoveEntry) and op.value_id in paths]
            if lost:
                self.counters.would_delete.append((out.item.sku, lost))

    async def _rollback(self) -> None:
        with contextlib.suppress(pymysql.err.MySQLError):
            await self.conn.rollback()
        if self.journal is not None and self._open_tx is not None:
            self.journal.rolled_back(self._open_tx)
        self._open_tx = None



def open_storage(cfg: StorageConfig, concurrency: int = 32) -> Any:
    """The storage adapter `storage.backend` names, not yet entered (an async context manager that is an
    `ImageStore`): the one place the backend is chosen."""
    if cfg.backend == "filesystem":
        from nacento_sync.filestore import FileStorage

        return FileStorage(cfg, concurrency)
    from nacento_sync.storage import Storage  # aioboto3 is slow to import: only when the bucket is used

    return Storage(cfg, concurrency)


@contextlib.asynccontextmanager
async def open_adapters(cfg: Config) -> AsyncIterator[tuple[Any, Schema, ImageStore]]:
    """Connect to the database and the storage (bucket or `storage.root`) and check both before any write.

    Raises DatabaseAccessError / StorageAccessError (exit 3) and SchemaError (exit 2).
    """
    conn = await magento.connect(cfg.database)
    try:
        schema = await magento.detect_schema(conn, cfg.database.table_prefix)
        if not schema.has_meta:
            raise magento.SchemaError(
                f"table {cfg.database.table_prefix}{magento.META_TABLE} is missing: run "
                "`nacento-sync schema install` first")
        if cfg.storage is None:
            raise magento.SchemaError("storage is not configured (storage.bucket, or storage.backend: filesystem "
                                      "with storage.root)")
        async with open_storage(cfg.storage, cfg.sync.concurrency) as storage:
            await storage.check_access()
            yield conn, schema, storage
    finally:
        conn.close()


async def run_sync(
    cfg: Config,
    records: Iterable[Item | Rejection],
    options: Options,
    builder: ReportBuilder,
    *,
    handle_signals: bool = False,
    on_progress: Callable[[int], None] = lambda _n: None,
    journal_file: journal.JournalFile | None = None,
    request_id: str = "",
) -> tuple[signal.Signals | None, Counters]:
    """Sync every record of a feed. Returns the signal that stopped the run (if any) and the counters.
    With `journal_file`, every written row goes to it (its header first, once the schema is known)."""
    async with open_adapters(cfg) as (conn, schema, storage):
        failover = Reconnector(cfg.database) if cfg.database.retry_seconds > 0 else None
        if failover is not None:
            await failover.adopt(conn)
            lookup_conn = await failover.open()
        else:
            lookup_conn = await magento.connect(cfg.database)
        engine: Engine | None = None
        try:
            if journal_file is not None:
                from nacento_sync import __version__

                try:
                    journal_file.header(request_id=request_id, mode=options.mode, dry_run=options.dry_run,
                                        database=schema.database, table_prefix=schema.prefix,
                                        link_field=schema.link, version=__version__)
                except OSError as e:
                    raise journal.JournalFileError(journal_file.path, f"cannot write: {e.strerror or e}") from None
            engine = Engine(conn, schema, storage, options, lookup_conn=lookup_conn, failover=failover,
                            journal=journal_file)
            pipeline = Pipeline(engine, builder, on_progress)
            received: list[signal.Signals] = []
            if handle_signals:
                _install_signals(engine, received)
            try:
                await pipeline.run(records)
            except asyncio.CancelledError:
                if len(received) < 2:  # not our second signal: someone else's cancellation
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                log.warning("stopped at once by a second %s: the open transaction is rolled back", received[1].name)
            engine.counters.s3_requests = dict(storage.requests)
            if failover is not None:
                engine.counters.reconnects = failover.reconnects
                engine.counters.seconds_down = round(failover.seconds_down, 3)
            return (received[0] if received else None), engine.counters
        finally:
            lookup_conn.close()
            if engine is not None:  # the connections failover opened in place of lost ones
                engine.conn.close()
                engine._reads.close()


def _install_signals(engine: Engine, received: list) -> None:
    """First SIGINT/SIGTERM: finish the current batch, then stop. Second: cancel now (the open
    transaction is rolled back by the server, so the database stays consistent); `run_sync` then
    returns normally with the first signal, so the committed batches are still reported."""

    def stop(sig: signal.Signals) -> None:
        if len(received) == 1:
            log.warning("%s: stopping after the current batch (send it again to stop at once)", sig.name)
        engine.stop_requested = True

    signals.install(stop, received)

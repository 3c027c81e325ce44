"""The sync pipeline: an export streamed through the engine, one batch of distinct SKUs at a time.

The engine syncs one batch (`Engine.lookup`, then `Engine.write`: its transaction); this module feeds it:
records are read in a thread, rejected records and repeated SKUs go to the report, and while one batch is
written the next is read and looked up. The outcomes go to the report and the progress callback.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import time
from array import array
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nacento_sync.charset import fit_item
from nacento_sync.codes import Code
from nacento_sync.models import Item, Rejection, sku_key
from nacento_sync.report import ReportBuilder
from nacento_sync.results import Outcome

if TYPE_CHECKING:
    from nacento_sync.engine import Engine


class SeenSet:
    """Membership of strings in 8 bytes each: 64-bit hashes kept in a sorted array plus a small set.

    A set of a million SKUs would cost ~100 MB; this costs ~8 MB (a collision, ~1e-7 for a million
    keys, would only add a spurious duplicate_sku warning)."""

    def __init__(self, buffer: int = 65_536) -> None:
        self._sorted = array("q")
        self._recent: set[int] = set()
        self._buffer = buffer

    @staticmethod
    def _hash(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)

    def add(self, key: str) -> None:
        self._recent.add(self._hash(key))
        if len(self._recent) >= self._buffer:
            self._sorted = array("q", sorted(itertools.chain(self._sorted, self._recent)))
            self._recent.clear()

    def __contains__(self, key: str) -> bool:
        h = self._hash(key)
        if h in self._recent:
            return True
        i = bisect.bisect_left(self._sorted, h)
        return i < len(self._sorted) and self._sorted[i] == h


@runtime_checkable
class Measured(Protocol):
    """An export that knows its size and how much of it was read (`feed.Feed`; None: stdin)."""

    def total_bytes(self) -> int | None: ...

    def bytes_read(self) -> int: ...


def expected_scale(records: object) -> float:
    """How many times what was read so far the whole export is: its size over the bytes read (1 when unknown).
    Bytes read run a read buffer ahead of the records, so early batches slightly underestimate."""
    if not isinstance(records, Measured):
        return 1.0
    total, read = records.total_bytes(), records.bytes_read()
    return total / read if total and read > 0 else 1.0


class Pipeline:
    """Streams records through an engine; at most three batches are in memory at once."""

    def __init__(self, engine: Engine, report: ReportBuilder | None = None,
                 on_progress: Callable[[int], None] = lambda _n: None) -> None:
        self.engine = engine
        self.report = report
        self.on_progress = on_progress
        self._seen = SeenSet()  # sku keys of earlier batches

    async def run(self, records: Iterable[Item | Rejection]) -> None:
        """Consume the feed in batches of distinct SKUs, as a two-stage pipeline: while one batch is
        written, the next is read, validated and looked up (products, ETags). Bounded: at most three
        batches are in memory. Stops after the batch being written when asked."""
        looked: asyncio.Queue = asyncio.Queue(maxsize=1)

        async def lookups() -> None:
            try:
                async for items, early in self._batches(records):
                    if self.engine.stop_requested:
                        break
                    if self.engine.etags is not None:  # a large export lists from its first batch
                        self.engine.etags.expect(expected_scale(records))
                    await looked.put(await self.engine.lookup(items, early))
            finally:
                await looked.put(None)

        producer = asyncio.ensure_future(lookups())
        try:
            while (batch := await looked.get()) is not None:
                if not self.engine.stop_requested:
                    self._reported(await self.engine.write(batch))
            await producer
        finally:
            producer.cancel()

    async def _batches(self, records: Iterable[Item | Rejection]) -> AsyncIterator[tuple[list[Item], dict]]:
        """Batches of distinct SKUs (later item wins), read in a thread so a slow stdin never blocks
        the batch being written."""
        it = iter(records)
        batch: dict[str, Item] = {}
        early: dict[str, list[str]] = {}
        timed, add = self.engine.counters.timed, self.engine.counters.add
        while True:
            with timed("feed"):
                chunk = await asyncio.to_thread(lambda: list(itertools.islice(it, self.engine.options.batch_size)))
            if not chunk:
                break
            started = time.perf_counter()
            for record in chunk:
                rec = record if isinstance(record, Rejection) else fit_item(record, self.engine.schema.narrow)
                if isinstance(rec, Rejection):
                    if self.report:
                        self.report.reject(rec)
                    continue
                key = sku_key(rec.sku)
                if key in batch:
                    early.setdefault(key, []).append(Code.DUPLICATE_SKU.notice(
                        f"{rec.sku!r} at {rec.source} replaces the item at {batch[key].source}"))
                    del batch[key]
                elif key in self._seen:
                    early.setdefault(key, []).append(Code.DUPLICATE_SKU.notice(
                        f"{rec.sku!r} at {rec.source} was listed earlier too; applied after it"))
                    if self.report:
                        self.report.repeated(rec.sku)
                self._seen.add(key)
                batch[key] = rec
                if len(batch) >= self.engine.options.batch_size:
                    add("feed", time.perf_counter() - started)  # the consumer's time is not the feed's
                    yield list(batch.values()), early
                    started = time.perf_counter()
                    batch, early = {}, {}
            add("feed", time.perf_counter() - started)
        if batch:
            yield list(batch.values()), early

    def _reported(self, outcomes: list[Outcome]) -> None:
        if self.report is not None:
            for out in outcomes:
                self.report.add(out.item.sku, product_id=out.product_id, stats=out.stats, error=out.error,
                                warnings=out.warnings, changed=out.changed)
            self.report.flush()
        self.on_progress(len(outcomes))

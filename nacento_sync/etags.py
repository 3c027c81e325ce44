"""ETag discovery: HEAD each image, or LIST the dispersion folders it lives in, whichever costs less.

A LIST request returns up to 1,000 keys with their ETags and costs about 12.5 HEADs (their price
ratio on S3 and R2). Per first-level folder (`…/media/catalog/product/m/`) the finder compares what
the run has needed there so far with what listing it (or its second-level folders, `…/m/y/`) would
cost, estimated from the store's gallery; the first listing is then reused for the rest of the run.
When the export's size is known, the demand so far is extrapolated to the whole export (`expect`): a
full-catalog sync lists from its first batch instead of HEADing until the demand has built up.
Resized copies (`…/product/cache/`) are never listed: canonical paths never start with `cache/`.

`choose` is the pure decision; `EtagFinder` keeps the per-run state and the bounded listing cache.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from nacento_sync.results import EtagResult, StorageFailure

if TYPE_CHECKING:  # the adapter's interface: only EtagFinder uses it, and the cost function never
    from nacento_sync.results import ImageStore

Strategy = Literal["auto", "head", "list"]
#: What one LIST request costs, in HEAD requests.
LIST_COST = 12.5
PAGE = 1000


def folders(path: str) -> tuple[str | None, str | None]:
    """First- and second-level dispersion folders of a canonical path: `/m/y/a.jpg` → (`m`, `m/y`)."""
    parts = path.strip("/").split("/")
    first = parts[0] if len(parts) > 1 else None
    second = f"{parts[0]}/{parts[1]}" if len(parts) > 2 else None
    return first, second


def pages(keys: int) -> int:
    return max(1, math.ceil(keys / PAGE))


@dataclass
class Decision:
    lists: list[str] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)


def choose(
    pending: Iterable[str],
    strategy: Strategy,
    demand: Mapping[str, int],
    sizes: Mapping[str, int],
    never_list: set[str] = frozenset(),  # type: ignore[assignment]
) -> Decision:
    """Which folders to list and which paths to HEAD, for paths not answered yet.

    `demand[folder]`: distinct keys the run has needed in that folder so far (these included);
    `sizes[folder]`: the folder's estimated number of objects (e.g. from the gallery table);
    `never_list`: folders whose listing was already made once (and evicted) or must not be made.
    """
    out = Decision()
    by_first: dict[str | None, dict[str | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    for p in pending:
        first, second = folders(p)
        by_first[first][second].append(p)
    for first, seconds in by_first.items():
        if strategy == "head" or first is None:
            out.heads += [p for ps in seconds.values() for p in ps]
            continue
        first_pages = pages(max(sizes.get(first, 0), demand.get(first, 0)))
        second_pages = {s: pages(max(sizes.get(s, 0), demand.get(s, 0))) for s in seconds if s is not None}
        if strategy == "list":
            # List whichever level needs fewer requests for the folders needed.
            use_first = first_pages <= sum(second_pages.values()) or None in seconds
        else:
            use_first = LIST_COST * first_pages <= demand.get(first, 0)
        if use_first and first not in never_list:
            out.lists.append(first)
            continue
        for second, ps in seconds.items():
            if second is None:
                continue
            worth = strategy == "list" or LIST_COST * second_pages.get(second, 1) <= demand.get(second, 0)
            if worth and second not in never_list:
                out.lists.append(second)
            else:
                out.heads += ps
    return out


class _Scaled(Mapping[str, int]):
    """The demand so far, extrapolated to the whole run: each folder's count times `scale`."""

    def __init__(self, demand: Mapping[str, int], scale: float) -> None:
        self._demand, self._scale = demand, scale

    def __getitem__(self, folder: str) -> int:
        if folder not in self._demand:  # (a defaultdict would grow on a look-up)
            raise KeyError(folder)
        return int(self._demand[folder] * self._scale)

    def __iter__(self):
        return iter(self._demand)

    def __len__(self) -> int:
        return len(self._demand)


class ListingCache:
    """Folder listings (key suffix → ETag), least recently used evicted beyond `max_keys` keys."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.size = 0
        self._folders: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.evicted: set[str] = set()

    def put(self, folder: str, entries: dict[str, str]) -> None:
        self._folders[folder] = entries
        self.size += len(entries)
        while self.size > self.max_keys and len(self._folders) > 1:
            old, gone = self._folders.popitem(last=False)
            self.size -= len(gone)
            self.evicted.add(old)

    def has(self, folder: str) -> bool:
        return folder in self._folders

    def lookup(self, path: str) -> tuple[bool, str | None]:
        """(answered, etag): answered when a listing covers the path; etag None = missing object."""
        first, second = folders(path)
        rel = path.strip("/")
        for folder in (first, second):
            if folder is not None and folder in self._folders:
                self._folders.move_to_end(folder)
                return True, self._folders[folder].get(rel[len(folder) + 1 :])
        return False, None


class EtagFinder:
    """Per-run ETag discovery with the chosen strategy; safe to call from overlapping batches."""

    def __init__(
        self,
        storage: ImageStore,
        strategy: Strategy = "auto",
        *,
        max_cached_keys: int = 500_000,
        folder_sizes: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
    ) -> None:
        self.storage = storage
        # A storage that cannot list cheaply (files: a listing reads every file) is always asked per image.
        self.strategy: Strategy = strategy if getattr(storage, "can_list", True) else "head"
        self.cache = ListingCache(max_cached_keys)
        self.demand: dict[str, int] = defaultdict(int)
        self._seen: set[str] = set()  # paths counted in `demand` (bounded by the run's distinct images)
        self._folder_sizes = folder_sizes
        self._sizes: Mapping[str, int] | None = None
        self._inflight: dict[str, asyncio.Task] = {}
        #: How many times the images seen so far the whole run is expected to need (1: unknown).
        self.scale = 1.0

    def expect(self, scale: float) -> None:
        """Tell the finder the whole run should need about `scale` times the images it has seen so far (the
        export's size over the bytes read): demand is extrapolated by it, so a large export lists folders
        its later batches will need anyway without HEADing its first batches one image at a time. An
        export that turns out sparser than its start costs a few LISTs more, never a wrong ETag."""
        self.scale = max(1.0, scale)

    async def _sizes_estimate(self) -> Mapping[str, int]:
        if self._sizes is None:
            self._sizes = await self._folder_sizes() if self._folder_sizes else {}
        return self._sizes

    async def etags(self, paths: Iterable[str]) -> dict[str, EtagResult]:
        unique = list(dict.fromkeys(paths))
        if self.strategy == "head":  # nothing to weigh: no demand kept, no listing
            return await self.storage.head_etags(unique)
        result: dict[str, EtagResult] = {}
        pending = []
        for p in unique:
            if p not in self._seen:
                self._seen.add(p)
                for folder in folders(p):
                    if folder is not None:
                        self.demand[folder] += 1
            answered, etag = self.cache.lookup(p)
            if answered:
                result[p] = etag
            else:
                pending.append(p)
        if not pending:
            return result
        sizes: Mapping[str, int] = {}
        if self.strategy != "head" and self._might_list(pending):
            sizes = await self._sizes_estimate()
        decision = choose(pending, self.strategy, _Scaled(self.demand, self.scale), sizes, self.cache.evicted)
        failed: dict[str, StorageFailure] = {}
        if decision.lists:
            outcomes = await asyncio.gather(*(self._list(f) for f in decision.lists))
            failed = {f: o for f, o in zip(decision.lists, outcomes, strict=True) if o is not None}
        heads = list(decision.heads)
        asked = set(decision.heads)
        for p in pending:
            if p in asked:
                continue
            answered, etag = self.cache.lookup(p)
            first, second = folders(p)
            failure = failed.get(first or "") or failed.get(second or "")
            if failure is not None:
                result[p] = StorageFailure(self.storage.key(p), failure.reason)
            elif answered:
                result[p] = etag
            else:  # listed, then evicted by a concurrent batch: ask directly
                heads.append(p)
        if heads:
            result.update(await self.storage.head_etags(heads))
        return result

    def _might_list(self, pending: list[str]) -> bool:
        """Only pay for the size estimate when some folder's demand could justify a listing."""
        if self.strategy == "list":
            return True
        return any(self.demand[f] * self.scale >= LIST_COST for p in pending for f in folders(p) if f is not None)

    async def _list(self, folder: str) -> StorageFailure | None:
        task = self._inflight.get(folder)
        if task is None:
            task = self._inflight[folder] = asyncio.ensure_future(self.storage.list_etags(folder + "/"))
        try:
            entries = await task
        finally:
            self._inflight.pop(folder, None)
        if isinstance(entries, StorageFailure):
            return entries
        if not self.cache.has(folder):
            self.cache.put(folder, entries)
        return None

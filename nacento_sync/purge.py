"""Stale resized copies: which images a batch made stale, and the cache keys to delete for them.

Magento serves resized copies from `catalog/product/cache/<hash>/m/y/a.jpg` and never notices that the
original's bytes changed under the same name. After a batch commits, the images whose object changed
(an ETag that differs from the one remembered, in the same form) and the images whose gallery row the
run deleted (when no gallery row of any product still has the path) have stale copies. Pure functions
here; the engine asks the bucket for the `<hash>` folders once per run and deletes the keys.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nacento_sync.codes import Code
from nacento_sync.paths import object_key, stored_to_canonical
from nacento_sync.plan import InsertEntry, Op, ProductState, RemoveEntry, UpsertMeta

#: S3 DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000

_PLAIN = re.compile(r"^[0-9a-fA-F]{32}$")
_MULTIPART = re.compile(r"^[0-9a-fA-F]{32}-\d+$")


def _form(etag: str) -> str:
    if _PLAIN.match(etag):
        return "plain"
    if _MULTIPART.match(etag):
        return "multipart"
    return "other"


def bytes_changed(old: str | None, new: str) -> bool:
    """Did the object's bytes change? Unknown before (first sight) is no; a change of form only
    (a multipart `<hex>-<n>` against a plain MD5) cannot tell, so it is no too."""
    if old is None or old == new:
        return False
    return _form(old) == _form(new)


@dataclass(frozen=True)
class Stale:
    """Canonical paths a product's committed plan made stale."""

    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted)


_NOTHING_STALE = Stale()


def stale_paths(state: ProductState, ops: Sequence[Op]) -> Stale:
    """The images of one product whose resized copies a plan (once committed) leaves stale."""
    if not ops:  # most products of a re-sync: nothing written, nothing stale (and no map to build)
        return _NOTHING_STALE
    path_of = {e.value_id: stored_to_canonical(e.value) for e in state.entries}
    row_path: dict[int, str] = {}  # record_id → path
    old_etag: dict[int, str | None] = {}  # record_id → remembered ETag
    old_by_path: dict[str, str | None] = {}
    for e in state.entries:
        for row in e.rows:
            row_path[row.record_id] = path_of[e.value_id]
            old_etag[row.record_id] = row.etag if row.has_meta else None
            if row.has_meta and row.etag:
                old_by_path.setdefault(path_of[e.value_id], row.etag)
    changed: dict[str, None] = {}
    deleted: dict[str, None] = {}
    for op in ops:
        if isinstance(op, UpsertMeta):
            if op.record_id in row_path and bytes_changed(old_etag.get(op.record_id), op.etag):
                changed[row_path[op.record_id]] = None
        elif isinstance(op, InsertEntry):  # a shared or legacy entry replaced by the product's own
            if bytes_changed(old_by_path.get(op.value), op.etag):
                changed[op.value] = None
        elif isinstance(op, RemoveEntry) and op.value_id in path_of:
            deleted[path_of[op.value_id]] = None
    inserted = {op.value for op in ops if isinstance(op, InsertEntry)}
    return Stale(tuple(changed), tuple(p for p in deleted if p not in inserted and p not in changed))


def _digest(path: str) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "big")


@dataclass
class PathCounts:
    """How many gallery rows (any product, any media type) hold each path, as 8-byte hashes.

    Read once per run; kept current with the rows the run inserts and deletes, so a deleted row's copies
    are purged only when no row of any product still has its path."""

    counts: Counter[int] = field(default_factory=Counter)

    @classmethod
    def of(cls, values: Iterable[str]) -> PathCounts:
        return cls(Counter(_digest(stored_to_canonical(v)) for v in values))

    def add(self, path: str, n: int = 1) -> None:
        self.counts[_digest(path)] += n

    def held(self, path: str) -> bool:
        return self.counts[_digest(path)] > 0


def cache_keys(paths: Iterable[str], hashes: Sequence[str], prefix: str = "") -> list[str]:
    """`[<prefix>/]media/catalog/product/cache/<hash>/m/y/a.jpg` for every path and `<hash>` folder."""
    return [object_key(f"/cache/{h}{path}", prefix) for path in paths for h in hashes]


def chunks(keys: Sequence[str], size: int = DELETE_BATCH) -> list[Sequence[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


class Purger:
    """Deletes the stale resized copies of each committed batch (`--purge-cache`), or only counts them.

    The shell around the functions above: it asks the bucket for the `<hash>` folders once per run and
    the database for the gallery's paths once per run (`load_values`, only when a row was deleted), and
    never raises: a failed purge becomes a `cache_purge_failed` warning on the SKUs concerned."""

    def __init__(self, storage, load_values, *, enabled: bool, dry_run: bool) -> None:
        self.storage = storage
        self.load_values = load_values
        self.enabled = enabled
        self.dry_run = dry_run
        #: Keys deleted (DeleteObjects answers less their errors), or that a dry run would send.
        self.purged = 0
        #: Images whose resized copies the run left stale (changed bytes, or deleted).
        self.stale = 0
        self._hashes: list[str] | None = None
        self._counts: PathCounts | None = None

    async def after_commit(self, done: Sequence[tuple[list[str], ProductState, Sequence[Op]]]) -> None:
        """`done`: per product written in the batch, its warnings list (appended to), state before, ops."""
        stale = [(warnings, state, ops, stale_paths(state, ops)) for warnings, state, ops in done]
        self.stale += sum(len(s.changed) + len(s.deleted) for *_, s in stale)
        if not self.enabled or not any(s for *_, s in stale):
            return
        fresh = self._counts is None
        try:
            if self._hashes is None:
                self._hashes = await self.storage.cache_folders()
            if any(s.deleted for *_, s in stale) and self._counts is None:
                self._counts = PathCounts.of(await self.load_values())
        except Exception as exc:  # a purge must never undo or stop the sync
            for warnings, *_, s in stale:
                if s:
                    warnings.append(Code.CACHE_PURGE_FAILED.notice(f"{type(exc).__name__}: {exc}"))
            return
        if self._counts is not None and (self.dry_run or not fresh):
            for _, state, ops, _s in stale:  # the rows this batch inserted and deleted
                _count_rows(self._counts, state, ops)
        for warnings, _, _, s in stale:
            paths = [*s.changed, *(p for p in s.deleted if self._counts is None or not self._counts.held(p))]
            await self._purge(cache_keys(paths, self._hashes, self.storage.cfg.prefix), warnings)

    async def _purge(self, keys: list[str], warnings: list[str]) -> None:
        if self.dry_run:
            self.purged += len(keys)
            return
        for chunk in chunks(keys):
            try:
                deleted, errors = await self.storage.delete_keys(chunk)
            except Exception as exc:
                warnings.append(Code.CACHE_PURGE_FAILED.notice(f"{len(chunk)} resized copies not deleted: "
                                f"{type(exc).__name__}: {exc}"))
                continue
            self.purged += deleted
            if errors:
                warnings.append(Code.CACHE_PURGE_FAILED.notice(
                    f"{len(errors)} resized copies not deleted, e.g. {errors[0]}"))


def _count_rows(counts: PathCounts, state: ProductState, ops: Sequence[Op]) -> None:
    path_of = {e.value_id: stored_to_canonical(e.value) for e in state.entries}
    for op in ops:
        if isinstance(op, InsertEntry):
            counts.add(op.value)
        elif isinstance(op, RemoveEntry) and op.delete_gallery_row and op.value_id in path_of:
            counts.add(path_of[op.value_id], -1)

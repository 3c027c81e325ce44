"""The hash cache: a file's MD5 remembered under its stat fingerprint, so a no-change re-sync only `stat`s.

One SQLite file per `storage.root` in `$XDG_CACHE_HOME/nacento-sync/` (default `~/.cache/nacento-sync/`).
An entry is used only when the file's size, mtime, ctime and inode all still match (an in-place rewrite
that restores the mtime still changes the ctime). Files changed in the last `SETTLE_NS` are not cached:
a write within the same timestamp tick after hashing would leave the fingerprint unchanged.

The cache is an optimisation and never fails a sync: a cache that cannot be opened is replaced by none
(one warning), a locked or broken one answers misses and drops writes. Several workers on one host share
the file (WAL, short busy timeouts). Every SQLite call runs on one dedicated thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("nacento_sync")

#: A file whose mtime or ctime is this recent is not cached (2 s, in nanoseconds).
SETTLE_NS = 2_000_000_000
#: How long a statement waits for another process's write lock before giving up (seconds).
BUSY_TIMEOUT = 2.0
#: Paths per SELECT (well under SQLite's bound-variable limit).
_CHUNK = 500


class Fingerprint(NamedTuple):
    """What must not have changed for a remembered MD5 to still be the file's (a tuple: cheap to make and
    compare, once per file per run)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def settled(fp: Fingerprint, now_ns: int) -> bool:
    """May this fingerprint be cached? Not when the file changed within `SETTLE_NS` of `now_ns`. Pure."""
    return max(fp.mtime_ns, fp.ctime_ns) <= now_ns - SETTLE_NS


#: A cache entry: the fingerprint the MD5 was computed under (a plain tuple from the database), the MD5.
Entry = tuple[tuple[int, ...], str]


def cached_md5(entry: Entry | None, fp: Fingerprint) -> str | None:
    """The remembered MD5 if the entry's fingerprint is the file's current one, else None. Pure."""
    if entry is None or entry[0] != fp:
        return None
    return entry[1]


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/nacento-sync` (an unset or relative XDG_CACHE_HOME means `~/.cache`, as the spec says)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".cache"
    return root / "nacento-sync"


def cache_file(resolved_root: str, env: Mapping[str, str] | None = None) -> Path:
    """The cache file of one storage root: named from a hash of its resolved path."""
    digest = hashlib.sha256(os.fsencode(resolved_root)).hexdigest()[:20]
    return cache_dir(env) / f"hashes-{digest}.sqlite"


_SCHEMA = ("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
           "mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, md5 TEXT NOT NULL) "
           "WITHOUT ROWID")


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # another process switching it at once: fine
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


class HashCache:
    """The SQLite-backed cache of one root (or none: `HashCache.disabled()`), used from async code."""

    def __init__(self, path: Path | None, problem: str | None = None) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        #: Why the cache is not used (no place for it, or opening it failed).
        self.problem = problem

    @classmethod
    def for_root(cls, resolved_root: str) -> HashCache:
        """The cache of a root, or none when there is no place for it (no home directory)."""
        try:
            return cls(cache_file(resolved_root))
        except (RuntimeError, KeyError, OSError) as e:  # Path.home() without $HOME or a passwd entry
            return cls(None, f"no cache directory: set XDG_CACHE_HOME or HOME ({e})")

    async def open(self) -> None:
        """Open (and create) the cache; on failure run without it, with one warning."""
        if self.path is None:
            if self.problem:
                log.warning("hash cache unavailable (%s): every file is read and hashed this run", self.problem)
            return
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nacento-hashcache")
        try:
            self._conn = await self._run(_open, self.path)
        except (OSError, sqlite3.Error) as e:
            self.problem = f"{self.path}: {e}"
            log.warning("hash cache unavailable (%s): every file is read and hashed this run", self.problem)
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def _run(self, fn, *args):
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @property
    def active(self) -> bool:
        return self._conn is not None

    async def get(self, paths: Sequence[str]) -> dict[str, Entry]:
        """The entries of these paths (none for a path not cached); a locked or broken cache answers none."""
        if self._conn is None or not paths:
            return {}
        return await self._run(self._get, list(paths))

    def _get(self, paths: list[str]) -> dict[str, Entry]:
        assert self._conn is not None
        found: dict[str, Entry] = {}
        try:
            for i in range(0, len(paths), _CHUNK):
                chunk = paths[i : i + _CHUNK]
                rows = self._conn.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, md5 FROM hashes WHERE path IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall()
                found.update((row[0], (row[1:5], row[5])) for row in rows)
        except sqlite3.Error as e:
            log.debug("hash cache read skipped: %s", e)
        return found

    async def put(self, entries: Iterable[tuple[str, Fingerprint, str]]) -> None:
        """Remember these (path, fingerprint, MD5) in one transaction; dropped if the cache is locked."""
        rows = [(p, fp.size, fp.mtime_ns, fp.ctime_ns, fp.inode, md5) for p, fp, md5 in entries]
        if self._conn is None or not rows:
            return
        await self._run(self._put, rows)

    def _put(self, rows: list[tuple]) -> None:
        assert self._conn is not None
        try:  # autocommit mode (isolation_level=None): the transaction is explicit
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            log.debug("hash cache write of %d entries dropped: %s", len(rows), e)


def writable_problem(path: Path) -> str | None:
    """Why the cache file cannot be created or written, or None: for `doctor` (creates nothing but the file)."""
    try:
        conn = _open(path)
    except (OSError, sqlite3.Error) as e:
        return f"{path}: {e}"
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as e:
        return f"{path}: {e}"
    finally:
        conn.close()
    return None

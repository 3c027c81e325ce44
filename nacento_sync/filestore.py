"""The local-media adapter (`storage.backend: filesystem`): Magento's own `pub/media` on this host.

The same questions as the bucket adapter, answered from files: an image `/m/y/a.jpg` is the file
`<root>/catalog/product/m/y/a.jpg` and its "ETag" is the MD5 hex of its bytes (what S3 reports for a
single-part upload without SSE-KMS, so a store that moves to S3 later keeps most meta rows valid).
Hashing runs in a bounded thread pool, in chunks (memory bounded); the hash cache (`hashcache`) lets
a no-change re-sync `stat` each file instead of reading it.

Everything in the tree is data: `storage.root` is resolved once (a symlinked `pub/media` is fine), and
an image whose path resolves outside it (a symlink pointing elsewhere) is missing, with that reason.
Keys are the bucket's (`media/catalog/product/…`), so warnings and `--purge-cache` read the same.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nacento_sync.config import StorageConfig
from nacento_sync.errors import StorageAccessError
from nacento_sync.hashcache import Fingerprint, HashCache, cache_file, cached_md5, settled, writable_problem
from nacento_sync.models import Missing
from nacento_sync.paths import object_key
from nacento_sync.results import EtagResult, StorageFailure

#: Bytes read per call while hashing (one buffer per hashing thread).
READ_CHUNK = 1 << 20
#: Paths stat'ed per task of the pool.
_STAT_CHUNK = 256
#: Directories whose real path is remembered (dispersion folders: about 1,300 in a store), and for how long
#: (a long-running worker notices a folder replaced by a symlink within this many seconds).
_DIRS_KEPT = 100_000
_DIRS_SECONDS = 60.0
#: Keys are the bucket's: `media/` stands for `storage.root` (Magento's `pub/media`).
_MEDIA = "media/"
_OUTSIDE = "resolves outside storage.root"


@dataclass(frozen=True)
class _Found:
    """A regular file inside the root: where to read it and its fingerprint when stat'ed."""

    file: str
    fingerprint: Fingerprint


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


class FileStorage:
    """Images as files under `storage.root`; same interface as `storage.Storage` (`results.ImageStore`)."""

    #: `EtagFinder` never lists a folder here: a listing would have to read every file in it.
    can_list = False

    def __init__(self, cfg: StorageConfig, concurrency: int = 32, *, cache: HashCache | None = None) -> None:
        assert cfg.root is not None, "StorageConfig requires root for backend filesystem"
        self.cfg = cfg
        self.concurrency = concurrency
        #: STAT: files looked up; READ: files read and hashed; DELETE: resized copies unlinked.
        self.requests = {"STAT": 0, "READ": 0}
        #: Resolved once: a symlinked `pub/media` (as deployment tools make) is followed here, and only here.
        self.root = os.path.realpath(cfg.root)
        self._inside = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._product = os.path.join(self.root, "catalog", "product")
        self.cache = cache if cache is not None else HashCache.for_root(self.root)
        self._pool: ThreadPoolExecutor | None = None
        self._dirs: dict[str, str] = {self.root: self.root}  # directory under the root → its real path
        self._dirs_since = time.monotonic()

    def key(self, path: str) -> str:
        return object_key(path)

    async def __aenter__(self) -> FileStorage:
        self._pool = ThreadPoolExecutor(min(self.concurrency, 32), thread_name_prefix="nacento-files")
        await self.cache.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.cache.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------ checks (also for `doctor`)

    async def check_access(self) -> None:
        """`storage.root` exists, is a directory we may list, and so is its `catalog/product` if present.
        Raises StorageAccessError (exit code 3) with the reason."""
        problem = await self._run(self.access_problem)
        if problem:
            raise StorageAccessError(self.cfg.explain(problem))

    def access_problem(self) -> str | None:
        """Why `storage.root` cannot be used, or None (blocking: a few system calls)."""
        shown = f"storage.root {self.cfg.root}"
        if not os.path.exists(self.root):
            return f"{shown} does not exist"
        for directory in (self.root, self._product):
            if directory == self._product and not os.path.lexists(directory):
                break  # a store with no product image yet
            name = shown if directory == self.root else f"{shown}: catalog/product"
            if not os.path.isdir(directory):
                return f"{name} is not a directory"
            if not os.access(directory, os.R_OK | os.X_OK):
                return f"{name} is not readable (permission denied for this user)"
            try:
                with os.scandir(directory) as entries:
                    next(entries, None)
            except OSError as e:
                return f"{name} cannot be listed: {_reason(e)}"
        return None

    def cache_problem(self) -> str | None:
        """Why the hash cache file cannot be created or written, or None (blocking). A sync runs without
        the cache then (one warning), every file read and hashed."""
        if self.cache.path is None:
            return self.cache.problem or "no hash cache"
        return writable_problem(self.cache.path)

    def cache_writable(self) -> bool:
        return self.cache_problem() is None

    # ------------------------------------------------------------------ ETags

    async def head_etags(self, paths: Iterable[str]) -> dict[str, EtagResult]:
        """The MD5 of each canonical image path's file: from the hash cache when the file's fingerprint
        is unchanged, else read and hashed in the pool. None for a missing file, `Missing` with a reason
        for a path that is not a regular file inside the root."""
        unique = list(dict.fromkeys(paths))
        if not unique:
            return {}
        remembered, *looks = await asyncio.gather(
            self.cache.get(unique),
            *(self._run(self._look_all, unique[i:i + _STAT_CHUNK]) for i in range(0, len(unique), _STAT_CHUNK)))
        self.requests["STAT"] += len(unique)
        result: dict[str, EtagResult] = {}
        to_hash: list[tuple[str, _Found]] = []
        for path, look in zip(unique, (x for chunk in looks for x in chunk), strict=True):
            if isinstance(look, _Found):
                md5 = cached_md5(remembered.get(path), look.fingerprint)
                if md5 is not None:
                    result[path] = md5
                else:
                    to_hash.append((path, look))
            else:
                result[path] = look
        if to_hash:
            hashed = await asyncio.gather(*(self._run(self._hash, path, found) for path, found in to_hash))
            self.requests["READ"] += len(to_hash)
            now = time.time_ns()
            fresh = []
            for (path, _), (answer, fingerprint) in zip(to_hash, hashed, strict=True):
                result[path] = answer
                if isinstance(answer, str) and fingerprint is not None and settled(fingerprint, now):
                    fresh.append((path, fingerprint, answer))
            await self.cache.put(fresh)
        return result

    def _look_all(self, paths: list[str]) -> list[_Found | EtagResult]:
        if len(self._dirs) > _DIRS_KEPT or time.monotonic() - self._dirs_since > _DIRS_SECONDS:
            self._dirs, self._dirs_since = {self.root: self.root}, time.monotonic()
        return [self._look(p) for p in paths]

    def _inside_root(self, real: str) -> bool:
        return real == self.root or real.startswith(self._inside)

    def _real_dir(self, directory: str) -> str:
        """The real path of a directory under the root: one `lstat` per directory a run meets (remembered;
        `os.path.realpath` would `lstat` every component of every path)."""
        real = self._dirs.get(directory)
        if real is None:
            parent, name = os.path.split(directory)
            if parent == directory or not directory.startswith(self._inside):
                return os.path.realpath(directory)
            try:
                is_link = stat.S_ISLNK(os.lstat(directory).st_mode)
            except OSError:
                is_link = True  # let realpath say where it leads
            real = os.path.realpath(directory) if is_link else os.path.join(self._real_dir(parent), name)
            self._dirs[directory] = real
        return real

    def _look(self, path: str) -> _Found | EtagResult:
        """One `lstat` for a plain file in a known directory (string operations: this runs per file)."""
        file = self._product + "/" + path.lstrip("/")
        try:
            st = os.lstat(file)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            return StorageFailure(self.key(path), _reason(e))
        parent, _, name = file.rpartition("/")
        real_parent = self._real_dir(parent)
        if not self._inside_root(real_parent):
            return Missing(f"its folder {_OUTSIDE}")
        target = file if real_parent == parent else real_parent + "/" + name
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(file)
            if not self._inside_root(target):
                return Missing(f"a symlink that {_OUTSIDE}")
            try:
                st = os.stat(target)
            except (FileNotFoundError, NotADirectoryError):
                return None  # a dangling symlink
            except OSError as e:
                return StorageFailure(self.key(path), _reason(e))
        if not stat.S_ISREG(st.st_mode):
            return Missing("not a regular file")
        return _Found(target, Fingerprint.of(st))

    def _hash(self, path: str, found: _Found) -> tuple[EtagResult, Fingerprint | None]:
        """The file's MD5, and its fingerprint if the file did not change while it was read."""
        try:  # O_NOFOLLOW: the path was resolved; O_NONBLOCK: a FIFO swapped in never blocks us
            fd = os.open(found.file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as e:
            reason = "changed while read" if e.errno == errno.ELOOP else _reason(e)
            return StorageFailure(self.key(path), reason), None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Missing("not a regular file"), None
            digest = hashlib.md5(usedforsecurity=False)
            while chunk := os.read(fd, READ_CHUNK):
                digest.update(chunk)
            after = os.fstat(fd)
        except OSError as e:
            return StorageFailure(self.key(path), _reason(e)), None
        finally:
            os.close(fd)
        fingerprint = Fingerprint.of(before)
        return digest.hexdigest(), (fingerprint if fingerprint == Fingerprint.of(after) else None)

    async def list_etags(self, folder: str) -> dict[str, str] | StorageFailure:
        """Every image file under dispersion folder `folder` (`m/` or `m/y/`): path below it → MD5.
        Correct but costly (it reads every file there): `can_list` keeps `EtagFinder` from asking."""
        base = os.path.join(self._product, folder.strip("/"))
        try:
            names = await self._run(self._walk, base)
        except OSError as e:
            return StorageFailure(self.key("/" + folder), f"LIST: {_reason(e)}")
        prefix = "/" + folder.strip("/") + "/"
        found = await self.head_etags(prefix + n for n in names)
        return {n: etag for n in names if isinstance(etag := found[prefix + n], str)}

    def _walk(self, base: str) -> list[str]:
        if not os.path.isdir(base):
            return []
        return [os.path.relpath(os.path.join(d, f), base) for d, _, files in os.walk(base) for f in files]

    # ------------------------------------------------------------------ --purge-cache

    async def cache_folders(self) -> list[str]:
        """The `<hash>` folders of resized copies under `<root>/catalog/product/cache/`."""
        return await self._run(self._cache_folders)

    def _cache_folders(self) -> list[str]:
        cache = os.path.join(self._product, "cache")
        if not os.path.isdir(cache) or not self._inside_root(os.path.realpath(cache)):
            return []
        with os.scandir(cache) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))

    async def delete_keys(self, keys: Sequence[str]) -> tuple[int, list[str]]:
        """Unlink the files of these keys (`media/catalog/product/cache/…`): how many are gone, and the
        errors. A file that did not exist counts as deleted, as S3 answers; nothing outside the root
        is ever unlinked."""
        self.requests["DELETE"] = self.requests.get("DELETE", 0) + len(keys)
        return await self._run(self._delete, list(keys))

    def _delete(self, keys: list[str]) -> tuple[int, list[str]]:
        deleted, errors = 0, []
        for key in keys:
            if not key.startswith(_MEDIA) or ".." in key.split("/"):
                errors.append(f"{key}: not a key under storage.root")
                continue
            file = os.path.join(self.root, key[len(_MEDIA):])
            real_parent = os.path.realpath(os.path.dirname(file))  # not remembered: unlinking is no look-up
            if not self._inside_root(real_parent):
                errors.append(f"{key}: {_OUTSIDE}")
                continue
            try:
                os.unlink(os.path.join(real_parent, os.path.basename(file)))  # a symlink itself, never its target
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError as e:
                errors.append(f"{key}: {_reason(e)}")
                continue
            deleted += 1
        return deleted, errors


def default_cache_path(cfg: StorageConfig) -> Path:
    """Where the hash cache of this configuration's root lives (for messages and `doctor`)."""
    assert cfg.root is not None
    return cache_file(os.path.realpath(cfg.root))

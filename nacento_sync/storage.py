"""The bucket adapter: one question, "what is the ETag of each of these images?", asked concurrently.

An ETag is an opaque version token (stored without quotes); a missing object answers None; any
other failure, after botocore's retries, answers a `StorageFailure` that fails the SKU. Every request is
bounded: `storage.connect_timeout` + `storage.read_timeout` per attempt, `ATTEMPTS` attempts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import aioboto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from nacento_sync.config import StorageConfig, mask
from nacento_sync.errors import StorageAccessError
from nacento_sync.paths import object_key
from nacento_sync.results import EtagResult, StorageFailure

#: botocore attempts per request, the first included ("standard" mode: throttling and 5xx are retried
#: with jittered exponential backoff).
ATTEMPTS = 3
#: botocore's standard backoff: before retry i (1-based), a random wait of up to min(2 ** (i - 1), 20) s.
_BACKOFF_BASE, _BACKOFF_CAP = 2, 20


def boto_config(cfg: StorageConfig, pool: int) -> BotoConfig:
    """The client's timeouts and retries: what `request_bound` computes with."""
    return BotoConfig(
        max_pool_connections=pool,
        retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},  # "max_attempts" would count retries
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        s3={"addressing_style": "path" if cfg.path_style else "auto"},
    )


def request_bound(connect_timeout: float, read_timeout: float, attempts: int = ATTEMPTS) -> float:
    """The longest one request can take against an endpoint that never answers: each attempt waits for
    the connection and then for the answer, and botocore's backoff sleeps between attempts. Pure."""
    backoff = sum(min(_BACKOFF_BASE ** i, _BACKOFF_CAP) for i in range(attempts - 1))
    return attempts * (connect_timeout + read_timeout) + backoff


def startup_bound(cfg: StorageConfig) -> float:
    """How long `check_access` may take at most (also enforced, in case DNS or the credential chain hangs)."""
    return request_bound(cfg.connect_timeout, cfg.read_timeout)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class Storage:
    """An S3-compatible bucket (AWS S3, Cloudflare R2, MinIO) laid out like Magento's remote storage."""

    def __init__(self, cfg: StorageConfig, concurrency: int = 32) -> None:
        self.cfg = cfg
        self.concurrency = concurrency
        self.requests = {"HEAD": 0, "LIST": 0}
        self._client: Any = None  # aiobotocore's S3 client, once entered
        self._ctx: Any = None
        self._sem = asyncio.Semaphore(concurrency)

    def key(self, path: str) -> str:
        return object_key(path, self.cfg.prefix)

    async def __aenter__(self) -> Storage:
        session = aioboto3.Session()
        boto_cfg = boto_config(self.cfg, self.concurrency)
        self._ctx = session.client(
            "s3",
            endpoint_url=self.cfg.endpoint or None,
            region_name=self.cfg.region,
            aws_access_key_id=self.cfg.access_key.get_secret_value() if self.cfg.access_key else None,
            aws_secret_access_key=self.cfg.secret_key.get_secret_value() if self.cfg.secret_key else None,
            config=boto_cfg,
        )
        self._client = await self._ctx.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._ctx is not None:
            await self._ctx.__aexit__(*exc)

    async def check_access(self) -> None:
        """One request before any write: the bucket exists and we may list it (needed for honest 404s).
        Takes at most `startup_bound(cfg)` seconds, however silent the endpoint."""
        cfg = self.cfg
        where = f"bucket {cfg.bucket!r}" + (f" at {cfg.endpoint}" if cfg.endpoint else "")
        limit = startup_bound(cfg)
        try:
            async with asyncio.timeout(limit):
                await self._client.head_bucket(Bucket=cfg.bucket)
        except ClientError as e:
            status = _status(e)
            if status == 404:
                raise self._error(f"{where} does not exist") from None
            if status == 403:
                raise self._error(
                    f"access to {where} denied: the credentials need s3:GetObject and s3:ListBucket"
                ) from None
            raise self._error(f"{where}: {_code(e) or status}") from None
        except TimeoutError:
            raise self._error(f"{where} unreachable: no answer within {limit:g} s") from None
        except (BotoCoreError, OSError) as e:
            hint = ""
            if "timeout" in type(e).__name__.lower():
                hint = (f" ({ATTEMPTS} attempts, storage.connect_timeout {cfg.connect_timeout:g} s, "
                        f"storage.read_timeout {cfg.read_timeout:g} s)")
            raise self._error(f"{where} unreachable: {e}{hint}") from None

    def _error(self, text: str) -> StorageAccessError:
        """A one-line access error: endpoint URLs and credentials masked wherever they are quoted."""
        return StorageAccessError(self.cfg.explain(mask(text, self.cfg.secret_key, self.cfg.access_key)))

    async def head_etags(self, paths: Iterable[str]) -> dict[str, EtagResult]:
        """ETag of each canonical image path, HEAD requests bounded by `concurrency`."""
        sem = self._sem
        unique = list(dict.fromkeys(paths))

        async def one(path: str) -> EtagResult:
            key = self.key(path)
            async with sem:
                self.requests["HEAD"] += 1
                try:
                    head = await self._client.head_object(Bucket=self.cfg.bucket, Key=key)
                except ClientError as e:
                    if _status(e) == 404 or _code(e) in ("404", "NoSuchKey", "NotFound"):
                        return None
                    return StorageFailure(key, f"HTTP {_status(e)} {_code(e)}".strip())
                except (TimeoutError, BotoCoreError, OSError) as e:  # EndpointConnectionError is a BotoCoreError
                    return StorageFailure(key, type(e).__name__)
            return str(head.get("ETag", "")).strip('"')

        results = await asyncio.gather(*(one(p) for p in unique))
        return dict(zip(unique, results, strict=True))

    async def list_etags(self, folder: str) -> dict[str, str] | StorageFailure:
        """Every object under dispersion folder `folder` (`m/` or `m/y/`): key below it → ETag."""
        prefix = self.key("/" + folder)
        entries: dict[str, str] = {}
        token = None
        try:
            while True:
                args = {"Bucket": self.cfg.bucket, "Prefix": prefix, "MaxKeys": 1000}
                if token:
                    args["ContinuationToken"] = token
                async with self._sem:
                    self.requests["LIST"] += 1
                    page = await self._client.list_objects_v2(**args)
                for obj in page.get("Contents", ()):
                    entries[obj["Key"][len(prefix):]] = str(obj.get("ETag", "")).strip('"')
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    return entries
        except ClientError as e:
            return StorageFailure(prefix, f"LIST: HTTP {_status(e)} {_code(e)}".strip())
        except (TimeoutError, BotoCoreError, OSError) as e:
            return StorageFailure(prefix, f"LIST: {type(e).__name__}")

    async def cache_folders(self) -> list[str]:
        """The `<hash>` folders of resized copies under `[<prefix>/]media/catalog/product/cache/`."""
        prefix = self.key("/cache/")
        folders: list[str] = []
        token = None
        while True:
            args = {"Bucket": self.cfg.bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            async with self._sem:
                self.requests["LIST"] += 1
                page = await self._client.list_objects_v2(**args)
            folders += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", ())]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return [f for f in folders if f]

    async def delete_keys(self, keys: Sequence[str]) -> tuple[int, list[str]]:
        """One DeleteObjects request (≤ 1,000 keys): how many were deleted, and the errors S3 listed.

        S3 answers success for a key that did not exist, so "deleted" counts keys sent less errors."""
        self.requests["DELETE"] = self.requests.get("DELETE", 0) + 1
        async with self._sem:
            answer = await self._client.delete_objects(
                Bucket=self.cfg.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = [f"{e.get('Key', '?')}: {e.get('Code', '')} {e.get('Message', '')}".strip()
                  for e in answer.get("Errors", ())]
        return len(keys) - len(errors), errors

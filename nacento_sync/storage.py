"""The bucket adapter: one question, "what is the ETag of each of these images?", asked concurrently.

An ETag is an opaque version token (stored without quotes); a missing object answers None; any
other failure, once its retries are spent, answers a `StorageFailure` that fails the SKU. Every request goes
through `retry.with_retries` (botocore's own retries are off): up to `storage.max_attempts` attempts of at most
`storage.connect_timeout` + `storage.read_timeout` each, capped jittered back-off between them, and a run-wide
limit on requests in flight that halves while the endpoint throttles us.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import aioboto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from nacento_sync.config import StorageConfig, mask
from nacento_sync.errors import StorageAccessError
from nacento_sync.paths import object_key
from nacento_sync.results import EtagResult, StorageFailure
from nacento_sync.retry import Limiter, RetryPolicy, Verdict, classify_answer, with_retries

T = TypeVar("T")


#: Attempts of `check_access`: a dead endpoint fails the start within seconds; a throttled one gets a second try.
CHECK_ATTEMPTS = 3


def boto_config(cfg: StorageConfig, pool: int) -> BotoConfig:
    """The client's timeouts; botocore retries nothing (`with_retries` does): what `request_bound` computes with."""
    return BotoConfig(
        max_pool_connections=pool,
        retries={"total_max_attempts": 1, "mode": "standard"},  # "max_attempts" would count retries
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        s3={"addressing_style": "path" if cfg.path_style else "auto"},
    )


def retry_policy(cfg: StorageConfig, attempts: int | None = None) -> RetryPolicy:
    """The per-request retry budget of `cfg` (`attempts` overrides `storage.max_attempts`)."""
    return RetryPolicy(attempts=attempts or cfg.max_attempts, cap=cfg.max_backoff)


def request_bound(cfg: StorageConfig, attempts: int | None = None) -> float:
    """The longest one request can take against an endpoint that never answers: each attempt waits for the
    connection and then for the answer, with the longest back-off between attempts. Pure."""
    return retry_policy(cfg, attempts).bound(cfg.connect_timeout + cfg.read_timeout)


def startup_bound(cfg: StorageConfig) -> float:
    """How long `check_access` may take at most (also enforced, in case DNS or the credential chain hangs)."""
    return request_bound(cfg, CHECK_ATTEMPTS)


#: Failures worth another attempt: no connection, a connection reset or closed mid-answer, no answer in time.
_TRANSIENT_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError, TimeoutError, OSError)
#: Of those, the ones where the endpoint did not answer in time.
_TIMEOUTS = (ReadTimeoutError, ConnectTimeoutError, TimeoutError)


def classify(err: Exception) -> Verdict:
    """A failed attempt's verdict: the one definition of a retriable storage error."""
    if isinstance(err, ClientError):
        return classify_answer(_status(err), _code(err))
    if isinstance(err, _TIMEOUTS):
        return Verdict.SLOW
    if isinstance(err, _TRANSIENT_ERRORS):
        return Verdict.TRANSIENT
    return Verdict.FINAL


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class Storage:
    """An S3-compatible bucket (AWS S3, Cloudflare R2, MinIO) laid out like Magento's remote storage."""

    def __init__(self, cfg: StorageConfig, concurrency: int = 32) -> None:
        self.cfg = cfg
        self.concurrency = concurrency
        #: Requests by type; "retries" (attempts repeated) and "throttled" (answers asking us to slow down)
        #: appear once there is one.
        self.requests = {"HEAD": 0, "LIST": 0}
        self.policy = retry_policy(cfg)
        #: Nothing but faults for one request's whole bound: the endpoint is down, stop retrying until it answers.
        self.down_after = request_bound(cfg)
        #: Run-wide: every request of this client shares one in-flight limit.
        self.limiter = Limiter(concurrency)
        self._client: Any = None  # aiobotocore's S3 client, once entered
        self._ctx: Any = None

    def key(self, path: str) -> str:
        return object_key(path, self.cfg.prefix)

    def _count(self, name: str) -> None:
        self.requests[name] = self.requests.get(name, 0) + 1

    def _on_retry(self, verdict: Verdict) -> None:
        self._count("retries")
        if verdict is Verdict.THROTTLED:
            self._count("throttled")
        elif verdict is Verdict.SLOW:
            self._count("timeouts")

    async def _request(self, call: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None) -> T:
        """One request with its retries, within the run's in-flight limit."""
        return await with_retries(call, classify, policy or self.policy, self.limiter, on_retry=self._on_retry,
                                  down_after=self.down_after)

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
                await self._request(lambda: self._client.head_bucket(Bucket=cfg.bucket),
                                    retry_policy(cfg, CHECK_ATTEMPTS))
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
                hint = (f" ({CHECK_ATTEMPTS} attempts, storage.connect_timeout {cfg.connect_timeout:g} s, "
                        f"storage.read_timeout {cfg.read_timeout:g} s)")
            raise self._error(f"{where} unreachable: {e}{hint}") from None

    def _error(self, text: str) -> StorageAccessError:
        """A one-line access error: endpoint URLs and credentials masked wherever they are quoted."""
        return StorageAccessError(self.cfg.explain(mask(text, self.cfg.secret_key, self.cfg.access_key)))

    async def head_etags(self, paths: Iterable[str]) -> dict[str, EtagResult]:
        """ETag of each canonical image path, HEAD requests bounded by `concurrency`."""
        unique = list(dict.fromkeys(paths))

        async def one(path: str) -> EtagResult:
            key = self.key(path)
            self._count("HEAD")
            try:
                head = await self._request(lambda: self._client.head_object(Bucket=self.cfg.bucket, Key=key))
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
                self._count("LIST")
                page = await self._request(functools.partial(self._client.list_objects_v2, **args))
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
            self._count("LIST")
            page = await self._request(functools.partial(self._client.list_objects_v2, **args))
            folders += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", ())]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return [f for f in folders if f]

    async def delete_keys(self, keys: Sequence[str]) -> tuple[int, list[str]]:
        """One DeleteObjects request (≤ 1,000 keys): how many were deleted, and the errors S3 listed.

        S3 answers success for a key that did not exist, so "deleted" counts keys sent less errors."""
        self._count("DELETE")
        delete = {"Objects": [{"Key": k} for k in keys], "Quiet": True}
        answer = await self._request(lambda: self._client.delete_objects(Bucket=self.cfg.bucket, Delete=delete))
        errors = [f"{e.get('Key', '?')}: {e.get('Code', '')} {e.get('Message', '')}".strip()
                  for e in answer.get("Errors", ())]
        return len(keys) - len(errors), errors

    async def delete_object(self, key: str) -> int:
        """One DeleteObject of `key`: the HTTP status (204 when deleting is allowed, even for a key that
        does not exist; 403 when it is denied). For `doctor`, which deletes a key that cannot exist."""
        self._count("DELETE")
        try:  # 403 is final, never retried: it is the answer doctor is after
            answer = await self._request(lambda: self._client.delete_object(Bucket=self.cfg.bucket, Key=key))
        except ClientError as e:
            return _status(e)
        return int(answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)

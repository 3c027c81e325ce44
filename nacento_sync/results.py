"""Result types the core, the shell and the adapters share (so the pure core imports no adapter)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nacento_sync.codes import Failure
from nacento_sync.models import Item, Missing
from nacento_sync.plan import ImageStats

if TYPE_CHECKING:
    from nacento_sync.config import StorageConfig


@dataclass(frozen=True)
class StorageFailure:
    """A look-up that failed for another reason than a missing object."""

    key: str
    reason: str


#: An image's ETag, None (or `Missing`, with a reason) for a missing object, or why the look-up failed.
EtagResult = str | None | Missing | StorageFailure


class ImageStore(Protocol):
    """What the engine, `EtagFinder` and `Purger` use of a storage adapter: `storage.Storage` (a bucket)
    or `filestore.FileStorage` (Magento's `pub/media` on this host)."""

    cfg: StorageConfig
    #: Requests (or file operations) made, by type: the report's `s3_requests`.
    requests: dict[str, int]

    def key(self, path: str) -> str: ...

    async def check_access(self) -> None: ...

    async def head_etags(self, paths: Iterable[str]) -> dict[str, EtagResult]: ...

    async def list_etags(self, folder: str) -> dict[str, str] | StorageFailure: ...

    async def cache_folders(self) -> list[str]: ...

    async def delete_keys(self, keys: Sequence[str]) -> tuple[int, list[str]]: ...


@dataclass
class Outcome:
    """What happened to one item: what the report shows, and what the async worker records."""

    item: Item
    product_id: int | None = None
    stats: ImageStats | None = None
    #: Why the SKU was not written (typed: the worker decides by its code), or None.
    failure: Failure | None = None
    warnings: list[str] = field(default_factory=list)
    #: The plan writes something (in a dry run: would write): the product goes in `changed_product_ids`.
    changed: bool = False

    @property
    def error(self) -> str | None:
        """The report's per-SKU `error`: the failure's code."""
        return None if self.failure is None else self.failure.code.reported.value


def sku_result(sku: str | None, *, product_id: int | None = None, stats: ImageStats | None = None,
               error: str | None = None, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """One SKU's result, the shape of the original module's API: the sync report's `results[]` and, with
    `mode` and `changed` added, an operation's `result_serialized_data`."""
    image_stats: dict[str, Any] = {name: getattr(stats, name) if stats else 0 for name in ImageStats.COUNTERS}
    image_stats["warnings"] = [*warnings, *(stats.warnings if stats else ())]
    return {"sku": sku, "product_id": product_id, "image_stats": image_stats, "error": error}

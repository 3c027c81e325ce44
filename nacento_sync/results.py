"""Result types the core, the shell and the adapters share (so the pure core imports no adapter)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nacento_sync.codes import Failure
from nacento_sync.models import Item
from nacento_sync.plan import ImageStats


@dataclass(frozen=True)
class StorageFailure:
    """A look-up that failed for another reason than a missing object."""

    key: str
    reason: str


#: An image's ETag, None for a missing object, or why the look-up failed.
EtagResult = str | None | StorageFailure


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

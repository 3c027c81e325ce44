"""nacento-sync: sync Magento 2 product image galleries from a PIM export, using S3 ETags.

The library API (README, "Library API"); every name below is a contract::

    from nacento_sync import Feed, Options, load_config, sync

    config = load_config("nacento-sync.yaml")
    result = sync(config, Feed(["export.ndjson"]), Options.from_config(config, dry_run=True))

Names are imported on first use, so `import nacento_sync` (and `nacento-sync --help`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "sync": "nacento_sync.api",
    "SyncResult": "nacento_sync.api",
    "ReportFileError": "nacento_sync.api",
    "submit": "nacento_sync.api",
    "bulk_status": "nacento_sync.api",
    "requeue": "nacento_sync.api",
    "undo": "nacento_sync.revert",
    "UndoResult": "nacento_sync.revert",
    "Options": "nacento_sync.engine",
    "Config": "nacento_sync.config",
    "ConfigError": "nacento_sync.config",
    "load_config": "nacento_sync.config",
    "Feed": "nacento_sync.feed",
    "parse_record": "nacento_sync.feed",
    "Item": "nacento_sync.models",
    "Rejection": "nacento_sync.models",
    "Report": "nacento_sync.report",
    "SubmitResult": "nacento_sync.asyncmode.submit",
    "BulkSummary": "nacento_sync.asyncmode.bulk",
    "RequeueResult": "nacento_sync.asyncmode.status",
    "NacentoError": "nacento_sync.errors",
    "UsageError": "nacento_sync.errors",
    "AccessError": "nacento_sync.errors",
    "UnknownBulk": "nacento_sync.errors",
}

#: The public names (README, "Library API"): once released, a contract.
__all__ = [
    "__version__", "sync", "SyncResult", "ReportFileError", "Options", "submit", "bulk_status", "requeue",
    "SubmitResult", "BulkSummary", "RequeueResult", "Config", "ConfigError", "load_config", "Feed",
    "parse_record", "Item", "Rejection", "Report", "NacentoError", "UsageError", "AccessError", "UnknownBulk",
    "undo", "UndoResult",
]

if TYPE_CHECKING:
    from nacento_sync.api import ReportFileError, SyncResult, bulk_status, requeue, submit, sync
    from nacento_sync.asyncmode.bulk import BulkSummary
    from nacento_sync.asyncmode.status import RequeueResult
    from nacento_sync.asyncmode.submit import SubmitResult
    from nacento_sync.config import Config, ConfigError, load_config
    from nacento_sync.engine import Options
    from nacento_sync.errors import AccessError, NacentoError, UnknownBulk, UsageError
    from nacento_sync.feed import Feed, parse_record
    from nacento_sync.models import Item, Rejection
    from nacento_sync.report import Report
    from nacento_sync.revert import UndoResult, undo


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nacento_sync' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

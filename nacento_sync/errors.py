"""One exception hierarchy: callers catch by type, never by reading messages.

Every error a command reports maps to an exit code by its class: `UsageError` → 2 (bad usage,
configuration, an unreadable input, a schema that is not Magento's), `AccessError` → 3 (a server that
cannot be reached, refuses us or does not answer in time). The adapters raise the subclasses.
"""

from __future__ import annotations


class NacentoError(Exception):
    """Base of the errors nacento-sync reports by type."""


class UsageError(NacentoError):
    """Bad usage or configuration (exit code 2)."""


class AccessError(NacentoError):
    """A database, bucket or broker that cannot be reached, refuses access or does not answer (exit code 3)."""


class StorageAccessError(AccessError):
    """The image storage (a bucket, or `storage.root` on disk) cannot be reached or refuses us (exit code 3)."""


class UnknownBulk(NacentoError):
    """No magento_bulk row has this UUID (`status` / `requeue` exit code 5)."""


class SchemaError(UsageError):
    """The database does not look like the Magento schema we write (exit code 2)."""

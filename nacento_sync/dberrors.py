"""What a database error means to the engine and the worker: one definition of each."""

from __future__ import annotations

import pymysql

from nacento_sync import magento

#: MySQL/MariaDB errors that mean the connection is gone (server shutdown or restart, KILL, network).
CONNECTION_LOST = frozenset({1053, 1927, 2003, 2006, 2013, 2055})
#: `innodb_lock_wait_timeout` expired.
LOCK_WAIT_TIMEOUT = 1205


def _errno(exc: BaseException) -> object:
    return exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None


def connection_lost(exc: BaseException) -> bool:
    """The database connection is gone: retrying on it (SKU by SKU, say) would only fail again; reconnect."""
    if isinstance(exc, pymysql.err.InterfaceError | ConnectionError | magento.DatabaseAccessError):
        return True
    return isinstance(exc, pymysql.err.OperationalError) and _errno(exc) in CONNECTION_LOST


def lock_wait_timeout(exc: BaseException) -> bool:
    return _errno(exc) == LOCK_WAIT_TIMEOUT

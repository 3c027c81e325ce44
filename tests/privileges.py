"""A MariaDB user with exactly the documented grants (`nacento_sync.grants`) on one test store's database.

The integration tests that sync and work the queue run as such a user, so a statement the list does not
cover fails them; `without` takes one privilege away, for the tests of what a missing grant does.
"""

from __future__ import annotations

import uuid
from typing import Any

import pymysql

from nacento_sync import grants


def grant_statements(store, account: str, scopes: tuple[str, ...],
                     without: tuple[str, str] | None = None) -> list[str]:
    """The documented GRANTs for `scopes` on the store's database (MariaDB's list: no MySQL-only grant),
    less `without` = (logical table, privilege)."""
    wanted = grants.needed(scopes, mysql=False)
    if without is not None:
        table, privilege = without
        wanted = tuple(grants.Grant(tuple(p for p in g.privileges if g.table != table or p != privilege),
                                    g.table, g.why, g.scope) for g in wanted)
        wanted = tuple(g for g in wanted if g.privileges)
    return grants.statements(store.database, store.prefix, account, wanted)


class RestrictedUsers:
    """Creates users on the test server (as its administrator) and drops them all at `drop_all`."""

    def __init__(self, admin: dict[str, Any]) -> None:
        self.admin = admin
        self.accounts: list[str] = []
        self.roles: list[str] = []

    def create(self, store, scopes: tuple[str, ...] = (grants.SYNC,),
               without: tuple[str, str] | None = None, via_role: bool = False) -> dict[str, Any]:
        """A new user `nst_<hex>`@`%` with a distinctive password and the grants (given to a default role
        of its own with `via_role`); its connection keywords."""
        user, password = f"nst_{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex}"
        account = f"'{user}'@'%'"
        conn = pymysql.connect(autocommit=True, **self.admin)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE USER {account} IDENTIFIED BY '{password}'")  # hex: nothing to escape
                self.accounts.append(account)
                grantee = account
                if via_role:
                    grantee = f"nst_role_{uuid.uuid4().hex[:12]}"
                    cur.execute(f"CREATE ROLE {grantee}")
                    self.roles.append(grantee)
                    cur.execute(f"GRANT {grantee} TO {account}")
                    cur.execute(f"SET DEFAULT ROLE {grantee} FOR {account}")
                for sql in grant_statements(store, grantee, scopes, without):
                    cur.execute(sql)
        finally:
            conn.close()
        return {**self.admin, "user": user, "password": password}

    def drop_all(self) -> None:
        conn = pymysql.connect(autocommit=True, **self.admin)
        try:
            with conn.cursor() as cur:
                for account in self.accounts:
                    cur.execute(f"DROP USER IF EXISTS {account}")
                for role in self.roles:
                    cur.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            conn.close()

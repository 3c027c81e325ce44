"""Shared fixtures: the local MariaDB / S3 servers that ./scripts/test starts, and a Magento test store.

Tests never skip for lack of servers: run them through ./scripts/test, which starts MariaDB, moto and
RabbitMQ and exports NACENTO_TEST_DB_*, NACENTO_TEST_S3_ENDPOINT and NACENTO_TEST_AMQP_URL (or
`scripts/services start; . .run/env`).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
# scripts/magento_schema.py builds Magento's tables from its own DDL: shared by the tests, the bench and the demo.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "scripts"))

from magento_schema import MagentoStore, SchemaFilesMissing, create_magento_store

_HOW = "run the tests with ./scripts/test (or `scripts/services start && . .run/env`)"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        pytest.fail(f"{name} is not set: {_HOW}", pytrace=False)
    return value


@pytest.fixture(scope="session")
def db_params() -> dict[str, Any]:
    """pymysql/aiomysql connection keywords for the test server (no database selected)."""
    return {
        "host": _env("NACENTO_TEST_DB_HOST"),
        "port": int(_env("NACENTO_TEST_DB_PORT")),
        "user": _env("NACENTO_TEST_DB_USER"),
        "password": _env("NACENTO_TEST_DB_PASSWORD"),
    }


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of the local S3-compatible server (moto): any credentials, path-style addressing."""
    return _env("NACENTO_TEST_S3_ENDPOINT")


def _database_name(tag: str) -> str:
    return f"nst_{tag}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def magento_factory(db_params: dict[str, Any]) -> Iterator[Callable[..., MagentoStore]]:
    """`make(variant="ce", prefix="")` -> a fresh MagentoStore in its own database, dropped afterwards.

    Its tables come from Magento's own DDL (scripts/magento_schema.py); without those files the test fails,
    it never skips."""
    stores: list[MagentoStore] = []

    def make(variant: str = "ce", prefix: str = "") -> MagentoStore:
        try:
            store = create_magento_store(db_params, _database_name(variant), variant, prefix)
        except SchemaFilesMissing as e:
            pytest.fail(str(e), pytrace=False)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.drop()


@pytest.fixture(
    params=[("ce", ""), ("ee", ""), ("ce", "mg_")],
    ids=["ce", "ee", "prefix"],
)
def magento(request: pytest.FixtureRequest, magento_factory: Callable[..., MagentoStore]) -> MagentoStore:
    """A fresh Magento store per test, once per variant: Open Source ("ce"), Adobe Commerce with
    row_id/staging ("ee"), and Open Source with table prefix "mg_" ("prefix")."""
    variant, prefix = request.param
    return magento_factory(variant, prefix)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of the local RabbitMQ (guest on 127.0.0.1)."""
    return _env("NACENTO_TEST_AMQP_URL")


@pytest.fixture
def queue_cfg(amqp_url: str) -> Iterator[dict[str, Any]]:
    """A `queue:` config section with this test's own topic and queue (so concurrent tests never see each
    other's messages) and short retry delays; its queues are deleted afterwards."""
    name = f"nst.{uuid.uuid4().hex[:12]}"
    cfg = {"url": amqp_url, "exchange": "magento", "topic": name, "queue": name, "admin_user_id": 1,
           "retry_delays": [1, 1]}
    yield cfg
    from async_helpers import delete_queues

    delete_queues(cfg)


@pytest.fixture
def bucket(s3_endpoint: str):
    """A fresh bucket on the local S3 server (helpers.Bucket)."""
    from helpers import make_bucket

    return make_bucket(s3_endpoint)


@pytest.fixture
def store(magento_factory: Callable[..., MagentoStore]) -> MagentoStore:
    """An Open Source store with nacento_media_gallery_meta installed (test_sync overrides it per variant)."""
    from helpers import install_meta

    s = magento_factory("ce")
    install_meta(s)
    return s


@pytest.fixture
def restricted_user(db_params: dict[str, Any]) -> Iterator[Callable[..., dict[str, Any]]]:
    """`make(store, scopes=("sync",), without=None)` -> db_params of a new MariaDB user that has exactly the
    grants README documents for those commands (nacento_sync.grants) on `store`'s database, less `without`
    = (table, privilege); every user is dropped afterwards. The meta table must exist first (MariaDB grants
    on a missing table only with CREATE)."""
    from privileges import RestrictedUsers

    users = RestrictedUsers(db_params)
    yield users.create
    users.drop_all()
@pytest.fixture(autouse=True)
def _journal_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace-mode runs journal to $XDG_STATE_HOME/nacento-sync/journal: a fresh directory per test."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))

"""Database failover: a run that loses its database mid-way (restart, KILL) reconnects and redoes the batch
in flight; one whose database stays away longer than `database.retry_seconds` stops with exit 3.

The database is a MariaDB server of this module's own (tests/private_mariadb.py): restarting it disturbs no
other run. Each run is caught mid-way at a gate (a row lock or a trigger waiting for a lock the test holds),
never by guessing its speed; the tables it leaves are compared with those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from helpers import config_dict, install_meta, make_bucket, write_ndjson
from magento_schema import MagentoStore, create_magento_store
from private_mariadb import PrivateMariaDB

from nacento_sync.asyncmode.decisions import reconnect_backoff
from nacento_sync.failover import FIRST_DELAY, MAX_DELAY, commit_took_effect, next_wait, same_server
from nacento_sync.plan import Entry, ImageStats, ProductPlan, ProductState

SKUS, IMAGES, BATCH = 80, 2, 10
#: The SKU whose batch the gate holds: batches before it are committed when the fault strikes.
GATED = 40
#: Bound on every wait for the run to reach a state.
WAIT = 60.0


# ---------------------------------------------------------------- the policy (pure)


def test_reconnects_back_off_doubling_up_to_4_s():
    delays = reconnect_backoff(FIRST_DELAY, MAX_DELAY)
    assert [next(delays) for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_last_wait_ends_at_the_deadline_and_none_follows_it():
    assert next_wait(4.0, elapsed=10.0, budget=60.0) == 4.0
    assert next_wait(4.0, elapsed=58.5, budget=60.0) == 1.5
    assert next_wait(4.0, elapsed=60.0, budget=60.0) is None


def test_an_old_thread_id_is_killed_only_on_the_server_that_gave_it():
    assert same_server(1_700_000_000.0, 1_700_000_001.0)  # two readings of one start time, ±1 s each
    assert not same_server(1_700_000_000.0, 1_700_000_042.0)  # restarted: its ids name other sessions


def _state(*paths: str) -> ProductState:
    return ProductState(link_id=1, entries=tuple(Entry(value_id=i, value=p)
                                                 for i, p in enumerate(paths, start=1)))


def _plan(ops: int) -> ProductPlan:
    return ProductPlan(ops=[object()] * ops, stats=ImageStats())  # type: ignore[list-item]


def test_a_commit_lost_in_flight_counts_as_rolled_back_only_when_nothing_changed():
    before, after = _state("/a/b/1.jpg"), _state("/a/b/1.jpg", "/a/b/2.jpg")
    assert commit_took_effect([before], [before], [_plan(3)]) is False  # as before: rolled back
    assert commit_took_effect([before], [after], [_plan(0)]) is True  # changed, nothing left: it committed
    assert commit_took_effect([before], [after], [_plan(2)]) is None  # changed by someone else meanwhile
    assert commit_took_effect([before], [None], [_plan(0)]) is True  # product gone: nothing to redo


# ---------------------------------------------------------------- against a server of our own


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    db = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"))
    db.start()
    yield db
    db.stop()


@pytest.fixture(scope="module")
def shop(server: PrivateMariaDB, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """The module's bucket and export, and the tables and report of an uninterrupted run of it."""
    bucket = make_bucket(s3_endpoint)
    items = [{"sku": f"SKU-{i:03d}",
              "images": [{"file_path": f"/f/{i % 7}/img-{i}-{j}.jpg", "label": f"image {j}",
                          "roles": ["base", "small_image"] if j == 0 else ["thumbnail"]}
                         for j in range(IMAGES)]} for i in range(SKUS)]
    for item in items:
        for image in item["images"]:
            bucket.put(image["file_path"])
    shop = Shop(server, bucket, write_ndjson(tmp_path_factory.mktemp("export") / "export.ndjson", items),
                tmp_path_factory.mktemp("runs"))
    store = shop.store()
    run = shop.start(store)
    assert run.finish() == 0, run.stderr
    shop.expected, shop.expected_stats = snapshot(store), run.report["stats"]
    return shop


@dataclass
class Run:
    """A `sync --json` subprocess; stdout and stderr go to files (read while it runs)."""

    proc: subprocess.Popen
    out: Path
    err: Path

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    @property
    def messages(self) -> list[str]:
        """The run's log messages (`--log-format json`: one object a line)."""
        return [json.loads(line)["message"] for line in self.stderr.splitlines() if line.startswith("{")]

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.out.read_text())

    def finish(self) -> int:
        return self.proc.wait(timeout=120)

    def recoveries(self) -> list[tuple[float, int]]:
        """(seconds without a database, attempts) of each reconnect the run logged."""
        return [(float(s), int(n)) for s, n in
                re.findall(r"reconnected to the database after ([\d.]+) s \((\d+) attempt", "\n".join(self.messages))]


@dataclass
class Shop:
    server: PrivateMariaDB
    bucket: Any
    export: Path
    runs: Path
    expected: dict[str, list[tuple]] | None = None
    expected_stats: dict[str, Any] | None = None

    def store(self) -> MagentoStore:
        store = create_magento_store(self.server.params, f"nst_failover_{uuid.uuid4().hex[:10]}", "ce")
        install_meta(store)
        for i in range(SKUS):
            store.add_product(f"SKU-{i:03d}")
        return store

    def start(self, store: MagentoStore, port: int | None = None, **database: Any) -> Run:
        cfg = config_dict(store, self.bucket, {**self.server.params, "port": port or self.server.port},
                          batch_size=BATCH)
        cfg["database"].update(database)
        name = uuid.uuid4().hex[:8]
        config = self.runs / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        out, err = self.runs / f"{name}.out", self.runs / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "nacento_sync", "--config", str(config), "--log-format",
                                     "json", "sync", str(self.export), "--json"], stdout=stdout, stderr=stderr)
        return Run(proc, out, err)


def snapshot(store: MagentoStore) -> dict[str, list[tuple]]:
    """What the sync wrote, by SKU and path (no auto-increment ids: a rolled-back insert uses some up)."""
    gallery = store.query(
        "SELECT p.sku, g.value, g.media_type, g.disabled, v.store_id, v.label, v.position, "
        "v.disabled AS hidden, m.s3_etag FROM {catalog_product_entity} p "
        "JOIN {catalog_product_entity_media_gallery_value_to_entity} e ON e.entity_id = p.entity_id "
        "JOIN {catalog_product_entity_media_gallery} g ON g.value_id = e.value_id "
        "LEFT JOIN {catalog_product_entity_media_gallery_value} v "
        "  ON v.value_id = g.value_id AND v.entity_id = p.entity_id "
        "LEFT JOIN {nacento_media_gallery_meta} m ON m.record_id = v.record_id")
    roles = store.query(
        "SELECT p.sku, a.attribute_code, v.store_id, v.value FROM {catalog_product_entity_varchar} v "
        "JOIN {catalog_product_entity} p ON p.entity_id = v.entity_id "
        "JOIN {eav_attribute} a ON a.attribute_id = v.attribute_id")
    counts = {**store.table_counts(),
              "meta": store.query("SELECT COUNT(*) AS n FROM {nacento_media_gallery_meta}")[0]["n"]}
    return {"gallery": sorted(tuple(r.values()) for r in gallery),
            "roles": sorted(tuple(r.values()) for r in roles),
            "counts": sorted((k, v) for k, v in counts.items() if k != "catalog_product_gallery_cl")}


def wait_for(condition: Callable[[], Any], what: str, run: Run | None = None, store: MagentoStore | None = None
             ) -> Any:
    """Poll the database (or the run's log) until `condition` holds, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not (value := condition()):
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {run.proc.returncode}) before {what}: {run.stderr[-3000:]}")
        if time.monotonic() > deadline:
            sessions = store.query("SELECT id, state, info FROM information_schema.processlist") if store else ""
            raise AssertionError(f"not within {WAIT:g} s: {what}; sessions {sessions}; "
                                 f"log {run.stderr[-3000:] if run else ''}")
        time.sleep(0.2)  # > 0.1 s: InnoDB refreshes innodb_trx only when it went unread that long
    return value


def committed_images(store: MagentoStore) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM {nacento_media_gallery_meta}")[0]["n"])


def lock_waits(store: MagentoStore) -> list[int]:
    """Server threads waiting for a row lock (the tool's, at the gate)."""
    rows = store.query("SELECT trx_mysql_thread_id AS id FROM information_schema.innodb_trx "
                       "WHERE trx_state = 'LOCK WAIT'")
    return [int(r["id"]) for r in rows]


class RowGate:
    """Holds the lock of product GATED, so the run waits in the batch that contains it (its earlier
    batches committed) until the holder's session ends."""

    def __init__(self, server: PrivateMariaDB, store: MagentoStore) -> None:
        self.conn = pymysql.connect(**server.params, database=store.database, autocommit=False)
        with self.conn.cursor() as cur:
            cur.execute("SELECT entity_id FROM catalog_product_entity WHERE sku = %s FOR UPDATE",
                        (f"SKU-{GATED:03d}",))

    def open(self) -> None:
        with contextlib.suppress(pymysql.err.MySQLError):  # the server went away: so did the lock
            self.conn.rollback()
        with contextlib.suppress(pymysql.err.MySQLError):
            self.conn.close()


def reconnect(server: PrivateMariaDB, store: MagentoStore) -> None:
    """The test's own connection, after a restart."""
    with contextlib.suppress(pymysql.err.MySQLError):
        store.conn.close()
    store.conn = pymysql.connect(**server.params, database=store.database, autocommit=True, charset="utf8mb4")


def assert_like_the_uninterrupted_run(shop: Shop, store: MagentoStore, run: Run) -> None:
    assert snapshot(store) == shop.expected
    assert run.report["stats"] == shop.expected_stats  # the report too: nothing counted twice or lost
    assert all(r["error"] is None for r in run.report["results"])


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "crash"])
def test_a_database_restart_mid_run_is_survived_and_the_tables_equal_an_uninterrupted_runs(shop, how):
    store = shop.store()
    gate = RowGate(shop.server, store)
    run = shop.start(store)
    wait_for(lambda: lock_waits(store), "the run waits at the gate", run, store)
    assert committed_images(store) == GATED * IMAGES  # the batches before the gate's, and no more
    away = shop.server.restart(how)
    gate.open()
    assert run.finish() == 0, run.stderr
    reconnect(shop.server, store)
    assert_like_the_uninterrupted_run(shop, store, run)
    assert run.report["run"]["reconnects"] == 2  # the writing and the look-up connection
    recoveries = run.recoveries()
    assert recoveries and all(seconds < away + 10 for seconds, _ in recoveries), (away, recoveries)
    print(f"\n{how.name}: server away {away:.2f} s; reconnects (seconds, attempts): {recoveries}; "
          f"run figures {run.report['run']}")


def test_a_killed_connection_mid_batch_is_replaced_and_the_batch_redone(shop):
    store = shop.store()
    gate = RowGate(shop.server, store)
    run = shop.start(store)
    (victim,) = wait_for(lambda: lock_waits(store), "the run waits at the gate", run, store)
    store.execute(f"KILL CONNECTION {victim}")
    # The redo, on a new connection, waits at the same gate: the lost batch is planned afresh.
    wait_for(lambda: [t for t in lock_waits(store) if t != victim], "the redone batch waits at the gate", run)
    gate.open()
    assert run.finish() == 0, run.stderr
    assert_like_the_uninterrupted_run(shop, store, run)
    assert run.report["run"]["reconnects"] == 1
    print(f"\nKILL: reconnects (seconds, attempts): {run.recoveries()}; run figures {run.report['run']}")


def test_a_database_away_longer_than_retry_seconds_ends_the_run_with_exit_3(shop):
    store = shop.store()
    gate = RowGate(shop.server, store)
    run = shop.start(store, retry_seconds=2)
    wait_for(lambda: lock_waits(store), "the run waits at the gate", run, store)
    started = time.monotonic()
    shop.server.stop(signal.SIGTERM)
    try:
        code = run.finish()
        seconds = time.monotonic() - started
    finally:
        gate.open()
        shop.server.start()
    assert code == 3, run.stderr
    assert any("database.retry_seconds" in m for m in run.messages) and "Traceback" not in run.stderr
    assert seconds < 2 + 10 + 10, seconds  # the budget, one connect attempt, the process's exit
    results = {r["sku"]: r for r in run.report["results"]}
    committed = [f"SKU-{i:03d}" for i in range(GATED)]
    assert all(results[sku]["error"] is None and results[sku]["image_stats"]["inserted"] == IMAGES
               for sku in committed)
    assert results[f"SKU-{GATED:03d}"]["error"] == "database_error"
    assert run.report["stats"]["inserted"] == GATED * IMAGES
    reconnect(shop.server, store)
    assert committed_images(store) == GATED * IMAGES
    print(f"\ndown for good: exit 3 after {seconds:.2f} s with retry_seconds 2")


class CommitCutter:
    """A TCP proxy in front of the server that lets the `nth` COMMIT through, swallows the server's answer
    and cuts that connection: the COMMIT took effect, and the client only knows it lost the connection.
    It reads the client's MySQL packets (3-byte length, sequence number, payload; COM_QUERY is 0x03)."""

    def __init__(self, server_port: int, nth: int) -> None:
        self.server_port, self.nth, self.commits, self.cut = server_port, nth, 0, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.server_port))
                swallow = threading.Event()
                threading.Thread(target=self._requests, args=(client, upstream, swallow), daemon=True).start()
                threading.Thread(target=self._answers, args=(upstream, client, swallow), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, swallow: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while header := _read(client, 4):
                payload = _read(client, int.from_bytes(header[:3], "little"))
                if payload[:1] == b"\x03" and payload[1:].strip().upper() == b"COMMIT":
                    self.commits += 1
                    if self.commits == self.nth:
                        swallow.set()  # before the COMMIT goes: its answer is the next thing the server sends
                upstream.sendall(header + payload)
        _close(client, upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket, swallow: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if swallow.is_set():
                    self.cut.set()
                    break
                client.sendall(data)
        _close(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_a_connection_lost_during_a_commit_that_took_effect_reports_what_that_commit_wrote(shop):
    """The server committed the batch, the client never heard: the batch is not written twice, and the
    report counts its images as inserted (not as unchanged), as the uninterrupted run does."""
    store = shop.store()
    cutter = CommitCutter(shop.server.port, nth=3)
    try:
        run = shop.start(store, port=cutter.port)
        assert run.finish() == 0, run.stderr
    finally:
        cutter.close()
    assert cutter.cut.is_set()
    assert any("had taken effect" in m for m in run.messages)
    assert_like_the_uninterrupted_run(shop, store, run)
    assert run.report["run"]["reconnects"] == 1
    print(f"\nCOMMIT answer lost: reconnects (seconds, attempts): {run.recoveries()}")


def test_a_statement_unanswered_for_read_timeout_is_redone_once_its_server_thread_is_killed(shop):
    """The client gives up on a statement (as on a network drop) while its server thread lives on, holding
    the batch's locks: the new connection kills that thread before the batch is redone."""
    store = shop.store()
    gate = RowGate(shop.server, store)
    run = shop.start(store, read_timeout=2)
    (victim,) = wait_for(lambda: lock_waits(store), "the run waits at the gate", run, store)
    wait_for(lambda: any(f"killed the lost connection's thread {victim}" in m for m in run.messages),
             "the lost connection's thread is killed", run, store)
    wait_for(lambda: not store.query("SELECT id FROM information_schema.processlist WHERE id = %s", (victim,)),
             "the killed thread is gone", run, store)
    gate.open()
    assert run.finish() == 0, run.stderr
    assert_like_the_uninterrupted_run(shop, store, run)
    print(f"\nread_timeout: reconnects (seconds, attempts): {run.recoveries()}; run figures {run.report['run']}")

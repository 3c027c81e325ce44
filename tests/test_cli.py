"""The command line as users and cron jobs run it: real servers, exit codes, output.

In-process with Typer's CliRunner; real processes only where one is the point: concurrent runs, kills,
signals and the console script itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import config_dict, install_meta, write_ndjson
from typer.testing import CliRunner

from nacento_sync import __version__
from nacento_sync.cli import app


@pytest.fixture
def config_file(store, bucket, db_params, tmp_path):
    path = tmp_path / "nacento-sync.yaml"
    path.write_text(yaml.safe_dump(config_dict(store, bucket, db_params)))
    return path


def cli(*args: str, env: dict | None = None, stdin: str | None = None):
    """`nacento-sync ARGS` in-process; `returncode`, `stdout`, `stderr` as a finished process has them.
    The environment's NACENTO_* settings (but the test servers') are unset, `env` added."""
    unset: dict[str, str | None] = {k: None for k in os.environ
                                    if k.startswith("NACENTO_") and not k.startswith("NACENTO_TEST")}
    res = CliRunner().invoke(app, list(args), env={**unset, **(env or {})}, input=stdin, catch_exceptions=False)
    return Ran(res.exit_code, res.stdout, res.stderr)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def test_the_console_script_runs_and_tells_its_version():
    script = Path(sys.executable).parent / "nacento-sync"
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == f"nacento-sync {__version__}\n"
    res = subprocess.run([sys.executable, "-m", "nacento_sync", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "Exit codes:" in res.stdout


def test_json_output_is_the_report_alone_and_exit_codes(store, bucket, config_file, tmp_path):
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    ok = cli("--config", str(config_file), "sync", str(export), "--json", "--request-id", "op-1")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["request_id"] == "op-1"
    assert set(report["stats"]) >= {"skus_seen", "ok", "error", "inserted", "updated_value", "updated_meta",
                                    "skipped_no_change", "deleted", "missing"}
    assert report["results"][0]["image_stats"]["inserted"] == 1
    bad = write_ndjson(tmp_path / "y.ndjson", [{"sku": "NOPE", "images": []}])
    failed = cli("--config", str(config_file), "sync", str(bad), "--json", "--report", str(tmp_path / "r.json"))
    assert failed.returncode == 1
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["error"] == "product_not_found"
    table = cli("--config", str(config_file), "sync", str(export))
    assert table.returncode == 0 and "skipped_no_change" in table.stdout


def test_stdin_json_body_and_request_id(store, bucket, config_file):
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    body = json.dumps({"request": {"request_id": "op-12345", "items": [
        {"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}]}})
    res = cli("--config", str(config_file), "sync", "-", "--json", stdin=body)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["request_id"] == "op-12345"


def test_sku_command(store, bucket, config_file, tmp_path):
    p = store.add_product("SKU-1")
    bucket.put("/a/b/one.jpg"), bucket.put("/a/b/two.jpg")
    res = cli("--config", str(config_file), "sku", "SKU-1", "--image", "a/b/one.jpg", "--image", "/a/b/two.jpg",
              "--json")
    assert res.returncode == 0, res.stderr
    assert [g["value"] for g in store.gallery(p.link_id)] == ["/a/b/one.jpg", "/a/b/two.jpg"]
    images = tmp_path / "images.json"
    images.write_text(json.dumps({"images": [{"file_path": "a/b/two.jpg", "label": "Two", "position": 1}]}))
    res = cli("--config", str(config_file), "sku", "SKU-1", "--images", str(images), "--mode", "replace", "--json")
    assert json.loads(res.stdout)["stats"]["deleted"] == 1
    assert [(g["value"], g["label"]) for g in store.gallery(p.link_id)] == [("/a/b/two.jpg", "Two")]
    assert cli("--config", str(config_file), "sku", "SKU-1").returncode == 2


def test_config_errors_name_the_key_and_env_overrides(store, bucket, db_params, tmp_path, config_file):
    cfg = config_dict(store, bucket, db_params)
    cfg["sync"]["batch_sise"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = cli("--config", str(bad), "sync", "x.ndjson")
    assert res.returncode == 2 and "sync.batch_sise" in res.stderr
    res = cli("--config", str(tmp_path / "absent.yaml"), "schema", "status")
    assert res.returncode == 2 and "not found" in res.stderr
    # NACENTO_CONFIG and NACENTO_<SECTION>__<KEY>
    res = cli("schema", "status", "--json", env={"NACENTO_CONFIG": str(config_file),
                                                 "NACENTO_DATABASE__NAME": "no_such_db"})
    assert res.returncode == 3 and "no_such_db" in res.stderr
    res = cli("schema", "status", env={"NACENTO_CONFIG": str(config_file), "NACENTO_SYNC__BATCH_SIZE": "zero"})
    assert res.returncode == 2 and "sync.batch_size" in res.stderr


def test_access_problems_exit_3_and_never_print_secrets(store, bucket, db_params, tmp_path):
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    cfg = config_dict(store, bucket, db_params)
    cfg["database"]["port"] = 1  # nothing listens there
    cfg["database"]["password"] = "hunter2-secret"
    (tmp_path / "db.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("--config", str(tmp_path / "db.yaml"), "sync", str(export))
    assert res.returncode == 3 and "hunter2-secret" not in res.stdout + res.stderr
    cfg = config_dict(store, bucket, db_params)
    cfg["storage"]["bucket"] = "no-such-bucket"
    cfg["storage"]["secret_key"] = "s3-secret-value"
    (tmp_path / "s3.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("--config", str(tmp_path / "s3.yaml"), "sync", str(export))
    assert res.returncode == 3 and "no-such-bucket" in res.stderr
    assert "s3-secret-value" not in res.stdout + res.stderr


def test_nothing_found_in_the_bucket_exits_3(store, config_file, tmp_path):
    items = []
    for i in range(4):
        store.add_product(f"SKU-{i}")
        items.append({"sku": f"SKU-{i}", "images": [{"file_path": f"w/r/wrong-{i}-{j}.jpg"} for j in range(3)]})
    res = cli("--config", str(config_file), "sync", str(write_ndjson(tmp_path / "x.ndjson", items)))
    assert res.returncode == 3 and "storage.prefix" in res.stderr


def test_schema_install_status_uninstall(magento_factory, bucket, db_params, tmp_path):
    store = magento_factory("ce", "mg_")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_dict(store, bucket, db_params)))
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": []}])
    res = cli("--config", str(path), "sync", str(export))
    assert res.returncode == 2 and "schema install" in res.stderr
    assert cli("--config", str(path), "schema", "status").returncode == 1
    assert "created" in cli("--config", str(path), "schema", "install").stdout
    assert "already exists" in cli("--config", str(path), "schema", "install").stdout
    status = cli("--config", str(path), "schema", "status", "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout) | {"rows": 0} == json.loads(status.stdout)
    ddl = store.query("SHOW CREATE TABLE {nacento_media_gallery_meta}")[0]["Create Table"]
    assert "REFERENCES `mg_catalog_product_entity_media_gallery_value` (`record_id`) ON DELETE CASCADE" in ddl
    assert cli("--config", str(path), "schema", "uninstall").returncode == 2  # no --yes, no terminal
    assert "dropped" in cli("--config", str(path), "schema", "uninstall", "--yes").stdout
    assert cli("--config", str(path), "schema", "status").returncode == 1


def _big_export(store, bucket, tmp_path, n=120, images=3, gate_from=None):
    """`n` products of `images` images each; from SKU number `gate_from` on, the images are labelled
    "gate" (see `_gated_sync`)."""
    items = []
    for i in range(n):
        store.add_product(f"BIG-{i:04d}")
        paths = [f"/b/g/big-{i}-{j}.jpg" for j in range(images)]
        label = {"label": "gate"} if gate_from is not None and i >= gate_from else {}
        items.append({"sku": f"BIG-{i:04d}", "images": [{"file_path": p, "roles": ["base"] if j == 0 else [], **label}
                                                       for j, p in enumerate(paths)]})
    for item in items:
        for img in item["images"]:
            bucket.put(img["file_path"], b"x")
    return write_ndjson(tmp_path / "big.ndjson", items)


def _assert_whole_skus(store, n, images):
    """Every product has either nothing or all its images, each with its value and meta rows."""
    rows = store.query(
        "SELECT p.sku, COUNT(g.value_id) AS n, COUNT(v.record_id) AS v, COUNT(m.record_id) AS m "
        "FROM {catalog_product_entity} p "
        "LEFT JOIN {catalog_product_entity_media_gallery_value_to_entity} e ON e.entity_id = p.entity_id "
        "LEFT JOIN {catalog_product_entity_media_gallery} g ON g.value_id = e.value_id "
        "LEFT JOIN {catalog_product_entity_media_gallery_value} v ON v.value_id = g.value_id AND v.store_id = 0 "
        "LEFT JOIN {nacento_media_gallery_meta} m ON m.record_id = v.record_id "
        "WHERE p.sku LIKE 'BIG-%%' GROUP BY p.sku")
    assert len(rows) == n
    for r in rows:
        assert (r["n"], r["v"], r["m"]) in ((0, 0, 0), (images, images, images)), r
    return sum(1 for r in rows if r["n"])


def test_two_concurrent_syncs_never_duplicate(store, bucket, config_file, tmp_path):
    export = _big_export(store, bucket, tmp_path, n=80)
    args = [sys.executable, "-m", "nacento_sync", "--config", str(config_file), "sync", str(export),
            "--batch-size", "7", "--json"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    inserted = [json.loads(o[0])["stats"]["inserted"] for o in outs]
    assert sum(inserted) == 240  # each image inserted by exactly one of the two runs
    assert _assert_whole_skus(store, 80, 3) == 80


class _Gate:
    """Holds back every value-row insert labelled "gate" (a trigger waits for a named lock this test holds)
    until `open()`, so a run is caught mid-way whatever the machine's speed."""

    def __init__(self, store) -> None:
        self.store, self.name = store, f"{store.database}.gate"
        assert store.query("SELECT GET_LOCK(%s, 0) AS got", (self.name,))[0]["got"] == 1
        store.execute(
            "CREATE TRIGGER nacento_test_gate BEFORE INSERT ON {catalog_product_entity_media_gallery_value} "
            f"FOR EACH ROW BEGIN IF NEW.label = 'gate' THEN DO GET_LOCK('{self.name}', 600); "
            f"DO RELEASE_LOCK('{self.name}'); END IF; END")

    def waiting(self) -> int:
        """Sessions of the tool held at the gate."""
        return self.store.query("SELECT COUNT(*) AS n FROM information_schema.processlist WHERE db = %s "
                                "AND state = 'User lock'", (self.store.database,))[0]["n"]

    def open(self) -> None:
        self.store.query("SELECT RELEASE_LOCK(%s)", (self.name,))
        self.store.execute("DROP TRIGGER IF EXISTS nacento_test_gate")


def _gated_sync(store, config_file, export, gate: _Gate, rows: int) -> subprocess.Popen:
    """Start a sync in small batches and return once it has committed `rows` gallery rows and is held at the gate
    (the run's real progress, not a guess at its speed)."""
    proc = subprocess.Popen([sys.executable, "-m", "nacento_sync", "--config", str(config_file), "sync", str(export),
                             "--batch-size", "3", "--concurrency", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        committed = store.query("SELECT COUNT(*) AS n FROM {catalog_product_entity_media_gallery}")[0]["n"]
        if committed >= rows and gate.waiting():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the sync did not reach the gate: {proc.communicate()[1][-2000:]}")


def test_kill_mid_run_leaves_whole_skus_and_rerun_converges(store, bucket, config_file, tmp_path):
    export = _big_export(store, bucket, tmp_path, n=150, gate_from=30)
    gate = _Gate(store)
    proc = _gated_sync(store, config_file, export, gate, rows=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gate.open()  # the killed run's held transaction goes on to find its client gone: it never commits
    partial = _assert_whole_skus(store, 150, 3)
    assert 0 < partial < 150
    res = cli("--config", str(config_file), "sync", str(export), "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["stats"]["skipped_no_change"] == partial * 3
    assert _assert_whole_skus(store, 150, 3) == 150


class _CountGate:
    """Holds back the value-row insert that would take the table to `threshold` rows or more (a trigger waits for
    a named lock this test holds), so a run is caught after a chosen number of committed rows, mid-transaction."""

    def __init__(self, store) -> None:
        self.store, self.name = store, f"{store.database}.count_gate"
        store.execute("CREATE TABLE nst_gate (threshold INT NOT NULL)")
        store.execute("INSERT INTO nst_gate VALUES (2147483647)")
        store.execute(
            "CREATE TRIGGER nacento_test_count_gate BEFORE INSERT ON {catalog_product_entity_media_gallery_value} "
            "FOR EACH ROW BEGIN IF (SELECT COUNT(*) FROM {catalog_product_entity_media_gallery_value}) >= "
            f"(SELECT threshold FROM nst_gate) THEN DO GET_LOCK('{self.name}', 600); "
            f"DO RELEASE_LOCK('{self.name}'); END IF; END")

    def arm(self, threshold: int) -> None:
        assert self.store.query("SELECT GET_LOCK(%s, 0) AS got", (self.name,))[0]["got"] == 1
        self.store.execute("UPDATE nst_gate SET threshold = %s", (threshold,))

    def open(self) -> None:
        self.store.execute("UPDATE nst_gate SET threshold = 2147483647")
        self.store.query("SELECT RELEASE_LOCK(%s)", (self.name,))

    def sessions(self) -> int:
        """Sessions of the tool connected to the store (the test's own excluded)."""
        return self.store.query("SELECT COUNT(*) AS n FROM information_schema.processlist WHERE db = %s "
                                "AND id <> CONNECTION_ID()", (self.store.database,))[0]["n"]

    def waiting(self) -> int:
        return self.store.query("SELECT COUNT(*) AS n FROM information_schema.processlist WHERE db = %s "
                                "AND state = 'User lock'", (self.store.database,))[0]["n"]


def _value_rows(store) -> int:
    return store.query("SELECT COUNT(*) AS n FROM {catalog_product_entity_media_gallery_value}")[0]["n"]


def _gallery_dump(store) -> dict[str, list[tuple]]:
    """Every gallery-related row, by SKU and path instead of surrogate ids (a killed run's rolled-back inserts
    leave gaps in AUTO_INCREMENT), sorted: equal dumps mean equal tables."""
    lk = store.link
    dumps = {
        "gallery": "SELECT p.sku, g.attribute_id, g.value, g.media_type, g.disabled "
                   "FROM {catalog_product_entity_media_gallery} g "
                   "JOIN {catalog_product_entity_media_gallery_value_to_entity} e ON e.value_id = g.value_id "
                   f"JOIN {{catalog_product_entity}} p ON p.{lk} = e.{lk}",
        "unlinked": "SELECT g.value FROM {catalog_product_entity_media_gallery} g WHERE NOT EXISTS (SELECT 1 FROM "
                    "{catalog_product_entity_media_gallery_value_to_entity} e WHERE e.value_id = g.value_id)",
        "value": "SELECT p.sku, g.value, v.store_id, v.label, v.position, v.disabled, m.s3_etag "
                 "FROM {catalog_product_entity_media_gallery_value} v "
                 "JOIN {catalog_product_entity_media_gallery} g ON g.value_id = v.value_id "
                 f"JOIN {{catalog_product_entity}} p ON p.{lk} = v.{lk} "
                 "LEFT JOIN {nacento_media_gallery_meta} m ON m.record_id = v.record_id",
        "varchar": "SELECT p.sku, a.attribute_code, v.store_id, v.value FROM {catalog_product_entity_varchar} v "
                   "JOIN {eav_attribute} a ON a.attribute_id = v.attribute_id "
                   f"JOIN {{catalog_product_entity}} p ON p.{lk} = v.{lk}",
    }
    out = {name: sorted(tuple("" if x is None else str(x) for x in row.values()) for row in store.query(sql))
           for name, sql in dumps.items()}
    counts = store.table_counts()
    out["counts"] = sorted((t, n) for t, n in counts.items() if t.startswith(("catalog_product_entity_media",
                                                                              "catalog_product_entity_varchar",
                                                                              "nacento_media_gallery_meta")))
    return out


def test_three_random_kills_then_a_run_equal_one_clean_run(store, bucket, config_file, db_params, tmp_path,
                                                           magento_factory):
    """kill -9 three times in a row, each after a random number of committed batches (seeded: NACENTO_TEST_SEED
    replays a failure), then a normal run: the tables are those of one clean run in a fresh store."""
    import random

    seed = int(os.environ.get("NACENTO_TEST_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    print(f"kill points seeded with NACENTO_TEST_SEED={seed}")
    n, images = 150, 3
    export = _big_export(store, bucket, tmp_path, n=n, images=images)
    gate = _CountGate(store)
    args = [sys.executable, "-m", "nacento_sync", "--config", str(config_file), "sync", str(export),
            "--batch-size", "3", "--concurrency", "2", "--json"]
    done = 0
    for kill in range(3):
        committed = _value_rows(store)
        # Up to 20 more batches of 3 SKUs, leaving room for the kills still to come (a late kill once left none).
        room = (n * images - committed) // (3 * images) - 1
        threshold = committed + rng.randint(1, max(1, min(20, room // (3 - kill)))) * 3 * images
        assert threshold < n * images, f"seed {seed}"
        gate.arm(threshold)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while proc.poll() is None and not gate.waiting():  # the run is held inside the batch that crosses it
            assert time.monotonic() < deadline, f"seed {seed}: kill {kill + 1} never reached the gate"
            time.sleep(0.05)
        assert proc.poll() is None, f"seed {seed}: the run ended before the gate: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gate.open()  # the held transaction finds its client gone: it never commits
        while gate.sessions():  # the killed run's sessions are rolled back and gone before the next run
            assert time.monotonic() < deadline, f"seed {seed}: the killed run's sessions stay"
            time.sleep(0.05)
        whole = _assert_whole_skus(store, n, images)
        assert done < whole < n, f"seed {seed}"  # at least one more batch committed, the held one did not
        done = whole
    res = cli("--config", str(config_file), "sync", str(export), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stats"]["skipped_no_change"] == done * images
    store.execute("DROP TRIGGER nacento_test_count_gate")
    store.execute("DROP TABLE nst_gate")

    clean = magento_factory("ce")
    install_meta(clean)
    for i in range(n):
        clean.add_product(f"BIG-{i:04d}")
    clean_cfg = tmp_path / "clean.yaml"
    clean_cfg.write_text(yaml.safe_dump(config_dict(clean, bucket, db_params)))
    assert cli("--config", str(clean_cfg), "sync", str(export), "--json").returncode == 0
    dump = _gallery_dump(store)
    assert len(dump["gallery"]) == n * images and len(dump["varchar"]) == n
    assert dump == _gallery_dump(clean), f"seed {seed}"


def test_sigint_finishes_the_batch_and_exits_130(store, bucket, config_file, tmp_path):
    export = _big_export(store, bucket, tmp_path, n=150, gate_from=30)
    gate = _Gate(store)
    proc = _gated_sync(store, config_file, export, gate, rows=30)
    proc.send_signal(signal.SIGINT)
    first = ""
    while "stopping after the current batch" not in first:  # the signal was taken while batches were held
        line = proc.stderr.readline()
        assert line, first
        first += line
    gate.open()  # the batches in flight finish; no new one starts
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, first + err
    report = json.loads(out)
    done = _assert_whole_skus(store, 150, 3)
    assert report["stats"]["inserted"] == done * 3 and 10 <= done < 150


def _sync_stuck_in_second_batch(store, bucket, config_file, tmp_path, sleep: int, env: dict | None = None):
    """`sync --json` of 3 SKUs in batches of 2, started and held inside the second batch's INSERT (a trigger
    sleeps on SKU-2's label): returns the process and the id of the sleeping database session."""
    store.execute(
        "CREATE TRIGGER nacento_test_slow BEFORE INSERT ON {catalog_product_entity_media_gallery_value} "
        f"FOR EACH ROW BEGIN IF NEW.label = 'slow' THEN SET @x = SLEEP({sleep}); END IF; END")
    items = []
    for i in range(3):
        store.add_product(f"SKU-{i}")
        bucket.put(f"/a/b/{i}.jpg")
        label = "slow" if i == 2 else "ok"
        items.append({"sku": f"SKU-{i}", "images": [{"file_path": f"a/b/{i}.jpg", "label": label}]})
    export = write_ndjson(tmp_path / "x.ndjson", items)
    proc = subprocess.Popen([sys.executable, "-m", "nacento_sync", "--config", str(config_file), "sync", str(export),
                             "--batch-size", "2", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:  # the second batch is inside its INSERT
        rows = store.query("SELECT id FROM information_schema.processlist WHERE db = %s AND info = %s",
                           (store.database, f"SET @x = SLEEP({sleep})"))
        victim = rows[0]["id"] if rows else None
        time.sleep(0.05)
    assert victim is not None
    return proc, int(victim)


def test_lost_database_connection_stops_the_run_with_exit_3_when_failover_is_off(store, bucket, config_file,
                                                                                 tmp_path):
    # With failover on (the default), tests/test_failover.py shows the run reconnecting instead.
    proc, victim = _sync_stuck_in_second_batch(store, bucket, config_file, tmp_path, 60,
                                               env={"NACENTO_DATABASE__RETRY_SECONDS": "0"})
    store.execute(f"KILL CONNECTION {victim}")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "lost the database connection" in err
    report = json.loads(out)
    by = {r["sku"]: r for r in report["results"]}
    assert by["SKU-2"]["error"] == "database_error"
    assert by["SKU-0"]["error"] is None and by["SKU-0"]["image_stats"]["inserted"] == 1
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 2  # batch 1 committed, SKU-2 not


def test_a_second_sigint_stops_at_once_exits_130_and_reports_the_committed_batches(store, bucket, config_file,
                                                                                    tmp_path):
    proc, victim = _sync_stuck_in_second_batch(store, bucket, config_file, tmp_path, 20)
    proc.send_signal(signal.SIGINT)
    first = ""
    while "stopping after the current batch" not in first:  # the first signal was taken
        line = proc.stderr.readline()
        assert line, first
        first += line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)  # at once: not after the 20 s of the batch in flight
    err = first + err
    store.execute(f"KILL QUERY {victim}")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "CancelledError" not in err and "interrupted by SIGINT" in err
    report = json.loads(out)
    assert sorted(r["sku"] for r in report["results"]) == ["SKU-0", "SKU-1"]  # the committed batch, not SKU-2
    assert report["stats"]["inserted"] == 2
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 2

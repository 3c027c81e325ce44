"""Errors at the edges: secrets never printed, bounded waits on silent servers, bad queue URLs, the
database's own words. Real servers and real processes where a server is involved; each class of bug is
tried with several members."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from async_helpers import async_config, cli, write_config
from helpers import Bucket, write_ndjson
from pydantic import SecretStr

from nacento_sync import magento, storage
from nacento_sync.asyncmode import queue
from nacento_sync.config import (
    Config,
    ConfigError,
    DatabaseConfig,
    QueueConfig,
    amqp_url_problem,
    load_config,
    mask,
)

#: A distinctive secret: no fragment of it (4 characters or more) may appear in any output.
SECRET = "Zq8Xw3Vk9Jm"


def fragments(secret: str, size: int = 4) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


def assert_no_secret(text: str, secret: str = SECRET) -> None:
    leaked = sorted(f for f in fragments(secret) if f in text)
    assert not leaked, f"secret fragments {leaked} in: {text!r}"


def assert_one_clean_line(res, code: int, *needles: str) -> str:
    """Exit `code`, no traceback, the error a single line naming each needle."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never writes a byte: a hung database, bucket or broker."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def run_all(commands: dict[str, tuple[Path, list[str]]]) -> dict[str, tuple[Any, float]]:
    """Run CLI commands concurrently (they mostly wait); name -> (completed process, seconds)."""

    def one(config: Path, args: list[str]):
        started = time.monotonic()
        res = cli("--config", str(config), *args, timeout=90)
        return res, time.monotonic() - started

    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {name: pool.submit(one, config, args) for name, (config, args) in commands.items()}
        return {name: f.result() for name, f in futures.items()}


def add_bulk(store, uuid: str = "0f8fad5b-d9cb-469f-a165-70867728950e") -> str:
    store.execute("INSERT INTO {magento_bulk} (uuid, user_type, description, operation_count) "
                  "VALUES (%s, 2, 'edge test', 0)", (uuid,))
    return uuid


# ---------------------------------------------------------------- item 10: bounded waits


def test_the_default_timeouts_bound_every_start_up_check_under_a_minute():
    cfg = Config.model_validate({"storage": {"bucket": "shop-media"}})
    db, st = cfg.database, cfg.storage
    assert (db.connect_timeout, db.read_timeout, st.connect_timeout, st.read_timeout) == (10, 120, 5, 10)
    assert db.read_timeout > 50  # InnoDB's default lock wait times out first, as a retriable error
    # What the clients are really given is what the bounds are computed from.
    boto = storage.boto_config(st, 32)
    assert (boto.connect_timeout, boto.read_timeout) == (st.connect_timeout, st.read_timeout)
    assert boto.retries == {"total_max_attempts": 1, "mode": "standard"}  # our retry loop, not botocore's
    # Every attempt waits for the connection, then the answer; the start-up check's back-off: up to 0.1 s, 0.2 s.
    assert storage.startup_bound(st) == pytest.approx(storage.CHECK_ATTEMPTS * 15 + 0.1 + 0.2)
    assert storage.startup_bound(st) == storage.request_bound(st, storage.CHECK_ATTEMPTS)
    bounds = {"database": db.connect_timeout, "bucket": storage.startup_bound(st), "broker": queue.startup_bound()}
    assert all(0 < b < 60 for b in bounds.values()), bounds
    # `sync` checks the database (twice: the look-up connection) and the bucket; one silent server fails it.
    assert max(bounds.values()) < 60


def test_a_silent_database_fails_every_command_that_needs_it_within_its_connect_timeout(
        silent, bucket, queue_cfg, tmp_path):
    cfg = {"database": {"host": "127.0.0.1", "port": silent.port, "user": "magento", "password": SECRET,
                        "name": "magento", "connect_timeout": 1},
           "storage": {"bucket": bucket.name, "endpoint": bucket.endpoint, "access_key": "test",
                       "secret_key": "test", "path_style": True},
           "queue": queue_cfg}
    config = write_config(tmp_path / "c.yaml", cfg)
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    results = run_all({
        "sync": (config, ["sync", str(export)]),
        "sku": (config, ["sku", "S-1", "--image", "a/b/c.jpg"]),
        "schema status": (config, ["schema", "status"]),
        "schema install": (config, ["schema", "install"]),
        "submit": (config, ["submit", str(export)]),
        "worker": (config, ["worker", "--idle-exit", "0"]),
        "status": (config, ["status", uuid]),
        "requeue": (config, ["requeue", uuid]),
    })
    for name, (res, seconds) in results.items():
        line = assert_one_clean_line(res, 3, f"127.0.0.1:{silent.port}", "no answer within 1 s",
                                     "database.connect_timeout")
        assert_no_secret(res.stdout + res.stderr)
        assert seconds < 30, (name, seconds, line)
    assert len(silent.accepted) >= len(results)  # each really reached the silent server


def test_a_silent_bucket_fails_sync_sku_and_worker_within_the_storage_timeouts(
        silent, store, db_params, queue_cfg, tmp_path):
    cfg = async_config(store, _bucket_at(f"http://127.0.0.1:{silent.port}"), db_params, queue_cfg)
    cfg["storage"].update(connect_timeout=1, read_timeout=1)
    config = write_config(tmp_path / "c.yaml", cfg)
    # An endpoint URL with credentials in it (aiohttp refuses them): quoted masked.
    cfg["storage"]["endpoint"] = f"http://ak:{SECRET}@127.0.0.1:{silent.port}"
    userinfo = write_config(tmp_path / "u.yaml", cfg)
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    results = run_all({
        "sync": (config, ["sync", str(export)]),
        "sku": (config, ["sku", "S-1", "--image", "a/b/c.jpg"]),
        "worker": (config, ["worker", "--idle-exit", "0"]),
        "endpoint with credentials": (userinfo, ["sync", str(export)]),
    })
    limit = storage.startup_bound(Config.model_validate(cfg).storage)
    for name, (res, seconds) in results.items():
        needles = ["http://ak:***@"] if name == "endpoint with credentials" else ["storage.read_timeout 1 s"]
        assert_one_clean_line(res, 3, "bucket 'silent-bucket'", "unreachable", *needles)
        assert_no_secret(res.stdout + res.stderr)
        assert seconds < limit + 20, (name, seconds)
    assert len(silent.accepted) == 3 * storage.CHECK_ATTEMPTS  # none from the URL aiohttp refuses


def _bucket_at(endpoint: str) -> Bucket:
    return Bucket(endpoint, "silent-bucket")


def test_a_silent_broker_fails_submit_worker_and_requeue_within_the_connect_timeout(
        silent, store, bucket, db_params, queue_cfg, tmp_path):
    cfg = async_config(store, bucket, db_params,
                       {**queue_cfg, "url": f"amqp://guest:{SECRET}@127.0.0.1:{silent.port}/"})
    config = write_config(tmp_path / "c.yaml", cfg)
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": []}])
    uuid = add_bulk(store)
    results = run_all({
        "submit": (config, ["submit", str(export)]),
        "worker": (config, ["worker", "--idle-exit", "0"]),
        "requeue": (config, ["requeue", uuid]),
    })
    for name, (res, seconds) in results.items():
        assert_one_clean_line(res, 3, "RabbitMQ", f"127.0.0.1:{silent.port}",
                              f"no answer within {queue.CONNECT_TIMEOUT:g} s")
        assert_no_secret(res.stdout + res.stderr)
        assert seconds < queue.CONNECT_TIMEOUT + 20, (name, seconds)
    assert store.table_counts()["magento_bulk"] == 1  # submit wrote nothing


def test_a_statement_with_no_answer_for_read_timeout_counts_as_a_lost_connection(store, bucket, db_params,
                                                                                   tmp_path):
    product = store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    cfg = async_config(store, bucket, db_params, {})
    del cfg["queue"]
    cfg["database"]["read_timeout"] = 2
    cfg["database"]["retry_seconds"] = 0  # no failover: the lock is held for good
    config = write_config(tmp_path / "c.yaml", cfg)
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    holder = pymysql.connect(**db_params, database=store.database, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 50")  # the server's default, this session only
            cur.execute(f"SELECT 1 FROM `{store.t('catalog_product_entity')}` WHERE entity_id = %s FOR UPDATE",
                        (product.entity_id,))
        started = time.monotonic()
        res = cli("--config", str(config), "sync", str(export), "--json")
        seconds = time.monotonic() - started
        line = assert_one_clean_line(res, 3, "Lost connection", "database.read_timeout")
        assert seconds < 30, (seconds, line)
        assert store.gallery(product.link_id) == []
    finally:
        holder.rollback()
        holder.close()
    again = cli("--config", str(config), "sync", str(export), "--json")
    assert again.returncode == 0, again.stderr
    assert [g["value"] for g in store.gallery(product.link_id)] == ["/a/b/c.jpg"]


def test_a_read_with_no_answer_raises_error_2013_and_closes_the_connection(store, db_params):
    """The same in-process, on each kind of statement the adapters run: a plain read, a lock, a write."""
    cfg = DatabaseConfig(host=db_params["host"], port=db_params["port"], user=db_params["user"],
                         password=db_params["password"], name=store.database, read_timeout=1)
    product = store.add_product("SKU-1")
    table = store.t("catalog_product_entity")
    statements = [
        f"SELECT entity_id FROM `{table}` WHERE entity_id = {product.entity_id} FOR UPDATE",
        f"UPDATE `{table}` SET sku = 'x' WHERE entity_id = {product.entity_id}",
        "SELECT SLEEP(5)",
    ]

    async def go(sql: str) -> tuple[int, bool]:
        conn = await magento.connect(cfg)
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql)
        except pymysql.err.OperationalError as e:
            return e.args[0], conn.closed
        finally:
            conn.close()
        return 0, False

    holder = pymysql.connect(**db_params, database=store.database, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute(f"SELECT 1 FROM `{table}` WHERE entity_id = %s FOR UPDATE", (product.entity_id,))
        for sql in statements:
            assert asyncio.run(go(sql)) == (magento.LOST_CONNECTION, True), sql
    finally:
        holder.rollback()
        holder.close()


# ---------------------------------------------------------------- item 9: secrets in config messages


YAML_ERRORS = [
    f"database:\n  host: db\n  password: {SECRET}: x\n",          # mapping values not allowed
    f"database:\n  password: '{SECRET}\n",                        # unterminated quote
    f"database: {{host: db, password: {SECRET}\n",                # unterminated flow mapping
    f"database:\n  password: *{SECRET}\n",                        # undefined alias (quoted by the parser)
    f"database:\n  password: !!python/object:{SECRET} x\n",       # unknown tag (quoted by the parser)
    f"database:\n  password: \"{SECRET[:5]}\\q{SECRET[5:]}\"\n",  # bad escape (its character is quoted)
    f"database:\n\tpassword: {SECRET}\n",                         # a tab
    f"database:\n  password: @{SECRET}\n",                        # a reserved first character
]


@pytest.mark.parametrize("text", YAML_ERRORS)
def test_a_yaml_syntax_error_gives_file_line_and_column_never_the_line(text, tmp_path):
    path = tmp_path / "nacento-sync.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert str(path) in message and "line " in message and "column " in message
    assert_no_secret(message)
    assert "password" not in message


def test_a_yaml_error_on_the_command_line_prints_no_secret(tmp_path):
    commands = {}
    for i, text in enumerate(YAML_ERRORS[:3]):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        commands[str(path)] = (path, ["schema", "status"])
    for path, (res, _) in run_all(commands).items():
        assert_one_clean_line(res, 2, path, "YAML syntax error at line ")
        assert_no_secret(res.stdout + res.stderr)


def test_a_config_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"database:\n  password: \xff" + SECRET.encode() + b"\n")
    with pytest.raises(ConfigError, match="not valid text") as info:
        load_config(str(path), env={})
    assert_no_secret(str(info.value))


@pytest.mark.parametrize("section,key,value", [
    ("database", "password", [SECRET]),
    ("database", "password", {SECRET: 1}),
    ("database", "password", {"a": [SECRET]}),
    ("storage", "secret_key", [SECRET, SECRET]),
    ("storage", "access_key", {"k": SECRET}),
    ("queue", "url", [f"amqp://u:{SECRET}@h/"]),
    ("queue", "url", {"amqp://u": SECRET}),
])
def test_wrong_typed_secrets_are_named_never_echoed(section, key, value, tmp_path):
    data: dict[str, Any] = {"storage": {"bucket": "shop-media"}}
    data.setdefault(section, {})[key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert f"{section}.{key}" in str(info.value)
    assert_no_secret(str(info.value))


def test_a_secret_is_masked_wherever_a_validation_message_might_quote_it(tmp_path):
    cases = [
        # a secret from the environment next to another error
        ({}, {"NACENTO_DATABASE__PASSWORD": SECRET, "NACENTO_SYNC__BATCH_SIZE": "many"}, "sync.batch_size"),
        # a mis-indented file: the password became a key of its own
        ({"database": {"password": None, SECRET: 1}}, {}, "database: an unknown key"),
        ({SECRET: {"x": 1}}, {}, "top level: an unknown key"),
        # a URL with a password next to an unknown key of its section
        ({"queue": {"url": f"amqp://u:{SECRET}@h/", "urll": 1}}, {}, "queue.urll: Extra inputs"),
        # the secret repeated in another key's wrong value
        ({"database": {"password": SECRET, "port": [SECRET]}}, {}, "database.port"),
    ]
    for i, (data, env, says) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError) as info:
            load_config(str(path), env=env)
        assert says in str(info.value), str(info.value)
        assert_no_secret(str(info.value))


@pytest.mark.parametrize("text,secrets,expected", [
    ('Could not connect to the endpoint URL: "http://ak:Sup3r@minio:9000/b"', [],
     'Could not connect to the endpoint URL: "http://ak:***@minio:9000/b"'),
    ("amqp://guest:Sup3r@h/ and https://u:p4ss@x.io", [], "amqp://guest:***@h/ and https://u:***@x.io"),
    ("login failed for Sup3rS3cret", ["Sup3rS3cret"], "login failed for ***"),
    ("password s3cr/et#X?y or s3cr%2Fet%23X%3Fy", [SecretStr("amqp://u:s3cr%2Fet%23X%3Fy@h/")],
     "password *** or ***"),
    ("nothing secret here", ["ab", None, ""], "nothing secret here"),
    ("amqp://guest@rabbit/ refused", [SecretStr("amqp://guest@rabbit/")], "amqp://guest@rabbit/ refused"),
])
def test_mask_hides_url_passwords_and_given_secrets(text, secrets, expected):
    assert mask(text, *secrets) == expected


# ---------------------------------------------------------------- item 13: queue.url


BAD_URLS = [
    ("amqp://guest:Pw9kkQ@127.0.0.1:abc/", "Pw9kkQ", "port"),
    ("amqp://guest:s3cr/et#X?y@127.0.0.1:5672/", "s3cr/et#X?y", "percent-encode"),
    ("amqp://guest:pa55#w0rdZ@127.0.0.1/", "pa55#w0rdZ", "percent-encode"),
    ("amqp://guest:Qx7?zz99@127.0.0.1/", "Qx7?zz99", "percent-encode"),
    ("amqp://guest:p@ssW0rdK@127.0.0.1:5672/", "p@ssW0rdK", "percent-encode"),
    ("amqp://guest:Zz%zzTop9@127.0.0.1/", "Zz%zzTop9", "%25"),
    ("amqp://guest:Hx5yy9q@127.0.0.1:99999/", "Hx5yy9q", "port"),
]


@pytest.mark.parametrize("url,password,hint", BAD_URLS)
def test_amqp_url_problems_are_described_without_quoting_the_url(url, password, hint):
    problem = amqp_url_problem(url)
    assert problem and hint in problem
    assert_no_secret(problem, password)
    with pytest.raises(ConfigError, match=r"^invalid configuration: queue\.url: ") as info:
        QueueConfig(url=url).checked_url()
    assert_no_secret(str(info.value), password)
    with pytest.raises(ConfigError):  # the connect of every queue command checks it first
        asyncio.run(queue.connect(SecretStr(url)))


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672/", "amqp://h", "amqps://u:p%2Fq%23@h:5671/v",
                                 "amqp://u:p:q@[::1]:5672/%2F", "amqp://guest:guest@rabbit/?heartbeat=30"])
def test_good_amqp_urls_pass(url):
    assert amqp_url_problem(url) is None


def test_queue_commands_exit_2_on_a_bad_queue_url_and_sync_ignores_it(store, bucket, db_params, queue_cfg,
                                                                       tmp_path):
    store.add_product("S-1")
    bucket.put("/a/b/c.jpg")
    uuid = add_bulk(store)
    export = write_ndjson(tmp_path / "x.ndjson", [{"sku": "S-1", "images": [{"file_path": "a/b/c.jpg"}]}])
    # Each queue command with another member of the class (all members: the unit test above).
    args = {"submit": ["submit", str(export)], "worker": ["worker", "--idle-exit", "0"], "requeue": ["requeue", uuid]}
    commands: dict[str, tuple[Path, list[str]]] = {}
    for i, command in enumerate(["submit", "worker", "requeue", "submit"]):
        config = write_config(tmp_path / f"c{i}.yaml", async_config(store, bucket, db_params,
                                                                     {**queue_cfg, "url": BAD_URLS[i][0]}))
        commands[f"{command} {i}"] = (config, args[command])
    commands["sync"] = (commands["worker 1"][0], ["sync", str(export)])
    results = run_all(commands)
    sync, _ = results.pop("sync")
    assert sync.returncode == 0, sync.stderr
    for name, (res, _) in results.items():
        password = BAD_URLS[int(name.split()[1])][1]
        assert_one_clean_line(res, 2, "queue.url")
        assert_no_secret(res.stdout + res.stderr, password)
    assert store.table_counts()["magento_bulk"] == 1  # nothing submitted


# ---------------------------------------------------------------- item 14: the database's own words


@pytest.mark.parametrize("change,says", [
    ({"password": SECRET}, "error 1045: Access denied for user"),
    ({"user": "nobody_x", "password": SECRET}, "error 1045: Access denied for user 'nobody_x'"),
    ({"name": "no_such_database_x"}, "error 1049: Unknown database 'no_such_database_x'"),
    ({"port": 1, "password": SECRET}, "error 2003: Can't connect to MySQL server"),
])
def test_database_errors_carry_the_servers_message_never_the_password(change, says, db_params):
    cfg = DatabaseConfig(**{"host": db_params["host"], "port": db_params["port"], "user": db_params["user"],
                            "password": db_params["password"], "name": "mysql", **change})
    with pytest.raises(magento.DatabaseAccessError) as info:
        asyncio.run(magento.connect(cfg))
    message = str(info.value)
    assert says in message and "\n" not in message
    assert_no_secret(message)
    assert "no config file" not in message  # a config object made in code: nothing was looked for


def test_without_a_config_file_database_errors_say_where_it_was_looked_for(db_params, tmp_path):
    env = {"NACENTO_DATABASE__HOST": db_params["host"], "NACENTO_DATABASE__PORT": str(db_params["port"]),
           "NACENTO_DATABASE__USER": db_params["user"], "NACENTO_DATABASE__PASSWORD": SECRET}
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "Access denied"),
        ({"NACENTO_DATABASE__PORT": "1"}, "Can't connect"),
        ({"NACENTO_DATABASE__PASSWORD": db_params["password"], "NACENTO_DATABASE__NAME": "no_such_db_x"},
         "Unknown database"),
    ]
    for extra, says in cases:
        res = _cli_in(tmp_path, {**env, **extra}, "schema", "status")
        line = assert_one_clean_line(res, 3, says, "no config file found (looked for",
                                     str(tmp_path / "nacento-sync.yaml"))
        assert_no_secret(line)
    # With a config file there, no such note.
    (tmp_path / "nacento-sync.yaml").write_text(yaml.safe_dump({"database": {"port": 1}}))
    res = _cli_in(tmp_path, env, "schema", "status")
    assert res.returncode == 3 and "no config file" not in res.stderr


def _cli_in(cwd: Path, env: dict[str, str], *args: str):
    import subprocess
    import sys

    from async_helpers import cli_env

    return subprocess.run([sys.executable, "-m", "nacento_sync", *args], capture_output=True, text=True,
                          env={**cli_env(), **env}, cwd=cwd, timeout=60)


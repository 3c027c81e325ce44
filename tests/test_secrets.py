"""Secrets never leave: every command, in every way it can fail, with distinctive secrets in the configuration
file and the environment; nothing printed, logged or written carries one.

The commands are found on the Typer app itself, so a command added later is covered without touching this
file (its required arguments get an export file, `--yes` and `--report` are given when it has them). In-process
with CliRunner, in a working directory and HOME of the test's own, every file under which is searched.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from helpers import FlakyS3, config_dict, install_meta, write_ndjson
from typer.testing import CliRunner

from nacento_sync.cli import app

#: Distinctive values, each only ever given as a secret (a password, a key, a URL's password).
DB_PASSWORD = "Dbpw-7Qx1-zebra-secret"
ACCESS_KEY = "AKIA7QX1ZEBRASECRET"
SECRET_KEY = "S3key-7Qx1-zebra-secret"
AMQP_PASSWORD = "Amqp-7Qx1-zebra-secret"
SECRETS = (DB_PASSWORD, ACCESS_KEY, SECRET_KEY, AMQP_PASSWORD)


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command the app registers, sub-groups walked (`schema install`, ...). Duck-typed: Typer
    carries its own copy of click."""
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            yield from _commands(command, (*prefix, name))
        elif command is not None:
            yield (*prefix, name), command


#: Arguments the known commands need to get as far as they can (the rest are derived from their parameters).
KNOWN_ARGS: dict[tuple[str, ...], list[str]] = {
    ("sku",): ["SKU-1", "--image", "a/b/c.jpg"],
    ("status",): ["0f8fad5b-d9cb-469f-a165-70867728950e"],
    ("requeue",): ["0f8fad5b-d9cb-469f-a165-70867728950e"],
    ("worker",): ["--max-messages", "1", "--idle-exit", "1"],  # bounded, should it ever start
}


def _arguments(path: tuple[str, ...], command: Any, export: Path, out: Path, json_mode: bool) -> list[str]:
    """The command line of one command: its required arguments, `--yes`, `--report` and `--json` when it has them."""
    args = list(KNOWN_ARGS.get(path, []))
    options = {opt for param in command.params for opt in getattr(param, "opts", ())}
    if path not in KNOWN_ARGS:
        args += [str(export) for param in command.params
                 if param.param_type_name == "argument" and param.required]
    if "--yes" in options:
        args.append("--yes")
    if "--report" in options:
        args += ["--report", str(out / f"report-{'-'.join(path)}.json")]
    if json_mode and "--json" in options:
        args.append("--json")
    return [*path, *args]


@dataclass
class Scenario:
    """One way of failing: the configuration file's text, environment variables, the exit code sync must give."""

    name: str
    config: str
    env: dict[str, str] = field(default_factory=dict)
    sync_exit: tuple[int, ...] = (2, 3)


@pytest.fixture
def denied_user(store) -> Iterator[str]:
    """A MariaDB user with no grants at all (it may log in, and see nothing), dropped afterwards."""
    name = f"nst_deny_{uuid.uuid4().hex[:8]}"
    for host in ("%", "localhost", "127.0.0.1"):
        escaped = host.replace("%", "%%")  # the statement has parameters: a literal % is doubled
        store.execute(f"CREATE USER '{name}'@'{escaped}' IDENTIFIED BY %s", (DB_PASSWORD,))
    yield name
    for host in ("%", "localhost", "127.0.0.1"):
        store.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


@pytest.fixture
def denying_s3() -> Iterator[FlakyS3]:
    """An S3 endpoint that answers 403 (a revoked or wrong key) for every object named `…fail…`."""
    server = FlakyS3(fail_status=403)
    yield server
    server.close()


def _scenarios(store, bucket, db_params, queue_cfg, denied_user: str, denying_s3: FlakyS3) -> list[Scenario]:
    """Each failure mode, with every secret the configuration can hold in it."""
    base = config_dict(store, bucket, db_params)
    base["storage"].update(access_key=ACCESS_KEY, secret_key=SECRET_KEY, connect_timeout=1, read_timeout=2)
    base["database"].update(connect_timeout=5)
    broker = queue_cfg["url"].rsplit("@", 1)[1]  # host:port/vhost of the test broker
    base["queue"] = {**queue_cfg, "url": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{_closed_port()}/"}

    def variant(**sections: dict[str, Any]) -> str:
        cfg = {name: dict(values) for name, values in base.items()}
        for section, values in sections.items():
            cfg[section].update(values)
        return yaml.safe_dump(cfg, sort_keys=False)

    good = variant()
    db_line = f"  password: {DB_PASSWORD}"
    assert db_line not in good  # the real password (empty) is on that line: replaced below
    with_db_password = good.replace("  password: ''", db_line)
    return [
        Scenario("wrong database password", variant(database={"password": DB_PASSWORD}), sync_exit=(3,)),
        Scenario("database unreachable", variant(database={"password": DB_PASSWORD, "port": _closed_port()}),
                 sync_exit=(3,)),
        Scenario("access denied", variant(database={"user": denied_user, "password": DB_PASSWORD}), sync_exit=(3,)),
        Scenario("no such bucket", variant(storage={"bucket": f"nst-none-{uuid.uuid4().hex[:8]}"}), sync_exit=(3,)),
        Scenario("bucket unreachable", variant(storage={"endpoint": f"http://127.0.0.1:{_closed_port()}"}),
                 sync_exit=(3,)),
        Scenario("storage denies the keys", variant(storage={"endpoint": denying_s3.endpoint}), sync_exit=(1, 3)),
        Scenario("broker refuses the password", variant(queue={"url": f"amqp://guest:{AMQP_PASSWORD}@{broker}"}),
                 sync_exit=(1,)),
        Scenario("YAML error on the password's line", with_db_password.replace(db_line, db_line + ": [oops")),
        Scenario("YAML error on the key's line", good.replace(f"secret_key: {SECRET_KEY}",
                                                              f'secret_key: "{SECRET_KEY}\n  x: "\'')),
        Scenario("a secret where a number goes", variant(database={"port": DB_PASSWORD})),
        Scenario("a secret in an unknown key", good + f"{SECRET_KEY}: 1\n"),
        Scenario("a misindented password", with_db_password.replace(db_line, f"password: {DB_PASSWORD}")),
        Scenario("a secret in a bad URL", variant(queue={"url": f"amqp://guest:{AMQP_PASSWORD}@h:port/"}),
                 sync_exit=(1,)),
        Scenario("secrets from the environment", variant(database={"port": _closed_port()}),
                 env={"NACENTO_DATABASE__PASSWORD": DB_PASSWORD, "NACENTO_STORAGE__ACCESS_KEY": ACCESS_KEY,
                      "NACENTO_STORAGE__SECRET_KEY": SECRET_KEY,
                      "NACENTO_QUEUE__URL": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{_closed_port()}/"},
                 sync_exit=(3,)),
        Scenario("a secret in a bad environment value", good, env={"NACENTO_SYNC__BATCH_SIZE": DB_PASSWORD,
                                                                  "NACENTO_DATABASE__PASSWORD": DB_PASSWORD}),
    ]


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return [secret for secret in SECRETS if secret.encode() in data]


def test_no_command_leaks_a_secret_in_any_failure(store, bucket, db_params, queue_cfg, denied_user, denying_s3,
                                                  tmp_path,
                                                  caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"  # the config files hold the secrets: only `out` is searched
    inputs.mkdir()
    out.mkdir()
    monkeypatch.chdir(out)  # whatever a command writes relative to the working directory lands here
    store.add_product("SKU-1")
    bucket.put("/a/b/c.jpg")
    images = [{"file_path": "a/b/c.jpg"}, {"file_path": "a/b/fail.jpg"}]  # denied by `denying_s3`
    export = write_ndjson(inputs / "x.ndjson", [{"sku": "SKU-1", "images": images},
                                                {"sku": "NOPE", "images": []}, {"sku": "\x00"}])
    home = {"HOME": str(out / "home"), "XDG_STATE_HOME": str(out / "state"), "XDG_DATA_HOME": str(out / "data"),
            "XDG_CACHE_HOME": str(out / "cache"), "XDG_CONFIG_HOME": str(out / "config")}
    unset: dict[str, str | None] = {k: None for k in os.environ
                                    if k.startswith("NACENTO_") and not k.startswith("NACENTO_TEST")}
    commands = list(_commands(typer.main.get_command(app)))  # type: ignore[arg-type]
    assert {("sync",), ("sku",), ("schema", "install"), ("worker",)} <= {path for path, _ in commands}
    caplog.set_level(logging.DEBUG, logger="nacento_sync")
    leaks: list[str] = []
    runs = 0
    for scenario in _scenarios(store, bucket, db_params, queue_cfg, denied_user, denying_s3):
        config = inputs / f"{uuid.uuid4().hex}.yaml"
        config.write_text(scenario.config)
        env = {**unset, **home, **scenario.env}
        assert _leaks(scenario.config + "".join(scenario.env.values())), scenario.name  # the search finds them
        for json_mode in (False, True):
            mode = ["--log-format", "json"] if json_mode else []
            lines = [["--version"], ["--help"]] + [[*path, "--help"] for path, _ in commands]
            lines += [_arguments(path, command, export, out, json_mode) for path, command in commands]
            for line in lines:
                caplog.clear()
                args = ["--config", str(config), *mode, *line]
                res = CliRunner().invoke(app, args, env=env)
                runs += 1
                where = f"{scenario.name}: nacento-sync {' '.join(line)}"
                assert res.exception is None or isinstance(res.exception, SystemExit), (where, res.exception)
                assert "Traceback" not in res.stdout + res.stderr, where
                if line[0] == "sync" and "--help" not in line:
                    assert res.exit_code in scenario.sync_exit, (where, res.exit_code, res.stderr)
                # What the tool logged, and what any library logged at WARNING or above (what reaches stderr
                # when a host application leaves the root logger as it is).
                logged = "\n".join(r.getMessage() for r in caplog.records
                                   if r.name.startswith("nacento_sync") or r.levelno >= logging.WARNING)
                for stream, text in (("stdout", res.stdout), ("stderr", res.stderr), ("log", logged)):
                    leaks += [f"{where}: {stream} has {secret}" for secret in _leaks(text)]
                install_meta(store)  # `schema uninstall --yes` dropped it: the next commands get as far as before
        for written in out.rglob("*"):
            if written.is_file():
                leaks += [f"{scenario.name}: {written} has {secret}" for secret in _leaks(written.read_bytes())]
    assert runs > 100
    assert leaks == []

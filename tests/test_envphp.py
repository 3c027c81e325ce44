"""`--magento-root DIR`: Magento's app/etc/env.php read by the real `php`, mapped to our keys, layered below
the config file key by key, and errors that name the file and line but never quote a secret.

env.php files are written in temporary directories in Magento 2.4's shape; the end-to-end tests point one at
the test MariaDB and moto bucket and run the CLI with no config file at all.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from helpers import write_ndjson
from typer.testing import CliRunner

from nacento_sync.cli import app
from nacento_sync.config import (
    SOURCES,
    ConfigError,
    DatabaseConfig,
    amqp_url_problem,
    load_config,
    shown_values,
    value_sources,
)
from nacento_sync.envphp import (
    EnvPhpError,
    amqp_url,
    config_from_envphp,
    env_php_path,
    read_env_php,
)

DB_SECRET = "Db-Zq8Xw3Vk9Jm"
S3_SECRET = "S3-Pw7Lr2Nc5Hd"
MQ_SECRET = "p@ss/w#rd-Tg4Yb"


def write_env_php(root: Path, php: str) -> Path:
    """`root/app/etc/env.php` with `php` after `<?php`; returns the file."""
    path = root / "app" / "etc" / "env.php"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<?php\n" + php)
    return path


def php_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: Magento 2.4's env.php as `setup:install` writes it, with remote storage, RabbitMQ and TLS to MySQL.
MAGENTO_ENV_PHP = """return [
    'backend' => ['frontName' => 'admin_q1w2'],
    'remote_storage' => [
        'driver' => 'aws-s3',
        'prefix' => 'shop1',
        'config' => [
            'bucket' => 'shop-media',
            'region' => 'eu-west-1',
            'endpoint' => 'https://s3.example.test',
            'use_path_style_endpoint' => true,
            'credentials' => ['key' => 'AKIAEXAMPLE', 'secret' => '@S3@'],
        ],
    ],
    'queue' => [
        'consumers_wait_for_messages' => 1,
        'amqp' => [
            'host' => 'rabbit.internal', 'port' => '5672', 'user' => 'magento', 'password' => '@MQ@',
            'virtualhost' => 'shop', 'ssl' => 'true',
        ],
    ],
    'crypt' => ['key' => 'base64k3jm0oq7b1pF0x9jvUq1u0o3Qe7x9jvUq1u0o3Qe7x9'],
    'db' => [
        'table_prefix' => 'mg_',
        'connection' => [
            'default' => [
                'host' => 'db.internal:3308',
                'dbname' => 'magento_prod',
                'username' => 'mage',
                'password' => '@DB@',
                'model' => 'mysql4',
                'engine' => 'innodb',
                'initStatements' => 'SET NAMES utf8;',
                'active' => '1',
                'driver_options' => [
                    PDO::MYSQL_ATTR_SSL_CA => '/etc/ssl/db-ca.pem',
                    PDO::MYSQL_ATTR_SSL_CERT => '/etc/ssl/client.pem',
                    PDO::MYSQL_ATTR_SSL_KEY => '/etc/ssl/client.key',
                    PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => false,
                ],
            ],
        ],
    ],
    'resource' => ['default_setup' => ['connection' => 'default']],
    'x-frame-options' => 'SAMEORIGIN',
    'MAGE_MODE' => 'production',
    'session' => ['save' => 'files'],
    'cache' => ['frontend' => ['default' => ['id_prefix' => '69d_'], 'page_cache' => ['id_prefix' => '69d_']],
                'allow_parallel_generation' => false],
    'lock' => ['provider' => 'db'],
    'directories' => ['document_root_is_pub' => true],
    'cache_types' => ['config' => 1, 'layout' => 1, 'block_html' => 1, 'full_page' => 1],
    'downloadable_domains' => ['shop.example.test'],
    'install' => ['date' => 'Mon, 01 Jan 2024 00:00:00 +0000'],
];
""".replace("@S3@", S3_SECRET).replace("@MQ@", MQ_SECRET).replace("@DB@", DB_SECRET)


@pytest.fixture
def magento_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Magento root with the full env.php; the working directory has no nacento-sync.yaml."""
    root = tmp_path / "magento"
    write_env_php(root, MAGENTO_ENV_PHP)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return root


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """`nacento-sync ARGS` in-process, the environment's NACENTO_* settings (but the test servers') unset."""
    unset: dict[str, str | None] = {k: None for k in os.environ
                                    if k.startswith("NACENTO_") and not k.startswith("NACENTO_TEST")}
    res = CliRunner().invoke(app, list(args), env={**unset, **(env or {})}, catch_exceptions=False)
    return Ran(res.exit_code, res.stdout, res.stderr)


# Reading with PHP, and the pure mapping.

def test_a_magento_env_php_maps_to_our_keys(magento_root):
    data = read_env_php(env_php_path(magento_root))
    assert data["backend"] == {"frontName": "admin_q1w2"}  # PHP evaluated it: the whole array is there
    assert config_from_envphp(data, magento_root) == {
        "database": {"host": "db.internal", "port": 3308, "name": "magento_prod", "user": "mage",
                     "password": DB_SECRET, "table_prefix": "mg_", "ssl_ca": "/etc/ssl/db-ca.pem",
                     "ssl_cert": "/etc/ssl/client.pem", "ssl_key": "/etc/ssl/client.key", "ssl_verify": False},
        "storage": {"backend": "s3", "bucket": "shop-media", "region": "eu-west-1",
                    "endpoint": "https://s3.example.test", "path_style": True, "access_key": "AKIAEXAMPLE",
                    "secret_key": S3_SECRET, "prefix": "shop1"},
        "queue": {"url": "amqps://magento:p%40ss%2Fw%23rd-Tg4Yb@rabbit.internal:5672/shop"},
    }


def test_the_loaded_configuration_takes_every_value_from_env_php(magento_root):
    cfg = load_config(env={}, magento_root=magento_root)
    db = cfg.database
    assert (db.host, db.port, db.name, db.user, db.password.get_secret_value(), db.table_prefix) == (
        "db.internal", 3308, "magento_prod", "mage", DB_SECRET, "mg_")
    assert (db.ssl_ca, db.ssl_cert, db.ssl_key, db.ssl_verify) == (
        "/etc/ssl/db-ca.pem", "/etc/ssl/client.pem", "/etc/ssl/client.key", False)
    assert cfg.storage is not None
    assert (cfg.storage.bucket, cfg.storage.region, cfg.storage.endpoint, cfg.storage.path_style,
            cfg.storage.prefix) == ("shop-media", "eu-west-1", "https://s3.example.test", True, "shop1")
    assert cfg.storage.secret_key is not None and cfg.storage.secret_key.get_secret_value() == S3_SECRET
    url = urlsplit(cfg.queue.checked_url().get_secret_value())
    assert (url.scheme, url.hostname, url.port, unquote(url.username or ""), unquote(url.password or ""),
            url.path) == ("amqps", "rabbit.internal", 5672, "magento", MQ_SECRET, "/shop")
    sources = value_sources(cfg)
    assert sources["magento_root"] == "flag"
    assert {sources[k] for k in ("database.host", "database.port", "database.ssl_ca", "storage.bucket",
                                 "storage.prefix", "queue.url")} == {"env.php"}
    assert sources["database.connect_timeout"] == sources["sync.batch_size"] == "default"
    assert set(sources.values()) <= set(SOURCES)


def test_php_evaluates_the_file_where_a_regular_expression_could_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_DB_NAME", "from_getenv")
    write_env_php(tmp_path, """
        echo "output from env.php is not our answer\\n";
        $prefix = 'mg' . '_';
        return ['db' => ['table_prefix' => $prefix,
                         'connection' => ['default' => ['dbname' => getenv('SHOP_DB_NAME'), 'password' => 123456]]]];
    """)
    database = config_from_envphp(read_env_php(env_php_path(tmp_path)), tmp_path)["database"]
    assert database == {"name": "from_getenv", "password": "123456", "table_prefix": "mg_"}


@pytest.mark.parametrize(("host", "expected"), [
    ("db.internal", {"host": "db.internal"}),
    ("db.internal:3310", {"host": "db.internal", "port": 3310}),
    ("/run/mysqld/mysqld.sock", {"host": "localhost", "unix_socket": "/run/mysqld/mysqld.sock"}),
    ("localhost:/var/run/mysql.sock", {"host": "localhost", "unix_socket": "/var/run/mysql.sock"}),
])
def test_host_spellings(tmp_path, monkeypatch, host, expected):
    monkeypatch.chdir(tmp_path)
    write_env_php(tmp_path, f"return ['db' => ['connection' => ['default' => ['host' => {php_str(host)}]]]];")
    cfg = load_config(env={}, magento_root=tmp_path)
    got = {"host": cfg.database.host, "port": cfg.database.port, "unix_socket": cfg.database.unix_socket}
    assert got == {"host": "127.0.0.1", "port": 3306, "unix_socket": None} | expected
    sources = value_sources(cfg)
    assert all(sources[f"database.{key}"] == "env.php" for key in expected)


def test_an_empty_env_php_array_leaves_everything_to_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_env_php(tmp_path, "return [];\n")
    assert read_env_php(env_php_path(tmp_path)) == {}
    cfg = load_config(env={}, magento_root=tmp_path)
    assert cfg.database.model_dump() == DatabaseConfig().model_dump()
    sources = value_sources(cfg)
    # No remote_storage: Magento keeps media on disk, so the filesystem backend under pub/media.
    assert cfg.storage is not None and cfg.storage.backend == "filesystem"
    assert cfg.storage.root == str(tmp_path / "pub" / "media")
    assert sources["storage.backend"] == sources["storage.root"] == "env.php"
    assert {source for key, source in sources.items()
            if key not in ("magento_root", "storage.backend", "storage.root")} == {"default"}


def test_the_file_driver_and_no_remote_storage_mean_the_filesystem_under_pub_media(tmp_path):
    for data in ({}, {"remote_storage": {"driver": "file"}}):
        assert config_from_envphp(data, tmp_path)["storage"] == {
            "backend": "filesystem", "root": str(tmp_path / "pub" / "media")}


def test_queue_amqp_becomes_one_url_the_queue_commands_accept():
    assert amqp_url({}) is None
    assert amqp_url({"host": "mq", "port": 5672, "user": "guest", "password": "guest", "virtualhost": "/"}) == (
        "amqp://guest:guest@mq:5672/")
    assert amqp_url({"host": "mq", "user": "shop"}) == "amqp://shop:@mq:5672/"
    url = amqp_url({"host": "::1", "user": "us er", "password": "a%b:c@d", "virtualhost": "shop/eu", "ssl": True})
    assert url == "amqps://us%20er:a%25b%3Ac%40d@[::1]:5671/shop%2Feu"
    assert amqp_url_problem(url) is None
    for off in ("", "0", "false", False, None):
        assert amqp_url({"host": "mq", "ssl": off}) == "amqp://mq:5672/"
    assert amqp_url_problem("amqp://mq:5672/") is None
    with pytest.raises(EnvPhpError, match=r"queue\.amqp\.password"):
        amqp_url({"host": "mq", "password": ["not", "text"]})


def test_env_php_that_prints_or_includes_another_file_still_answers(tmp_path):
    (tmp_path / "app" / "etc").mkdir(parents=True)
    (tmp_path / "app" / "etc" / "db.php").write_text("<?php\nreturn ['dbname' => 'included'];\n")
    write_env_php(tmp_path, "print 'noise'; fwrite(STDOUT, 'more noise');\n"
                            "return ['db' => ['connection' => ['default' => include __DIR__ . '/db.php']]];\n")
    assert config_from_envphp(read_env_php(env_php_path(tmp_path)), tmp_path)["database"] == {"name": "included"}


# Errors: exit 2, the path and line, never a secret.

def _one_error(res: Ran) -> str:
    assert res.returncode == 2, (res.returncode, res.output)
    assert "Traceback" not in res.output
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    return line


@pytest.mark.parametrize(("php", "line", "says"), [
    (f"return [\n  'db' => ['connection' => ['default' => [\n    'password' => '{DB_SECRET}' '{DB_SECRET}',\n"
     "  ]]],\n];\n", 4, "syntax error"),
    (f"return [\n  'db' => ['connection' => ['default' => [\n    'password' => '{DB_SECRET}' . NO_SUCH_CONST,\n"
     "  ]]],\n];\n", 4, "PHP Error while reading it"),
    (f"$x = '{DB_SECRET}';\nthrow new RuntimeException('password is ' . $x);\n", 3, "PHP RuntimeException"),
    (f"$x = '{DB_SECRET}';\nini_set('memory_limit', '8M');\n$a = str_repeat($x, 10000000);\n", 4,
     "PHP fatal error"),
])
def test_a_broken_env_php_gives_its_path_and_line_and_no_secret(tmp_path, php, line, says):
    path = write_env_php(tmp_path, php)
    message = _one_error(cli("--magento-root", str(tmp_path), "schema", "status"))
    assert f"{path}: line {line}" in message and says in message
    assert DB_SECRET not in cli("--magento-root", str(tmp_path), "schema", "status").output
    assert "Zq8X" not in message


@pytest.mark.parametrize(("php", "says"), [
    ("return 42;\n", "does not return an array (it returns integer)"),
    ("exit(0);\n", "stopped PHP"),
    ("return ['remote_storage' => ['driver' => 'azure-blob']];\n",
     "remote_storage.driver 'azure-blob' is not supported: supported drivers are aws-s3, file"),
    ("return ['queue' => ['amqp' => ['host' => 'mq', 'password' => ['@MQ@']]]];\n".replace("@MQ@", MQ_SECRET),
     "queue.amqp.password: expected text"),
    ("return ['db' => ['table_prefix' => 'mg-'], 'queue' => ['amqp' => ['host' => 'mq', 'password' => "
     f"'{MQ_SECRET}']]];\n", "database.table_prefix: String should match pattern '^[A-Za-z0-9_]*$' (from env.php)"),
])
def test_env_php_that_returns_what_we_cannot_use_exits_2(tmp_path, php, says):
    path = write_env_php(tmp_path, php)
    res = cli("--magento-root", str(tmp_path), "schema", "status")
    message = _one_error(res)
    assert says in message and str(path) in res.stderr
    assert MQ_SECRET not in res.output and "Tg4Yb" not in res.output


def test_a_magento_root_without_env_php_names_the_path(tmp_path):
    message = _one_error(cli("--magento-root", str(tmp_path / "nowhere"), "schema", "status"))
    assert f"--magento-root {tmp_path / 'nowhere'}: not a directory" in message
    message = _one_error(cli("schema", "status", env={"NACENTO_MAGENTO_ROOT": str(tmp_path)}))
    assert f"NACENTO_MAGENTO_ROOT {tmp_path}: no app/etc/env.php" in message


def test_without_php_the_error_names_the_packages(tmp_path):
    write_env_php(tmp_path / "m", "return [];\n")
    (tmp_path / "bin").mkdir()
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status", env={"PATH": str(tmp_path / "bin")})
    message = _one_error(res)
    assert "no `php` on PATH" in message and "apt-get install php-cli php-mysql" in message


def test_without_pdo_mysql_the_tls_constants_are_undefined_and_the_error_says_to_install_it(tmp_path):
    real_php = shutil.which("php")
    assert real_php, "php is not installed (scripts/lib.sh installs php-cli and php-mysql)"
    fake = tmp_path / "bin" / "php"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexec {real_php} -n \"$@\"\n")  # -n: no php.ini, so no pdo_mysql
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    write_env_php(tmp_path / "m", "return ['db' => ['connection' => ['default' => ['driver_options' => "
                                  "[PDO::MYSQL_ATTR_SSL_CA => '/etc/ca.pem']]]]];\n")
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status",
              env={"PATH": f"{fake.parent}:{os.environ['PATH']}"})
    message = _one_error(res)
    assert "line 2" in message and "install php-mysql" in message


def test_reading_env_php_as_root_warns(magento_root):
    res = cli("--magento-root", str(magento_root), "schema", "status",
              env={"NACENTO_DATABASE__HOST": "127.0.0.1", "NACENTO_DATABASE__PORT": "1"})  # then fails at once
    words = " ".join(res.stderr.split())  # the log handler wraps long lines
    warned = "as root runs its PHP code as root: run nacento-sync as the owner of the Magento files" in words
    assert warned == (os.geteuid() == 0), res.stderr


def test_an_env_php_this_user_cannot_read_is_named(tmp_path):
    path = write_env_php(tmp_path / "m", f"return ['db' => ['connection' => ['default' => ['password' => "
                                         f"'{DB_SECRET}']]]];\n")
    path.chmod(0o600)
    env: dict[str, str] = {}
    if os.geteuid() == 0:  # root reads anything: PHP runs as nobody, as it would for the wrong user
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run PHP as another user"
        fake = tmp_path / "bin" / "php"
        fake.parent.mkdir()
        fake.write_text(f"#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 --clear-groups "
                        f"{shutil.which('php')} \"$@\"\n")
        fake.chmod(0o755)
        env["PATH"] = f"{fake.parent}:{os.environ['PATH']}"
    else:
        path.chmod(0)
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status", env=env)
    message = _one_error(res)
    assert f"{path}: this user cannot read it: run nacento-sync as the owner of the Magento files" in message
    assert DB_SECRET not in res.output


def test_php_that_never_finishes_is_stopped(tmp_path):
    path = write_env_php(tmp_path, "sleep(60);\nreturn [];\n")
    start = time.monotonic()
    with pytest.raises(EnvPhpError, match="did not finish reading it within 1 s"):
        read_env_php(path, timeout=1)
    assert time.monotonic() - start < 10


# Precedence: flag > environment > config file > env.php > default, key by key.

def test_precedence_is_key_by_key(magento_root):
    Path("nacento-sync.yaml").write_text(yaml.safe_dump({
        "database": {"user": "file_user", "name": "file_db", "port": 3399},
        "sync": {"batch_size": 7, "concurrency": 5},
    }))
    env = {"NACENTO_DATABASE__NAME": "env_db", "NACENTO_SYNC__BATCH_SIZE": "8"}
    cfg = load_config(env=env, overrides={"sync": {"batch_size": 9}}, magento_root=magento_root)
    assert (cfg.sync.batch_size, cfg.database.name, cfg.sync.concurrency, cfg.database.user,
            cfg.database.port, cfg.database.host, cfg.database.read_timeout) == (
        9, "env_db", 5, "file_user", 3399, "db.internal", 120)
    sources = value_sources(cfg)
    assert {key: sources[key] for key in ("sync.batch_size", "database.name", "sync.concurrency", "database.user",
                                          "database.port", "database.host", "database.read_timeout")} == {
        "sync.batch_size": "flag", "database.name": "environment", "sync.concurrency": "config file",
        "database.user": "config file", "database.port": "config file", "database.host": "env.php",
        "database.read_timeout": "default"}
    # Without the flag, the environment wins; without the environment, the file.
    assert load_config(env=env, magento_root=magento_root).sync.batch_size == 8
    assert load_config(env={}, magento_root=magento_root).database.name == "file_db"


def test_a_host_set_elsewhere_is_not_replaced_by_env_php_socket(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_env_php(tmp_path, "return ['db' => ['connection' => ['default' => ['host' => '/run/mysqld/mysqld.sock']]]];")
    assert load_config(env={}, magento_root=tmp_path).database.unix_socket == "/run/mysqld/mysqld.sock"
    cfg = load_config(env={"NACENTO_DATABASE__HOST": "db.internal"}, magento_root=tmp_path)
    assert (cfg.database.host, cfg.database.unix_socket) == ("db.internal", None)
    assert value_sources(cfg)["database.unix_socket"] == "default"


def test_an_empty_key_in_the_file_does_not_hide_env_php(magento_root):
    Path("nacento-sync.yaml").write_text("database:\n  password:\nstorage:\n  endpoint:\n  region: us-west-2\n")
    cfg = load_config(env={}, magento_root=magento_root)
    assert cfg.database.password.get_secret_value() == DB_SECRET
    assert cfg.storage is not None
    assert (cfg.storage.endpoint, cfg.storage.region, cfg.storage.bucket) == (
        "https://s3.example.test", "us-west-2", "shop-media")
    assert value_sources(cfg)["storage.region"] == "config file"
    assert value_sources(cfg)["storage.endpoint"] == "env.php"


@pytest.mark.parametrize("where", ["config file", "environment"])
def test_a_bucket_set_elsewhere_drops_the_whole_storage_section_of_env_php(magento_root, where):
    env: dict[str, str] = {}
    if where == "config file":
        Path("nacento-sync.yaml").write_text(yaml.safe_dump({"storage": {"bucket": "other-bucket"}}))
    else:
        env["NACENTO_STORAGE__BUCKET"] = "other-bucket"
    cfg = load_config(env=env, magento_root=magento_root)
    assert cfg.storage is not None
    assert (cfg.storage.bucket, cfg.storage.endpoint, cfg.storage.region, cfg.storage.prefix,
            cfg.storage.access_key, cfg.storage.secret_key, cfg.storage.path_style) == (
        "other-bucket", None, "us-east-1", "", None, None, False)
    sources = value_sources(cfg)
    assert sources["storage.bucket"] == where
    assert "env.php" not in {source for key, source in sources.items() if key.startswith("storage.")}
    assert sources["database.host"] == "env.php"  # the other sections still come from env.php


def test_magento_root_comes_from_the_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    for name in ("flag", "env", "file"):
        write_env_php(tmp_path / name, f"return ['db' => ['connection' => ['default' => ['dbname' => '{name}']]]];")
    monkeypatch.chdir(tmp_path)
    Path("nacento-sync.yaml").write_text(yaml.safe_dump({"magento_root": str(tmp_path / "file")}))
    env = {"NACENTO_MAGENTO_ROOT": str(tmp_path / "env")}
    cases = [(load_config(env=env, magento_root=tmp_path / "flag"), "flag", "flag"),
             (load_config(env=env), "env", "environment"),
             (load_config(env={}), "file", "config file")]
    for cfg, dbname, source in cases:
        assert cfg.database.name == dbname
        assert value_sources(cfg)["magento_root"] == source
    Path("nacento-sync.yaml").unlink()
    assert "magento_root" not in value_sources(load_config(env={}))


# TLS to MySQL from driver_options.

def test_tls_settings_make_an_ssl_context_and_a_missing_file_is_named(tmp_path):
    from nacento_sync import magento

    assert magento.ssl_context(DatabaseConfig()) is None
    bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    context = magento.ssl_context(DatabaseConfig(ssl_ca=bundle))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    context = magento.ssl_context(DatabaseConfig(ssl_ca=bundle, ssl_verify=False))
    assert context is not None and context.verify_mode == ssl.CERT_NONE
    with pytest.raises(ConfigError, match=f"database.ssl_ca: cannot load {tmp_path / 'ca.pem'}"):
        magento.ssl_context(DatabaseConfig(ssl_ca=str(tmp_path / "ca.pem")))


def test_a_missing_ca_file_from_env_php_exits_2_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_env_php(tmp_path / "m", "return ['db' => ['connection' => ['default' => ['host' => '127.0.0.1:1', "
                                  f"'password' => '{DB_SECRET}', 'driver_options' => "
                                  f"[PDO::MYSQL_ATTR_SSL_CA => {php_str(str(tmp_path / 'ca.pem'))}]]]]];\n")
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status")
    message = _one_error(res)
    assert f"database.ssl_ca: cannot load {tmp_path / 'ca.pem'}" in message
    assert DB_SECRET not in res.output


def test_tls_asked_of_a_server_without_it_is_refused_not_dropped(store, bucket, db_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    # The test server has TLS disabled: aiomysql alone would log in without it.
    _store_env_php(tmp_path / "m", store, bucket, db_params, f"{db_params['host']}:{db_params['port']}",
                   password=DB_SECRET, driver_options=f"PDO::MYSQL_ATTR_SSL_CA => {php_str(bundle)}")
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status")
    assert res.returncode == 3, res.output
    assert "error 2026: the server does not offer TLS" in res.stderr
    assert DB_SECRET not in res.output


# End to end: no config file, the real servers.

def _store_env_php(root: Path, store, bucket, db_params, host: str, password: str | None = None,
                   driver_options: str = "PDO::MYSQL_ATTR_LOCAL_INFILE => 1") -> Path:
    return write_env_php(root, f"""return [
    'backend' => ['frontName' => 'admin'],
    'db' => [
        'table_prefix' => {php_str(store.prefix)},
        'connection' => ['default' => [
            'host' => {php_str(host)}, 'dbname' => {php_str(store.database)},
            'username' => {php_str(db_params["user"])},
            'password' => {php_str(db_params["password"] if password is None else password)},
            'model' => 'mysql4', 'engine' => 'innodb', 'initStatements' => 'SET NAMES utf8;', 'active' => '1',
            'driver_options' => [{driver_options}],
        ]],
    ],
    'remote_storage' => ['driver' => 'aws-s3', 'prefix' => {php_str(bucket.prefix)}, 'config' => [
        'bucket' => {php_str(bucket.name)}, 'region' => 'us-east-1', 'endpoint' => {php_str(bucket.endpoint)},
        'use_path_style_endpoint' => true, 'credentials' => ['key' => 'test', 'secret' => '{S3_SECRET}'],
    ]],
];
""")


def test_sync_with_magento_root_and_no_config_file(store, bucket, db_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "magento"
    _store_env_php(root, store, bucket, db_params, f"{db_params['host']}:{db_params['port']}")
    product = store.add_product("SKU-1")
    bucket.put("/a/b/front.jpg")
    bucket.put("/a/b/back.jpg")
    export = write_ndjson(tmp_path / "export.ndjson", [
        {"sku": "SKU-1", "images": [{"file_path": "a/b/front.jpg", "label": "Front"}, {"file_path": "a/b/back.jpg"}]}])
    res = cli("--magento-root", str(root), "sync", str(export), "--json")
    assert res.returncode == 0, res.output
    assert json.loads(res.stdout)["stats"]["inserted"] == 2
    assert [(g["value"], g["label"]) for g in store.gallery(product.link_id)] == [
        ("/a/b/front.jpg", "Front"), ("/a/b/back.jpg", None)]
    assert S3_SECRET not in res.output

    status = cli("--magento-root", str(root), "schema", "status")
    assert status.returncode == 0, status.output
    lines = status.stdout.splitlines()
    for expected in (f"  magento_root: {root} (flag)", f"  database.name: {store.database} (env.php)",
                     f"  database.port: {db_params['port']} (env.php)", f"  storage.bucket: {bucket.name} (env.php)",
                     "  storage.secret_key: set (env.php)", "  storage.access_key: set (env.php)",
                     "  database.connect_timeout: 10 (default)", "  sync.batch_size: 200 (default)"):
        assert expected in lines, (expected, status.stdout)
    assert S3_SECRET not in status.output
    as_json = cli("--magento-root", str(root), "schema", "status", "--json",
                  env={"NACENTO_SYNC__BATCH_SIZE": "50"})
    info = json.loads(as_json.stdout)
    assert info["exists"] is True
    assert info["config_sources"]["database.host"] == "env.php"
    assert info["config_sources"]["sync.batch_size"] == "environment"
    assert S3_SECRET not in as_json.output


@pytest.mark.parametrize("spelling", ["name", "socket"])
def test_other_host_spellings_reach_the_real_server(store, bucket, db_params, tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    env = {}
    if spelling == "socket":
        host = os.environ.get("NACENTO_TEST_DB_SOCKET", "")
        assert host, "NACENTO_TEST_DB_SOCKET is not set: run the tests with ./scripts/test"
    else:
        host = db_params["host"]
        env["NACENTO_DATABASE__PORT"] = str(db_params["port"])  # key by key: env.php's host, the port from env
    _store_env_php(tmp_path / "m", store, bucket, db_params, host)
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status", "--json", env=env)
    assert res.returncode == 0, res.output
    assert json.loads(res.stdout)["config_sources"]["database.host"] == "env.php"


def test_a_wrong_password_from_env_php_exits_3_without_printing_it(store, bucket, db_params, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    _store_env_php(tmp_path / "m", store, bucket, db_params, f"{db_params['host']}:{db_params['port']}",
                   password=DB_SECRET)
    res = cli("--magento-root", str(tmp_path / "m"), "schema", "status")
    assert res.returncode == 3, res.output
    assert "env.php" in res.stderr  # the message says where the settings came from
    assert DB_SECRET not in res.output and "Zq8X" not in res.output
    assert "database.password: set (env.php)" in res.stdout


def test_queue_amqp_from_env_php_reaches_the_real_broker(amqp_url, tmp_path, monkeypatch):
    import asyncio

    from nacento_sync.asyncmode import queue
    from nacento_sync.errors import AccessError

    monkeypatch.chdir(tmp_path)
    broker = urlsplit(amqp_url)

    def connect_with(password: str) -> None:
        write_env_php(tmp_path, f"return ['queue' => ['amqp' => ['host' => {php_str(broker.hostname or '')}, "
                                f"'port' => '{broker.port}', 'user' => {php_str(unquote(broker.username or ''))}, "
                                f"'password' => {php_str(password)}, 'virtualhost' => '/', 'ssl' => '']]];\n")
        cfg = load_config(env={}, magento_root=tmp_path)
        assert value_sources(cfg)["queue.url"] == "env.php"

        async def go() -> None:
            conn = await queue.connect(cfg.queue)
            await conn.close()

        asyncio.run(go())

    connect_with(unquote(broker.password or ""))
    with pytest.raises(AccessError) as refused:  # a password with / # @ in it: encoded, so refused, not garbled
        connect_with(MQ_SECRET)
    assert "ACCESS_REFUSED" in str(refused.value)
    assert MQ_SECRET not in str(refused.value) and "Tg4Yb" not in str(refused.value)


def test_shown_values_never_hold_a_secret(magento_root):
    cfg = load_config(env={}, magento_root=magento_root)
    shown = " ".join(shown_values(cfg).values())
    for secret in (DB_SECRET, S3_SECRET, MQ_SECRET, "p%40ss%2Fw%23rd"):
        assert secret not in shown
    assert shown_values(cfg)["queue.url"] == "amqps://magento:***@rabbit.internal:5672/shop"
    assert {key: shown_values(cfg)[key] for key in ("database.password", "storage.access_key", "database.ssl_verify",
                                                    "database.unix_socket", "storage.prefix", "magento_root")} == {
        "database.password": "set", "storage.access_key": "set", "database.ssl_verify": "false",
        "database.unix_socket": "not set", "storage.prefix": "shop1", "magento_root": str(magento_root)}
    Path("nacento-sync.yaml").write_text("database: {password: '', table_prefix: ''}\n")
    shown = shown_values(load_config(env={}, magento_root=magento_root))
    assert (shown["database.password"], shown["database.table_prefix"]) == ("not set", '""')


def test_doctor_reads_env_php_and_names_where_values_came_from(store, bucket, db_params, tmp_path, monkeypatch):
    from helpers import install_meta

    monkeypatch.chdir(tmp_path)
    install_meta(store)
    root = tmp_path / "magento"
    _store_env_php(root, store, bucket, db_params, f"{db_params['host']}:{db_params['port']}")
    res = cli("--magento-root", str(root), "doctor", "--json", env={"NACENTO_SYNC__BATCH_SIZE": "50"})
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert res.returncode == 0, res.output
    detail = checks["configuration"]["detail"]
    assert "database.name (env.php)" in detail and "storage.bucket (env.php)" in detail
    assert "sync.batch_size (environment)" in detail and "magento_root (flag)" in detail
    assert checks["database"]["ok"] and checks["storage"]["ok"]
    assert S3_SECRET not in res.output

    write_env_php(root, f"return ['db' => ['connection' => ['default' => ['password' => '{DB_SECRET}',]]]\n")
    broken = cli("--magento-root", str(root), "doctor")
    assert broken.returncode == 2
    assert str(root / "app" / "etc" / "env.php") in broken.output and DB_SECRET not in broken.output


def test_a_store_with_media_on_disk_syncs_from_its_magento_root_alone(store, db_params, tmp_path, monkeypatch):
    """env.php without remote_storage (Magento's default): the images are files under DIR/pub/media."""
    import hashlib

    from helpers import install_meta

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    install_meta(store)
    root = tmp_path / "magento"
    write_env_php(root, f"""return ['db' => ['table_prefix' => {php_str(store.prefix)}, 'connection' => ['default' => [
        'host' => {php_str(f"{db_params['host']}:{db_params['port']}")}, 'dbname' => {php_str(store.database)},
        'username' => {php_str(db_params["user"])}, 'password' => {php_str(db_params["password"])}]]]];
""")
    image = root / "pub" / "media" / "catalog" / "product" / "a" / "b" / "front.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"front bytes")
    product = store.add_product("SKU-1")
    export = write_ndjson(tmp_path / "export.ndjson", [{"sku": "SKU-1", "images": [{"file_path": "a/b/front.jpg"}]}])
    res = cli("--magento-root", str(root), "sync", str(export), "--json")
    assert res.returncode == 0, res.output
    assert json.loads(res.stdout)["stats"]["inserted"] == 1
    [row] = store.gallery(product.link_id)
    assert row["value"] == "/a/b/front.jpg"
    etags = store.query("SELECT s3_etag FROM {nacento_media_gallery_meta}")
    assert [r["s3_etag"] for r in etags] == [hashlib.md5(b"front bytes").hexdigest()]

    doctor = cli("--magento-root", str(root), "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 0, doctor.output
    assert checks["storage"]["ok"] and str(root / "pub" / "media") in checks["storage"]["detail"]
    assert checks["hash cache"]["ok"] and checks["sample image"]["ok"]
    assert "storage.backend (env.php)" in checks["configuration"]["detail"]

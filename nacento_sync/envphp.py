"""Magento's `app/etc/env.php`, read by PHP itself and mapped to our configuration keys.

env.php is PHP code returning an array, so only PHP reads it faithfully (constants such as
`PDO::MYSQL_ATTR_SSL_CA`, concatenations, `getenv()`): never regular expressions. Reading it runs code from
the web root, which is why the README says to run the tool as the owner of the Magento files, never as root.
What PHP says about a broken file can quote a password, so an error names the file and line only, and
PHP's own stderr is never shown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nacento_sync.config import ConfigError, split_host

log = logging.getLogger("nacento_sync")

#: Debian's packages: the interpreter, and pdo_mysql, which defines the `PDO::MYSQL_ATTR_*` constants
#: env.php files use for TLS.
PHP_PACKAGES = "php-cli php-mysql"
#: Seconds PHP may take to read env.php (a file that loops or waits must not hold the command).
PHP_TIMEOUT = 30.0
#: `remote_storage.driver` values we understand: `file` (Magento's default, pub/media on disk) and `aws-s3`.
SUPPORTED_DRIVERS = ("aws-s3", "file")
#: Our output's last line starts with this, whatever env.php itself writes to stdout.
_MARK = "NACENTO-ENVPHP "

#: Runs under `php -r` with the path as $argv[1] (never interpolated into the code) and `_MARK` as $argv[2].
#: Prints one JSON line: {"data": …} or {"error": kind, "file", "line", "class", "pdo_mysql"} — never a PHP
#: message (it may quote a secret).
_PHP = r"""
$mark = $argv[2];
$pdo = defined('PDO::MYSQL_ATTR_SSL_CA');
$done = false;
register_shutdown_function(function () use (&$done, $mark, $pdo) {
    if ($done) { return; }
    while (ob_get_level() > 0) { ob_end_clean(); }
    $e = error_get_last();
    $out = $e ? ['error' => 'fatal', 'file' => $e['file'], 'line' => $e['line']] : ['error' => 'exit'];
    echo "\n", $mark, json_encode($out + ['pdo_mysql' => $pdo], JSON_INVALID_UTF8_SUBSTITUTE), "\n";
});
$result = ['pdo_mysql' => $pdo];
ob_start();
try {
    $readable = is_readable($argv[1]);
    $data = $readable ? (static function ($f) { return include $f; })($argv[1]) : null;
    if (!$readable) {
        $result += ['error' => 'unreadable'];
    } elseif (!is_array($data)) {
        $result += ['error' => 'not_array', 'type' => gettype($data)];
    } else {
        $names = [];
        foreach (['SSL_CA', 'SSL_CERT', 'SSL_KEY', 'SSL_VERIFY_SERVER_CERT', 'SSL_CAPATH', 'SSL_CIPHER'] as $n) {
            if (defined("PDO::MYSQL_ATTR_$n")) { $names[constant("PDO::MYSQL_ATTR_$n")] = "PDO::MYSQL_ATTR_$n"; }
        }
        $connections = $data['db']['connection'] ?? null;
        if (is_array($connections)) {
            foreach ($connections as $k => $c) {
                if (is_array($c) && isset($c['driver_options']) && is_array($c['driver_options'])) {
                    $named = [];
                    foreach ($c['driver_options'] as $ok => $ov) { $named[$names[$ok] ?? "$ok"] = $ov; }
                    $data['db']['connection'][$k]['driver_options'] = (object) $named;
                }
            }
        }
        $result['data'] = (object) $data;  // an empty or list-like array is still a JSON object
    }
} catch (ParseError $e) {
    $result += ['error' => 'syntax', 'file' => $e->getFile(), 'line' => $e->getLine()];
} catch (Throwable $e) {
    $result += ['error' => 'exception', 'class' => get_class($e), 'file' => $e->getFile(), 'line' => $e->getLine()];
}
while (ob_get_level() > 0) { ob_end_clean(); }
$done = true;
$json = json_encode($result, JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION);
echo "\n", $mark, $json === false ? '{"error":"json"}' : $json, "\n";
"""


class EnvPhpError(ConfigError):
    """env.php cannot be read or holds what we cannot use (exit code 2)."""


def env_php_path(magento_root: str | Path, given_by: str = "--magento-root") -> Path:
    """`DIR/app/etc/env.php`, or EnvPhpError naming the directory (and how it was given) when it is not there."""
    root = Path(magento_root)
    if not root.is_dir():
        raise EnvPhpError(f"{given_by} {root}: not a directory")
    path = root / "app" / "etc" / "env.php"
    if not path.is_file():
        raise EnvPhpError(f"{given_by} {root}: no app/etc/env.php in it (is it Magento's root directory?)")
    return path


def read_env_php(path: str | Path, *, timeout: float = PHP_TIMEOUT) -> dict[str, Any]:
    """The array env.php returns, as PHP evaluates it; EnvPhpError (path and line only) on any problem."""
    path = Path(path).absolute()  # a bare relative name would be looked up in PHP's include_path
    php = shutil.which("php")
    if php is None:
        raise EnvPhpError(f"reading {path} needs PHP's command-line interpreter, and there is no `php` on PATH: "
                          f"install it (Debian/Ubuntu: apt-get install {PHP_PACKAGES}; php-mysql defines the "
                          "PDO::MYSQL_ATTR_* constants env.php uses for TLS), or give the settings in the config "
                          "file instead of --magento-root")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        log.warning("reading %s as root runs its PHP code as root: run nacento-sync as the owner of the Magento "
                    "files instead", path)
    argv = [php, "-d", "display_errors=0", "-d", "display_startup_errors=0", "-d", "log_errors=0",
            "-d", "html_errors=0", "-r", _PHP, "--", str(path), _MARK]
    try:
        # Its own session, so a timeout kills whatever env.php may have started too.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        raise EnvPhpError(f"cannot run {php} to read {path}: {e.strerror or type(e).__name__}") from None
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise EnvPhpError(f"{path}: PHP did not finish reading it within {timeout:g} s") from None
    return _answer(path, stdout, proc.returncode)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a pipe held open elsewhere must not hold us
        proc.communicate(timeout=5)


def _answer(path: Path, stdout: bytes, returncode: int) -> dict[str, Any]:
    """PHP's one-line answer, checked. Pure."""
    lines = [ln for ln in stdout.decode("utf-8", "replace").splitlines() if ln.startswith(_MARK)]
    try:
        answer = json.loads(lines[-1][len(_MARK):]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise EnvPhpError(f"{path}: PHP gave no answer (exit status {returncode}); not shown: its messages may "
                          "quote a secret")
    if isinstance(answer.get("data"), dict):
        return answer["data"]
    kind = answer.get("error")
    where = _where(path, answer)
    if kind == "syntax":
        raise EnvPhpError(f"{where}: PHP syntax error (PHP's message not shown: it may quote a secret)")
    if kind in ("exception", "fatal"):
        hint = "" if answer.get("pdo_mysql") else (
            f"; the PDO::MYSQL_ATTR_* constants are not defined: install php-mysql (Debian: apt-get install "
            f"{PHP_PACKAGES})")
        error = f"PHP {_word(answer['class'])}" if isinstance(answer.get("class"), str) else "PHP fatal error"
        raise EnvPhpError(f"{where}: {error} while reading it (PHP's message not shown: it may quote a secret)"
                          + hint)
    if kind == "unreadable":
        raise EnvPhpError(f"{path}: this user cannot read it: run nacento-sync as the owner of the Magento files")
    if kind == "not_array":
        raise EnvPhpError(f"{path}: does not return an array (it returns {_word(answer.get('type'))})")
    if kind == "exit":
        raise EnvPhpError(f"{path}: stopped PHP (exit or die) before returning its array")
    raise EnvPhpError(f"{path}: PHP could not encode what it returns as JSON")


def _where(path: Path, answer: Mapping[str, Any]) -> str:
    line = answer.get("line")
    file = answer.get("file")
    at = f"line {line}" if isinstance(line, int) else "an unknown line"
    if isinstance(file, str) and file and file != str(path):
        return f"{path}: in {_word(file)}, {at}"  # an included file failed
    return f"{path}: {at}"


def _word(value: Any) -> str:
    return value if isinstance(value, str) and value.isprintable() else "?"


# The pure mapping: env.php's array → our configuration sections and keys.

_TLS_OPTIONS = {"PDO::MYSQL_ATTR_SSL_CA": "ssl_ca", "PDO::MYSQL_ATTR_SSL_CERT": "ssl_cert",
                "PDO::MYSQL_ATTR_SSL_KEY": "ssl_key", "PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT": "ssl_verify"}


def config_from_envphp(data: Mapping[str, Any], magento_root: str | Path, *,
                       storage: bool = True) -> dict[str, dict[str, Any]]:
    """Our configuration (section → key → value) from env.php's array: `db.connection.default` and
    `db.table_prefix`, `remote_storage` (unless not `storage`: set elsewhere, so env.php's driver does not
    matter), `queue.amqp`. Keys env.php does not set are left out, so each falls through to the defaults.
    Values are not validated here: `load_config` does it, naming the key. Pure."""
    out: dict[str, dict[str, Any]] = {}
    db = _mapping(data.get("db"))
    database = _database(_mapping(_mapping(db.get("connection")).get("default")))
    if db.get("table_prefix") is not None:
        database["table_prefix"] = _text(db["table_prefix"])
    if database:
        out["database"] = database
    if storage:
        out["storage"] = _storage(data.get("remote_storage"), Path(magento_root))
    url = amqp_url(_mapping(_mapping(data.get("queue")).get("amqp")))
    if url:
        out["queue"] = {"url": url}
    return out


def _database(conn: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if conn.get("host") not in (None, ""):
        out.update(split_host(_text(conn["host"])))
    if conn.get("port") not in (None, ""):
        out["port"] = conn["port"]
    for ours, theirs in (("name", "dbname"), ("user", "username"), ("password", "password")):
        if conn.get(theirs) is not None:
            out[ours] = _text(conn[theirs])
    options = _mapping(conn.get("driver_options"))
    for theirs, ours in _TLS_OPTIONS.items():
        if options.get(theirs) not in (None, ""):
            out[ours] = options[theirs]
    return out


def _storage(remote: Any, magento_root: Path) -> dict[str, Any]:
    remote = _mapping(remote)
    driver = remote.get("driver", "file")
    if driver in (None, "", "file"):
        return {"backend": "filesystem", "root": str(magento_root / "pub" / "media")}
    if driver != "aws-s3":
        raise EnvPhpError(f"remote_storage.driver {_word(driver)!r} is not supported: supported drivers are "
                          f"{', '.join(SUPPORTED_DRIVERS)} (or set storage.bucket in the config file or environment, "
                          "and env.php's remote_storage is not used)")
    conf = _mapping(remote.get("config"))
    creds = _mapping(conf.get("credentials"))
    found = {"bucket": conf.get("bucket"), "region": conf.get("region"), "endpoint": conf.get("endpoint"),
             "path_style": conf.get("use_path_style_endpoint"), "access_key": creds.get("key"),
             "secret_key": creds.get("secret"), "prefix": remote.get("prefix")}
    return {"backend": "s3", **{ours: value for ours, value in found.items() if value not in (None, "")}}


def amqp_url(amqp: Mapping[str, Any]) -> str | None:
    """`queue.amqp`'s host, port, user, password, virtualhost and ssl as one amqp(s):// URL, user, password
    and virtual host percent-encoded; None without a host. Without user and password the URL has none (the
    client then logs in as RabbitMQ's guest). Pure."""
    if amqp.get("host") in (None, ""):
        return None
    tls = _truthy(amqp.get("ssl"))
    defaults = {"port": 5671 if tls else 5672, "virtualhost": "/"}
    host, port, user, password, vhost = (_amqp_text(amqp, key, defaults.get(key, ""))
                                         for key in ("host", "port", "user", "password", "virtualhost"))
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user or password else ""
    path = "/" if vhost == "/" else "/" + quote(vhost, safe="")
    return f"{'amqps' if tls else 'amqp'}://{login}{host}:{port}{path}"


def _amqp_text(amqp: Mapping[str, Any], key: str, default: Any) -> str:
    value = _text(amqp.get(key) if amqp.get(key) not in (None, "") else default)
    if not isinstance(value, str):
        raise EnvPhpError(f"queue.amqp.{key}: expected text or a number")
    return value


def _truthy(value: Any) -> bool:
    """env.php writes booleans as true, 1, '1' or 'true' (and false as '', '0', 'false')."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> Any:
    """A number where env.php means text (a password 123456) becomes text; anything else is left for the
    validation to name."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

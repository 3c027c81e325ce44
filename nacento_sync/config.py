"""Configuration: YAML file, then `NACENTO_<SECTION>__<KEY>` environment variables, then command-line flags.

Validated with pydantic; an error names the bad key (`storage.bucket: field required`). Messages never
quote a secret: a YAML syntax error gives the file, line and column only (the offending line may hold a
password), and every message built from configuration passes through `mask`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from nacento_sync.errors import UsageError

DEFAULT_FILE = "nacento-sync.yaml"
ENV_PREFIX = "NACENTO_"


class ConfigError(UsageError):
    """Bad or missing configuration (exit code 2)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Set by `load_config` when no config file was found, so that an access error (made with the
    #: defaults) says so: "no config file found (looked for …)".
    _missing_file: str = PrivateAttr("")

    def explain(self, message: str) -> str:
        """`message`, plus where the config file was looked for when none was found."""
        return f"{message}; {self._missing_file}" if self._missing_file else message


class DatabaseConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    user: str = "magento"
    password: SecretStr = SecretStr("")
    name: str = "magento"
    table_prefix: str = Field("", pattern=r"^[A-Za-z0-9_]*$")
    unix_socket: str | None = None
    #: Seconds to open a connection, TCP connect, handshake and login included (a server that accepts
    #: the connection and never answers fails the command within this).
    connect_timeout: float = Field(10, gt=0, le=600)
    #: Seconds a statement may go without any answer before the connection counts as lost (error 2013):
    #: above InnoDB's default lock wait (50 s), so a lock wait times out first, as a retriable error.
    read_timeout: float = Field(120, gt=0, le=86_400)

    #: TLS (env.php `driver_options` `PDO::MYSQL_ATTR_SSL_CA` / `_CERT` / `_KEY` / `_VERIFY_SERVER_CERT`):
    #: a connection uses TLS when `ssl_ca` or `ssl_cert` is set.
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_verify: bool = True

    @model_validator(mode="after")
    def _split_host(self) -> DatabaseConfig:
        """Accept env.php's `host:port` and socket-path spellings of `host`."""
        if self.host.startswith("/") and self.unix_socket:
            return self  # an explicit unix_socket wins
        for key, value in split_host(self.host).items():
            setattr(self, key, value)
        return self

    #: Seconds a run keeps reconnecting after losing the database mid-run (restart, KILL, network) before
    #: it stops with exit 3; 0 stops at once.
    retry_seconds: float = Field(60, ge=0, le=86_400)


def split_host(host: str) -> dict[str, Any]:
    """env.php's spellings of `host` as keys: `name`, `name:port`, a Unix socket path (host `localhost`),
    `name:/socket/path`. Pure."""
    if host.startswith("/"):
        return {"host": "localhost", "unix_socket": host}
    if host.count(":") == 1:
        name, port = host.split(":")
        if port.isascii() and port.isdigit():
            return {"host": name, "port": int(port)}
        if port.startswith("/"):
            return {"host": name, "unix_socket": port}
    return {"host": host}


class StorageConfig(_Section):
    #: Where the images are: "s3" (the bucket Magento uses as remote storage) or "filesystem" (Magento's own
    #: `pub/media` directory on this host).
    backend: Literal["s3", "filesystem"] = "s3"
    #: backend s3: the bucket (required).
    bucket: str | None = Field(None, min_length=3)
    #: backend filesystem: Magento's `pub/media` directory (required); images are `<root>/catalog/product/m/y/a.jpg`.
    root: str | None = Field(None, min_length=1)
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    path_style: bool = False
    prefix: str = ""
    #: Seconds per attempt to open a connection to the endpoint.
    connect_timeout: float = Field(5, gt=0, le=600)
    #: Seconds per attempt to wait for an answer (a request makes up to `max_attempts` attempts).
    read_timeout: float = Field(10, gt=0, le=3600)
    #: Attempts per request, the first included: 5xx, 429, SlowDown, resets and timeouts are retried.
    max_attempts: int = Field(12, ge=1, le=50)
    #: Seconds: the longest back-off before a retry (full jitter: a random wait up to min(this, 0.1 × 2^(i-1))).
    max_backoff: float = Field(5, gt=0, le=300)

    @model_validator(mode="after")
    def _backend_keys(self) -> StorageConfig:
        """Each backend's own required key, reported at that key (`storage.bucket: Field required`)."""
        needed = "bucket" if self.backend == "s3" else "root"
        if getattr(self, needed) is None:
            raise ValidationError.from_exception_data(
                "StorageConfig", [InitErrorDetails(type="missing", loc=(needed,), input={})])
        if self.backend == "filesystem" and self.prefix.strip("/"):
            raise ValidationError.from_exception_data("StorageConfig", [InitErrorDetails(
                type="value_error", loc=("prefix",), input=self.prefix,
                ctx={"error": ValueError("only backend s3 has a key prefix; leave it empty for filesystem")})])
        return self

    @property
    def where(self) -> str:
        """The storage in words, for messages: `bucket 'shop-media'` or `storage.root /srv/magento/pub/media`."""
        return f"storage.root {self.root}" if self.backend == "filesystem" else f"bucket {self.bucket!r}"


class SyncConfig(_Section):
    mode: Literal["merge", "replace"] = "merge"
    batch_size: int = Field(200, ge=1, le=10_000)
    concurrency: int = Field(32, ge=1, le=1024)
    etag_strategy: Literal["auto", "head", "list"] = "auto"
    #: After each batch, delete the resized copies (cache/<hash>/…) of images whose bytes changed or were deleted.
    purge_cache: bool = False
    #: Where replace-mode runs journal their changes without `--journal`; default (resolved at use)
    #: `$XDG_STATE_HOME/nacento-sync/journal`, XDG's default being `~/.local/state`.
    journal_dir: str | None = None
    #: Default journals older than this many days are deleted when a run starts.
    journal_keep_days: int = Field(30, ge=1, le=36_500)


#: Magento's cron `bulk_mark_incomplete_operations_as_failed` fails operations open for longer than this.
MAX_RETRY_SECONDS = 12 * 3600


class QueueConfig(_Section):
    """The RabbitMQ broker and names used by `submit` / `worker` (asynchronous mode)."""

    #: amqp://user:password@host:port/vhost (env.php `queue.amqp`); secret: shown only via `redact_url`.
    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    exchange: str = Field("magento", min_length=1, max_length=255)
    topic: str = Field("nacento.gallery.process", min_length=1, max_length=255)
    queue: str = Field("nacento.gallery.process", min_length=1, max_length=200)
    #: The admin whose System › Action Logs › Bulk Actions grid lists the bulks (magento_bulk.user_id).
    admin_user_id: int | None = Field(None, ge=1, le=4_294_967_295)
    #: Seconds to wait before each retry of a retriable failure; then the message is parked.
    retry_delays: list[int] = Field(default_factory=lambda: [10, 60, 600], max_length=20)

    def checked_url(self) -> SecretStr:
        """The URL, or ConfigError naming `queue.url` without quoting it. Checked by the commands that use
        the queue (not at load: `sync` ignores the section), before a client library parses it."""
        problem = amqp_url_problem(self.url.get_secret_value())
        if problem:
            raise ConfigError(self.explain(f"invalid configuration: queue.url: {problem}"))
        return self.url

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _delays(cls, value: Any) -> Any:
        """`NACENTO_QUEUE__RETRY_DELAYS="10,60,600"` (or a JSON list) from the environment."""
        if isinstance(value, str):
            text = value.strip().removeprefix("[").removesuffix("]")
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 86_400 for d in value):
            raise ValueError("each delay must be between 1 and 86400 seconds")
        if sum(value) > MAX_RETRY_SECONDS:
            raise ValueError(f"the delays add up to {sum(value)} s, over {MAX_RETRY_SECONDS} s (12 h): Magento's cron "
                             "marks operations open longer than that as failed")
        return value


_AMQP_FORM = "amqp://user:password@host:port/vhost"


def amqp_url_problem(url: str) -> str | None:
    """What is wrong with an AMQP URL, in words that quote no part of it (it holds a password); None if
    a client library can parse it. Pure."""
    m = re.fullmatch(r"(amqps?)://(.*)", url, re.S)
    if not m:
        return f"must be an amqp:// or amqps:// URL ({_AMQP_FORM})"
    rest = m[2]
    if any(ord(c) < 33 or ord(c) == 127 for c in rest):
        return f"must not contain spaces or control characters ({_AMQP_FORM})"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if "@" in rest[len(authority):] or "@" in userinfo:
        return ("the user or password contains an unescaped / # ? or @: percent-encode them "
                "(%2F %23 %3F %40)")
    if at and re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
        return "a % in the user or password must be escaped as %25"
    hp = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]*)(?::(.*))?", hostport)
    if not hp or not hp[1]:
        return f"the host is missing or malformed ({_AMQP_FORM})"
    port = hp[2]
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "the port must be a number from 1 to 65535"
    return None


def redact_url(url: str | SecretStr) -> str:
    """The URL with its password replaced by `***`, for messages and logs."""
    text = url.get_secret_value() if isinstance(url, SecretStr) else url
    return re.sub(r"^([a-z]+://[^:/@]*:).*@", r"\1***@", text)  # greedy: an unescaped @ hides more, never less


#: A URL's `user:password@` anywhere in a text (a client library's error quoting its endpoint).
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"'<>]*:)[^\s@\"'<>]*@")
#: Shorter secrets are not masked: replacing one or two characters would garble the text, not hide anything.
_MIN_SECRET = 3


def _secret_forms(secret: str | SecretStr | None) -> Iterator[str]:
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret or ""
    if re.match(r"^[a-z]+://", text):  # a URL: only its password (escaped and not) is secret
        m = re.match(r"^[a-z]+://[^:/@]*:(.*)@", text)
        text = m[1] if m else ""
    for form in dict.fromkeys((text, unquote(text))):
        if len(form) >= _MIN_SECRET:
            yield form


def mask(text: str, *secrets: str | SecretStr | None) -> str:
    """`text` with each secret (a password, a key, or a URL's password) and every URL's password
    replaced by `***`: for any message that may quote configuration, a URL or a library's error."""
    for secret in secrets:
        for form in sorted(_secret_forms(secret), key=len, reverse=True):
            text = text.replace(form, "***")
    return _URL_USERINFO.sub(r"\1***@", text)


def scrub(text: str, url: SecretStr) -> str:
    """`text` (e.g. a client library's error) without the URL's password anywhere in it."""
    return mask(text, url)


class Config(_Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    #: Optional here so `schema` commands work without it; `sync` and `sku` require it.
    storage: StorageConfig | None = None
    sync: SyncConfig = Field(default_factory=SyncConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    #: Where each dotted key's value came from (see `value_sources`); set by `load_config`.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    #: The Magento root whose app/etc/env.php was read, if any.
    _magento_root: str | None = PrivateAttr(None)


#: Where a value can come from, highest precedence first; key by key.
SOURCES = ("flag", "environment", "config file", "env.php", "default")


def value_sources(cfg: Config) -> dict[str, str]:
    """Every configuration key (`database.host`, …; `magento_root` when one was given) → where its value
    came from: one of `SOURCES`. Keys of an absent section (`storage` for `schema`) are left out. Pure."""
    out = {}
    if cfg._magento_root is not None:
        out["magento_root"] = cfg._sources.get("magento_root", "default")
    for name in type(cfg).model_fields:
        section = getattr(cfg, name)
        if section is not None:
            for key in type(section).model_fields:
                out[f"{name}.{key}"] = cfg._sources.get(f"{name}.{key}", "default")
    return out


def shown_values(cfg: Config) -> dict[str, str]:
    """The same keys as `value_sources`, each value as text safe to print (`not set`, `""`, `true`): a
    secret is `set` or `not set`, `queue.url` has its password replaced by `***`. Pure."""
    out = {}
    for dotted in value_sources(cfg):
        if dotted == "magento_root":
            out[dotted] = str(cfg._magento_root)
            continue
        section, key = dotted.split(".", 1)
        value = getattr(getattr(cfg, section), key)
        if (section, key) == ("queue", "url"):
            out[dotted] = redact_url(value)
        elif (section, key) in SECRET_KEYS:
            out[dotted] = "set" if value is not None and value.get_secret_value() else "not set"
        else:
            out[dotted] = _shown(value)
    return out


def _shown(value: Any) -> str:
    """A value as YAML would spell it, so that an empty one is still visible."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else str(value)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


#: Keys whose values are secrets: never quoted, masked in any message.
SECRET_KEYS = {("database", "password"), ("storage", "access_key"), ("storage", "secret_key"), ("queue", "url")}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def secret_values(data: Mapping[str, Any]) -> list[str]:
    """Every string found under a secret key of raw (unvalidated) configuration, whatever its type."""
    out: list[str] = []
    for section, key in SECRET_KEYS:
        part = data.get(section)
        if isinstance(part, Mapping):
            out += _strings(part.get(key))
    return out


def yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """A YAML syntax error as file, line and column: never the offending line, which may hold a
    password. The parser's own words are kept with what they quote replaced by `…` (an alias, a tag or
    a character may be part of a secret), except whitespace like a tab and markers like <stream end>. Pure."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"config file {path}: not valid text (a character at byte {exc.position} is not allowed)"
    problem = getattr(exc, "problem", None) or ""
    problem = re.sub(r"'(\\[tnr]|<[a-z ]+>)'|'[^']*'|\"[^\"]*\"",
                     lambda m: m[0] if m[1] is not None else "…", problem)
    return f"config file {path}: YAML syntax error at {where}" + (f" ({problem})" if problem else "")


def config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The file to read and whether the user asked for it (a missing default file is fine)."""
    if explicit:
        return Path(explicit), True
    if env.get("NACENTO_CONFIG"):
        return Path(env["NACENTO_CONFIG"]), True
    return Path(DEFAULT_FILE), False


def load_config(
    explicit: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
    magento_root: str | Path | None = None,
) -> Config:
    """Read the file, apply environment variables and flag overrides, validate.

    With a Magento root (`magento_root`, else `$NACENTO_MAGENTO_ROOT`, else the file's top-level
    `magento_root`), its app/etc/env.php is read with PHP and fills the keys nothing else sets: flags >
    environment > config file > env.php > defaults, key by key. `value_sources` says which won."""
    env = os.environ if env is None else env
    path, required = config_path(explicit, env)
    file_data: dict[str, Any] = {}
    missing = ""
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_bytes()) or {}  # bytes: yaml detects the encoding
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or type(e).__name__}") from None
        except yaml.YAMLError as e:
            raise ConfigError(yaml_error(path, e)) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of sections")
        file_data = loaded
    elif required:
        raise ConfigError(f"config file {path} not found")
    else:
        missing = f"no config file found (looked for --config, $NACENTO_CONFIG and {path.absolute()})"
    root, root_source = _magento_root(magento_root, env, file_data, path)
    env_data = _from_env(env)
    flag_data = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}
    php_data: dict[str, Any] = {}
    php_path = None
    if root is not None:
        from nacento_sync import envphp  # runs PHP: only with a Magento root

        given_by = {"flag": "--magento-root", "environment": "NACENTO_MAGENTO_ROOT",
                    "config file": f"magento_root (config file {path})"}[root_source]
        php_path = envphp.env_php_path(root, given_by)
        raw = envphp.read_env_php(php_path)
        try:
            php_data = envphp.config_from_envphp(raw, root, storage=not _storage_set(file_data, env_data, flag_data))
        except envphp.EnvPhpError as e:
            raise envphp.EnvPhpError(f"{php_path}: {e}") from None
        php_data = _socket_with_its_host(php_data, file_data, env_data, flag_data)
        if missing:
            missing = f"settings from {php_path} (no config file)"
    data: dict[str, Any] = {}
    sources: dict[str, str] = {"magento_root": root_source} if root is not None else {}
    for source, layer in (("env.php", php_data), ("config file", file_data), ("environment", env_data),
                          ("flag", flag_data)):
        applied = layer if source == "env.php" else _without_empty_over(layer, data)
        data = _merge(data, applied)
        sources.update(dict.fromkeys(_leaf_keys(applied), source))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        if php_path is None:
            where = f"file {path}, env {ENV_PREFIX}<SECTION>__<KEY>" if path.exists() else missing
        else:
            where = (f"file {path}" if path.exists() else "no config file") + \
                f", env {ENV_PREFIX}<SECTION>__<KEY>, env.php {php_path}"
        raise ConfigError(validation_message(e, f" ({where})", secret_values(data), sources)) from None
    for section in (cfg.database, cfg.storage, cfg.sync, cfg.queue):
        if section is not None:
            section._missing_file = missing
    cfg._sources = sources
    cfg._magento_root = None if root is None else str(root)
    return cfg


def _magento_root(explicit: str | Path | None, env: Mapping[str, str], file_data: dict[str, Any],
                  path: Path) -> tuple[Path | None, str]:
    """The Magento root and where it was given (flag > environment > config file); pops the file's key,
    which is not a section."""
    in_file = file_data.pop("magento_root", None)
    if explicit:
        return Path(explicit), "flag"
    if env.get("NACENTO_MAGENTO_ROOT"):
        return Path(env["NACENTO_MAGENTO_ROOT"]), "environment"
    if in_file is not None:
        if not isinstance(in_file, str) or not in_file:
            raise ConfigError(f"config file {path}: magento_root must be a directory path")
        return Path(in_file), "config file"
    return None, "default"


def _storage_set(*layers: Mapping[str, Any]) -> bool:
    """Whether `storage.backend` or `storage.bucket` is set in any of the layers: then env.php's storage
    section is not used at all (a storage is taken whole from one place, never half from each). Pure."""
    return any(isinstance(layer.get("storage"), Mapping)
               and any(layer["storage"].get(key) not in (None, "") for key in ("backend", "bucket"))
               for layer in layers)


def _socket_with_its_host(php: dict[str, Any], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """env.php's socket path (its `host` spelled as a path) only while its host is used: a `database.host`
    set elsewhere means TCP to that host, which the socket would otherwise silently replace. Pure."""
    database = php.get("database")
    if isinstance(database, Mapping) and "unix_socket" in database and any(
            isinstance(layer.get("database"), Mapping) and layer["database"].get("host") is not None
            for layer in layers):
        php = {**php, "database": {k: v for k, v in database.items() if k != "unix_socket"}}
    return php


def _without_empty_over(layer: Mapping[str, Any], below: Mapping[str, Any]) -> dict[str, Any]:
    """`layer` without the empty (null) keys that would hide a value from below: an empty `endpoint:` in the
    file leaves env.php's. Pure."""
    out: dict[str, Any] = {}
    for section, keys in layer.items():
        under = below.get(section)
        if isinstance(keys, Mapping) and isinstance(under, Mapping):
            out[section] = {k: v for k, v in keys.items() if v is not None or under.get(k) is None}
        else:
            out[section] = keys
    return out


def _leaf_keys(layer: Mapping[str, Any]) -> Iterator[str]:
    """The dotted keys a layer sets; a `database.host` spelled `name:port` or as a socket path sets those
    keys too."""
    for section, keys in layer.items():
        if not isinstance(keys, Mapping):
            continue
        for key, value in keys.items():
            yield f"{section}.{key}"
            if (section, key) == ("database", "host") and isinstance(value, str):
                yield from (f"database.{k}" for k in split_host(value))


def validation_message(exc: ValidationError, source: str, secrets: list[str],
                       origins: Mapping[str, str] | None = None) -> str:
    """One line per bad key, from pydantic's message only (never the input value), masked, and where the
    key's value came from when `origins` (dotted key → source) says. An unknown key is named only if it looks
    like a key name: in a mis-indented file it may be a secret's text. Pure."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "extra_forbidden" and not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", loc[-1]):
            lines.append(f"{'.'.join(loc[:-1]) or 'top level'}: an unknown key that does not look like a key "
                         "name (not shown: it may be a misplaced value)")
            continue
        origin = (origins or {}).get(".".join(loc))
        lines.append(f"{'.'.join(loc)}: {err['msg']}" + (f" (from {origin})" if origin else ""))
    return mask("invalid configuration" + source + ":\n  " + "\n  ".join(lines), *secrets)

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

    @model_validator(mode="after")
    def _split_host(self) -> DatabaseConfig:
        """Accept env.php's `host:port` and socket-path spellings of `host`."""
        if self.host.startswith("/") and not self.unix_socket:
            self.unix_socket, self.host = self.host, "localhost"
        elif self.host.count(":") == 1:
            host, port = self.host.split(":")
            if port.isdigit():
                self.host, self.port = host, int(port)
            elif port.startswith("/"):
                self.host, self.unix_socket = host, port
        return self


class StorageConfig(_Section):
    bucket: str = Field(min_length=3)
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    path_style: bool = False
    prefix: str = ""
    #: Seconds per attempt to open a connection to the endpoint.
    connect_timeout: float = Field(5, gt=0, le=600)
    #: Seconds per attempt to wait for an answer (botocore makes up to 3 attempts per request).
    read_timeout: float = Field(10, gt=0, le=3600)


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
) -> Config:
    """Read the file, apply environment variables and flag overrides, validate."""
    env = os.environ if env is None else env
    path, required = config_path(explicit, env)
    data: dict[str, Any] = {}
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
        data = loaded
    elif required:
        raise ConfigError(f"config file {path} not found")
    else:
        missing = f"no config file found (looked for --config, $NACENTO_CONFIG and {path.absolute()})"
    data = _merge(data, _from_env(env))
    clean = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}
    data = _merge(data, clean)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        source = f" (file {path}, env {ENV_PREFIX}<SECTION>__<KEY>)" if path.exists() else f" ({missing})"
        raise ConfigError(validation_message(e, source, secret_values(data))) from None
    for section in (cfg.database, cfg.storage, cfg.sync, cfg.queue):
        if section is not None:
            section._missing_file = missing
    return cfg


def validation_message(exc: ValidationError, source: str, secrets: list[str]) -> str:
    """One line per bad key, from pydantic's message only (never the input value), masked. An unknown
    key is named only if it looks like a key name: in a mis-indented file it may be a secret's text. Pure."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "extra_forbidden" and not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", loc[-1]):
            lines.append(f"{'.'.join(loc[:-1]) or 'top level'}: an unknown key that does not look like a key "
                         "name (not shown: it may be a misplaced value)")
            continue
        lines.append(f"{'.'.join(loc)}: {err['msg']}")
    return mask("invalid configuration" + source + ":\n  " + "\n  ".join(lines), *secrets)

"""Configuration: YAML file, then `NACENTO_<SECTION>__<KEY>` environment variables, then command-line flags.

Validated with pydantic; an error names the bad key (`storage.bucket: field required`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

DEFAULT_FILE = "nacento-sync.yaml"
ENV_PREFIX = "NACENTO_"


class ConfigError(Exception):
    """Bad or missing configuration (exit code 2)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    user: str = "magento"
    password: SecretStr = SecretStr("")
    name: str = "magento"
    table_prefix: str = Field("", pattern=r"^[A-Za-z0-9_]*$")
    unix_socket: str | None = None

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


class SyncConfig(_Section):
    mode: Literal["merge", "replace"] = "merge"
    batch_size: int = Field(200, ge=1, le=10_000)
    concurrency: int = Field(32, ge=1, le=1024)
    etag_strategy: Literal["auto", "head", "list"] = "auto"
    #: After each batch, delete the resized copies (cache/<hash>/…) of images whose bytes changed or were deleted.
    purge_cache: bool = False


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

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str) or not text.startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

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
        return value


def redact_url(url: str | SecretStr) -> str:
    """The URL with its password replaced by `***`, for messages and logs."""
    text = url.get_secret_value() if isinstance(url, SecretStr) else url
    return re.sub(r"^([a-z]+://[^:/@]*:).*@", r"\1***@", text)  # greedy: an unescaped @ hides more, never less


def scrub(text: str, url: SecretStr) -> str:
    """`text` (e.g. a client library's error) without the URL's password anywhere in it."""
    m = re.match(r"^[a-z]+://[^:/@]*:(.*)@", url.get_secret_value())
    secret = m.group(1) if m else ""
    return text.replace(secret, "***") if len(secret) >= 3 else text


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
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of sections")
        data = loaded
    elif required:
        raise ConfigError(f"config file {path} not found")
    data = _merge(data, _from_env(env))
    clean = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}
    data = _merge(data, clean)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"{key}: {err['msg']}")
        source = f" (file {path}, env {ENV_PREFIX}<SECTION>__<KEY>)" if path.exists() else ""
        raise ConfigError("invalid configuration" + source + ":\n  " + "\n  ".join(lines)) from None

"""What every command shares: the Typer app, consoles, options, configuration loading, exit codes.

The CLI parses, calls the library, renders and maps outcomes to exit codes; errors map by type
(`errors.UsageError` → 2, `errors.AccessError` → 3). Heavy adapters (aioboto3, aio-pika) are imported by
the commands that need them, so `--help` and `schema status` start fast; so are `nacento_sync.config` (pydantic,
yaml), asyncio and rich.logging. Command parameters keep cheap types (str, Path, bool, int, Enum): Typer
evaluates their annotations when the commands are registered.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich.console import Console

from nacento_sync import __version__
from nacento_sync.console import JsonFormatter, Mode, PlainFormatter, error
from nacento_sync.errors import AccessError, UsageError

if TYPE_CHECKING:  # pydantic, yaml (config) and asyncio: imported when a command runs, so `--help` starts fast
    from nacento_sync.config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ACCESS = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _PlainHelpMixin:
    """Help that shows no type label on flags (`--json <bool>`) nor on an argument with a metavar, and an
    argument's metavar (`EXPORT...`) in the usage line."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) or (isinstance(param, typer.core.TyperArgument) and param.metavar):
                param.display_type_rich = lambda ctx: None  # noqa: ARG005  (typer passes ctx= by keyword)
        return params

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument) and param.metavar:
                pieces.append(param.metavar)
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class PlainCommand(_PlainHelpMixin, typer.core.TyperCommand):
    pass


class PlainGroup(_PlainHelpMixin, typer.core.TyperGroup):
    pass


app = typer.Typer(
    name="nacento-sync",
    cls=PlainGroup,
    help=(
        "Keep Magento 2 product image galleries in sync with a PIM export.\n\n"
        "Images already live in the S3/R2 bucket Magento uses as remote storage; nacento-sync writes only "
        "the gallery rows, labels, positions and roles, and remembers each object's ETag so unchanged "
        "images cost nothing on the next run.\n\n"
        "Exit codes: 0 all SKUs ok (warnings allowed), 1 some SKU failed or a record was rejected, "
        "2 bad usage or config, 3 database or bucket unreachable / access denied / nothing found, "
        "130/143 interrupted.\n\n"
        "Example: nacento-sync --config store.yaml sync export.ndjson"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err = Console(stderr=True, soft_wrap=True)
out = Console()
log = logging.getLogger("nacento_sync")


class ModeChoice(str, Enum):
    merge = "merge"
    replace = "replace"  # type: ignore[assignment]  # a member named like str.replace: the mode's name


class EtagChoice(str, Enum):
    auto = "auto"
    head = "head"
    list = "list"


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", metavar="FILE", show_default=False,
                 help="YAML config file. Default: $NACENTO_CONFIG, else ./nacento-sync.yaml."),
]
MagentoRootOpt = Annotated[
    Path | None,
    typer.Option("--magento-root", metavar="DIR", show_default=False,
                 help="Magento's root directory: read the database, storage and queue settings from "
                 "DIR/app/etc/env.php (with PHP; run as the files' owner, never as root). Flags, environment and "
                 "config file override it key by key. Default: $NACENTO_MAGENTO_ROOT, else the config file's "
                 "magento_root."),
]
ModeOpt = Annotated[
    ModeChoice | None,
    typer.Option("--mode", help="merge (default): add and update, never remove. replace: also delete the "
                 "product's images that the export does not list.", show_default=False),
]
PurgeOpt = Annotated[bool, typer.Option(
    "--purge-cache", help="After each batch commits, delete the resized copies (media/catalog/product/cache/<hash>/…) "
    "of images whose bytes changed or that were deleted (config sync.purge_cache; needs s3:DeleteObject on "
    "…/cache/*).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Compute the same report, write nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON report alone on stdout (logs go to stderr).")]


def _version(value: bool) -> None:
    if value:
        print(f"nacento-sync {__version__}")
        raise typer.Exit(EXIT_OK)


class LogFormat(str, Enum):
    text = "text"
    json = "json"


@app.callback()
def _main(
    ctx: typer.Context,
    config: ConfigOpt = None,
    magento_root: MagentoRootOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr, and the final one-line "
                                        "summary on stdout (for cron, which mails what reaches stderr).")] = False,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="text, or json: one JSON object per "
                                                  "stderr line (time, level, message) for log pipelines.")]
    = LogFormat.text,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,  # noqa: ARG001
                                          help="Print the version and exit.")] = False,  # (handled by _version)
) -> None:
    ctx.obj = {"config": str(config) if config else None, "quiet": quiet,
               "magento_root": str(magento_root) if magento_root else None}
    Mode.quiet, Mode.json = quiet, log_format is LogFormat.json
    configure_logging()


def configure_logging() -> None:
    """The tool's log records (logger `nacento_sync`) on stderr, as `--quiet` and `--log-format` say.

    Replaces the handler a previous invocation in the same process installed, and leaves the root logger
    (and whatever a host application or test runner put there) alone."""
    logger = logging.getLogger("nacento_sync")
    for old in [h for h in logger.handlers if getattr(h, "nacento", False)]:
        logger.removeHandler(old)
    handler: logging.Handler
    if Mode.json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = log_handler(err)
    handler.nacento = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if Mode.quiet else logging.INFO)
def log_handler(console: Console) -> logging.Handler:
    """Log records on the console as plain text: they carry SKUs, paths and servers' messages."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False, markup=False)
    handler.setFormatter(PlainFormatter("%(message)s", datefmt="[%X]"))
    return handler


#: Command-line flags that override a configuration key: an invalid value names the flag, not the key.
FLAGS = {("sync", "mode"): "--mode", ("sync", "batch_size"): "--batch-size",
         ("sync", "concurrency"): "--concurrency", ("sync", "etag_strategy"): "--etag-strategy"}


def flag_problems(overrides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Each flag value checked alone against its configuration key's rules, as `--flag VALUE: why`."""
    from pydantic import ValidationError

    from nacento_sync.config import Config

    problems = []
    for section, values in overrides.items():
        model: Any = Config.model_fields[section].annotation  # a section model class
        for key, value in values.items():
            if value is None:
                continue
            try:
                model.__pydantic_validator__.validate_assignment(model.model_construct(), key, value)
            except ValidationError as e:
                flag = FLAGS.get((section, key), f"{section}.{key}")
                problems.append(f"{flag} {value}: {e.errors()[0]['msg']}")
    return problems


def _config(ctx: typer.Context, need_storage: bool = False, **overrides: dict[str, Any]) -> Config:
    """The configuration (flags, environment, file, env.php); exit 2 with the bad flag or key named."""
    from nacento_sync.config import ConfigError, load_config

    try:
        if problems := flag_problems(overrides):
            raise ConfigError("invalid option: " + "; ".join(problems))
        cfg = load_config(ctx.obj["config"], overrides, magento_root=ctx.obj.get("magento_root"))
        if need_storage and cfg.storage is None:
            raise ConfigError("invalid configuration:\n  storage.bucket: Field required "
                              "(config file section storage, or NACENTO_STORAGE__BUCKET)")
        return cfg
    except ConfigError as e:
        error(err, e)
        raise typer.Exit(EXIT_USAGE) from None


def call(coro):
    """Run a coroutine; access problems exit 3, usage problems 2, each with its one-line message."""
    import asyncio

    try:
        return asyncio.run(coro)
    except AccessError as e:
        error(err, e)
        raise typer.Exit(EXIT_ACCESS) from None
    except UsageError as e:  # ConfigError included: queue.url is checked by the queue commands
        error(err, e)
        raise typer.Exit(EXIT_USAGE) from None

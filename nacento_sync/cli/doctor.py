"""`doctor`: is this installation ready? One line per check, with a hint for each failure."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated

import typer

from nacento_sync.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PlainCommand, app, out
from nacento_sync.console import say

if TYPE_CHECKING:  # pydantic and yaml (config), asyncio: imported when the command runs
    from nacento_sync.config import Config
    from nacento_sync.doctor import Check

_STYLE = {"✓": "green", "✗": "red", "i": "cyan"}


@app.command("doctor", cls=PlainCommand)
def doctor(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks alone as JSON on stdout: "
                                           '{"checks": [{"name", "ok", "info", "detail", "hint"}], "ok"}.')] = False,
) -> None:
    """Check the configuration, the database (privileges, Magento's tables, the meta table), the bucket and
    the broker: one line per check, ✓ passed, ✗ failed with a hint, i information.

    Example: nacento-sync --config store.yaml doctor

    Exit codes: 0 no check failed, 1 some check failed, 2 bad usage or configuration.
    """
    from nacento_sync.doctor import all_ok, report_json, summary

    cfg, check = _config_check(ctx.obj["config"], ctx.obj.get("magento_root"))
    checks = [check]
    if cfg is not None:
        import asyncio

        from nacento_sync.doctor_checks import run_checks  # the adapters: only once the config is valid

        checks += asyncio.run(run_checks(cfg, "queue" in cfg.model_fields_set))
    if json_out:
        print(json.dumps(report_json(checks)))  # ASCII: a control character in a detail stays escaped
    else:
        for c in checks:
            say(out, (c.mark, _STYLE[c.mark]), " ", c.name, ": ", c.detail)
            if c.hint and not c.skipped:  # a skipped line's hint is "fix the check above"
                say(out, "    hint: ", c.hint)
        say(out, summary(checks))
    raise typer.Exit(EXIT_USAGE if cfg is None else EXIT_OK if all_ok(checks) else EXIT_FAILED)


def _config_check(explicit: str | None, magento_root: str | None) -> tuple[Config | None, Check]:
    """The configuration and its ✓ line, or None and a ✗ line (the message names the key, never a secret)."""
    from nacento_sync.config import ConfigError, config_path, load_config, value_sources
    from nacento_sync.doctor import config_detail, failed, passed

    path, _ = config_path(explicit, os.environ)
    try:
        cfg = load_config(explicit, magento_root=magento_root)  # env.php errors are ConfigErrors: exit 2
        if "queue" in cfg.model_fields_set:
            cfg.queue.checked_url()
    except ConfigError as e:
        detail = "; ".join(part.strip() for part in str(e).splitlines() if part.strip()).replace(":;", ":")
        return None, failed("configuration", detail, "fix the key named, in the config file or its "
                            "NACENTO_<SECTION>__<KEY> environment variable")
    return cfg, passed("configuration", "valid; " + config_detail(str(path), path.exists(), value_sources(cfg)))

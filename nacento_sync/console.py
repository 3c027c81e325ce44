"""Console text from values that are data: an export, the configuration, a server, the environment.

Such a value is printed as plain text: never read as rich markup (`[bold red]`, `[/]`, `[link=…]`) and
never written raw to the terminal (an ESC, BEL or CSI in a SKU, a file name or a server's message would
otherwise recolour, retitle or scramble the operator's terminal). Control characters are shown as
Python-style escapes (`\\x1b`, `\\x9b`, `\\u202e`), so the operator sees exactly what the data holds.
The JSON report and `--json` outputs keep the exact values; only console output goes through here.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

#: C0 controls (but newline, kept where a layout wants line breaks), DEL, C1 controls, and the Unicode
#: line separators and bidirectional overrides that can reorder or hide what a terminal shows.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_NO_NL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: Lone surrogates (a file name that is not UTF-8, decoded by Python with `surrogateescape`).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: Any, *, newlines: bool = False) -> str:
    """`value` as printable text: control characters (and, unless `newlines`, line breaks) escaped.

    Total: never raises, whatever the value (its `str()` failing is shown as such)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception as e:  # a value whose __str__ fails must not take the output down with it
        text = f"<unprintable {type(value).__name__}: {type(e).__name__}>"
    text = (_CONTROL if newlines else _CONTROL_NO_NL).sub(_escape, text)
    return _SURROGATE.sub(_escape, text)


def text(value: Any, style: str | None = None, *, newlines: bool = False) -> Text:
    """A rich `Text` of `value`: rendered literally (a `Text` is never parsed as markup)."""
    return Text(plain(value, newlines=newlines), style=style or "")


def line(*parts: str | Text | tuple[str, str]) -> Text:
    """Assemble one output line from data parts: every `str` is plain data, `(str, style)` is styled data."""
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append(plain(part[0]), style=part[1])
        else:
            out.append(plain(part))
    return out


class Mode:
    """How messages reach stderr, set once by the CLI from `--quiet` and `--log-format`."""

    #: `--quiet`: on stderr only errors (the command's final one-line summary goes to stdout).
    quiet = False
    #: `--log-format json`: every stderr line is a JSON object (`time`, `level`, `message`).
    json = False


def json_line(level: str, message: str, **extra: Any) -> str:
    """One JSON log line; `ensure_ascii` keeps any control character or lone surrogate escaped."""
    return json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level,
                       "message": message, **extra}, ensure_ascii=True)


def _to_stderr(console: Console, level: str, text: Text) -> bool:
    """Handle a stderr message under `--quiet` / `--log-format json`; True when nothing is left to print."""
    if not console.stderr:
        return False
    if Mode.quiet and level != "error":
        return True
    if Mode.json:
        console.file.write(json_line(level, text.plain) + "\n")
        console.file.flush()
        return True
    return False


def say(console: Console, *parts: str | Text | tuple[str, str]) -> None:
    """Print one line built by `line` (soft-wrapped, so a long value is never cut)."""
    text = line(*parts)
    if not _to_stderr(console, "info", text):
        console.print(text, soft_wrap=True, highlight=False)


def error(console: Console, message: Any) -> None:
    """`error: <message>`; the message is data (it often quotes a value or a server's words)."""
    _labelled(console, "error", "red", message)


def warning(console: Console, message: Any) -> None:
    _labelled(console, "warning", "yellow", message)


def _labelled(console: Console, level: str, style: str, message: Any) -> None:
    text = plain(message, newlines=True)
    if not _to_stderr(console, level, line(text)):
        console.print(line((f"{level}:", style), " ", text), soft_wrap=True, highlight=False)


class JsonFormatter(logging.Formatter):
    """Log records as JSON lines for log pipelines (`--log-format json`)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as e:  # a bad format string or argument must not lose the log line
            message = f"{record.msg!r} {record.args!r} (unformattable: {type(e).__name__})"
        return json_line(record.levelname.lower(), message, logger=record.name)


class PlainFormatter(logging.Formatter):
    """Log records as plain text: the message and its arguments (a SKU, a server's error) escaped."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = super().format(record)
        except Exception as e:  # a bad format string or argument must not lose the log line
            message = f"{record.msg!r} {record.args!r} (unformattable: {type(e).__name__})"
        return plain(message, newlines=True)

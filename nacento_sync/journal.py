"""The change journal: one JSON line per row a run writes, so an operator can read it and `undo` can revert it.

Format (README, "Change journal"): a `header` line, then per transaction its `row` lines grouped by SKU
(written and fsynced before COMMIT), then a `commit` or `rollback` line. A reader ignores the rows of a
transaction marked `rollback` and a torn last line (a crash mid-write). Values are JSON; the columns listed
in a row line's `utc` hold timestamps, written as `YYYY-MM-DDTHH:MM:SSZ` in UTC.

The pure parts (`diff`, `encode`, `read`) need no database; `JournalFile` owns the file (0600, fsync).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from nacento_sync.console import plain
from nacento_sync.errors import UsageError

FORMAT = 1
GALLERY = "catalog_product_entity_media_gallery"
TO_ENTITY = "catalog_product_entity_media_gallery_value_to_entity"
VALUE = "catalog_product_entity_media_gallery_value"
VIDEO = "catalog_product_entity_media_gallery_value_video"
VARCHAR = "catalog_product_entity_varchar"
META = "nacento_media_gallery_meta"
#: Children before parents: the order of deletions (inserts go the other way).
CHILDREN_FIRST = (META, VIDEO, VALUE, TO_ENTITY, VARCHAR, GALLERY)
PARENTS_FIRST = tuple(reversed(CHILDREN_FIRST))

Action = Literal["insert", "update", "delete"]
Row = dict[str, Any]
#: table → primary key tuple → row (every column).
Snapshot = dict[str, dict[tuple, Row]]


def key_columns(table: str, link: str) -> tuple[str, ...]:
    """The primary key of each table the tool writes (`link`: entity_id or row_id)."""
    return {GALLERY: ("value_id",), TO_ENTITY: ("value_id", link), VALUE: ("record_id",), META: ("record_id",),
            VIDEO: ("value_id", "store_id"), VARCHAR: ("value_id",)}[table]


class JournalFileError(UsageError):
    """The journal file cannot be written (checked before anything is synced: exit 2)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"journal file {plain(path)}: {problem}")
        self.path, self.problem = path, problem


class JournalRefused(UsageError):
    """A journal that `undo` must not apply (a dry run's, another store's, unreadable): exit 2."""


@dataclass(frozen=True)
class Change:
    """One row written: its table, action, key and the whole row before and/or after."""

    table: str
    action: Action
    key: dict[str, Any]
    before: Row | None
    after: Row | None
    sku: str
    product_id: int | None = None


# ---------------------------------------------------------------- pure: values, diff, lines


def encode(value: Any) -> Any:
    """A column value as JSON: timestamps in UTC (the session's time zone is UTC), decimals as text."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{value.microsecond:06d}" if value.microsecond else "") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "surrogateescape")
    return value


def encode_row(row: Mapping[str, Any] | None) -> Row | None:
    return None if row is None else {k: encode(v) for k, v in row.items()}


_UTC = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def decode(value: Any, is_timestamp: bool) -> Any:
    """A journal value as a statement argument: a UTC timestamp back to `YYYY-MM-DD HH:MM:SS`."""
    if is_timestamp and isinstance(value, str) and (m := _UTC.fullmatch(value)):
        return f"{m[1]} {m[2]}"
    return value


def diff(before: Snapshot, after: Snapshot, link: str, owner: Mapping[tuple[str, tuple], tuple[str, int | None]],
         order: Iterable[str]) -> list[Change]:
    """The changes that turn `before` into `after`, grouped by SKU (in `order`), then children-first
    deletions, updates, parents-first inserts: the order a transaction writes them.

    `owner[(table, key)]` is the (sku, product_id) a row belongs to; rows nobody owns are skipped."""
    per_sku: dict[str, list[Change]] = {sku: [] for sku in order}
    tables = list(PARENTS_FIRST)
    steps: list[tuple[Action, list[str]]] = [("delete", list(CHILDREN_FIRST)), ("update", tables), ("insert", tables)]
    for action, names in steps:
        for table in names:
            old, new = before.get(table, {}), after.get(table, {})
            keys = (sorted(k for k in old if k not in new) if action == "delete"
                    else sorted(k for k in new if k not in old) if action == "insert"
                    else sorted(k for k in new if k in old and encode_row(old[k]) != encode_row(new[k])))
            for k in keys:
                who = owner.get((table, k))
                if who is None:
                    continue
                cols = key_columns(table, link)
                per_sku.setdefault(who[0], []).append(Change(
                    table, action, dict(zip(cols, k, strict=True)),
                    encode_row(old.get(k)) if action != "insert" else None,
                    encode_row(new.get(k)) if action != "delete" else None, who[0], who[1]))
    return [c for changes in per_sku.values() for c in changes]


def owners(before: Snapshot, after: Snapshot, link: str,
           products: Mapping[int, tuple[str, int | None]]) -> dict[tuple[str, tuple], tuple[str, int | None]]:
    """Which SKU each row belongs to: by its link field; a gallery or video row by the lowest link of the
    batch it is (or was) linked to; a meta row by its value row. `products`: link id → (sku, entity_id)."""
    owner: dict[tuple[str, tuple], tuple[str, int | None]] = {}
    gallery_link: dict[int, int] = {}
    for snap in (before, after):
        for row in snap.get(TO_ENTITY, {}).values():
            if row[link] in products:
                vid = row["value_id"]
                gallery_link[vid] = min(gallery_link.get(vid, row[link]), row[link])
    value_owner: dict[int, tuple[str, int | None]] = {}
    for snap in (before, after):
        for key, row in snap.get(TO_ENTITY, {}).items():
            if row[link] in products:
                owner[(TO_ENTITY, key)] = products[row[link]]
        for table in (GALLERY, VIDEO):
            for key, row in snap.get(table, {}).items():
                if row["value_id"] in gallery_link:
                    owner[(table, key)] = products[gallery_link[row["value_id"]]]
        for key, row in snap.get(VALUE, {}).items():
            who = products.get(row[link]) or (products[gallery_link[row["value_id"]]]
                                              if row["value_id"] in gallery_link else None)
            if who is not None:
                owner[(VALUE, key)] = who
                value_owner[row["record_id"]] = who
        for key, row in snap.get(VARCHAR, {}).items():
            if row[link] in products:
                owner[(VARCHAR, key)] = products[row[link]]
    for snap in (before, after):
        for key, row in snap.get(META, {}).items():
            if row["record_id"] in value_owner:
                owner[(META, key)] = value_owner[row["record_id"]]
    return owner


def batch_changes(before: Snapshot, after: Snapshot, link: str,
                  products: Mapping[int, tuple[str, int | None]]) -> list[Change]:
    """A batch's changes, each row owned by its SKU, grouped in the batch's SKU order."""
    return diff(before, after, link, owners(before, after, link, products), [sku for sku, _ in products.values()])


def row_line(change: Change, tx: int) -> dict[str, Any]:
    """A change as a journal line."""
    after = change.after
    key = change.key
    utc = sorted({k for row in (change.before, after) if row for k, v in row.items()
                  if isinstance(v, str) and _UTC.fullmatch(v)})
    line: dict[str, Any] = {"type": "row", "tx": tx, "sku": change.sku, "product_id": change.product_id,
                            "table": change.table, "action": change.action, "key": key,
                            "before": change.before, "after": after}
    if utc:
        line["utc"] = utc
    return line


# ---------------------------------------------------------------- the file


def default_dir(configured: str | None) -> Path:
    """`sync.journal_dir`, else `$XDG_STATE_HOME/nacento-sync/journal` (XDG's default `~/.local/state`)."""
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "nacento-sync" / "journal"


def file_stem(request_id: str, now: dt.datetime | None = None) -> str:
    """`<request id reduced to [A-Za-z0-9._-]>-<UTC timestamp>`: safe as a file name, sorts by time."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", request_id)[:100].lstrip(".") or "run"
    return f"{safe}-{(now or dt.datetime.now(dt.UTC)).strftime('%Y%m%dT%H%M%S%fZ')}"


def create_default(directory: Path, request_id: str) -> JournalFile:
    """A new journal in `directory` (created 0700), never overwriting a file: `JournalFileError` if impossible."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise JournalFileError(directory, f"cannot create the directory: {e.strerror or e}") from None
    stem = file_stem(request_id)
    for n in range(100):
        path = directory / (f"{stem}.ndjson" if n == 0 else f"{stem}-{n}.ndjson")
        try:
            return JournalFile(path, exclusive=True)
        except FileExistsError:
            continue
    raise JournalFileError(directory / f"{stem}.ndjson", "every candidate name exists")


def prune(directory: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete the default journals (`*.ndjson` in the journal directory) older than `keep_days`; never raises."""
    limit = (now if now is not None else time.time()) - keep_days * 86_400
    removed = []
    with contextlib.suppress(OSError):
        for path in directory.glob("*.ndjson"):
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()
                    removed.append(path)
    return removed


class JournalFile:
    """An open journal: lines appended, each transaction's rows fsynced before it commits. Mode 0600."""

    def __init__(self, path: Path, *, exclusive: bool = False) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise
        except OSError as e:
            raise JournalFileError(path, f"cannot write: {e.strerror or e}") from None
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape")
        self._tx = 0
        self.rows = 0
        #: Why the journal stopped being written (a full disk…); the run then stops writing to the database.
        self.error: str | None = None

    def _write(self, lines: Iterable[Mapping[str, Any]], sync: bool) -> None:
        self._file.write("".join(json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                                 for line in lines))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def header(self, *, request_id: str, mode: str, dry_run: bool, database: str, table_prefix: str, link_field: str,
               version: str, command: str = "sync", undoes: list[str] | None = None) -> None:
        line: dict[str, Any] = {"type": "header", "format": FORMAT, "command": command, "request_id": request_id,
                                "mode": mode, "dry_run": dry_run, "database": database, "table_prefix": table_prefix,
                                "link_field": link_field, "version": version,
                                "created_at": encode(dt.datetime.now(dt.UTC).replace(tzinfo=None))}
        if undoes is not None:
            line["undoes"] = undoes
        self._write([line], sync=True)

    def transaction(self, changes: list[Change]) -> int:
        """Write (and fsync) a transaction's rows before it commits; returns its number for the marker."""
        self._tx += 1
        self._write([row_line(c, self._tx) for c in changes], sync=True)
        self.rows += len(changes)
        return self._tx

    def committed(self, tx: int) -> None:
        """A hint for readers; undo does not need it (after a COMMIT nothing may fail)."""
        with contextlib.suppress(OSError, ValueError):
            self._write([{"type": "commit", "tx": tx}], sync=False)

    def rolled_back(self, tx: int) -> None:
        """Mark a transaction's rows as not applied (undo skips them)."""
        with contextlib.suppress(OSError, ValueError):
            self._write([{"type": "rollback", "tx": tx}], sync=True)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.flush()
            os.fsync(self._file.fileno())
        with contextlib.suppress(OSError, ValueError):
            self._file.close()


# ---------------------------------------------------------------- reading


@dataclass
class Journal:
    """A journal as read: its header and the row lines of transactions that did not roll back."""

    path: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: A half-written last line was ignored (the writer crashed mid-line).
    torn: bool = False

    @property
    def created_at(self) -> str:
        return str(self.header.get("created_at") or "")


def read(path: Path) -> Journal:
    """Read a journal; a torn last line is ignored, rolled-back transactions' rows are dropped.
    Raises `JournalRefused` for a file that is not a journal."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JournalRefused(f"cannot read journal {plain(path)}: {e.strerror or e}") from None
    text = data.decode("utf-8", "surrogateescape")
    raw = text.split("\n")
    torn = False
    if raw and raw[-1] == "":
        raw.pop()
    elif raw:  # no newline at the end: the last line was being written when the run stopped
        raw.pop()
        torn = True
    lines: list[dict[str, Any]] = []
    for number, line in enumerate(raw, 1):
        try:
            value = json.loads(line)
        except ValueError:
            raise JournalRefused(f"journal {plain(path)} line {number} is not JSON") from None
        if not isinstance(value, dict):
            raise JournalRefused(f"journal {plain(path)} line {number} is not an object")
        lines.append(value)
    if not lines or lines[0].get("type") != "header" or lines[0].get("format") != FORMAT:
        raise JournalRefused(f"{plain(path)} is not a nacento-sync journal (no format-{FORMAT} header line)")
    rolled = {line.get("tx") for line in lines if line.get("type") == "rollback"}
    rows = [line for line in lines[1:] if line.get("type") == "row" and line.get("tx") not in rolled]
    for row in rows:
        if row.get("action") not in ("insert", "update", "delete") or not isinstance(row.get("key"), dict):
            raise JournalRefused(f"journal {plain(path)}: a row line has no valid action or key")
    return Journal(path, lines[0], rows, torn)

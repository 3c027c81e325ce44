"""`doctor`'s pure part: the check lines, the `SHOW GRANTS` parser and checker, and what is a failure.

The shell (`doctor_checks`) asks the servers and hands the answers here; every decision whether a finding
fails, is information or passes is made by a function of this module. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nacento_sync import grants as grant_list
from nacento_sync.results import EtagResult, StorageFailure

#: The line marks: passed, failed, information.
OK_MARK, FAIL_MARK, INFO_MARK = "✓", "✗", "i"


@dataclass(frozen=True)
class Check:
    """One line of the report. `ok` is True for information lines too (`info`): they never fail the run."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    info: bool = False
    #: Not run because a check it depends on failed (a ✗: nothing was verified).
    skipped: bool = False

    @property
    def mark(self) -> str:
        return FAIL_MARK if not self.ok else INFO_MARK if self.info else OK_MARK

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "info": self.info, "detail": self.detail, "hint": self.hint}


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, hint: str) -> Check:
    return Check(name, False, detail, hint)


def informed(name: str, detail: str, hint: str | None = None) -> Check:
    return Check(name, True, detail, hint, info=True)


def skipped(name: str, because: str) -> Check:
    """A check that could not run because an earlier one failed: not verified, so not ok."""
    return Check(name, False, f"not checked: {because}", f"fix the {because.split()[0]} check first", skipped=True)


def all_ok(checks: Iterable[Check]) -> bool:
    return all(c.ok for c in checks)


def summary(checks: list[Check]) -> str:
    """The last line of the text report."""
    failures = sum(not c.ok and not c.skipped for c in checks)
    not_checked = sum(c.skipped for c in checks)
    return f"doctor: {len(checks)} checks, {failures} failed" + (f", {not_checked} not checked" if not_checked else "")


def report_json(checks: list[Check]) -> dict[str, Any]:
    """`{"checks": [{"name", "ok", "info", "detail", "hint"}], "ok"}`."""
    return {"checks": [c.as_json() for c in checks], "ok": all_ok(checks)}


# ---------------------------------------------------------------- SHOW GRANTS


@dataclass(frozen=True)
class GrantLine:
    """One `GRANT … ON …` line: its table-wide privileges (`ALL` for ALL PRIVILEGES; column-level
    privileges are left out: they do not cover the statements the tool runs) and what they are on.
    `database` None is `*.*`; `table` None is `db.*`, where `database` is a LIKE pattern."""

    privileges: frozenset[str]
    database: str | None
    table: str | None


_IDENT = re.compile(r"`((?:[^`]|``)*)`|\"((?:[^\"]|\"\")*)\"|([A-Za-z0-9_$\\%]+)|(\*)")
_ROUTINES = ("FUNCTION ", "PROCEDURE ", "PACKAGE ")


def _outside(text: str) -> Iterator[int]:
    """The indices of `text` outside quotes and parentheses (a grant's object names may hold either)."""
    depth, quote = 0, ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "`'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            yield i


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at the character `sep` outside parentheses and quotes."""
    parts, start = [], 0
    for i in _outside(text):
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _find_on(text: str) -> int:
    """Where the ` ON ` keyword between the privileges and the object is, outside quotes; -1 if none."""
    return next((i for i in _outside(text) if text[i:i + 4].upper() == " ON "), -1)


def _identifier(text: str) -> tuple[str | None, str]:
    """The identifier at the start of `text` (None for `*`) and what follows it."""
    m = _IDENT.match(text)
    if not m:
        raise ValueError("no identifier")
    if m[4]:
        return None, text[m.end():]
    if m[1] is not None:
        return m[1].replace("``", "`"), text[m.end():]
    if m[2] is not None:
        return m[2].replace('""', '"'), text[m.end():]
    return m[3], text[m.end():]


def parse_grant(line: str) -> GrantLine | None:
    """A `SHOW GRANTS` line (MariaDB or MySQL), or None for what grants no table privilege: a role
    membership (`GRANT role TO user`), PROXY, routines, USAGE. Raises ValueError on a line it cannot read."""
    text = line.strip()
    if not text.upper().startswith("GRANT "):
        return None
    text = text[6:]
    on = _find_on(text)
    if on < 0:
        return None  # `GRANT role TO user`: the role's own lines are listed when it is active
    privileges: set[str] = set()
    for item in _split_top(text[:on], ","):
        words = item.strip()
        if not words or "(" in words:  # a column-level privilege: covers some columns only
            continue
        name = " ".join(words.upper().split())
        privileges.add("ALL" if name in ("ALL", "ALL PRIVILEGES") else name)
    target = text[on + 4:].lstrip()
    if target.upper().startswith(_ROUTINES) or "PROXY" in privileges:
        return None
    if target.upper().startswith("TABLE "):
        target = target[6:].lstrip()
    first, rest = _identifier(target)
    if rest.startswith("."):
        second, rest = _identifier(rest[1:])
        database, table = first, second
    else:  # `ON *` or `ON tbl`: relative to the session's default database; SHOW GRANTS never prints it
        raise ValueError("an object without a database")
    if not re.match(r"\s+TO\s", rest, re.I):
        raise ValueError("no TO after the object")
    if database is None and table is not None:
        raise ValueError("*.table")
    privileges.discard("USAGE")
    return GrantLine(frozenset(privileges), database, table)


def _like(pattern: str, name: str) -> bool:
    """MySQL's database-name pattern of a database-level grant: `%` and `_` wildcards, `\\` escapes them."""
    regex = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        i += 1
    return re.fullmatch(regex, name, re.S) is not None


def _covers(grant: GrantLine, privilege: str, database: str, table: str) -> bool:
    if not ({"ALL", privilege} & grant.privileges):
        return False
    if grant.database is None:
        return True
    if grant.table is None:
        return _like(grant.database, database)
    return grant.database == database and grant.table == table


def missing_privileges(lines: Iterable[str], database: str, prefix: str,
                       wanted: tuple[grant_list.Grant, ...]) -> dict[str, tuple[str, ...]]:
    """Real table name → the privileges `wanted` needs on it that no `SHOW GRANTS` line gives; empty
    when nothing is missing. Lines it cannot read grant nothing (so a missing privilege is never hidden)."""
    parsed = []
    for line in lines:
        try:
            grant = parse_grant(line)
        except ValueError:
            continue
        if grant is not None:
            parsed.append(grant)
    missing: dict[str, tuple[str, ...]] = {}
    for table, privileges in grant_list.by_table(wanted).items():
        real = prefix + table
        lacking = tuple(p for p in privileges if not any(_covers(g, p, database, real) for g in parsed))
        if lacking:
            missing[real] = lacking
    return missing


def account_sql(current_user: str) -> str:
    """`CURRENT_USER()` (`user@host`) as a GRANT's account: `'user'@'host'`."""
    user, _, host = current_user.rpartition("@")
    if not user:
        user, host = current_user, "%"
    return "'" + user.replace("'", "''") + "'@'" + host.replace("'", "''") + "'"


def privileges_check(missing: Mapping[str, tuple[str, ...]], database: str, account: str,
                     scopes: tuple[str, ...], absent: Iterable[str] = ()) -> Check:
    """✓ when nothing is missing; else ✗ naming each missing grant, the hint the GRANT statements. A table
    in `absent` does not exist yet (the meta table before `schema install`): MariaDB refuses a grant on it."""
    commands = " and ".join({"sync": "sync/sku", "async": "submit/worker/status/requeue",
                             "schema": "schema install/uninstall"}[s] for s in scopes)
    if not missing:
        return passed("privileges", f"every privilege {commands} needs is granted to {account}")
    named = "; ".join(f"{', '.join(p)} on {table}" for table, p in missing.items())
    sql = " ".join(f"GRANT {', '.join(p)} ON {grant_list.quote(database)}.{grant_list.quote(table)} TO {account};"
                   for table, p in missing.items())
    later = [table for table in missing if table in set(absent)]
    first = f"run `nacento-sync schema install` first ({', '.join(later)} does not exist yet), then " if later else ""
    return failed("privileges", f"missing for {commands}: {named}", f"{first}as an administrator: {sql}")


# ---------------------------------------------------------------- the other decisions


def charset_check(narrow: Mapping[str, str]) -> Check:
    """Information, never a failure: Magento's own tables are utf8mb3 on MariaDB."""
    if not narrow:
        return passed("character set", "the columns written hold any character (utf8mb4)")
    columns = ", ".join(f"{column} {name}" for column, name in sorted(narrow.items()))
    return informed("character set", f"{columns}: 4-byte characters (emoji) cannot be stored",
                    "labels holding them are dropped with warning unstorable_text, SKUs and paths rejected")


def meta_check(has_meta: bool, table: str) -> Check:
    if has_meta:
        return passed("meta table", f"{table} installed")
    return failed("meta table", f"{table} is missing", "nacento-sync schema install")


def sample_check(results: Mapping[str, EtagResult], keys: Mapping[str, str]) -> Check:
    """The gallery's sample images HEADed: none → information; one readable is enough (the others
    missing is information); all missing or refused fails. `keys` maps each path to its object key."""
    name = "sample image"
    if not results:
        return informed(name, "the gallery is empty: no image to read")
    readable = [p for p, r in results.items() if isinstance(r, str)]
    absent = [p for p, r in results.items() if r is None]
    refused = {p: r for p, r in results.items() if isinstance(r, StorageFailure)}
    if readable and not absent and not refused:
        return passed(name, f"{keys[readable[0]]} readable")
    if readable:
        others = ", ".join([*(keys[p] for p in absent), *(keys[p] for p in refused)])
        return informed(name, f"{keys[readable[0]]} readable; not readable: {others}",
                        "images missing from the bucket are counted in `missing` by a sync")
    if refused:
        path, failure = next(iter(refused.items()))
        return failed(name, f"HEAD {keys[path]}: {failure.reason}",
                      "the credentials need s3:GetObject on the bucket")
    return failed(name, f"none of the gallery's newest images is in the bucket (looked for {keys[absent[0]]})",
                  "check storage.bucket and storage.prefix: image /m/y/a.jpg is object "
                  "[<prefix>/]media/catalog/product/m/y/a.jpg")


def cache_folder_check(folders: list[str], where: str) -> Check:
    if folders:
        return passed("cache folder", f"{where} holds {len(folders)} folder(s) of resized copies")
    return informed("cache folder", f"no {where} yet: Magento creates it when it first resizes an image")


def purge_check(status: int, where: str) -> Check:
    """DeleteObject of a key that does not exist: 204 (or 200) allowed, anything else not."""
    if status in (200, 204):
        return passed("cache purge", f"deleting under {where} allowed (HTTP {status})")
    hint = f"sync.purge_cache needs s3:DeleteObject on {where}*" if status == 403 else \
        "check the endpoint: a DeleteObject should answer 204"
    return failed("cache purge", f"DeleteObject under {where} answered HTTP {status or 'nothing'}", hint)


def queue_check(depth: tuple[int, int] | None, queue: str, where: str) -> Check:
    if depth is None:
        return informed("broker", f"RabbitMQ at {where} reachable; queue {queue} not declared yet",
                        "the first `submit` or `worker` declares it")
    ready, consumers = depth
    return passed("broker", f"RabbitMQ at {where} reachable; queue {queue}: {ready} ready, {consumers} consumer(s)")


def config_detail(path: str, found: bool, sources: Mapping[str, str] | None) -> str:
    """Which file was read, and where each value not left at its default came from."""
    detail = f"config file {path}" if found else f"no config file ({path} not found): defaults and environment"
    if sources:
        given = [f"{key} ({source})" for key, source in sources.items() if source != "default"]
        detail += "; values: " + (", ".join(given) if given else "all defaults")
    return detail

"""Streaming reader of PIM exports: NDJSON/JSONL, bulk-API JSON bodies, gzip, stdin.

A bad record becomes a `Rejection` and the run goes on: one broken line in a nightly export must not
stop the other products from syncing. NDJSON is read line by line so memory does not grow with the feed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Annotated, Any, BinaryIO, Literal, cast

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictStr, ValidationError
from pydantic_core import PydanticCustomError

from nacento_sync.codes import Code
from nacento_sync.errors import UsageError
from nacento_sync.models import (
    MANAGED_ROLES,
    DesiredImage,
    Item,
    Rejection,
    StoreValues,
    printable,
    text_problem,
)
from nacento_sync.paths import canonical_path, normalize_role

#: Largest record accepted (raw NDJSON line without its terminator, or compact JSON of a bulk item).
MAX_RECORD_BYTES = 1_048_576
#: `catalog_product_entity.sku VARCHAR(64)`.
MAX_SKU_CHARS = 64
#: `catalog_product_entity_media_gallery_value.label VARCHAR(255)`.
MAX_LABEL_CHARS = 255
#: `position INT UNSIGNED`.
MAX_POSITION = 2**32 - 1
#: `store.code VARCHAR(32)`; Magento allows letters, digits and underscores.
MAX_STORE_CODE_CHARS = 32
_STORE_CODE = re.compile("[A-Za-z0-9_]+")
#: Store 0's code: its values are the top-level ones.
ADMIN_STORE_CODE = "admin"
#: Warning codes this module puts in `Item.warnings` (`"<code>: <message>"`).
WARNING_CODES: tuple[str, ...] = ("unknown_role", "duplicate_role", "duplicate_image", "label_whitespace")

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_READ_ERRORS = (OSError, EOFError, zlib.error)
#: Enough of the first non-blank line to apply the sniffing rule; the line itself may be any length.
_SNIFF_BYTES = 65536
_OPENS_BULK_KEY = re.compile(rb'\{\s*"(?:request|items)"')
_LABEL_WHITESPACE = re.compile("[\t\n\r]")
Format = Literal["ndjson", "json", "sniff"]


class FeedError(UsageError):
    """The input cannot be read at all (unlike a bad record, which is a Rejection): a usage error."""


class TextError(ValueError):
    """A text field holds a character that may not be stored; the message names the field."""


def check_text(field: str, value: str, *, label: bool = False) -> str:
    """`value`, checked before anything stores or prints it; `field` names it in the error (`images[0].label`).

    Rejected (TextError): lone surrogates (not Unicode, they cannot even be encoded), C0 controls, DEL and
    C1 controls. A label may contain TAB, LF and CR: each becomes a space (the caller warns), nothing else
    changes. For every text field of a record: SKU, path, label, role, store code.
    """
    if problem := text_problem(value, label=label):
        raise TextError(f"{field}: {problem}")
    return _LABEL_WHITESPACE.sub(" ", value) if label else value


# --- validation models ---------------------------------------------------------------------------


def _position(value: Any) -> Any:
    """JSON integers only (1.0 is an integer to JSON): bools, strings and fractions are type errors."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("position", "must be an integer")
    if not 0 <= value <= MAX_POSITION:
        raise PydanticCustomError("position", f"must be between 0 and {MAX_POSITION}")
    return value


def _disabled(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise PydanticCustomError("disabled", "must be true, false, 0 or 1")


def _label(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_LABEL_CHARS:
        raise PydanticCustomError("label", f"longer than {MAX_LABEL_CHARS} characters")
    return value


def _sku(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("sku", "must not be empty")
    if len(value) > MAX_SKU_CHARS:
        raise PydanticCustomError("sku", f"longer than {MAX_SKU_CHARS} characters")
    return value


class _Image(BaseModel):
    """One ImageEntry of the original module's API; `null` means "not sent" except for `label`."""

    model_config = ConfigDict(extra="ignore")

    file_path: StrictStr
    label: Annotated[StrictStr | None, AfterValidator(_label)] = None
    position: Annotated[int | None, BeforeValidator(_position)] = None
    disabled: Annotated[bool | None, BeforeValidator(_disabled)] = None
    roles: list[StrictStr] | None = None
    #: `{"<store code>": {"label": ..., "position": ..., "disabled": ...}}`, checked by `_store_values`.
    stores: dict[str, Any] | None = None


class _StoreEntry(BaseModel):
    """One image's values for one store view: the top-level fields' rules, but `null` is a value here
    (it is in `model_fields_set`: "no store-view value")."""

    model_config = ConfigDict(extra="ignore")

    label: Annotated[StrictStr | None, AfterValidator(_label)] = None
    position: Annotated[int | None, BeforeValidator(_position)] = None
    disabled: Annotated[bool | None, BeforeValidator(_disabled)] = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: Annotated[StrictStr, AfterValidator(_sku)]
    images: list[_Image]
    #: `{"<store code>": {"<role>": "<path>" | null}}`, checked by `_store_roles`.
    store_roles: dict[str, Any] | None = None


_TYPE_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "bool_type": "must be true, false, 0 or 1",
    "int_type": "must be an integer",
}


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "record"


def _describe(exc: ValidationError, prefix: str = "") -> str:
    """`images[2].position: must be an integer`, plus how many more problems the record has.

    `prefix` names the object that was validated (`images[0].stores["fr"]`) when it is not the record."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = _location(first["loc"]) if first["loc"] else ""
    where = f"{prefix}.{where}" if prefix and where else (prefix or where or "record")
    text = f"{where}: {_TYPE_MESSAGES.get(first['type'], first['msg'])}"
    return text + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


# --- store views ---------------------------------------------------------------------------------


def _key(text: str) -> str:
    """A JSON object key as shown in a field name (`["fr"]`): control characters and lone surrogates
    escaped (the message must stay printable and encodable), a long one truncated."""
    shown = printable(text if len(text) <= 40 else text[:37] + "...")
    return f'["{shown}"]'


def _store_code(field: str, code: str) -> None:
    """Check a store code (the key that `field` names, `images[0].stores["fr"]`); its text first."""
    check_text(field, code)
    if not code:
        raise ValueError(f"{field}: a store code must not be empty")
    if len(code) > MAX_STORE_CODE_CHARS:
        raise ValueError(f"{field}: a store code is at most {MAX_STORE_CODE_CHARS} characters")
    if not _STORE_CODE.fullmatch(code):
        raise ValueError(f"{field}: a store code has only letters, digits and underscores")
    if code.lower() == ADMIN_STORE_CODE:
        raise ValueError(f'{field}: store "{code}" is store 0 (all store views): its values are the '
                         "top-level ones")


def _clean_label(field: str, label: str | None, where: str, warnings: list[str]) -> str | None:
    """A label checked like any text; its TAB, LF and CR become spaces, with a `label_whitespace` warning."""
    if label is None:
        return None
    clean = check_text(field, label, label=True)
    if clean != label:
        warnings.append(Code.LABEL_WHITESPACE.notice(
            f"{where}: tab, line feed or carriage return in the label replaced by a space"))
    return clean


def _store_values(n: int, entry: _Image, warnings: list[str]) -> tuple[tuple[str, StoreValues], ...]:
    """Image `n`'s `stores`, validated like the top-level fields; feed order kept."""
    out: list[tuple[str, StoreValues]] = []
    for code, raw in (entry.stores or {}).items():
        field = f"images[{n - 1}].stores{_key(code)}"
        _store_code(field, code)
        if not isinstance(raw, dict):
            raise ValueError(f"{field}: must be an object")
        try:
            values = _StoreEntry.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(_describe(exc, field)) from None
        label = _clean_label(f"{field}.label", values.label, f"image {n} ({entry.file_path}) store {code}", warnings)
        if label is not None and not label.strip():
            label = None  # `""` clears, as at the top level
        given = frozenset(values.model_fields_set)
        out.append((code, StoreValues(label=label, position=values.position, disabled=values.disabled,
                                      given=given)))
    return tuple(out)


def _store_roles(raw: dict[str, Any] | None, paths: set[str],
                 warnings: list[str]) -> tuple[tuple[str, tuple[tuple[str, str | None], ...]], ...]:
    """The item's `store_roles`: role aliases as in `roles`, each path one of the item's `paths`."""
    out: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []
    for code, roles in (raw or {}).items():
        field = f"store_roles{_key(code)}"
        _store_code(field, code)
        if not isinstance(roles, dict):
            raise ValueError(f"{field}: must be an object")
        chosen: dict[str, tuple[str, str | None]] = {}
        for name, value in roles.items():
            where = f"{field}{_key(name)}"
            check_text(where, name)
            role = normalize_role(name)
            if role is None:
                warnings.append(Code.UNKNOWN_ROLE.notice(f'{field}: role "{name}" ignored'))
                continue
            if value is None:
                path = None
            elif isinstance(value, str):
                check_text(where, value)
                try:
                    path = canonical_path(value)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                if path not in paths:
                    raise ValueError(f"{where}: {path} is not one of the item's images")
            else:
                raise ValueError(f"{where}: must be a string or null")
            if role in chosen and chosen[role][1] != path:
                warnings.append(Code.DUPLICATE_ROLE.notice(f'{field}: role "{role}" given as "{chosen[role][0]}" and '
                                f'"{name}": "{name}" keeps it'))
            chosen[role] = (name, path)
        out.append((code, tuple((role, chosen[role][1]) for role in MANAGED_ROLES if role in chosen)))
    return tuple(out)


# --- records -----------------------------------------------------------------------------------


def _images(entries: list[_Image]) -> tuple[tuple[DesiredImage, ...], tuple[str, ...]]:
    """Map validated entries to DesiredImages; duplicates resolve to the later entry, with warnings."""
    warnings: list[str] = []
    paths: list[str] = []
    labels: list[str | None] = []
    roles: list[list[str]] = []
    stores: list[tuple[tuple[str, StoreValues], ...]] = []
    for n, entry in enumerate(entries, 1):
        # Every text of the image is checked before any of it goes into a warning or a path (the field's
        # name is only spelled out for an error: formatting it for every image costs more than the check).
        if text_problem(entry.file_path) is not None:
            check_text(f"images[{n - 1}].file_path", entry.file_path)
        for i, name in enumerate(entry.roles or ()):
            if text_problem(name) is not None:
                check_text(f"images[{n - 1}].roles[{i}]", name)
        label = entry.label
        # `text_problem` without `label=True` also flags TAB, LF and CR: exactly what the label rules reject or change.
        if label is not None and text_problem(label) is not None:
            label = _clean_label(f"images[{n - 1}].label", label, f"image {n} ({entry.file_path})", warnings)
        labels.append(label)
        try:
            paths.append(canonical_path(entry.file_path))
        except ValueError as exc:
            raise ValueError(f"images[{n - 1}].file_path: {exc}") from None
        codes: list[str] = []
        for name in entry.roles or ():
            code = normalize_role(name)
            if code is None:
                warnings.append(Code.UNKNOWN_ROLE.notice(f'image {n} ({entry.file_path}): role "{name}" ignored'))
            elif code not in codes:
                codes.append(code)
        roles.append(codes)
        stores.append(_store_values(n, entry, warnings))

    last = {path: n for n, path in enumerate(paths, 1)}
    kept = [n for n, path in enumerate(paths, 1) if last[path] == n]
    for n, path in enumerate(paths, 1):
        if last[path] != n:
            later = last[path]
            warnings.append(Code.DUPLICATE_IMAGE.notice(
                f"image {n} ({entries[n - 1].file_path}) dropped: image {later} "
                f"({entries[later - 1].file_path}) is the same file {path}"
            ))

    owner: dict[str, int] = {}
    for n in kept:
        for code in roles[n - 1]:
            if code in owner:
                prev = owner[code]
                warnings.append(Code.DUPLICATE_ROLE.notice(
                    f'role "{code}" claimed by image {prev} ({entries[prev - 1].file_path}) '
                    f"and image {n} ({entries[n - 1].file_path}): image {n} keeps it"
                ))
            owner[code] = n

    images = []
    for n in kept:
        entry = entries[n - 1]
        given = "label" in entry.model_fields_set
        label = labels[n - 1]
        label = label if label is not None and label.strip() else None
        images.append(
            DesiredImage(
                path=paths[n - 1],
                position=entry.position if entry.position is not None else n,
                label=label,
                label_given=given,
                disabled=entry.disabled,
                roles=tuple(code for code in MANAGED_ROLES if owner.get(code) == n),
                stores=stores[n - 1],
            )
        )
    return tuple(images), tuple(warnings)


def _readable_sku(obj: Any) -> str | None:
    """The record's SKU for a Rejection, when it is one that can be shown and hashed."""
    sku = obj.get("sku") if isinstance(obj, dict) else None
    return sku if isinstance(sku, str) and sku.strip() and text_problem(sku) is None else None


def parse_record(obj: Any, source: str, ordinal: int) -> Item | Rejection:
    """Validate one decoded record (`{"sku": ..., "images": [...], "store_roles": {...}}`) into an Item or a
    Rejection. Store codes are only checked for shape here: which exist is known to the engine."""
    source = printable(source)  # e.g. a file name from argv (`sku --images FILE`)
    sku = _readable_sku(obj)
    if not isinstance(obj, dict):
        return Rejection(source=source, error=f"not a JSON object ({type(obj).__name__})", ordinal=ordinal)
    try:
        record = _Record.model_validate(obj)
        check_text("sku", record.sku)
        images, warnings = _images(record.images)
        more: list[str] = []
        store_roles = _store_roles(record.store_roles, {image.path for image in images}, more)
    except ValidationError as exc:
        return Rejection(source=source, error=_describe(exc), ordinal=ordinal, sku=sku)
    except ValueError as exc:
        return Rejection(source=source, error=str(exc), ordinal=ordinal, sku=sku)
    return Item(sku=record.sku, images=images, source=source, ordinal=ordinal, warnings=warnings + tuple(more),
                store_roles=store_roles)


def _json_error(exc: Exception) -> str:
    """RecursionError too: a 1 MB line of `[[[[…` must reject one record, not crash the run."""
    return "invalid JSON: nested too deeply" if isinstance(exc, RecursionError) else f"invalid JSON: {exc}"


# --- streams -----------------------------------------------------------------------------------


class _Replay(io.RawIOBase):
    """Serves bytes already consumed for sniffing, then the rest of the stream (which it never closes)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest
        self._read = getattr(rest, "read1", rest.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _replay(head: bytes, rest: BinaryIO) -> io.BufferedReader:
    return io.BufferedReader(_Replay(head, rest))


def _read_upto(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at end of stream (a pipe may deliver them one at a time)."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _decompressed(raw: BinaryIO) -> BinaryIO:
    """The stream itself, or its gzip-decompressed content when it starts with the gzip magic bytes."""
    head = _read_upto(raw, 2)
    stream = _replay(head, raw)
    return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb")) if head == _GZIP_MAGIC else stream


def _stdin_buffer() -> BinaryIO | None:
    """The process's binary stdin; None when fd 0 was closed at start (Python sets `sys.stdin` to None)."""
    return getattr(sys.stdin, "buffer", None)


def _format_of(path: str) -> Format:
    name = path.lower().removesuffix(".gz")
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if name.endswith(".json"):
        return "json"
    return "sniff"


def is_document(first_line: bytes) -> bool:
    """The sniffing rule, on the first non-blank line (stripped, without BOM): one JSON document when it
    starts with `[`, is a lone `{` or opens a `"request"` or `"items"` key; otherwise NDJSON, so that a bad
    first line costs one record, not the whole stream."""
    return first_line.startswith(b"[") or first_line == b"{" or _OPENS_BULK_KEY.match(first_line) is not None


def _sniff(stream: BinaryIO) -> tuple[Format, BinaryIO]:
    """Apply `is_document` to the first non-blank line; what was read is replayed, not lost."""
    head = b""
    while True:
        chunk = stream.readline(_SNIFF_BYTES)  # a blank line, a whole line, or the start of a long one
        text = (chunk.removeprefix(_BOM) if not head else chunk).strip()
        head += chunk
        if text or not chunk:
            break
    return ("json" if is_document(text) else "ndjson"), _replay(head, stream)


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, content without terminator); None for a line over MAX_RECORD_BYTES, never held whole."""
    number = 0
    while line := stream.readline(MAX_RECORD_BYTES + 2):
        number += 1
        if number == 1:
            line = line.removeprefix(_BOM)
        if len(line) == MAX_RECORD_BYTES + 2 and not line.endswith(b"\n"):
            while (rest := stream.readline(65536)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        content = line.removesuffix(b"\n").removesuffix(b"\r")
        yield number, content if len(content) <= MAX_RECORD_BYTES else None


class Feed:
    """Items of one or more PIM exports, in input order; `-` reads stdin.

    Every yielded Item or Rejection (a whole unreadable file included) gets the next ordinal.
    `request_id` is the first `request.request_id` of a bulk JSON body, once that body has been read.
    `parse` validates each decoded record (default `parse_record`); `submit` wraps it to keep the raw
    record, which becomes the operation's data.
    """

    def __init__(self, paths: list[str], stdin: BinaryIO | None = None,
                 parse: Callable[[Any, str, int], Item | Rejection] | None = None) -> None:
        self.paths = list(paths)
        if "-" in self.paths and stdin is None and _stdin_buffer() is None:
            raise FeedError("cannot read '-': standard input is closed")
        self.request_id: str | None = None
        self._stdin = stdin
        self._ordinal = 0
        self._parse = parse or parse_record
        self._bytes_done = 0
        self._current: BinaryIO | None = None

    def total_bytes(self) -> int | None:
        """Size of the input files (for a progress bar), or None when stdin is read or a file is missing."""
        try:
            return None if "-" in self.paths else sum(os.path.getsize(p) for p in self.paths)
        except OSError:
            return None

    def bytes_read(self) -> int:
        """Bytes of the input files consumed so far (of the compressed file for .gz)."""
        current = self._current
        try:
            return self._bytes_done + (current.tell() if current is not None else 0)
        except (OSError, ValueError):
            return self._bytes_done

    def _next_ordinal(self) -> int:
        self._ordinal += 1
        return self._ordinal

    def _reject_file(self, path: str, error: str) -> Rejection:
        return Rejection(source=path, error=error, ordinal=self._next_ordinal())

    def __iter__(self) -> Iterator[Item | Rejection]:
        self._ordinal = 0
        self._bytes_done = 0
        self.request_id = None
        for path in self.paths:
            try:
                yield from self._file(path)
            except _READ_ERRORS as exc:
                yield self._reject_file(printable(path), f"read error: {printable(str(exc))}")

    def _file(self, path: str) -> Iterator[Item | Rejection]:
        name = printable(path)  # argv may hold control characters or undecodable bytes
        if path == "-":
            stdin = self._stdin if self._stdin is not None else _stdin_buffer()
            if stdin is None:
                raise FeedError("cannot read '-': standard input is closed")
            yield from self._stream(name, stdin, "sniff")
            return
        try:
            raw = open(path, "rb")  # noqa: SIM115 - a failed open is a rejection, not an exception
        except OSError as exc:
            yield self._reject_file(name, f"cannot open file: {printable(str(exc.strerror or exc))}")
            return
        with raw:
            self._current = raw
            try:
                yield from self._stream(name, raw, _format_of(path))
            finally:
                self._current = None
                self._bytes_done += os.fstat(raw.fileno()).st_size

    def _stream(self, path: str, raw: BinaryIO, fmt: Format) -> Iterator[Item | Rejection]:
        stream = _decompressed(raw)
        if fmt == "sniff":
            fmt, stream = _sniff(stream)
        if fmt == "ndjson":
            yield from self._ndjson(path, stream)
        else:
            yield from self._document(path, stream.read())

    def _ndjson(self, path: str, stream: BinaryIO) -> Iterator[Item | Rejection]:
        for number, content in _lines(stream):
            source = f"{path}:{number}"
            if content is None:
                error = f"record larger than 1 MB ({MAX_RECORD_BYTES} bytes)"
                yield Rejection(source=source, error=error, ordinal=self._next_ordinal())
                continue
            if not content.strip():
                continue
            ordinal = self._next_ordinal()
            try:
                obj = json.loads(content.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield Rejection(source=source, error=f"not valid UTF-8: {exc.reason}", ordinal=ordinal)
                continue
            except (ValueError, RecursionError) as exc:
                yield Rejection(source=source, error=_json_error(exc), ordinal=ordinal)
                continue
            yield self._parse(obj, source, ordinal)

    def _document(self, path: str, data: bytes) -> Iterator[Item | Rejection]:
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            yield self._reject_file(path, f"not valid UTF-8: {exc.reason}")
            return
        except (ValueError, RecursionError) as exc:
            yield self._reject_file(path, _json_error(exc))
            return
        items = self._items_of(doc)
        if items is None:
            shapes = '{"request": {"items": [...]}}, {"items": [...]} or [...]'
            yield self._reject_file(path, f"not a bulk body: expected {shapes}")
            return
        for i, obj in enumerate(items):
            source = f"{path}#items[{i}]"
            try:
                # surrogatepass: a lone surrogate (rejected by parse_record, with its field) must not crash this
                compact = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
                size = len(compact.encode("utf-8", "surrogatepass"))
                error = f"record larger than 1 MB ({MAX_RECORD_BYTES} bytes)" if size > MAX_RECORD_BYTES else ""
            except RecursionError as exc:
                error = _json_error(exc)
            if error:
                ordinal = self._next_ordinal()
                yield Rejection(source=source, error=error, ordinal=ordinal, sku=_readable_sku(obj))
                continue
            yield self._parse(obj, source, self._next_ordinal())

    def _items_of(self, doc: Any) -> list[Any] | None:
        """The item list of one of the three accepted shapes; records the bulk request_id."""
        if isinstance(doc, list):
            return doc
        if not isinstance(doc, dict):
            return None
        if "request" in doc:
            request = doc["request"]
            if not isinstance(request, dict):
                return None
            rid = request.get("request_id")
            # Ignored like a non-string one when it could not be printed or stored as it is.
            if (self.request_id is None and isinstance(rid, str | int) and not isinstance(rid, bool)
                    and text_problem(str(rid)) is None):
                self.request_id = str(rid)
            doc = request
        items = doc.get("items")
        return items if isinstance(items, list) else None

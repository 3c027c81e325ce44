"""Image paths and role codes in Magento's own spelling.

Magento stores a gallery path relative to `pub/media/catalog/product` with a leading slash
(`/m/y/a.jpg`). PIMs send many spellings of the same file; writing any other form than Magento's
creates duplicate gallery entries, so every feed path goes through `canonical_path`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from nacento_sync.models import text_problem

#: Longest path the `value VARCHAR(255)` column holds.
MAX_PATH_CHARS = 255
#: Prefixes a PIM may put before the path, longest first (each also without the leading slash).
_PREFIXES: tuple[str, ...] = ("pub/media/catalog/product/", "media/catalog/product/", "catalog/product/")
_URL_MARKER = "/media/catalog/product/"
#: What starts a URL that is not read as one: another scheme (`ftp://`, `file:/`), a mistyped `https:/host`,
#: a drive `C:/`. Only `http://` and `https://` URLs are read (`//host/…` is refused as an empty segment).
_OTHER_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")
#: The spelling almost every export uses (`m/y/a.jpg`, `/m/y/a.jpg`): segments of letters, digits, `_`, `-` and
#: dots, none starting with a dot, the first not a prefix word or `cache`. Nothing in it can change under any
#: rule of `canonical_path` (no whitespace, `%`, `\\`, `:`, control character, `.`/`..` segment), so such a
#: path is only given its leading slash; everything else takes the full walk.
_PLAIN = re.compile(r"/?(?!(?:pub|media|catalog|cache)(?:/|$))[\w-][\w.-]*(?:/[\w-][\w.-]*)*", re.ASCII)
_ROLE_ALIASES: dict[str, str] = {
    "base": "image",
    "image": "image",
    "small": "small_image",
    "small_image": "small_image",
    "thumbnail": "thumbnail",
    "swatch": "swatch_image",
    "swatch_image": "swatch_image",
}


def _shown(raw: str) -> str:
    """Quote a path for an error message, truncated so a junk value cannot flood a report."""
    return repr(raw if len(raw) <= 80 else raw[:77] + "...")


def _from_url(url: str) -> str:
    """The part of a media URL after `/media/catalog/product/`; resized `/cache/` copies are refused."""
    try:
        path = unquote(urlsplit(url).path, errors="strict")
    except ValueError as exc:
        raise ValueError(f"invalid URL {_shown(url)}: {exc}") from None
    if "/cache/" in path:
        raise ValueError(f"URL {_shown(url)} points to a resized copy (/cache/), not the original image")
    start = path.find(_URL_MARKER)
    if start < 0:
        raise ValueError(f"URL {_shown(url)} does not contain {_URL_MARKER}")
    return path[start + len(_URL_MARKER) :]


def _fully_decoded(text: str) -> str:
    """`text` percent-decoded until nothing changes: what a server or CDN that decodes again would see.

    Each round that changes the text shortens it, so a path of at most 255 characters takes few rounds."""
    while (decoded := unquote(text)) != text:
        text = decoded
    return text


def _prefix_len(path: str) -> int:
    """Length of a leading `[pub/][media/]catalog/product/` prefix of `path`, else 0."""
    for prefix in _PREFIXES:
        if path.startswith(prefix) or path == prefix[:-1]:
            return len(prefix)
    return 0


def canonical_path(raw: str) -> str:
    """Return Magento's stored form (`/m/y/a.jpg`) of any spelling a PIM may send.

    Raises ValueError, with a message fit for a report, for paths Magento could not serve or
    that would not fit the `value VARCHAR(255)` column. Case is kept: the filesystem is case-sensitive.
    """
    if len(raw) < MAX_PATH_CHARS and _PLAIN.fullmatch(raw):
        return raw if raw[0] == "/" else "/" + raw
    text = raw.strip()
    if not text:
        raise ValueError("empty path")
    if problem := text_problem(text):
        raise ValueError(f"path {_shown(text)}: {problem}")
    if text[:8].lower().startswith(("http://", "https://")):
        rel = _from_url(text)
    elif _OTHER_URL.match(text):
        raise ValueError(f"path {_shown(text)} is not a catalog path: a URL must start with http:// or https://")
    else:
        rel = text.removeprefix("/")
        rel = rel[_prefix_len(rel) :]
    if not rel:
        raise ValueError(f"path {_shown(text)} is empty after removing the catalog/product prefix")
    if problem := text_problem(rel):
        # A percent-encoded URL can decode to one (`%09`, `%C2%85`).
        raise ValueError(f"path {_shown(text)}: {problem}")
    if rel != rel.rstrip():
        # Only reachable through a percent-encoded URL; a stripped result would not be idempotent.
        raise ValueError(f"path {_shown(text)} ends with whitespace")
    if "\\" in rel:
        raise ValueError(f"path {_shown(text)} contains a backslash")
    if _prefix_len(rel):
        # `catalog/product/catalog/product/a.jpg`: refusing keeps canonical_path idempotent.
        raise ValueError(f"path {_shown(text)} repeats the catalog/product prefix (ambiguous)")
    segments = rel.split("/")
    if any(s == "" for s in segments):
        raise ValueError(f"path {_shown(text)} has an empty segment")
    if any(s in (".", "..") for s in segments):
        raise ValueError(f"path {_shown(text)} has a '.' or '..' segment")
    if segments[0] == "cache":
        raise ValueError(f"path {_shown(text)} is a resized copy in cache/, not the original image")
    result = "/" + rel
    if len(result) > MAX_PATH_CHARS:
        raise ValueError(f"path {_shown(text)} is longer than {MAX_PATH_CHARS} characters")
    # `%2e%2e`, `%252e.` or `%5c` is stored literally, but a server that decodes it (once or again) would read
    # `..` or a backslash: refused like them. Checked on at most 255 characters, so decoding stays cheap.
    decoded = _fully_decoded(rel)
    if "\\" in decoded:
        raise ValueError(f"path {_shown(text)} contains a percent-encoded backslash")
    if any(s in (".", "..") for s in decoded.split("/")):
        raise ValueError(f"path {_shown(text)} has a '.' or '..' segment once percent-decoded")
    return result


def stored_to_canonical(value: str) -> str:
    """Canonical form of a path already in the database (legacy rows lack the leading slash)."""
    return "/" + value.lstrip("/")


def object_key(path: str, prefix: str = "") -> str:
    """S3 key of canonical path `/m/y/a.jpg`: Magento keeps `pub/media` under `[<prefix>/]media/`."""
    base = prefix.strip("/")
    key = "media/catalog/product/" + path.lstrip("/")
    return f"{base}/{key}" if base else key


def normalize_role(name: str) -> str | None:
    """Magento's attribute code for a role name users say (`base` → `image`), or None if unknown."""
    return _ROLE_ALIASES.get(name.strip().lower())

"""Hostile input, fuzzed: whatever bytes or records an export holds, the feed readers and validators yield
only Items and per-record Rejections, and what they accept is the input literally, apart from the documented
changes (a path's spelling, a label's TAB/LF/CR, a blank label clearing it).

Pure properties drive the real readers (files of each extension, gzip, NDJSON, JSON documents, stdin-like
streams that deliver a byte at a time); one end-to-end property syncs SQL metacharacters and odd Unicode
through the library into the real MariaDB and reads them back. Budgets are small: the file runs in seconds.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import uuid
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from nacento_sync.feed import MAX_LABEL_CHARS, MAX_SKU_CHARS, Feed, parse_record
from nacento_sync.models import MANAGED_ROLES, Item, Rejection, text_problem
from nacento_sync.paths import MAX_PATH_CHARS, canonical_path

FUZZ = settings(max_examples=40, deadline=None)

# --- alphabets of hostile text ---------------------------------------------------------------------------

#: Pieces that break naive SQL, LIKE patterns, shells, JSON, HTML or terminals when not handled literally.
SQL_META = ["'", '"', "\\", ";", "--", "/*", "*/", "%", "_", "`", "\\'", "' OR '1'='1", "'); DROP TABLE x; --",
            "\\0", "\\n", "$1", "{x}", "%s", "%(a)s", "<b>", "[red]", "&amp;", "||", "#"]
#: Valid Unicode a `utf8mb3` column holds, that code often gets wrong: zero-width and bidi controls, BOM, combining
#: marks, case-folding oddities, line/paragraph separators (not C0/C1: allowed), the replacement character.
ODD_BMP = ["\u200b", "\u200d", "\u202e", "\ufeff", "\ufffd", "e\u0301", "\u00e9", "\u00df", "\u0130", "\u2028",
           "\u2029", "\u00a0", "\u3000", "\uffff", "\u4e2d", "\u05d0", "\u0627", "\u1e9e", "\u212a"]
#: Outside the BMP: `utf8mb3` cannot store them (a label is dropped with a warning, a SKU or path rejected).
ASTRAL = ["\U0001f600", "\U00010000", "\U0010ffff"]
#: Forbidden everywhere (TAB/LF/CR allowed in labels only): C0, DEL, C1, lone surrogates.
CONTROL = ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\x9b", "\ud800", "\udfff"]
LABEL_SPACE = ["\t", "\n", "\r", "\r\n"]

_plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6)
_clean_piece = st.one_of(_plain, st.sampled_from(SQL_META), st.sampled_from(ODD_BMP))
_hostile_piece = st.one_of(_clean_piece, st.sampled_from(ASTRAL + CONTROL + LABEL_SPACE),
                           st.text(max_size=4))  # any code point, surrogates included


def _joined(piece: st.SearchStrategy[str], max_pieces: int = 8) -> st.SearchStrategy[str]:
    return st.lists(piece, max_size=max_pieces).map("".join)


# --- oracles: what the README says happens to a value --------------------------------------------------------


def _forbidden(value: str, *, label: bool = False) -> bool:
    """C0 (TAB/LF/CR allowed in a label), DEL, C1, lone surrogates: README's "bad characters"."""
    pattern = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]" if label else "[\x00-\x1f\x7f-\x9f\ud800-\udfff]"
    return re.search(pattern, value) is not None


def _sku_ok(sku: str) -> bool:
    return bool(sku.strip()) and len(sku) <= MAX_SKU_CHARS and not _forbidden(sku)


def _label_ok(label: str) -> bool:
    return len(label) <= MAX_LABEL_CHARS and not _forbidden(label, label=True)


def _stored_label(label: str) -> str | None:
    """README: TAB, LF and CR become spaces; `""` (or nothing but spaces) clears the label."""
    spaced = re.sub("[\t\n\r]", " ", label)
    return spaced if spaced.strip() else None


def _fully_decoded(text: str) -> str:
    while (once := unquote(text)) != text:
        text = once
    return text


def _path_trick(rel: str) -> bool:
    """A `..`-like path: a `.`/`..` segment or a backslash, literally or once percent-decoded any number of times."""
    decoded = _fully_decoded(rel)
    return "\\" in rel or "\\" in decoded or bool({".", ".."} & set(rel.split("/") + decoded.split("/")))


# --- records ---------------------------------------------------------------------------------------------------

#: Every spelling of the catalog path a PIM may send (README, Input), and URLs to any host.
SPELLINGS = ["", "/", "catalog/product/", "/media/catalog/product/", "pub/media/catalog/product/",
             "https://other.host.example/media/catalog/product/", "http://evil.example:8080/x/media/catalog/product/",
             "HTTPS://user:pw@10.0.0.1/pub/media/catalog/product/"]
#: Spellings that are not read as a path: other schemes, a drive, scheme-relative.
NOT_PATHS = ["ftp://h/media/catalog/product/", "file:///var/www/pub/media/catalog/product/", "C:/img/", "//h/",
             "https:/h/media/catalog/product/"]
TRICK_SEGMENTS = ["..", ".", "%2e%2e", "%2E%2e", "%2e.", ".%2E", "%2e", "%252e%252e", "%25252E.", "a%5cb", "a%255Cb",
                  "a\\b", "..\\..", "x%2f..%2fy"]

_segment = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="/\\\x85"),
            min_size=1, max_size=8),
    st.sampled_from(["a", "b.jpg", "%20", "100%25", "..a", "%2e%2ea", "a:b", "'", "%", "_", ";", "--"]),
)


@st.composite
def paths(draw: st.DrawFn, tricks: bool = True) -> tuple[str, str]:
    """(file_path as sent, the relative path it spells); with `tricks`, dot segments, encodings and backslashes."""
    segments = draw(st.lists(st.one_of(_segment, st.sampled_from(TRICK_SEGMENTS)) if tricks else _segment,
                             min_size=1, max_size=4))
    rel = "/".join(segments)
    spelling = draw(st.sampled_from(SPELLINGS + (NOT_PATHS if tricks else [])))
    # A URL is percent-decoded once: quote the relative path so that it decodes to itself.
    sent = spelling + (quote(rel, safe="/") if "://" in spelling else rel)
    return sent, rel


def _clean_rel(rel: str) -> bool:
    """A path README says is stored as `/` + rel: no trick, no prefix or cache folder, fits, no surrounding space."""
    return (not _path_trick(rel) and rel == rel.strip() and rel.split("/")[0] != "cache"
            and not re.match(r"(pub/)?(media/)?catalog/product(/|$)", rel)
            and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", rel) and len(rel) + 1 <= MAX_PATH_CHARS
            and not _forbidden(rel) and not any(ord(c) > 0xFFFF for c in rel) and "" not in rel.split("/"))


_ROLE_NAMES = st.sampled_from(["base", "image", "small", "small_image", "thumbnail", "swatch", "swatch_image",
                               "BASE", " thumbnail ", "unknown", "'; --", "\x00", "\ud800"])


@st.composite
def images(draw: st.DrawFn, hostile: bool = True) -> dict[str, Any]:
    piece = _hostile_piece if hostile else _clean_piece
    sent, rel = draw(paths(tricks=hostile))
    image: dict[str, Any] = {"file_path": sent, "_rel": rel}
    if draw(st.booleans()):
        image["label"] = draw(st.one_of(st.none(), _joined(piece)))
    if draw(st.booleans()):
        image["position"] = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)) if not hostile else st.one_of(
            st.none(), st.integers(-5, 2**33), st.sampled_from([1.0, 2.5, "3", True, [], {}])))
    if draw(st.booleans()):
        image["disabled"] = draw(st.sampled_from([True, False, 0, 1, None] + (["yes", 2, 1.5] if hostile else [])))
    if draw(st.booleans()):
        image["roles"] = draw(st.lists(_ROLE_NAMES if hostile else _ROLE_NAMES.filter(
            lambda r: text_problem(r) is None), max_size=3))
    return image


@st.composite
def records(draw: st.DrawFn, hostile: bool = True) -> dict[str, Any]:
    piece = _hostile_piece if hostile else _clean_piece
    sku = draw(_joined(piece).filter(lambda s: hostile or _sku_ok(s)))
    return {"sku": sku, "images": draw(st.lists(images(hostile), max_size=4))}


def _sent(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the PIM sends it (without the test's bookkeeping)."""
    return {**record, "images": [{k: v for k, v in i.items() if k != "_rel"} for i in record["images"]]}


def _valid_position(value: Any) -> bool:
    return value is None or (not isinstance(value, bool) and isinstance(value, int | float)
                             and float(value).is_integer() and 0 <= value <= 2**32 - 1)


def _must_reject(record: dict[str, Any]) -> bool:
    """What README says rejects a record, among what these strategies make."""
    if not _sku_ok(record["sku"]):
        return True
    for image in record["images"]:
        label = image.get("label")
        if _path_trick(image["_rel"]) or any(image["file_path"].startswith(s) for s in NOT_PATHS):
            return True
        if _forbidden(image["file_path"]) or _forbidden(image["_rel"]):
            return True
        if isinstance(label, str) and not _label_ok(label):
            return True
        if not _valid_position(image.get("position")) or image.get("disabled") not in (None, True, False, 0, 1):
            return True
        if any(_forbidden(r) for r in image.get("roles") or ()):
            return True
    return False


def _assert_literal(record: dict[str, Any], item: Item) -> None:
    """Every value of an accepted item is the sent one, apart from README's documented changes."""
    assert item.sku == record["sku"]
    sent = record["images"]
    last = {canonical_path(i["file_path"]): n for n, i in enumerate(sent, 1)}  # a repeated file: the later wins
    assert [image.path for image in item.images] == sorted(last, key=lambda path: last[path])
    holders: dict[str, int] = {}
    for image in item.images:
        n = last[image.path]
        entry = sent[n - 1]
        if _clean_rel(entry["_rel"]):
            assert image.path == "/" + entry["_rel"]  # the spelling is the only change
        assert canonical_path(image.path) == image.path
        position = entry.get("position")
        assert image.position == (int(position) if position is not None else n)
        assert image.label_given == ("label" in entry)
        label = entry.get("label")
        assert image.label == (_stored_label(label) if isinstance(label, str) else None)
        assert image.disabled == (None if entry.get("disabled") is None else bool(entry["disabled"]))
        for role in image.roles:
            assert role in MANAGED_ROLES and role not in holders
            holders[role] = n


def _check(outcome: Item | Rejection) -> None:
    """Whatever came out can be stored, reported and printed."""
    assert isinstance(outcome, Item | Rejection), type(outcome)
    if isinstance(outcome, Rejection):
        assert outcome.error and outcome.error.encode("utf-8")
        assert outcome.sku is None or text_problem(outcome.sku) is None
        return
    assert text_problem(outcome.sku) is None
    for image in outcome.images:
        assert text_problem(image.path) is None and len(image.path) <= MAX_PATH_CHARS
        assert image.label is None or text_problem(image.label) is None


# --- the validator ---------------------------------------------------------------------------------------------


@FUZZ
@given(records())
@example({"sku": "A", "images": [{"file_path": "m/%2e%2e/x.jpg", "_rel": "m/%2e%2e/x.jpg"}]})
@example({"sku": "A", "images": [{"file_path": "https://other.host/media/catalog/product/m/%252e%252e/x.jpg",
                                  "_rel": "m/%2e%2e/x.jpg"}]})
@example({"sku": "' OR 1=1; --", "images": [{"file_path": "m/y/a\\b.jpg", "_rel": "m/y/a\\b.jpg"}]})
def test_a_hostile_record_is_an_item_with_its_values_literally_or_one_rejection(record: dict[str, Any]) -> None:
    outcome = parse_record(_sent(record), "x.ndjson:1", 1)
    _check(outcome)
    if _must_reject(record):
        assert isinstance(outcome, Rejection), record
    if isinstance(outcome, Item):
        _assert_literal(record, outcome)


@FUZZ
@given(records(hostile=False))
def test_a_clean_record_of_odd_text_is_accepted_literally(record: dict[str, Any]) -> None:
    assume(all(_clean_rel(i["_rel"]) for i in record["images"]))
    outcome = parse_record(_sent(record), "x.ndjson:1", 1)
    assert isinstance(outcome, Item), outcome
    _assert_literal(record, outcome)


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["sku", "images", "file_path", "label", "position",
                                                             "disabled", "roles", "stores", "store_roles", "fr",
                                                             "base", "x"]) | st.text(max_size=5), inner, max_size=4)),
    max_leaves=25,
)


@FUZZ
@given(_json)
def test_any_json_value_is_an_item_or_a_rejection(value: Any) -> None:
    _check(parse_record(value, "x.json#items[0]", 1))


# --- the readers -----------------------------------------------------------------------------------------------


class _Trickle(io.RawIOBase):
    """A pipe that delivers one byte per read (stdin from a slow producer)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data, self._at = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._at >= len(self._data) or not len(buffer):
            return 0
        buffer[0] = self._data[self._at]
        self._at += 1
        return 1


def _read(tmp: Path, name: str, data: bytes, *, via: str) -> list[Item | Rejection]:
    """Every outcome of the real Feed on `data`: a file called `name`, or stdin (BytesIO or a trickle)."""
    if via == "file":
        path = tmp / f"{uuid.uuid4().hex}-{name}"
        path.write_bytes(data)
        feed = Feed([str(path)])
    else:
        stream = io.BytesIO(data) if via == "stdin" else io.BufferedReader(_Trickle(data), buffer_size=1)
        feed = Feed(["-"], stdin=stream)  # type: ignore[arg-type]
    outcomes = list(feed)
    for outcome in outcomes:
        _check(outcome)
    return outcomes


NAMES = ["x.ndjson", "x.jsonl", "x.json", "x.ndjson.gz", "x.json.gz", "x.txt", "x"]

#: Byte strings that look like exports: JSON fragments, gzip magic, BOMs, blank lines, deep nesting.
_export_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"sku"', b":", b",", b'"images"', b"\n", b"\r\n",
                              b"\xef\xbb\xbf", b"\x1f\x8b", b"\x00", b'"\\ud800"', b'"file_path"', b'"a/b.jpg"',
                              b"null", b"1e999",
                              b"\xff\xfe", b'{"request":', b'{"items":', b"[" * 3000, b" "]),
             max_size=40).map(b"".join),
)


@FUZZ
@given(_export_bytes, st.sampled_from(NAMES), st.booleans(), st.sampled_from(["file", "stdin", "trickle"]))
@example(b"[" * 100_000, "x.ndjson", False, "file")
@example(b"[" * 100_000, "x.json", False, "stdin")
@example(b"\x1f\x8b\x08\x00garbage", "x.ndjson.gz", False, "file")
def test_random_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, data: bytes, name: str, gzipped: bool,
                                  via: str) -> None:
    payload = gzip.compress(data) if gzipped else data
    _read(tmp_path_factory.mktemp("b"), name, payload, via=via)


def _encodings(items: list[dict[str, Any]]) -> dict[str, bytes]:
    ndjson = "".join(json.dumps(i) + "\n" for i in items).encode()
    return {"x.ndjson": ndjson, "x.json": json.dumps(items).encode(),
            "body.json": json.dumps({"request": {"request_id": "r", "items": items}}).encode(),
            "x.ndjson.gz": gzip.compress(ndjson), "x.json.gz": gzip.compress(json.dumps({"items": items}).encode())}


def _values(outcomes: list[Item | Rejection]) -> list[Any]:
    """The outcomes without their sources (which name the file and the line or index)."""
    return [(o.sku, o.images, o.warnings, o.store_roles) if isinstance(o, Item) else ("rejected", o.error)
            for o in outcomes]


@settings(max_examples=15, deadline=None)
@given(st.lists(records(), max_size=5))
def test_every_reader_gives_the_same_outcomes(tmp_path_factory: pytest.TempPathFactory,
                                              recs: list[dict[str, Any]]) -> None:
    """NDJSON, JSON list and bulk body, gzipped or not, a file or stdin (even a byte at a time): same outcomes."""
    tmp = tmp_path_factory.mktemp("e")
    sent = [_sent(r) for r in recs]
    expected = [parse_record(s, "", n) for n, s in enumerate(sent, 1)]
    for name, data in _encodings(sent).items():
        for via in ("file", "stdin", "trickle"):
            got = _read(tmp, name, data, via=via)
            assert _values(got) == _values(expected), (name, via)
            assert [o.ordinal for o in got] == list(range(1, len(sent) + 1))
    for record, outcome in zip(recs, expected, strict=True):
        if isinstance(outcome, Item):
            _assert_literal(record, outcome)


def _accepted(outcomes: list[Item | Rejection]) -> list[Any]:
    return [(o.sku, o.images) for o in outcomes if isinstance(o, Item)]


@settings(max_examples=25, deadline=None)
@given(st.lists(records(hostile=False), min_size=1, max_size=6), st.data())
def test_a_truncated_export_keeps_a_prefix_of_the_records(tmp_path_factory: pytest.TempPathFactory,
                                                          recs: list[dict[str, Any]], data: st.DataObject) -> None:
    """Cut anywhere (a copy interrupted, a gzip stream cut short): what is accepted is the start of the whole
    export's items, in order, never a changed record; the rest is rejected or absent, never an exception."""
    tmp = tmp_path_factory.mktemp("t")
    for name, whole in _encodings([_sent(r) for r in recs]).items():
        full = _accepted(_read(tmp, name, whole, via="file"))
        cut = data.draw(st.integers(0, len(whole)), label=f"cut of {name}")
        got = _accepted(_read(tmp, name, whole[:cut], via=data.draw(st.sampled_from(["file", "trickle"]))))
        assert got == full[: len(got)], name


@settings(max_examples=15, deadline=None)
@given(st.lists(records(hostile=False), min_size=1, max_size=4), st.integers(0, 2**32),
       st.sampled_from(["x.ndjson", "x.json", "body.json", "x.ndjson.gz", "x.json.gz"]))
def test_flipped_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, recs: list[dict[str, Any]],
                                   seed: int, name: str) -> None:
    """An export with a few corrupted bytes (a bad disk, a broken transfer), gzip's CRC included."""
    whole = bytearray(_encodings([_sent(r) for r in recs])[name])
    for k in range(3):
        at = (seed >> (k * 10)) % len(whole)
        whole[at] ^= 1 << ((seed >> (k * 3)) & 7)
    _read(tmp_path_factory.mktemp("f"), name, bytes(whole), via="file")


def test_huge_lines_and_deep_nesting_cost_one_record_each(tmp_path: Path) -> None:
    """A 2 MB line, a 1 MB `[[[[…` line and an endless string between good records: three rejections."""
    good = json.dumps({"sku": "A", "images": [{"file_path": "a/b.jpg"}]})
    lines = [good, '{"sku": "' + "x" * 2_000_000 + '"}', "[" * 1_000_000, good, '"' + "\\" * 999_999, good]
    data = ("\n".join(lines) + "\n").encode()
    for name, via in (("x.ndjson", "file"), ("x", "stdin"), ("x.ndjson.gz", "file")):
        payload = gzip.compress(data) if name.endswith(".gz") else data
        outcomes = _read(tmp_path, name, payload, via=via)
        assert [type(o).__name__ for o in outcomes] == ["Item", "Rejection", "Rejection", "Item", "Rejection",
                                                        "Item"], name


def test_a_gzip_bomb_line_is_rejected_without_holding_it(tmp_path: Path) -> None:
    """64 MB of zeros in one line compress to 64 KB: read in bounded pieces, one rejection."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = compressor.compress(b'{"sku": "' + b"0" * (64 << 20) + b'"}\n') + compressor.flush()
    outcomes = _read(tmp_path, "x.ndjson.gz", body, via="file")
    assert len(outcomes) == 1 and isinstance(outcomes[0], Rejection) and "1 MB" in outcomes[0].error


# --- end to end: SQL metacharacters and odd Unicode stored literally --------------------------------------------

_e2e_sku = _joined(st.one_of(st.sampled_from(SQL_META), st.sampled_from(ODD_BMP), _plain, st.sampled_from(ASTRAL)),
                   max_pieces=6)
_e2e_label = _joined(st.one_of(st.sampled_from(SQL_META), st.sampled_from(ODD_BMP), _plain, st.sampled_from(ASTRAL),
                               st.sampled_from(LABEL_SPACE)), max_pieces=6)
_e2e_name = _joined(st.one_of(st.sampled_from(["'", '"', ";", "%", "_", "`", "--", "$", "(", ")", "&", "=", "#", "?"]),
                              st.sampled_from(ODD_BMP[:10]), _plain), max_pieces=4).filter(
    lambda s: not {"/", "\\"} & set(_fully_decoded(s)))  # no segment of its own, no backslash: a path README accepts


# Each example is a real sync (about a second): no shrinking, whose many re-runs would take minutes.
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.generate])
@given(sku_text=_e2e_sku, labels=st.lists(_e2e_label, min_size=1, max_size=3),
       names=st.lists(_e2e_name, min_size=3, max_size=3))
@example(sku_text="' OR '1'='1", labels=["'); DROP TABLE x; --", "\\", "a\tb\r\nc"], names=["%", "_", "'"])
def test_sql_metacharacters_and_odd_unicode_are_stored_literally(store, bucket, db_params, tmp_path, sku_text: str,
                                                                 labels: list[str], names: list[str]) -> None:
    from helpers import config_dict, run, write_ndjson

    tag = uuid.uuid4().hex[:8]
    sku = f"{tag}{sku_text}"[:MAX_SKU_CHARS].rstrip(" ")  # trailing spaces are not part of a Magento SKU
    files = [f"q/{tag}/{n}{name}.jpg" for n, name in enumerate(names)]
    images = [{"file_path": f, "label": label, "roles": ["base"] if n == 0 else []}
              for n, (f, label) in enumerate(zip(files, labels, strict=False))]
    astral_sku = any(ord(c) > 0xFFFF for c in sku)
    product = None if astral_sku else store.add_product(sku)
    decoy = store.add_product(f"{tag}-decoy")
    if not astral_sku and re.search("[%_]", sku):  # what the SKU would match as a LIKE pattern
        decoy = store.add_product(re.sub("[%_]", "x", sku))
    for image in images:
        bucket.put("/" + image["file_path"])
    export = write_ndjson(tmp_path / f"{tag}.ndjson", [{"sku": sku, "images": images}])
    outcome = run(config_dict(store, bucket, db_params), export)
    if astral_sku:  # README: a SKU a utf8mb3 column cannot hold rejects the record
        assert outcome.report.stats.rejected == 1 and "cannot be stored" in outcome.report.rejected[0].error
        return
    assert product is not None
    assert outcome.result(sku).error is None, outcome.report
    stored = store.gallery(product.link_id)
    assert [g["value"] for g in stored] == ["/" + image["file_path"] for image in images]
    expected = [None if any(ord(c) > 0xFFFF for c in image["label"]) else _stored_label(image["label"])
                for image in images]
    assert [g["label"] for g in stored] == expected
    assert store.roles(product.link_id).get(("image", 0)) == "/" + images[0]["file_path"]
    if expected[0] is not None:
        assert store.roles(product.link_id).get(("image_label", 0)) == expected[0]
    assert store.gallery(decoy.link_id) == []

"""Feed: formats, sources and ordinals, validation and rejections, warnings, streaming."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nacento_sync.feed import (
    MAX_RECORD_BYTES,
    WARNING_CODES,
    Feed,
    FeedError,
    TextError,
    check_text,
    is_document,
    parse_record,
)
from nacento_sync.models import DesiredImage, Item, Rejection, StoreValues, printable, text_problem

IMAGE = {
    "file_path": "m/y/a.jpg",
    "label": "Front View",
    "position": 1,
    "disabled": False,
    "roles": ["base", "small_image", "thumbnail"],
}


def rec(sku: Any = "SKU-1", images: Any = None, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "images": [dict(IMAGE)] if images is None else images, **extra}


def ndjson(*records: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def run(paths: list[str], stdin: bytes | None = None) -> list[Item | Rejection]:
    return list(Feed(paths, stdin=io.BytesIO(stdin) if stdin is not None else None))


def one(obj: Any) -> Item | Rejection:
    """Feed a single record through a JSON list body on stdin."""
    (result,) = run(["-"], stdin=json.dumps([obj]).encode())
    return result


def item(obj: dict[str, Any]) -> Item:
    result = one(obj)
    assert isinstance(result, Item), result
    return result


def rejection(obj: dict[str, Any]) -> Rejection:
    result = one(obj)
    assert isinstance(result, Rejection), result
    return result


def kinds(results: list[Item | Rejection]) -> list[tuple[str, str, int]]:
    return [(type(r).__name__, r.source, r.ordinal) for r in results]


# --- NDJSON ------------------------------------------------------------------------------------


def test_ndjson_item_is_mapped(tmp_path: Path) -> None:
    path = write(tmp_path, "feed.ndjson", ndjson(rec()))
    (result,) = run([path])
    assert result == Item(
        sku="SKU-1",
        images=(
            DesiredImage(
                path="/m/y/a.jpg",
                position=1,
                label="Front View",
                label_given=True,
                disabled=False,
                roles=("image", "small_image", "thumbnail"),
            ),
        ),
        source=f"{path}:1",
        ordinal=1,
        warnings=(),
    )


def test_line_numbers_and_ordinals_skip_blank_lines(tmp_path: Path) -> None:
    text = "\n" + ndjson(rec("A")) + "   \n\t\n" + ndjson(rec("B")) + "\r\n" + json.dumps(rec("C"))
    path = write(tmp_path, "feed.jsonl", text)
    results = run([path])
    assert [(r.sku, r.source, r.ordinal) for r in results] == [
        ("A", f"{path}:2", 1),
        ("B", f"{path}:5", 2),
        ("C", f"{path}:7", 3),
    ]


def test_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path, "feed.ndjson", b"\xef\xbb\xbf" + ndjson(rec("A"), rec("B")).replace("\n", "\r\n").encode())
    assert [r.sku for r in run([path]) if isinstance(r, Item)] == ["A", "B"]


def test_bad_lines_do_not_stop_the_rest(tmp_path: Path) -> None:
    text = ndjson(rec("A"), "{not json", "[1, 2]", '"SKU-2"', "null", rec(7), rec("B")) + "\xff\n"
    path = write(tmp_path, "feed.ndjson", text.encode("latin-1"))
    results = run([path])
    assert kinds(results) == [
        ("Item", f"{path}:1", 1),
        ("Rejection", f"{path}:2", 2),
        ("Rejection", f"{path}:3", 3),
        ("Rejection", f"{path}:4", 4),
        ("Rejection", f"{path}:5", 5),
        ("Rejection", f"{path}:6", 6),
        ("Item", f"{path}:7", 7),
        ("Rejection", f"{path}:8", 8),
    ]
    errors = [r.error for r in results if isinstance(r, Rejection)]
    assert errors[0].startswith("invalid JSON")
    assert errors[1] == "not a JSON object (list)"
    assert errors[2] == "not a JSON object (str)"
    assert errors[3] == "not a JSON object (NoneType)"
    assert errors[4] == "sku: must be a string"
    assert errors[5].startswith("not valid UTF-8")


def _padded(size: int, sku: str = "BIG") -> str:
    """A valid record line of exactly `size` bytes (padding in an ignored extra key)."""
    base = json.dumps(rec(sku, pad=""))
    return json.dumps(rec(sku, pad="x" * (size - len(base))))


def test_record_size_limit(tmp_path: Path) -> None:
    exact = _padded(MAX_RECORD_BYTES)
    over = _padded(MAX_RECORD_BYTES + 1)
    assert len(exact) == MAX_RECORD_BYTES
    junk = "{" * (3 * MAX_RECORD_BYTES)  # invalid JSON: only the size check may report it
    text = exact + "\r\n" + over + "\n" + junk + "\n" + ndjson(rec("AFTER"))
    path = write(tmp_path, "feed.ndjson", text)
    results = run([path])
    assert kinds(results) == [
        ("Item", f"{path}:1", 1),
        ("Rejection", f"{path}:2", 2),
        ("Rejection", f"{path}:3", 3),
        ("Item", f"{path}:4", 4),
    ]
    assert results[1].error == results[2].error == "record larger than 1 MB (1048576 bytes)"
    assert results[1].sku is None


def test_oversized_last_line_without_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "feed.ndjson", ndjson(rec("A")) + "x" * (MAX_RECORD_BYTES + 5))
    assert kinds(run([path])) == [("Item", f"{path}:1", 1), ("Rejection", f"{path}:2", 2)]


def test_deeply_nested_json_is_a_rejection_not_a_crash(tmp_path: Path) -> None:
    deep = '{"sku": "A", "images": [], "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    lines = write(tmp_path, "feed.ndjson", ndjson(rec("A"), deep, rec("B")))
    document = write(tmp_path, "bulk.json", f"[{deep}]")
    results = run([lines, document])
    assert kinds(results) == [
        ("Item", f"{lines}:1", 1),
        ("Rejection", f"{lines}:2", 2),
        ("Item", f"{lines}:3", 3),
        ("Rejection", document, 4),
    ]
    assert results[1].error == results[3].error == "invalid JSON: nested too deeply"


# --- JSON documents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "request_id"),
    [
        ({"request": {"request_id": "op-12345", "items": [rec("A"), rec("B")]}}, "op-12345"),
        ({"request": {"items": [rec("A"), rec("B")]}}, None),
        ({"items": [rec("A"), rec("B")]}, None),
        ([rec("A"), rec("B")], None),
        ({"request": {"request_id": 42, "items": [rec("A"), rec("B")]}}, "42"),
    ],
)
def test_json_shapes(tmp_path: Path, body: Any, request_id: str | None) -> None:
    path = write(tmp_path, "bulk.json", json.dumps(body, indent=2))
    feed = Feed([path])
    results = list(feed)
    assert [(r.sku, r.source, r.ordinal) for r in results] == [
        ("A", f"{path}#items[0]", 1),
        ("B", f"{path}#items[1]", 2),
    ]
    assert feed.request_id == request_id


def test_request_id_is_known_while_iterating_and_first_one_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "a.json", json.dumps({"request": {"request_id": "op-1", "items": [rec("A")]}}))
    second = write(tmp_path, "b.json", json.dumps({"request": {"request_id": "op-2", "items": [rec("B")]}}))
    feed = Feed([first, second])
    assert feed.request_id is None
    it = iter(feed)
    next(it)
    assert feed.request_id == "op-1"
    list(it)
    assert feed.request_id == "op-1"


def test_request_id_none_for_ndjson(tmp_path: Path) -> None:
    feed = Feed([write(tmp_path, "a.ndjson", ndjson(rec()))])
    list(feed)
    assert feed.request_id is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ("", "invalid JSON"),
        (ndjson(rec("A"), rec("B")), "invalid JSON"),
        ('"items"', "not a bulk body"),
        ('{"foo": []}', "not a bulk body"),
        ('{"items": {}}', "not a bulk body"),
        ('{"request": []}', "not a bulk body"),
        ('{"request": {"request_id": "x"}}', "not a bulk body"),
    ],
)
def test_bad_json_document_is_one_rejection_and_next_file_goes_on(tmp_path: Path, content: str, fragment: str) -> None:
    bad = write(tmp_path, "bad.json", content)
    good = write(tmp_path, "good.ndjson", ndjson(rec("OK")))
    results = run([bad, good])
    assert kinds(results) == [("Rejection", bad, 1), ("Item", f"{good}:1", 2)]
    assert fragment in results[0].error


def test_json_items_are_validated_one_by_one(tmp_path: Path) -> None:
    body = {"items": [rec("A"), "x", rec("B", images="nope"), {"images": []}, rec("C")]}
    path = write(tmp_path, "bulk.json", json.dumps(body))
    results = run([path])
    assert [type(r).__name__ for r in results] == ["Item", "Rejection", "Rejection", "Rejection", "Item"]
    assert results[2].sku == "B"
    assert results[2].error == "images: must be a list"
    assert results[3].error == "sku: is required"
    assert results[4].source == f"{path}#items[4]"


def test_json_item_over_the_size_limit(tmp_path: Path) -> None:
    big = rec("BIG", pad="é" * (MAX_RECORD_BYTES // 2))  # under 1M characters, over 1 MB in UTF-8
    path = write(tmp_path, "bulk.json", json.dumps([big, rec("SMALL")]))
    results = run([path])
    assert isinstance(results[0], Rejection)
    assert results[0].error == "record larger than 1 MB (1048576 bytes)"
    assert results[0].sku == "BIG"
    assert isinstance(results[1], Item)


# --- files, gzip, stdin --------------------------------------------------------------------------


def test_files_in_order_and_ordinals_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.ndjson", ndjson(rec("A1"), rec("A2")))
    b = write(tmp_path, "b.json", json.dumps([rec("B1")]))
    missing = str(tmp_path / "missing.ndjson")
    c = write(tmp_path, "c.jsonl", ndjson(rec("C1")))
    results = run([a, b, missing, str(tmp_path), c])
    assert kinds(results) == [
        ("Item", f"{a}:1", 1),
        ("Item", f"{a}:2", 2),
        ("Item", f"{b}#items[0]", 3),
        ("Rejection", missing, 4),
        ("Rejection", str(tmp_path), 5),
        ("Item", f"{c}:1", 6),
    ]
    assert results[3].error == "cannot open file: No such file or directory"
    assert results[4].error.startswith("cannot open file")


def test_iterating_again_restarts(tmp_path: Path) -> None:
    feed = Feed([write(tmp_path, "a.ndjson", ndjson(rec("A"), rec("B")))])
    assert list(feed) == list(feed)


@pytest.mark.parametrize("name", ["feed.ndjson.gz", "feed.jsonl.gz", "feed.ndjson", "feed.txt", "feed"])
def test_gzip_ndjson(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, gzip.compress(ndjson(rec("A"), "", rec("B")).encode()))
    assert [(r.sku, r.source) for r in run([path])] == [("A", f"{path}:1"), ("B", f"{path}:3")]


@pytest.mark.parametrize("name", ["bulk.json.gz", "bulk.JSON.GZ", "bulk.json", "bulk.dat"])
def test_gzip_json(tmp_path: Path, name: str) -> None:
    body = {"request": {"request_id": "op-9", "items": [rec("A")]}}
    path = write(tmp_path, name, gzip.compress(json.dumps(body, indent=1).encode()))
    feed = Feed([path])
    assert [(r.sku, r.source) for r in feed] == [("A", f"{path}#items[0]")]
    assert feed.request_id == "op-9"


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    data = gzip.compress(ndjson(*(rec(f"S{i}") for i in range(2000))).encode(), compresslevel=0)
    path = write(tmp_path, "feed.ndjson.gz", data[: len(data) // 2])
    good = write(tmp_path, "next.ndjson", ndjson(rec("NEXT")))
    results = run([path, good])
    *items, failure, last = results
    assert items and all(isinstance(r, Item) for r in items)
    assert isinstance(failure, Rejection)
    assert failure.source == path
    assert failure.error.startswith("read error")
    assert last.sku == "NEXT"
    assert last.ordinal == len(items) + 2


def test_plain_file_named_gz_is_read_by_content(tmp_path: Path) -> None:
    path = write(tmp_path, "feed.ndjson.gz", ndjson(rec("A")))
    assert [r.sku for r in run([path])] == ["A"]


def test_stdin_ndjson_keeps_the_sniffed_line() -> None:
    results = run(["-"], stdin=("\n\n" + ndjson(rec("A"), "{bad", rec("B"))).encode())
    assert kinds(results) == [("Item", "-:3", 1), ("Rejection", "-:4", 2), ("Item", "-:5", 3)]


def test_stdin_ndjson_first_record_invalid_but_has_sku() -> None:
    results = run(["-"], stdin=ndjson(rec("A", images=3), rec("B")).encode())
    assert kinds(results) == [("Rejection", "-:1", 1), ("Item", "-:2", 2)]


@pytest.mark.parametrize(
    "body",
    [
        {"request": {"request_id": "op-1", "items": [rec("A"), rec("B")]}},
        {"items": [rec("A"), rec("B")]},
        [rec("A"), rec("B")],
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
def test_stdin_json_document(body: Any, indent: int | None) -> None:
    results = run(["-"], stdin=b"\n" + json.dumps(body, indent=indent).encode())
    assert [(r.sku, r.source) for r in results] == [("A", "-#items[0]"), ("B", "-#items[1]")]


def test_stdin_single_line_json_object_without_sku_is_a_document() -> None:
    feed = Feed(["-"], stdin=io.BytesIO(json.dumps({"request": {"request_id": "r", "items": [rec()]}}).encode()))
    assert [r.source for r in feed] == ["-#items[0]"]
    assert feed.request_id == "r"


@pytest.mark.parametrize("payload", [ndjson(rec("A"), rec("B")), json.dumps([rec("A"), rec("B")])])
def test_stdin_gzip(payload: str) -> None:
    results = run(["-"], stdin=gzip.compress(payload.encode()))
    assert [r.sku for r in results] == ["A", "B"]


@pytest.mark.parametrize("data", [b"", b"\n  \n", gzip.compress(b"")])
def test_empty_stdin_is_an_empty_feed(data: bytes) -> None:
    assert run(["-"], stdin=data) == []


def test_stdin_garbage_is_rejected_line_by_line() -> None:
    # Was one rejection of the whole stream before the sniffing rule of issue 7 item 6.
    results = run(["-"], stdin=b"hello\nworld\n")
    assert kinds(results) == [("Rejection", "-:1", 1), ("Rejection", "-:2", 2)]
    assert all(r.error.startswith("invalid JSON") for r in results)


def test_stdin_with_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.ndjson", ndjson(rec("A")))
    results = run([a, "-"], stdin=ndjson(rec("S")).encode())
    assert kinds(results) == [("Item", f"{a}:1", 1), ("Item", "-:1", 2)]


# --- validation ----------------------------------------------------------------------------------


def test_defaults() -> None:
    result = item(rec(images=[{"file_path": "a.jpg"}, {"file_path": "b.jpg"}, {"file_path": "c.jpg"}]))
    assert result.images == (
        DesiredImage(path="/a.jpg", position=1),
        DesiredImage(path="/b.jpg", position=2),
        DesiredImage(path="/c.jpg", position=3),
    )
    assert result.images[0].label_given is False
    assert result.images[0].disabled is None
    assert result.images[0].roles == ()


def test_nulls_mean_not_sent_except_label() -> None:
    image = {"file_path": "a.jpg", "label": None, "position": None, "disabled": None, "roles": None}
    (result,) = item(rec(images=[image])).images
    assert result == DesiredImage(path="/a.jpg", position=1, label=None, label_given=True)


def test_empty_images_list_is_an_item() -> None:
    assert item(rec(images=[])).images == ()


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Front View", "Front View"),
        (" Front ", " Front "),
        ("", None),
        ("   ", None),
        (None, None),
        ("é" * 255, "é" * 255),
    ],
)
def test_labels(label: str | None, expected: str | None) -> None:
    (image,) = item(rec(images=[{"file_path": "a.jpg", "label": label}])).images
    assert (image.label, image.label_given) == (expected, True)


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (7, 7), (3.0, 3), (2**32 - 1, 2**32 - 1)])
def test_positions(value: Any, expected: int) -> None:
    (image,) = item(rec(images=[{"file_path": "a.jpg", "position": value}])).images
    assert image.position == expected
    assert type(image.position) is int


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_disabled(value: Any, expected: bool) -> None:
    (image,) = item(rec(images=[{"file_path": "a.jpg", "disabled": value}])).images
    assert image.disabled is expected


def test_extra_keys_are_ignored() -> None:
    result = item(rec(images=[{**IMAGE, "media_type": "image", "types": []}], product_id=5, store="x"))
    assert result.images[0].path == "/m/y/a.jpg"


@pytest.mark.parametrize("sku", ["SKU-001", " Sku 1 ", "ñ" * 64, "0"])
def test_sku_is_kept_as_given(sku: str) -> None:
    assert item(rec(sku)).sku == sku


@pytest.mark.parametrize(
    ("record", "error", "sku"),
    [
        ({"images": []}, "sku: is required", None),
        (rec(None), "sku: must be a string", None),
        (rec(12345), "sku: must be a string", None),
        (rec(["A"]), "sku: must be a string", None),
        (rec(""), "sku: must not be empty", None),
        (rec("  \t"), "sku: must not be empty", None),
        (rec("X" * 65), "sku: longer than 64 characters", "X" * 65),
        ({"sku": "A"}, "images: is required", "A"),
        (rec("A", images=None) | {"images": None}, "images: must be a list", "A"),
        (rec("A", images={"file_path": "a.jpg"}), "images: must be a list", "A"),
        (rec("A", images="a.jpg"), "images: must be a list", "A"),
        (rec("A", images=["a.jpg"]), "images[0]: must be an object", "A"),
        (rec("A", images=[{}]), "images[0].file_path: is required", "A"),
        (rec("A", images=[{"file_path": 3}]), "images[0].file_path: must be a string", "A"),
        (rec("A", images=[{"file_path": None}]), "images[0].file_path: must be a string", "A"),
        (rec("A", images=[{"file_path": "a", "label": 5}]), "images[0].label: must be a string", "A"),
        (rec("A", images=[{"file_path": "a", "label": "x" * 256}]), "images[0].label: longer than 255", "A"),
        (
            rec("A", images=[IMAGE, IMAGE, {"file_path": "a", "position": "1"}]),
            "images[2].position: must be an integer",
            "A",
        ),
        (
            rec("A", images=[{"file_path": "a", "position": 1.5}]),
            "images[0].position: must be an integer",
            "A",
        ),
        (
            rec("A", images=[{"file_path": "a", "position": True}]),
            "images[0].position: must be an integer",
            "A",
        ),
        (
            rec("A", images=[{"file_path": "a", "position": [1]}]),
            "images[0].position: must be an integer",
            "A",
        ),
        (rec("A", images=[{"file_path": "a", "position": -1}]), "images[0].position: must be between 0", "A"),
        (
            rec("A", images=[{"file_path": "a", "position": 2**32}]),
            "images[0].position: must be between 0",
            "A",
        ),
        (
            rec("A", images=[{"file_path": "a", "disabled": 2}]),
            "images[0].disabled: must be true, false, 0 or 1",
            "A",
        ),
        (rec("A", images=[{"file_path": "a", "disabled": "true"}]), "images[0].disabled: must be true", "A"),
        (rec("A", images=[{"file_path": "a", "disabled": 1.0}]), "images[0].disabled: must be true", "A"),
        (rec("A", images=[{"file_path": "a", "roles": "base"}]), "images[0].roles: must be a list", "A"),
        (
            rec("A", images=[{"file_path": "a", "roles": ["base", 1]}]),
            "images[0].roles[1]: must be a string",
            "A",
        ),
        (
            rec("A", images=[IMAGE, {"file_path": "m/../a.jpg"}]),
            "images[1].file_path: path 'm/../a.jpg' has a '.'",
            "A",
        ),
        (rec("A", images=[{"file_path": ""}]), "images[0].file_path: empty path", "A"),
        (
            rec("A", images=[{"file_path": "cache/x/a.jpg"}]),
            "images[0].file_path: path 'cache/x/a.jpg' is a resized",
            "A",
        ),
        (
            rec("A", images=[{"file_path": "https://h/x.jpg"}]),
            "images[0].file_path: URL 'https://h/x.jpg' does not",
            "A",
        ),
    ],
)
def test_rejections(record: dict[str, Any], error: str, sku: str | None) -> None:
    result = rejection(record)
    assert result.error.startswith(error), result.error
    assert result.sku == sku
    assert result.source == "-#items[0]"
    assert result.ordinal == 1


def test_rejection_counts_further_problems() -> None:
    result = rejection(rec(3, images=[{"position": "x"}]))
    assert result.error == "sku: must be a string (and 2 more)"


# --- roles and duplicates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "codes"),
    [
        (["base"], ("image",)),
        (["Small", "SWATCH"], ("small_image", "swatch_image")),
        (
            ["thumbnail", "swatch_image", "small_image", "image"],
            ("image", "small_image", "thumbnail", "swatch_image"),
        ),
        (["base", "image", " BASE "], ("image",)),  # one image naming a role twice: no warning
        ([], ()),
    ],
)
def test_role_aliases(names: list[str], codes: tuple[str, ...]) -> None:
    result = item(rec(images=[{"file_path": "a.jpg", "roles": names}]))
    assert result.images[0].roles == codes
    assert result.warnings == ()


def test_unknown_roles_are_dropped_with_a_warning() -> None:
    images = [{"file_path": "m/y/b.jpg"}, {"file_path": "m/y/a.jpg", "roles": ["base", "hero", ""]}]
    result = item(rec(images=images))
    assert result.images[1].roles == ("image",)
    assert result.warnings == (
        'unknown_role: image 2 (m/y/a.jpg): role "hero" ignored',
        'unknown_role: image 2 (m/y/a.jpg): role "" ignored',
    )


def test_duplicate_role_goes_to_the_later_image() -> None:
    images = [
        {"file_path": "a.jpg", "roles": ["base", "thumbnail"]},
        {"file_path": "b.jpg", "roles": ["small"]},
        {"file_path": "c.jpg", "roles": ["image", "small_image"]},
    ]
    result = item(rec(images=images))
    assert [i.roles for i in result.images] == [("thumbnail",), (), ("image", "small_image")]
    assert result.warnings == (
        'duplicate_role: role "image" claimed by image 1 (a.jpg) and image 3 (c.jpg): image 3 keeps it',
        'duplicate_role: role "small_image" claimed by image 2 (b.jpg) and image 3 (c.jpg): image 3 keeps it',
    )


def test_duplicate_image_keeps_the_later_entry() -> None:
    images = [
        {"file_path": "m/y/a.jpg", "label": "old", "roles": ["base"], "disabled": True},
        {"file_path": "m/y/b.jpg", "roles": ["thumbnail"]},
        {"file_path": "https://h/media/catalog/product/m/y/a.jpg", "roles": ["small"]},
    ]
    result = item(rec(images=images))
    assert result.images == (
        DesiredImage(path="/m/y/b.jpg", position=2, roles=("thumbnail",)),
        DesiredImage(path="/m/y/a.jpg", position=3, roles=("small_image",)),
    )
    assert result.warnings == (
        "duplicate_image: image 1 (m/y/a.jpg) dropped: image 3 "
        "(https://h/media/catalog/product/m/y/a.jpg) is the same file /m/y/a.jpg",
    )


def test_duplicate_image_dropped_entry_loses_its_roles_without_role_warning() -> None:
    images = [
        {"file_path": "/a.jpg", "roles": ["base"], "position": 9},
        {"file_path": "a.jpg", "roles": ["base"], "position": 4},
        {"file_path": "catalog/product/a.jpg", "roles": ["thumbnail"], "label": "new"},
    ]
    result = item(rec(images=images))
    assert result.images == (
        DesiredImage(path="/a.jpg", position=3, label="new", label_given=True, roles=("thumbnail",)),
    )
    assert [w.split(":")[0] for w in result.warnings] == ["duplicate_image", "duplicate_image"]


def test_warning_codes_cover_what_is_emitted() -> None:
    images = [
        {"file_path": "a.jpg", "roles": ["hero", "base"]},
        {"file_path": "b.jpg"},
        {"file_path": "/b.jpg", "roles": ["base"], "label": "two\tcolumns"},
    ]
    result = item(rec(images=images))
    codes = {w.split(": ", 1)[0] for w in result.warnings}
    assert codes == set(WARNING_CODES) == {"unknown_role", "duplicate_role", "duplicate_image", "label_whitespace"}
    assert all(re.fullmatch(r"[a-z_]+: .+", w) for w in result.warnings)


# --- streaming ------------------------------------------------------------------------------------


class LockstepLines(io.RawIOBase):
    """An endless NDJSON stream that serves line k+1 only after the consumer has received k items.

    Each read returns at most the rest of one line, so a reader that wanted the whole input (or
    even one record ahead) before yielding would trip the assertion instead of hanging.
    """

    def __init__(self, received: list[Item | Rejection]) -> None:
        super().__init__()
        self.received = received
        self.lines_started = 0
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pending:
            assert len(self.received) >= self.lines_started, "asked for the next line before yielding"
            self.lines_started += 1
            self.pending = (json.dumps(rec(f"S{self.lines_started}")) + "\n").encode()
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def test_ndjson_on_stdin_is_streamed_record_by_record() -> None:
    received: list[Item | Rejection] = []
    stream = LockstepLines(received)
    for result in itertools.islice(Feed(["-"], stdin=stream), 5):  # type: ignore[arg-type]
        received.append(result)  # noqa: PERF402 (one by one: the stream checks each is received before the next read)
    assert [r.sku for r in received] == ["S1", "S2", "S3", "S4", "S5"]
    assert [r.source for r in received] == ["-:1", "-:2", "-:3", "-:4", "-:5"]
    assert stream.lines_started == 5


class EndlessGzip(io.RawIOBase):
    """A gzip-compressed NDJSON stream without end; fails if more than `limit` bytes are pulled."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.pulled = 0
        self.pending = b""
        self.compressor = zlib.compressobj(wbits=31)
        self.lines = (json.dumps(rec(f"S{n}")).encode() + b"\n" for n in itertools.count(1))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            self.pending = self.compressor.compress(next(self.lines)) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        self.pulled += n
        assert self.pulled <= self.limit, "read far beyond the first records"
        return n


def test_gzip_ndjson_on_stdin_is_streamed() -> None:
    stream = EndlessGzip(limit=MAX_RECORD_BYTES)
    first = list(itertools.islice(Feed(["-"], stdin=stream), 3))  # type: ignore[arg-type]
    assert [r.sku for r in first] == ["S1", "S2", "S3"]
    assert stream.pulled < 256 * 1024


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_ndjson_file_yields_before_the_writer_finishes(tmp_path: Path) -> None:
    """A named pipe as the .ndjson file: the writer sends line 2 only after item 1 arrived."""
    path = tmp_path / "feed.ndjson"
    os.mkfifo(path)
    got_first = threading.Event()
    outcome: dict[str, bool] = {}

    def writer() -> None:
        with open(path, "wb") as pipe:
            pipe.write(ndjson(rec("A")).encode())
            pipe.flush()
            outcome["first_seen_in_time"] = got_first.wait(timeout=10)
            pipe.write(ndjson(rec("B")).encode())

    thread = threading.Thread(target=writer)
    thread.start()
    it: Iterator[Item | Rejection] = iter(Feed([str(path)]))
    first = next(it)
    got_first.set()
    rest = list(it)
    thread.join()
    assert outcome["first_seen_in_time"]
    assert [r.sku for r in [first, *rest]] == ["A", "B"]


def test_feed_reports_progress_in_bytes(tmp_path):
    from nacento_sync.feed import Feed

    a = tmp_path / "a.ndjson"
    a.write_text('{"sku": "A", "images": []}\n' * 3)
    b = tmp_path / "b.ndjson"
    b.write_text('{"sku": "B", "images": []}\n')
    feed = Feed([str(a), str(b)])
    assert feed.total_bytes() == a.stat().st_size + b.stat().st_size
    seen = [feed.bytes_read() for _ in feed]
    assert seen[0] > 0 and seen == sorted(seen)
    assert feed.bytes_read() == feed.total_bytes()
    assert Feed(["-"]).total_bytes() is None


# --- text fields: invalid Unicode and control characters (issue 7, items 4 and 5) ----------------

#: Lone surrogates (a JSON `\ud800` escape; `\udcXX` is what Python makes of argv bytes that are not UTF-8).
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udcff", "\udfff"]
#: Forbidden everywhere: C0 other than TAB/LF/CR, DEL, C1.
CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
#: Forbidden everywhere except in labels, where they become spaces.
LINE_CONTROLS = ["\t", "\n", "\r"]


def _with_bad(field: str, bad: str) -> tuple[dict[str, Any], str]:
    """A record with `bad` inside the text `field` (its report name), else valid; and that name."""
    image: dict[str, Any] = {"file_path": "m/y/a.jpg", "label": "Front", "roles": ["base", "thumbnail"]}
    images: list[dict[str, Any]] = [{"file_path": "m/y/first.jpg"}, image]
    sku = "SKU-1"
    if field == "sku":
        sku = f"SKU{bad}1"
    elif field == "images[1].file_path":
        image["file_path"] = f"m/y/a{bad}.jpg"
    elif field == "images[1].label":
        image["label"] = f"Fr{bad}ont"
    elif field == "images[1].roles[1]":
        image["roles"] = ["base", f"thumb{bad}nail"]
    return rec(sku, images=images), field


def _expected_error(field: str, bad: str) -> str:
    code = f"U+{ord(bad):04X}"
    if 0xD800 <= ord(bad) <= 0xDFFF:
        return f"{field}: {code} is not valid Unicode (a lone surrogate)"
    return f"{field}: control character {code} is not allowed"


TEXT_FIELDS = ["sku", "images[1].file_path", "images[1].label", "images[1].roles[1]"]


def _printable_and_encodable(text: str) -> bool:
    text.encode("utf-8")  # raises on a lone surrogate: the report could not be written
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("bad", SURROGATES + CONTROLS)
def test_invalid_text_rejects_the_record(field: str, bad: str) -> None:
    record, name = _with_bad(field, bad)
    result = rejection(record)  # through a JSON body on stdin: `json.dumps` writes surrogates as \udXXX
    assert result.error == _expected_error(name, bad)
    assert result.sku == (None if field == "sku" else "SKU-1")
    assert _printable_and_encodable(result.error)


@pytest.mark.parametrize("field", ["sku", "images[1].file_path", "images[1].roles[1]"])
@pytest.mark.parametrize("bad", LINE_CONTROLS)
def test_tab_and_line_breaks_are_rejected_outside_labels(field: str, bad: str) -> None:
    record, name = _with_bad(field, bad)
    assert rejection(record).error == _expected_error(name, bad)


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x85", "\ud800", "\udcff"])
def test_invalid_text_in_ndjson_line_and_bulk_body(tmp_path: Path, bad: str) -> None:
    """The same rejection in every format, with the record's source; the records around it are kept."""
    record, _ = _with_bad("images[1].label", bad)
    lines = write(tmp_path, "feed.ndjson", ndjson(rec("A"), record, rec("B")))
    body = write(tmp_path, "bulk.json", json.dumps({"items": [rec("C"), record]}))
    results = run([lines, body])
    assert kinds(results) == [
        ("Item", f"{lines}:1", 1),
        ("Rejection", f"{lines}:2", 2),
        ("Item", f"{lines}:3", 3),
        ("Item", f"{body}#items[0]", 4),
        ("Rejection", f"{body}#items[1]", 5),
    ]
    assert results[1].error == results[4].error == _expected_error("images[1].label", bad)


@pytest.mark.parametrize("bad", ["\ud800", "\x00", "\x1b"])
def test_bad_role_rejects_before_any_unknown_role_warning(bad: str) -> None:
    """An unknown role would be echoed in a warning: the record is rejected before that."""
    images = [{"file_path": "a.jpg", "roles": ["hero", f"x{bad}"]}, {"file_path": "b.jpg", "roles": [bad]}]
    result = rejection(rec("A", images=images))
    assert result.error == _expected_error("images[0].roles[1]", bad)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"SKU-\xff", "m/y/a.jpg"),
        (b"SKU-1", b"m/y/\xe9.jpg"),
        (b"\xc3(", "m/y/a.jpg"),
    ],
)
def test_undecodable_command_line_arguments_are_rejected(raw: bytes, path: str | bytes) -> None:
    """`nacento-sync sku SKU --image PATH` hands argv (surrogate-escaped by Python) to parse_record."""
    argv_sku = os.fsdecode(raw)
    argv_path = os.fsdecode(path) if isinstance(path, bytes) else path
    result = parse_record({"sku": argv_sku, "images": [{"file_path": argv_path}]}, "--image", 1)
    assert isinstance(result, Rejection)
    field = "sku" if argv_sku != "SKU-1" else "images[0].file_path"
    assert result.error.startswith(f"{field}: U+DC")
    assert result.sku is None if field == "sku" else result.sku == "SKU-1"
    assert _printable_and_encodable(result.error)


@pytest.mark.parametrize(
    "good",
    ["é", "日本語", "😀", "\u00a0", "\u2028", "\ufeff", "\U0010fffd", "\u00ff", "\u0100"],
)
def test_other_unicode_is_valid(good: str) -> None:
    images = [{"file_path": f"m/y/{good}.jpg", "label": f"L{good}", "roles": ["base"]}]
    result = item(rec(f"S{good}", images=images))
    assert result.sku == f"S{good}"
    assert result.images[0].label == f"L{good}"
    assert result.images[0].path == f"/m/y/{good}.jpg"
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("label", "stored"),
    [
        ("Front\tView", "Front View"),
        ("Front\nView", "Front View"),
        ("Front\rView", "Front View"),
        ("Front\r\nView", "Front  View"),
        (" a\t\tb ", " a  b "),
        ("\tFront", " Front"),
        ("Front\n", "Front "),
        ("\t\n", None),  # only whitespace: cleared, as "" and "  " are
    ],
)
def test_label_tab_and_line_breaks_become_spaces_with_a_warning(label: str, stored: str | None) -> None:
    images = [{"file_path": "m/y/a.jpg"}, {"file_path": "m/y/b.jpg", "label": label}]
    result = item(rec("A", images=images))
    assert result.images[1].label == stored
    assert result.images[1].label_given is True
    assert result.warnings == (
        "label_whitespace: image 2 (m/y/b.jpg): tab, line feed or carriage return in the label replaced by a space",
    )


def test_label_whitespace_warning_once_per_image() -> None:
    images = [
        {"file_path": "a.jpg", "label": "a\tb\nc\rd"},
        {"file_path": "b.jpg", "label": "plain"},
        {"file_path": "c.jpg", "label": "x\n"},
    ]
    result = item(rec("A", images=images))
    assert [i.label for i in result.images] == ["a b c d", "plain", "x "]
    assert [w.split(": ", 2)[1] for w in result.warnings] == ["image 1 (a.jpg)", "image 3 (c.jpg)"]
    assert all(w.startswith("label_whitespace: ") for w in result.warnings)


@pytest.mark.parametrize("bad", ["\ud800", "\x07", "\x0b", "\x85"])
def test_check_text_is_reusable_for_any_field(bad: str) -> None:
    """One function for every text field (store codes will use it too)."""
    assert check_text("stores.de.label", "Vorne\tlinks", label=True) == "Vorne links"
    assert check_text("store_roles.de[0]", "base") == "base"
    with pytest.raises(TextError) as info:
        check_text("stores.de", f"d{bad}e")
    assert str(info.value) == _expected_error("stores.de", bad)
    with pytest.raises(TextError):
        check_text("stores.de.label", f"d{bad}e", label=True)


@pytest.mark.parametrize("bad", SURROGATES + CONTROLS + LINE_CONTROLS)
def test_text_problem_and_printable(bad: str) -> None:
    assert text_problem(f"a{bad}b") is not None
    shown = printable(f"a{bad}b")
    assert shown.startswith("a\\") and shown.endswith("b")
    assert _printable_and_encodable(shown)
    assert printable(shown) == shown


@pytest.mark.parametrize("name", [b"feed\x07.ndjson", b"feed\xff.ndjson", b"feed\n\x9b.ndjson"])
def test_file_names_are_shown_printable(tmp_path: Path, name: bytes) -> None:
    """A source names its file; argv may hold control characters or bytes that are not UTF-8."""
    path = os.path.join(os.fsdecode(tmp_path), os.fsdecode(name))
    Path(path).write_text(ndjson(rec("A"), "{bad"))
    missing = path + ".missing"
    results = run([path, missing])
    assert [type(r).__name__ for r in results] == ["Item", "Rejection", "Rejection"]
    assert all(_printable_and_encodable(r.source + getattr(r, "error", "")) for r in results)
    assert results[0].source == printable(path) + ":1"
    assert results[2].source == printable(missing)


@pytest.mark.parametrize("request_id", ["op\ud800", "op\x07", "op\n1", "\x9b31m"])
def test_request_id_that_cannot_be_printed_is_ignored(tmp_path: Path, request_id: str) -> None:
    path = write(tmp_path, "bulk.json", json.dumps({"request": {"request_id": request_id, "items": [rec("A")]}}))
    feed = Feed([path])
    assert [r.sku for r in feed] == ["A"]
    assert feed.request_id is None


# --- format sniffing (issue 7, item 6) -------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"[", b"[]", b'[{"sku": "A"}', b"{", b'{"request": {"items": []}}', b'{ "items" : [', b'{"items":[]}',
     b'{\t"request":'],
)
def test_is_document(line: bytes) -> None:
    assert is_document(line)


@pytest.mark.parametrize(
    "line",
    [b'{"sku": "A", "images": []}', b'{"SKU": "A"}', b'{"sku": "A", "ima', b"hello", b"{ x", b"{}", b"{{",
     b'{"request_id": "r"}', b'{"itemsx": []}', b'{"images": [], "items": []}', b'"items"', b"null", b""],
)
def test_is_not_document(line: bytes) -> None:
    assert not is_document(line)


BAD_FIRST_LINES = [
    '{"sku": "A", "images": [{"file_pa',  # truncated
    '{"SKU": "A", "images": []}',  # wrong key
    "garbage",
    '{"sku": "A", "images": 3}',  # valid JSON, invalid record
    "\x00\x01",
]


def _sniffed_sources(tmp_path: Path, where: str, data: bytes) -> tuple[list[Item | Rejection], str]:
    if where == "stdin":
        return run(["-"], stdin=data), "-"
    path = write(tmp_path, where, data)
    return run([path]), path


@pytest.mark.parametrize("where", ["stdin", "export", "export.txt"])
@pytest.mark.parametrize("first", BAD_FIRST_LINES)
@pytest.mark.parametrize("compress", [False, True])
def test_bad_first_line_costs_one_record(tmp_path: Path, where: str, first: str, compress: bool) -> None:
    data = ("\n" + first + "\n" + ndjson(*(rec(f"S{n}") for n in range(20)))).encode()
    results, name = _sniffed_sources(tmp_path, where, gzip.compress(data) if compress else data)
    assert kinds(results) == [("Rejection", f"{name}:2", 1)] + [
        ("Item", f"{name}:{n + 3}", n + 2) for n in range(20)
    ]


DOCUMENT = {"request": {"request_id": "op-7", "items": [rec("A"), rec("B")]}}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps([rec("A"), rec("B")]),  # starts with [
        json.dumps([rec("A"), rec("B")], indent=2),
        json.dumps(DOCUMENT, indent=2),  # a lone { line, then a pretty-printed body
        "{\n" + json.dumps(DOCUMENT)[1:],
        json.dumps(DOCUMENT),  # {"request": ...} on one line
        json.dumps({"items": [rec("A"), rec("B")]}),  # {"items": ...} on one line
        '{ "items":\n' + json.dumps([rec("A"), rec("B")]) + "}",
        "\n \n\t\r\n" + json.dumps(DOCUMENT, indent=2),  # leading blank lines
    ],
)
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("where", ["stdin", "export", "export.dat"])
def test_json_documents_are_sniffed(tmp_path: Path, text: str, bom: bytes, compress: bool, where: str) -> None:
    data = bom + text.encode()
    results, name = _sniffed_sources(tmp_path, where, gzip.compress(data) if compress else data)
    assert [(r.sku, r.source) for r in results] == [("A", f"{name}#items[0]"), ("B", f"{name}#items[1]")]


@pytest.mark.parametrize("where", ["stdin", "export"])
def test_ndjson_with_bom_and_blank_lines_is_sniffed(tmp_path: Path, where: str) -> None:
    data = b"\xef\xbb\xbf\n  \n" + ndjson(rec("A"), rec("B")).encode()
    results, name = _sniffed_sources(tmp_path, where, data)
    assert kinds(results) == [("Item", f"{name}:3", 1), ("Item", f"{name}:4", 2)]


def test_long_first_line_is_sniffed_and_kept() -> None:
    """The rule looks at the start of the first line only; the whole line is still read as a record."""
    results = run(["-"], stdin=(_padded(300_000, "LONG") + "\n" + ndjson(rec("B"))).encode())
    assert [(r.sku, r.source) for r in results] == [("LONG", "-:1"), ("B", "-:2")]


def test_bad_document_after_sniffing_is_one_rejection() -> None:
    """What the rule calls a document is parsed whole: a broken one is one rejection, as before."""
    results = run(["-"], stdin=b'{"items": [' + json.dumps(rec("A")).encode() + b",\n")
    assert kinds(results) == [("Rejection", "-", 1)]
    assert results[0].error.startswith("invalid JSON")


# --- stdin closed ---------------------------------------------------------------------------------


def test_stdin_closed_is_a_feed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.stdin", None)  # what Python sets when fd 0 is not open at start
    with pytest.raises(FeedError, match="standard input is closed"):
        Feed(["-"])
    with pytest.raises(FeedError):
        Feed([write(tmp_path, "a.ndjson", ndjson(rec("A"))), "-"])
    assert [r.sku for r in Feed(["-"], stdin=io.BytesIO(ndjson(rec("S")).encode()))] == ["S"]
    assert [r.sku for r in Feed([write(tmp_path, "b.ndjson", ndjson(rec("B")))])] == ["B"]


@pytest.mark.parametrize("command", ["sync", "submit"])
def test_cli_with_stdin_closed_exits_2(tmp_path: Path, command: str) -> None:
    """fd 0 really closed (not /dev/null); fails before any server is contacted (none is configured)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NACENTO_STORAGE__BUCKET": "bucket",
           "NACENTO_DATABASE__PORT": "1", "NACENTO_QUEUE__URL": "amqp://guest:guest@127.0.0.1:1/"}
    exe = Path(sys.executable).with_name("nacento-sync")
    done = subprocess.run(["bash", "-c", f'exec 0<&-; exec "{exe}" {command} -'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: cannot read '-': standard input is closed"
    assert "Traceback" not in done.stderr


# --- store views: `stores` and `store_roles` (issue 8) -------------------------------------------


def _stored(stores: Any, file_path: str = "m/y/a.jpg") -> Item | Rejection:
    return one(rec(images=[{"file_path": file_path, "stores": stores}]))


def _store_roles(store_roles: Any, images: Any = None) -> Item | Rejection:
    images = images if images is not None else [{"file_path": "m/y/a.jpg"}, {"file_path": "m/y/b.jpg"}]
    return one(rec(images=images, store_roles=store_roles))


def test_store_values_are_mapped_in_feed_order() -> None:
    stores = {"fr": {"label": "Devant", "position": 3, "disabled": True},
              "de": {"label": "Vorne"}, "en_us": {"position": 0, "disabled": 0}}
    result = item(rec(images=[{"file_path": "m/y/a.jpg", "label": "Front", "stores": stores}]))
    assert result.images[0].stores == (
        ("fr", StoreValues(label="Devant", position=3, disabled=True,
                           given=frozenset({"label", "position", "disabled"}))),
        ("de", StoreValues(label="Vorne", given=frozenset({"label"}))),
        ("en_us", StoreValues(position=0, disabled=False, given=frozenset({"position", "disabled"}))),
    )
    assert result.images[0].label == "Front" and result.warnings == () and result.store_roles == ()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, StoreValues()),
        ({"label": None}, StoreValues(given=frozenset({"label"}))),
        ({"label": ""}, StoreValues(given=frozenset({"label"}))),
        ({"label": "   "}, StoreValues(given=frozenset({"label"}))),
        ({"label": " Kept as given "}, StoreValues(label=" Kept as given ", given=frozenset({"label"}))),
        ({"label": "ñ" * 255}, StoreValues(label="ñ" * 255, given=frozenset({"label"}))),
        ({"position": None}, StoreValues(given=frozenset({"position"}))),
        ({"position": 3.0}, StoreValues(position=3, given=frozenset({"position"}))),
        ({"position": 2**32 - 1}, StoreValues(position=2**32 - 1, given=frozenset({"position"}))),
        ({"disabled": None}, StoreValues(given=frozenset({"disabled"}))),
        ({"disabled": 1}, StoreValues(disabled=True, given=frozenset({"disabled"}))),
        ({"disabled": False}, StoreValues(disabled=False, given=frozenset({"disabled"}))),
        ({"label": None, "position": None, "disabled": None},
         StoreValues(given=frozenset({"label", "position", "disabled"}))),
        ({"label": "x", "note": [1], "roles": ["base"], "file_path": 3},  # unknown keys are ignored
         StoreValues(label="x", given=frozenset({"label"}))),
    ],
)
def test_store_values_given_and_null(values: dict[str, Any], expected: StoreValues) -> None:
    result = _stored({"fr": values})
    assert isinstance(result, Item), result
    assert result.images[0].stores == (("fr", expected),)
    assert result.warnings == ()


@pytest.mark.parametrize("stores", [None, {}])
def test_no_store_values(stores: Any) -> None:
    result = _stored(stores)
    assert isinstance(result, Item) and result.images[0].stores == ()


@pytest.mark.parametrize("code", ["fr", "FR", "default", "en_us", "0", "_", "a" * 32, "store_2", "nowhere"])
def test_store_codes_of_any_valid_shape_are_kept(code: str) -> None:
    """Whether a code exists is known only to the engine (warning `unknown_store`)."""
    result = _store_roles({code: {"base": "m/y/a.jpg"}}, images=[{"file_path": "m/y/a.jpg",
                                                                  "stores": {code: {"position": 1}}}])
    assert isinstance(result, Item), result
    assert result.images[0].stores == ((code, StoreValues(position=1, given=frozenset({"position"}))),)
    assert result.store_roles == ((code, (("image", "/m/y/a.jpg"),)),)


@pytest.mark.parametrize(
    ("label", "stored"),
    [("two\tcolumns", "two columns"), ("a\r\nb", "a  b"), ("\n", None), ("\t\t", None)],
)
def test_store_label_whitespace_becomes_spaces_with_a_warning(label: str, stored: str | None) -> None:
    result = _stored({"fr": {"label": label}})
    assert isinstance(result, Item), result
    assert result.images[0].stores == (("fr", StoreValues(label=stored, given=frozenset({"label"}))),)
    (warning,) = result.warnings
    assert warning.startswith("label_whitespace: image 1 (m/y/a.jpg) store fr: ")


@pytest.mark.parametrize(
    ("stores", "error"),
    [
        ([], 'images[0].stores: must be an object'),
        ("fr", 'images[0].stores: must be an object'),
        ([{"fr": {}}], 'images[0].stores: must be an object'),
        ({"fr": None}, 'images[0].stores["fr"]: must be an object'),
        ({"fr": []}, 'images[0].stores["fr"]: must be an object'),
        ({"fr": "Devant"}, 'images[0].stores["fr"]: must be an object'),
        ({"fr": {"label": 5}}, 'images[0].stores["fr"].label: must be a string'),
        ({"fr": {"label": ["x"]}}, 'images[0].stores["fr"].label: must be a string'),
        ({"fr": {"label": "x" * 256}}, 'images[0].stores["fr"].label: longer than 255 characters'),
        ({"fr": {"position": "1"}}, 'images[0].stores["fr"].position: must be an integer'),
        ({"fr": {"position": 1.5}}, 'images[0].stores["fr"].position: must be an integer'),
        ({"fr": {"position": True}}, 'images[0].stores["fr"].position: must be an integer'),
        ({"fr": {"position": -1}}, 'images[0].stores["fr"].position: must be between 0 and 4294967295'),
        ({"fr": {"position": 2**32}}, 'images[0].stores["fr"].position: must be between 0 and 4294967295'),
        ({"fr": {"disabled": 2}}, 'images[0].stores["fr"].disabled: must be true, false, 0 or 1'),
        ({"fr": {"disabled": "true"}}, 'images[0].stores["fr"].disabled: must be true, false, 0 or 1'),
        ({"fr": {"disabled": 1.0}}, 'images[0].stores["fr"].disabled: must be true, false, 0 or 1'),
        ({"fr": {"position": "x", "disabled": 7}}, 'images[0].stores["fr"].position: must be an integer (and 1 more)'),
        ({"de": {}, "fr": {"position": -2}}, 'images[0].stores["fr"].position: must be between 0'),
    ],
)
def test_bad_store_values_reject_the_record(stores: Any, error: str) -> None:
    result = _stored(stores)
    assert isinstance(result, Rejection), result
    assert result.error.startswith(error), result.error
    assert result.sku == "SKU-1"


BAD_STORE_CODES = [
    ("", "a store code must not be empty"),
    ("fr!", "a store code has only letters, digits and underscores"),
    ("fr-ch", "a store code has only letters, digits and underscores"),
    ("fr ch", "a store code has only letters, digits and underscores"),
    (" fr", "a store code has only letters, digits and underscores"),
    ("é", "a store code has only letters, digits and underscores"),
    ("a" * 33, "a store code is at most 32 characters"),
    ("f\x07r", "control character U+0007 is not allowed"),
    ("fr\t", "control character U+0009 is not allowed"),
    ("\x85", "control character U+0085 is not allowed"),
    ("fr\ud800", "U+D800 is not valid Unicode (a lone surrogate)"),
    ("admin", "is store 0 (all store views): its values are the top-level ones"),
    ("ADMIN", "is store 0 (all store views): its values are the top-level ones"),
    ("Admin", "is store 0 (all store views): its values are the top-level ones"),
]


@pytest.mark.parametrize(("code", "problem"), BAD_STORE_CODES)
@pytest.mark.parametrize("where", ["stores", "store_roles"])
def test_bad_store_codes_reject_the_record(code: str, problem: str, where: str) -> None:
    if where == "stores":
        result = _stored({"de": {}, code: {"label": "x"}})
        prefix = "images[0].stores"
    else:
        result = _store_roles({"de": {}, code: {"base": None}})
        prefix = "store_roles"
    assert isinstance(result, Rejection), result
    shown = printable(code if len(code) <= 40 else code[:37] + "...")
    assert result.error.startswith(f'{prefix}["{shown}"]: '), result.error
    assert result.error.endswith(problem), result.error
    assert _printable_and_encodable(result.error)


def test_a_long_bad_store_code_is_truncated_in_the_message() -> None:
    result = _stored({"x" * 10_000: {}})
    assert isinstance(result, Rejection)
    assert result.error == f'images[0].stores["{"x" * 37}..."]: a store code is at most 32 characters'


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"base": "m/y/a.jpg"}, (("image", "/m/y/a.jpg"),)),
        ({"image": "m/y/a.jpg"}, (("image", "/m/y/a.jpg"),)),
        ({"small": "m/y/b.jpg", "Thumbnail": "m/y/a.jpg"}, (("small_image", "/m/y/b.jpg"),
                                                             ("thumbnail", "/m/y/a.jpg"))),
        ({"swatch": None, " SMALL_IMAGE ": "m/y/a.jpg"}, (("small_image", "/m/y/a.jpg"), ("swatch_image", None))),
        ({"swatch_image": "m/y/b.jpg", "thumbnail": None, "small_image": None, "base": None},
         (("image", None), ("small_image", None), ("thumbnail", None), ("swatch_image", "/m/y/b.jpg"))),
        ({}, ()),
    ],
)
def test_store_role_aliases_and_null(names: dict[str, Any], expected: tuple[Any, ...]) -> None:
    result = _store_roles({"fr": names})
    assert isinstance(result, Item), result
    assert result.store_roles == (("fr", expected),)
    assert result.warnings == ()


@pytest.mark.parametrize(
    "spelling",
    ["m/y/a.jpg", "/m/y/a.jpg", " m/y/a.jpg ", "catalog/product/m/y/a.jpg", "/media/catalog/product/m/y/a.jpg",
     "pub/media/catalog/product/m/y/a.jpg", "https://cdn.example.com/x/media/catalog/product/m/y/a.jpg",
     "http://h/media/catalog/product/m/y/%61.jpg"],
)
def test_store_role_paths_in_any_spelling(spelling: str) -> None:
    images = [{"file_path": "https://pim/media/catalog/product/m/y/a.jpg"}, {"file_path": "b.jpg"}]
    result = _store_roles({"fr": {"base": spelling}}, images=images)
    assert isinstance(result, Item), result
    assert result.store_roles == (("fr", (("image", "/m/y/a.jpg"),)),)


def test_store_roles_keep_store_order_and_several_stores() -> None:
    result = _store_roles({"fr": {"base": "m/y/b.jpg"}, "de": {"base": None, "small": "m/y/a.jpg"},
                           "it": {}})
    assert isinstance(result, Item), result
    assert result.store_roles == (
        ("fr", (("image", "/m/y/b.jpg"),)),
        ("de", (("image", None), ("small_image", "/m/y/a.jpg"))),
        ("it", ()),
    )


def test_unknown_store_role_is_ignored_with_a_warning_whatever_its_value() -> None:
    result = _store_roles({"fr": {"hero": {"not": "validated"}, "base": "m/y/a.jpg", "zoom": 5}})
    assert isinstance(result, Item), result
    assert result.store_roles == (("fr", (("image", "/m/y/a.jpg"),)),)
    assert result.warnings == ('unknown_role: store_roles["fr"]: role "hero" ignored',
                               'unknown_role: store_roles["fr"]: role "zoom" ignored')


def test_store_role_given_twice_by_aliases_goes_to_the_later_one() -> None:
    result = _store_roles({"fr": {"base": "m/y/a.jpg", "image": "m/y/b.jpg", "small": "a.jpg"}},
                          images=[{"file_path": "m/y/a.jpg"}, {"file_path": "m/y/b.jpg"}, {"file_path": "a.jpg"}])
    assert isinstance(result, Item), result
    assert result.store_roles == (("fr", (("image", "/m/y/b.jpg"), ("small_image", "/a.jpg"))),)
    assert result.warnings == ('duplicate_role: store_roles["fr"]: role "image" given as "base" and "image": '
                               '"image" keeps it',)
    same = _store_roles({"fr": {"base": "m/y/a.jpg", "image": "/m/y/a.jpg"}})
    assert isinstance(same, Item) and same.warnings == ()  # one image named twice: nothing to warn about


@pytest.mark.parametrize(
    ("store_roles", "error"),
    [
        ([], "store_roles: must be an object"),
        ("fr", "store_roles: must be an object"),
        ({"fr": None}, 'store_roles["fr"]: must be an object'),
        ({"fr": ["base"]}, 'store_roles["fr"]: must be an object'),
        ({"fr": "m/y/a.jpg"}, 'store_roles["fr"]: must be an object'),
        ({"fr": {"base": 5}}, 'store_roles["fr"]["base"]: must be a string or null'),
        ({"fr": {"base": True}}, 'store_roles["fr"]["base"]: must be a string or null'),
        ({"fr": {"base": ["m/y/a.jpg"]}}, 'store_roles["fr"]["base"]: must be a string or null'),
        ({"fr": {"base": {"file_path": "m/y/a.jpg"}}}, 'store_roles["fr"]["base"]: must be a string or null'),
        ({"fr": {"base": "m/y/c.jpg"}}, 'store_roles["fr"]["base"]: /m/y/c.jpg is not one of the item\'s images'),
        ({"fr": {"small": "M/Y/A.JPG"}},
         'store_roles["fr"]["small"]: /M/Y/A.JPG is not one of the item\'s images'),
        ({"de": {"base": "m/y/a.jpg"}, "fr": {"thumbnail": "y/a.jpg"}},
         'store_roles["fr"]["thumbnail"]: /y/a.jpg is not one of the item\'s images'),
        ({"fr": {"base": ""}}, 'store_roles["fr"]["base"]: empty path'),
        ({"fr": {"base": "m/../a.jpg"}}, 'store_roles["fr"]["base"]: path \'m/../a.jpg\' has a \'.\''),
        ({"fr": {"base": "cache/x/m/y/a.jpg"}}, 'store_roles["fr"]["base"]: path \'cache/x/m/y/a.jpg\' is a resized'),
        ({"fr": {"base": "m/y/a\x07.jpg"}}, 'store_roles["fr"]["base"]: control character U+0007 is not allowed'),
        ({"fr": {"base": "m/y/a\ud800.jpg"}}, 'store_roles["fr"]["base"]: U+D800 is not valid Unicode'),
        ({"fr": {"ba\x1bse": None}}, 'store_roles["fr"]["ba\\x1bse"]: control character U+001B is not allowed'),
        ({"fr": {"ba\udcffse": "m/y/a.jpg"}}, 'store_roles["fr"]["ba\\udcffse"]: U+DCFF is not valid Unicode'),
    ],
)
def test_bad_store_roles_reject_the_record(store_roles: Any, error: str) -> None:
    result = _store_roles(store_roles)
    assert isinstance(result, Rejection), result
    assert result.error.startswith(error), result.error
    assert result.sku == "SKU-1" and result.source == "-#items[0]"
    assert _printable_and_encodable(result.error)


def test_store_roles_of_an_item_without_images_may_only_be_null() -> None:
    ok = _store_roles({"fr": {"base": None}}, images=[])
    assert isinstance(ok, Item) and ok.store_roles == (("fr", (("image", None),)),)
    bad = _store_roles({"fr": {"base": "m/y/a.jpg"}}, images=[])
    assert isinstance(bad, Rejection) and "is not one of the item's images" in bad.error


def test_store_roles_null_is_not_sent() -> None:
    result = _store_roles(None)
    assert isinstance(result, Item) and result.store_roles == ()


def test_duplicate_image_keeps_the_later_entrys_stores() -> None:
    images = [
        {"file_path": "m/y/a.jpg", "stores": {"fr": {"label": "old"}, "de": {"position": 1}}},
        {"file_path": "b.jpg"},
        {"file_path": "/catalog/product/m/y/a.jpg", "stores": {"fr": {"label": "new"}}},
        {"file_path": "c.jpg", "stores": {"it": {"disabled": True}}},
        {"file_path": "c.jpg"},
    ]
    result = _store_roles({"fr": {"base": "/m/y/a.jpg", "thumbnail": "m/y/a.jpg"}}, images=images)
    assert isinstance(result, Item), result
    assert [(i.path, i.stores) for i in result.images] == [
        ("/b.jpg", ()),
        ("/m/y/a.jpg", (("fr", StoreValues(label="new", given=frozenset({"label"}))),)),
        ("/c.jpg", ()),
    ]
    assert result.store_roles == (("fr", (("image", "/m/y/a.jpg"), ("thumbnail", "/m/y/a.jpg"))),)
    assert [w.split(":")[0] for w in result.warnings] == ["duplicate_image", "duplicate_image"]


def test_a_dropped_duplicates_store_values_are_still_validated() -> None:
    images = [{"file_path": "a.jpg", "stores": {"fr": {"position": "x"}}}, {"file_path": "a.jpg"}]
    assert rejection(rec(images=images)).error == 'images[0].stores["fr"].position: must be an integer'


STORE_RECORD = rec(
    "S-1",
    images=[{"file_path": "m/y/a.jpg", "label": "Front", "stores": {"fr": {"label": "Devant", "disabled": None}}},
            {"file_path": "m/y/b.jpg", "stores": {"de": {"position": 9}, "fr": {"label": ""}}}],
    store_roles={"fr": {"base": "/m/y/b.jpg", "small": None}, "de": {"thumbnail": "catalog/product/m/y/a.jpg"}},
)
STORE_ITEM_IMAGES = (
    DesiredImage(path="/m/y/a.jpg", position=1, label="Front", label_given=True,
                 stores=(("fr", StoreValues(label="Devant", given=frozenset({"label", "disabled"}))),)),
    DesiredImage(path="/m/y/b.jpg", position=2,
                 stores=(("de", StoreValues(position=9, given=frozenset({"position"}))),
                         ("fr", StoreValues(given=frozenset({"label"}))))),
)
STORE_ITEM_ROLES = (("fr", (("image", "/m/y/b.jpg"), ("small_image", None))),
                    ("de", (("thumbnail", "/m/y/a.jpg"),)))


@pytest.mark.parametrize(
    ("name", "body", "source"),
    [
        ("feed.ndjson", ndjson(STORE_RECORD), ":1"),
        ("feed.ndjson.gz", ndjson(STORE_RECORD), ":1"),
        ("feed.json", json.dumps({"request": {"request_id": "r", "items": [STORE_RECORD]}}), "#items[0]"),
        ("feed.json", json.dumps({"items": [STORE_RECORD]}, indent=2), "#items[0]"),
        ("feed.json", json.dumps([STORE_RECORD]), "#items[0]"),
        ("feed.txt", ndjson(STORE_RECORD), ":1"),
    ],
)
def test_store_values_in_ndjson_and_bulk_bodies(tmp_path: Path, name: str, body: str, source: str) -> None:
    data = gzip.compress(body.encode()) if name.endswith(".gz") else body.encode()
    path = write(tmp_path, name, data)
    (result,) = run([path])
    assert result == Item(sku="S-1", images=STORE_ITEM_IMAGES, source=path + source, ordinal=1,
                          store_roles=STORE_ITEM_ROLES)


def test_store_error_in_one_record_does_not_stop_the_others(tmp_path: Path) -> None:
    bad = rec("B", store_roles={"fr": {"base": "nope.jpg"}})
    path = write(tmp_path, "feed.ndjson", ndjson(rec("A"), bad, STORE_RECORD))
    results = run([path])
    assert kinds(results) == [("Item", f"{path}:1", 1), ("Rejection", f"{path}:2", 2), ("Item", f"{path}:3", 3)]
    assert results[1].error == 'store_roles["fr"]["base"]: /nope.jpg is not one of the item\'s images'
    assert results[1].sku == "B"


def test_sku_images_file_carries_store_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sku --images FILE`: an object brings `store_roles`; a bare list of images brings `stores` only."""
    from typer.testing import CliRunner

    from nacento_sync.cli import sync as cli

    seen: list[Item | Rejection] = []

    def fake_run(_cfg: Any, records: Any, **_kwargs: Any) -> int:
        seen.extend(records)
        return 0

    monkeypatch.setattr(cli, "_run", fake_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NACENTO_STORAGE__BUCKET", "bucket")
    images = STORE_RECORD["images"]
    obj = write(tmp_path, "obj.json", json.dumps({"images": images, "store_roles": STORE_RECORD["store_roles"]}))
    bare = write(tmp_path, "bare.json", json.dumps(images))
    bad = write(tmp_path, "bad.json", json.dumps({"images": images, "store_roles": {"admin": {}}}))
    for path in (obj, bare, bad):
        done = CliRunner().invoke(cli.app, ["sku", "S-1", "--images", path])
        assert done.exit_code == 0, done.output
    first, second, third = seen
    assert first == Item(sku="S-1", images=STORE_ITEM_IMAGES, source=obj, ordinal=1, store_roles=STORE_ITEM_ROLES)
    assert second == Item(sku="S-1", images=STORE_ITEM_IMAGES, source=bare, ordinal=1)
    assert isinstance(third, Rejection) and third.error.startswith('store_roles["admin"]: store "admin" is store 0')

"""canonical_path and friends: every spelling a PIM sends maps to Magento's `/m/y/a.jpg`."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nacento_sync.paths import (
    MAX_PATH_CHARS,
    canonical_path,
    normalize_role,
    object_key,
    stored_to_canonical,
)


@pytest.mark.parametrize(
    "raw",
    [
        "m/y/a.jpg",
        "/m/y/a.jpg",
        "catalog/product/m/y/a.jpg",
        "/catalog/product/m/y/a.jpg",
        "media/catalog/product/m/y/a.jpg",
        "/media/catalog/product/m/y/a.jpg",
        "pub/media/catalog/product/m/y/a.jpg",
        "/pub/media/catalog/product/m/y/a.jpg",
        "  m/y/a.jpg\n",
        "\t/pub/media/catalog/product/m/y/a.jpg ",
        "https://shop.example.com/media/catalog/product/m/y/a.jpg",
        "http://shop.example.com/media/catalog/product/m/y/a.jpg",
        "https://cdn.example.net:8443/pub/media/catalog/product/m/y/a.jpg",
        "https://shop.example.com/static/x/media/catalog/product/m/y/a.jpg",
        "https://shop.example.com/media/catalog/product/m/y/a.jpg?v=3#top",
        "HTTPS://SHOP.example.com/media/catalog/product/m/y/a.jpg",
        "https://shop.example.com/media%2Fcatalog%2Fproduct/m/y/a.jpg",
        "https://shop.example.com/media/catalog/product/m/y/%61.jpg",
    ],
)
def test_spellings_of_one_image(raw: str) -> None:
    assert canonical_path(raw) == "/m/y/a.jpg"


def test_case_is_kept() -> None:
    assert canonical_path("M/Y/My-Image.JPG") == "/M/Y/My-Image.JPG"
    assert canonical_path("https://h/media/catalog/product/A/B/C.jpg") == "/A/B/C.jpg"


def test_url_is_percent_decoded_and_first_marker_wins() -> None:
    assert canonical_path("https://h/media/catalog/product/m/y/my%20image.jpg") == "/m/y/my image.jpg"
    assert canonical_path("https://h/media/catalog/product/m/y/media/x.jpg") == "/m/y/media/x.jpg"


def test_other_paths_are_kept_relative_to_catalog_product() -> None:
    assert canonical_path("a.jpg") == "/a.jpg"
    assert canonical_path("media/a.jpg") == "/media/a.jpg"
    assert canonical_path("catalog/a.jpg") == "/catalog/a.jpg"
    assert canonical_path("m/y/cache/a.jpg") == "/m/y/cache/a.jpg"
    assert canonical_path("m/y/a b%20c.jpg") == "/m/y/a b%20c.jpg"  # only URLs are decoded
    assert canonical_path("m/y/100%25.jpg") == "/m/y/100%25.jpg"
    assert canonical_path("m/y/%2e%2ea.jpg") == "/m/y/%2e%2ea.jpg"  # `..a.jpg` once decoded: a name, not `..`
    assert canonical_path("m/y:/a.jpg") == "/m/y:/a.jpg"


def test_the_host_of_a_url_is_ignored() -> None:
    """Only the path after /media/catalog/product/ counts: nothing is fetched from the host, the object is
    looked up in the configured bucket."""
    assert canonical_path("https://other.host.example/media/catalog/product/m/y/a.jpg") == "/m/y/a.jpg"
    assert canonical_path("http://user:pw@10.0.0.1:9/x/media/catalog/product/m/y/a.jpg") == "/m/y/a.jpg"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty path"),
        ("   ", "empty path"),
        ("/", "empty after removing"),
        ("catalog/product/", "empty after removing"),
        ("pub/media/catalog/product", "empty after removing"),
        ("m/../a.jpg", "'.' or '..'"),
        ("../a.jpg", "'.' or '..'"),
        ("./a.jpg", "'.' or '..'"),
        ("m/y/.", "'.' or '..'"),
        ("m//a.jpg", "empty segment"),
        ("//m/y/a.jpg", "empty segment"),
        ("m/y/", "empty segment"),
        ("m/y\x00/a.jpg", "control character"),
        ("m/y/a\x1f.jpg", "control character"),
        ("m/y/a\x7f.jpg", "control character"),
        ("m/y/a\n.jpg", "control character"),
        ("m/y/a\x85.jpg", "control character U+0085"),
        ("m/y/a\x9f.jpg", "control character U+009F"),
        ("m/y/a\x80.jpg", "control character U+0080"),
        ("m/y/a\x7f.jpg", "control character U+007F"),
        ("m/y/\ud800.jpg", "U+D800 is not valid Unicode"),
        ("m/y/a\udcff.jpg", "U+DCFF is not valid Unicode"),
        ("https://h/media/catalog/product/m/y/\udfff.jpg", "U+DFFF is not valid Unicode"),
        ("https://h/media/catalog/product/m/y/a%09.jpg", "control character U+0009"),
        ("https://h/media/catalog/product/m/y/a%C2%85.jpg", "control character U+0085"),
        ("https://h/media/catalog/product/m/y/a%7F.jpg", "control character U+007F"),
        ("https://h/media/catalog/product/m/y/a%ED%A0%80.jpg", "invalid URL"),  # an encoded surrogate
        ("m\\y\\a.jpg", "backslash"),
        ("cache/abc/m/y/a.jpg", "cache"),
        ("/catalog/product/cache/abc/m/y/a.jpg", "cache"),
        ("pub/media/catalog/product/cache/abc/a.jpg", "cache"),
        ("catalog/product/catalog/product/a.jpg", "repeats"),
        ("https://h/media/catalog/product/cache/abc/m/y/a.jpg", "resized copy"),
        ("https://h/cache/media/catalog/product/m/y/a.jpg", "resized copy"),
        ("https://h/media/catalog/product/x/%63ache/a.jpg", "resized copy"),
        ("https://h/pub/static/a.jpg", "does not contain"),
        ("https://h/", "does not contain"),
        ("https://h/catalog/product/m/y/a.jpg", "does not contain"),
        ("https://h/media/catalog/product/", "empty after removing"),
        ("https://h/media/catalog/product/m/%2E%2E/a.jpg", "'.' or '..'"),
        ("https://h/media/catalog/product/m/y/a%0A.jpg", "control character"),
        ("https://h/media/catalog/product/m/y/a%5Cb.jpg", "backslash"),
        ("https://h/media/catalog/product/m//a.jpg", "empty segment"),
        ("https://h/media/catalog/product/m/y/a.jpg%20", "ends with whitespace"),
        ("https://h/media/catalog/product/m/y/%FF.jpg", "invalid URL"),
        ("m/y/" + "a" * (MAX_PATH_CHARS - 4), "longer than 255"),
        # Stored literally they would be harmless, but a server or CDN that decodes them reads `..` or `\\`.
        ("m/%2e%2e/a.jpg", "'.' or '..' segment once percent-decoded"),
        ("m/%2E%2e/a.jpg", "'.' or '..' segment once percent-decoded"),
        ("m/%2e./a.jpg", "'.' or '..' segment once percent-decoded"),
        ("m/.%2E/a.jpg", "'.' or '..' segment once percent-decoded"),
        ("m/%2e/a.jpg", "'.' or '..' segment once percent-decoded"),
        ("m/%252e%252e/a.jpg", "'.' or '..' segment once percent-decoded"),  # decoded twice
        ("m/%25252E./a.jpg", "'.' or '..' segment once percent-decoded"),  # three times
        ("m/a%2f..%2fb.jpg", "'.' or '..' segment once percent-decoded"),
        ("https://h/media/catalog/product/m/%252e%252e/a.jpg", "'.' or '..' segment once percent-decoded"),
        ("m/y/a%5cb.jpg", "percent-encoded backslash"),
        ("m/y/a%255Cb.jpg", "percent-encoded backslash"),
        ("https://h/media/catalog/product/m/y/a%255cb.jpg", "percent-encoded backslash"),
        ("ftp://h/media/catalog/product/m/y/a.jpg", "a URL must start with http:// or https://"),
        ("file:///var/www/pub/media/catalog/product/m/y/a.jpg", "a URL must start with http:// or https://"),
        ("https:/h/media/catalog/product/m/y/a.jpg", "a URL must start with http:// or https://"),
        ("C:/images/a.jpg", "a URL must start with http:// or https://"),
        ("//other.host/media/catalog/product/m/y/a.jpg", "empty segment"),
    ],
)
def test_rejected(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        canonical_path(raw)
    assert fragment in str(info.value)


def test_length_limit_counts_the_leading_slash() -> None:
    name = "m/y/" + "a" * (MAX_PATH_CHARS - 5)
    assert len(canonical_path(name)) == MAX_PATH_CHARS
    with pytest.raises(ValueError, match="longer than 255"):
        canonical_path(name + "b")


def test_long_junk_is_truncated_in_the_message() -> None:
    with pytest.raises(ValueError) as info:
        canonical_path("x" * 5000 + "/../a")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/m/y/a.jpg", "/m/y/a.jpg"), ("m/y/a.jpg", "/m/y/a.jpg"), ("//m/y/a.jpg", "/m/y/a.jpg"), ("", "/")],
)
def test_stored_to_canonical(value: str, expected: str) -> None:
    assert stored_to_canonical(value) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", "media/catalog/product/m/y/a.jpg"),
        ("/", "media/catalog/product/m/y/a.jpg"),
        ("shop", "shop/media/catalog/product/m/y/a.jpg"),
        ("/shop/", "shop/media/catalog/product/m/y/a.jpg"),
        ("a/b", "a/b/media/catalog/product/m/y/a.jpg"),
    ],
)
def test_object_key(prefix: str, expected: str) -> None:
    assert object_key("/m/y/a.jpg", prefix) == expected


def test_object_key_default_prefix() -> None:
    assert object_key("/m/y/a.jpg") == "media/catalog/product/m/y/a.jpg"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("base", "image"),
        ("image", "image"),
        ("BASE", "image"),
        (" Base ", "image"),
        ("small", "small_image"),
        ("small_image", "small_image"),
        ("Small_Image", "small_image"),
        ("thumbnail", "thumbnail"),
        ("swatch", "swatch_image"),
        ("swatch_image", "swatch_image"),
        ("hero", None),
        ("", None),
        ("image_label", None),
        ("small image", None),
    ],
)
def test_normalize_role(name: str, expected: str | None) -> None:
    assert normalize_role(name) == expected


# --- properties ----------------------------------------------------------------------------------

_SEGMENT_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
    blacklist_characters="/\\\x85",
)
_segment = st.text(_SEGMENT_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


def _decoded(text: str) -> str:
    while (once := unquote(text)) != text:
        text = once
    return text


@st.composite
def relative_paths(draw: st.DrawFn) -> str:
    """Valid paths relative to catalog/product: no prefix, not in cache/, short enough."""
    rel = "/".join(draw(st.lists(_segment, min_size=1, max_size=5)))
    assume(rel.split("/")[0] != "cache")
    assume(not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", rel))  # another scheme's URL, or a drive
    decoded = _decoded(rel)  # percent-encoded `..` or backslash
    assume("\\" not in decoded and not {".", ".."} & set(decoded.split("/")))
    assume(not rel.startswith(("catalog/product", "media/catalog/product", "pub/media/catalog/product")))
    return rel


@given(relative_paths(), st.sampled_from(["", "/"]), st.sampled_from(["", " ", "\t", "\n "]))
def test_every_spelling_gives_the_same_result(rel: str, slash: str, space: str) -> None:
    expected = "/" + rel
    assume(len(expected) <= MAX_PATH_CHARS)
    quoted = quote(rel, safe="/")
    spellings = [
        rel,
        "/" + rel,
        f"{slash}catalog/product/{rel}",
        f"{slash}media/catalog/product/{rel}",
        f"{slash}pub/media/catalog/product/{rel}",
        f"https://shop.example.com/media/catalog/product/{quoted}",
        f"http://h:8080/pub/media/catalog/product/{quoted}?v=1#x",
        f"{space}{rel}{space}",
    ]
    assert {canonical_path(s) for s in spellings} == {expected}


@given(relative_paths())
def test_canonical_form_is_a_fixed_point(rel: str) -> None:
    assume(len(rel) < MAX_PATH_CHARS)
    result = canonical_path(rel)
    assert canonical_path(result) == result
    assert stored_to_canonical(result) == result
    assert stored_to_canonical(result.lstrip("/")) == result


@given(
    st.one_of(
        st.text(max_size=60),
        st.text(st.sampled_from("ab/.%20\\ c:?#"), max_size=40),
        st.builds(
            lambda pre, rest: pre + rest,
            st.sampled_from(["", "/", "catalog/product/", "https://h/media/catalog/product/", "http://x/"]),
            st.text(max_size=40),
        ),
    )
)
def test_idempotent_on_anything_accepted(raw: str) -> None:
    try:
        result = canonical_path(raw)
    except ValueError:
        return
    assert result.startswith("/")
    assert len(result) <= MAX_PATH_CHARS
    assert canonical_path(result) == result


@pytest.mark.parametrize(
    "raw",
    ["m/y/a\x00.jpg", "m/y/a\x1b[31m.jpg", "m/y/a\x9b.jpg", "m/y/\ud800.jpg", "m/y/\udcff.jpg",
     "https://h/media/catalog/product/m/y/a%1B.jpg", "https://h/media/catalog/product/m/y/a%C2%9B.jpg"],
)
def test_messages_never_carry_the_raw_character(raw: str) -> None:
    with pytest.raises(ValueError) as info:
        canonical_path(raw)
    message = str(info.value)
    message.encode("utf-8")  # a lone surrogate would raise here
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in message), message


def _outcome(raw: str) -> str:
    try:
        return canonical_path(raw)
    except ValueError:
        return "<refused>"


@given(st.lists(st.sampled_from(["m", "y", "a.jpg", "A_b-1", ".", "..", ".x", "cache", "catalog", "product", "media",
                                 "pub", "", "%2e", "x y", "a:b", "é", "\\", "http:"]), min_size=1, max_size=6),
       st.booleans())
def test_the_plain_spelling_shortcut_gives_what_the_full_rules_give(segments, slash):
    """`m/y/a.jpg` skips the full walk (a regular expression recognises it); a leading space forces the walk
    (it is stripped first), so both must agree on every path built from tricky segments."""
    raw = ("/" if slash else "") + "/".join(segments)
    assert _outcome(raw) == _outcome(" " + raw)


def test_the_plain_spelling_shortcut_keeps_the_length_limit():
    long = "m/" + "a" * (MAX_PATH_CHARS - 3)  # 254 characters: 255 with the leading slash
    assert canonical_path(long) == "/" + long
    with pytest.raises(ValueError, match="longer than"):
        canonical_path(long + "b")
    with pytest.raises(ValueError, match="longer than"):
        canonical_path("/" + long + "b")

"""Validated feed records: what the PIM wants each product's gallery to be.

These are plain frozen dataclasses so the planning core can use them without pydantic;
`feed` builds them from raw JSON after validating it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Magento's role attribute codes we manage, in a stable order.
MANAGED_ROLES: tuple[str, ...] = ("image", "small_image", "thumbnail", "swatch_image")
#: The label attribute Magento keeps equal to the label of the image holding a role.
ROLE_LABELS: dict[str, str] = {
    "image": "image_label",
    "small_image": "small_image_label",
    "thumbnail": "thumbnail_label",
}
#: What Magento stores in a role attribute to mean "no image".
NO_SELECTION = "no_selection"


@dataclass(frozen=True)
class StoreValues:
    """One image's values for one store view (the feed's `stores[<code>]`).

    A field the feed did not send is not in `given` (the merge rules decide what the store view shows); a
    field sent as `null` (or a label sent as `""`) is in `given` with the value None: "no store-view value",
    the store view shows the store-0 value."""

    label: str | None = None
    position: int | None = None
    disabled: bool | None = None
    given: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DesiredImage:
    """One image of an item, with its path in Magento's canonical form (`/m/y/a.jpg`)."""

    path: str
    position: int
    label: str | None = None
    #: False when the feed did not send `label`: the stored label is kept (NULL on insert).
    label_given: bool = False
    #: None when the feed did not send `disabled`: the stored value is kept (False on insert).
    disabled: bool | None = None
    #: Magento role codes (`image`, `small_image`, ...) this image holds after de-duplication.
    roles: tuple[str, ...] = ()
    #: Store-view values by store code (`stores` in the feed), in feed order.
    stores: tuple[tuple[str, StoreValues], ...] = ()


@dataclass(frozen=True)
class Item:
    """One product's desired gallery. `ordinal` is the 1-based record number across all inputs."""

    sku: str
    images: tuple[DesiredImage, ...]
    source: str
    ordinal: int = 0
    #: Validation warnings (`"<code>: <message>"`), e.g. unknown roles.
    warnings: tuple[str, ...] = field(default=())
    #: Store-view roles (`store_roles` in the feed): (store code, ((role code, canonical path or None), ...)).
    #: None means `no_selection` on that store view; every path is one of the item's images.
    store_roles: tuple[tuple[str, tuple[tuple[str, str | None], ...]], ...] = ()


@dataclass(frozen=True)
class Missing:
    """An image the storage does not have, with a reason worth telling (a plain None says "not found").

    E.g. a file whose path resolves outside `storage.root`: it is missing for the sync, and the
    `missing_object` warning says why."""

    reason: str


@dataclass(frozen=True)
class Rejection:
    """A record that could not be accepted; `source` is `path:line` or `path#items[i]`."""

    source: str
    error: str
    ordinal: int = 0
    sku: str | None = None


#: C0 controls, DEL, C1 controls and lone surrogates (U+D800–U+DFFF: not Unicode scalar values; they come
#: from a JSON `\ud800` escape or from argv bytes that were not UTF-8, and cannot be encoded for the
#: database, the report or the terminal).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: The same, except TAB, LF and CR, which a label may contain (they become spaces).
_FORBIDDEN_IN_LABEL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: str, *, label: bool = False) -> str | None:
    """Why `value` may not be stored (its first forbidden character, as `U+XXXX`), or None.

    The message never contains the character itself, so printing it cannot carry a raw control code.
    With `label`, TAB, LF and CR are allowed (the feed turns them into spaces).
    """
    found = (_FORBIDDEN_IN_LABEL if label else _FORBIDDEN).search(value)
    if found is None:
        return None
    code = ord(found.group())
    if 0xD800 <= code <= 0xDFFF:
        return f"U+{code:04X} is not valid Unicode (a lone surrogate)"
    return f"control character U+{code:04X} is not allowed"


def printable(text: str) -> str:
    """`text` with each control character or lone surrogate written as a Python escape (`\\x07`, `\\udcff`).

    For values that are shown but not validated, such as file names from the command line.
    """
    return _FORBIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def sku_key(sku: str) -> str:
    """Approximate the `sku` column's default collation: case- and trailing-space-insensitive."""
    return sku.rstrip(" ").casefold()

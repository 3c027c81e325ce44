"""What Magento's columns can store: `utf8mb3` holds no character beyond U+FFFF (emoji, some CJK).

Magento creates its tables `utf8mb3` on MariaDB, so a 4-byte character fails the whole statement (error
1366). The engine learns at start which written columns are narrow (`magento.detect_schema`) and passes
each item through `fit_item` before planning: an unstorable label is treated as absent (the stored one
stays) with warning `unstorable_text`; an unstorable SKU or path rejects the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from nacento_sync.codes import Code
from nacento_sync.models import Item, Rejection

#: The written columns whose character set matters, as `Schema.narrow` names them.
SKU, PATH, LABEL, ROLE_VALUE = "sku", "path", "label", "role_value"
#: Character sets that store every Unicode scalar value.
WIDE_CHARSETS = frozenset({"utf8mb4", "utf16", "utf16le", "utf32", "ucs4"})


def first_unstorable(text: str) -> str | None:
    """`U+1F600` for the first character a 3-byte UTF-8 column cannot hold, else None."""
    if text.isascii():  # the usual case, in C: no character beyond U+007F
        return None
    return next((f"U+{ord(c):04X}" for c in text if ord(c) > 0xFFFF), None)


def _why(field: str, text: str, charset: str) -> str | None:
    code = first_unstorable(text)
    return f"{field}: {code} cannot be stored: the column is {charset}" if code else None


def _all_ascii(item: Item) -> bool:
    """Every text `fit_item` checks is ASCII, so every column can hold it (the usual item: no per-field work)."""
    return item.sku.isascii() and all(
        image.path.isascii() and (image.label or "").isascii()
        and all((given.label or "").isascii() for _, given in image.stores)
        for image in item.images)


def fit_item(item: Item, narrow: Mapping[str, str]) -> Item | Rejection:
    """The item as the store's columns can hold it. `narrow` maps a column (SKU, PATH, LABEL,
    ROLE_VALUE) to its character set when that set cannot hold 4-byte characters."""
    if not narrow or _all_ascii(item):
        return item
    problem = SKU in narrow and _why("sku", item.sku, narrow[SKU])
    for i, image in enumerate(item.images):
        problem = problem or (PATH in narrow and _why(f"images[{i}].file_path", image.path, narrow[PATH]))
    if problem:
        return Rejection(item.source, problem, item.ordinal, item.sku)
    warnings = list(item.warnings)
    images = list(item.images)
    # A label is also written to the role-label attributes (varchar) when its image holds a role.
    label_columns = [c for c in (LABEL, ROLE_VALUE) if c in narrow]

    def unstorable(field: str, label: str | None) -> str | None:
        return next((w for c in label_columns if (w := _why(field, label or "", narrow[c]))), None)

    for i, image in enumerate(item.images):
        if why := unstorable(f"images[{i}].label", image.label):
            warnings.append(Code.UNSTORABLE_TEXT.notice(f"{why}"))
            images[i] = replace(image, label=None, label_given=False)
        stores = []
        for code, given in image.stores:
            if why := unstorable(f'images[{i}].stores["{code}"].label', given.label):
                warnings.append(Code.UNSTORABLE_TEXT.notice(f"{why}"))  # as if not sent: the view's stored label stays
                given = replace(given, label=None, given=given.given - {"label"})  # noqa: PLW2901
            stores.append((code, given))
        if tuple(stores) != image.stores:
            images[i] = replace(images[i], stores=tuple(stores))
    if len(warnings) == len(item.warnings):
        return item
    return replace(item, images=tuple(images), warnings=tuple(warnings))

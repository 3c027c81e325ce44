"""Every warning and per-SKU error code, and the typed failure the engine hands to its callers.

A warning or error in the report is the string `"<code>: <detail>"`; the code is one of `Code`, whose
description README documents. The async worker decides by a failure's code (retriable or not), never by
reading its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Where a code appears (none given: a warning only) and whether the worker retries it.
_WARNING, _ERROR, _RETRIABLE = "warning", "error", "retriable"


class Code(StrEnum):
    """A warning or error code: its report string, a one-line description, where it appears
    (warnings, per-SKU errors) and whether the worker retries an operation that failed with it."""

    description: str
    warning: bool
    error: bool
    retriable: bool

    def __new__(cls, value: str, description: str, *flags: str) -> Code:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        member.warning = not flags or _WARNING in flags
        member.error, member.retriable = _ERROR in flags, _RETRIABLE in flags
        return member

    UNKNOWN_ROLE = "unknown_role", "a role that is not a Magento image role was ignored"
    DUPLICATE_ROLE = "duplicate_role", "two images claimed one role; the later one keeps it"
    DUPLICATE_IMAGE = "duplicate_image", "one image listed twice in an item; the later entry wins"
    LABEL_WHITESPACE = "label_whitespace", "a TAB, LF or CR in an image's label was replaced by a space"
    DUPLICATE_SKU = ("duplicate_sku",
                     "a SKU appeared more than once; the later item wins (same batch) or applies after")
    MISSING_OBJECT = ("missing_object",
                      "the image is not found in storage; it was not inserted and its roles not written")
    LEGACY_PATH = "legacy_path", "an entry stored without the leading slash was respelled to Magento's form"
    DUPLICATE_ENTRY = "duplicate_entry", "two entries of the product had the same path; the extra one was removed"
    DUPLICATE_VALUE_ROWS = ("duplicate_value_rows",
                            "an entry had several store-0 value rows; the extra ones were removed")
    SHARED_ENTRY = ("shared_entry",
                    "a gallery row shared with another product was left alone; this product got its own")
    STAGING_FUTURE_ROWS = "staging_future_rows", "Adobe Commerce scheduled updates of the product were left unchanged"
    EMPTY_IMAGE_LIST = ("empty_image_list",
                        "replace mode with an empty image list deleted nothing (see --allow-empty)")
    ALL_MISSING = "all_missing", "replace mode deleted nothing because none of the listed objects exists"
    DELETIONS_HELD = ("deletions_held",
                      "replace mode deleted nothing and reset no role: a listed object is missing (a typo?)")
    MEDIA_CONFLICT = ("media_conflict",
                      "the path belongs to a video (or other non-image entry) of the product; not added")
    ROLE_UNAVAILABLE = ("role_unavailable",
                        "the store has no such role attribute (e.g. swatch_image without Magento_Swatches)")
    UNSTORABLE_TEXT = ("unstorable_text",
                       "a label has a character its column (utf8mb3) cannot store; the stored label stays")
    CACHE_PURGE_FAILED = ("cache_purge_failed",
                          "deleting stale resized copies (--purge-cache) failed; the sync itself stands")
    POSITION_TIE = ("position_tie",
                    "merge mode: an entry the item does not list has a listed image's position (order undefined)")
    UNKNOWN_STORE = ("unknown_store",
                     "a store code in stores/store_roles is not a store of the database; its values were ignored")

    # Per-SKU errors (the result's `error`); those that are also warnings carry the detail there.
    STORAGE_ERROR = ("storage_error", "a storage request failed after retries; the SKU was not written",
                     _WARNING, _ERROR, _RETRIABLE)
    DATABASE_ERROR = ("database_error", "the SKU's transaction failed; nothing was written for it",
                      _WARNING, _ERROR, _RETRIABLE)
    INVALID_DATA = ("invalid_data", "the item's data does not validate or cannot be stored (the detail names it)",
                    _WARNING, _ERROR)
    PRODUCT_NOT_FOUND = "product_not_found", "no product with this SKU (yet)", _ERROR, _RETRIABLE
    AMBIGUOUS_SKU = "ambiguous_sku", "several products have this SKU", _ERROR

    # Causes only the worker tells apart (an operation's error_code); the report shows `reported`.
    TIMEOUT = "timeout", "a lock wait timed out", _RETRIABLE
    INTERNAL_ERROR = "internal_error", "an unexpected error in the worker", _RETRIABLE

    def notice(self, detail: str) -> Notice:
        """A warning of this code: `Code.MISSING_OBJECT.notice("… not found")`."""
        return Notice(self, detail)

    @property
    def reported(self) -> Code:
        """The code the report shows: a lock wait timeout is a database error there."""
        return Code.DATABASE_ERROR if self is Code.TIMEOUT else self


class Notice(str):
    """A typed warning: the report's string `"<code>: <detail>"` (so it prints, compares and serialises as
    one), carrying its `code` and `detail` for callers that decide by type."""

    code: Code
    detail: str

    def __new__(cls, code: Code, detail: str) -> Notice:
        notice = super().__new__(cls, f"{code.value}: {detail}")
        notice.code, notice.detail = code, detail
        return notice

    @property
    def retriable(self) -> bool:
        return self.code.retriable


@dataclass(frozen=True)
class Failure:
    """Why a SKU was not written: its code (whether it is retriable derives from it) and the detail."""

    code: Code
    detail: str

    @classmethod
    def of(cls, code: Code | str) -> Failure:
        """A failure whose detail is the code's description (a look-up's product_not_found, ambiguous_sku)."""
        code = Code(code)  # type: ignore[call-arg]  # by value: the members carry a description too
        return cls(code, code.description)

    @property
    def retriable(self) -> bool:
        return self.code.retriable

    def __str__(self) -> str:
        """The report's `"<code>: <detail>"`."""
        return f"{self.code.reported}: {self.detail}"


#: Codes that appear as `"<code>: <detail>"` in a result's warnings, with their descriptions.
WARNINGS: dict[str, str] = {code.value: code.description for code in Code if code.warning}

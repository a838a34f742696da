"""Nothing a client sends is silently ignored: every body field and query parameter an endpoint
does not know is refused with a 422 naming it, and so is every field of Dodo's API that this
server cannot honour, unless it carries its neutral value (`null`, `false`, `[]`, `{}`: "none
of that"), which is accepted because it asks for nothing.

One set of helpers for every endpoint and the rules below them (the events ingest uses
`unknown_fields` for its own per-event errors), so an unknown or unsupported field reads the same
everywhere; the API's serializer and view mixins are in billing_site/api/strict.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from billing_site.errors import InvalidInput

UNKNOWN_FIELD = "Unknown field: this endpoint does not accept it."
UNKNOWN_PARAMETER = "Unknown query parameter: this endpoint does not accept it."
PAGING = ("page_number", "page_size")
# Dodo shows translated catalogue text for `locale`; this server keeps no translations, which
# Dodo's own rule answers: a locale without a translation shows the base text.
LOCALE = ("locale",)


def unknown_fields(data: object, allowed: Collection[str], path: str = "") -> list[dict]:
    """`{field, message}` for each key of the object `data` that is not in `allowed`."""
    if not isinstance(data, dict):
        return []
    return [
        {"field": f"{path}.{key}" if path else str(key), "message": UNKNOWN_FIELD}
        for key in data
        if key not in allowed
    ]


def refuse(errors: list[dict], code: str = "INVALID_REQUEST_BODY") -> None:
    """Raise one 422 naming every field in `errors` (nothing when it is empty)."""
    if errors:
        fields = ", ".join(e["field"] for e in errors)
        raise InvalidInput(f"Invalid value for {fields}", errors=errors, code=code)


def refuse_unknown(data: object, allowed: Collection[str], path: str = "") -> None:
    refuse(unknown_fields(data, allowed, path))


def is_neutral(value: object) -> bool:
    """`null`, `false`, an empty list or object: a value that asks for nothing."""
    return value is None or value is False or (isinstance(value, list | dict) and not value)


def unsupported(
    data: object,
    fields: Iterable[str],
    reason: str,
    *,
    path: str = "",
    code: str = "UNSUPPORTED_FIELD",
) -> None:
    """Refuse each of `fields` present in `data` with a value other than its neutral one."""
    if not isinstance(data, dict):
        return
    refuse(
        [
            {"field": f"{path}.{name}" if path else name, "message": reason}
            for name in fields
            if name in data and not is_neutral(data[name])
        ],
        code=code,
    )

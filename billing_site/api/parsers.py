"""Request bodies parsed with exact decimals, so `0.1` in a filter or price is never a float, and
with bounded nesting, so no body can make a later step recurse too deep."""

from __future__ import annotations

import re

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from billing_site.errors import InvalidInput
from billing_site.jsonutil import JSONTooDeep, exact_loads

# PostgreSQL text and jsonb cannot hold NUL, and a lone surrogate (`"\ud800"` is valid JSON) cannot
# be encoded as UTF-8: no field can store either, wherever it sits in a body.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_REPORTED = 20


def unstorable_strings(data: object) -> list[dict]:
    """`{field, message}` for each key or string holding NUL or a lone surrogate, by full path
    (`customer.email`, `metadata.k`, `price.meters[0].meter_id`). Iterative: bodies nest deep."""
    errors: list[dict] = []
    pending: list[tuple[str, object]] = [("", data)]
    while pending and len(errors) < MAX_REPORTED:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    errors.append({"field": child, "message": _message(key)})
                pending.append((child, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            errors.append({"field": path or None, "message": _message(value)})
    return errors


def too_deep(exc: JSONTooDeep) -> InvalidInput:
    """422 naming the body's top-level field that holds the too-deep value (`metadata`,
    `filter`), or `body` when it is the body itself or the parser could not say where."""
    top = exc.path[0] if exc.path else None
    field = top if isinstance(top, str) else "body"
    message = f"Nested more than {exc.max_depth} levels deep."
    return InvalidInput(
        f"Invalid value for {field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _message(text: str) -> str:
    match = _UNSTORABLE.search(text)
    assert match is not None  # called for text the pattern matched
    found = match.group()
    if found == "\x00":
        return "Null characters are not allowed."  # DRF's own words for its CharField
    return f"Surrogate characters are not allowed: U+{ord(found):X}."


class ExactJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            return {}  # the SDK sends `Content-Type: application/json` on body-less POSTs
        try:
            data = exact_loads(raw)
        except JSONTooDeep as exc:
            raise too_deep(exc) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None
        errors = unstorable_strings(data)
        if errors:
            raise ValidationError(
                {e["field"] or "non_field_errors": [e["message"]] for e in errors}
            )
        return data

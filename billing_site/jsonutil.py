"""JSON that keeps decimals exact: parse numbers with fractions as Decimal and write Decimals as
JSON numbers (the standard encoder refuses them and Django's writes them as strings)."""

from __future__ import annotations

import json
from decimal import Decimal

_dump_string = json.JSONEncoder(ensure_ascii=False).encode


def exact_dumps(value: object) -> str:
    """Serialize dicts, lists, str, int, Decimal, bool and None; numbers are written exactly."""
    if isinstance(value, str):
        return _dump_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    if isinstance(value, float):
        return exact_dumps(Decimal(repr(value)))
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{_dump_string(str(k))}:{exact_dumps(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(exact_dumps(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def exact_loads(text: str | bytes) -> object:
    """Parse JSON with exact decimals; NaN and Infinity (not JSON) raise ValueError, and so does
    nesting too deep for the parser (its RecursionError would be a 500)."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


class ExactJSONEncoder(json.JSONEncoder):
    """For JSONField(encoder=...): Django calls `json.dumps(value, cls=encoder)`."""

    def encode(self, o) -> str:
        return exact_dumps(o)


class ExactJSONDecoder(json.JSONDecoder):
    """For JSONField(decoder=...): numbers with a fraction come back as Decimal."""

    def __init__(self, *args, **kwargs):
        kwargs["parse_float"] = Decimal
        super().__init__(*args, **kwargs)

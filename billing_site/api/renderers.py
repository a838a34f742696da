"""JSON responses that keep decimals exact: DRF's renderer writes a `Decimal` as a float, so a
filter value of `12345678901234567.891` would come back as `1.2345678901234568e+16`."""

from __future__ import annotations

from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

from billing_site.jsonutil import exact_dumps

_drf_default = JSONEncoder().default


class ExactJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        # Values exact_dumps does not know (datetimes, lazy strings, ...) as DRF's encoder has them.
        text = exact_dumps(data, default=_drf_default)
        # As DRF does: these two are valid JSON but break JavaScript string literals.
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        # A lone surrogate echoed from a refused request (a metadata key naming the bad field)
        # cannot be UTF-8; it only ever sits inside a JSON string, where `\ud800` is its escape.
        return text.encode("utf-8", "backslashreplace")

"""Request bodies parsed with exact decimals, so `0.1` in a filter or price is never a float."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from billing_site.jsonutil import exact_loads


class ExactJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            return {}  # the SDK sends `Content-Type: application/json` on body-less POSTs
        try:
            return exact_loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None

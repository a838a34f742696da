"""Turn a lost database into 503 + Retry-After for any view, so nothing unstored is acknowledged;
refuse NUL characters in API URLs before they reach a query."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

from billing_site.api.exceptions import error_body, service_unavailable

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, OperationalError | InterfaceError):
            logger.warning("database unavailable: %s", exception)
            return service_unavailable()
        return None


class RefuseNulMiddleware:
    """PostgreSQL text cannot hold NUL (U+0000): an id or filter containing one matches nothing,
    and querying with it fails (a 500). Under /api/, a NUL in the path is an unknown resource
    (404) and one in a query parameter is an invalid value (422 naming the parameter)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            if "\x00" in request.path:
                return JsonResponse(error_body("NOT_FOUND", "No such resource."), status=404)
            bad = sorted(
                name
                for name, values in request.GET.lists()
                if "\x00" in name or any("\x00" in value for value in values)
            )
            if bad:
                errors = [
                    {"field": name, "message": "Must not contain NUL characters."} for name in bad
                ]
                return JsonResponse(
                    error_body(
                        "INVALID_REQUEST_BODY", f"Invalid value for {', '.join(bad)}", errors
                    ),
                    status=422,
                )
        return self.get_response(request)

"""Turn a lost database into 503 + Retry-After for any view, so nothing unstored is acknowledged."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError

from billing_site.api.exceptions import service_unavailable

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

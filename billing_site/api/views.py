"""Fallback views: JSON errors under /api/ (never an HTML page or a trace), a redirect at /;
and the API's docs page."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponseRedirect, JsonResponse
from django.views import defaults
from drf_spectacular.views import SpectacularSwaggerSplitView

from billing_site.api.exceptions import error_body, payload_too_large
from billing_site.api.renderers import ExactJSONRenderer


class ApiDocsView(SpectacularSwaggerSplitView):
    """The Swagger UI page. Its HTML template renders only that page, so every other answer (the
    OPTIONS description, a 405) is JSON like the rest of /api/: OPTIONS rendered through the
    template was a 500. The split view serves Swagger UI's start-up script as a file
    (`?script`), so the page needs no inline script under the Content-Security-Policy."""

    def get_renderers(self):
        if self.request.method in ("GET", "HEAD"):
            return super().get_renderers()
        return [ExactJSONRenderer()]


def home_redirect(request):
    return HttpResponseRedirect("/admin/")


def bad_request(request, exception=None):
    """Django's own 400s (a SuspiciousOperation: a bad Host header, a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE that got past RequestBodyLimitMiddleware)."""
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            return payload_too_large(None, settings.INGEST_MAX_BODY_BYTES)
        return JsonResponse(error_body("BAD_REQUEST", "The request is malformed."), status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("FORBIDDEN", "Permission denied."), status=403)
    return defaults.permission_denied(request, exception)


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("NOT_FOUND", "No such endpoint."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("INTERNAL_ERROR", "An unexpected error occurred."), status=500
        )
    return defaults.server_error(request)

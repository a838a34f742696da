"""Fallback views: JSON errors under /api/ (never an HTML page or a trace), a redirect at /."""

from __future__ import annotations

from django.http import HttpResponseRedirect, JsonResponse
from django.views import defaults

from billing_site.api.exceptions import error_body


def home_redirect(request):
    return HttpResponseRedirect("/admin/")


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

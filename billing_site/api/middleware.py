"""Plumbing for every /api/ request: errors answered as JSON whatever raised them (and marked
not worth retrying when they are the client's), bodies bounded before they are read, a lost
database answered 503 + Retry-After so nothing unstored is acknowledged, and NUL characters in
URLs refused before they reach a query."""

from __future__ import annotations

import logging
from io import BytesIO

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.db import InterfaceError, OperationalError
from django.http import HttpResponseBadRequest, HttpResponseNotFound, JsonResponse

from billing_site.api.exceptions import (
    error_body,
    error_code_for_status,
    payload_too_large,
    service_unavailable,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# 4xx answers the SDK may retry (it also retries 409 unless told not to): a timeout, and the rate
# limit, whose Retry-After says when.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
# Headers of a non-JSON error answer kept when it is rewritten as JSON.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
_READ_CHUNK_BYTES = 64 * 1024


class ApiErrorFormatMiddleware:
    """The outermost layer for /api/: every error answer is `{code, message, errors}` JSON, even
    one made by a view with another renderer (the docs page, the YAML schema) or by Django itself;
    and a 4xx answer says `x-should-retry: false`. The `dodopayments` SDK retries 408, 409, 429
    and 5xx unless that header says otherwise; a 409 here (a reused idempotency key, a taken
    name) fails the same way every time, so retrying it only wasted ~1.3 s."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path_info.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if not response.get("Content-Type", "").startswith("application/json"):
            response = _as_json(response)
        if response.status_code < 500 and response.status_code not in RETRYABLE_CLIENT_ERRORS:
            response["x-should-retry"] = "false"
        return response


def _as_json(response):
    status = response.status_code
    rewritten = JsonResponse(
        error_body(error_code_for_status(status), f"{status} {response.reason_phrase}."),
        status=status,
    )
    for header in _KEPT_HEADERS:
        if header in response:
            rewritten[header] = response[header]
    for header, value in response.items():
        if header.lower().startswith("x-ratelimit-"):
            rewritten[header] = value
    return rewritten


class RequestBodyLimitMiddleware:
    """Bodies under /api/ are at most INGEST_MAX_BODY_BYTES: a larger `Content-Length` is
    answered 413 before a byte is read (Django's own check would answer an HTML 400), and a body
    of unknown length (`Transfer-Encoding: chunked`) is read here up to one byte past the limit,
    then handed on as if it had been sent with its length (Django's WSGI request reads no body
    without a Content-Length). A server that cannot say where such a body ends (it does not set
    `wsgi.input_terminated`, as gunicorn does) gets 411: send Content-Length."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX):
            refused = self._refuse_or_buffer(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    @staticmethod
    def _refuse_or_buffer(request) -> JsonResponse | None:
        limit = settings.INGEST_MAX_BODY_BYTES
        meta = request.META
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # as Django reads it: no body
        if declared > limit:
            return payload_too_large(declared, limit)
        if meta.get("CONTENT_LENGTH") or not meta.get("HTTP_TRANSFER_ENCODING"):
            return None
        stream = meta.get("wsgi.input")
        if stream is None or not meta.get("wsgi.input_terminated"):
            return JsonResponse(
                error_body(
                    "LENGTH_REQUIRED",
                    "This server cannot read a body without a Content-Length; send one.",
                ),
                status=411,
            )
        body = BytesIO()
        while body.tell() <= limit:
            chunk = stream.read(min(_READ_CHUNK_BYTES, limit + 1 - body.tell()))
            if not chunk:
                break
            body.write(chunk)
        if body.tell() > limit:
            return payload_too_large(None, limit)
        size = body.tell()
        body.seek(0)
        meta["CONTENT_LENGTH"] = str(size)
        request._stream = LimitedStream(body, size)
        return None


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
    (404) and one in a query parameter is an invalid value (422 naming the parameter). Staff
    pages (the admin's lists, filters, searches and actions) get the same rule as plain text: a
    404 for the path, a 400 naming the query or form parameter."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        api = request.path.startswith("/api/")
        if "\x00" in request.path:
            if api:
                return JsonResponse(error_body("NOT_FOUND", "No such resource."), status=404)
            return HttpResponseNotFound("Not found.", content_type="text/plain; charset=utf-8")
        bad = _with_nul(request.GET)
        if api and bad:
            errors = [
                {"field": name, "message": "Must not contain NUL characters."} for name in bad
            ]
            return JsonResponse(
                error_body("INVALID_REQUEST_BODY", f"Invalid value for {', '.join(bad)}", errors),
                status=422,
            )
        if not api:
            if request.method == "POST" and request.content_type in _FORM_TYPES:
                bad = sorted({*bad, *_with_nul(request.POST)})
            if bad:
                return HttpResponseBadRequest(
                    f"Invalid value for {', '.join(bad)}: must not contain NUL characters.",
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _with_nul(params) -> list[str]:
    return sorted(
        name
        for name, values in params.lists()
        if "\x00" in name or any("\x00" in value for value in values)
    )

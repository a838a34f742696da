"""The one place where errors become HTTP answers: `{code, message, errors}`, never a trace."""

from __future__ import annotations

import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from billing_site.errors import DomainError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

_CODES = {
    exceptions.ParseError: "INVALID_JSON",
    exceptions.NotAuthenticated: "UNAUTHORIZED",
    exceptions.AuthenticationFailed: "UNAUTHORIZED",
    exceptions.PermissionDenied: "FORBIDDEN",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "TOO_MANY_REQUESTS",
}


# Codes for answers made outside DRF (by Django, middleware or a non-JSON view), by status.
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def error_body(code: str, message: str, errors: list[dict] | None = None) -> dict:
    return {"code": code, "message": message, "errors": errors or []}


def error_code_for_status(status: int) -> str:
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    try:
        return HTTPStatus(status).name
    except ValueError:
        return "CLIENT_ERROR" if status < 500 else "SERVER_ERROR"


def payload_too_large(size: int | None, limit: int) -> JsonResponse:
    """413 for a body over INGEST_MAX_BODY_BYTES; `size` is None when it was not declared."""
    told = f"{size} bytes" if size is not None else f"over {limit} bytes"
    return JsonResponse(
        error_body("PAYLOAD_TOO_LARGE", f"The body is {told}; the limit is {limit}."),
        status=413,
    )


def flatten_validation_errors(detail, path: str = "") -> list[dict]:
    """DRF nests errors by field; clients want a flat list naming each field by its full path."""
    if isinstance(detail, dict):
        found = []
        for key, value in detail.items():
            if key == "non_field_errors":
                child = path
            elif path:
                child = f"{path}.{key}"
            else:
                child = str(key)
            found += flatten_validation_errors(value, child)
        return found
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"field": path or None, "message": str(item)} for item in detail]
        found = []
        for index, item in enumerate(detail):
            if item:
                found += flatten_validation_errors(item, f"{path}[{index}]")
        return found
    return [{"field": path or None, "message": str(detail)}]


UNAVAILABLE_BODY = error_body(
    "SERVICE_UNAVAILABLE",
    # Not "nothing was stored": the connection can drop after a commit, before its answer.
    "The database is unavailable, so this request is not acknowledged. Retry it later: "
    "events already stored are recognised by event_id and skipped.",
)


def service_unavailable() -> JsonResponse:
    """503 with Retry-After: the client must retry, since nothing was acknowledged."""
    response = JsonResponse(UNAVAILABLE_BODY, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: map every known error to the wire format."""
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.errors), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable: %s", exc)
        return Response(
            UNAVAILABLE_BODY, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_validation_errors(exc.detail)
        fields = ", ".join(sorted({e["field"] for e in errors if e["field"]}))
        message = f"Invalid value for {fields}" if fields else "The request is invalid"
        return Response(
            error_body("INVALID_REQUEST_BODY", message, errors),
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if isinstance(exc, exceptions.APIException):
        code = _CODES.get(type(exc)) or str(exc.default_code).upper()
        headers = {}
        wait = getattr(exc, "wait", None)  # set on Throttled; django-stubs do not know it
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait) + 1)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            headers["WWW-Authenticate"] = "Bearer"
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    return None

"""Every API endpoint needs a valid API key, and the key's scope must allow the request.

Configured once, as DRF's DEFAULT_PERMISSION_CLASSES, so no view can forget it:

- `full`: everything;
- `read_only`: safe methods only (GET, HEAD, OPTIONS), on any endpoint;
- `ingest_only`: `POST /api/events/ingest` and nothing else, not even reads.

A refused request answers `403 {"code": "FORBIDDEN", "message": ...}` naming the scope; permissions
are checked before the view runs, so it changes nothing.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from billing_site.models import ApiKey

# URL names (billing_site/urls.py) an ingest-only key may POST to.
INGEST_URL_NAMES = frozenset({"events-ingest"})


class ApiKeyScopePermission(BasePermission):
    message = "This API key may not make this request."

    def has_permission(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False  # DRF answers 401: no (valid) key was presented
        if api_key.scope == ApiKey.Scope.FULL:
            return True
        if api_key.scope == ApiKey.Scope.READ_ONLY:
            if request.method in SAFE_METHODS:
                return True
            self.message = (
                f"This API key has the read_only scope: it may only read "
                f"(GET, HEAD, OPTIONS), not {request.method}."
            )
            return False
        if api_key.scope == ApiKey.Scope.INGEST_ONLY:
            match = getattr(request, "resolver_match", None)
            if request.method == "POST" and match and match.url_name in INGEST_URL_NAMES:
                return True
            self.message = (
                f"This API key has the ingest_only scope: it may only POST /api/events/ingest, "
                f"not {request.method} {request.path}."
            )
            return False
        self.message = f"This API key has an unknown scope ({api_key.scope!r})."
        return False

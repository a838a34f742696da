"""`Authorization: Bearer <api key>`, the SDK's only authentication."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from audit.context import Actor, set_actor
from billing_site.models import ApiKey

# The rate-limit middleware looks the key up first and leaves (raw key, ApiKey | None) here on the
# Django request, so authentication does not query the database a second time.
LOOKUP_ATTRIBUTE = "_billing_api_key_lookup"


def bearer_token(django_request) -> str | None:
    """The raw key from `Authorization: Bearer <key>`; None when absent or malformed."""
    header = django_request.META.get("HTTP_AUTHORIZATION", "")
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, raw_key = header.partition(" ")
    raw_key = raw_key.strip()
    if scheme.lower() != "bearer" or not raw_key:
        return None
    return raw_key


def lookup_api_key(django_request, raw_key: str) -> ApiKey | None:
    """The active key for `raw_key`, looked up at most once per request."""
    cached = getattr(django_request, LOOKUP_ATTRIBUTE, None)
    if cached is not None and cached[0] == raw_key:
        return cached[1]
    api_key = ApiKey.find_active(raw_key)
    setattr(django_request, LOOKUP_ATTRIBUTE, (raw_key, api_key))
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        raw_key = bearer_token(request._request)
        if raw_key is None:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        api_key = lookup_api_key(request._request, raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("The API key is unknown or revoked.")
        # Changes made by this request are the key's in the audit log (AuditActorMiddleware
        # undoes this when the request ends).
        set_actor(Actor.for_api_key(api_key))
        return (api_key, api_key)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return self.keyword

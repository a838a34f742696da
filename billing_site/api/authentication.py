"""`Authorization: Bearer <api key>`, the SDK's only authentication."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from billing_site.models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        if scheme.lower() != "bearer" or not raw_key:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        api_key = ApiKey.find_active(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("The API key is unknown or revoked.")
        return (api_key, api_key)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return self.keyword

"""Every API endpoint needs a valid API key."""

from rest_framework.permissions import BasePermission


class HasApiKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.auth is not None

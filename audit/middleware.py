"""Attributes changes made during a request to its logged-in user (the staff dashboard).

API requests are re-attributed to their key by ApiKeyAuthentication; whatever is set during the
request is undone when it ends, so nothing leaks into the next request on the same thread.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import Actor, reset_actor, set_actor


class AuditActorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = set_actor(lambda: Actor.for_user(getattr(request, "user", None)))
        try:
            return self.get_response(request)
        finally:
            reset_actor(token)

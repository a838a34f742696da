"""CSRF protects every form: the only views exempt from it are the API's, which authenticate
with a bearer key and never with the session cookie, so a forged cross-site request carries
no credentials there."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authentication import SessionAuthentication

from tests.roles.helpers import make_world, staff_client

pytestmark = pytest.mark.django_db


def views(patterns=None, prefix: str = ""):
    """(route, view function) for every URL the project serves."""
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from views(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback


def test_only_the_token_authenticated_api_is_csrf_exempt():
    exempt = [(route, view) for route, view in views() if getattr(view, "csrf_exempt", False)]
    assert exempt  # the API's views
    for route, view in exempt:
        assert route.startswith("api/"), route
        view_class = getattr(view, "cls", None)
        assert view_class is not None, route  # a DRF view, not a plain function
        for authentication in view_class.authentication_classes:
            assert not issubclass(authentication, SessionAuthentication), route
    assert "SessionAuthentication" not in str(
        settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    )


def test_staff_forms_refuse_a_post_without_the_csrf_token():
    world = make_world()
    before = world.balance.balance
    client = staff_client("root", superuser=True)
    forged = Client(enforce_csrf_checks=True)
    forged.cookies = client.cookies  # the victim's session, without the token
    adjust = reverse("admin:credits_creditbalance_adjust", args=[world.balance.pk])
    body = {"entry_type": "credit", "amount": "5", "reason": "x"}
    assert forged.post(adjust, body).status_code == 403
    preview = reverse("admin:meters_meter_preview")
    assert forged.post(preview, "{}", content_type="application/json").status_code == 403
    world.balance.refresh_from_db()
    assert world.balance.balance == before

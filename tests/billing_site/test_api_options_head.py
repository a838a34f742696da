"""OPTIONS and HEAD on every /api/ route, without a key and with a key of each scope: a proper
200 or a JSON 4xx, never a 500 (`OPTIONS /api/docs` was one: DRF rendered its description
through the docs page's HTML template)."""

from __future__ import annotations

import re

import pytest
from django.test import Client, override_settings

from billing_site.models import ApiKey
from billing_site.urls import api_patterns
from tests.conftest import UNLIMITED

# Requests without a key are limited per address (20/s): off here, so each reaches its view.
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("no_anonymous_limits"),
]


@pytest.fixture
def no_anonymous_limits():
    with override_settings(API_RATE_LIMIT_ANON_PER_SECOND=0, API_RATE_LIMIT_ANON_PER_MINUTE=0):
        yield


SCOPES = [None, "full", "read_only", "ingest_only"]


def every_route() -> list[str]:
    """Each route under /api/ (the public docs and schema too), path parameters filled in."""
    return ["/api/" + re.sub(r"<(?:\w+:)?\w+>", "x", str(p.pattern)) for p in api_patterns]


def client_for(scope: str | None) -> Client:
    headers = {}
    if scope is not None:
        _, raw_key = ApiKey.create(name=scope, scope=scope, **UNLIMITED)
        headers["Authorization"] = f"Bearer {raw_key}"
    return Client(raise_request_exception=False, headers=headers)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("method", ["OPTIONS", "HEAD"])
def test_options_and_head_never_answer_500(scope, method):
    client = client_for(scope)
    answers = {}
    for path in every_route():
        response = client.generic(method, path)
        answers[path] = response.status_code
        content_type = response.get("Content-Type", "")
        if response.status_code >= 400:
            assert content_type.startswith("application/json"), (path, content_type)
            if method == "OPTIONS":
                assert response.json()["code"], path
    assert all(status < 500 for status in answers.values()), answers
    assert all(status != 429 for status in answers.values()), answers
    assert len(answers) >= 20


@pytest.mark.parametrize("scope", SCOPES)
def test_options_on_the_docs_page_describes_it(scope):
    response = client_for(scope).options("/api/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["name"]
    assert client_for(scope).get("/api/docs").status_code == 200  # the page itself is unchanged
    assert client_for(scope).head("/api/docs").status_code == 200

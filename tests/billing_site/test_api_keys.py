"""API keys: required on every endpoint, stored hashed, revocable, created by a command."""

from __future__ import annotations

import io

from django.core.management import call_command
from rest_framework.test import APIClient

from billing_site.models import ApiKey, hash_key
from events.models import Event

BODY = '{"events":[{"event_id":"k1","customer_id":"c","event_name":"n"}]}'


def test_no_key_is_401_and_stores_nothing(db):
    response = APIClient().post("/api/events/ingest", BODY, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"
    assert Event.objects.count() == 0


def test_wrong_scheme_and_unknown_key_are_401(db):
    client = APIClient()
    for header in ("Basic abc", "Bearer nope", "Bearer"):
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get("/api/events").status_code == 401


def test_revoked_key_is_refused(api, api_key):
    assert api.get("/api/events").status_code == 200
    ApiKey.objects.get(key_hash=hash_key(api_key)).revoke()
    response = api.post("/api/events/ingest", BODY, content_type="application/json")
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_command_prints_the_key_once_on_its_last_line_and_stores_only_a_hash(db):
    out = io.StringIO()
    call_command("create_api_key", "ci", stdout=out, stderr=io.StringIO())
    raw_key = out.getvalue().strip().splitlines()[-1]
    stored = ApiKey.objects.get(name="ci")
    assert stored.key_hash == hash_key(raw_key)
    assert raw_key not in {stored.key_hash, stored.key_prefix, stored.name}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/api/events").status_code == 200


def test_unknown_api_path_answers_json_404(api):
    response = api.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/schema?format=json")
    assert schema.status_code == 200
    assert "/api/events/ingest" in schema.json()["paths"]
    docs = APIClient().get("/api/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn." not in docs.content

"""API keys: required on every endpoint, stored hashed, revocable, created by a command."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.utils import quote
from django.core.management import CommandError, call_command
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


def _create_with_command(*args: str) -> tuple[ApiKey, str]:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=io.StringIO())
    raw_key = out.getvalue().strip().splitlines()[-1]
    return ApiKey.objects.get(key_hash=hash_key(raw_key)), raw_key


def test_command_sets_the_scope_and_the_rate_limits(db):
    default, _ = _create_with_command("default")
    assert default.scope == "full"
    assert (default.rate_limit_per_second, default.rate_limit_per_minute) == (None, None)

    reader, raw_key = _create_with_command(
        "reader", "--scope", "read_only", "--rate-limit-per-second", "7"
    )
    assert reader.scope == "read_only"
    assert (reader.rate_limit_per_second, reader.rate_limit_per_minute) == (7, None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/api/events").status_code == 200
    response = client.post("/api/events/ingest", BODY, content_type="application/json")
    assert response.status_code == 403
    assert Event.objects.count() == 0

    ingester, _ = _create_with_command(
        "ingester", "--scope=ingest_only", "--rate-limit-per-minute=0"
    )
    assert ingester.scope == "ingest_only"
    assert ingester.rate_limit_per_minute == 0


def test_command_refuses_an_unknown_scope_or_a_negative_limit(db):
    with pytest.raises(CommandError):
        call_command("create_api_key", "x", "--scope", "admin", stderr=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_api_key", "x", scope="admin", stderr=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_api_key", "x", "--rate-limit-per-second", "-1", stderr=io.StringIO())
    assert not ApiKey.objects.exists()


def test_staff_create_a_scoped_key_in_the_admin_and_change_it(admin_client):
    response = admin_client.post(
        "/admin/billing_site/apikey/add/",
        {"name": "dashboards", "scope": "read_only", "rate_limit_per_second": "5"},
    )
    assert response.status_code == 200
    raw_key = response.context["raw_key"]
    assert f'value="{raw_key}"' in response.content.decode()
    api_key = ApiKey.objects.get(key_hash=hash_key(raw_key))
    assert (api_key.name, api_key.scope) == ("dashboards", "read_only")
    assert (api_key.rate_limit_per_second, api_key.rate_limit_per_minute) == (5, None)

    page = admin_client.get(f"/admin/billing_site/apikey/{quote(api_key.pk)}/change/")
    assert page.status_code == 200
    assert b"ingest_only" in page.content
    admin_client.post(
        f"/admin/billing_site/apikey/{quote(api_key.pk)}/change/",
        {"name": "ingest", "scope": "ingest_only", "rate_limit_per_minute": "1000"},
    )
    api_key.refresh_from_db()
    assert (api_key.name, api_key.scope) == ("ingest", "ingest_only")
    assert (api_key.rate_limit_per_second, api_key.rate_limit_per_minute) == (None, 1000)
    assert api_key.key_hash == hash_key(raw_key)  # editing never changes the key itself

    listing = admin_client.get("/admin/billing_site/apikey/?scope__exact=ingest_only")
    assert listing.status_code == 200
    assert b"ingest" in listing.content


def test_a_new_key_is_shown_on_the_page_and_never_sent_in_a_cookie(admin_client, monkeypatch):
    """Django's default messages travel in a signed but readable cookie: the key must not."""
    created = []
    create = ApiKey.create

    def remember(**fields):
        api_key, raw_key = create(**fields)
        created.append(raw_key)
        return api_key, raw_key

    monkeypatch.setattr(ApiKey, "create", remember)
    response = admin_client.post("/admin/billing_site/apikey/add/", {"name": "ci", "scope": "full"})
    [raw_key] = created
    assert not [cookie for cookie in readable_cookies(response) if raw_key[12:] in cookie]
    assert response.status_code == 200
    assert raw_key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # Nor on any page after it: the list the browser goes to next shows only the prefix.
    listing = admin_client.get("/admin/billing_site/apikey/")
    assert raw_key not in listing.content.decode()
    assert not [cookie for cookie in readable_cookies(listing) if raw_key[12:] in cookie]


def readable_cookies(response) -> list[str]:
    """Each Set-Cookie header as sent, and the messages cookie as anyone holding it reads it (it
    is signed, not encrypted: base64 of possibly compressed JSON)."""
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.http import HttpRequest

    texts = []
    for morsel in response.cookies.values():
        texts.append(morsel.OutputString())
        if morsel.key == CookieStorage.cookie_name and morsel.value:
            decoded = CookieStorage(HttpRequest())._decode(morsel.value) or []
            texts.extend(str(message) for message in decoded)
    return texts

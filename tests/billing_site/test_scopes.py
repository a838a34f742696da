"""API key scopes: full, read_only (safe methods anywhere), ingest_only (POST events/ingest)."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from billing_site.models import ApiKey
from billing_site.urls import api_patterns
from events.models import Event
from products.models import Customer
from tests.conftest import UNLIMITED

pytestmark = pytest.mark.django_db

INGEST = "/api/events/ingest"
BODY = {"events": [{"event_id": "s1", "customer_id": "c", "event_name": "n"}]}
# Served to anyone, with or without a key (Stripe's webhook is authenticated by its signature,
# tests/payments/test_stripe_webhook.py).
PUBLIC = {"api-schema", "api-docs", "providers-stripe-webhook"}


def every_api_path() -> list[str]:
    """Each endpoint under /api/ that needs a key, with its path parameters filled in."""
    paths = []
    for pattern in api_patterns:
        if pattern.name in PUBLIC:
            continue
        paths.append("/api/" + re.sub(r"<(?:\w+:)?\w+>", "x", str(pattern.pattern)))
    return paths


def client_for(scope: str) -> APIClient:
    _, raw_key = ApiKey.create(name=scope, scope=scope, **UNLIMITED)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def assert_forbidden(response, scope: str) -> None:
    assert response.status_code == 403, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == "FORBIDDEN"
    assert scope in body["message"]


def test_the_default_scope_is_full():
    api_key, _ = ApiKey.create(name="default")
    assert api_key.scope == ApiKey.Scope.FULL == "full"


def test_every_api_path_is_covered():
    paths = every_api_path()
    assert INGEST in paths
    assert "/api/customers" in paths
    assert len(paths) >= 20


def test_a_full_key_may_read_and_write():
    client = client_for("full")
    assert client.post(INGEST, BODY, format="json").status_code == 200
    assert client.get("/api/events").status_code == 200
    created = client.post("/api/customers", {"email": "a@example.com", "name": "A"}, format="json")
    assert created.status_code == 200


def test_a_read_only_key_reads_everywhere():
    client = client_for("read_only")
    assert client.get("/api/events").status_code == 200
    assert client.get("/api/customers").status_code == 200
    assert client.get("/api/meters").status_code == 200
    assert client.head("/api/products").status_code == 200
    assert client.options("/api/subscriptions").status_code == 200
    assert client.get("/api/events/nope").status_code == 404  # reads go through to the view


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_read_only_key_may_not_write_anywhere(method):
    client = client_for("read_only")
    for path in every_api_path():
        response = getattr(client, method)(path, {}, format="json")
        assert_forbidden(response, "read_only")


def test_a_refused_write_changes_nothing():
    client = client_for("read_only")
    customer = Customer.objects.create(email="b@example.com", name="Before")
    assert_forbidden(client.post(INGEST, BODY, format="json"), "read_only")
    assert_forbidden(
        client.post("/api/customers", {"email": "c@example.com", "name": "C"}, format="json"),
        "read_only",
    )
    assert_forbidden(
        client.patch(f"/api/customers/{customer.pk}", {"name": "After"}, format="json"),
        "read_only",
    )
    assert Event.objects.count() == 0
    assert list(Customer.objects.values_list("name", flat=True)) == ["Before"]


def test_an_ingest_only_key_may_ingest():
    client = client_for("ingest_only")
    response = client.post(INGEST, BODY, format="json")
    assert response.status_code == 200
    assert response.json() == {"ingested_count": 1}
    assert Event.objects.filter(event_id="s1").exists()


@pytest.mark.parametrize("method", ["get", "head", "options", "post", "put", "patch", "delete"])
def test_an_ingest_only_key_may_do_nothing_else(method):
    client = client_for("ingest_only")
    for path in every_api_path():
        if path == INGEST and method == "post":
            continue
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 403, (method, path, response.status_code)
        if method != "head":
            assert_forbidden(response, "ingest_only")
    assert Event.objects.count() == 0
    assert Customer.objects.count() == 0


def test_the_message_names_the_scope_and_the_request():
    response = client_for("ingest_only").get("/api/events")
    assert response.json()["message"] == (
        "This API key has the ingest_only scope: it may only POST /api/events/ingest, "
        "not GET /api/events."
    )
    response = client_for("read_only").delete("/api/meters/mtr_x")
    assert response.json()["message"] == (
        "This API key has the read_only scope: it may only read (GET, HEAD, OPTIONS), not DELETE."
    )


def test_without_a_key_the_answer_is_still_401():
    response = APIClient().get("/api/events")
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_the_sdk_raises_permission_denied(live_server, transactional_db):
    import dodopayments
    from dodopayments import DodoPayments

    _, raw_key = ApiKey.create(name="sdk read only", scope="read_only", **UNLIMITED)
    with DodoPayments(
        bearer_token=raw_key, base_url=f"{live_server.url}/api", max_retries=0
    ) as client:
        assert client.usage_events.list().items == []
        with pytest.raises(dodopayments.PermissionDeniedError) as raised:
            client.usage_events.ingest(events=BODY["events"])
    assert raised.value.body["code"] == "FORBIDDEN"
    assert Event.objects.count() == 0

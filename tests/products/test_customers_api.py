"""Customers API: create, list filters, retrieve, update; bad input named, nothing stored."""

from __future__ import annotations

import pytest

from products.models import Customer

pytestmark = pytest.mark.django_db


def test_create_and_retrieve_keep_metadata_exact(api):
    response = api.post(
        "/api/customers",
        '{"email": "a@b.c", "name": "A", "metadata": {"ratio": 0.1, "tier": "gold", "vip": true}}',
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    customer_id = response.json()["customer_id"]
    assert customer_id.startswith("cus_")
    fetched = api.get(f"/api/customers/{customer_id}")
    assert fetched.content.count(b'"ratio":0.1') == 1
    assert fetched.json()["metadata"] == {"ratio": 0.1, "tier": "gold", "vip": True}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "No email"}, "email"),
        ({"email": "not-an-email", "name": "X"}, "email"),
        ({"email": "x@y.z"}, "name"),
        ({"email": "x@y.z", "name": "X", "metadata": {"deep": {"no": 1}}}, "metadata"),
        ({"email": "x@y.z", "name": "X", "metadata": [1]}, "metadata"),
    ],
)
def test_bad_customers_are_refused_naming_the_field(api, body, field):
    response = api.post("/api/customers", body, format="json")
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert Customer.objects.count() == 0


def test_patch_changes_only_what_is_sent_and_unknown_ids_are_404(api):
    customer_id = api.post(
        "/api/customers", {"email": "k@example.com", "name": "Kim"}, format="json"
    ).json()["customer_id"]
    response = api.patch(f"/api/customers/{customer_id}", {"name": "Kim Lee"}, format="json")
    assert response.json()["name"] == "Kim Lee"
    assert response.json()["email"] == "k@example.com"
    assert api.get("/api/customers/cus_missing").status_code == 404
    assert api.get("/api/customers/cus_missing").json()["code"] == "NOT_FOUND"


def test_list_paging_past_the_end_is_empty_and_bad_paging_is_named(api):
    for n in range(3):
        api.post("/api/customers", {"email": f"p{n}@example.com", "name": "P"}, format="json")
    assert len(api.get("/api/customers?page_size=2").json()["items"]) == 2
    assert len(api.get("/api/customers?page_size=2&page_number=1").json()["items"]) == 1
    assert api.get("/api/customers?page_size=2&page_number=5").json() == {"items": []}
    for query, field in (
        ("page_size=101", "page_size"),
        ("page_number=-1", "page_number"),
        ("page_size=x", "page_size"),
        ("created_at_gte=soon", "created_at_gte"),
    ):
        response = api.get(f"/api/customers?{query}")
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == field

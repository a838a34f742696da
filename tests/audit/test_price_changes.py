"""Price changes are in the audit log: a product's fixed price and its meters' price per unit and
free threshold, the credits it grants, and credit entitlements' settings; through the API (the
key) or the admin (the staff user). Decimals are kept exactly; a refused change logs nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from audit.models import AuditEntry
from credits.models import CreditEntitlement
from tests.audit.helpers import actor, api_key_actor, logged, user_actor
from tests.products.factories import make_meter
from tests.roles.helpers import admin_form_data

NOW = datetime(2026, 5, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def price(meters: list[dict], fixed_price: int = 500) -> dict:
    return {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": fixed_price,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "meters": meters,
    }


@pytest.fixture
def meter():
    return make_meter("Calls", "api.call", now=NOW)


@pytest.fixture
def product_id(api, meter) -> str:
    body = {
        "name": "Plan",
        "tax_category": "saas",
        "price": price([{"meter_id": meter.id, "price_per_unit": "0.1", "free_threshold": 10}]),
    }
    response = api.post("/api/products", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["product_id"]


def test_a_product_created_through_the_api_is_logged_with_its_prices(api, meter, product_id):
    [created] = logged("products.product", product_id)
    assert (created.action, actor(created), created.before) == ("created", api_key_actor(), None)
    assert created.after["fixed_price_minor"] == 500
    assert created.after["meters"] == [
        {
            "meter_id": meter.id,
            "price_per_unit": Decimal("0.1"),
            "free_threshold": 10,
            "credit_entitlement_id": None,
            "meter_units_per_credit": None,
        }
    ]


def test_a_price_change_is_logged_with_the_price_before_and_after(api, meter, product_id):
    new_price = price(
        [{"meter_id": meter.id, "price_per_unit": "0.000123", "free_threshold": 0}],
        fixed_price=999,
    )
    response = api.patch(f"/api/products/{product_id}", {"price": new_price}, format="json")
    assert response.status_code == 200

    _, updated = logged("products.product", product_id)
    assert (updated.action, actor(updated)) == ("updated", api_key_actor())
    assert (updated.before["fixed_price_minor"], updated.after["fixed_price_minor"]) == (500, 999)
    [before], [after] = updated.before["meters"], updated.after["meters"]
    assert (before["price_per_unit"], after["price_per_unit"]) == (
        Decimal("0.1"),
        Decimal("0.000123"),
    )
    assert (before["free_threshold"], after["free_threshold"]) == (10, 0)
    assert str(after["price_per_unit"]) == "0.000123"  # never a float


def test_a_refused_price_change_logs_nothing(api, meter, product_id):
    bad = price([{"meter_id": meter.id, "price_per_unit": "-1"}])
    response = api.patch(f"/api/products/{product_id}", {"price": bad}, format="json")
    assert response.status_code == 422
    assert [e.action for e in logged("products.product", product_id)] == ["created"]


def test_archive_and_unarchive_of_a_product_are_logged(api, product_id):
    assert api.delete(f"/api/products/{product_id}").status_code == 200
    assert api.post(f"/api/products/{product_id}/unarchive").status_code == 200
    actions = [e.action for e in logged("products.product", product_id)]
    assert actions == ["created", "archived", "unarchived"]


def test_a_product_edited_in_the_admin_is_logged_with_the_staff_user(
    product_id, staff_client, staff_user
):
    url = reverse("admin:products_product_change", args=[quote(product_id)])
    response = staff_client.post(url, admin_form_data(staff_client, url, name="Plan Pro"))
    assert response.status_code == 302
    _, updated = logged("products.product", product_id)
    assert (updated.action, actor(updated)) == ("updated", user_actor(staff_user))
    assert (updated.before["name"], updated.after["name"]) == ("Plan", "Plan Pro")
    assert updated.before["meters"] == updated.after["meters"]


# --- credit entitlements and what products grant ---------------------------------------------


ENTITLEMENT = {
    "name": "API credits",
    "unit": "credits",
    "precision": 2,
    "currency": "USD",
    "price_per_unit": "0.5",
    "overage_enabled": True,
    "overage_behavior": "invoice_at_billing",
    "rollover_enabled": False,
}


def test_entitlement_settings_are_logged_through_the_api(api):
    response = api.post("/api/credit-entitlements", ENTITLEMENT, format="json")
    assert response.status_code == 201, response.content
    entitlement_id = response.json()["id"]
    api.patch(
        f"/api/credit-entitlements/{entitlement_id}", {"price_per_unit": "0.25"}, format="json"
    )
    api.delete(f"/api/credit-entitlements/{entitlement_id}")
    api.post(f"/api/credit-entitlements/{entitlement_id}/undelete")

    created, updated, deleted, undeleted = logged("credits.creditentitlement", entitlement_id)
    assert {actor(e) for e in (created, updated, deleted, undeleted)} == {api_key_actor()}
    assert created.after["price_per_unit"] == Decimal("0.5")
    assert (updated.before["price_per_unit"], updated.after["price_per_unit"]) == (
        Decimal("0.5"),
        Decimal("0.25"),
    )
    assert (deleted.action, undeleted.action) == ("deleted", "undeleted")


def test_a_refused_entitlement_change_logs_nothing(api):
    entitlement_id = api.post("/api/credit-entitlements", ENTITLEMENT, format="json").json()["id"]
    response = api.patch(
        f"/api/credit-entitlements/{entitlement_id}", {"price_per_unit": "-3"}, format="json"
    )
    assert response.status_code == 422
    taken = api.post("/api/credit-entitlements", ENTITLEMENT, format="json")
    assert taken.status_code == 409
    assert [e.action for e in logged("credits.creditentitlement")] == ["created"]


def test_an_entitlement_edited_in_the_admin_is_logged_with_the_staff_user(
    api, staff_client, staff_user
):
    entitlement_id = api.post("/api/credit-entitlements", ENTITLEMENT, format="json").json()["id"]
    url = reverse("admin:credits_creditentitlement_change", args=[quote(entitlement_id)])
    data = admin_form_data(staff_client, url, price_per_unit="0.75")
    assert staff_client.post(url, data).status_code == 302
    _, updated = logged("credits.creditentitlement", entitlement_id)
    assert (updated.action, actor(updated)) == ("updated", user_actor(staff_user))
    assert updated.after["price_per_unit"] == Decimal("0.75")
    assert CreditEntitlement.objects.get().price_per_unit == Decimal("0.75")


def test_the_credits_a_product_grants_are_part_of_its_logged_price(api, meter):
    entitlement_id = api.post("/api/credit-entitlements", ENTITLEMENT, format="json").json()["id"]
    link = {"credit_entitlement_id": entitlement_id, "credits_amount": "100.5"}
    body = {
        "name": "Credits plan",
        "tax_category": "saas",
        "price": price([]),
        "credit_entitlements": [link],
    }
    product_id = api.post("/api/products", body, format="json").json()["product_id"]
    more = [{**link, "credits_amount": "250", "overage_limit": "10.25"}]
    api.patch(f"/api/products/{product_id}", {"credit_entitlements": more}, format="json")

    _, updated = logged("products.product", product_id)
    [before], [after] = updated.before["credit_entitlements"], updated.after["credit_entitlements"]
    assert (before["credits_amount"], after["credits_amount"]) == (Decimal("100.5"), 250)
    assert (before["overage_limit"], after["overage_limit"]) == (None, Decimal("10.25"))
    assert AuditEntry.objects.filter(object_type="products.product").count() == 2

"""The admin's credit entitlement form applies the API's rules (`services.check_entitlement`).

It once saved whatever the model columns took: a precision of 200, 500% rollover, a negative
overage price; a subscription to a product granting that entitlement then answered 500.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from billing_site.errors import InvalidInput
from credits import services
from credits.models import CreditEntitlement
from tests.credits.factories import make_entitlement

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/credits/creditentitlement/add/"

VALID = {
    "name": "API credits",
    "description": "",
    "unit": "credits",
    "precision": "2",
    "currency": "USD",
    "price_per_unit": "0.5",
    "overage_limit": "",
    "overage_behavior": "forgive_at_reset",
    "expires_after_days": "30",
    "rollover_percentage": "",
    "rollover_timeframe_count": "",
    "rollover_timeframe_interval": "",
    "max_rollover_count": "",
}

# (field, admin form value, API value): each accepted by the model's columns, refused by the rules.
BAD = [
    ("precision", "200", 200),
    ("rollover_percentage", "500", 500),
    ("price_per_unit", "-1", "-1"),
]


def service_message(field: str, value) -> str:
    """What the rule itself says of the value, for comparing the form's words with it."""
    entitlement = CreditEntitlement(**{"name": "x", "unit": "u", "precision": 2, field: value})
    with pytest.raises(InvalidInput) as refused:
        services.check_entitlement(entitlement)
    [error] = [e for e in refused.value.errors if e["field"] == field]
    return error["message"]


@pytest.mark.parametrize(("field", "form_value", "api_value"), BAD)
def test_the_admin_form_refuses_what_the_rules_refuse(admin_client, field, form_value, api_value):
    response = admin_client.post(ADD_URL, {**VALID, field: form_value})
    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    assert errors[field] == [service_message(field, api_value)]
    assert CreditEntitlement.objects.count() == 0
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("field", "form_value", "api_value"), BAD)
def test_the_api_still_refuses_them(api, field, form_value, api_value):
    body = {
        "name": "API credits",
        "unit": "credits",
        "precision": 2,
        "currency": "USD",
        "rollover_enabled": False,
        "overage_enabled": False,
        field: api_value,
    }
    response = api.post("/api/credit-entitlements", body, format="json")
    assert response.status_code == 422, response.content
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert CreditEntitlement.objects.count() == 0


def test_combinations_are_checked_as_the_api_checks_them(admin_client):
    """Rules on several fields at once: overage needs a price, a price needs a currency."""
    response = admin_client.post(
        ADD_URL, {**VALID, "overage_enabled": "on", "price_per_unit": "", "currency": ""}
    )
    errors = response.context["adminform"].form.errors
    assert errors["price_per_unit"] == ["Is required when overage is enabled."]
    response = admin_client.post(ADD_URL, {**VALID, "currency": ""})
    errors = response.context["adminform"].form.errors
    assert errors["currency"] == ["Is required when price_per_unit is set."]
    assert CreditEntitlement.objects.count() == 0


def test_a_taken_name_is_a_form_error(admin_client):
    make_entitlement(now=timezone.now(), name="API credits")
    response = admin_client.post(ADD_URL, VALID)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "already exists" in str(errors["name"])
    assert CreditEntitlement.objects.count() == 1


def test_a_valid_entitlement_still_saves_from_the_admin(admin_client):
    response = admin_client.post(ADD_URL, {**VALID, "rollover_percentage": "100"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    entitlement = CreditEntitlement.objects.get()
    assert (entitlement.precision, entitlement.rollover_percentage) == (2, 100)
    assert str(entitlement.price_per_unit) == "0.5"
    assert AuditEntry.objects.filter(object_id=entitlement.id).count() == 1


def test_editing_in_the_admin_is_checked_too(admin_client):
    entitlement = make_entitlement(now=timezone.now(), currency="USD", price_per_unit="1")
    url = f"/admin/credits/creditentitlement/{entitlement.pk}/change/"
    data = {**VALID, "rollover_percentage": "101"}
    del data["precision"]  # read-only once created
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["rollover_percentage"]
    entitlement.refresh_from_db()
    assert entitlement.rollover_percentage is None
    data["rollover_percentage"] = "50"
    assert admin_client.post(url, data).status_code == 302
    entitlement.refresh_from_db()
    assert entitlement.rollover_percentage == 50

"""Input that used to be answered 200 and then ignored: each field is now applied (stored and
shown, or used as a filter) or refused with a 422 naming it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from products.models import Customer, Subscription
from tests.factories import make_customer
from tests.products.factories import make_meter, make_product

NOW = datetime(2026, 3, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    meter = make_meter("Calls", "api.call", now=NOW)
    return make_product([(meter, "1", 0)], fixed_price=500, now=NOW)


def start(api, product, **extra) -> dict:
    customer = extra.pop("customer", None) or {"customer_id": make_customer().pk}
    body = {
        "billing": {"country": "US"},
        "customer": customer,
        "product_id": product.pk,
        "quantity": 1,
        **extra,
    }
    return api.post("/api/subscriptions", body, format="json")


def refused_fields(response) -> list[str]:
    assert response.status_code == 422, response.content
    return [e["field"] for e in response.json()["errors"]]


# --- PATCH /api/subscriptions/{id} ----------------------------------------------------------------


def test_patch_applies_billing_names_and_cancellation_reasons(api, product):
    sub_id = start(api, product).json()["subscription_id"]
    response = api.patch(
        f"/api/subscriptions/{sub_id}",
        {
            "billing": {"country": "FR", "city": "Lyon", "zipcode": "69001"},
            "customer_name": "Ada Lovelace",
            "customer_business_name": "Analytical Engines Ltd",
            "cancel_at_next_billing_date": True,
            "cancel_reason": "cancelled_by_customer",
            "cancellation_comment": "Too many punch cards",
            "cancellation_feedback": "too_complex",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    shown = api.get(f"/api/subscriptions/{sub_id}").json()
    assert shown["billing"] == {"country": "FR", "city": "Lyon", "zipcode": "69001"}
    assert shown["customer"]["name"] == "Ada Lovelace"
    assert Customer.objects.get().name == "Ada Lovelace"
    assert shown["customer_business_name"] == "Analytical Engines Ltd"
    assert (shown["cancellation_comment"], shown["cancellation_feedback"]) == (
        "Too many punch cards",
        "too_complex",
    )
    assert shown["cancel_reason"] == "cancelled_by_customer"

    withdrawn = api.patch(
        f"/api/subscriptions/{sub_id}",
        {"cancel_at_next_billing_date": False, "customer_business_name": None},
        format="json",
    ).json()
    assert withdrawn["cancellation_comment"] is None  # the reasons go with the cancellation
    assert withdrawn["customer_business_name"] is None


def test_cancellation_reasons_without_a_cancellation_are_refused(api, product):
    sub_id = start(api, product).json()["subscription_id"]
    response = api.patch(
        f"/api/subscriptions/{sub_id}", {"cancellation_comment": "why not"}, format="json"
    )
    assert refused_fields(response) == ["cancellation_comment"]
    assert Subscription.objects.get().cancellation_comment is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("next_billing_date", "2000-01-01T00:00:00Z"),  # before the period: moving it is refused
        ("tax_id", "GB123456789"),
        ("credit_entitlement_cart", [{"credit_entitlement_id": "cde_x", "credits_amount": "5"}]),
        ("subscription_period_count", 30),
        ("subscription_period_interval", "Month"),
        ("disable_on_demand", {"next_billing_date": "2026-06-01T00:00:00Z"}),
        ("pause", True),
        ("pause", None),  # Dodo: "This field always fails with 422"
        ("bogus", 1),
        ("billing", {"country": "XX"}),
    ],
)
def test_patch_refuses_what_it_cannot_honour_naming_the_field(api, product, field, value):
    sub_id = start(api, product).json()["subscription_id"]
    before = api.get(f"/api/subscriptions/{sub_id}").json()
    response = api.patch(f"/api/subscriptions/{sub_id}", {field: value}, format="json")
    fields = refused_fields(response)
    assert fields == [field] or fields == [f"{field}.country"]
    assert api.get(f"/api/subscriptions/{sub_id}").json() == before


@pytest.mark.parametrize("field", ["next_billing_date", "tax_id", "credit_entitlement_cart"])
def test_patch_takes_the_neutral_null(api, product, field):
    sub_id = start(api, product).json()["subscription_id"]
    assert (
        api.patch(f"/api/subscriptions/{sub_id}", {field: None}, format="json").status_code == 200
    )


# --- POST /api/subscriptions ----------------------------------------------------------------------


def test_create_applies_trial_days_and_business_name(api, product):
    created = start(api, product, trial_period_days=14, customer_business_name="Ada Ltd")
    assert created.status_code == 200, created.content
    shown = api.get(f"/api/subscriptions/{created.json()['subscription_id']}").json()
    assert shown["trial_period_days"] == 14
    assert shown["status"] == "active"  # Dodo's enum has no "trialing"
    begun = datetime.fromisoformat(shown["previous_billing_date"])
    assert datetime.fromisoformat(shown["next_billing_date"]) == begun + timedelta(days=14)
    assert shown["customer_business_name"] == "Ada Ltd"


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("on_demand", {"mandate_only": True}, "ON_DEMAND_USAGE_BASED_BILLING_NOT_SUPPORTED"),
        ("discount_codes", ["WELCOME10"], "UNSUPPORTED_FIELD"),
        ("discount_code", "WELCOME10", "UNSUPPORTED_FIELD"),
        ("addons", [{"addon_id": "a"}], "ADDONS_IN_USAGE_BASED_BILLING_NOT_SUPPORTED"),
        ("tax_id", "GB123", "UNSUPPORTED_FIELD"),
        ("payment_link", True, "UNSUPPORTED_FIELD"),
        ("return_url", "https://example.com/done", "UNSUPPORTED_FIELD"),
        ("trial_period_days", 10_001, "INVALID_REQUEST_BODY"),
        ("trial_period_days", -1, "INVALID_REQUEST_BODY"),
        ("bogus", 1, "INVALID_REQUEST_BODY"),
    ],
)  # fmt: skip
def test_create_refuses_what_it_cannot_honour(api, product, field, value, code):
    response = start(api, product, **{field: value})
    assert refused_fields(response) == [field]
    assert response.json()["code"] == code
    assert not Subscription.objects.exists()


def test_create_takes_the_neutral_values(api, product):
    response = start(
        api,
        product,
        on_demand=None,
        discount_codes=[],
        discount_code=None,
        addons=[],
        tax_id=None,
        payment_link=False,
        show_saved_payment_methods=False,
        redirect_immediately=False,
        billing_currency="USD",
    )
    assert response.status_code == 200, response.content


def test_create_requires_a_phone_number_when_asked(api, product):
    refused = start(
        api, product, require_phone_number=True, customer={"email": "a@b.co", "name": "A"}
    )
    assert refused_fields(refused) == ["customer.phone_number"]
    taken = start(
        api,
        product,
        require_phone_number=True,
        customer={"email": "a@b.co", "name": "A", "phone_number": "+15550100"},
    )
    assert taken.status_code == 200, taken.content


def test_create_refuses_another_billing_currency(api, product):
    assert refused_fields(start(api, product, billing_currency="EUR")) == ["billing_currency"]


# --- GET /api/subscriptions, GET /api/products ----------------------------------------------------


def listed(api, path: str, key: str, **params) -> list[str]:
    response = api.get(path, params)
    assert response.status_code == 200, response.content
    return [item[key] for item in response.json()["items"]]


def test_subscription_list_filters_by_creation_time_cancellation_and_brand(api, product):
    early = start(api, product).json()["subscription_id"]
    Subscription.objects.filter(pk=early).update(created_at=NOW)
    late = start(api, product).json()["subscription_id"]
    api.patch(f"/api/subscriptions/{late}", {"cancel_at_next_billing_date": True}, format="json")
    path, key = "/api/subscriptions", "subscription_id"
    cutoff = (NOW + timedelta(days=1)).isoformat()
    assert listed(api, path, key, created_at_lte=cutoff) == [early]
    assert listed(api, path, key, created_at_gte=cutoff) == [late]
    assert listed(api, path, key, cancel_at_next_billing_date="true") == [late]
    assert listed(api, path, key, cancel_at_next_billing_date="false") == [early]
    assert set(listed(api, path, key, brand_id="bus_selfhosted")) == {early, late}
    assert listed(api, path, key, brand_id="bus_other") == []
    assert refused_fields(api.get(path, {"bogus": "1"})) == ["bogus"]


def test_product_list_filters_by_recurring_and_brand(api, product):
    path, key = "/api/products", "product_id"
    assert listed(api, path, key, recurring="true") == [product.pk]
    assert listed(api, path, key, recurring="false") == []  # every product here is recurring
    assert listed(api, path, key, brand_id="bus_other") == []
    assert refused_fields(api.get(path, {"recurring": "maybe"})) == ["recurring"]


# --- customers ------------------------------------------------------------------------------------


def test_customers_keep_their_preferred_locale(api):
    created = api.post(
        "/api/customers",
        {"email": "ada@example.com", "name": "Ada", "preferred_locale": "fr"},
        format="json",
    )
    assert created.json()["preferred_locale"] == "fr"
    customer_id = created.json()["customer_id"]
    api.patch(f"/api/customers/{customer_id}", {"preferred_locale": "de"}, format="json")
    assert api.get(f"/api/customers/{customer_id}").json()["preferred_locale"] == "de"
    assert Customer.objects.get().preferred_locale == "de"
    refused = api.patch(f"/api/customers/{customer_id}", {"preferred_locale": "xx"}, format="json")
    assert refused_fields(refused) == ["preferred_locale"]
    read_only = api.patch(f"/api/customers/{customer_id}", {"customer_id": "cus_x"}, format="json")
    assert refused_fields(read_only) == ["customer_id"]


# --- unknown fields and parameters, everywhere ----------------------------------------------------


UNKNOWN_BODIES = [
    ("post", "/api/meters", {"name": "M", "event_name": "e", "measurement_unit": "u",
                             "aggregation": {"type": "count"}, "colour": "red"}, "colour"),
    ("post", "/api/meters", {"name": "M", "event_name": "e", "measurement_unit": "u",
                             "aggregation": {"type": "count", "over": "x"}}, "aggregation.over"),
    ("post", "/api/customers", {"email": "a@b.co", "name": "A", "nickname": "a"}, "nickname"),
    ("post", "/api/credit-entitlements", {"name": "C", "unit": "u", "precision": 0,
                                          "rollover_enabled": False, "overage_enabled": False,
                                          "colour": "red"}, "colour"),
]  # fmt: skip


@pytest.mark.parametrize("method, path, body, field", UNKNOWN_BODIES)
def test_unknown_body_fields_are_refused_by_name(api, method, path, body, field):
    response = getattr(api, method)(path, body, format="json")
    assert refused_fields(response) == [field]


def test_unknown_product_and_price_fields_are_refused_by_name(api):
    meter = make_meter("Calls", "api.call", now=timezone.now())
    price = {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 0,
        "payment_frequency_interval": "Month",
        "meters": [{"meter_id": meter.id, "price_per_unit": "1"}],
    }
    base = {"name": "P", "tax_category": "saas", "price": price}

    def refused(body) -> list[str]:
        return refused_fields(api.post("/api/products", body, format="json"))

    assert refused({**base, "colour": "red"}) == ["colour"]
    assert refused({**base, "price": {**price, "trial": 3}}) == ["price.trial"]
    odd_meter = {**price["meters"][0], "price_tiers": []}  # `tiers` is an extension (known)
    assert refused({**base, "price": {**price, "meters": [odd_meter]}}) == [
        "price.meters[0].price_tiers"
    ]
    renamed = {**price["meters"][0], "name": "Not the meter's name"}
    assert refused({**base, "price": {**price, "meters": [renamed]}}) == ["price.meters[0].name"]
    assert refused({**base, "price": {**price, "discount": 10}}) == ["price.discount"]
    assert refused({**base, "license_key_enabled": True}) == ["license_key_enabled"]
    assert refused({**base, "addons": ["adn_1"]}) == ["addons"]
    same = {**price["meters"][0], "name": "Calls", "measurement_unit": "units"}
    shown = {**base, "price": {**price, "meters": [same], "discount": 0}, "addons": []}
    assert api.post("/api/products", shown, format="json").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/events",
        "/api/meters",
        "/api/customers",
        "/api/products",
        "/api/subscriptions",
        "/api/credit-entitlements",
        "/api/invoices",
    ],
)
def test_unknown_query_parameters_are_refused_by_name(api, path):
    assert refused_fields(api.get(path, {"sort": "name"})) == ["sort"]

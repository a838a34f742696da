"""Inputs the fuzz tests (and probes around what they found) once answered with a 500.

Each is now refused with a 4xx in the error format, naming the field, and stores nothing.
"""

from __future__ import annotations

import json

import pytest

from credits.models import CreditEntitlement
from events.models import Event
from meters.models import Meter
from products.models import Customer, Product, Subscription

PRICE = {
    "type": "usage_based_price",
    "currency": "USD",
    "fixed_price": 100,
    "payment_frequency_count": 1,
    "payment_frequency_interval": "Month",
}


def send(api, method: str, path: str, body: object | str | None = None):
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    if raw is None:
        return api.generic(method, path)
    return api.generic(method, path, raw, content_type="application/json")


def assert_refused(response, status: int, field: str | None = None) -> dict:
    text = response.content.decode()
    assert response.status_code == status, text
    assert "Traceback" not in text
    body = json.loads(text)
    assert body["code"] and body["message"] and isinstance(body["errors"], list), body
    if field is not None:
        assert field in [error["field"] for error in body["errors"]], body
    return body


def counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (Customer, Meter, Product, Subscription, CreditEntitlement, Event)
    )


@pytest.fixture
def catalogue(api) -> dict:
    meter = send(
        api,
        "POST",
        "/api/meters",
        {
            "name": "Tokens",
            "event_name": "api.call",
            "measurement_unit": "tokens",
            "aggregation": {"type": "count"},
        },
    ).json()
    entitlement = send(
        api,
        "POST",
        "/api/credit-entitlements",
        {
            "name": "Credits",
            "unit": "credits",
            "precision": 2,
            "rollover_enabled": False,
            "overage_enabled": False,
        },
    ).json()
    product = send(
        api, "POST", "/api/products", {"name": "Plan", "tax_category": "saas", "price": PRICE}
    ).json()
    return {
        "meter": meter["id"],
        "entitlement": entitlement["id"],
        "product": product["product_id"],
    }


# --- query strings and paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/invoices?customer_id=%00m", "customer_id"),  # schemathesis
        ("/api/subscriptions?product_id=a%00b", "product_id"),  # schemathesis
        ("/api/events?meter_id=%00", "meter_id"),  # schemathesis
        ("/api/customers?email=%00", "email"),
    ],
)
def test_nul_in_a_query_parameter_is_refused_naming_it(api, path, field):
    assert_refused(send(api, "GET", path), 422, field)


@pytest.mark.parametrize(
    "path", ["/api/customers/%00", "/api/events/a%00b", "/api/meters/%00/unarchive"]
)
def test_nul_in_a_path_is_an_unknown_resource(api, path):
    assert_refused(send(api, "GET" if "unarchive" not in path else "POST", path), 404)


def test_a_page_past_any_offset_is_empty(api):
    # schemathesis: page_number * page_size beyond PostgreSQL's bigint OFFSET.
    response = send(api, "GET", "/api/meters?page_number=1149645548367051864670208&page_size=83")
    assert response.status_code == 200
    assert response.json() == {"items": []}


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"])
def test_a_query_time_outside_the_utc_range_is_refused(api, moment):
    assert_refused(send(api, "GET", f"/api/events?start={moment}"), 422, "start")


# --- JSON bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/customers",
            '{"email": "a@b.c", "name": "x", "metadata": {"k": "\\u0000"}}',
            "metadata.k",
        ),
        (
            "/api/customers",
            '{"email": "a@b.c", "name": "x", "metadata": {"k": "\\ud800"}}',
            "metadata.k",
        ),
        (
            "/api/customers",
            '{"email": "a@b.c", "name": "x", "metadata": {"\\ud800": 1}}',
            "metadata.\ud800",
        ),
        (
            "/api/meters",
            '{"name": "m", "event_name": "e", "measurement_unit": "u",'
            ' "aggregation": {"type": "sum", "key": "\\u0000"}}',
            "aggregation.key",
        ),
        (
            "/api/products",
            json.dumps(
                {
                    "name": "p",
                    "tax_category": "saas",
                    "price": {**PRICE, "meters": [{"meter_id": "\x00", "price_per_unit": "1"}]},
                }
            ),
            "price.meters[0].meter_id",
        ),
        (
            "/api/subscriptions",
            '{"customer": {"customer_id": "\\u0000"}, "product_id": "x", "quantity": 1}',
            "customer.customer_id",
        ),
    ],
)
def test_nul_and_lone_surrogates_anywhere_in_a_body_are_refused(api, path, body, field):
    before = counts()
    assert_refused(send(api, "POST", path, body), 422, field)
    assert counts() == before


def test_nesting_too_deep_for_the_parser_is_invalid_json(api):
    assert_refused(send(api, "POST", "/api/customers", "[" * 100_000), 400)


@pytest.mark.parametrize("number", ["1e999999", "1e20", "0.000000000000000000001"])
def test_metadata_numbers_must_be_storable(api, number):
    body = f'{{"email": "a@b.c", "name": "x", "metadata": {{"k": {number}}}}}'
    assert_refused(send(api, "POST", "/api/customers", body), 422, "metadata")
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    ("price", "field"),
    [
        ({"fixed_price": 10**23}, "price.fixed_price"),
        ({"subscription_period_count": 10**14}, "price.subscription_period_count"),
        (
            {"meters": [{"meter_id": "m", "price_per_unit": "1", "free_threshold": 10**23}]},
            "price.meters[0].free_threshold",
        ),
        (
            {"meters": [{"meter_id": "m", "price_per_unit": "1e999999999"}]},
            "price.meters[0].price_per_unit",
        ),
        (
            # 31 decimals: normalize() rounded this to 1 and let it pass the 12-decimal rule.
            {"meters": [{"meter_id": "m", "price_per_unit": "1.0000000000000000000000000000001"}]},
            "price.meters[0].price_per_unit",
        ),
    ],
)
def test_product_prices_must_be_storable(api, price, field):
    body = {"name": "p", "tax_category": "saas", "price": {**PRICE, **price}}
    assert_refused(send(api, "POST", "/api/products", body), 422, field)
    assert Product.objects.count() == 0


@pytest.mark.parametrize(
    ("link", "field"),
    [
        ({"credits_amount": "1e999999999"}, "credits_amount"),
        # 31 decimals on a precision-2 entitlement: normalize() rounded it to 1 and let it pass.
        ({"credits_amount": "1.0000000000000000000000000000001"}, "credits_amount"),
        ({"credits_amount": "1", "overage_limit": "1e999999"}, "overage_limit"),
        ({"credits_amount": "1", "expires_after_days": 2**31 - 1}, "expires_after_days"),
    ],
)
def test_credit_links_are_checked_exactly(api, catalogue, link, field):
    link = {"credit_entitlement_id": catalogue["entitlement"], **link}
    body = {"name": "p", "tax_category": "saas", "price": PRICE, "credit_entitlements": [link]}
    before = counts()
    assert_refused(send(api, "POST", "/api/products", body), 422, f"credit_entitlements[0].{field}")
    assert counts() == before


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"expires_after_days": 7745214649886}, "expires_after_days"),  # schemathesis
        ({"expires_after_days": 2**31 - 1}, "expires_after_days"),  # fits, but no date is that far
        (
            {"rollover_timeframe_count": 2**40, "rollover_timeframe_interval": "Year"},
            "rollover_timeframe_count",
        ),
        ({"max_rollover_count": 2**40}, "max_rollover_count"),
        (
            {"overage_enabled": True, "currency": "USD", "price_per_unit": "1e999999"},
            "price_per_unit",
        ),
    ],
)
def test_entitlement_settings_must_be_storable(api, settings, field):
    body = {
        "name": "n",
        "unit": "u",
        "precision": 2,
        "rollover_enabled": False,
        "overage_enabled": False,
        **settings,
    }
    assert_refused(send(api, "POST", "/api/credit-entitlements", body), 422, field)
    assert CreditEntitlement.objects.count() == 0


@pytest.mark.parametrize("body", ["null", "5", "[]"])
def test_an_entitlement_patch_that_is_not_an_object_is_refused(api, catalogue, body):
    # schemathesis: `null` met `"precision" in request.data`.
    path = f"/api/credit-entitlements/{catalogue['entitlement']}"
    assert_refused(send(api, "PATCH", path, body), 422)


@pytest.mark.parametrize(
    ("customer", "field"),
    [
        ({"email": "a@b.c", "name": "x" * 256}, "customer.name"),
        ({"email": "a@" + "b" * 260, "name": "x"}, "customer.email"),
        ({"email": "a@b.c", "name": "x", "phone_number": "1" * 33}, "customer.phone_number"),
    ],
)
def test_a_customer_made_with_a_subscription_must_fit_its_columns(api, catalogue, customer, field):
    body = {"customer": customer, "product_id": catalogue["product"], "quantity": 1}
    body["billing"] = {"country": "US"}  # required, as in Dodo's SDK
    before = counts()
    assert_refused(send(api, "POST", "/api/subscriptions", body), 422, field)
    assert counts() == before

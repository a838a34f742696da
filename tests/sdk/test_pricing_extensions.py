"""Products priced with tiers, packages and limits (extensions of Dodo's price) parse with the
SDK's strict client: retrieve, list and a subscription to them; create through the SDK too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from products import services
from tests.factories import make_customer
from tests.products.factories import make_meter

NOW = datetime(2026, 3, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def extended_product():
    calls = make_meter("Calls", "api.call", now=NOW)
    pages = make_meter("Pages", "page.view", now=NOW)
    return services.create_product(
        name="Tiered",
        now=NOW,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "payment_frequency_interval": "Month",
            "meters": [
                {
                    "meter_id": calls.id,
                    "tier_mode": "volume",
                    "tiers": [
                        {"up_to": "10000", "unit_price": "0.1", "flat_fee": 50},
                        {"up_to": None, "unit_price": "0.05"},
                    ],
                    "minimum_amount": 100,
                    "maximum_amount": 9000,
                },
                {
                    "meter_id": pages.id,
                    "price_per_unit": "200",
                    "package_size": "1000",
                    "package_rounding": "down",
                },
            ],
        },
    )


def test_products_with_extensions_parse_strictly(strict_in_process):
    product = extended_product()
    got = strict_in_process.products.retrieve(product.product_id)
    tiered, packaged = got.price.meters
    assert tiered.price_per_unit == "0"
    assert tiered.to_dict()["tiers"][1] == {"up_to": None, "unit_price": "0.05", "flat_fee": 0}
    assert tiered.to_dict()["maximum_amount"] == 9000
    assert packaged.to_dict()["package_size"] == "1000"
    [listed] = strict_in_process.products.list().items
    assert listed.product_id == product.product_id

    customer = make_customer()
    created = strict_in_process.subscriptions.create(
        billing={"country": "US"},
        customer={"customer_id": customer.customer_id},
        product_id=product.product_id,
        quantity=1,
    )
    subscription = strict_in_process.subscriptions.retrieve(created.subscription_id)
    assert subscription.meters[0].to_dict()["tier_mode"] == "volume"
    assert strict_in_process.subscriptions.list().items


def test_a_tiered_product_is_created_through_the_sdk(strict_in_process):
    meter = make_meter("Tokens", "tokens.used", now=NOW)
    product = strict_in_process.products.create(
        name="Graduated tokens",
        tax_category="saas",
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [
                {
                    "meter_id": meter.id,
                    "free_threshold": 100,
                    "tier_mode": "graduated",
                    "tiers": [
                        {"up_to": "1000", "unit_price": "0.1"},
                        {"up_to": None, "unit_price": "0.05"},
                    ],
                }  # type: ignore[typeddict-unknown-key]
            ],
        },
    )
    [shown] = product.price.meters
    assert shown.price_per_unit == "0"
    assert shown.to_dict()["tiers"][0] == {"up_to": "1000", "unit_price": "0.1", "flat_fee": 0}


def test_a_product_with_cycle_limits_parses_strictly(strict_in_process):
    meter = make_meter("Calls", "api.call", now=NOW)
    product = services.create_product(
        name="Capped",
        now=NOW,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "payment_frequency_interval": "Month",
            "minimum_amount": 100,
            "maximum_amount": 9000,
            "meters": [{"meter_id": meter.id, "price_per_unit": "1"}],
        },
    )
    got = strict_in_process.products.retrieve(product.product_id)
    assert got.price.to_dict()["maximum_amount"] == 9000
    assert got.price.to_dict()["minimum_amount"] == 100
    [listed] = strict_in_process.products.list().items
    assert listed.price_detail is not None
    assert listed.price_detail.to_dict()["maximum_amount"] == 9000

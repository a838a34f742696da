"""Answers the SDK's strict client used to reject, each checked on its own: subscription list
items without `discounts`, the credit cart in a product attachment's shape instead of the
customer's live balance, `payment_id: null` on create."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from credits.services import create_entitlement
from products import services
from tests.factories import make_customer
from tests.products.factories import make_meter

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def credits_product():
    entitlement = create_entitlement(
        name="Credits", unit="tokens", precision=0, rollover_enabled=False,
        overage_enabled=False, now=NOW,
    )  # fmt: skip
    meter = make_meter("Calls", "api.call", now=NOW)
    product = services.create_product(
        name="Plan",
        now=NOW,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 100,
            "payment_frequency_interval": "Month",
            "meters": [
                {
                    "meter_id": meter.id,
                    "credit_entitlement_id": entitlement.id,
                    "meter_units_per_credit": "1",
                }
            ],
        },
        credit_entitlements=[{"credit_entitlement_id": entitlement.id, "credits_amount": "40"}],
    )
    return entitlement, product


@pytest.mark.django_db(transaction=True)
def test_the_subscription_list_parses_strictly(strict):
    _, product = credits_product()
    services.create_subscription(
        customer=make_customer(), product=product, now=NOW, billing={"country": "US"}
    )
    [item] = strict.subscriptions.list().items  # raised APIResponseValidationError: discounts
    assert item.discounts == []


@pytest.mark.django_db(transaction=True)
def test_the_credit_cart_shows_the_customers_live_balance(strict):
    entitlement, product = credits_product()
    customer = make_customer()
    subscription = services.create_subscription(
        customer=customer, product=product, now=NOW, billing={"country": "US"}
    )
    strict.credit_entitlements.balances.create_ledger_entry(
        customer.customer_id, credit_entitlement_id=entitlement.id, entry_type="debit", amount="15"
    )
    [cart] = strict.subscriptions.retrieve(subscription.subscription_id).credit_entitlement_cart
    assert (cart.credit_entitlement_id, cart.unit, cart.product_id) == (
        entitlement.id,
        "tokens",
        product.product_id,
    )
    assert (cart.credits_amount, cart.remaining_balance, cart.overage_balance) == ("40", "25", "0")


@pytest.mark.django_db
def test_a_page_of_subscriptions_costs_the_same_queries_as_one(api):
    _, product = credits_product()

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/subscriptions", {"page_size": 100}).status_code == 200
        return len(queries.captured_queries)

    services.create_subscription(
        customer=make_customer(), product=product, now=NOW, billing={"country": "US"}
    )
    one = page_queries()
    for n in range(12):
        services.create_subscription(
            customer=make_customer(email=f"c{n}@example.com"),
            product=product,
            now=NOW,
            billing={"country": "US"},
        )
    assert page_queries() == one  # balances prefetched, never one query per subscription


@pytest.mark.django_db(transaction=True)
def test_create_answers_a_payment_id_string(strict):
    _, product = credits_product()
    customer = make_customer()
    created = strict.subscriptions.create(  # raised after creating it: payment_id was null
        billing={"country": "US"},
        customer={"customer_id": customer.customer_id},
        product_id=product.product_id,
        quantity=1,
    )
    assert created.payment_id == "pay_none"  # README: no payment is taken at the start
    assert created.payment_method_required is False
    assert created.customer.customer_id == customer.customer_id

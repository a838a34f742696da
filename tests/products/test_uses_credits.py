"""One rule says which products use credits (a meter billed in credits, or credits granted each
cycle): the billing cycle's claims (SQL), a batch's catalogue and `billing.uses_credits` (plan
changes) give the same answer for every kind of product."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from credits.models import ProductCreditEntitlement
from products import billing
from products.models import ProductMeter, Subscription
from tests.credits.factories import credit_product, make_entitlement
from tests.products.factories import make_meter, make_product, subscribe

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def test_every_reading_of_the_rule_agrees():
    meter = make_meter("Calls", "api.call", now=NOW)
    entitlement = make_entitlement(now=NOW)
    plain = make_product([(meter, "2", 0)], now=NOW, name="Plain")
    both = credit_product(entitlement, meter, credits_amount=100, now=NOW)
    grants_only = credit_product(entitlement, meter, credits_amount=100, now=NOW)
    ProductMeter.objects.filter(product=grants_only).update(
        credit_entitlement=None, meter_units_per_credit=None, price_per_unit="1"
    )
    meter_only = credit_product(entitlement, meter, credits_amount=100, now=NOW)
    ProductCreditEntitlement.objects.filter(product=meter_only).delete()
    expected = {plain: False, both: True, grants_only: True, meter_only: True}

    subscriptions = {product: subscribe(product, now=NOW) for product in expected}
    catalogue = billing._Catalogue.of(subscriptions.values())
    claimed = set(
        Subscription.objects.filter(billing._billed_in_credits()).values_list("pk", flat=True)
    )
    for product, uses in expected.items():
        subscription = subscriptions[product]
        assert billing.uses_credits(subscription) is uses, product.name
        assert catalogue.uses_credits(subscription) is uses, product.name
        assert (subscription.pk in claimed) is uses, product.name
        # Plan changes ask about a subscription not saved yet.
        assert billing.uses_credits(Subscription(product=product)) is uses

"""Credit entitlements attached to products, built through the services."""

from __future__ import annotations

from datetime import datetime

from credits import services
from credits.models import CreditBalance, CreditEntitlement
from products import services as product_services
from tests.factories import make_customer


def make_entitlement(*, now: datetime, **settings) -> CreditEntitlement:
    values = {
        "name": "API credits",
        "unit": "credits",
        "precision": 2,
        "rollover_enabled": False,
        "overage_enabled": False,
    }
    values.update(settings)
    return services.create_entitlement(now=now, **values)


def credit_product(entitlement, meter, *, credits_amount, now, free=0, per_credit="1", **link):
    """A weekly product granting `credits_amount` per cycle, billing `meter` in credits."""
    return product_services.create_product(
        name="Credits plan",
        now=now,
        credit_entitlements=[
            {"credit_entitlement_id": entitlement.id, "credits_amount": str(credits_amount), **link}
        ],
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Week",
            "meters": [
                {
                    "meter_id": meter.id,
                    "credit_entitlement_id": entitlement.id,
                    "meter_units_per_credit": per_credit,
                    "free_threshold": free,
                }
            ],
        },
    )


def subscribe(product, *, now):
    return product_services.create_subscription(customer=make_customer(), product=product, now=now)


def balance_of(entitlement, subscription) -> CreditBalance:
    return CreditBalance.objects.get(
        credit_entitlement=entitlement, customer_id=subscription.customer_id
    )

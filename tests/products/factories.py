"""Products, subscriptions and usage for billing tests, built through the services."""

from __future__ import annotations

from datetime import datetime, timedelta

from meters import services as meter_services
from meters.models import Meter
from products import services
from products.models import Customer, Product, Subscription
from tests.factories import ingest_events, make_customer


def make_meter(name: str, event_name: str, kind: str = "count", key=None, filter=None, *, now):
    return meter_services.create_meter(
        name=name,
        event_name=event_name,
        measurement_unit="units",
        aggregation={"type": kind, "key": key},
        filter=filter,
        now=now,
    )


def make_product(
    meters: list[tuple[Meter, str, int]],
    *,
    now: datetime,
    fixed_price: int = 0,
    interval: str = "Month",
    count: int = 1,
    currency: str = "USD",
    name: str = "Plan",
) -> Product:
    """`meters` holds (meter, price_per_unit as a decimal string in cents, free threshold)."""
    return services.create_product(
        name=name,
        now=now,
        price={
            "type": "usage_based_price",
            "currency": currency,
            "fixed_price": fixed_price,
            "payment_frequency_count": count,
            "payment_frequency_interval": interval,
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [
                {"meter_id": m.id, "price_per_unit": price, "free_threshold": free}
                for m, price, free in meters
            ],
        },
    )


def subscribe(product: Product, *, now: datetime, customer: Customer | None = None):
    customer = customer or make_customer()
    return services.create_subscription(customer=customer, product=product, now=now)


def send_usage(
    subscription: Subscription,
    event_name: str,
    metadata_list: list[dict],
    *,
    start: datetime,
    prefix: str,
    spacing: timedelta = timedelta(seconds=1),
) -> None:
    """Ingest one event per metadata dict, `spacing` apart from `start`, in batches of 1,000."""
    events = [
        {
            "event_id": f"{prefix}-{i}",
            "customer_id": subscription.customer_id,
            "event_name": event_name,
            "timestamp": (start + spacing * i).isoformat(),
            "metadata": metadata,
        }
        for i, metadata in enumerate(metadata_list)
    ]
    latest = start + spacing * len(events)
    for offset in range(0, len(events), 1000):
        ingest_events(events[offset : offset + 1000], now=latest)

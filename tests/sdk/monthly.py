"""The subscription the pause and billing-date tests bill by hand: a 31.00 monthly fee, API
calls at 0.02 each beyond 100 free per period, from 2026-01-01."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from products import services
from products.models import Subscription
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product

START = datetime(2026, 1, 1, tzinfo=UTC)


def monthly_subscription() -> Subscription:
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "2", 100)], fixed_price=3100, now=START)
    return services.create_subscription(
        customer=make_customer(), product=product, now=START, billing={"country": "US"}
    )


def send_calls(subscription: Subscription, count: int, at: datetime, prefix: str) -> None:
    """`count` API calls stamped `at`, ingested a second later."""
    events = [
        event(f"{prefix}{i}", subscription.customer_id, "api.call", timestamp=at)
        for i in range(count)
    ]
    ingest_events(events, now=at + timedelta(seconds=1))

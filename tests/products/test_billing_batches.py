"""Closing many subscriptions per transaction bills each one exactly as if it were alone.

Subscriptions in one batch differ in product, period window and interval, and one customer has
two of them; every invoice is checked against usage counted from the generated events here, with
the periods and the half-up rounding worked out independently of the billing code.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from products.billing import run_billing_cycle
from products.models import Invoice, LineKind
from tests.factories import ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe

START = datetime(2026, 3, 1, tzinfo=UTC)
NOW = START + timedelta(weeks=5, hours=1)
WEEK = timedelta(days=7)


def week_periods(anchor: datetime) -> list[tuple[datetime, datetime]]:
    starts = [anchor + WEEK * k for k in range(6)]
    return [(s, s + WEEK) for s in starts if s + WEEK <= NOW]


def month_periods(anchor: datetime) -> list[tuple[datetime, datetime]]:
    # Anchored on the 1st at midnight: each period is one calendar month.
    bounds = [anchor.replace(month=anchor.month + k) for k in range(3)]
    return [(s, e) for s, e in zip(bounds, bounds[1:], strict=False) if e <= NOW]


def cents(units: Decimal, price: str) -> int:
    return int((units * Decimal(price)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [1, 3, 200])
def test_each_invoice_of_a_batch_equals_its_own_usage(batch_size):
    calls = make_meter("Calls", "api.call", now=START)
    upload = make_meter("Upload", "upload", kind="sum", key="bytes", now=START)
    weekly = make_product(
        [(calls, "0.5", 3), (upload, "0.001", 100)], now=START, fixed_price=100, interval="Week"
    )
    monthly = make_product([(calls, "2", 0)], now=START, interval="Month", name="Monthly")

    shared, late, idle, other = (make_customer(name=n) for n in ("Shared", "Late", "Idle", "O"))
    plans = [  # (subscription, product's prices, its periods)
        (subscribe(weekly, now=START, customer=shared), weekly, week_periods(START)),
        (subscribe(monthly, now=START, customer=shared), monthly, month_periods(START)),
        (
            subscribe(weekly, now=START + timedelta(days=2, hours=5), customer=late),
            weekly,
            week_periods(START + timedelta(days=2, hours=5)),
        ),
        (subscribe(weekly, now=START, customer=idle), weekly, week_periods(START)),
        (subscribe(monthly, now=START, customer=other), monthly, month_periods(START)),
    ]

    rng = random.Random(batch_size)
    events = []
    for customer in (shared, late, other):
        for _ in range(rng.randint(40, 80)):
            moment = START + timedelta(seconds=rng.randint(0, int((NOW - START).total_seconds())))
            if rng.random() < 0.6:
                events.append(("api.call", customer.customer_id, moment, {}))
            else:
                bytes_ = Decimal(rng.randint(0, 5000)) / 10
                events.append(("upload", customer.customer_id, moment, {"bytes": bytes_}))
    ingest_events(
        [
            {
                "event_id": f"e{n}",
                "customer_id": customer_id,
                "event_name": name,
                "timestamp": moment.isoformat(),
                # one decimal place: the JSON number is exactly the Decimal
                "metadata": {k: float(v) for k, v in metadata.items()},
            }
            for n, (name, customer_id, moment, metadata) in enumerate(events)
        ],
        now=NOW,
    )

    run_billing_cycle(now=NOW, batch_size=batch_size)

    prices = {
        weekly.product_id: [(calls.id, "0.5", 3), (upload.id, "0.001", 100)],
        monthly.product_id: [(calls.id, "2", 0)],
    }
    for subscription, product, periods in plans:
        invoices = list(subscription.invoices.order_by("period_index"))
        assert [(i.period_start, i.period_end) for i in invoices] == periods
        for invoice, (start, end) in zip(invoices, periods, strict=True):
            mine = [
                (name, metadata)
                for name, customer_id, moment, metadata in events
                if customer_id == subscription.customer_id and start <= moment < end
            ]
            consumed = {
                calls.id: Decimal(sum(1 for name, _ in mine if name == "api.call")),
                upload.id: sum(
                    (m["bytes"] for name, m in mine if name == "upload"), start=Decimal(0)
                ),
            }
            lines = {
                line.meter_id: line for line in invoice.lines.all() if line.kind == LineKind.USAGE
            }
            expected_total = product.fixed_price_minor
            for meter_id, price, free in prices[product.product_id]:
                chargeable = max(consumed[meter_id] - free, Decimal(0))
                line = lines[meter_id]
                assert line.consumed_units == consumed[meter_id]
                assert line.chargeable_units == chargeable
                assert line.amount_minor == cents(chargeable, price)
                expected_total += cents(chargeable, price)
            assert invoice.total_minor == expected_total
    assert Invoice.objects.count() == sum(len(periods) for _, _, periods in plans)

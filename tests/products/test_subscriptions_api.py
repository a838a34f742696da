"""Subscriptions API: create, billing dates, cancel at the next billing date, usage history."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest

from products.billing import run_billing_cycle
from products.models import Invoice, Subscription
from tests.factories import make_customer
from tests.products.factories import make_meter, make_product, send_usage, subscribe

START = datetime(2024, 1, 31, 12, tzinfo=UTC)  # leap year: Jan 31 -> Feb 29 -> Mar 31 -> Apr 30
ENDS = [datetime(2024, m, d, 12, tzinfo=UTC) for m, d in ((2, 29), (3, 31), (4, 30))]
pytestmark = pytest.mark.django_db


def test_create_validates_quantity_product_and_customer(api):
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product([(meter, "1", 0)], now=START)
    customer = make_customer()
    base = {"billing": {"country": "US"}, "product_id": product.pk, "quantity": 1}

    two = api.post(
        "/api/subscriptions",
        {**base, "quantity": 2, "customer": {"customer_id": customer.pk}},
        format="json",
    )
    assert two.status_code == 422
    assert two.json()["code"] == "INVALID_QUANTITY"
    missing = api.post(
        "/api/subscriptions", {**base, "customer": {"customer_id": "cus_nope"}}, format="json"
    )
    assert missing.status_code == 404
    assert Subscription.objects.count() == 0

    by_email = api.post(
        "/api/subscriptions",
        {**base, "customer": {"email": "new@example.com", "name": "New"}},
        format="json",
    )
    assert by_email.status_code == 200
    sub = api.get(f"/api/subscriptions/{by_email.json()['subscription_id']}").json()
    assert sub["customer"]["email"] == "new@example.com"
    start = datetime.fromisoformat(sub["previous_billing_date"])
    end = datetime.fromisoformat(sub["next_billing_date"])
    year, month = (start.year, start.month + 1) if start.month < 12 else (start.year + 1, 1)
    day = min(start.day, calendar.monthrange(year, month)[1])
    assert end == start.replace(year=year, month=month, day=day)  # one month later, clamped
    assert sub["status"] == "active"
    assert [m["meter_id"] for m in sub["meters"]] == [meter.id]


def test_usage_history_spans_three_periods_with_month_end_clamping(api):
    calls = make_meter("Calls", "api.call", now=START)
    product = make_product([(calls, "2", 5)], now=START)
    subscription = subscribe(product, now=START)
    counts = [7, 3, 12]
    starts = [START, *ENDS[:2]]
    for n, (count, start) in enumerate(zip(counts, starts, strict=True)):
        send_usage(subscription, "api.call", [{}] * count, start=start, prefix=f"p{n}")
    run_billing_cycle(now=ENDS[2])  # closes all three periods at once (catching up)

    assert Invoice.objects.filter(subscription=subscription).count() == 3
    items = api.get(f"/api/subscriptions/{subscription.pk}/usage-history").json()["items"]
    # newest first: the open period, then the three invoiced ones
    periods = [(i["start_date"], i["end_date"]) for i in items]
    bounds = [START, *ENDS, datetime(2024, 5, 31, 12, tzinfo=UTC)]
    expected = [(bounds[k], bounds[k + 1]) for k in range(4)][::-1]
    assert [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in periods] == expected
    invoiced = items[1:][::-1]
    for item, count in zip(invoiced, counts, strict=True):
        [meter] = item["meters"]
        assert meter["consumed_units"] == str(count)
        assert meter["chargeable_units"] == str(max(count - 5, 0))
        assert meter["total_price"] == max(count - 5, 0) * 2
        assert item["invoice_id"].startswith("inv_")

    one_page = api.get(
        f"/api/subscriptions/{subscription.pk}/usage-history",
        {"start_date": "2024-03-01T00:00:00Z", "end_date": "2024-03-05T00:00:00Z"},
    ).json()["items"]
    assert [(i["start_date"][:10], i["end_date"][:10]) for i in one_page] == [
        ("2024-02-29", "2024-03-31")
    ]


def test_cancel_at_next_billing_date_issues_the_last_invoice_then_stops(api):
    calls = make_meter("Calls", "api.call", now=START)
    product = make_product([(calls, "1", 0)], now=START, fixed_price=300, interval="Week")
    subscription = subscribe(product, now=START)
    response = api.patch(
        f"/api/subscriptions/{subscription.pk}",
        {"cancel_at_next_billing_date": True},
        format="json",
    )
    assert response.json()["cancel_at_next_billing_date"] is True
    send_usage(subscription, "api.call", [{}] * 4, start=START, prefix="c")

    run_billing_cycle(now=START + timedelta(weeks=5))
    [invoice] = Invoice.objects.filter(subscription=subscription)
    assert invoice.total_minor == 300 + 4
    body = api.get(f"/api/subscriptions/{subscription.pk}").json()
    assert body["status"] == "cancelled"
    assert datetime.fromisoformat(body["cancelled_at"]) == START + timedelta(weeks=1)
    history = api.get(f"/api/subscriptions/{subscription.pk}/usage-history").json()["items"]
    assert len(history) == 1  # no open period after cancellation
    refused = api.patch(
        f"/api/subscriptions/{subscription.pk}", {"status": "paused"}, format="json"
    )
    assert refused.status_code == 422

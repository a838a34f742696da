"""invoice.finalized, invoice.paid and invoice.voided (extension types): one event per
transition, its data the invoice as the API shows it, and nothing for a refused transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_site.errors import Conflict
from billing_site.jsonutil import exact_loads
from products import billing, invoices
from tests.products.factories import make_meter, make_product, send_usage, subscribe
from tests.webhooks.factories import make_endpoint
from webhooks.models import WebhookEvent

START = datetime(2026, 3, 2, tzinfo=UTC)
WEEK = timedelta(days=7)
pytestmark = pytest.mark.django_db


def bodies(event_type: str) -> list[dict]:
    return [
        exact_loads(e.body)
        for e in WebhookEvent.objects.filter(event_type=event_type).order_by("id")
    ]


def test_each_transition_announces_the_invoice_once(api, settings):
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    make_endpoint("http://127.0.0.1:9/hooks")  # wants every type; never sent in this test
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product([(meter, "2", 3)], now=START, fixed_price=100, interval="Week")
    subscription = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * 5, start=START, prefix="w")
    [draft] = billing.run_billing_cycle(now=START + WEEK)
    assert bodies("invoice.finalized") == []

    billing.run_billing_cycle(now=START + WEEK + timedelta(hours=1))
    [finalized] = bodies("invoice.finalized")
    assert finalized["data"] == api.get(f"/api/invoices/{draft.pk}").json()
    assert finalized["data"]["number"] == "INV-2026-000001"

    invoices.mark_paid(draft.pk, payment_reference="ch_1", now=START + WEEK + timedelta(hours=2))
    [paid] = bodies("invoice.paid")
    assert (paid["data"]["status"], paid["data"]["payment_reference"]) == ("paid", "ch_1")
    with pytest.raises(Conflict):
        invoices.void(draft.pk, reason="too late", now=START + WEEK + timedelta(hours=3))
    assert bodies("invoice.voided") == []  # refused: nothing announced


def test_voiding_announces_invoice_voided(settings):
    make_endpoint("http://127.0.0.1:9/hooks")
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product([(meter, "2", 3)], now=START, fixed_price=100, interval="Week")
    subscription = subscribe(product, now=START)
    [invoice] = billing.run_billing_cycle(now=START + WEEK)
    invoices.void(invoice.pk, reason="duplicate", now=START + WEEK)
    [voided] = bodies("invoice.voided")
    assert voided["type"] == "invoice.voided"
    assert (voided["data"]["invoice_id"], voided["data"]["void_reason"]) == (
        invoice.pk,
        "duplicate",
    )
    assert subscription.invoices.count() == 1

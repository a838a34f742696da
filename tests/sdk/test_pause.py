"""Pause and resume through the SDK's strict client (PATCH status "paused" / "active"): the
pause closes the period with a final invoice, nothing is billed while paused (its events are
accepted, never billed), the resume starts a new cycle at its moment. Amounts by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import dodopayments
import pytest
from django.utils import timezone

from audit.models import AuditEntry
from products.billing import run_billing_cycle
from products.models import Invoice, Subscription
from tests.products.factories import make_product
from tests.sdk.monthly import START, monthly_subscription, send_calls
from tests.webhooks.factories import make_endpoint
from webhooks.models import WebhookEvent

PAUSE = datetime(2026, 1, 11, 0, 0, 7, tzinfo=UTC)
RESUME = datetime(2026, 1, 20, tzinfo=UTC)
USED = Fraction(864007, 2678400)  # (PAUSE - START) / 31 days, in seconds
pytestmark = pytest.mark.django_db


class Clock:
    now = PAUSE


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: Clock.now)
    Clock.now = PAUSE
    return Clock


@pytest.fixture
def subscription():
    return monthly_subscription()


def test_pausing_closes_the_period_and_the_resume_starts_a_new_one(
    strict_in_process, clock, subscription
):
    make_endpoint("https://hooks.example/pause", "subscription.paused", "subscription.active")
    send_calls(subscription, 150, PAUSE - timedelta(hours=1), "before-")
    paused = strict_in_process.subscriptions.update(subscription.pk, status="paused")
    assert paused.status == "paused"
    [invoice] = Invoice.objects.all()
    assert (invoice.period_start, invoice.period_end) == (START, PAUSE)
    fee = int(3100 * USED + Fraction(1, 2))  # 1000
    assert invoice.total_minor == fee + (150 - int(100 * USED)) * 2  # 1000 + 118 x 2
    assert invoice.status == "issued"
    [hook] = WebhookEvent.objects.filter(event_type="subscription.paused")
    assert json.loads(hook.body)["data"]["status"] == "paused"
    # Pausing again changes nothing; nothing is refused while paused, nothing billed.
    assert strict_in_process.subscriptions.update(subscription.pk, status="paused").status == (
        "paused"
    )
    send_calls(subscription, 100, PAUSE + timedelta(days=2), "paused-")
    assert run_billing_cycle(now=datetime(2026, 2, 5, tzinfo=UTC)) == []
    with pytest.raises(dodopayments.ConflictError):
        strict_in_process.subscriptions.change_plan(
            subscription.pk,
            product_id=subscription.product_id,
            quantity=1,
            proration_billing_mode="do_not_bill",
        )

    clock.now = RESUME
    resumed = strict_in_process.subscriptions.update(subscription.pk, status="active")
    assert (resumed.status, resumed.previous_billing_date, resumed.next_billing_date) == (
        "active",
        RESUME,
        datetime(2026, 2, 20, tzinfo=UTC),
    )
    assert WebhookEvent.objects.filter(event_type="subscription.active").count() == 1
    send_calls(subscription, 170, RESUME + timedelta(days=5), "after-")
    [renewal] = run_billing_cycle(now=datetime(2026, 2, 20, tzinfo=UTC))
    assert (renewal.period_start, renewal.period_end) == (RESUME, datetime(2026, 2, 20, tzinfo=UTC))
    # The full fee and threshold; the 100 events sent while paused are on no invoice.
    assert renewal.total_minor == 3100 + (170 - 100) * 2
    actions = AuditEntry.objects.filter(object_id=subscription.pk).values_list("action", flat=True)
    assert {"paused", "resumed"} <= set(actions)


def test_a_paused_subscription_can_be_cancelled_with_no_further_invoice(
    strict_in_process, clock, subscription
):
    strict_in_process.subscriptions.update(subscription.pk, status="paused")
    clock.now = RESUME
    cancelled = strict_in_process.subscriptions.update(
        subscription.pk, status="cancelled", cancel_reason="cancelled_by_customer"
    )
    assert (cancelled.status, cancelled.cancelled_at) == ("cancelled", RESUME)
    assert Invoice.objects.count() == 1  # the pause's
    with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
        strict_in_process.subscriptions.update(subscription.pk, status="paused")
    assert [e["field"] for e in refused.value.body["errors"]] == ["status"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"status": "paused", "metadata": {"a": "b"}}, ["metadata"]),
        (
            {"status": "paused", "cancel_at_next_billing_date": None},
            ["cancel_at_next_billing_date"],
        ),
        ({"pause": True}, ["pause"]),
        ({"pause": None}, ["pause"]),
        ({"status": "paused", "next_billing_date": "2026-01-25T00:00:00Z"}, ["next_billing_date"]),
        ({"status": "expired"}, ["status"]),
    ],
)
def test_bad_pauses_are_a_422_naming_the_field_and_change_nothing(
    strict_in_process, clock, subscription, body, fields
):
    with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
        strict_in_process.subscriptions.update(subscription.pk, **body)
    assert [e["field"] for e in refused.value.body["errors"]] == fields
    assert Subscription.objects.get(pk=subscription.pk).status == "active"
    assert not Invoice.objects.exists()


def test_resuming_an_active_subscription_is_nothing_and_a_scheduled_change_applies_at_resume(
    strict_in_process, clock, subscription
):
    assert strict_in_process.subscriptions.update(subscription.pk, status="active").status == (
        "active"
    )
    pro = make_product([], fixed_price=6000, interval="Week", now=START, name="Pro")
    strict_in_process.subscriptions.change_plan(
        subscription.pk,
        product_id=pro.pk,
        quantity=2,
        proration_billing_mode="prorated_immediately",
        effective_at="next_billing_date",
    )
    strict_in_process.subscriptions.update(subscription.pk, status="paused")
    clock.now = RESUME
    resumed = strict_in_process.subscriptions.update(subscription.pk, status="active")
    assert (resumed.product_id, resumed.quantity) == (pro.pk, 2)
    assert resumed.next_billing_date == RESUME + timedelta(days=7)
    assert resumed.scheduled_change is None

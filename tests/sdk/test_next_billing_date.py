"""Moving the billing date through the SDK's strict client (PATCH `next_billing_date`): the
current period becomes [its start, the new date), is invoiced there in full (no proration, as
Dodo), and the next periods are counted from the new date. Amounts by hand: a 31.00 monthly
fee, API calls at 0.02 each beyond 100 free per period."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import dodopayments
import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEntry
from products.billing import run_billing_cycle
from products.models import Invoice, Subscription
from tests.products.factories import make_product
from tests.sdk.monthly import START, monthly_subscription, send_calls

NOW = datetime(2026, 1, 11, tzinfo=UTC)
pytestmark = pytest.mark.django_db


class Clock:
    now = NOW


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: Clock.now)
    Clock.now = NOW
    return Clock


@pytest.fixture
def subscription():
    return monthly_subscription()


def test_a_later_date_makes_one_longer_period_billed_in_full_at_the_new_date(
    strict_in_process, clock, subscription
):
    send_calls(subscription, 150, datetime(2026, 1, 10, tzinfo=UTC), "jan-")
    moved = strict_in_process.subscriptions.update(
        subscription.pk, next_billing_date=datetime(2026, 2, 15, tzinfo=UTC)
    )
    assert (moved.previous_billing_date, moved.next_billing_date) == (
        START,
        datetime(2026, 2, 15, tzinfo=UTC),
    )
    [entry] = AuditEntry.objects.filter(object_id=subscription.pk, action="updated")
    assert entry.before["current_period_end"] == "2026-02-01T00:00:00+00:00"
    assert entry.after["current_period_end"] == "2026-02-15T00:00:00+00:00"
    # The old billing date passes with nothing billed; usage after it is the same period's.
    assert run_billing_cycle(now=datetime(2026, 2, 2, tzinfo=UTC)) == []
    send_calls(subscription, 80, datetime(2026, 2, 5, tzinfo=UTC), "feb-")
    send_calls(subscription, 30, datetime(2026, 2, 15, tzinfo=UTC), "new-")  # at the new date: next
    [invoice] = run_billing_cycle(now=datetime(2026, 2, 15, tzinfo=UTC))
    assert (invoice.period_start, invoice.period_end) == (START, datetime(2026, 2, 15, tzinfo=UTC))
    assert invoice.total_minor == 3100 + (150 + 80 - 100) * 2  # full fee, one free threshold
    # The next period runs one interval from the new date.
    renewed = strict_in_process.subscriptions.retrieve(subscription.pk)
    assert (renewed.previous_billing_date, renewed.next_billing_date) == (
        datetime(2026, 2, 15, tzinfo=UTC),
        datetime(2026, 3, 15, tzinfo=UTC),
    )
    send_calls(subscription, 120, datetime(2026, 3, 1, tzinfo=UTC), "mar-")
    [following] = run_billing_cycle(now=datetime(2026, 3, 15, tzinfo=UTC))
    assert (following.period_start, following.period_end) == (
        datetime(2026, 2, 15, tzinfo=UTC),
        datetime(2026, 3, 15, tzinfo=UTC),
    )
    assert following.total_minor == 3100 + (30 + 120 - 100) * 2


def test_an_earlier_date_closes_the_period_there_with_bill_as_of(
    strict_in_process, clock, subscription
):
    send_calls(subscription, 150, datetime(2026, 1, 10, tzinfo=UTC), "early-")
    moved = strict_in_process.subscriptions.update(
        subscription.pk, next_billing_date="2026-01-20T00:00:00Z", metadata={"moved": "yes"}
    )
    assert moved.next_billing_date == datetime(2026, 1, 20, tzinfo=UTC)
    assert moved.metadata == {"moved": "yes"}
    send_calls(subscription, 40, datetime(2026, 1, 19, 23, 59, 59, tzinfo=UTC), "before-")
    send_calls(subscription, 60, datetime(2026, 1, 20, tzinfo=UTC), "after-")
    call_command("bill", as_of="2026-01-19T23:59:59Z", stdout=StringIO())
    assert not Invoice.objects.exists()
    call_command("bill", as_of="2026-01-20T00:00:00Z", stdout=StringIO())
    [invoice] = Invoice.objects.all()
    assert (invoice.period_start, invoice.period_end) == (START, datetime(2026, 1, 20, tzinfo=UTC))
    assert invoice.total_minor == 3100 + (150 + 40 - 100) * 2  # not prorated
    call_command("bill", as_of="2026-02-20T00:00:00Z", stdout=StringIO())
    second = Invoice.objects.exclude(pk=invoice.pk).get()
    assert (second.period_start, second.period_end) == (
        datetime(2026, 1, 20, tzinfo=UTC),
        datetime(2026, 2, 20, tzinfo=UTC),
    )
    assert second.total_minor == 3100  # 60 calls, within the 100 free


def test_a_scheduled_cancellation_takes_effect_at_the_new_date(
    strict_in_process, clock, subscription
):
    strict_in_process.subscriptions.update(
        subscription.pk, cancel_at_next_billing_date=True, next_billing_date="2026-01-25T00:00:00Z"
    )
    [invoice] = run_billing_cycle(now=datetime(2026, 1, 25, tzinfo=UTC))
    assert invoice.period_end == datetime(2026, 1, 25, tzinfo=UTC)
    assert invoice.total_minor == 3100
    cancelled = Subscription.objects.get(pk=subscription.pk)
    assert (cancelled.status, cancelled.cancelled_at) == (
        "cancelled",
        datetime(2026, 1, 25, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-10T23:59:59Z",  # in the past (after the period's start)
        "2025-12-31T00:00:00Z",  # before the period's start
        "2026-01-11T00:00:00Z",  # now
        "next tuesday",
        "2026-13-01T00:00:00Z",
    ],
)
def test_bad_dates_are_a_422_naming_the_field_and_change_nothing(
    strict_in_process, clock, subscription, value
):
    with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
        strict_in_process.subscriptions.update(
            subscription.pk, next_billing_date=value, metadata={"a": "b"}
        )
    assert [e["field"] for e in refused.value.body["errors"]] == ["next_billing_date"]
    unchanged = Subscription.objects.get(pk=subscription.pk)
    assert (unchanged.current_period_end, unchanged.cycle_anchor, unchanged.metadata) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        None,
        {},
    )
    assert not AuditEntry.objects.filter(object_id=subscription.pk).exists()


def test_a_paused_subscription_is_refused_with_a_409(strict_in_process, clock, subscription):
    strict_in_process.subscriptions.update(subscription.pk, status="paused")
    with pytest.raises(dodopayments.ConflictError):
        strict_in_process.subscriptions.update(
            subscription.pk, next_billing_date="2026-01-25T00:00:00Z"
        )
    assert Subscription.objects.get(pk=subscription.pk).cycle_anchor is None


def test_a_plan_change_keeping_the_cycle_is_refused_in_a_moved_period(
    strict_in_process, clock, subscription
):
    strict_in_process.subscriptions.update(
        subscription.pk, next_billing_date="2026-01-25T00:00:00Z"
    )
    with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
        strict_in_process.subscriptions.change_plan(
            subscription.pk,
            product_id=subscription.product_id,
            quantity=1,
            proration_billing_mode="prorated_immediately_keep_cycle",
        )
    assert [e["field"] for e in refused.value.body["errors"]] == ["proration_billing_mode"]
    assert not Invoice.objects.exists()


def test_a_plan_change_now_in_a_moved_period_prorates_over_the_moved_period(
    strict_in_process, clock, subscription
):
    calls = subscription.product.product_meters.get().meter
    other = make_product([(calls, "3", 0)], fixed_price=1000, now=START, name="Other")
    strict_in_process.subscriptions.update(
        subscription.pk, next_billing_date="2026-02-15T00:00:00Z"
    )
    send_calls(subscription, 150, datetime(2026, 1, 10, tzinfo=UTC), "jan-")
    strict_in_process.subscriptions.change_plan(
        subscription.pk,
        product_id=other.pk,
        quantity=1,
        proration_billing_mode="prorated_immediately",
    )
    [invoice] = Invoice.objects.all()
    assert (invoice.period_start, invoice.period_end) == (START, NOW)
    # 10 of the moved period's 45 days: fee 3100 x 10/45 = 688.9 -> 689, 100 x 10/45 -> 22 free.
    assert invoice.total_minor == 689 + (150 - 22) * 2
    changed = strict_in_process.subscriptions.retrieve(subscription.pk)
    assert (changed.previous_billing_date, changed.next_billing_date) == (
        NOW,
        datetime(2026, 2, 11, tzinfo=UTC),
    )

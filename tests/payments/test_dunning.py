"""A card declined on every charge: the first failure starts dunning, retries follow on
DUNNING_RETRY_DAYS (1, 3, 5 days after it), the last failure puts the subscription on hold (no
period closes meanwhile); a new card saved then retries at once, and its success pays the
invoice and makes the subscription active again, each step announced by Dodo's webhooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from products import billing, payments
from products.models import (
    Dunning,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.payments.fake_stripe import (
    DECLINED_ON_CHARGE,
    DECLINED_WHEN_SAVED,
    GOOD_CARD,
    event,
    signed,
)
from tests.payments.helpers import START, WEEK, close_first_week, save_card, weekly_subscription
from tests.payments.sdk_shapes import event_types, payment_events
from tests.webhooks.factories import make_endpoint

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def attempts(invoice: Invoice) -> list[tuple]:
    return list(
        Payment.objects.filter(invoice=invoice)
        .order_by("retry_attempt")
        .values_list("retry_attempt", "status", "due_at")
    )


def test_declines_run_the_retry_schedule_then_hold_then_a_new_card_recovers(fake_stripe, api):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription, DECLINED_ON_CHARGE)
    make_endpoint("https://hooks.example.com/billing")
    invoice = close_first_week(subscription)
    failed_at = START + WEEK

    payments.collect_due(now=failed_at)
    first = Payment.objects.get(invoice=invoice, retry_attempt=0)
    assert (first.status, first.error_code) == (PaymentStatus.FAILED, "card_declined")
    assert first.provider_payment_id  # the declined PaymentIntent, found through its charge
    assert Dunning.objects.get(invoice=invoice).status == "recovering"
    assert event_types() == ["payment.failed", "dunning.started"]

    # Retries 1, 3 and 5 days after the first failure, and not a moment before.
    for retry, days in enumerate([1, 3, 5], start=1):
        assert payments.collect_due(now=failed_at + days * DAY - timedelta(seconds=1)) == 0
        assert attempts(invoice)[-1] == (retry, "scheduled", failed_at + days * DAY)
        assert payments.collect_due(now=failed_at + days * DAY) == 1
        assert attempts(invoice)[retry][1] == "failed"
    assert len(attempts(invoice)) == 4  # no fifth attempt is scheduled
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ON_HOLD
    assert Dunning.objects.get(invoice=invoice).status == "exhausted"
    assert event_types() == ["payment.failed", "dunning.started"] + ["payment.failed"] * 3 + [
        "subscription.on_hold"
    ]
    assert AuditEntry.objects.filter(
        object_id=subscription.subscription_id, action="put_on_hold"
    ).exists()
    # Four declined PaymentIntents at the fake, one per attempt, none succeeded.
    mine = [i for i in fake_stripe.payment_intents() if i["metadata"]["invoice_id"] == invoice.pk]
    assert sorted(i["metadata"]["idempotency_key"] for i in mine) == [
        f"{invoice.invoice_id}-attempt-{n}" for n in range(4)
    ]
    assert fake_stripe.succeeded_charges_of(invoice.invoice_id) == []

    # On hold, the next week does not close.
    assert billing.run_billing_cycle(now=START + 2 * WEEK + DAY) == []

    # The customer saves a new card. localstripe sends no setup_intent.succeeded webhook, so
    # the test signs one with the webhook secret, from the fake's own SetupIntent.
    session = save_card(fake_stripe, subscription, GOOD_CARD)
    setup_intent = fake_stripe.setup_intent(session["setup_intent_id"])
    assert setup_intent["status"] == "succeeded"
    body, signature = signed(event("evt_setup_1", "setup_intent.succeeded", setup_intent))
    answer = api.post(
        "/api/providers/stripe/webhook",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )
    assert answer.status_code == 200, answer.content
    retry = Payment.objects.get(invoice=invoice, retry_attempt=4)
    assert retry.status == PaymentStatus.SCHEDULED

    payments.collect_due(now=timezone.now())
    retry.refresh_from_db()
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert (retry.status, retry.card_last_four) == (PaymentStatus.SUCCEEDED, "4242")
    assert invoice.status == InvoiceStatus.PAID
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert Dunning.objects.get(invoice=invoice).status == "recovered"
    assert event_types()[6:] == ["payment.succeeded", "dunning.recovered", "subscription.active"]
    [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
    assert charged["amount"] == invoice.total_minor
    # Every payload carries the invoice and the payment.
    for body in payment_events():
        data = body["data"]
        assert data["invoice"]["invoice_id"] == invoice.invoice_id
        assert "payment" in data or data.get("payment_id")

    # Active again, the missed week closes on the next run.
    [second] = billing.run_billing_cycle(now=START + 2 * WEEK + DAY)
    assert second.period_index == 1
    assert Subscription.objects.get().period_index == 2


def test_a_card_declined_when_saved_leaves_no_method_and_the_charge_fails(fake_stripe):
    subscription = weekly_subscription()
    session = payments.payment_method_session(subscription.customer_id, now=START)
    assert fake_stripe.confirm_setup(session, DECLINED_WHEN_SAVED).status_code == 402
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    first = Payment.objects.get(invoice=invoice, retry_attempt=0)
    assert (first.status, first.error_code) == (PaymentStatus.FAILED, "no_payment_method")
    assert fake_stripe.payment_intents() == []
    assert Dunning.objects.get(invoice=invoice).status == "recovering"


def test_staff_retry_now_moves_the_scheduled_retry_to_now(fake_stripe):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription, DECLINED_ON_CHARGE)
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    retried = payments.retry_now(invoice.invoice_id, now=START + WEEK + timedelta(hours=2))
    assert (retried.retry_attempt, retried.due_at) == (1, START + WEEK + timedelta(hours=2))
    assert AuditEntry.objects.filter(object_id=invoice.invoice_id, action="payment_retried")
    payments.collect_due(now=START + WEEK + timedelta(hours=2))
    # It failed again: the next retry keeps its place in the schedule (3 days after the first).
    assert attempts(invoice)[-1] == (2, "scheduled", START + WEEK + 3 * DAY)

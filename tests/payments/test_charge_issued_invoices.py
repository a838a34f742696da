"""Finalize -> charged -> paid, end to end against the fake Stripe: the billing transaction
writes a scheduled payment, a worker charges it after commit off-session with the saved card
and an idempotency key from the invoice, and the invoice is paid by mark_paid's rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from audit.models import AuditEntry
from products import invoices, payments
from products.models import Invoice, InvoiceStatus, Payment, PaymentStatus, ProviderCustomer
from tests.payments.helpers import (
    START,
    WEEK,
    close_first_week,
    expected_total,
    save_card,
    weekly_subscription,
)
from tests.webhooks.factories import make_endpoint
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_an_issued_invoice_is_charged_once_with_the_saved_card_and_marked_paid(fake_stripe):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    make_endpoint("https://hooks.example.com/billing")

    invoice = close_first_week(subscription)
    [payment] = Payment.objects.filter(invoice=invoice)
    assert (payment.status, payment.retry_attempt) == (PaymentStatus.SCHEDULED, 0)
    assert fake_stripe.payment_intents() == []  # nothing is charged inside the billing run

    assert payments.collect_due(now=START + WEEK) == 1

    invoice.refresh_from_db()
    payment.refresh_from_db()
    [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
    assert charged["amount"] == invoice.total_minor == expected_total()
    assert charged["currency"] == "usd"
    assert charged["customer"] == ProviderCustomer.objects.get().provider_customer_id
    assert charged["metadata"]["idempotency_key"] == f"{invoice.invoice_id}-attempt-0"
    assert (payment.status, payment.provider_payment_id) == ("succeeded", charged["id"])
    assert payment.card_last_four == "4242"
    assert (invoice.status, invoice.payment_reference) == (InvoiceStatus.PAID, charged["id"])
    assert AuditEntry.objects.filter(object_id=invoice.invoice_id, action="paid").count() == 1
    types = list(WebhookEvent.objects.values_list("event_type", flat=True))
    assert types.count("payment.succeeded") == 1 and types.count("invoice.paid") == 1

    # Collecting again charges nothing more.
    assert payments.collect_due(now=START + WEEK + timedelta(days=30)) == 0
    assert len(fake_stripe.payment_intents()) == 1


def test_a_draft_is_charged_when_it_is_finalized_not_before(fake_stripe):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    with override_settings(BILLING_GRACE_PERIOD_MINUTES=60):
        draft = close_first_week(subscription)
        assert draft.status == InvoiceStatus.DRAFT
        assert not Payment.objects.exists()
        invoices.finalize(draft.invoice_id, now=START + WEEK + timedelta(minutes=5))
    payments.collect_due(now=START + WEEK + timedelta(minutes=5))
    assert Invoice.objects.get().status == InvoiceStatus.PAID
    assert len(fake_stripe.succeeded_charges_of(draft.invoice_id)) == 1


def test_a_zero_total_invoice_is_paid_without_a_charge(fake_stripe):
    subscription = weekly_subscription(fee=0, calls=2)  # all calls inside the free ones
    invoice = close_first_week(subscription)
    assert invoice.total_minor == 0
    payments.collect_due(now=START + WEEK)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert fake_stripe.payment_intents() == []
    assert not ProviderCustomer.objects.exists()  # no Stripe customer was needed


def test_credit_notes_are_not_charged(fake_stripe):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    note = invoices.credit_note(invoice.invoice_id, reason="goodwill", now=START + 2 * WEEK)
    assert not Payment.objects.filter(invoice=note).exists()


def test_a_payment_of_an_invoice_voided_before_its_turn_is_cancelled_uncharged(fake_stripe):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    invoice = close_first_week(subscription)
    invoices.void(invoice.invoice_id, reason="wrong price", now=START + WEEK)
    payments.collect_due(now=START + WEEK)
    assert Payment.objects.get().status == PaymentStatus.CANCELLED
    assert fake_stripe.payment_intents() == []

"""POST /api/subscriptions/{id}/charge, Dodo's `subscriptions.charge` through the official SDK
(strict): an amount charged now, recorded as its own invoice (kind charge), collected like any
invoice, never retried by dunning; unknown or unsupported fields are refused naming them."""

from __future__ import annotations

import pytest
from dodopayments import UnprocessableEntityError

from products import payments
from products.models import Dunning, Invoice, InvoiceKind, InvoiceStatus, Payment
from tests.payments.fake_stripe import DECLINED_ON_CHARGE
from tests.payments.helpers import save_card, weekly_subscription
from tests.payments.sdk_shapes import payment_events
from tests.webhooks.factories import make_endpoint


@pytest.mark.django_db(transaction=True)
def test_a_charge_is_its_own_invoice_paid_through_stripe(fake_stripe, sdk):
    make_endpoint("https://hooks.example.com/billing")
    subscription = weekly_subscription(calls=0)
    save_card(fake_stripe, subscription)

    answer = sdk.subscriptions.charge(
        subscription.subscription_id,
        product_price=1_234,
        product_description="Extra seats",
        metadata={"order": "42"},
    )

    payment = Payment.objects.get(pk=answer.payment_id)
    invoice = payment.invoice
    assert (invoice.kind, invoice.status, invoice.total_minor) == ("charge", "issued", 1_234)
    assert invoice.number and invoice.lines.get().description == "Extra seats"
    payments.collect(payment.payment_id, now=payment.due_at)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
    assert charged["amount"] == 1_234
    [succeeded] = [e for e in payment_events() if e["type"] == "payment.succeeded"]
    assert succeeded["data"]["charge_type"] == "on_demand"
    assert succeeded["data"]["metadata"] == {"order": "42"}
    # The period's own invoice is still to come: the charge stands beside it.
    assert not Invoice.objects.filter(kind=InvoiceKind.INVOICE).exists()


@pytest.mark.django_db(transaction=True)
def test_a_declined_charge_fails_without_dunning(fake_stripe, sdk):
    subscription = weekly_subscription(calls=0)
    save_card(fake_stripe, subscription, DECLINED_ON_CHARGE)
    answer = sdk.subscriptions.charge(subscription.subscription_id, product_price=500)
    payment = Payment.objects.get(pk=answer.payment_id)
    payments.collect(payment.payment_id, now=payment.due_at)
    payment.refresh_from_db()
    assert payment.status == "failed"
    assert Payment.objects.count() == 1  # no retry scheduled
    assert not Dunning.objects.exists()
    subscription.refresh_from_db()
    assert subscription.status == "active"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"adaptive_currency_fees_inclusive": True}, "adaptive_currency_fees_inclusive"),
        (
            {"customer_balance_config": {"allow_customer_credits_usage": True}},
            "customer_balance_config",
        ),
        ({"product_currency": "EUR"}, "product_currency"),
        ({"product_price": 0}, "product_price"),
    ],
)
def test_unsupported_charge_fields_are_refused_naming_them(fake_stripe, sdk, extra, field):
    subscription = weekly_subscription(calls=0)
    arguments = {"product_price": 500, **extra}
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.subscriptions.charge(subscription.subscription_id, **arguments)
    assert field in str(refused.value)
    assert not Invoice.objects.exists()


@pytest.mark.django_db
def test_without_a_provider_a_charge_answers_409(api):
    subscription = weekly_subscription(calls=0)
    answer = api.post(
        f"/api/subscriptions/{subscription.subscription_id}/charge",
        {"product_price": 500},
        format="json",
    )
    assert answer.status_code == 409
    assert not Invoice.objects.exists()

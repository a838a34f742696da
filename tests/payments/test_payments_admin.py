"""Staff and payments: the customer page shows the saved card, the invoice page every attempt
and refund; billing admins retry a payment now and refund an invoice (audit-logged), viewers
cannot."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from audit.models import AuditEntry
from products import payments
from products.models import Invoice, Payment, PaymentStatus, Refund, RefundStatus
from tests.payments.fake_stripe import DECLINED_ON_CHARGE
from tests.payments.helpers import START, WEEK, close_first_week, save_card, weekly_subscription
from tests.payments.sdk_shapes import event_types
from tests.roles.helpers import staff_client
from tests.webhooks.factories import make_endpoint

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/products/invoice/"


def act(client, action: str, invoice: Invoice):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [invoice.pk]})


def test_the_customer_page_shows_the_saved_card_and_the_invoice_page_its_attempts(fake_stripe):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription, DECLINED_ON_CHARGE)
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    client = staff_client("vera", "viewer")

    customer_page = client.get(
        reverse("admin:products_customer_change", args=[quote(subscription.customer_id)])
    )
    assert "visa ending 0341, expires 12/2034" in customer_page.content.decode()
    invoice_page = client.get(reverse("admin:products_invoice_change", args=[invoice.pk]))
    text = invoice_page.content.decode()
    first, retry = Payment.objects.filter(invoice=invoice).order_by("retry_attempt")
    assert first.payment_id in text and "card_declined" in text
    assert retry.payment_id in text and "Scheduled" in text
    # A viewer sees the actions' results, never the actions.
    act(client, "retry_payments", invoice)
    assert Payment.objects.get(pk=retry.pk).due_at == retry.due_at


def test_a_billing_admin_retries_now_and_refunds(fake_stripe):
    make_endpoint("https://hooks.example.com/billing")
    subscription = weekly_subscription()
    session = save_card(fake_stripe, subscription, DECLINED_ON_CHARGE)
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    client = staff_client("ada", "billing_admin")

    # The customer fixes the card; the admin does not wait for the schedule.
    fake_stripe.confirm_setup(
        payments.payment_method_session(subscription.customer_id, now=START), "4242424242424242"
    )
    assert session  # the first session's card stays until the new one is adopted
    act(client, "retry_payments", invoice)
    retry = Payment.objects.get(invoice=invoice, retry_attempt=1)
    assert AuditEntry.objects.get(action="payment_retried").actor_name == "ada"
    payments.collect(retry.payment_id, now=retry.due_at)
    retry.refresh_from_db()
    assert retry.status == PaymentStatus.SUCCEEDED
    invoice.refresh_from_db()
    assert invoice.status == "paid"

    act(client, "refund_invoices", invoice)
    [refund] = Refund.objects.all()
    assert (refund.status, refund.amount_minor) == (RefundStatus.SUCCEEDED, invoice.total_minor)
    assert refund.reason == "Refunded in the admin by ada"
    [at_fake] = fake_stripe._get("/v1/refunds")["data"]
    assert (at_fake["id"], at_fake["amount"]) == (refund.provider_refund_id, invoice.total_minor)
    assert AuditEntry.objects.get(action="refunded").object_id == invoice.invoice_id
    assert event_types()[-1] == "refund.succeeded"
    # Nothing is left to refund: a second refund is refused and reported.
    act(client, "refund_invoices", invoice)
    assert Refund.objects.count() == 1
    assert len(fake_stripe._get("/v1/refunds")["data"]) == 1

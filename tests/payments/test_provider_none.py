"""PAYMENT_PROVIDER=none (the default): invoices stay issued until marked paid, exactly as
before; nothing is scheduled or charged, and the payment endpoints say why they refuse."""

from __future__ import annotations

import pytest

from products.models import InvoiceStatus, Payment
from tests.payments.fake_stripe import event, signed
from tests.payments.helpers import close_first_week, weekly_subscription

pytestmark = pytest.mark.django_db


def test_without_a_provider_an_issued_invoice_waits_for_mark_paid(settings):
    assert settings.PAYMENT_PROVIDER == "none"
    invoice = close_first_week(weekly_subscription())
    assert invoice.status == InvoiceStatus.ISSUED
    assert not Payment.objects.exists()


def test_without_a_provider_the_payment_endpoints_answer_409(api):
    customer_id = weekly_subscription().customer_id
    answer = api.post(f"/api/customers/{customer_id}/payment-method-session")
    assert answer.status_code == 409
    assert answer.json()["code"] == "PAYMENT_PROVIDER_NOT_CONFIGURED"
    body, signature = signed(event("evt_1", "payment_intent.succeeded", {"id": "pi_1"}))
    answer = api.post(
        "/api/providers/stripe/webhook",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )
    assert answer.status_code == 409

"""GET /api/payments and /api/payments/{id}, Dodo's payments.list and payments.retrieve, read
through the official SDK with strict response validation: one payment per attempt."""

from __future__ import annotations

import pytest
from dodopayments import UnprocessableEntityError

from products import payments
from products.models import Payment
from tests.payments.fake_stripe import DECLINED_ON_CHARGE
from tests.payments.helpers import START, WEEK, close_first_week, save_card, weekly_subscription


@pytest.mark.django_db(transaction=True)
def test_each_attempt_is_a_payment_the_sdk_reads(fake_stripe, sdk):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription, DECLINED_ON_CHARGE)
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    first = Payment.objects.get(retry_attempt=0)

    shown = sdk.payments.retrieve(first.payment_id)
    assert (shown.status, shown.retry_attempt, shown.error_code) == ("failed", 0, "card_declined")
    assert (shown.total_amount, shown.invoice_id) == (invoice.total_minor, invoice.invoice_id)
    assert shown.card_last_four == "0341"
    listed = sdk.payments.list(customer_id=subscription.customer_id).items
    assert [(p.retry_attempt, p.status) for p in listed] == [(1, "processing"), (0, "failed")]
    failed = sdk.payments.list(status="failed").items
    assert [p.payment_id for p in failed] == [first.payment_id]
    assert sdk.payments.list(customer_id="cus_nobody").items == []
    with pytest.raises(UnprocessableEntityError):
        sdk.payments.list(extra_query={"invoice": "x"})

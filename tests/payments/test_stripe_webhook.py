"""POST /api/providers/stripe/webhook: Stripe's signature is checked by the stripe library
(`Webhook.construct_event`) with STRIPE_WEBHOOK_SECRET; each event is applied once, by its id;
repeated and out-of-order deliveries change nothing twice; a forged or replayed event answers
400 and changes nothing. Events are signed here with the secret (a real signature) from the fake
Stripe's own objects, except in the last test, where localstripe itself sends them."""

from __future__ import annotations

import time

import httpx
import pytest
from django.test import override_settings

from products import payments
from products.models import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    ProviderEvent,
    Refund,
)
from tests.faults.proxy import CuttableProxy
from tests.payments.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, event, signed
from tests.payments.helpers import START, WEEK, close_first_week, save_card, weekly_subscription
from tests.payments.sdk_shapes import event_types
from tests.webhooks.factories import make_endpoint

WEBHOOK = "/api/providers/stripe/webhook"
# In the body of the PaymentIntent call only (its headers may arrive in a packet before it).
CHARGE_BODY = b"off_session=true"


def post(client, body: bytes, signature: str | None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(WEBHOOK, body, content_type="application/json", **headers)


def lost_answer(fake_stripe) -> tuple[Payment, dict]:
    """An invoice charged at the fake whose answer never reached us: its payment is
    processing, as after a crash. Returns it and the fake's PaymentIntent."""
    from urllib.parse import urlsplit

    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    invoice = close_first_week(subscription)
    address = urlsplit(fake_stripe.url)
    proxy = CuttableProxy((address.hostname, address.port))
    try:
        proxy.cut_at(CHARGE_BODY, deliver=True)
        with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{proxy.port}"):
            payments.collect_due(now=START + WEEK)
    finally:
        proxy.stop()
    [intent] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PROCESSING
    return payment, intent


@pytest.mark.django_db(transaction=True)
def test_a_succeeded_event_settles_a_payment_once_and_later_events_change_nothing(
    fake_stripe, client
):
    make_endpoint("https://hooks.example.com/billing")
    payment, intent = lost_answer(fake_stripe)
    succeeded = event("evt_ok_1", "payment_intent.succeeded", intent)
    body, signature = signed(succeeded)

    answer = post(client, body, signature)
    assert answer.status_code == 200, answer.content
    payment.refresh_from_db()
    assert (payment.status, payment.provider_payment_id) == ("succeeded", intent["id"])
    assert Invoice.objects.get().status == InvoiceStatus.PAID

    # Delivered again: the same event id is not applied twice.
    # (Signed anew, as Stripe does: the same body with a fresh timestamp.)
    again = post(client, *signed(succeeded))
    assert (again.status_code, again.json()["outcome"]) == (200, "already applied")
    # A failure reported late (another event id) does not undo the success.
    failed = dict(intent, status="requires_payment_method")
    late = post(client, *signed(event("evt_late_2", "payment_intent.payment_failed", failed)))
    assert late.status_code == 200 and late.json()["outcome"].startswith("ignored")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert event_types() == ["payment.succeeded"]
    assert ProviderEvent.objects.count() == 2
    # The worker that lost the answer comes back after its lease: nothing is charged again.
    assert payments.collect_due(now=START + WEEK + payments.lease()) == 0
    assert len(fake_stripe.payment_intents()) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "forgery",
    ["wrong secret", "replayed ten minutes later", "no signature", "signature of another body"],
)
def test_a_forged_or_replayed_event_answers_400_and_changes_nothing(fake_stripe, client, forgery):
    payment, intent = lost_answer(fake_stripe)
    body, signature = signed(event("evt_forged", "payment_intent.succeeded", intent))
    if forgery == "wrong secret":
        body, signature = signed(
            event("evt_forged", "payment_intent.succeeded", intent), secret="whsec_guess"
        )
    elif forgery == "replayed ten minutes later":
        body, signature = signed(
            event("evt_forged", "payment_intent.succeeded", intent), at=int(time.time()) - 600
        )
    elif forgery == "no signature":
        signature = None
    else:
        body = body.replace(b"evt_forged", b"evt_forged_x")

    answer = post(client, body, signature)
    assert answer.status_code == 400
    assert answer.json()["code"] == "INVALID_SIGNATURE"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING
    assert Invoice.objects.get().status == InvoiceStatus.ISSUED
    assert not ProviderEvent.objects.exists()


@pytest.mark.django_db
def test_a_refund_made_at_stripe_is_recorded_once(fake_stripe, client):
    make_endpoint("https://hooks.example.com/billing")
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    invoice = close_first_week(subscription)
    payments.collect_due(now=START + WEEK)
    payment = Payment.objects.get()
    # A refund made in Stripe's dashboard, not by this server.
    refund = httpx.post(
        f"{fake_stripe.url}/v1/refunds",
        data={"payment_intent": payment.provider_payment_id, "amount": 300},
        auth=(SECRET_KEY, ""),
    ).json()
    charge_id = fake_stripe.payment_intent(payment.provider_payment_id)["latest_charge"]["id"]
    charge = fake_stripe._get(f"/v1/charges/{charge_id}")
    assert [r["id"] for r in charge["refunds"]["data"]] == [refund["id"]]

    for event_id in ("evt_refund_1", "evt_refund_2"):  # the second: a later charge.refunded
        answer = post(client, *signed(event(event_id, "charge.refunded", charge)))
        assert answer.status_code == 200
    [recorded] = Refund.objects.all()
    assert (recorded.amount_minor, recorded.provider_refund_id) == (300, refund["id"])
    assert event_types() == ["payment.succeeded", "refund.succeeded"]
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID


@pytest.mark.django_db(transaction=True)
def test_localstripe_s_own_signed_webhook_settles_a_payment(fake_stripe, live_server):
    """localstripe signs and sends payment_intent.* events itself (about a second after the
    charge) to a URL registered through its /_config API: the signature it computes passes the
    stripe library's check here."""
    url = f"{live_server.url}{WEBHOOK}"
    httpx.post(
        f"{fake_stripe.url}/_config/webhooks/payments-tests",
        data={"url": url, "secret": WEBHOOK_SECRET, "events[]": "payment_intent.succeeded"},
    ).raise_for_status()
    try:
        payment, intent = lost_answer(fake_stripe)
        deadline = time.monotonic() + 15
        while Payment.objects.get().status == PaymentStatus.PROCESSING:
            assert time.monotonic() < deadline, "localstripe's webhook never settled it"
            time.sleep(0.1)
        assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
        assert Invoice.objects.get().status == InvoiceStatus.PAID
        # (An event of an earlier test's charge may arrive too: it is ignored as not ours.)
        applied = ProviderEvent.objects.get(object_id=intent["id"])
        assert applied.event_type == "payment_intent.succeeded"
        assert applied.outcome == f"payment {payment.payment_id} succeeded"
    finally:  # localstripe keeps registrations across flushes: point this one nowhere
        httpx.post(
            f"{fake_stripe.url}/_config/webhooks/payments-tests",
            data={"url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET, "events[]": "none"},
        )

"""POST /api/customers/{id}/payment-method-session (an extension): a Stripe customer on first
need and a SetupIntent's client secret, which Stripe.js confirms; the saved card is the one the
next charge uses."""

from __future__ import annotations

import pytest
from django.utils import timezone

from products import payments
from products.models import ProviderCustomer
from tests.payments.helpers import save_card, weekly_subscription

pytestmark = pytest.mark.django_db


def test_a_session_creates_the_stripe_customer_once_and_answers_a_client_secret(fake_stripe, api):
    customer_id = weekly_subscription().customer_id
    url = f"/api/customers/{customer_id}/payment-method-session"

    first = api.post(url)
    second = api.post(url)

    assert first.status_code == second.status_code == 200, first.content
    profile = ProviderCustomer.objects.get()
    for answer in (first.json(), second.json()):
        assert answer["customer_id"] == customer_id
        assert answer["payment_provider"] == "stripe"
        assert answer["provider_customer_id"] == profile.provider_customer_id
        assert answer["client_secret"].startswith(answer["setup_intent_id"] + "_secret_")
    intent = fake_stripe.setup_intent(second.json()["setup_intent_id"])
    assert (intent["customer"], intent["usage"]) == (profile.provider_customer_id, "off_session")
    assert profile.setup_intent_id == intent["id"]

    assert fake_stripe.confirm_setup(second.json(), "4242424242424242").status_code == 200
    assert fake_stripe.setup_intent(intent["id"])["status"] == "succeeded"


def test_a_session_refuses_fields_and_unknown_customers(fake_stripe, api):
    customer_id = weekly_subscription().customer_id
    answer = api.post(
        f"/api/customers/{customer_id}/payment-method-session", {"return_url": "x"}, format="json"
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "return_url"
    missing = api.post("/api/customers/cus_nobody/payment-method-session")
    assert missing.status_code == 404
    assert not ProviderCustomer.objects.exists()


def test_a_subscription_says_it_has_a_payment_method_once_a_card_is_saved(fake_stripe, api):
    subscription = weekly_subscription()
    url = f"/api/subscriptions/{subscription.subscription_id}"
    assert api.get(url).json()["has_payment_method"] is False

    save_card(fake_stripe, subscription)
    # What Stripe's setup_intent.succeeded webhook does (localstripe sends none).
    payments.sync_payment_method(ProviderCustomer.objects.get(), now=timezone.now())

    assert api.get(url).json()["has_payment_method"] is True
    listed = api.get("/api/subscriptions").json()["items"]
    assert [item["has_payment_method"] for item in listed] == [True]

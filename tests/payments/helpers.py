"""Billing set-ups for the payment tests: a weekly product, a customer with (or without) a card
saved through the fake Stripe, and the invoice its first week closes with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from products import billing, payments, services
from products.models import Invoice, Subscription
from tests.factories import make_customer
from tests.payments.fake_stripe import GOOD_CARD, FakeStripe
from tests.products.factories import make_meter, make_product, send_usage

START = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
FEE = 1_000
CALL_PRICE = 25  # cents per call after 3 free ones
# As the SDK sends it (Dodo requires a billing country; this server does not).
BILLING = {"country": "US", "city": "Springfield", "street": "1 Main St", "zipcode": "12345"}


def weekly_subscription(*, fee: int = FEE, calls: int = 5, email: str = "ada@example.com"):
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product(
        [(meter, str(CALL_PRICE), 3)], now=START, fixed_price=fee, interval="Week"
    )
    subscription = services.create_subscription(
        customer=make_customer(email=email), product=product, now=START, billing=BILLING
    )
    if calls:
        send_usage(subscription, "api.call", [{}] * calls, start=START, prefix=email)
    return subscription


def expected_total(fee: int = FEE, calls: int = 5) -> int:
    return fee + max(calls - 3, 0) * CALL_PRICE


def save_card(fake: FakeStripe, subscription: Subscription, number: str = GOOD_CARD) -> dict:
    """The customer saves a card: a session from our API's rule, confirmed at the fake as
    Stripe.js would. Returns the session."""
    session = payments.payment_method_session(subscription.customer_id, now=START)
    fake.confirm_setup(session, number)
    return session


def close_first_week(subscription: Subscription) -> Invoice:
    [invoice] = [
        i
        for i in billing.run_billing_cycle(now=START + WEEK)
        if i.subscription_id == subscription.subscription_id
    ]
    return invoice

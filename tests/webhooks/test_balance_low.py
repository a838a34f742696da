"""credit.balance_low: sent when a deduction takes the balance from at or above the threshold to
below it, and not again while it stays below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from dodopayments import DodoPayments
from dodopayments.types import CreditBalanceLowWebhookEvent

from credits import ledger
from credits.deduction import run_deductions
from credits.ledger import CreditRules
from credits.models import ProductCreditEntitlement
from tests.credits.factories import credit_product, make_entitlement, subscribe
from tests.products.factories import make_meter, send_usage
from tests.webhooks.factories import make_endpoint

START = datetime(2026, 6, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def plan():
    """100 credits a week, low below 20% of them (20 credits)."""
    entitlement = make_entitlement(now=START, name="Tokens")
    calls = make_meter("Calls", "api.call", now=START)
    product = credit_product(
        entitlement, calls, credits_amount=100, now=START, low_balance_threshold_percent=20
    )
    subscription = subscribe(product, now=START)  # grants the first 100
    link = ProductCreditEntitlement.objects.get(product=product)
    return entitlement, subscription, CreditRules.of(entitlement, link)


def _deduct(plan, amount: str) -> None:
    entitlement, subscription, rules = plan
    balance = ledger.locked_balance(entitlement.id, subscription.customer_id, now=START)
    ledger.deduct(balance, Decimal(amount), rules=rules, now=START)


def _credit(plan, amount: str) -> None:
    entitlement, subscription, rules = plan
    balance = ledger.locked_balance(entitlement.id, subscription.customer_id, now=START)
    ledger.manual_entry(
        balance, entry_type="credit", amount=Decimal(amount), rules=rules, now=START
    )


def test_fires_once_on_crossing_and_again_only_after_a_top_up(
    plan, receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url, "credit.balance_low")
    entitlement, subscription, _ = plan

    def low_events() -> list[dict]:
        return receiver.of_type(endpoint.secret, "credit.balance_low")

    with django_capture_on_commit_callbacks(execute=True):
        _deduct(plan, "70")  # 100 -> 30: above 20
        _deduct(plan, "10")  # 30 -> 20: at the threshold is not below it
    assert low_events() == []

    with django_capture_on_commit_callbacks(execute=True):
        _deduct(plan, "5")  # 20 -> 15: crosses
    [event] = low_events()
    assert event["data"] == {
        "customer_id": subscription.customer_id,
        "credit_entitlement_id": entitlement.id,
        "credit_entitlement_name": "Tokens",
        "subscription_id": subscription.subscription_id,
        "brand_id": settings.BUSINESS_ID,
        "available_balance": "15.00",
        "subscription_credits_amount": "100",
        "threshold_amount": "20",
        "threshold_percent": 20,
    }

    with django_capture_on_commit_callbacks(execute=True):
        _deduct(plan, "5")  # 15 -> 10: already below, quiet
        _deduct(plan, "10")  # 10 -> 0
        _deduct(plan, "3")  # stays at 0 (overage is off)
    assert len(low_events()) == 1

    with django_capture_on_commit_callbacks(execute=True):
        _credit(plan, "50")  # back to 50
        _deduct(plan, "31")  # 50 -> 19: crosses again
    assert [e["data"]["available_balance"] for e in low_events()] == ["15.00", "19.00"]


def test_usage_deduction_that_crosses_the_threshold_fires(
    plan, receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url, "credit.balance_low")
    _, subscription, _ = plan
    send_usage(subscription, "api.call", [{}] * 85, start=START, prefix="u")

    with django_capture_on_commit_callbacks(execute=True):
        run_deductions(now=START + timedelta(days=1))

    [request] = receiver.requests
    client = DodoPayments(bearer_token="unused", base_url="http://127.0.0.1:1")
    event = client.webhooks.unwrap(request.body, headers=request.headers, key=endpoint.secret)
    assert isinstance(event, CreditBalanceLowWebhookEvent)
    assert event.data.available_balance == "15.00"
    assert event.data.subscription_id == subscription.subscription_id


def test_no_threshold_configured_sends_nothing(receiver, django_capture_on_commit_callbacks):
    make_endpoint(receiver.url, "credit.balance_low")
    entitlement = make_entitlement(now=START)
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=100, now=START), now=START
    )
    balance = ledger.locked_balance(entitlement.id, subscription.customer_id, now=START)
    with django_capture_on_commit_callbacks(execute=True):
        ledger.deduct(balance, Decimal("99"), rules=CreditRules.of(entitlement), now=START)
    assert receiver.requests == []

"""Every credit ledger entry sends its credit.* event, the entry as the credits API shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from dodopayments import DodoPayments
from dodopayments.types import CreditAddedWebhookEvent, CreditManualAdjustmentWebhookEvent

from billing_site.jsonutil import exact_loads
from credits import ledger
from credits.deduction import run_deductions
from credits.ledger import CreditRules
from credits.models import GrantSource, LedgerEntry, TransactionType
from credits.webhook_events import LEDGER_EVENT_TYPES
from tests.credits.factories import credit_product, make_entitlement, subscribe
from tests.factories import make_customer
from tests.products.factories import make_meter, send_usage
from tests.webhooks.factories import make_endpoint
from webhooks.models import WebhookEvent

START = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
pytestmark = pytest.mark.django_db


def _grant(balance, rules, amount="100", **options):
    return ledger.grant(
        balance, Decimal(amount), rules=rules, now=START, source_type=GrantSource.API, **options
    )


def added(balance, rules):
    _grant(balance, rules)


def deducted(balance, rules):
    _grant(balance, rules)
    ledger.deduct(balance, Decimal("30.5"), rules=rules, now=START + DAY)


def expired(balance, rules):
    _grant(balance, rules, expires_at=START + DAY)
    ledger.expire_grants(balance, rules=rules, as_of=START + DAY)


def overage(balance, rules):
    ledger.deduct(balance, Decimal("12"), rules=rules, now=START)
    ledger.settle_overage(balance, rules=rules, now=START + DAY, reference=("test", "1"))


def refunded(balance, rules):
    _grant(balance, rules, transaction_type=TransactionType.REFUND)


def manual(balance, rules):
    ledger.manual_entry(
        balance, entry_type="credit", amount=Decimal("7.25"), rules=rules, now=START, reason="gift"
    )
    ledger.manual_entry(balance, entry_type="debit", amount=Decimal("2"), rules=rules, now=START)


CASES = [
    # (operation, entitlement settings, the transaction types it writes, in order)
    (added, {}, ["credit_added"]),
    (deducted, {}, ["credit_added", "credit_deducted"]),
    (expired, {}, ["credit_added", "credit_expired"]),
    (
        expired,
        {"rollover_enabled": True, "rollover_percentage": 40},
        ["credit_added", "credit_expired", "credit_rolled_over"],
    ),
    (
        expired,
        {"rollover_enabled": True, "rollover_percentage": 40, "max_rollover_count": 0},
        ["credit_added", "rollover_forfeited"],
    ),
    (
        overage,
        {
            "overage_enabled": True,
            "price_per_unit": "3",
            "currency": "USD",
            "overage_behavior": "invoice_at_billing",
        },
        ["credit_deducted", "overage_charged"],
    ),
    (
        overage,
        {"overage_enabled": True, "price_per_unit": "3", "currency": "USD"},
        ["credit_deducted", "overage_reset"],
    ),
    (manual, {}, ["manual_adjustment", "manual_adjustment"]),
    (refunded, {}, ["refund"]),
]


@pytest.mark.parametrize(
    "operation, entitlement_settings, transaction_types",
    CASES,
    ids=[f"{case[0].__name__}-{'-'.join(case[2])}" for case in CASES],
)
def test_each_ledger_entry_sends_its_event_with_the_entry_as_the_api_shows_it(
    operation,
    entitlement_settings,
    transaction_types,
    receiver,
    api,
    django_capture_on_commit_callbacks,
):
    endpoint = make_endpoint(receiver.url)
    entitlement = make_entitlement(now=START, **entitlement_settings)
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        balance = ledger.locked_balance(entitlement.id, customer.customer_id, now=START)
        operation(balance, CreditRules.of(entitlement))

    entries = list(LedgerEntry.objects.filter(balance=balance).order_by("id"))
    assert [entry.transaction_type for entry in entries] == transaction_types
    shown = exact_loads(
        api.get(
            f"/api/credit-entitlements/{entitlement.id}/balances/{customer.customer_id}/ledger"
        ).content
    )["items"]
    by_id = {item["id"]: item for item in shown}
    bodies = receiver.bodies(endpoint.secret)
    assert len(bodies) == len(entries)  # one event per entry, no more
    for entry, body, request in zip(entries, bodies, receiver.requests, strict=True):
        assert set(body) == {"business_id", "type", "timestamp", "data"}
        assert body["business_id"] == settings.BUSINESS_ID
        assert body["type"] == LEDGER_EVENT_TYPES[entry.transaction_type]
        assert body["data"] == by_id[str(entry.pk)]
        event = WebhookEvent.objects.get(body__contains=f'"data":{{"id":"{entry.pk}",')
        assert request.headers["webhook-id"] == event.id


def test_every_credit_event_type_is_covered_by_the_cases():
    written = {t for case in CASES for t in case[2]}
    assert {LEDGER_EVENT_TYPES[t] for t in written} == {
        "credit.added",
        "credit.deducted",
        "credit.expired",
        "credit.rolled_over",
        "credit.rollover_forfeited",
        "credit.overage_charged",
        "credit.overage_reset",
        "credit.manual_adjustment",
    }


def test_usage_deducted_by_the_credit_worker_sends_credit_deducted(
    receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url, "credit.deducted")
    entitlement = make_entitlement(now=START)
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=50, now=START), now=START
    )
    send_usage(subscription, "api.call", [{}] * 8, start=START, prefix="u")

    with django_capture_on_commit_callbacks(execute=True):
        run_deductions(now=START + DAY)

    [body] = receiver.bodies(endpoint.secret)
    assert body["type"] == "credit.deducted"
    assert body["data"]["amount"] == "8.00"  # at the entitlement's precision, as the API shows it
    assert (body["data"]["balance_before"], body["data"]["balance_after"]) == ("50.00", "42.00")
    assert body["data"]["reference_id"] == subscription.subscription_id


def test_the_official_sdk_unwraps_credit_events(receiver, api, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(receiver.url)
    entitlement = make_entitlement(now=START)
    customer = make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/credit-entitlements/{entitlement.id}/balances/{customer.customer_id}/ledger-entries",
            {"entry_type": "credit", "amount": "10.5", "reason": "welcome"},
            format="json",
        )
    assert response.status_code == 201

    client = DodoPayments(bearer_token="unused", base_url="http://127.0.0.1:1")
    [request] = receiver.requests
    event = client.webhooks.unwrap(request.body, headers=request.headers, key=endpoint.secret)
    assert isinstance(event, CreditManualAdjustmentWebhookEvent)
    assert event.data.amount == "10.5"
    assert event.data.customer_id == customer.customer_id
    assert not isinstance(event, CreditAddedWebhookEvent)

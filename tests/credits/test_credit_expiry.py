"""Grants expire on time even where no subscription's deduction looks after their balance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from credits import ledger
from credits.deduction import run_deductions
from credits.ledger import CreditRules
from credits.models import CreditBalance, LedgerEntry, TransactionType
from products.billing import run_billing_cycle
from products.models import SubscriptionStatus
from products.services import update_subscription
from tests.credits.factories import balance_of, credit_product, make_entitlement, subscribe
from tests.factories import make_customer
from tests.products.factories import make_meter, send_usage

START = datetime(2026, 6, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
pytestmark = pytest.mark.django_db


def expired(balance: CreditBalance) -> list[Decimal]:
    return list(
        LedgerEntry.objects.filter(balance=balance, transaction_type=TransactionType.CREDIT_EXPIRED)
        .order_by("id")
        .values_list("amount", flat=True)
    )


def test_credits_granted_through_the_api_expire_without_a_subscription():
    entitlement = make_entitlement(now=START)
    customer = make_customer()
    balance = ledger.locked_balance(entitlement.id, customer.customer_id, now=START)
    rules = CreditRules.of(entitlement, None)
    for amount, days in ((Decimal("30.25"), 3), (Decimal(70), 10)):
        ledger.manual_entry(
            balance,
            entry_type="credit",
            amount=amount,
            rules=rules,
            now=START,
            expires_at=START + timedelta(days=days),
        )

    run_deductions(now=START + timedelta(days=2))
    balance.refresh_from_db()
    assert balance.balance == Decimal("100.25")  # nothing due yet

    run_deductions(now=START + timedelta(days=4))
    balance.refresh_from_db()
    assert expired(balance) == [Decimal("30.25")]
    assert balance.balance == 70  # the later grant is untouched

    run_deductions(now=START + timedelta(days=4, minutes=1))  # again: nothing more
    balance.refresh_from_db()
    assert expired(balance) == [Decimal("30.25")]


def test_the_last_grant_of_a_cancelled_subscription_expires_on_time():
    entitlement = make_entitlement(now=START, expires_after_days=10)
    calls = make_meter("Calls", "api.call", now=START)
    product = credit_product(entitlement, calls, credits_amount=100, now=START)
    subscription = subscribe(product, now=START)
    update_subscription(subscription, cancel_at_next_billing_date=True)

    run_billing_cycle(now=START + WEEK)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    balance = balance_of(entitlement, subscription)
    assert balance.balance == 100  # granted at START, valid 10 days, unused

    run_deductions(now=START + timedelta(days=10, minutes=1))
    balance.refresh_from_db()
    assert expired(balance) == [100]
    assert balance.balance == 0


@pytest.mark.parametrize("minute_task_ran", [False, True])
def test_usage_after_a_grant_expired_is_not_taken_from_it(minute_task_ran):
    """100 credits valid 3 days and 50 that never expire; 40 calls on day 1, 30 on day 5."""
    entitlement = make_entitlement(now=START, expires_after_days=3, precision=0)
    calls = make_meter("Calls", "api.call", now=START)
    product = credit_product(entitlement, calls, credits_amount=100, now=START)
    subscription = subscribe(product, now=START)
    balance = balance_of(entitlement, subscription)
    ledger.manual_entry(
        ledger.locked_balance(entitlement.id, subscription.customer_id, now=START),
        entry_type="credit",
        amount=Decimal(50),
        rules=CreditRules.of(entitlement, None),
        now=START + timedelta(minutes=1),
    )
    send_usage(subscription, "api.call", [{}] * 40, start=START + timedelta(days=1), prefix="a")
    send_usage(subscription, "api.call", [{}] * 30, start=START + timedelta(days=5), prefix="b")
    if minute_task_ran:  # once, long after the expiry
        run_deductions(now=START + timedelta(days=6))

    run_billing_cycle(now=START + WEEK)
    balance.refresh_from_db()
    # Day 1: 40 from the 100; day 3: the other 60 expire; day 5: 30 from the 50.
    assert expired(balance) == [60]
    grants = {g.initial_amount: g.remaining_amount for g in balance.grants.filter(expires_at=None)}
    assert grants == {50: 20}
    assert balance.balance == 20 + 100  # plus the second period's grant


def test_the_last_transaction_time_never_moves_back():
    """A close an hour late deducts at its own clock, then grants the next period at its start."""
    entitlement = make_entitlement(now=START)
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=100, now=START), now=START
    )
    send_usage(subscription, "api.call", [{}] * 5, start=START, prefix="c")

    run_billing_cycle(now=START + WEEK + timedelta(hours=1))
    balance = balance_of(entitlement, subscription)
    latest = LedgerEntry.objects.filter(balance=balance).order_by("-created_at").first()
    assert latest.created_at == START + WEEK + timedelta(hours=1)  # the deduction at close
    assert balance.last_transaction_at == latest.created_at

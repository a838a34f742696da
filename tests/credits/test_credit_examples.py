"""The worked credit examples, checked against numbers computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from credits.deduction import run_deductions
from credits.models import LedgerEntry, TransactionType
from products.billing import run_billing_cycle
from products.models import LineKind
from tests.credits.factories import balance_of, credit_product, make_entitlement, subscribe
from tests.products.factories import make_meter, send_usage

START = datetime(2026, 6, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
pytestmark = pytest.mark.django_db


def entries(balance, kind: str) -> list[Decimal]:
    return list(
        LedgerEntry.objects.filter(balance=balance, transaction_type=kind)
        .order_by("id")
        .values_list("amount", flat=True)
    )


def test_1000_free_units_then_one_credit_per_unit_deducts_1500_for_2500_calls():
    entitlement = make_entitlement(now=START)
    calls = make_meter("Calls", "api.call", now=START)
    product = credit_product(entitlement, calls, credits_amount=2000, free=1000, now=START)
    subscription = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * 2500, start=START, prefix="c")

    run_deductions(now=START + timedelta(days=1))
    run_deductions(now=START + timedelta(days=1, minutes=1))  # again: nothing more
    balance = balance_of(entitlement, subscription)
    assert balance.balance == 2000 - 1500
    assert sum(entries(balance, TransactionType.CREDIT_DEDUCTED)) == 1500

    [invoice] = run_billing_cycle(now=START + WEEK)
    line = invoice.lines.get(kind=LineKind.USAGE)
    assert (line.consumed_units, line.free_units, line.chargeable_units) == (2500, 1000, 1500)
    assert (line.credits_applied, line.amount_minor) == (1500, 0)


def test_75_percent_rollover_of_200_unused_credits_keeps_150():
    entitlement = make_entitlement(
        now=START, rollover_enabled=True, rollover_percentage=75, expires_after_days=7
    )
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=200, now=START), now=START
    )

    run_billing_cycle(now=START + WEEK)
    balance = balance_of(entitlement, subscription)
    assert entries(balance, TransactionType.CREDIT_ROLLED_OVER) == [150]
    assert entries(balance, TransactionType.CREDIT_EXPIRED) == [50]
    assert balance.balance == 150 + 200  # the rolled-over credits plus the new cycle's grant
    rolled = balance.grants.get(source_type="rollover")
    assert (rolled.remaining_amount, rolled.rollover_count) == (150, 1)


def test_credits_past_the_maximum_rollover_count_are_forfeited():
    entitlement = make_entitlement(
        now=START,
        rollover_enabled=True,
        rollover_percentage=75,
        expires_after_days=7,
        max_rollover_count=1,
    )
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=200, now=START), now=START
    )

    run_billing_cycle(now=START + 2 * WEEK)  # two cycle boundaries
    balance = balance_of(entitlement, subscription)
    # week 1: 200 -> 150 rolled; week 2: those 150 (rolled once) are forfeited,
    # the second grant of 200 rolls 150.
    assert entries(balance, TransactionType.ROLLOVER_FORFEITED) == [150]
    assert entries(balance, TransactionType.CREDIT_ROLLED_OVER) == [150, 150]
    assert balance.balance == 150 + 200


def overage_setup(behavior: str, **settings):
    entitlement = make_entitlement(
        now=START,
        overage_enabled=True,
        overage_behavior=behavior,
        price_per_unit="10",
        currency="USD",
        **settings,
    )
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=100, now=START), now=START
    )
    send_usage(subscription, "api.call", [{}] * 150, start=START, prefix="o")
    run_deductions(now=START + timedelta(days=1))
    balance = balance_of(entitlement, subscription)
    assert (balance.balance, balance.overage) == (0, 50)
    [invoice] = run_billing_cycle(now=START + WEEK)
    balance.refresh_from_db()
    overage_lines = list(invoice.lines.filter(kind=LineKind.CREDIT_OVERAGE))
    return balance, overage_lines, subscription


def test_forgive_at_reset_clears_the_overage_without_charging():
    balance, overage_lines, _ = overage_setup("forgive_at_reset")
    assert overage_lines == []
    assert (balance.balance, balance.overage) == (100, 0)
    assert entries(balance, TransactionType.OVERAGE_RESET) == [50]


def test_invoice_at_billing_charges_the_overage_on_the_invoice():
    balance, [line], _ = overage_setup("invoice_at_billing")
    assert (line.chargeable_units, line.unit_price, line.amount_minor) == (50, 10, 500)
    assert (balance.balance, balance.overage) == (100, 0)
    assert entries(balance, TransactionType.OVERAGE_CHARGED) == [50]
    assert line.invoice.total_minor == 500


def test_carry_deficit_keeps_the_overage_and_new_credits_do_not_repay_it():
    balance, overage_lines, _ = overage_setup("carry_deficit")
    assert overage_lines == []
    assert (balance.balance, balance.overage) == (100, 50)


def test_carry_deficit_auto_repay_pays_the_deficit_from_new_credits():
    balance, overage_lines, _ = overage_setup("carry_deficit_auto_repay")
    assert overage_lines == []
    assert (balance.balance, balance.overage) == (50, 0)


def test_usage_beyond_the_overage_limit_is_blocked_and_shown_on_the_invoice():
    entitlement = make_entitlement(
        now=START, overage_enabled=True, overage_limit=30, price_per_unit="10", currency="USD"
    )
    calls = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, calls, credits_amount=100, now=START), now=START
    )
    send_usage(subscription, "api.call", [{}] * 150, start=START, prefix="l")
    [invoice] = run_billing_cycle(now=START + WEEK)
    line = invoice.lines.get(kind=LineKind.USAGE)
    assert line.credits_applied == 130  # 100 from the balance, 30 of overage
    assert "20.00 credits beyond the overage limit" in line.description

"""Worked examples for unique_count meters, billed and deducted from credits, against numbers
computed by hand: distinct `user_id`s over a month, repeating across hours and days, typed
(`1` and `1.0` one user, `"1"` another), with the free threshold taken off the distinct count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from credits.deduction import run_deductions
from credits.models import LedgerEntry, TransactionType
from meters import rollups
from products.billing import run_billing_cycle
from products.models import LineKind
from tests.credits.factories import balance_of, credit_product, make_entitlement
from tests.credits.factories import subscribe as subscribe_with_credits
from tests.factories import ingest_events
from tests.products.factories import make_meter, make_product, subscribe

START = datetime(2026, 1, 31, 9, 15, tzinfo=UTC)  # monthly: Jan 31 09:15 -> Feb 28 09:15
FIRST_END = datetime(2026, 2, 28, 9, 15, tzinfo=UTC)
SECOND_END = datetime(2026, 3, 31, 9, 15, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def opened(customer_id: str, when: datetime, user, *, event_id: str) -> dict:
    metadata = {"page": "home"} if user is None else {"user_id": user, "page": "home"}
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "event_name": "app.opened",
        "timestamp": when.isoformat(),
        "metadata": metadata,
    }


def at(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 2) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


# (when, user_id) sent in the first month, in two lots: the second lot arrives after the first
# is rolled up, and lands in hours and days that already have buckets.
FIRST_LOT = [
    (at(31, 9, 0, month=1), "carol"),  # before the period starts: not counted
    (at(31, 10, 5, month=1), "alice"),
    (at(31, 10, 40, month=1), "alice"),  # same user, same hour
    (at(31, 11, 20, month=1), "alice"),  # same user, next hour
    (at(1, 8), 1),  # the number 1 ...
    (at(3, 12), "bob"),
    (at(5, 7), None),  # no user_id: skipped
    (at(10, 23, 59), True),  # a boolean is a value of its own
]
SECOND_LOT = [
    (at(31, 10, 50, month=1), "alice"),  # late, into an hour already rolled up
    (at(5, 7, 30), None),  # skipped
    (at(14, 13, 30), 1.0),  # ... and 1.0 is the same user as 1
    (at(14, 13, 31), "1"),  # but "1" is another
    (at(20, 6), "alice"),  # alice again, weeks later
    (at(27, 18), "bob"),  # bob again
    (at(28, 9, 14, 59), "erin"),  # the last second of the period
    (at(28, 9, 15), "dave"),  # the first instant of the next period
]
# By hand: alice, 1 (= 1.0), "1", bob, true, erin -> 6 distinct users in the first period, from
# 11 events with a user_id (carol and dave are outside it); 2 events without one.
FIRST_PERIOD_USERS = 6


def send(customer_id: str, lot, *, prefix: str, now: datetime) -> None:
    ingest_events(
        [opened(customer_id, when, user, event_id=f"{prefix}-{i}") for i, (when, user) in lot],
        now=now,
    )


def test_distinct_users_over_a_month_billed_after_two_free_at_2_50_each():
    users = make_meter("Active users", "app.opened", "unique_count", "user_id", now=START)
    product = make_product([(users, "250", 2)], now=START - timedelta(days=1))
    subscription = subscribe(product, now=START)
    customer = subscription.customer_id
    send(customer, enumerate(FIRST_LOT), prefix="a", now=at(11, 0))
    rollups.run_rollups()
    send(customer, enumerate(SECOND_LOT), prefix="b", now=FIRST_END)

    [invoice] = run_billing_cycle(now=FIRST_END + timedelta(seconds=1))
    [line] = invoice.lines.filter(kind=LineKind.USAGE)
    # 6 distinct users - 2 free = 4 chargeable x 250 cents = 1,000 cents ($10.00)
    assert (
        line.consumed_units,
        line.free_units,
        line.chargeable_units,
        line.unit_price,
        line.amount_minor,
    ) == (FIRST_PERIOD_USERS, 2, 4, Decimal(250), 1000)
    assert invoice.total_minor == 1000
    assert (invoice.period_start, invoice.period_end) == (START, FIRST_END)

    # The next period counts its own users: dave (at its first instant) and alice = 2, all
    # free. alice was a user last month too: distinct counts do not carry over.
    send(customer, [(0, (at(3, 10, month=3), "alice"))], prefix="c", now=at(3, 11, month=3))
    rollups.run_rollups()
    [second] = run_billing_cycle(now=SECOND_END + timedelta(seconds=1))
    [line] = second.lines.filter(kind=LineKind.USAGE)
    assert (line.consumed_units, line.chargeable_units, line.amount_minor) == (2, 0, 0)


def test_distinct_users_are_deducted_from_credits_once_each():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    entitlement = make_entitlement(now=start)
    users = make_meter("Active users", "app.opened", "unique_count", "user_id", now=start)
    product = credit_product(entitlement, users, credits_amount=100, free=1, now=start)
    subscription = subscribe_with_credits(product, now=start)
    customer = subscription.customer_id
    lot = [(start + timedelta(hours=h), user) for h, user in enumerate(["a", "b", "a", 7, 7.0])]
    send(customer, enumerate(lot), prefix="d", now=start + timedelta(hours=6))

    run_deductions(now=start + timedelta(hours=6))
    balance = balance_of(entitlement, subscription)
    # a, b, 7 (= 7.0) -> 3 distinct users - 1 free = 2 credits
    assert balance.balance == 100 - 2

    # The same users again change nothing; one new user costs one credit more.
    again = [(start + timedelta(days=1, hours=h), user) for h, user in enumerate(["b", 7, "c"])]
    send(customer, enumerate(again), prefix="e", now=start + timedelta(days=1, hours=4))
    rollups.run_rollups()
    run_deductions(now=start + timedelta(days=1, hours=4))
    balance.refresh_from_db()
    assert balance.balance == 100 - 3
    deducted = LedgerEntry.objects.filter(
        balance=balance, transaction_type=TransactionType.CREDIT_DEDUCTED
    ).values_list("amount", flat=True)
    assert sum(deducted) == 3

"""Credit invariants under any sequence of operations, for random entitlement settings.

After every step: each balance equals the sum of its ledger (and its overage the sum of the
overage changes), every entry's before + change = after and follows the previous entry, no grant
goes below zero, the balance equals what the unexpired grants still hold, and what was deducted
for usage (deducted + blocked, per subscription, meter and period) equals the usage converted to
credits, computed here from the events the test sent:
max(count - free, 0) / units per credit, rounded half-up once to the precision.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from credits import ledger
from credits.deduction import run_deductions
from credits.ledger import CreditRules, InsufficientBalance
from credits.models import (
    CreditBalance,
    CreditGrant,
    LedgerEntry,
    OverageBehavior,
    TransactionType,
    UsageDeduction,
)
from products import services as product_services
from products.billing import run_billing_cycle
from products.models import LineKind, Subscription
from tests.credits.factories import make_entitlement
from tests.factories import ingest_events, make_customer
from tests.products.factories import make_meter

START = datetime(2026, 6, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
SUBSCRIPTIONS = 2
METERS = (("Calls", "api.call"), ("Jobs", "job.run"))
SECOND = timedelta(seconds=1)


def _amount(draw, precision: int, *, low: int, high: int) -> Decimal:
    """A positive amount with at most `precision` decimal places."""
    whole = draw(st.integers(low, high))
    fraction = draw(st.integers(0, 10**precision - 1)) if precision else 0
    amount = Decimal(whole) + Decimal(fraction).scaleb(-precision)
    return amount if amount > 0 else Decimal(1)


@st.composite
def entitlement_settings(draw) -> dict:
    overage = draw(st.booleans())
    rollover = draw(st.booleans())
    return {
        "precision": draw(st.integers(0, 3)),
        "rollover_enabled": rollover,
        "rollover_percentage": draw(st.sampled_from([0, 25, 50, 75, 100])) if rollover else None,
        "max_rollover_count": draw(st.sampled_from([None, 0, 1, 2])) if rollover else None,
        "expires_after_days": draw(st.sampled_from([None, 1, 3, 7, 10])),
        "overage_enabled": overage,
        "overage_limit": draw(st.sampled_from([None, 0, 5, 40])) if overage else None,
        "overage_behavior": draw(st.sampled_from(OverageBehavior.values)),
        "price_per_unit": "10",
        "currency": "USD",
    }


@st.composite
def meter_settings(draw) -> tuple[int, str]:
    return draw(st.sampled_from([0, 3, 10])), draw(st.sampled_from(["1", "3", "0.5", "2.5"]))


@st.composite
def steps(draw, precision: int) -> list[tuple]:
    subscription = st.integers(0, SUBSCRIPTIONS - 1)
    result = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(
            st.sampled_from(["usage", "usage", "advance", "advance", "deduct", "cycle", "credit"])
        )
        if kind == "usage":
            step = (
                "usage",
                draw(subscription),
                draw(st.integers(0, len(METERS) - 1)),
                draw(st.one_of(st.integers(1, 12), st.sampled_from([40, 90, 150]))),
                draw(st.integers(0, 3 * 86400)),
            )
        elif kind == "cycle":
            # Often jump to just past the open period's end first, so periods really close.
            step = ("cycle", draw(st.sampled_from([None, 0, 1, 3600])))
        elif kind == "advance":
            step = ("advance", draw(st.sampled_from([1, 20, 50, 100, 170])))
        elif kind == "credit":
            entry_type = draw(st.sampled_from(["credit", "debit"]))
            step = (
                entry_type,
                draw(subscription),
                _amount(draw, precision, low=0, high=120),
                draw(st.sampled_from([None, 1, 5])) if entry_type == "credit" else None,
            )
        else:
            step = (kind,)
        result.append(step)
    return result


@st.composite
def scenarios(draw):
    setup = draw(entitlement_settings())
    precision = setup["precision"]
    return {
        "entitlement": setup,
        "credits_amount": _amount(draw, precision, low=0, high=150),
        "meters": [draw(meter_settings()) for _ in METERS],
        "steps": draw(steps(precision)),
    }


def credits_for(count: int, free: int, per_credit: str, precision: int) -> Decimal:
    """Usage converted to credits, with exact fractions and half-up rounding done by hand."""
    exact = Fraction(max(count - free, 0)) / Fraction(per_credit)
    scaled = exact * 10**precision
    rounded = math.floor(scaled + Fraction(1, 2))
    return Decimal(rounded).scaleb(-precision)


class Model:
    """What the test sent: events per customer and meter, and which periods were deducted."""

    def __init__(self, scenario: dict, subscriptions: list[Subscription], meter_ids: list[str]):
        self.scenario = scenario
        self.subscriptions = subscriptions
        self.meter_ids = meter_ids
        self.precision = scenario["entitlement"]["precision"]
        self.clock = START + timedelta(minutes=1)
        self.closed = 0  # periods invoiced so far (every subscription shares the anchor)
        self.events: dict[tuple[int, int], list[datetime]] = defaultdict(list)
        self.expected: dict[tuple[str, int, int], Decimal] = {}  # (sub, meter, period) -> credits
        self.sent = 0

    @staticmethod
    def bounds(period: int) -> tuple[datetime, datetime]:
        return START + period * WEEK, START + (period + 1) * WEEK

    def credits(self, sub: int, meter: int, start: datetime, end: datetime) -> Decimal:
        count = sum(1 for moment in self.events[(sub, meter)] if start <= moment < end)
        free, per_credit = self.scenario["meters"][meter]
        return credits_for(count, free, per_credit, self.precision)

    def record(self, period: int, until: datetime) -> None:
        start, end = self.bounds(period)
        for sub, subscription in enumerate(self.subscriptions):
            for meter in range(len(METERS)):
                key = (subscription.subscription_id, meter, period)
                self.expected[key] = self.credits(sub, meter, start, min(until, end))


def build(scenario: dict):
    entitlement = make_entitlement(now=START, **scenario["entitlement"])
    meters = [make_meter(name, event_name, now=START) for name, event_name in METERS]
    product = product_services.create_product(
        name="Credits plan",
        now=START,
        credit_entitlements=[
            {
                "credit_entitlement_id": entitlement.id,
                "credits_amount": str(scenario["credits_amount"]),
            }
        ],
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Week",
            "meters": [
                {
                    "meter_id": meter.id,
                    "credit_entitlement_id": entitlement.id,
                    "meter_units_per_credit": per_credit,
                    "free_threshold": free,
                }
                for meter, (free, per_credit) in zip(meters, scenario["meters"], strict=True)
            ],
        },
    )
    subscriptions = [
        product_services.create_subscription(
            customer=make_customer(email=f"c{n}@example.com"), product=product, now=START
        )
        for n in range(SUBSCRIPTIONS)
    ]
    return entitlement, meters, subscriptions


def send(model: Model, sub: int, meter: int, count: int, lag: int) -> None:
    open_start = START + model.closed * WEEK
    earliest = max(open_start, model.clock - timedelta(days=34))
    if model.clock - SECOND < earliest:
        return  # no moment left in the open period before now
    subscription = model.subscriptions[sub]
    events = []
    for i in range(count):
        moment = max(model.clock - SECOND - timedelta(seconds=lag + i), earliest)
        model.events[(sub, meter)].append(moment)
        model.sent += 1
        events.append(
            {
                "event_id": f"e{model.sent}",
                "customer_id": subscription.customer_id,
                "event_name": METERS[meter][1],
                "timestamp": moment.isoformat(),
            }
        )
    assert ingest_events(events, now=model.clock) == count


def manual(model: Model, entitlement, step: tuple) -> None:
    entry_type, sub, amount, expires_days = step
    customer_id = model.subscriptions[sub].customer_id
    rules = CreditRules.of(entitlement)
    with transaction.atomic():
        balance = ledger.locked_balance(entitlement.id, customer_id, now=model.clock)
        before, overage_before = balance.balance, balance.overage
        expires_at = model.clock + timedelta(days=expires_days) if expires_days else None
        if entry_type == "debit" and amount > before:
            with pytest.raises(InsufficientBalance):
                ledger.manual_entry(
                    balance, entry_type="debit", amount=amount, rules=rules, now=model.clock
                )
            return
        ledger.manual_entry(
            balance,
            entry_type=entry_type,
            amount=amount,
            rules=rules,
            now=model.clock,
            expires_at=expires_at,
        )
    balance.refresh_from_db()
    if entry_type == "debit":
        assert (balance.balance, balance.overage) == (before - amount, overage_before)
        return
    repays = entitlement.overage_behavior == OverageBehavior.CARRY_DEFICIT_AUTO_REPAY
    repay = min(overage_before, amount) if repays else Decimal(0)
    assert (balance.balance, balance.overage) == (before + amount - repay, overage_before - repay)


def cycle(model: Model) -> None:
    closing = []
    while model.bounds(model.closed)[1] <= model.clock:
        closing.append(model.closed)
        model.record(model.closed, model.bounds(model.closed)[1])
        model.closed += 1
    invoices = run_billing_cycle(now=model.clock)
    assert len(invoices) == len(closing) * SUBSCRIPTIONS
    for invoice in invoices:
        sub = [s.subscription_id for s in model.subscriptions].index(invoice.subscription_id)
        start, end = model.bounds(invoice.period_index)
        lines = invoice.lines.filter(kind=LineKind.USAGE).order_by("position")
        consumed = [line.consumed_units for line in lines]
        assert consumed == [
            sum(1 for t in model.events[(sub, meter)] if start <= t < end)
            for meter in range(len(METERS))
        ]
    for subscription in model.subscriptions:
        subscription.refresh_from_db()
        assert subscription.period_index == model.closed


def check(model: Model, entitlement) -> None:
    settings_ = model.scenario["entitlement"]
    step = Decimal(1).scaleb(-model.precision)
    for balance in CreditBalance.objects.filter(credit_entitlement=entitlement):
        entries = list(balance.entries.order_by("id"))
        assert balance.balance == sum((e.balance_change for e in entries), Decimal(0))
        assert balance.overage == sum((e.overage_change for e in entries), Decimal(0))
        previous_balance, previous_overage = Decimal(0), Decimal(0)
        for entry in entries:
            assert entry.balance_after == entry.balance_before + entry.balance_change
            assert entry.overage_after == entry.overage_before + entry.overage_change
            assert (entry.balance_before, entry.overage_before) == (
                previous_balance,
                previous_overage,
            )
            previous_balance, previous_overage = entry.balance_after, entry.overage_after
            assert entry.amount > 0
            assert entry.amount.quantize(step) == entry.amount  # never finer than the precision
        grants = list(CreditGrant.objects.filter(balance=balance))
        assert all(0 <= g.remaining_amount <= g.initial_amount for g in grants)
        assert all(g.remaining_amount == 0 for g in grants if g.is_expired)
        assert balance.balance == sum(
            (g.remaining_amount for g in grants if not g.is_expired), Decimal(0)
        )
        assert balance.balance >= 0 and balance.overage >= 0
        if not settings_["overage_enabled"]:
            assert balance.overage == 0
        elif settings_["overage_limit"] is not None:
            assert balance.overage <= settings_["overage_limit"]

    rows = {
        (row.subscription_id, row.meter_id, row.period_index): row
        for row in UsageDeduction.objects.all()
    }
    meter_ids = model.meter_ids
    got = {(sub, meter_ids.index(meter), period): row for (sub, meter, period), row in rows.items()}
    assert set(got) == set(model.expected)
    for key, row in got.items():
        assert row.credits_deducted >= 0 and row.credits_blocked >= 0
        assert row.credits_deducted + row.credits_blocked == model.expected[key], key
    total = sum((r.credits_deducted + r.credits_blocked for r in got.values()), Decimal(0))
    assert total == sum(model.expected.values(), Decimal(0))
    # What the checkpoints say was deducted is what the ledger shows for usage.
    usage_entries = LedgerEntry.objects.filter(
        balance__credit_entitlement=entitlement, reference_type="subscription"
    )
    deducted = sum(
        (e.amount for e in usage_entries.filter(transaction_type=TransactionType.CREDIT_DEDUCTED)),
        Decimal(0),
    )
    refunded = sum(
        (e.amount for e in usage_entries.filter(transaction_type=TransactionType.REFUND)),
        Decimal(0),
    )
    assert deducted - refunded == sum((r.credits_deducted for r in got.values()), Decimal(0))


def heavy_use(behavior: str, limit: int | None, precision: int) -> dict:
    """Usage well past the grants, so overage, the limit and the behavior at reset all apply."""
    return {
        "entitlement": {
            "precision": precision,
            "rollover_enabled": True,
            "rollover_percentage": 50,
            "max_rollover_count": 1,
            "expires_after_days": 7,
            "overage_enabled": True,
            "overage_limit": limit,
            "overage_behavior": behavior,
            "price_per_unit": "10",
            "currency": "USD",
        },
        "credits_amount": Decimal("100"),
        "meters": [(10, "0.5"), (0, "3")],
        "steps": [
            ("usage", 0, 0, 40, 0),
            ("usage", 1, 1, 50, 0),
            ("advance", 20),
            ("deduct",),
            ("credit", 0, Decimal("15"), None),
            ("usage", 0, 0, 90, 60),
            ("usage", 0, 1, 7, 0),
            ("deduct",),
            ("debit", 1, Decimal("30"), None),
            ("cycle", 0),  # exactly at the period's end
            ("advance", 20),
            ("usage", 0, 0, 150, 0),
            ("usage", 1, 1, 40, 0),
            ("deduct",),
            ("cycle", 3600),
            ("credit", 1, Decimal("25"), 1),
            ("advance", 50),
            ("deduct",),
            ("cycle", 1),
        ],
    }


@pytest.mark.django_db
@example(scenario=heavy_use(OverageBehavior.FORGIVE_AT_RESET, 40, 2))
@example(scenario=heavy_use(OverageBehavior.INVOICE_AT_BILLING, None, 0))
@example(scenario=heavy_use(OverageBehavior.CARRY_DEFICIT, 40, 3))
@example(scenario=heavy_use(OverageBehavior.CARRY_DEFICIT_AUTO_REPAY, 5, 1))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_ledger_grants_and_usage_deductions_stay_consistent(scenario):
    with transaction.atomic():  # each example starts from empty tables and leaves them empty
        entitlement, meters, subscriptions = build(scenario)
        model = Model(scenario, subscriptions, [meter.id for meter in meters])
        check(model, entitlement)
        for step in scenario["steps"]:
            if step[0] == "usage":
                send(model, *step[1:])
            elif step[0] == "advance":
                model.clock += timedelta(hours=step[1])
            elif step[0] == "deduct":
                run_deductions(now=model.clock)
                model.record(model.closed, model.clock)
            elif step[0] == "cycle":
                if step[1] is not None:
                    boundary = model.bounds(model.closed)[1] + timedelta(seconds=step[1])
                    model.clock = max(model.clock, boundary)
                cycle(model)
            else:
                manual(model, entitlement, step)
            check(model, entitlement)
        transaction.set_rollback(True)

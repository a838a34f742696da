"""Free trials (`trial_period_days`): the trial is the subscription's first period, [start,
start + N days), invoiced at zero with every unit of usage free; the paid periods are counted
from its end and billed as usual. Amounts are checked against numbers computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from credits.deduction import run_deductions
from credits.models import CreditGrant, LedgerEntry
from credits.services import create_entitlement
from products import services
from products.billing import run_billing_cycle
from products.history import usage_history
from products.models import LineKind, Subscription
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product

START = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
TRIAL_END = datetime(2026, 1, 24, 12, 0, tzinfo=UTC)  # 14 days of 24 h in UTC
PAID_END = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)  # one month, anchored at the trial's end
FEE, PRICE, FREE = 1000, Decimal("2"), 10
pytestmark = pytest.mark.django_db


def calls_at(subscription: Subscription, moments: list[datetime], prefix: str) -> None:
    events = [
        event(f"{prefix}{i}", subscription.customer_id, "api.call", timestamp=moment)
        for i, moment in enumerate(moments)
    ]
    ingest_events(events, now=max(moments) + timedelta(seconds=1))


@pytest.fixture
def trial():
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, str(PRICE), FREE)], fixed_price=FEE, now=START)
    return services.create_subscription(
        customer=make_customer(), product=product, now=START, trial_period_days=14
    )


def test_the_trial_is_free_and_the_first_paid_period_is_billed_from_its_end(trial):
    assert (trial.current_period_start, trial.current_period_end) == (START, TRIAL_END)
    in_trial = [START + timedelta(hours=h) for h in range(30)]
    in_trial.append(TRIAL_END - timedelta(microseconds=1))  # the trial's last instant
    calls_at(trial, in_trial, "t")
    paid = [TRIAL_END]  # on the boundary: the paid period's first instant, not the trial's
    paid += [TRIAL_END + timedelta(days=1, minutes=m) for m in range(24)]
    calls_at(trial, paid, "p")

    [trial_invoice] = run_billing_cycle(now=TRIAL_END + timedelta(minutes=1))
    assert (trial_invoice.period_start, trial_invoice.period_end) == (START, TRIAL_END)
    assert trial_invoice.total_minor == 0
    lines = {line.kind: line for line in trial_invoice.lines.all()}
    assert lines[LineKind.FIXED_FEE].amount_minor == 0
    usage = lines[LineKind.USAGE]
    assert (usage.consumed_units, usage.chargeable_units, usage.amount_minor) == (31, 0, 0)

    trial.refresh_from_db()
    assert (trial.current_period_start, trial.current_period_end) == (TRIAL_END, PAID_END)
    assert run_billing_cycle(now=PAID_END - timedelta(seconds=1)) == []  # still open
    [first_paid] = run_billing_cycle(now=PAID_END + timedelta(minutes=1))
    # By hand: 25 calls in [Jan 24 12:00, Feb 24 12:00), 10 free, 15 x 2 cents, plus the fee.
    expected = FEE + (len(paid) - FREE) * PRICE
    assert first_paid.total_minor == expected == 1030
    assert (first_paid.period_start, first_paid.period_end) == (TRIAL_END, PAID_END)
    [paid_usage] = first_paid.lines.filter(kind=LineKind.USAGE)
    assert (paid_usage.consumed_units, paid_usage.chargeable_units) == (25, 15)


def test_usage_history_shows_the_trial_free_while_it_runs(trial):
    calls_at(trial, [START + timedelta(hours=1 + h) for h in range(40)], "t")
    [open_trial] = usage_history(trial)
    assert (open_trial.start, open_trial.end) == (START, TRIAL_END)
    [entry] = open_trial.meters
    assert (entry.consumed_units, entry.chargeable_units, entry.total_price) == (40, 0, 0)


def test_no_credits_are_granted_or_deducted_during_the_trial():
    entitlement = create_entitlement(
        name="Credits", unit="credits", precision=0, rollover_enabled=False,
        overage_enabled=False, now=START,
    )  # fmt: skip
    calls = make_meter("API calls", "api.call", now=START)
    product = services.create_product(
        name="Credit plan",
        now=START,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": FEE,
            "payment_frequency_interval": "Month",
            "meters": [
                {
                    "meter_id": calls.id,
                    "credit_entitlement_id": entitlement.id,
                    "meter_units_per_credit": "1",
                }
            ],
        },
        credit_entitlements=[{"credit_entitlement_id": entitlement.id, "credits_amount": "100"}],
    )
    subscription = services.create_subscription(
        customer=make_customer(), product=product, now=START, trial_period_days=7
    )
    assert not CreditGrant.objects.exists()  # the trial grants nothing
    calls_at(subscription, [START + timedelta(hours=h) for h in range(5)], "t")
    run_deductions(now=START + timedelta(days=1))
    assert not LedgerEntry.objects.exists()  # and its usage costs no credits

    [trial_invoice] = run_billing_cycle(now=START + timedelta(days=7, seconds=1))
    assert trial_invoice.total_minor == 0
    [usage] = trial_invoice.lines.filter(kind=LineKind.USAGE)
    assert (usage.consumed_units, usage.credits_applied) == (5, 0)
    [grant] = CreditGrant.objects.all()  # the first paid period's grant, at its start
    assert (grant.initial_amount, grant.created_at) == (100, START + timedelta(days=7))
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize("days", [-1, 10_001, True, "7"])
def test_trial_days_outside_0_to_10000_are_refused(days):
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "1", 0)], now=START)
    with pytest.raises(services.InvalidInput) as refused:
        services.create_subscription(
            customer=make_customer(), product=product, now=START, trial_period_days=days
        )
    assert [e["field"] for e in refused.value.errors] == ["trial_period_days"]


def test_zero_trial_days_is_no_trial():
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "1", 0)], fixed_price=FEE, now=START)
    subscription = services.create_subscription(
        customer=make_customer(), product=product, now=START, trial_period_days=0
    )
    assert subscription.current_period_end == datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
    [invoice] = run_billing_cycle(now=datetime(2026, 2, 10, 12, 1, tzinfo=UTC))
    assert invoice.total_minor == FEE

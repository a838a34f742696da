"""Plan changes now of products with credits: the old period's credit close runs at the change
(usage so far converted with the free threshold prorated like a money meter's, overage settled
there), the old product's credits then follow their entitlement's expiry, the new product grants
its own at the new period's start. Amounts by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_site.errors import InvalidInput
from billing_site.periods import Period
from credits.deduction import deduct_meter_usage, run_deductions
from credits.models import LedgerEntry
from products import plan_changes
from products.billing import run_billing_cycle
from products.models import Invoice, LineKind, Subscription
from tests.credits.factories import balance_of, credit_product, make_entitlement, subscribe
from tests.products.factories import make_meter, make_product, send_usage

START = datetime(2026, 6, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
CHANGE = START + timedelta(days=3, hours=12)  # half of the weekly period
pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    calls = make_meter("Calls", "api.call", now=START)
    old_credits = make_entitlement(now=START, name="Old credits", expires_after_days=7)
    new_credits = make_entitlement(now=START, name="New credits")
    old = credit_product(old_credits, calls, credits_amount=100, now=START, free=10)
    new = credit_product(new_credits, calls, credits_amount=50, now=START, per_credit="2")
    subscription = subscribe(old, now=START)
    return subscription, old_credits, new_credits, new, calls


def test_the_credit_close_runs_at_the_change_and_the_new_product_grants_its_own(world):
    subscription, old_credits, new_credits, new, _ = world
    send_usage(subscription, "api.call", [{}] * 40, start=START + timedelta(days=1), prefix="a")
    run_deductions(now=START + timedelta(days=2))  # 40 - 10 free = 30 credits so far
    assert balance_of(old_credits, subscription).balance == 70
    send_usage(subscription, "api.call", [{}] * 20, start=START + timedelta(days=3), prefix="b")

    entries = LedgerEntry.objects.count()
    preview, _ = plan_changes.preview_change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately",
        now=CHANGE,
        render=str,
    )
    assert LedgerEntry.objects.count() == entries  # the preview kept no ledger entry
    assert balance_of(old_credits, subscription).balance == 70
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode="prorated_immediately", now=CHANGE
    )
    assert preview.lines == result.lines
    usage = result.invoice.lines.get(kind=LineKind.USAGE)
    # 60 calls; half the period: 10 free units -> 5; 55 credits in all (30 already deducted).
    assert (usage.consumed_units, usage.free_threshold, usage.credits_applied) == (60, 5, 55)
    assert result.invoice.total_minor == 0
    assert balance_of(old_credits, subscription).balance == 45
    assert balance_of(new_credits, subscription).balance == 50  # granted at the change

    # A deduction that read the old period before the change counts nothing into it after.
    subscription.refresh_from_db()
    old_period = Period(0, START, START + WEEK)
    send_usage(subscription, "api.call", [{}] * 30, start=CHANGE + timedelta(days=1), prefix="c")
    stale = Subscription.objects.get(pk=subscription.pk)
    stale.product_id = world[0].product_id
    [old_meter] = world[0].product.product_meters.all()
    assert (
        deduct_meter_usage(
            stale, old_meter, old_period, until=CHANGE + WEEK, now=CHANGE + WEEK, open_only=True
        )
        is None
    )
    run_deductions(now=CHANGE + timedelta(days=2))  # the new period: 30 calls / 2 = 15 credits
    assert balance_of(old_credits, subscription).balance == 45
    assert balance_of(new_credits, subscription).balance == 35

    # The old credits expire by their own rule (7 days after their grant), the new period closes.
    run_deductions(now=START + WEEK + timedelta(minutes=1))
    assert balance_of(old_credits, subscription).balance == 0
    [renewal] = run_billing_cycle(now=CHANGE + WEEK)
    assert (renewal.period_start, renewal.period_end) == (CHANGE, CHANGE + WEEK)
    line = renewal.lines.get(kind=LineKind.USAGE)
    assert (line.consumed_units, line.credits_applied) == (30, 15)
    assert balance_of(new_credits, subscription).balance == 35 + 50  # the next period's grant


def test_from_credits_to_money_the_usage_after_is_priced(world):
    subscription, old_credits, _, _, calls = world
    money = make_product([(calls, "2", 0)], fixed_price=700, interval="Week", now=START)
    send_usage(subscription, "api.call", [{}] * 20, start=START + timedelta(days=1), prefix="a")
    result = plan_changes.change_plan(
        subscription.pk, product_id=money.pk, quantity=1, mode="full_immediately", now=CHANGE
    )
    assert result.invoice.lines.get(kind=LineKind.USAGE).credits_applied == 20 - 5
    assert balance_of(old_credits, subscription).balance == 85
    send_usage(subscription, "api.call", [{}] * 9, start=CHANGE + timedelta(days=1), prefix="b")
    [renewal] = run_billing_cycle(now=CHANGE + WEEK)
    assert renewal.total_minor == 700 + 9 * 2
    assert Invoice.objects.count() == 2


@pytest.mark.parametrize(
    ("mode", "effective_at", "field"),
    [
        ("prorated_immediately_keep_cycle", "immediately", "proration_billing_mode"),
        ("difference_immediately", "immediately", "proration_billing_mode"),
        ("prorated_immediately", "next_billing_date", "effective_at"),
    ],
)
def test_kept_cycles_and_scheduled_changes_with_credits_are_refused(
    world, mode, effective_at, field
):
    subscription, _, _, new, _ = world
    with pytest.raises(InvalidInput) as refused:
        if effective_at == "next_billing_date":
            plan_changes.schedule_plan_change(
                subscription.pk, product_id=new.pk, quantity=1, mode=mode, now=CHANGE
            )
        else:
            plan_changes.change_plan(
                subscription.pk, product_id=new.pk, quantity=1, mode=mode, now=CHANGE
            )
    assert refused.value.code == "PLAN_CHANGE_NOT_SUPPORTED"
    assert [e["field"] for e in refused.value.errors] == [field]
    assert not Invoice.objects.exists()
    assert Decimal(balance_of(world[1], subscription).balance) == 100

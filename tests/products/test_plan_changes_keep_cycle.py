"""Plan changes that keep the billing cycle (`prorated_immediately_keep_cycle`,
`difference_immediately`): the period ends at the change with the old plan's invoice, the rest
of it up to the original next billing date is a short period (the lead) of the new plan, then
the cycle goes on at the original anchor. Every amount is a hand computation in fractions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from billing_site.errors import InvalidInput
from products import plan_changes, services
from products.billing import preview_lines, run_billing_cycle
from products.models import Invoice, LineKind, Subscription
from tests.factories import make_customer
from tests.products.factories import make_meter, make_product, subscribe
from tests.products.test_plan_changes import (
    CHANGE,
    NEW_FEE,
    NEW_FREE,
    NEW_PRICE,
    OLD_FEE,
    OLD_FREE,
    OLD_PRICE,
    PERIOD_END,
    START,
    calls,
    half_up,
)

pytestmark = pytest.mark.django_db

SECONDS = (PERIOD_END - START) // timedelta(seconds=1)  # 31 days: 2678400
USED = Fraction((CHANGE - START) // timedelta(seconds=1), SECONDS)  # 864007 / 2678400
LEFT = 1 - USED  # the lead's share: 1814393 / 2678400
MARCH = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def plans():
    meter = make_meter("API calls", "api.call", now=START)
    old = make_product([(meter, str(OLD_PRICE), OLD_FREE)], fixed_price=OLD_FEE, now=START)
    new = make_product(
        [(meter, str(NEW_PRICE), NEW_FREE)], fixed_price=NEW_FEE, now=START, name="Pro"
    )
    return subscribe(old, now=START), new


def lines_of(invoice: Invoice) -> dict:
    return {line.kind: line for line in invoice.lines.all()}


def test_the_hand_computation_is_what_the_tests_expect():
    assert (USED, LEFT) == (Fraction(864007, 2678400), Fraction(1814393, 2678400))  # noqa: SIM300
    assert int(OLD_FREE * USED) == 32 and int(NEW_FREE * LEFT) == 135
    assert half_up(OLD_FEE * USED) == 1000 and half_up(2 * NEW_FEE * LEFT) == 8129


@pytest.mark.parametrize(
    ("mode", "change_fee", "lead_fee"),
    [
        # Each plan's fee for its share of the period: 1000 + 8129 (2 seats of 6000).
        ("prorated_immediately_keep_cycle", half_up(OLD_FEE * USED), half_up(2 * NEW_FEE * LEFT)),
        # The period at the new plan's fee, in full, at the change; nothing more at its end.
        ("difference_immediately", 2 * NEW_FEE, 0),
    ],
)
def test_the_cycle_is_kept_and_the_lead_is_billed_at_the_original_date(
    plans, mode, change_fee, lead_fee
):
    subscription, new = plans
    calls(subscription, 150, CHANGE - timedelta(days=1), "before-")
    calls(subscription, 250, CHANGE + timedelta(days=1), "after-")

    preview, _ = plan_changes.preview_change_plan(
        subscription.pk, product_id=new.pk, quantity=2, mode=mode, now=CHANGE, render=str
    )
    assert not Invoice.objects.exists()
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=2, mode=mode, now=CHANGE
    )
    invoice = result.invoice
    assert (invoice.period_start, invoice.period_end) == (START, CHANGE)
    lines = lines_of(invoice)
    assert lines[LineKind.FIXED_FEE].amount_minor == change_fee
    assert lines[LineKind.USAGE].free_threshold == 32
    assert invoice.total_minor == change_fee + (150 - 32) * OLD_PRICE
    assert preview.lines == result.lines and preview.invoice.total_minor == invoice.total_minor

    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.current_period_end) == (
        CHANGE,
        PERIOD_END,
    )
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert (lead.period_start, lead.period_end) == (CHANGE, PERIOD_END)
    lead_lines = lines_of(lead)
    assert lead_lines[LineKind.FIXED_FEE].amount_minor == lead_fee
    usage = lead_lines[LineKind.USAGE]
    assert (usage.consumed_units, usage.free_threshold) == (250, 135)
    assert lead.total_minor == lead_fee + (250 - 135) * NEW_PRICE

    # Then the normal cycle at the original anchor, full fee and threshold of the new plan.
    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.current_period_end) == (
        PERIOD_END,
        MARCH,
    )
    [march] = run_billing_cycle(now=MARCH)
    assert march.total_minor == 2 * NEW_FEE


def test_the_upcoming_invoice_of_the_lead_is_what_it_closes_with(plans):
    subscription, new = plans
    plan_changes.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=CHANGE,
    )
    calls(subscription, 250, CHANGE + timedelta(days=1), "after-")
    subscription.refresh_from_db()
    current = subscription.period(subscription.period_index)
    upcoming = preview_lines(subscription, current, now=CHANGE + timedelta(days=2))
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert [line.amount_minor for line in lead.lines.order_by("position")] == [
        line.amount_minor for line in upcoming
    ]
    assert lead.total_minor == half_up(NEW_FEE * LEFT) + (250 - 135) * NEW_PRICE


def test_a_second_change_inside_the_lead_prorates_against_the_whole_period(plans):
    subscription, new = plans
    basic = make_product([], fixed_price=900, now=START, name="Basic")
    second = datetime(2026, 1, 21, tzinfo=UTC)
    between = Fraction((second - CHANGE) // timedelta(seconds=1), SECONDS)
    plan_changes.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=CHANGE,
    )
    calls(subscription, 300, second - timedelta(hours=1), "lead-")
    result = plan_changes.change_plan(
        subscription.pk,
        product_id=basic.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=second,
    )
    # The lead's fee and free units for [CHANGE, second): shares of the 31-day period.
    assert (result.invoice.period_start, result.invoice.period_end) == (CHANGE, second)
    lines = lines_of(result.invoice)
    assert lines[LineKind.FIXED_FEE].amount_minor == half_up(NEW_FEE * between)
    assert lines[LineKind.USAGE].free_threshold == int(NEW_FREE * between)
    assert result.invoice.total_minor == half_up(NEW_FEE * between) + (
        300 - int(NEW_FREE * between)
    )
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert (lead.period_start, lead.period_end) == (second, PERIOD_END)
    assert lead.total_minor == half_up(900 * Fraction((PERIOD_END - second).days, 31))

    # An immediate change inside a lead ends it with its share too, and restarts the cycle.
    subscription.refresh_from_db()
    third = PERIOD_END + timedelta(days=7)
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode="prorated_immediately", now=third
    )
    assert result.invoice.total_minor == half_up(900 * Fraction(7, 28))
    subscription.refresh_from_db()
    assert subscription.current_period_end == datetime(2026, 3, 8, tzinfo=UTC)


def test_a_difference_change_bills_the_period_once(plans):
    """After difference_immediately the period's fee is settled: a later change in the same
    period bills no fee for it again, whatever its mode."""
    subscription, new = plans
    basic = make_product([], fixed_price=900, now=START, name="Basic")
    plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode="difference_immediately", now=CHANGE
    )
    second = datetime(2026, 1, 21, tzinfo=UTC)
    for mode in ("full_immediately", "prorated_immediately_keep_cycle"):
        preview, _ = plan_changes.preview_change_plan(
            subscription.pk, product_id=basic.pk, quantity=1, mode=mode, now=second, render=str
        )
        assert preview.lines[0].amount_minor == 0
    plan_changes.change_plan(
        subscription.pk,
        product_id=basic.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=second,
    )
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert lead.total_minor == 0
    [march] = run_billing_cycle(now=MARCH)
    assert march.total_minor == 900


def test_the_grid_of_a_month_end_anchor_does_not_drift():
    jan31 = datetime(2026, 1, 31, tzinfo=UTC)
    old = make_product([], fixed_price=2800, now=jan31)
    new = make_product([], fixed_price=5600, now=jan31, name="Pro")
    subscription = subscribe(old, now=jan31)
    feb28 = datetime(2026, 2, 28, tzinfo=UTC)
    plan_changes.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=datetime(2026, 2, 14, tzinfo=UTC),
    )
    [lead] = run_billing_cycle(now=feb28)
    assert lead.total_minor == half_up(5600 * Fraction(14, 28))
    subscription.refresh_from_db()
    assert subscription.current_period_end == datetime(2026, 3, 31, tzinfo=UTC)


def test_after_a_trial_the_cycle_is_kept_on_the_paid_grid(plans):
    _, new = plans
    old = make_product([], fixed_price=3100, now=START, name="Trialled")
    trial = services.create_subscription(
        customer=make_customer(), product=old, now=START, trial_period_days=10
    )
    paid_start = START + timedelta(days=10)
    paid_end = datetime(2026, 2, 11, tzinfo=UTC)
    run_billing_cycle(now=paid_start)
    at = paid_start + timedelta(days=5)
    plan_changes.change_plan(
        trial.pk, product_id=new.pk, quantity=1, mode="difference_immediately", now=at
    )
    trial.refresh_from_db()
    assert (trial.current_period_start, trial.current_period_end) == (at, paid_end)
    run_billing_cycle(now=paid_end)
    trial.refresh_from_db()
    assert trial.current_period_end == datetime(2026, 3, 11, tzinfo=UTC)


@pytest.mark.parametrize("mode", plan_changes.KEEP_CYCLE_MODES)
def test_another_interval_or_a_trial_cannot_keep_the_cycle(plans, mode):
    subscription, _ = plans
    weekly = make_product([], fixed_price=700, interval="Week", now=START, name="Weekly")
    with pytest.raises(InvalidInput) as refused:
        plan_changes.change_plan(
            subscription.pk, product_id=weekly.pk, quantity=1, mode=mode, now=CHANGE
        )
    assert refused.value.code == "KEEP_CYCLE_INTERVAL_MISMATCH"
    assert [e["field"] for e in refused.value.errors] == ["proration_billing_mode"]
    trial = services.create_subscription(
        customer=make_customer(), product=weekly, now=START, trial_period_days=14
    )
    with pytest.raises(InvalidInput) as refused:
        plan_changes.change_plan(trial.pk, product_id=weekly.pk, quantity=1, mode=mode, now=CHANGE)
    assert refused.value.code == "KEEP_CYCLE_IN_TRIAL"
    assert not Invoice.objects.exists()
    assert Subscription.objects.get(pk=subscription.pk).current_period_start == START


def test_a_lead_in_its_grace_period_is_a_draft_finalized_with_its_share(plans, settings):
    """Late events of the lead enter its draft; the finalization recomputes it with the lead's
    share."""
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    subscription, new = plans
    plan_changes.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=CHANGE,
    )
    calls(subscription, 250, CHANGE + timedelta(days=1), "after-")
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert lead.status == "draft"
    calls(subscription, 10, PERIOD_END - timedelta(minutes=5), "late-")  # in the grace period
    run_billing_cycle(now=PERIOD_END + timedelta(minutes=61))
    lead.refresh_from_db()
    assert lead.status == "issued"
    lines = lines_of(lead)
    assert lines[LineKind.FIXED_FEE].amount_minor == half_up(NEW_FEE * LEFT)
    assert (lines[LineKind.USAGE].consumed_units, lines[LineKind.USAGE].free_threshold) == (
        260,
        135,
    )
    assert lead.total_minor == half_up(NEW_FEE * LEFT) + (260 - 135) * NEW_PRICE


def test_a_period_closing_with_a_scheduled_change_is_final_at_its_own_prices(plans, settings):
    """With a grace period, the invoice of a period a scheduled change ends is final at once:
    a draft would be recomputed at its finalization from the new product."""
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    subscription, new = plans
    basic = make_product([], fixed_price=900, now=START, name="Basic")
    plan_changes.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=CHANGE,
    )
    plan_changes.schedule_plan_change(
        subscription.pk,
        product_id=basic.pk,
        quantity=1,
        mode="do_not_bill",
        now=CHANGE + timedelta(seconds=1),
    )
    calls(subscription, 250, CHANGE + timedelta(days=1), "after-")
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert lead.status == "issued"
    assert lead.total_minor == half_up(NEW_FEE * LEFT) + (250 - 135) * NEW_PRICE
    run_billing_cycle(now=PERIOD_END + timedelta(minutes=61))
    lead.refresh_from_db()
    assert lead.total_minor == half_up(NEW_FEE * LEFT) + (250 - 135) * NEW_PRICE
    [march] = run_billing_cycle(now=MARCH)
    assert march.total_minor == 900

"""Plan changes that take effect now (products/plan_changes.py): the current period ends at the
change with a final invoice at the old plan's prices, a new cycle of the new plan starts there.
Every amount is compared with a hand computation in exact fractions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from django.db import connection

from audit.models import AuditEntry
from billing_site.errors import InvalidInput
from events.ingest import InvalidEvents
from products import plan_changes
from products.billing import run_billing_cycle
from products.models import Invoice, LineKind, Subscription
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe

START = datetime(2026, 1, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 2, 1, tzinfo=UTC)  # 31 days
CHANGE = datetime(2026, 1, 11, 0, 0, 7, tzinfo=UTC)  # 10 days and 7 seconds in
NEW_END = datetime(2026, 2, 11, 0, 0, 7, tzinfo=UTC)  # one month from the change
WEEK = timedelta(days=7)
OLD_FEE, OLD_PRICE, OLD_FREE = 3100, 2, 100
NEW_FEE, NEW_PRICE, NEW_FREE = 6000, 1, 200
pytestmark = pytest.mark.django_db


def half_up(amount: Fraction) -> int:
    return int(amount + Fraction(1, 2)) if amount >= 0 else -int(-amount + Fraction(1, 2))


USED = Fraction(
    (CHANGE - START) // timedelta(seconds=1), (PERIOD_END - START) // timedelta(seconds=1)
)
PRORATED_FREE = int(OLD_FREE * USED)  # 32 of 100: whole units, rounded down


@pytest.fixture
def plans():
    calls = make_meter("API calls", "api.call", now=START)
    old = make_product([(calls, str(OLD_PRICE), OLD_FREE)], fixed_price=OLD_FEE, now=START)
    new = make_product(
        [(calls, str(NEW_PRICE), NEW_FREE)], fixed_price=NEW_FEE, now=START, name="Pro"
    )
    return subscribe(old, now=START), new


def calls(subscription: Subscription, count: int, at: datetime, prefix: str) -> None:
    events = [
        event(f"{prefix}{i}", subscription.customer_id, "api.call", timestamp=at)
        for i in range(count)
    ]
    ingest_events(events, now=max(at, START) + timedelta(seconds=1))


def test_the_hand_computation_is_what_the_test_expects():
    assert Fraction(864007, 2678400) == USED  # noqa: SIM300 - the constant under test first
    assert PRORATED_FREE == 32  # noqa: SIM300


@pytest.mark.parametrize(
    ("mode", "old_fee"),
    [
        ("prorated_immediately", half_up(OLD_FEE * USED)),  # 1000.00 of 3100 -> 1000
        ("full_immediately", OLD_FEE),
        ("do_not_bill", 0),
    ],
)
def test_a_change_mid_period_bills_the_old_plan_up_to_it_and_the_new_plan_after(
    plans, mode, old_fee
):
    subscription, new = plans
    calls(subscription, 150, CHANGE - timedelta(days=1), "before-")
    calls(subscription, 250, CHANGE + timedelta(days=1), "after-")

    preview, _ = plan_changes.preview_change_plan(
        subscription.pk, product_id=new.pk, quantity=2, mode=mode, now=CHANGE, render=str
    )
    assert not Invoice.objects.exists()  # the preview kept nothing
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=2, mode=mode, now=CHANGE
    )

    invoice = result.invoice
    assert (invoice.period_start, invoice.period_end) == (START, CHANGE)
    lines = {line.kind: line for line in invoice.lines.all()}
    assert lines[LineKind.FIXED_FEE].amount_minor == old_fee
    usage = lines[LineKind.USAGE]
    assert usage.consumed_units == 150
    assert usage.free_threshold == PRORATED_FREE
    assert usage.amount_minor == (150 - PRORATED_FREE) * OLD_PRICE
    assert invoice.total_minor == old_fee + (150 - PRORATED_FREE) * OLD_PRICE
    assert invoice.status == "issued" and invoice.number
    assert preview.invoice.total_minor == invoice.total_minor
    assert preview.lines == result.lines

    subscription.refresh_from_db()
    assert (subscription.product_id, subscription.quantity) == (new.pk, 2)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        CHANGE,
        NEW_END,
    )
    assert subscription.finalized_until == CHANGE

    [renewal] = run_billing_cycle(now=NEW_END)
    assert (renewal.period_start, renewal.period_end) == (CHANGE, NEW_END)
    renewal_lines = {line.kind: line for line in renewal.lines.all()}
    assert renewal_lines[LineKind.FIXED_FEE].amount_minor == NEW_FEE * 2  # seats
    assert renewal_lines[LineKind.USAGE].consumed_units == 250
    assert renewal.total_minor == NEW_FEE * 2 + (250 - NEW_FREE) * NEW_PRICE
    assert AuditEntry.objects.filter(action="plan_changed", object_id=subscription.pk).count() == 1


# The modes with their next billing date after the change: a new cycle, or the cycle kept.
CYCLES = [("do_not_bill", NEW_END), ("prorated_immediately_keep_cycle", PERIOD_END)]


@pytest.mark.parametrize(("mode", "renewal_at"), CYCLES)
def test_events_just_before_at_and_after_the_change_land_on_exactly_one_invoice(
    plans, mode, renewal_at
):
    subscription, new = plans
    just_before = CHANGE - timedelta(microseconds=1)
    just_after = CHANGE + timedelta(microseconds=1)
    for name, at in (("b", just_before), ("at", CHANGE), ("a", just_after)):
        calls(subscription, 1, at, name)
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode=mode, now=CHANGE
    )
    assert result.invoice.lines.get(kind=LineKind.USAGE).consumed_units == 1
    with pytest.raises(InvalidEvents):  # the old period is invoiced: a late event is refused
        calls(subscription, 1, just_before, "late")
    [renewal] = run_billing_cycle(now=renewal_at)
    assert renewal.lines.get(kind=LineKind.USAGE).consumed_units == 2


def test_a_change_during_the_trial_ends_the_free_trial_at_the_change(plans):
    _, new = plans
    from products import services

    trial = services.create_subscription(
        customer=make_customer(), product=new, now=START, trial_period_days=14
    )
    other = make_product([], fixed_price=100, now=START, name="Basic")
    result = plan_changes.change_plan(
        trial.pk, product_id=other.pk, quantity=1, mode="full_immediately", now=CHANGE
    )
    assert result.invoice.total_minor == 0  # the trial stays free
    trial.refresh_from_db()
    assert (trial.current_period_start, trial.current_period_end) == (CHANGE, NEW_END)


def test_a_product_of_another_interval_restarts_the_cycle_at_its_own_interval(plans):
    subscription, _ = plans
    weekly = make_product([], fixed_price=700, interval="Week", now=START, name="Weekly")
    plan_changes.change_plan(
        subscription.pk, product_id=weekly.pk, quantity=1, mode="do_not_bill", now=CHANGE
    )
    subscription.refresh_from_db()
    assert subscription.current_period_end == CHANGE + timedelta(days=7)
    [renewal] = run_billing_cycle(now=CHANGE + timedelta(days=7))
    assert renewal.total_minor == 700
    assert subscription.period(subscription.period_index + 1).end == CHANGE + timedelta(days=14)


def test_a_due_period_is_closed_before_the_change(plans):
    subscription, new = plans
    late = PERIOD_END + timedelta(days=3)
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode="full_immediately", now=late
    )
    assert [(i.period_start, i.period_end) for i in Invoice.objects.order_by("period_index")] == [
        (START, PERIOD_END),
        (PERIOD_END, late),
    ]
    assert result.invoice.period_start == PERIOD_END


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"product_id": "pdt_missing"}, "product_id"),
        ({"quantity": 0}, "quantity"),
        ({"mode": "sometimes"}, "proration_billing_mode"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(plans, change, field):
    subscription, new = plans
    arguments = {"product_id": new.pk, "quantity": 1, "mode": "prorated_immediately", **change}
    with pytest.raises(InvalidInput) as refused:
        plan_changes.change_plan(subscription.pk, **arguments, now=CHANGE)
    assert [e["field"] for e in refused.value.errors] == [field]
    assert not Invoice.objects.exists()
    subscription.refresh_from_db()
    assert subscription.product_id != new.pk and subscription.current_period_start == START


def test_archived_products_and_other_currencies_are_refused(plans):
    subscription, new = plans
    from products import services

    services.set_product_archived(new, archived=True, now=START)
    euros = make_product([], fixed_price=100, currency="EUR", now=START, name="Euro")
    for product in (new, euros):
        with pytest.raises(InvalidInput) as refused:
            plan_changes.change_plan(
                subscription.pk, product_id=product.pk, quantity=1, mode="do_not_bill", now=CHANGE
            )
        assert refused.value.errors[0]["field"] == "product_id"
    assert not Invoice.objects.exists()


def test_cancelling_now_bills_the_period_so_far_with_a_prorated_fee(plans):
    subscription, new = plans
    calls(subscription, 150, CHANGE - timedelta(days=1), "before-")
    plan_changes.schedule_plan_change(
        subscription.pk, product_id=new.pk, quantity=1, mode="do_not_bill", now=CHANGE
    )
    result = plan_changes.cancel_now(
        subscription.pk, now=CHANGE, cancel_reason="cancelled_by_customer"
    )
    lines = {line.kind: line for line in result.invoice.lines.all()}
    assert lines[LineKind.FIXED_FEE].amount_minor == half_up(OLD_FEE * USED)
    assert lines[LineKind.USAGE].amount_minor == (150 - PRORATED_FREE) * OLD_PRICE
    subscription.refresh_from_db()
    assert (subscription.status, subscription.cancelled_at) == ("cancelled", CHANGE)
    assert subscription.cancel_reason == "cancelled_by_customer"
    assert not Subscription.objects.filter(pk=subscription.pk, scheduled_change__isnull=False)
    assert run_billing_cycle(now=NEW_END) == []  # nothing more to bill
    with pytest.raises(plan_changes.SubscriptionNotActive):
        plan_changes.cancel_now(subscription.pk, now=CHANGE)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("mode", "renewal_at"), CYCLES)
def test_events_racing_a_change_are_on_exactly_one_invoice_or_refused(plans, mode, renewal_at):
    subscription, new = plans
    customer = subscription.customer_id
    accepted: list[int] = []
    refused: list[int] = []
    sending = threading.Event()

    def ingest_in_batches():
        try:
            for n in range(500):
                batch = [
                    event(f"race-{n}-{name}", customer, "api.call", timestamp=at)
                    for name, at in (
                        ("before", CHANGE - timedelta(microseconds=1)),
                        ("at", CHANGE),
                        ("after", CHANGE + timedelta(microseconds=1)),
                    )
                ]
                try:
                    ingest_events(batch, now=CHANGE + timedelta(seconds=1))
                    accepted.append(n)
                except InvalidEvents:
                    refused.append(n)
                    break  # the change has happened: every later batch is refused too
                if n == 3:
                    sending.set()  # change the plan while batches keep coming
        finally:
            connection.close()

    sender = threading.Thread(target=ingest_in_batches)
    sender.start()
    sending.wait(timeout=30)
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode=mode, now=CHANGE
    )
    sender.join()
    assert refused and len(accepted) >= 4
    # Each acknowledged batch: its "before" event on the change invoice, the others after it.
    assert result.invoice.lines.get(kind=LineKind.USAGE).consumed_units == len(accepted)
    [renewal] = run_billing_cycle(now=renewal_at)
    assert renewal.lines.get(kind=LineKind.USAGE).consumed_units == 2 * len(accepted)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["prorated_immediately", "difference_immediately"])
def test_two_concurrent_changes_leave_one_consistent_result(plans, mode):
    subscription, new = plans
    basic = make_product([], fixed_price=100, now=START, name="Basic")
    errors: list[Exception] = []

    def change(product_id: str):
        try:
            plan_changes.change_plan(
                subscription.pk,
                product_id=product_id,
                quantity=1,
                mode=mode,
                now=CHANGE,
            )
        except Exception as error:  # noqa: BLE001 - collected and checked below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(p,)) for p in (new.pk, basic.pk)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One applied; the other waited for the lock, found the period starting at its own moment
    # and was refused: one invoice for the one period that ended.
    assert [type(e) for e in errors] == [plan_changes.ConcurrentChange]
    subscription.refresh_from_db()
    [invoice] = Invoice.objects.all()
    assert (invoice.period_start, invoice.period_end) == (START, CHANGE)
    assert subscription.period_index == 1 and subscription.product_id in (new.pk, basic.pk)
    assert subscription.current_period_start == CHANGE


def test_usage_history_shows_the_short_period_and_the_new_cycle(plans):
    from products.history import usage_history

    subscription, new = plans
    calls(subscription, 150, CHANGE - timedelta(days=1), "before-")
    calls(subscription, 7, CHANGE + timedelta(days=1), "after-")
    plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode="do_not_bill", now=CHANGE
    )
    subscription.refresh_from_db()
    current, closed = usage_history(subscription)
    assert (closed.start, closed.end) == (START, CHANGE)
    assert closed.meters[0].consumed_units == 150
    assert (current.start, current.end, current.invoice_id) == (CHANGE, NEW_END, None)
    assert current.meters[0].consumed_units == 7
    assert current.meters[0].free_threshold == NEW_FREE


def test_a_scheduled_change_applies_when_the_billing_cycle_closes_the_period(plans):
    subscription, new = plans
    calls(subscription, 150, CHANGE, "before-")
    schedule = plan_changes.schedule_plan_change(
        subscription.pk, product_id=new.pk, quantity=3, mode="prorated_immediately", now=CHANGE
    )
    assert not Invoice.objects.exists()
    [closing] = run_billing_cycle(now=PERIOD_END)
    # The whole period at the old plan: full fee, full free threshold.
    assert closing.total_minor == OLD_FEE + (150 - OLD_FREE) * OLD_PRICE
    subscription.refresh_from_db()
    assert (subscription.product_id, subscription.quantity) == (new.pk, 3)
    next_end = datetime(2026, 3, 1, tzinfo=UTC)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        PERIOD_END,
        next_end,
    )
    assert not type(schedule).objects.exists()
    [renewal] = run_billing_cycle(now=next_end)
    assert renewal.total_minor == NEW_FEE * 3


def test_a_scheduled_change_is_replaced_only_when_asked_and_can_be_cancelled(plans):
    subscription, new = plans
    basic = make_product([], fixed_price=100, now=START, name="Basic")
    arguments = {"quantity": 1, "mode": "do_not_bill", "now": CHANGE}
    plan_changes.schedule_plan_change(subscription.pk, product_id=new.pk, **arguments)
    with pytest.raises(plan_changes.ScheduledChangeExists):
        plan_changes.schedule_plan_change(subscription.pk, product_id=basic.pk, **arguments)
    with pytest.raises(plan_changes.ScheduledChangeExists):  # an immediate change too
        plan_changes.change_plan(subscription.pk, product_id=basic.pk, **arguments)
    plan_changes.schedule_plan_change(
        subscription.pk, product_id=basic.pk, replace=True, **arguments
    )
    subscription.refresh_from_db()
    assert subscription.scheduled_change.product_id == basic.pk
    plan_changes.cancel_scheduled_change(subscription.pk)
    from billing_site.errors import NotFound

    with pytest.raises(NotFound):
        plan_changes.cancel_scheduled_change(subscription.pk)
    run_billing_cycle(now=PERIOD_END)
    subscription.refresh_from_db()
    assert subscription.product_id not in (new.pk, basic.pk)


def test_the_admin_page_shows_every_plan_the_subscription_was_on(plans, admin_client):
    from django.contrib.admin.utils import quote

    subscription, new = plans
    basic = make_product([], fixed_price=100, now=START, name="Basic")
    plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=2, mode="do_not_bill", now=CHANGE
    )
    plan_changes.schedule_plan_change(
        subscription.pk, product_id=basic.pk, quantity=1, mode="do_not_bill", now=CHANGE + WEEK
    )
    run_billing_cycle(now=NEW_END)
    page = admin_client.get(f"/admin/products/subscription/{quote(subscription.pk)}/change/")
    html = page.content.decode()
    rows = [
        f"from {START.isoformat()}: Plan ({subscription.product_id}) x 1",
        f"from {CHANGE.isoformat()}: Pro ({new.pk}) x 2",
        f"from {NEW_END.isoformat()}: Basic ({basic.pk}) x 1",
    ]
    positions = [html.index(row) for row in rows]
    assert positions == sorted(positions)

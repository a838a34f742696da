"""change_plan, preview_change_plan and an immediate cancellation through the SDK's strict
client: every answer parses, the preview is the invoice to the cent, bad input names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import dodopayments
import pytest
from django.utils import timezone

from products import services
from products.models import Invoice, LineKind, Subscription
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product
from tests.webhooks.factories import make_endpoint
from webhooks.models import WebhookEvent

START = datetime(2026, 1, 1, tzinfo=UTC)
CHANGE = datetime(2026, 1, 11, 0, 0, 7, tzinfo=UTC)
USED = Fraction(864007, 2678400)  # (CHANGE - START) / 31 days, in seconds
pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The server's `now`: the change moment, so preview and change see the same instant."""
    monkeypatch.setattr(timezone, "now", lambda: CHANGE)


@pytest.fixture
def plans():
    calls = make_meter("API calls", "api.call", now=START)
    old = make_product([(calls, "2", 100)], fixed_price=3100, now=START)
    new = make_product([(calls, "1", 200)], fixed_price=6000, now=START, name="Pro")
    subscription = services.create_subscription(
        customer=make_customer(), product=old, now=START, billing={"country": "US"}
    )
    events = [
        event(f"e{i}", subscription.customer_id, "api.call", timestamp=CHANGE - timedelta(hours=1))
        for i in range(150)
    ]
    ingest_events(events, now=CHANGE)
    return subscription, new


def test_the_preview_is_what_the_change_then_invoices(strict_in_process, clock, plans):
    subscription, new = plans
    make_endpoint("https://hooks.example/plan", "subscription.plan_changed")
    preview = strict_in_process.subscriptions.preview_change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=2,
        proration_billing_mode="prorated_immediately",
    )
    fee = int(3100 * USED + Fraction(1, 2))  # half-up: 1000
    usage = (150 - int(100 * USED)) * 2  # 32 of the 100 free units: 236
    charge = preview.immediate_charge
    assert charge.summary.total_amount == fee + usage
    assert charge.effective_at == CHANGE
    [plan_item, meter_item] = charge.line_items
    assert (plan_item.type, plan_item.product_id, plan_item.quantity) == (
        "subscription",
        subscription.product_id,
        1,
    )
    assert plan_item.proration_factor == pytest.approx(float(USED))
    assert (meter_item.type, meter_item.units_consumed, meter_item.free_threshold) == (
        "meter",
        "150",
        32,
    )
    assert meter_item.subtotal == usage
    assert (preview.new_plan.product_id, preview.new_plan.quantity) == (new.pk, 2)
    assert preview.new_plan.previous_billing_date == CHANGE
    assert not Invoice.objects.exists()
    assert Subscription.objects.get(pk=subscription.pk).product_id == subscription.product_id

    answer = strict_in_process.subscriptions.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=2,
        proration_billing_mode="prorated_immediately",
        effective_at="immediately",
        cancel_scheduled_change_plan=False,
        collect_via_payment_link=False,
        addons=[],
        discount_code=None,
    )
    assert answer.payment_link is None
    invoice = Invoice.objects.get()
    assert invoice.total_minor == charge.summary.total_amount
    assert invoice.lines.get(kind=LineKind.FIXED_FEE).amount_minor == fee
    after = strict_in_process.subscriptions.retrieve(subscription.pk)
    assert (after.product_id, after.quantity, after.previous_billing_date) == (new.pk, 2, CHANGE)
    [hook] = WebhookEvent.objects.filter(event_type="subscription.plan_changed")
    assert json.loads(hook.body)["data"]["product_id"] == new.pk


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"product_id": "pdt_missing"}, "product_id"),
        ({"quantity": 0}, "quantity"),
        ({"proration_billing_mode": "sometimes"}, "proration_billing_mode"),
        ({"effective_at": "sometime"}, "effective_at"),
        ({"discount_code": "SAVE10"}, "discount_code"),
        ({"collect_via_payment_link": True}, "collect_via_payment_link"),
        ({"cancel_older_payment_link": True}, "cancel_older_payment_link"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_nothing_changes(
    strict_in_process, clock, plans, change, field
):
    subscription, new = plans
    arguments = {
        "product_id": new.pk,
        "quantity": 1,
        "proration_billing_mode": "full_immediately",
        **change,
    }
    for call in (
        strict_in_process.subscriptions.change_plan,
        strict_in_process.subscriptions.preview_change_plan,
    ):
        with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
            call(subscription.pk, **arguments)
        assert field in [e["field"] for e in refused.value.body["errors"]]
    assert not Invoice.objects.exists()
    assert Subscription.objects.get(pk=subscription.pk).product_id == subscription.product_id


def test_cancelling_now_closes_the_period_with_a_final_invoice(strict_in_process, clock, plans):
    subscription, _ = plans
    make_endpoint("https://hooks.example/cancel", "subscription.cancelled")
    answer = strict_in_process.subscriptions.update(
        subscription.pk, status="cancelled", cancel_reason="cancelled_by_merchant"
    )
    assert (answer.status, answer.cancelled_at) == ("cancelled", CHANGE)
    invoice = Invoice.objects.get()
    assert (invoice.period_start, invoice.period_end) == (START, CHANGE)
    fee = int(3100 * USED + Fraction(1, 2))
    assert invoice.total_minor == fee + (150 - 32) * 2
    assert Subscription.objects.get(pk=subscription.pk).cancel_reason == "cancelled_by_merchant"
    assert WebhookEvent.objects.filter(event_type="subscription.cancelled").count() == 1
    again = strict_in_process.subscriptions.update(subscription.pk, status="cancelled")
    assert again.status == "cancelled" and Invoice.objects.count() == 1
    with pytest.raises(dodopayments.ConflictError):
        strict_in_process.subscriptions.change_plan(
            subscription.pk,
            product_id=subscription.product_id,
            quantity=1,
            proration_billing_mode="do_not_bill",
        )


def test_a_change_at_the_next_billing_date_is_shown_and_can_be_cancelled(
    strict_in_process, clock, plans
):
    subscription, new = plans
    arguments = {
        "product_id": new.pk,
        "quantity": 2,
        "proration_billing_mode": "prorated_immediately",
        "effective_at": "next_billing_date",
    }
    preview = strict_in_process.subscriptions.preview_change_plan(subscription.pk, **arguments)
    assert preview.immediate_charge.summary.total_amount == 0
    assert preview.new_plan.scheduled_change.product_id == new.pk
    assert strict_in_process.subscriptions.retrieve(subscription.pk).scheduled_change is None

    strict_in_process.subscriptions.change_plan(subscription.pk, **arguments)
    shown = strict_in_process.subscriptions.retrieve(subscription.pk).scheduled_change
    assert (shown.product_id, shown.quantity, shown.product_name) == (new.pk, 2, "Pro")
    assert shown.effective_at == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(dodopayments.ConflictError):
        strict_in_process.subscriptions.change_plan(subscription.pk, **arguments)
    strict_in_process.subscriptions.change_plan(
        subscription.pk, **{**arguments, "quantity": 4}, cancel_scheduled_change_plan=True
    )
    assert strict_in_process.subscriptions.retrieve(subscription.pk).scheduled_change.quantity == 4

    strict_in_process.subscriptions.cancel_change_plan(subscription.pk)
    assert strict_in_process.subscriptions.retrieve(subscription.pk).scheduled_change is None
    with pytest.raises(dodopayments.NotFoundError):
        strict_in_process.subscriptions.cancel_change_plan(subscription.pk)
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(
    ("mode", "change_fee", "lead_fee"),
    [
        # 1000 (the old fee for 10 days 7 s of 31 days) + the new fee x 2 seats for the rest.
        ("prorated_immediately_keep_cycle", 1000, int(12000 * (1 - USED) + Fraction(1, 2))),
        ("difference_immediately", 12000, 0),  # the period at the new plan, in full, now
    ],
)
def test_a_change_that_keeps_the_cycle_through_the_sdk(
    strict_in_process, clock, plans, mode, change_fee, lead_fee
):
    from products.billing import run_billing_cycle

    subscription, new = plans
    preview = strict_in_process.subscriptions.preview_change_plan(
        subscription.pk, product_id=new.pk, quantity=2, proration_billing_mode=mode
    )
    usage = (150 - 32) * 2
    assert preview.immediate_charge.summary.total_amount == change_fee + usage
    [plan_item, _] = preview.immediate_charge.line_items
    assert plan_item.product_id == (
        new.pk if mode == "difference_immediately" else subscription.product_id
    )
    assert preview.new_plan.next_billing_date == datetime(2026, 2, 1, tzinfo=UTC)
    answer = strict_in_process.subscriptions.change_plan(
        subscription.pk, product_id=new.pk, quantity=2, proration_billing_mode=mode
    )
    invoice = Invoice.objects.get(pk=answer.invoice_id)
    assert invoice.total_minor == preview.immediate_charge.summary.total_amount
    after = strict_in_process.subscriptions.retrieve(subscription.pk)
    assert (after.previous_billing_date, after.next_billing_date) == (
        CHANGE,
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    events = [
        event(f"n{i}", subscription.customer_id, "api.call", timestamp=CHANGE + timedelta(days=1))
        for i in range(250)
    ]
    ingest_events(events, now=CHANGE + timedelta(days=1))
    [lead] = run_billing_cycle(now=datetime(2026, 2, 1, tzinfo=UTC))
    # 200 free units x 1814393/2678400 = 135.48 -> 135; 115 units at 1 cent.
    assert lead.total_minor == lead_fee + (250 - 135) * 1


@pytest.mark.parametrize(("mode", "fee"), [("full_immediately", 3100), ("do_not_bill", 0)])
def test_the_other_modes_through_the_sdk_bill_the_hand_computed_fee(
    strict_in_process, clock, plans, mode, fee
):
    subscription, new = plans
    preview = strict_in_process.subscriptions.preview_change_plan(
        subscription.pk, product_id=new.pk, quantity=1, proration_billing_mode=mode
    )
    expected = fee + (150 - 32) * 2  # the free threshold prorated whatever the fee mode
    assert preview.immediate_charge.summary.total_amount == expected
    answer = strict_in_process.subscriptions.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, proration_billing_mode=mode
    )
    assert Invoice.objects.get(pk=answer.invoice_id).total_minor == expected
    after = strict_in_process.subscriptions.retrieve(subscription.pk)
    assert after.next_billing_date == datetime(2026, 2, 11, 0, 0, 7, tzinfo=UTC)

"""Subscriptions that change now: a plan change or a cancellation that takes effect at once.

Both end the current period at the change moment with a final invoice for it (usage so far at
the old product's prices, free thresholds and the fixed fee as the mode says), then the
subscription either starts a new cycle at that moment on the new product or ends. Lock order,
as the period close: the subscription row, then the customer's ingest slots (exclusive), so an
event before the moment is on that invoice or refused, and one at or after it is the new
period's. The preview runs the very same change in a savepoint that is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import Conflict, InvalidInput, NotFound
from billing_site.locks import lock_customer_slots
from billing_site.money import round_minor
from billing_site.periods import Period
from products import billing, payment_outbox, proofs, webhook_events
from products.billing import LineDraft
from products.models import (
    Invoice,
    InvoiceStatus,
    LineKind,
    Product,
    ScheduledPlanChange,
    Subscription,
    SubscriptionStatus,
)
from webhooks.models import EventType

PRORATION_MODES = (
    "prorated_immediately",
    "full_immediately",
    "difference_immediately",
    "do_not_bill",
    "prorated_immediately_keep_cycle",
)
# Fees are billed in arrears here (on the invoice that closes their period). The two modes that
# keep the billing cycle end the period at the change too, and leave a short period of the new
# plan (the *lead*) up to the original next billing date; they differ in the fixed fee:
# `prorated_immediately_keep_cycle` bills each plan's fee for its share of the period, and
# `difference_immediately` bills the period's fee at the new plan, in full, at the change (what
# Dodo's "pay the difference" comes to in arrears: the period costs the new plan's fee).
KEEP_CYCLE_MODES = ("prorated_immediately_keep_cycle", "difference_immediately")


class SubscriptionNotActive(Conflict):
    code = "SUBSCRIPTION_NOT_ACTIVE"


class ScheduledChangeExists(Conflict):
    code = "SCHEDULED_PLAN_CHANGE_EXISTS"


class ConcurrentChange(Conflict):
    """Another change took effect at or after this one's moment while it waited for the lock."""

    code = "SUBSCRIPTION_CHANGED_CONCURRENTLY"


def _fail(field: str, message: str, code: str = "INVALID_REQUEST_BODY") -> InvalidInput:
    return InvalidInput(message, errors=[{"field": field, "message": message}], code=code)


@dataclass(frozen=True)
class Plan:
    """What a subscription was on: the product, its seats, the fixed fee per seat."""

    product_id: str
    quantity: int
    unit_price: int
    name: str = ""

    @classmethod
    def of(cls, subscription: Subscription) -> Plan:
        return cls.of_product(subscription.product, subscription.quantity)

    @classmethod
    def of_product(cls, product: Product, quantity: int) -> Plan:
        return cls(product.pk, quantity, product.fixed_price_minor, product.name)


@dataclass(frozen=True)
class ChangeResult:
    subscription: Subscription
    old_plan: Plan
    invoice: Invoice
    period: Period  # the period that ended at the change
    proration_factor: Decimal  # the share of a full period the fixed fee line is billed for
    lines: list[LineDraft]
    fee_plan: Plan | None = None  # whose fee the fixed fee line is (the old plan when None)


_SECOND = timedelta(seconds=1)


def share(part: timedelta, whole: Period) -> Decimal:
    """`part` as a share of the whole period `whole`, to the second (exact decimal, no float)."""
    return Decimal(part // _SECOND) / Decimal((whole.end - whole.start) // _SECOND)


@dataclass(frozen=True)
class FeeTerms:
    """How the fixed fee line of a period ending early at a change is priced."""

    mode: str
    used: Decimal  # the share of the full period from the current period's start to the change
    covered: Decimal  # the share of the full period the current period covers (1 unless a lead)
    already_billed: bool  # a lead whose fee a difference_immediately change billed already
    new_plan: Plan | None = None  # for difference_immediately: the plan it bills


def fixed_fee_line(subscription: Subscription, terms: FeeTerms) -> tuple[LineDraft, Decimal]:
    """The fee line of the short period and its proration factor: the old fee prorated to the
    second, in full, nothing, or (difference_immediately) the new plan's fee for the period."""
    product = subscription.product
    fee = product.fixed_price_minor * subscription.quantity
    name = product.name
    if terms.already_billed:
        line = LineDraft(LineKind.FIXED_FEE, f"{name}: fixed fee, billed at the plan change", 0)
        return line, Decimal(0)
    if terms.mode == "full_immediately":
        amount = fee if terms.covered == 1 else round_minor(fee * terms.covered)
        return LineDraft(LineKind.FIXED_FEE, f"{name}: fixed fee", amount), terms.covered
    if terms.mode == "do_not_bill":
        line = LineDraft(LineKind.FIXED_FEE, f"{name}: fixed fee, not billed (plan change)", 0)
        return line, terms.used
    if terms.mode == "difference_immediately" and terms.new_plan is not None:
        new_fee = terms.new_plan.unit_price * terms.new_plan.quantity
        line = LineDraft(
            LineKind.FIXED_FEE,
            f"{terms.new_plan.name}: fixed fee of the period at the new plan "
            "(difference_immediately)",
            new_fee if terms.covered == 1 else round_minor(new_fee * terms.covered),
        )
        return line, terms.covered
    line = LineDraft(
        LineKind.FIXED_FEE,
        f"{name}: fixed fee, prorated {terms.used:.6f} of the period",
        round_minor(fee * terms.used),
    )
    return line, terms.used


def check_plan_change(
    subscription: Subscription,
    *,
    product_id: str,
    quantity: int,
    mode: str,
    scheduled: bool = False,
) -> Product:
    """The new product, or a 422 naming the field that cannot be applied; nothing written."""
    if mode not in PRORATION_MODES:
        raise _fail("proration_billing_mode", f"Unknown proration mode {mode!r}.")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise _fail("quantity", "Must be an integer of at least 1.", "INVALID_QUANTITY")
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise _fail("product_id", f"No product {product_id!r}.")
    if product.archived_at is not None:
        raise _fail("product_id", "The product is archived.")
    if product.currency != subscription.product.currency:
        raise _fail(
            "product_id",
            f"The product is priced in {product.currency}, the subscription in "
            f"{subscription.product.currency}: changing currency is not supported.",
            "CURRENCY_CHANGE_NOT_SUPPORTED",
        )
    if mode in KEEP_CYCLE_MODES:
        if product.interval != subscription.interval:
            raise _fail(
                "proration_billing_mode",
                f"{mode} keeps the billing cycle, but the product renews every "
                f"{product.interval.count} {product.interval.unit} and the subscription every "
                f"{subscription.interval.count} {subscription.interval.unit}: use "
                "prorated_immediately (a new cycle starts at the change) or effective_at "
                "next_billing_date.",
                "KEEP_CYCLE_INTERVAL_MISMATCH",
            )
        if subscription.is_trial(subscription.period_index):
            raise _fail(
                "proration_billing_mode",
                f"{mode} keeps the billing cycle, and the subscription is in its free trial: "
                "use prorated_immediately (the trial ends at the change) or effective_at "
                "next_billing_date.",
                "KEEP_CYCLE_IN_TRIAL",
            )
        if subscription.billing_date_moved:
            raise _fail(
                "proration_billing_mode",
                f"{mode} keeps the billing cycle, and the current period's end was moved "
                "(next_billing_date): use prorated_immediately (a new cycle starts at the "
                "change) or effective_at next_billing_date.",
                "KEEP_CYCLE_AFTER_BILLING_DATE_MOVED",
            )
    probe = Subscription(product=product, customer_id=subscription.customer_id)
    # Changes now of products with credits are supported (the period's credit close at the
    # change, the new product's grant at the new period); a lead or the billing cycle's close
    # of another product's period is not.
    if (scheduled or mode in KEEP_CYCLE_MODES) and (
        billing.uses_credits(probe) or billing.uses_credits(subscription)
    ):
        raise _fail(
            "effective_at" if scheduled else "proration_billing_mode",
            (
                "A plan change of products with credits takes effect now and starts a new "
                "cycle: use effective_at immediately with prorated_immediately, "
                "full_immediately or do_not_bill."
            ),
            "PLAN_CHANGE_NOT_SUPPORTED",
        )
    return product


def _locked(subscription_id: str, *, now: datetime) -> Subscription:
    """The subscription locked, its due periods closed and its drafts finalized first: the
    change must start from a current period that contains `now`, and a draft is recomputed at
    finalization from the subscription's product, which is about to change."""
    # Lock the row alone, then read it with its product: a locking read joined to the product
    # would drop the row when a concurrent change it waited for had moved it to another product.
    locked = Subscription.objects.select_for_update(no_key=True).filter(pk=subscription_id)
    if not locked.values_list("pk", flat=True):
        raise NotFound(f"No subscription {subscription_id}.")
    subscription = Subscription.objects.select_related("product", "customer").get(
        pk=subscription_id
    )
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise SubscriptionNotActive(f"Subscription {subscription_id} is {subscription.status}.")
    while subscription.current_period_end <= now:
        billing.close_period(subscription_id, now=now)
        subscription.refresh_from_db()
        if subscription.status != SubscriptionStatus.ACTIVE:
            raise SubscriptionNotActive(f"Subscription {subscription_id} ended at its period end.")
    if subscription.current_period_start >= now:
        raise ConcurrentChange(
            f"Subscription {subscription_id} changed at {subscription.current_period_start}, "
            "not before this request's moment; read it again and retry."
        )
    while drafts := billing.oldest_drafts(subscription):
        billing.finalize_drafts(drafts, now=now)
    return subscription


def _end_period_now(
    subscription: Subscription, *, fee_mode: str, now: datetime, new_plan: Plan | None = None
) -> tuple[Invoice, Period, Decimal, list[LineDraft]]:
    """Invoice the current period as ending at `now` (final at once, numbered), and mark
    everything before `now` invoiced. The caller moves the subscription on. Shares are taken
    of the full period on the cycle's grid, so a lead (a kept cycle's short period) prorates
    like the period it is part of. Returns the invoice, the short period, the fee line's
    proration factor and the lines."""
    lock_customer_slots([subscription.customer_id], shared=False)
    current = subscription.period(subscription.period_index)
    full = subscription.full_period(subscription.period_index)
    short = Period(current.index, current.start, now)
    lead = subscription.lead_terms(current)
    terms = FeeTerms(
        mode=fee_mode,
        used=share(now - current.start, full),
        covered=share(current.end - current.start, full),
        already_billed=lead is not None and not lead[1],
        new_plan=new_plan,
    )
    fee_line, factor = fixed_fee_line(subscription, terms)
    lines = billing.early_close_lines(
        subscription, short, fixed_fee=fee_line, threshold_fraction=terms.used, now=now
    )
    [number] = billing.take_invoice_numbers(1, year=now.year)
    invoice = Invoice.objects.create(
        subscription=subscription,
        customer_id=subscription.customer_id,
        period_index=short.index,
        period_start=short.start,
        period_end=short.end,
        currency=subscription.product.currency,
        total_minor=sum(line.amount_minor for line in lines),
        created_at=now,
        status=InvoiceStatus.ISSUED,
        issued_at=now,
        number=number,
    )
    billing.write_lines([(invoice, lines)])
    proofs.prove_lines([invoice])
    webhook_events.invoices_created([invoice])
    webhook_events.invoices_finalized([invoice])
    # Collected like every issued invoice (nothing happens with PAYMENT_PROVIDER=none).
    payment_outbox.schedule_first_payments([invoice], now=now)
    return invoice, short, factor, lines


def _state(subscription: Subscription) -> dict:
    return {
        "product_id": subscription.product_id,
        "quantity": subscription.quantity,
        "status": subscription.status,
        "current_period_start": subscription.current_period_start.isoformat(),
        "current_period_end": subscription.current_period_end.isoformat(),
    }


def _audit(subscription: Subscription, action: str, *, before: dict, details: dict) -> None:
    """Record a change of the subscription, saved already, in the audit log: before and after
    in `_state`'s terms."""
    audit_log.record(
        object_type="products.subscription",
        object_id=subscription.subscription_id,
        action=action,
        before=before,
        after=_state(subscription),
        details=details,
    )


def _mark_cancelled(
    subscription: Subscription, *, now: datetime, cancel_reason: str | None, comments: dict
) -> list[str]:
    """Set the fields of a cancellation at `now` (any scheduled change is moot and removed);
    returns the fields to save."""
    ScheduledPlanChange.objects.filter(subscription=subscription).delete()
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.cancelled_at = now
    subscription.cancel_at_next_billing_date = False
    subscription.cancel_reason = cancel_reason
    for name, value in comments.items():
        setattr(subscription, name, value)
    return ["status", "cancelled_at", "cancel_at_next_billing_date", "cancel_reason", *comments]


def _stop_periods(subscription: Subscription, short: Period, *, now: datetime) -> list[str]:
    """No period runs from `now` (after a cancellation or a pause closed `short` there), and
    events before it are refused; returns the fields to save."""
    subscription.period_index = short.index + 1
    subscription.current_period_start = now
    subscription.current_period_end = now
    subscription.finalized_until = now
    return ["period_index", "current_period_start", "current_period_end", "finalized_until"]


def _take_schedule(subscription: Subscription, *, replace: bool) -> None:
    """Remove the subscription's scheduled change for the one being made, if asked to."""
    schedule = ScheduledPlanChange.objects.filter(subscription=subscription).first()
    if schedule is None:
        return
    if not replace:
        message = (
            f"A plan change to {schedule.product_id} is scheduled for the next billing date; "
            "send cancel_scheduled_change_plan: true to replace it, or cancel it first."
        )
        raise ScheduledChangeExists(
            message, errors=[{"field": "cancel_scheduled_change_plan", "message": message}]
        )
    schedule.delete()


def _apply_change(
    subscription_id: str,
    *,
    product_id: str,
    quantity: int,
    mode: str,
    now: datetime,
    replace: bool = False,
) -> ChangeResult:
    subscription = _locked(subscription_id, now=now)
    product = check_plan_change(subscription, product_id=product_id, quantity=quantity, mode=mode)
    _take_schedule(subscription, replace=replace)
    before = _state(subscription)
    old_plan = Plan.of(subscription)
    new_plan = Plan.of_product(product, quantity)
    current = subscription.period(subscription.period_index)
    lead = subscription.lead_terms(current)
    invoice, short, fraction, lines = _end_period_now(
        subscription, fee_mode=mode, now=now, new_plan=new_plan
    )
    subscription.product = product
    subscription.quantity = quantity
    if mode in KEEP_CYCLE_MODES:
        # The period's fee is billed once: a lead whose fee was billed stays without one.
        fee_left = mode == "prorated_immediately_keep_cycle" and (lead is None or lead[1])
        _keep_cycle(subscription, short, current.end, bills_fee=fee_left)
    else:
        _new_cycle(subscription, short, product, now=now)
    subscription.finalized_until = now
    subscription.save(
        update_fields=[
            "product",
            "quantity",
            "interval_unit",
            "interval_count",
            "cycle_anchor",
            "cycle_offset",
            "lead_start",
            "lead_share",
            "lead_fee",
            "period_index",
            "current_period_start",
            "current_period_end",
            "finalized_until",
        ]
    )
    if mode not in KEEP_CYCLE_MODES:
        billing.grant_new_period(subscription, now=now)  # the new product's credits, if any
    _audit(
        subscription,
        Action.PLAN_CHANGED,
        before=before,
        details={
            "at": now.isoformat(),
            "proration_billing_mode": mode,
            "invoice_id": invoice.invoice_id,
        },
    )
    webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_PLAN_CHANGED, [subscription])
    fee_plan = new_plan if mode == "difference_immediately" and fraction else None
    return ChangeResult(subscription, old_plan, invoice, short, fraction, lines, fee_plan)


def _new_cycle(subscription: Subscription, short: Period, product: Product, *, now: datetime):
    """Restart the cycle at `now`: the new product's interval, counted from the change."""
    subscription.interval_unit = product.interval.unit
    subscription.interval_count = product.interval.count
    subscription.cycle_anchor = now
    subscription.cycle_offset = short.index + 1
    subscription.lead_start = subscription.lead_share = None
    subscription.lead_fee = True
    following = subscription.period(short.index + 1)
    subscription.period_index = following.index
    subscription.current_period_start = following.start
    subscription.current_period_end = following.end


def _keep_cycle(subscription: Subscription, short: Period, end: datetime, *, bills_fee: bool):
    """Keep the grid: the period after the change is the lead [change, `end`), the rest of the
    grid's period, then the cycle goes on at the original anchor (the same interval: the check
    refused another). One more index is spent, so the grid's offset moves one on."""
    if subscription.cycle_anchor is None:
        trial_end = subscription.trial_end
        subscription.cycle_anchor = trial_end or subscription.anchor
        subscription.cycle_offset = 1 if trial_end else 0
    subscription.cycle_offset += 1
    full = subscription.full_period(short.index + 1)
    subscription.lead_start = short.end
    subscription.lead_share = share(end - short.end, full)
    subscription.lead_fee = bills_fee
    following = subscription.period(short.index + 1)
    assert (following.start, following.end) == (short.end, end), "the grid moved"
    subscription.period_index = following.index
    subscription.current_period_start = following.start
    subscription.current_period_end = following.end


def change_plan(
    subscription_id: str,
    *,
    product_id: str,
    quantity: int,
    mode: str,
    now: datetime,
    replace: bool = False,
) -> ChangeResult:
    """Move the subscription to `product_id` now: its current period ends at `now` with a final
    invoice, and a new cycle of the new product (its interval) starts at `now`. A scheduled
    change is replaced only with `replace` (else a 409)."""
    with transaction.atomic():
        return _apply_change(
            subscription_id,
            product_id=product_id,
            quantity=quantity,
            mode=mode,
            now=now,
            replace=replace,
        )


def schedule_plan_change(
    subscription_id: str,
    *,
    product_id: str,
    quantity: int,
    mode: str,
    now: datetime,
    replace: bool = False,
) -> ScheduledPlanChange:
    """Record a change for the end of the current period (`effective_at: next_billing_date`);
    the billing cycle applies it when it closes that period. Nothing is prorated: the period
    is billed in full at the old plan. An existing schedule is replaced only with `replace`."""
    with transaction.atomic():
        subscription = _locked(subscription_id, now=now)
        product = check_plan_change(
            subscription, product_id=product_id, quantity=quantity, mode=mode, scheduled=True
        )
        if subscription.cancel_at_next_billing_date:
            raise SubscriptionNotActive(
                f"Subscription {subscription_id} ends at its next billing date: nothing to change."
            )
        _take_schedule(subscription, replace=replace)
        schedule = ScheduledPlanChange.objects.create(
            subscription=subscription, product=product, quantity=quantity, created_at=now
        )
        _audit(
            subscription,
            Action.PLAN_CHANGE_SCHEDULED,
            before=_state(subscription),
            details={"product_id": product.pk, "quantity": quantity, "schedule_id": schedule.pk},
        )
        return schedule


def cancel_scheduled_change(subscription_id: str) -> None:
    """Remove the subscription's scheduled change (404 when there is none)."""
    with transaction.atomic():
        Subscription.objects.select_for_update(no_key=True).filter(pk=subscription_id).exists()
        schedule = ScheduledPlanChange.objects.filter(subscription_id=subscription_id).first()
        if schedule is None:
            raise NotFound(f"Subscription {subscription_id} has no scheduled plan change.")
        schedule.delete()
        audit_log.record(
            object_type="products.subscription",
            object_id=subscription_id,
            action=Action.PLAN_CHANGE_CANCELLED,
            before={"product_id": schedule.product_id, "quantity": schedule.quantity},
            after=None,
        )


class _Preview(Exception):
    def __init__(self, result, new_plan: dict):
        self.result = result
        self.new_plan = new_plan


def preview_schedule(
    subscription_id: str,
    *,
    product_id: str,
    quantity: int,
    mode: str,
    now: datetime,
    render,
    replace: bool = False,
) -> tuple[ScheduledPlanChange, dict]:
    """What `schedule_plan_change` would record, nothing kept (a rolled-back savepoint)."""
    try:
        with transaction.atomic():
            schedule = schedule_plan_change(
                subscription_id,
                product_id=product_id,
                quantity=quantity,
                mode=mode,
                now=now,
                replace=replace,
            )
            raise _Preview(schedule, render(subscription_id))
    except _Preview as preview:
        return preview.result, preview.new_plan


def preview_change_plan(
    subscription_id: str,
    *,
    product_id: str,
    quantity: int,
    mode: str,
    now: datetime,
    render,
    replace: bool = False,
) -> tuple[ChangeResult, dict]:
    """What `change_plan` would do at `now`, nothing kept: the change itself in a savepoint
    that is rolled back, so the preview is the invoice to the cent. `render` turns the changed
    subscription into the API's representation before the rollback."""
    try:
        with transaction.atomic():
            result = _apply_change(
                subscription_id,
                product_id=product_id,
                quantity=quantity,
                mode=mode,
                now=now,
                replace=replace,
            )
            raise _Preview(result, render(result.subscription.pk))
    except _Preview as preview:
        return preview.result, preview.new_plan


def cancel_now(
    subscription_id: str, *, now: datetime, cancel_reason: str | None = None, **comments
) -> ChangeResult | None:
    """End the subscription at `now`: a final invoice for the period so far (the fixed fee
    prorated to the second, free thresholds prorated), events from `now` on are not billed.
    A paused subscription has no period running: it ends with no invoice (None)."""
    with transaction.atomic():
        if _paused(subscription_id) is not None:
            _cancel_paused(subscription_id, now=now, cancel_reason=cancel_reason, **comments)
            return None
        subscription = _locked(subscription_id, now=now)
        before = _state(subscription)
        old_plan = Plan.of(subscription)
        invoice, short, fraction, lines = _end_period_now(
            subscription, fee_mode="prorated_immediately", now=now
        )
        fields = _mark_cancelled(
            subscription, now=now, cancel_reason=cancel_reason, comments=comments
        )
        subscription.save(update_fields=[*fields, *_stop_periods(subscription, short, now=now)])
        _audit(
            subscription,
            Action.CANCELLED,
            before=before,
            details={"invoice_id": invoice.invoice_id, "cancel_reason": cancel_reason},
        )
        webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_CANCELLED, [subscription])
        return ChangeResult(subscription, old_plan, invoice, short, fraction, lines)


# --- moving the billing date ---------------------------------------------------------------------


def move_billing_date(subscription_id: str, *, to: datetime, now: datetime) -> Subscription:
    """End the current period at `to` instead (PATCH `next_billing_date`): the period becomes
    [its start, `to`) and the cycle restarts there with the same interval (a re-anchor, as a
    plan change's new cycle). Nothing is prorated: the moved period is invoiced at `to` with
    the full fixed fee and free thresholds, as Dodo bills it. A scheduled plan change or
    cancellation takes effect at the new date. Locks as the period close (the row, then the
    customer's ingest slots), so the close and ingestion see either the old end or the new one;
    no event changes period except by its timestamp, none is billed twice or lost."""
    with transaction.atomic():
        locked = Subscription.objects.select_for_update(no_key=True).filter(pk=subscription_id)
        if not locked.values_list("pk", flat=True):
            raise NotFound(f"No subscription {subscription_id}.")
        subscription = Subscription.objects.select_related("product").get(pk=subscription_id)
        if subscription.status != SubscriptionStatus.ACTIVE:
            message = (
                f"Subscription {subscription_id} is {subscription.status}: only an active "
                "subscription's billing date can be moved."
            )
            raise SubscriptionNotActive(
                message, errors=[{"field": "next_billing_date", "message": message}]
            )
        while subscription.current_period_end <= now:  # due periods close first, as they were
            billing.close_period(subscription_id, now=now)
            subscription.refresh_from_db()
            if subscription.status != SubscriptionStatus.ACTIVE:
                raise SubscriptionNotActive(
                    f"Subscription {subscription_id} ended at its period end."
                )
        if subscription.is_trial(subscription.period_index):
            raise _fail(
                "next_billing_date",
                "The subscription is in its free trial: moving the end of a trial is not "
                "supported; move the billing date once the first paid period has started.",
                "BILLING_DATE_MOVE_IN_TRIAL",
            )
        if subscription.lead_terms(subscription.period(subscription.period_index)):
            raise _fail(
                "next_billing_date",
                "The current period is the rest of a period after a plan change that kept the "
                "cycle (its fee is a share of that period): moving its end is not supported; "
                "move the billing date once the next period has started.",
                "BILLING_DATE_MOVE_NOT_SUPPORTED",
            )
        if billing.uses_credits(subscription):
            raise _fail(
                "next_billing_date",
                "The product grants or uses credits, whose grants expire with the period: "
                "moving the billing date of such a subscription is not supported.",
                "BILLING_DATE_MOVE_NOT_SUPPORTED",
            )
        if to <= now or to <= subscription.current_period_start:
            raise _fail(
                "next_billing_date",
                f"Must be after now and after the current period's start "
                f"({subscription.current_period_start.isoformat()}).",
            )
        lock_customer_slots([subscription.customer_id], shared=False)
        before = _state(subscription)
        subscription.cycle_anchor = to
        subscription.cycle_offset = subscription.period_index + 1
        moved = subscription.period(subscription.period_index)
        assert (moved.start, moved.end) == (subscription.current_period_start, to)
        subscription.current_period_end = to
        subscription.save(update_fields=["cycle_anchor", "cycle_offset", "current_period_end"])
        _audit(
            subscription,
            Action.UPDATED,
            before=before,
            details={"at": now.isoformat(), "next_billing_date": to.isoformat()},
        )
        return subscription


# --- pause and resume ----------------------------------------------------------------------------


def _paused(subscription_id: str) -> Subscription | None:
    """The subscription locked if it is paused, else None (nothing locked)."""
    return (
        Subscription.objects.select_for_update(no_key=True)
        .filter(pk=subscription_id, status=SubscriptionStatus.PAUSED)
        .first()
    )


def _cancel_paused(
    subscription_id: str, *, now: datetime, cancel_reason: str | None = None, **comments
) -> None:
    subscription = Subscription.objects.get(pk=subscription_id)
    before = _state(subscription)
    subscription.save(
        update_fields=_mark_cancelled(
            subscription, now=now, cancel_reason=cancel_reason, comments=comments
        )
    )
    _audit(
        subscription,
        Action.CANCELLED,
        before=before,
        details={"cancel_reason": cancel_reason, "while_paused": True},
    )
    webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_CANCELLED, [subscription])


def pause(subscription_id: str, *, now: datetime) -> ChangeResult:
    """Pause now (PATCH status "paused"): the current period ends at `now` with its final
    invoice, as a cancellation's (fee prorated to the second, usage so far, free thresholds
    prorated), and no period runs until `resume`. Events keep being accepted; those from the
    pause to the resume belong to no period and are never billed."""
    with transaction.atomic():
        subscription = _locked(subscription_id, now=now)
        if subscription.cancel_at_next_billing_date:
            message = (
                f"Subscription {subscription_id} ends at its next billing date: cancel it now "
                "(status cancelled) or withdraw the cancellation before pausing."
            )
            raise SubscriptionNotActive(message, errors=[{"field": "status", "message": message}])
        before = _state(subscription)
        old_plan = Plan.of(subscription)
        invoice, short, fraction, lines = _end_period_now(
            subscription, fee_mode="prorated_immediately", now=now
        )
        subscription.status = SubscriptionStatus.PAUSED
        subscription.save(update_fields=["status", *_stop_periods(subscription, short, now=now)])
        _audit(
            subscription,
            Action.PAUSED,
            before=before,
            details={"at": now.isoformat(), "invoice_id": invoice.invoice_id},
        )
        webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_PAUSED, [subscription])
        return ChangeResult(subscription, old_plan, invoice, short, fraction, lines)


def resume(subscription_id: str, *, now: datetime) -> Subscription:
    """Resume a paused subscription now (PATCH status "active"): a new cycle of its product
    starts at `now` (a plan change scheduled for the next billing date applies here, the
    first billing date after the pause). Nothing is billed for the pause."""
    with transaction.atomic():
        subscription = _paused(subscription_id)
        if subscription is None:
            raise SubscriptionNotActive(f"Subscription {subscription_id} is not paused.")
        subscription = Subscription.objects.select_related("product").get(pk=subscription_id)
        if now <= subscription.current_period_start:
            raise ConcurrentChange(
                f"Subscription {subscription_id} was paused at "
                f"{subscription.current_period_start}, not before this request's moment."
            )
        before = _state(subscription)
        subscription.status = SubscriptionStatus.ACTIVE
        subscription.cycle_anchor = now
        subscription.cycle_offset = subscription.period_index
        subscription.lead_start = subscription.lead_share = None
        subscription.lead_fee = True
        resumed = subscription.period(subscription.period_index)
        subscription.current_period_start = resumed.start
        subscription.current_period_end = resumed.end
        subscription.save(
            update_fields=[
                "status",
                "cycle_anchor",
                "cycle_offset",
                "lead_start",
                "lead_share",
                "lead_fee",
                "current_period_start",
                "current_period_end",
            ]
        )
        changed = billing.apply_scheduled_changes([subscription])
        billing.grant_new_period(subscription, now=now)
        _audit(subscription, Action.RESUMED, before=before, details={"at": now.isoformat()})
        webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_ACTIVE, [subscription])
        webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_PLAN_CHANGED, changed)
        return subscription

"""The billing cycle: close each due period of each subscription into exactly one invoice.

Periods are closed in batches, one transaction per batch: lock up to `BILLING_BATCH_SIZE` due
subscriptions (SKIP LOCKED, so concurrent runs split the work), stop new events for their
customers from entering the period, read exact usage for all of them with one query per meter,
write the invoices with all their lines, advance the periods. A second run, a second worker or a
crash can therefore never bill twice or leave half an invoice; the unique (subscription, period)
constraint is the last line of defence. Products with credits are closed one subscription per
transaction, the unit the credit ledger's lock order is written for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q

from billing_site.locks import lock_customer_slots
from billing_site.money import round_minor
from billing_site.periods import Period
from credits.deduction import (
    CreditLine,
    OverageCharge,
    close_credit_period,
    grant_period_credits,
)
from credits.models import ProductCreditEntitlement
from events.ingest import EventRow, InvalidEvents, ingest
from meters.rollups import roll_up_all_pending
from meters.usage import Usage, usage_by_customer
from products import webhook_events
from products.models import (
    Invoice,
    InvoiceLine,
    LineKind,
    Product,
    ProductMeter,
    Subscription,
    SubscriptionStatus,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineDraft:
    kind: str
    description: str
    amount_minor: int
    meter_id: str | None = None
    consumed_units: Decimal | None = None
    free_threshold: int | None = None
    free_units: Decimal | None = None
    chargeable_units: Decimal | None = None
    unit_price: Decimal | None = None
    credits_applied: Decimal | None = None


def usage_charge(
    consumed: Decimal, free_threshold: int, price_per_unit: Decimal
) -> tuple[Decimal, Decimal, int]:
    """(free units used, chargeable units, amount in minor units) for one meter in one cycle.

    chargeable = max(consumed - free, 0); amount = chargeable x price, rounded half-up once.
    """
    free_used = min(max(consumed, Decimal(0)), Decimal(free_threshold))
    chargeable = max(consumed - free_threshold, Decimal(0))
    return free_used, chargeable, round_minor(chargeable * price_per_unit)


def usage_line(product_meter: ProductMeter, usage: Usage) -> LineDraft:
    meter = product_meter.meter
    price = product_meter.price_per_unit or Decimal(0)
    free_used, chargeable, amount = usage_charge(
        usage.quantity, product_meter.free_threshold, price
    )
    return LineDraft(
        kind=LineKind.USAGE,
        description=f"{meter.name} ({meter.measurement_unit})",
        amount_minor=amount,
        meter_id=meter.id,
        consumed_units=usage.quantity,
        free_threshold=product_meter.free_threshold,
        free_units=free_used,
        chargeable_units=chargeable,
        unit_price=price,
        credits_applied=Decimal(0),
    )


def credit_line(line: CreditLine) -> LineDraft:
    """A meter billed in credits: what it consumed and the credits it took; no money."""
    meter = line.product_meter.meter
    description = f"{meter.name} ({meter.measurement_unit}), billed in credits"
    if line.credits_blocked:
        description += f"; {line.credits_blocked} credits beyond the overage limit not deducted"
    return LineDraft(
        kind=LineKind.USAGE,
        description=description,
        amount_minor=0,
        meter_id=meter.id,
        consumed_units=line.consumed_units,
        free_threshold=line.product_meter.free_threshold,
        free_units=line.free_units,
        chargeable_units=line.chargeable_units,
        credits_applied=line.credits_applied,
    )


def overage_line(charge: OverageCharge) -> LineDraft:
    entitlement = charge.link.credit_entitlement
    return LineDraft(
        kind=LineKind.CREDIT_OVERAGE,
        description=f"{entitlement.name}: overage of {charge.credits} {entitlement.unit}",
        amount_minor=round_minor(charge.credits * charge.price_per_unit),
        chargeable_units=charge.credits,
        unit_price=charge.price_per_unit,
    )


def draft_lines(
    product: Product,
    product_meters: Iterable[ProductMeter],
    usage: dict[str, Usage],
    credit_lines: Iterable[CreditLine] = (),
    overage_charges: Iterable[OverageCharge] = (),
) -> list[LineDraft]:
    """The invoice for one period: the fixed fee, one line per attached meter (priced, or billed
    in credits), then any credit overage charged at billing."""
    lines = [
        LineDraft(
            kind=LineKind.FIXED_FEE,
            description=f"{product.name}: fixed fee",
            amount_minor=product.fixed_price_minor,
        )
    ]
    in_credits = {line.product_meter.meter_id: line for line in credit_lines}
    for product_meter in product_meters:
        if product_meter.meter_id in in_credits:
            lines.append(credit_line(in_credits[product_meter.meter_id]))
        else:
            usage_of_meter = usage.get(product_meter.meter_id, Usage.zero())
            lines.append(usage_line(product_meter, usage_of_meter))
    lines.extend(overage_line(charge) for charge in overage_charges)
    return lines


# --- keeping late events out of invoiced periods -------------------------------------------------


def hold_customers_for_ingest(customer_ids: Iterable[str]) -> dict[str, list[tuple]]:
    """Take shared locks for these customers and return their invoiced windows.

    Called by ingestion inside its transaction: a period close for one of these customers waits
    until the batch commits, and a batch started after a close sees the new window. Returns
    {customer_id: [(first invoiced moment, end of invoiced history)]}.
    """
    customers = sorted(set(customer_ids))
    lock_customer_slots(customers, shared=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT customer_id, anchor, current_period_start FROM products_subscription
            WHERE customer_id = ANY(%s) AND current_period_start > anchor
            """,
            [customers],
        )
        windows: dict[str, list[tuple]] = {}
        for customer_id, anchor, invoiced_until in cursor.fetchall():
            windows.setdefault(customer_id, []).append((anchor, invoiced_until))
    return windows


def refuse_invoiced_periods(rows: list[EventRow]) -> None:
    """Ingestion's admission rule: refuse events that fall into a period already invoiced for
    their customer.

    Runs inside the ingest write transaction, holding the customers against a concurrent period
    close, so an event is either refused here or counted by the invoice of its period, never lost.
    """
    windows = hold_customers_for_ingest(row.customer_id for row in rows)
    if not windows:
        return
    errors = [
        {
            "index": index,
            "field": f"events[{index}].timestamp",
            "code": "PERIOD_ALREADY_INVOICED",
            "message": f"The billing period containing {row.timestamp.isoformat()} is already "
            f"invoiced for customer {row.customer_id!r}.",
        }
        for index, row in enumerate(rows)
        if any(start <= row.timestamp < end for start, end in windows.get(row.customer_id, ()))
    ]
    if errors:
        raise InvalidEvents(
            f"{len(errors)} events fall into already invoiced periods; nothing was stored.",
            errors=errors,
        )


def ingest_events(body: bytes, *, now: datetime) -> int:
    """Ingest a request body under billing's admission rule: what the API and the demo call."""
    return ingest(body, now=now, admit=refuse_invoiced_periods)


# --- the cycle ------------------------------------------------------------------------------------


def _billed_in_credits() -> Q:
    """Subscriptions whose product bills a meter in credits or grants credits each cycle."""
    return Exists(
        ProductMeter.objects.filter(
            product_id=OuterRef("product_id"), credit_entitlement__isnull=False
        )
    ) | Exists(ProductCreditEntitlement.objects.filter(product_id=OuterRef("product_id")))


def _claim(now: datetime, limit: int, condition: Q) -> list[Subscription]:
    """Lock up to `limit` subscriptions matching `condition` whose current period has ended.

    SKIP LOCKED lets concurrent runs split the work. NO KEY: a concurrent credit deduction
    inserting this period's first checkpoint holds KEY SHARE on the subscription through its
    foreign key; FOR UPDATE would deadlock with it.
    """
    return list(
        Subscription.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
        .select_related("product")
        .filter(condition, status=SubscriptionStatus.ACTIVE, current_period_end__lte=now)
        .order_by("current_period_end", "subscription_id")[:limit]
    )


def _usage_for(
    subscriptions: list[Subscription], product_meters: dict[str, list[ProductMeter]]
) -> dict[tuple[str, str], Usage]:
    """{(subscription id, meter id): usage in its current period} for meters priced in money.

    One query per meter and period window, whatever the number of subscriptions: subscriptions
    closing the same window are read together with `usage_by_customer`.
    """
    windows: dict[tuple[str, datetime, datetime], list[Subscription]] = {}
    meters = {}
    for subscription in subscriptions:
        period = subscription.period(subscription.period_index)
        for product_meter in product_meters[subscription.product_id]:
            if product_meter.credit_entitlement_id is None:
                meters[product_meter.meter_id] = product_meter.meter
                key = (product_meter.meter_id, period.start, period.end)
                windows.setdefault(key, []).append(subscription)
    usage = {}
    for (meter_id, start, end), closing in windows.items():
        by_customer = usage_by_customer(
            meters[meter_id], start, end, {s.customer_id for s in closing}
        )
        for subscription in closing:
            usage[subscription.subscription_id, meter_id] = by_customer.get(
                subscription.customer_id, Usage.zero()
            )
    return usage


def _close(subscriptions: list[Subscription], *, now: datetime) -> list[Invoice]:
    """Invoice the current period of these locked subscriptions and advance them, in the
    caller's transaction.

    Several subscriptions at once only for products without credits (see `run_billing_cycle`):
    closing a credit period takes checkpoint and balance locks in an order that holds for one
    subscription per transaction.
    """
    lock_customer_slots((s.customer_id for s in subscriptions), shared=False)
    product_ids = {s.product_id for s in subscriptions}
    product_meters: dict[str, list[ProductMeter]] = {pid: [] for pid in product_ids}
    for product_meter in (
        ProductMeter.objects.filter(product_id__in=product_ids)
        .select_related("meter")
        .order_by("product_id", "position")
    ):
        product_meters[product_meter.product_id].append(product_meter)
    granting = set(
        ProductCreditEntitlement.objects.filter(product_id__in=product_ids).values_list(
            "product_id", flat=True
        )
    )
    usage = _usage_for(subscriptions, product_meters)
    drafts = []
    for subscription in subscriptions:
        period = subscription.period(subscription.period_index)
        meters = product_meters[subscription.product_id]
        credit_lines: list[CreditLine] = []
        overage_charges: list[OverageCharge] = []
        if subscription.product_id in granting or any(pm.credit_entitlement_id for pm in meters):
            credit_lines, overage_charges = close_credit_period(subscription, period, now=now)
        priced = {
            pm.meter_id: usage[subscription.subscription_id, pm.meter_id]
            for pm in meters
            if pm.credit_entitlement_id is None
        }
        lines = draft_lines(subscription.product, meters, priced, credit_lines, overage_charges)
        drafts.append((subscription, period, lines))
    invoices = _write_invoices(drafts, now=now)
    _advance(subscriptions)
    # Outbox rows in this transaction: the webhooks go out only if the batch commits.
    webhook_events.invoices_created(invoices)
    webhook_events.subscriptions_renewed(
        [s for s in subscriptions if s.status == SubscriptionStatus.ACTIVE]
    )
    for subscription in subscriptions:
        if subscription.status == SubscriptionStatus.ACTIVE and subscription.product_id in granting:
            grant_period_credits(
                subscription, subscription.period(subscription.period_index), now=now
            )
    return invoices


def close_period(subscription_id: str, *, now: datetime) -> Invoice | None:
    """Invoice the subscription's current period if it has ended by `now`; None otherwise."""
    with transaction.atomic():
        claimed = _claim(now, 1, Q(subscription_id=subscription_id))
        return _close(claimed, now=now)[0] if claimed else None


def close_due_batch(*, now: datetime, limit: int, credits: bool) -> list[Invoice]:
    """One transaction: claim up to `limit` due subscriptions of products with (or without)
    credits and close one period of each. An empty list when nothing is left to claim."""
    in_credits = _billed_in_credits()
    with transaction.atomic():
        claimed = _claim(now, limit, in_credits if credits else ~in_credits)
        return _close(claimed, now=now) if claimed else []


def _write_invoices(
    drafts: list[tuple[Subscription, Period, list[LineDraft]]], *, now: datetime
) -> list[Invoice]:
    """Every invoice of the batch in one insert, then every line in another."""
    invoices = Invoice.objects.bulk_create(
        Invoice(
            subscription=subscription,
            customer_id=subscription.customer_id,
            period_index=period.index,
            period_start=period.start,
            period_end=period.end,
            currency=subscription.product.currency,
            total_minor=sum(line.amount_minor for line in lines),
            created_at=now,
        )
        for subscription, period, lines in drafts
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            meter_id=line.meter_id,
            description=line.description,
            consumed_units=line.consumed_units,
            free_threshold=line.free_threshold,
            free_units=line.free_units,
            chargeable_units=line.chargeable_units,
            unit_price=line.unit_price,
            credits_applied=line.credits_applied,
            amount_minor=line.amount_minor,
        )
        for invoice, (_, _, lines) in zip(invoices, drafts, strict=True)
        for position, line in enumerate(lines)
    )
    return invoices


def _advance(subscriptions: list[Subscription]) -> None:
    """Move each subscription to its next period (or cancel it), in one statement.

    One UPDATE … FROM unnest(arrays): `bulk_update` builds a CASE per row and column, which
    cost half of a batch's time in Python.
    """
    for subscription in subscriptions:
        following = subscription.period(subscription.period_index + 1)
        if subscription.cancel_at_next_billing_date:
            subscription.status = SubscriptionStatus.CANCELLED
            subscription.cancelled_at = following.start
        subscription.period_index = following.index
        subscription.current_period_start = following.start
        subscription.current_period_end = following.end
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Subscription._meta.db_table} s
            SET period_index = v.period_index, current_period_start = v.period_start,
                current_period_end = v.period_end, status = v.status,
                cancelled_at = v.cancelled_at
            FROM unnest(%s::text[], %s::integer[], %s::timestamptz[], %s::timestamptz[],
                        %s::text[], %s::timestamptz[])
                 AS v(subscription_id, period_index, period_start, period_end, status,
                      cancelled_at)
            WHERE s.subscription_id = v.subscription_id
            """,
            [
                [s.subscription_id for s in subscriptions],
                [s.period_index for s in subscriptions],
                [s.current_period_start for s in subscriptions],
                [s.current_period_end for s in subscriptions],
                [s.status for s in subscriptions],
                [s.cancelled_at for s in subscriptions],
            ],
        )


def run_billing_cycle(*, now: datetime, batch_size: int | None = None) -> list[Invoice]:
    """Close every period that has ended by `now`, catching up several periods if needed.

    Subscriptions of products without credits are closed `batch_size` per transaction; those with
    credits one per transaction. A subscription several periods behind is claimed again by a
    later batch for each period. Pending ingest batches are rolled up first: usage is exact
    either way (events not yet rolled up are read raw), but with a backlog every batch would
    re-read it.
    """
    roll_up_all_pending()
    invoices = []
    # Larger batches save round trips but hold their customers' ingest locks (up to
    # billing_site.locks.CUSTOMER_LOCK_SLOTS slots) for longer.
    batch_size = batch_size or settings.BILLING_BATCH_SIZE
    for credits, limit in ((False, batch_size), (True, 1)):
        while batch := close_due_batch(now=now, limit=limit, credits=credits):
            invoices.extend(batch)
    logger.info("billing cycle as of %s issued %d invoices", now.isoformat(), len(invoices))
    return invoices

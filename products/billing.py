"""The billing cycle: close each due period of each subscription into exactly one invoice.

Closing a period is one transaction per subscription and period: lock the subscription (SKIP
LOCKED, so concurrent runs split the work), stop new events for the customer from entering the
period, read exact usage, write the invoice with all its lines, advance the period. A second run,
a second worker or a crash can therefore never bill twice or leave half an invoice; the unique
(subscription, period) constraint is the last line of defence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from credits.deduction import (
    CreditLine,
    OverageCharge,
    close_credit_period,
    grant_period_credits,
)
from meters.rollups import roll_up_all_pending
from meters.usage import Usage, meter_usage
from products.models import (
    Invoice,
    InvoiceLine,
    LineKind,
    Product,
    ProductMeter,
    Subscription,
    SubscriptionStatus,
)
from products.money import round_minor
from products.periods import Period

logger = logging.getLogger(__name__)

# Advisory locks that keep ingestion and period closing of one customer apart. Customers hash into
# a fixed number of slots so a batch of 1,000 customers takes at most this many locks.
CUSTOMER_LOCK_CLASS = 7301
CUSTOMER_LOCK_SLOTS = 64


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
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT pg_advisory_xact_lock_shared(%s, slot)
            FROM (SELECT DISTINCT hashtext(c) %% %s AS slot FROM unnest(%s::text[]) c) slots
            ORDER BY slot
            """,
            [CUSTOMER_LOCK_CLASS, CUSTOMER_LOCK_SLOTS, customers],
        )
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


def _hold_customer_for_close(customer_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s) %% %s)",
            [CUSTOMER_LOCK_CLASS, customer_id, CUSTOMER_LOCK_SLOTS],
        )


# --- the cycle ------------------------------------------------------------------------------------


def close_period(subscription_id: str, *, now: datetime) -> Invoice | None:
    """Invoice the subscription's current period if it has ended by `now`; None otherwise."""
    with transaction.atomic():
        subscription = (
            # NO KEY: a concurrent credit deduction inserting this period's first checkpoint
            # holds KEY SHARE on the subscription through its foreign key; FOR UPDATE would
            # deadlock with it.
            Subscription.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
            .select_related("product", "customer")
            .filter(
                subscription_id=subscription_id,
                status=SubscriptionStatus.ACTIVE,
                current_period_end__lte=now,
            )
            .first()
        )
        if subscription is None:
            return None
        _hold_customer_for_close(subscription.customer_id)
        period = subscription.period(subscription.period_index)
        product_meters = list(
            subscription.product.product_meters.select_related("meter").order_by("position")
        )
        usage = {
            pm.meter_id: meter_usage(pm.meter, subscription.customer_id, period.start, period.end)
            for pm in product_meters
            if pm.credit_entitlement_id is None
        }
        credit_lines, overage_charges = close_credit_period(subscription, period, now=now)
        lines = draft_lines(
            subscription.product, product_meters, usage, credit_lines, overage_charges
        )
        invoice = _write_invoice(subscription, period, lines, now=now)
        _advance(subscription, period)
        if subscription.status == SubscriptionStatus.ACTIVE:
            grant_period_credits(
                subscription, subscription.period(subscription.period_index), now=now
            )
    return invoice


def _write_invoice(
    subscription: Subscription, period: Period, lines: list[LineDraft], *, now: datetime
) -> Invoice:
    invoice = Invoice.objects.create(
        subscription=subscription,
        customer_id=subscription.customer_id,
        period_index=period.index,
        period_start=period.start,
        period_end=period.end,
        currency=subscription.product.currency,
        total_minor=sum(line.amount_minor for line in lines),
        created_at=now,
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
        for position, line in enumerate(lines)
    )
    return invoice


def _advance(subscription: Subscription, closed: Period) -> None:
    following = subscription.period(closed.index + 1)
    subscription.period_index = following.index
    subscription.current_period_start = following.start
    subscription.current_period_end = following.end
    if subscription.cancel_at_next_billing_date:
        subscription.status = SubscriptionStatus.CANCELLED
        subscription.cancelled_at = closed.end
    subscription.save(
        update_fields=[
            "period_index",
            "current_period_start",
            "current_period_end",
            "status",
            "cancelled_at",
        ]
    )


def due_subscription_ids(*, now: datetime) -> list[str]:
    return list(
        Subscription.objects.filter(status=SubscriptionStatus.ACTIVE, current_period_end__lte=now)
        .order_by("current_period_end", "subscription_id")
        .values_list("subscription_id", flat=True)
    )


def run_billing_cycle(*, now: datetime) -> list[Invoice]:
    """Close every period that has ended by `now`, catching up several periods if needed.

    Pending ingest batches are rolled up first: usage is exact either way (events not yet rolled
    up are read raw), but with a backlog every invoice would re-read it.
    """
    roll_up_all_pending()
    invoices = []
    for subscription_id in due_subscription_ids(now=now):
        while (invoice := close_period(subscription_id, now=now)) is not None:
            invoices.append(invoice)
    logger.info("billing cycle as of %s issued %d invoices", now.isoformat(), len(invoices))
    return invoices

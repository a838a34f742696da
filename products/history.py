"""Usage history of a subscription: one entry per billing period, newest first.

Invoiced periods are read from their invoice lines, so history stays as billed even if a meter or
price changes later; the open period is computed live with the same charge rule the invoice will
use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing_site.periods import Period
from meters.usage import meter_usage
from products.billing import trial_usage_line, usage_line
from products.models import (
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    Subscription,
    SubscriptionStatus,
)


@dataclass(frozen=True)
class MeterUsageEntry:
    meter_id: str
    name: str
    measurement_unit: str
    consumed_units: Decimal | None
    free_threshold: int
    chargeable_units: Decimal | None
    price_per_unit: Decimal | None  # None for a meter billed in credits
    total_price: int


@dataclass(frozen=True)
class UsagePeriod:
    start: datetime
    end: datetime
    invoice_id: str | None
    meters: list[MeterUsageEntry]


def _overlaps(period: Period, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or period.end > start) and (end is None or period.start <= end)


def usage_history(
    subscription: Subscription,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    meter_id: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[UsagePeriod]:
    last_index = subscription.period_index
    if subscription.status != SubscriptionStatus.ACTIVE:
        last_index -= 1  # a cancelled subscription has no open period
    # A period that ended early (a plan change or a cancellation now) is known from its
    # invoice only: the invoice's window wins over the cycle's formula.
    billed = {
        index: Period(index, period_start, period_end)
        for index, period_start, period_end in subscription.invoices.filter(
            kind=InvoiceKind.INVOICE
        )
        .exclude(status=InvoiceStatus.VOID)
        .values_list("period_index", "period_start", "period_end")
    }
    periods = [
        period
        for period in (billed.get(i) or subscription.period(i) for i in range(last_index, -1, -1))
        if _overlaps(period, start, end)
    ]
    periods = periods[offset : None if limit is None else offset + limit]
    invoices = {
        invoice.period_index: invoice
        # The live invoice of each period: not a void one, nor a credit note beside it.
        for invoice in subscription.invoices.filter(
            period_index__in=[p.index for p in periods], kind=InvoiceKind.INVOICE
        )
        .exclude(status=InvoiceStatus.VOID)
        .prefetch_related("lines__meter")
    }
    history = []
    for period in periods:
        invoice = invoices.get(period.index)
        if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
            entries = [
                _entry_from_line(line)
                for line in invoice.lines.all()
                if line.kind == LineKind.USAGE
            ]
        else:
            entries = _live_entries(subscription, period)
        if meter_id is not None:
            entries = [e for e in entries if e.meter_id == meter_id]
        history.append(
            UsagePeriod(period.start, period.end, invoice.invoice_id if invoice else None, entries)
        )
    return history


def _zero_if_none(value: Decimal | None) -> Decimal:
    """Dodo's usage history types every quantity and the unit price as a string: a meter billed
    in credits has no money price, which it shows as 0."""
    return Decimal(0) if value is None else value


def _entry_from_line(line: InvoiceLine) -> MeterUsageEntry:
    meter = line.meter
    assert meter is not None  # usage lines always name their meter
    return MeterUsageEntry(
        meter_id=meter.id,
        name=meter.name,
        measurement_unit=meter.measurement_unit,
        consumed_units=_zero_if_none(line.consumed_units),
        free_threshold=line.free_threshold or 0,
        chargeable_units=_zero_if_none(line.chargeable_units),
        price_per_unit=_zero_if_none(line.unit_price),
        total_price=line.amount_minor,
    )


def _live_entries(subscription: Subscription, period: Period) -> list[MeterUsageEntry]:
    entries = []
    for product_meter in subscription.product.product_meters.select_related("meter"):
        usage = meter_usage(product_meter.meter, subscription.customer_id, period.start, period.end)
        if subscription.is_trial(period.index):
            line = trial_usage_line(product_meter, usage)
        else:
            line = usage_line(product_meter, usage)
        entries.append(
            MeterUsageEntry(
                meter_id=product_meter.meter_id,
                name=product_meter.meter.name,
                measurement_unit=product_meter.meter.measurement_unit,
                consumed_units=line.consumed_units,
                free_threshold=product_meter.free_threshold,
                chargeable_units=line.chargeable_units,
                price_per_unit=_zero_if_none(line.unit_price),
                total_price=line.amount_minor,
            )
        )
    return entries

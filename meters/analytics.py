"""What the meter analytics page shows: usage over a range (total, per customer, as a series), the
events a meter matched, and what that usage would cost at the attached products' current prices.

Every number comes from the usage queries (`meters.usage`) and the charge rule
(`products.billing.usage_charge`) that invoices use, so the page and the invoices cannot drift.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from billing_site.jsonutil import exact_dumps, exact_loads
from billing_site.money import format_minor
from events.queries import EVENTS_TABLE, pending_batch_stats
from meters.models import Aggregation, Meter
from meters.preview import (
    SKIP_MISSING_KEY,
    SKIP_NOT_A_NUMBER,
    SKIP_NOT_A_SCALAR,
    metadata_display,
)
from meters.usage import Usage, event_value_sql, matching_events_sql, usage_by_customer
from meters.usage import usage_series as usage_series_query
from products.billing import usage_charge
from products.models import Customer, ProductMeter, Subscription
from products.pricing import MeterPricing

RANGE_PRESETS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
DEFAULT_GRANULARITY = {"24h": "hour", "7d": "day", "30d": "day", "90d": "week"}
# A chart with more bars than this says nothing more and costs the browser; coarser it is.
MAX_CHART_POINTS = 1000
_APPROXIMATE_PERIOD = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=31),
}
EVENTS_PAGE_SIZE = 50
# The events tab pages no further (page * size stays far inside PostgreSQL's bigint OFFSET).
MAX_PAGE = 1_000_000
# A custom range is clamped to the epoch .. a year ahead and to MAX_RANGE (about 76 years: at
# month granularity, fewer than MAX_CHART_POINTS bars), so typed dates never overflow a datetime
# or draw an unbounded chart.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=366)
MAX_RANGE = timedelta(days=28 * (MAX_CHART_POINTS - 2))
CSV_BATCH = 2000


# --- usage and charges ------------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    """What one customer's usage in the range costs under one product's current price."""

    product_id: str
    product_name: str
    currency: str
    price_per_unit: Decimal
    free_threshold: int
    free_units: Decimal
    chargeable_units: Decimal
    amount_minor: int

    @property
    def display(self) -> str:
        return format_minor(self.amount_minor, self.currency)


@dataclass(frozen=True)
class CustomerUsage:
    customer_id: str
    customer_name: str | None  # None: events arrived for a customer_id with no customer yet
    usage: Usage
    charges: list[Charge]

    @property
    def charge_minor(self) -> int:
        """Sort key only: amounts in different currencies are not comparable."""
        return sum(charge.amount_minor for charge in self.charges)

    @property
    def charge_display(self) -> str:
        return ", ".join(charge.display for charge in self.charges)


@dataclass(frozen=True)
class ProductTotal:
    """One product that prices this meter, and what the range costs its subscribers in total."""

    product_id: str
    product_name: str
    currency: str
    price_per_unit: Decimal
    free_threshold: int
    customers: int
    amount_minor: int

    @property
    def display(self) -> str:
        return format_minor(self.amount_minor, self.currency)


def unit_price(attachment: ProductMeter) -> Decimal:
    """The price of an attachment from priced_product_meters (which keeps only priced ones)."""
    assert attachment.price_per_unit is not None
    return attachment.price_per_unit


def priced_product_meters(meter: Meter) -> list[ProductMeter]:
    """Attachments of this meter priced per unit (credit-based attachments have no price)."""
    return list(
        ProductMeter.objects.filter(meter=meter, price_per_unit__isnull=False)
        .select_related("product")
        .order_by("product__name", "product_id")
    )


def customer_usage(meter: Meter, start: datetime, end: datetime) -> list[CustomerUsage]:
    """Usage per customer in [start, end), each priced by every product it subscribes to that
    attaches this meter, as if the range were one billing cycle."""
    usage = usage_by_customer(meter, start, end)
    customer_ids = list(usage)
    names = dict(
        Customer.objects.filter(customer_id__in=customer_ids).values_list("customer_id", "name")
    )
    attachments = {pm.product_id: pm for pm in priced_product_meters(meter)}
    subscribed: dict[str, set[str]] = {}
    for customer_id, product_id in (
        Subscription.objects.filter(customer_id__in=customer_ids, product_id__in=attachments)
        .values_list("customer_id", "product_id")
        .distinct()
    ):
        subscribed.setdefault(customer_id, set()).add(product_id)
    rows = []
    for customer_id in customer_ids:
        quantity = usage[customer_id].quantity
        charges = []
        for product_id in sorted(subscribed.get(customer_id, ())):
            attachment = attachments[product_id]
            free_units, chargeable, amount = usage_charge(
                quantity,
                attachment.free_threshold,
                unit_price(attachment),
                MeterPricing.of(attachment),  # tiers, packages, limits: as the invoice line
            )
            charges.append(
                Charge(
                    product_id=product_id,
                    product_name=attachment.product.name,
                    currency=attachment.product.currency,
                    price_per_unit=unit_price(attachment),
                    free_threshold=attachment.free_threshold,
                    free_units=free_units,
                    chargeable_units=chargeable,
                    amount_minor=amount,
                )
            )
        rows.append(CustomerUsage(customer_id, names.get(customer_id), usage[customer_id], charges))
    return rows


CUSTOMER_SORTS = {
    "customer": lambda row: row.customer_id,
    "events": lambda row: row.usage.event_count,
    "skipped": lambda row: row.usage.skipped_count,
    "usage": lambda row: row.usage.quantity,
    "charge": lambda row: row.charge_minor,
}


def sort_customers(rows: list[CustomerUsage], sort: str) -> list[CustomerUsage]:
    """`sort` is a CUSTOMER_SORTS key, `-` first for descending; ties go by customer id."""
    descending = sort.startswith("-")
    key = CUSTOMER_SORTS.get(sort.lstrip("-"), CUSTOMER_SORTS["usage"])
    rows = sorted(rows, key=lambda row: row.customer_id)
    return sorted(rows, key=key, reverse=descending)


@dataclass(frozen=True)
class Overview:
    total_quantity: Decimal
    event_count: int
    skipped_count: int
    customers: int
    product_totals: list[ProductTotal]


def overview(meter: Meter, rows: list[CustomerUsage]) -> Overview:
    """Totals over the per-customer rows: billing is per customer, so the total is their sum."""
    totals: dict[str, ProductTotal] = {}
    for attachment in priced_product_meters(meter):
        totals[attachment.product_id] = ProductTotal(
            attachment.product_id,
            attachment.product.name,
            attachment.product.currency,
            unit_price(attachment),
            attachment.free_threshold,
            0,
            0,
        )
    for row in rows:
        for charge in row.charges:
            total = totals[charge.product_id]
            totals[charge.product_id] = ProductTotal(
                total.product_id,
                total.product_name,
                total.currency,
                total.price_per_unit,
                total.free_threshold,
                total.customers + 1,
                total.amount_minor + charge.amount_minor,
            )
    return Overview(
        total_quantity=sum((row.usage.quantity for row in rows), Decimal(0)),
        event_count=sum(row.usage.event_count for row in rows),
        skipped_count=sum(row.usage.skipped_count for row in rows),
        customers=len(rows),
        product_totals=list(totals.values()),
    )


# --- the series --------------------------------------------------------------------------------


def period_floor(moment: datetime, granularity: str) -> datetime:
    """Start of the UTC period holding `moment`, as PostgreSQL's date_trunc computes it."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return moment
    moment = moment.replace(hour=0)
    if granularity == "day":
        return moment
    if granularity == "week":
        return moment - timedelta(days=moment.weekday())  # ISO weeks start on Monday
    return moment.replace(day=1)


def next_period(moment: datetime, granularity: str) -> datetime:
    if granularity == "hour":
        return moment + timedelta(hours=1)
    if granularity == "day":
        return moment + timedelta(days=1)
    if granularity == "week":
        return moment + timedelta(days=7)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return moment + timedelta(days=days)


def fitting_granularity(start: datetime, end: datetime, granularity: str) -> str:
    """The requested granularity, or the finest coarser one that keeps the chart readable."""
    order = list(_APPROXIMATE_PERIOD)
    for candidate in order[order.index(granularity) :]:
        if (end - start) / _APPROXIMATE_PERIOD[candidate] <= MAX_CHART_POINTS:
            return candidate
    return "month"


# Aggregations whose value over no events is 0 (drawn as bars); the others have none (lines).
ZERO_WHEN_EMPTY = (Aggregation.COUNT, Aggregation.SUM, Aggregation.UNIQUE_COUNT)


@dataclass(frozen=True)
class SeriesPoint:
    period_start: datetime
    quantity: Decimal | None  # None: no events, so max/last have no value


def usage_series(
    meter: Meter,
    start: datetime,
    end: datetime,
    granularity: str,
    customer_id: str | None = None,
) -> list[SeriesPoint]:
    """Every period of the range, in order (of one customer, or of all). A period without events
    is 0 for count, sum and unique_count; for max, min and last it has no value (a gap, not a
    zero). A unique_count period counts the values distinct within it: periods do not add up to
    the range's total when values repeat across them."""
    found = {
        moment: usage.quantity
        for moment, usage in usage_series_query(
            meter, start, end, granularity, customer_id=customer_id
        )
    }
    empty = Decimal(0) if meter.aggregation_type in ZERO_WHEN_EMPTY else None
    points = []
    moment = period_floor(start, granularity)
    while moment < end:
        points.append(SeriesPoint(moment, found.pop(moment, empty)))
        moment = next_period(moment, granularity)
    assert not found, f"periods outside the range: {sorted(found)}"
    return points


def plotly_series(meter: Meter, points: list[SeriesPoint]) -> dict[str, Any]:
    """The chart's data and layout; quantities travel as exact strings, the page makes numbers."""
    return {
        "x": [point.period_start.isoformat() for point in points],
        "y": [None if point.quantity is None else str(point.quantity) for point in points],
        "kind": "bar" if meter.aggregation_type in ZERO_WHEN_EMPTY else "line",
        "unit": meter.measurement_unit,
    }


# --- matched events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedEvent:
    event_id: str
    customer_id: str
    event_name: str
    timestamp: datetime
    metadata: dict[str, Any]
    # What it contributes; None for count meters and skipped events. For unique_count, the key's
    # value as JSON (`"1"`, `1`, `true`: its type decides distinctness).
    value: Decimal | str | None
    skip_reason: str | None

    @property
    def metadata_json(self) -> str:
        return exact_dumps(self.metadata)

    @property
    def metadata_display(self) -> str:
        return metadata_display(self.metadata)


def _events_query(
    meter: Meter, start: datetime, end: datetime, customer_id: str | None
) -> tuple[str, list]:
    match_sql, match_params = matching_events_sql(meter)
    valid_sql, value_sql, value_params = event_value_sql(meter)
    key = meter.aggregation_key or ""
    sql = f"""
        SELECT e.id, e.event_id, e.customer_id, e.event_name, e.timestamp, e.metadata::text,
               {valid_sql} AS valid, {value_sql} AS value, e.metadata ? %s AS has_key
        FROM {EVENTS_TABLE} e
        WHERE {match_sql} AND e.timestamp >= %s AND e.timestamp < %s
    """
    params = [*value_params, key, *match_params, start, end]
    if customer_id:
        sql += " AND e.customer_id = %s"
        params.append(customer_id)
    return sql, params


def _matched_event(meter: Meter, row: tuple) -> MatchedEvent:
    _, event_id, customer_id, event_name, timestamp, metadata_text, valid, value, has_key = row
    unique = meter.aggregation_type == Aggregation.UNIQUE_COUNT
    reason = None
    if not valid and not has_key:
        reason = SKIP_MISSING_KEY
    elif not valid:
        reason = SKIP_NOT_A_SCALAR if unique else SKIP_NOT_A_NUMBER
    if meter.aggregation_type == Aggregation.COUNT:
        value = None
    metadata = exact_loads(metadata_text)
    if unique and valid and isinstance(metadata, dict):
        value = exact_dumps(metadata[meter.aggregation_key])
    return MatchedEvent(
        event_id,
        customer_id,
        event_name,
        timestamp,
        metadata if isinstance(metadata, dict) else {},
        value,
        reason,
    )


def matched_events(
    meter: Meter,
    start: datetime,
    end: datetime,
    *,
    customer_id: str | None = None,
    page: int = 0,
    page_size: int = EVENTS_PAGE_SIZE,
) -> tuple[list[MatchedEvent], bool]:
    """One page of matched events, newest first, and whether another page follows."""
    sql, params = _events_query(meter, start, end, customer_id)
    sql += " ORDER BY e.timestamp DESC, e.id DESC LIMIT %s OFFSET %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, page_size + 1, page * page_size])
        rows = cursor.fetchall()
    return [_matched_event(meter, row) for row in rows[:page_size]], len(rows) > page_size


def iter_matched_events(
    meter: Meter, start: datetime, end: datetime, *, customer_id: str | None = None
) -> Iterator[MatchedEvent]:
    """Every matched event, newest first, read in keyset batches so an export of millions of
    events neither holds them in memory nor slows down with OFFSET."""
    base_sql, base_params = _events_query(meter, start, end, customer_id)
    after: tuple[datetime, int] | None = None
    while True:
        sql, params = base_sql, list(base_params)
        if after is not None:
            sql += " AND (e.timestamp, e.id) < (%s, %s)"
            params.extend(after)
        sql += " ORDER BY e.timestamp DESC, e.id DESC LIMIT %s"
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, CSV_BATCH])
            rows = cursor.fetchall()
        for row in rows:
            yield _matched_event(meter, row)
        if len(rows) < CSV_BATCH:
            return
        after = (rows[-1][4], rows[-1][0])


# --- freshness -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    """Usage on these pages is exact as of `as_of`: pending events are read raw, not waited for."""

    as_of: datetime
    pending_batches: int
    pending_events: int
    backfilling_meters: list[Meter] = field(default_factory=list)


def freshness(*, now: datetime, meters: list[Meter] | None = None) -> Freshness:
    batches, events = pending_batch_stats()
    backfilling = [meter for meter in meters or [] if not meter.rollups_ready]
    return Freshness(now, batches, events, backfilling)

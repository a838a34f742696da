"""What the staff home page shows: usage and billed revenue over time, top customers, the ingestion
rate, events nobody is billed for yet (unknown customers, names no meter counts) and the rollup lag.

Read-only selectors over every app; each answers from an index or a small table, so the page stays
fast on a large events table (the hourly ingestion count is the one scan: see `ingestion_by_hour`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncDay

from billing_site.money import currency_exponent, format_minor
from events.queries import EVENTS_TABLE
from meters.analytics import SeriesPoint, period_floor, usage_series
from meters.models import Meter
from meters.preview import known_event_names
from products.models import Customer, Invoice, InvoiceStatus, InvoiceVerification

CHART_DAYS = 30
MAX_METER_TRACES = 8
TOP_CUSTOMERS = 10
UNKNOWN_CUSTOMER_SAMPLE = 5


@dataclass(frozen=True)
class MeterSeries:
    meter: Meter
    points: list[SeriesPoint]


def usage_by_day(*, start: datetime, end: datetime) -> list[MeterSeries]:
    """Daily usage of the active meters (the most recently created first, a few at most)."""
    meters = list(Meter.objects.active().order_by("-created_at")[:MAX_METER_TRACES])
    return [MeterSeries(meter, usage_series(meter, start, end, "day")) for meter in meters]


@dataclass(frozen=True)
class RevenueDay:
    day: datetime
    currency: str
    amount_minor: int


def revenue_by_day(*, start: datetime, end: datetime) -> list[RevenueDay]:
    """Invoiced totals by issue day and currency (void invoices left out)."""
    rows = (
        Invoice.objects.filter(created_at__gte=start, created_at__lt=end)
        .exclude(status=InvoiceStatus.VOID)
        .annotate(day=TruncDay("created_at"))
        .values("day", "currency")
        .annotate(total=Sum("total_minor"))
        .order_by("currency", "day")
    )
    return [RevenueDay(row["day"], row["currency"], int(row["total"])) for row in rows]


def revenue_traces(days: list[RevenueDay], *, start: datetime, end: datetime) -> list[dict]:
    """One trace per currency in major units, every day of the range present (0 if none)."""
    traces = []
    for currency in sorted({day.currency for day in days}):
        amounts = {day.day: day.amount_minor for day in days if day.currency == currency}
        x, y = [], []
        moment = period_floor(start, "day")
        while moment < end:
            x.append(moment.isoformat())
            y.append(str(Decimal(amounts.get(moment, 0)).scaleb(-currency_exponent(currency))))
            moment += timedelta(days=1)
        traces.append({"name": currency, "x": x, "y": y})
    return traces


@dataclass(frozen=True)
class TopCustomer:
    customer_id: str
    name: str
    currency: str
    invoices: int
    amount_minor: int

    @property
    def display(self) -> str:
        return format_minor(self.amount_minor, self.currency)


def top_customers(
    *, start: datetime, end: datetime, limit: int = TOP_CUSTOMERS
) -> list[TopCustomer]:
    """Customers by invoiced amount in the range (per currency; void invoices left out)."""
    rows = (
        Invoice.objects.filter(created_at__gte=start, created_at__lt=end)
        .exclude(status=InvoiceStatus.VOID)
        .values("customer_id", "customer__name", "currency")
        .annotate(total=Sum("total_minor"), invoices=Count("invoice_id"))
        .order_by("-total", "customer_id")[:limit]
    )
    return [
        TopCustomer(
            row["customer_id"],
            row["customer__name"],
            row["currency"],
            row["invoices"],
            int(row["total"]),
        )
        for row in rows
    ]


def ingestion_by_hour(*, now: datetime, hours: int = 24) -> list[tuple[datetime, int]]:
    """Events stored per hour of ingestion over the last `hours`, oldest first, zeros included.

    Reads `ingested_at` through its BRIN index: only the block ranges of recent rows.
    """
    first_hour = period_floor(now, "hour") - timedelta(hours=hours - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT date_trunc('hour', ingested_at, 'UTC'), count(*)
            FROM {EVENTS_TABLE} WHERE ingested_at >= %s AND ingested_at <= %s
            GROUP BY 1
            """,
            [first_hour, now],
        )
        counts = dict(cursor.fetchall())
    return [
        (first_hour + timedelta(hours=i), counts.get(first_hour + timedelta(hours=i), 0))
        for i in range(hours)
    ]


@dataclass(frozen=True)
class UnknownCustomers:
    """Events stored for customer ids with no customer yet: kept, and billed once they exist."""

    customer_ids: int  # counted up to UNKNOWN_CUSTOMER_LIMIT (see `capped`)
    events: int  # the events of those ids
    sample: list[tuple[str, int]]  # (customer_id, events), most events first
    capped: bool = False  # more ids than the limit: the figures cover the first ones (by id)

    @property
    def more(self) -> int:
        return self.customer_ids - len(self.sample)


# Any API key that may ingest can invent customer ids (60k made the page take 2.2 s instead of
# 0.15 s when they were all read and sorted here): the panel looks at this many unknown ids at
# most, so its cost stays bounded whatever clients send.
UNKNOWN_CUSTOMER_LIMIT = 1_000


def unknown_customers(
    *, sample_size: int = UNKNOWN_CUSTOMER_SAMPLE, limit: int | None = None
) -> UnknownCustomers:
    """One statement answers the panel: the busiest unknown ids (`sample_size` rows at most) and
    the totals over the first `limit` unknown ids, so nothing here loops over every id.

    A skip scan over the (customer_id, ...) index visits each distinct id once, in id order (one
    index probe per customer id, not a read of every event), and PostgreSQL stops it as soon as
    `limit` + 1 unknown ids are found: the one past the limit only says there are more.
    """
    limit = UNKNOWN_CUSTOMER_LIMIT if limit is None else limit
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE ids AS (
                (SELECT customer_id FROM {EVENTS_TABLE} ORDER BY customer_id LIMIT 1)
                UNION ALL
                SELECT (SELECT e.customer_id FROM {EVENTS_TABLE} e
                        WHERE e.customer_id > ids.customer_id
                        ORDER BY e.customer_id LIMIT 1)
                FROM ids WHERE ids.customer_id IS NOT NULL
            ), unknown AS (
                SELECT ids.customer_id FROM ids
                WHERE ids.customer_id IS NOT NULL
                  AND NOT EXISTS (
                      SELECT 1 FROM products_customer c WHERE c.customer_id = ids.customer_id
                  )
                LIMIT %s
            ), counted AS (
                SELECT u.customer_id,
                       (SELECT count(*) FROM {EVENTS_TABLE} e
                        WHERE e.customer_id = u.customer_id) AS events
                FROM (SELECT customer_id FROM unknown ORDER BY customer_id LIMIT %s) u
            )
            SELECT customer_id, events, count(*) OVER (), sum(events) OVER (),
                   (SELECT count(*) FROM unknown) > %s
            FROM counted
            ORDER BY events DESC, customer_id
            LIMIT %s
            """,
            [limit + 1, limit, limit, sample_size],
        )
        rows = cursor.fetchall()
    if not rows:
        return UnknownCustomers(customer_ids=0, events=0, sample=[])
    _, _, ids, events, capped = rows[0]
    return UnknownCustomers(
        customer_ids=ids,
        events=int(events),
        sample=[(customer_id, count) for customer_id, count, *_ in rows],
        capped=capped,
    )


def unmetered_event_names() -> list[str]:
    """Event names received that no active meter counts: stored, but visibly unbilled."""
    metered = set(Meter.objects.active().values_list("event_name", flat=True))
    return [name for name in known_event_names() if name not in metered]


def customer_count() -> int:
    return Customer.objects.count()


def compact_count(number: int) -> str:
    """1,234 below a million, then 9.8M, 1.2B: how staff read a large count at a glance."""
    for size, suffix in ((10**9, "B"), (10**6, "M")):
        if number >= size:
            return f"{number / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{number:,}"


@dataclass(frozen=True)
class Verification:
    """The last run of `verify_invoices` (products/proofs.py), as the home page says it."""

    run: InvoiceVerification

    @property
    def sentence(self) -> str:
        run = self.run
        return (
            f"{run.lines_verified:,} invoice line{'s' if run.lines_verified != 1 else ''} "
            f"verified against {compact_count(run.events_verified)} events, "
            f"{run.mismatch_count:,} mismatch{'es' if run.mismatch_count != 1 else ''}"
        )


def latest_verification() -> Verification | None:
    run = InvoiceVerification.objects.order_by("-finished_at", "-id").first()
    return None if run is None else Verification(run)

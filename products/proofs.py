"""Invoice lines that prove themselves: each final usage line keeps how many events it counted and
the SHA-256 of their sorted ids, the events behind a line can be listed, and every line can be
recomputed from the raw events (`verify_invoices`).

The digest is `sha256(id_1 + "\\n" + id_2 + "\\n" + ...)` over the counted events' `event_id`s in
byte order (UTF-8, collation "C"), each followed by a newline; no events give sha256 of "".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from events.models import Event
from events.queries import EVENTS_TABLE, archived_before, refuse_archived_ranges
from meters.models import Aggregation, Meter
from meters.usage import (
    Aggregate,
    dictionary_join_sql,
    event_row_sql,
    matching_events_sql,
    raw_aggregate_columns,
)
from products.models import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    InvoiceVerification,
    LineKind,
)

EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()
# A verification run keeps the first mismatches it finds, not all of them.
MAX_REPORTED = 100


def digest_of(event_ids: Iterable[str]) -> str:
    """The digest of a set of event ids, as the database computes it (for clients and tests)."""
    text = "".join(f"{event_id}\n" for event_id in sorted(event_ids))
    return hashlib.sha256(text.encode()).hexdigest()


def _counted_sql(meter: Meter, alias: str = "e") -> tuple[str, list]:
    """WHERE clause of the events a usage line of `meter` counts: matching, and contributing
    (for every aggregation but count, a usable value of the key), as meters.usage counts them."""
    match_sql, match_params = matching_events_sql(meter, alias)
    if meter.aggregation_type == Aggregation.COUNT:
        return match_sql, match_params
    key = meter.aggregation_key
    if meter.aggregation_type == Aggregation.UNIQUE_COUNT:
        valid = f"jsonb_typeof({alias}.metadata -> %s) IN ('string', 'number', 'boolean')"
    else:
        valid = f"jsonb_typeof({alias}.metadata -> %s) = 'number'"
    return f"{match_sql} AND coalesce({valid}, FALSE)", [*match_params, key]


_DIGEST_SQL = (
    "encode(sha256(convert_to(coalesce(string_agg(e.event_id || E'\\n', '' "
    "ORDER BY e.event_id COLLATE \"C\"), ''), 'UTF8')), 'hex')"
)


def prove_lines(invoices: list[Invoice]) -> None:
    """Write `events_counted` and `events_digest` on the usage lines of these final invoices, in
    the caller's (finalizing) transaction: one statement per meter and period window, whatever
    the number of invoices, like the usage query of the period close."""
    invoices = [i for i in invoices if i.kind == InvoiceKind.INVOICE]
    if not invoices:
        return
    lines = list(
        InvoiceLine.objects.filter(
            invoice__in=invoices, kind=LineKind.USAGE, meter__isnull=False
        ).select_related("meter", "invoice")
    )
    groups: dict[tuple[str, datetime, datetime], tuple[Meter, list[str]]] = {}
    for line in lines:
        assert line.meter is not None
        key = (line.meter.id, line.invoice.period_start, line.invoice.period_end)
        groups.setdefault(key, (line.meter, []))[1].append(line.invoice_id)
    with connection.cursor() as cursor:
        for (_, start, end), (meter, invoice_ids) in groups.items():
            counted_sql, counted_params = _counted_sql(meter)
            cursor.execute(
                f"""
                UPDATE {InvoiceLine._meta.db_table} l
                SET events_counted = coalesce(p.n, 0), events_digest = coalesce(p.digest, %s)
                FROM {Invoice._meta.db_table} i LEFT JOIN (
                    SELECT e.customer_id, count(*) AS n, {_DIGEST_SQL} AS digest
                    FROM {EVENTS_TABLE} e
                    WHERE {counted_sql} AND e.timestamp >= %s AND e.timestamp < %s
                      AND e.customer_id IN (
                          SELECT customer_id FROM {Invoice._meta.db_table}
                          WHERE invoice_id = ANY(%s))
                    GROUP BY e.customer_id
                ) p ON p.customer_id = i.customer_id
                WHERE l.invoice_id = i.invoice_id AND i.invoice_id = ANY(%s)
                  AND l.meter_id = %s AND l.kind = %s
                """,
                [
                    EMPTY_DIGEST,
                    *counted_params,
                    start,
                    end,
                    invoice_ids,
                    invoice_ids,
                    meter.id,
                    LineKind.USAGE,
                ],
            )


def line_events(line: InvoiceLine) -> QuerySet[Event]:
    """Exactly the events a usage line counted (by event_id, in byte order, as digested)."""
    if line.kind != LineKind.USAGE or line.meter is None:
        return Event.objects.none()
    invoice = line.invoice
    refuse_archived_ranges(
        [(invoice.period_start, invoice.period_end)], f"The events of invoice {invoice} line"
    )
    counted_sql, counted_params = _counted_sql(line.meter, alias='"events_event"')
    return (
        Event.objects.filter(
            customer_id=invoice.customer_id,
            timestamp__gte=invoice.period_start,
            timestamp__lt=invoice.period_end,
        )
        .filter(RawSQL(counted_sql, counted_params, output_field=BooleanField()))
        .order_by(RawSQL('"events_event"."event_id" COLLATE "C"', []))
    )


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    invoice_id: str
    invoice_number: str | None
    position: int
    meter_id: str
    field: str
    stored: str | None
    recomputed: str

    def wire(self) -> dict:
        return {
            "invoice_id": self.invoice_id,
            "invoice_number": self.invoice_number,
            "line": self.position,
            "meter_id": self.meter_id,
            "field": self.field,
            "stored": self.stored,
            "recomputed": self.recomputed,
        }

    def __str__(self) -> str:
        return (
            f"invoice {self.invoice_number or self.invoice_id} line {self.position} "
            f"(meter {self.meter_id}): {self.field} stored {self.stored}, "
            f"recomputed {self.recomputed}"
        )


@dataclass
class VerificationResult:
    lines_verified: int = 0
    events_verified: int = 0
    unproven_lines: int = 0  # finalized before lines kept proofs: quantity checked only
    mismatch_count: int = 0
    mismatches: list[Mismatch] | None = None
    # Lines of periods that start in an archived month: their raw events are gone, so they are
    # not recomputed (and not counted as mismatches).
    archived_lines: int = 0


def final_usage_lines(since: datetime | None = None) -> QuerySet[InvoiceLine]:
    """Usage lines of invoices that are final (issued, paid or void), optionally issued since."""
    lines = InvoiceLine.objects.filter(
        kind=LineKind.USAGE,
        meter__isnull=False,
        invoice__kind=InvoiceKind.INVOICE,
        invoice__status__in=[InvoiceStatus.ISSUED, InvoiceStatus.PAID, InvoiceStatus.VOID],
    )
    if since is not None:
        lines = lines.filter(invoice__issued_at__gte=since)
    return lines.select_related("meter", "invoice")


def _recompute(meter: Meter, start: datetime, end: datetime, customers: set[str]) -> dict:
    """{customer_id: (events counted, digest, quantity)} from the raw events alone."""
    counted_sql, counted_params = _counted_sql(meter)
    match_sql, match_params = matching_events_sql(meter)
    row_sql, row_params = event_row_sql(meter)
    join_sql, join_params = dictionary_join_sql(meter)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.customer_id, count(*), {_DIGEST_SQL}
            FROM {EVENTS_TABLE} e
            WHERE {counted_sql} AND e.timestamp >= %s AND e.timestamp < %s
              AND e.customer_id = ANY(%s)
            GROUP BY e.customer_id
            """,
            [*counted_params, start, end, sorted(customers)],
        )
        proofs = {row[0]: (int(row[1]), row[2]) for row in cursor.fetchall()}
        cursor.execute(
            f"""
            SELECT customer_id, {raw_aggregate_columns(meter, unknown_values=True)}
            FROM (SELECT e.customer_id, {row_sql} FROM {EVENTS_TABLE} e
                  WHERE {match_sql} AND e.timestamp >= %s AND e.timestamp < %s
                    AND e.customer_id = ANY(%s)) matched{join_sql}
            GROUP BY customer_id
            """,
            [*row_params, *match_params, start, end, sorted(customers), *join_params],
        )
        quantities = {}
        for row in cursor.fetchall():
            # unique_count: the values with a position in the meter's dictionary, and those
            # without (one value, one position: the two never overlap).
            distinct = len(row[10] or []) + int(row[11] or 0)
            aggregate = Aggregate(
                int(row[1] or 0),
                int(row[2] or 0),
                row[3],
                row[4],
                row[5],
                row[8],
                distinct,
            )
            quantities[row[0]] = aggregate.usage(meter.aggregation_type).quantity
    return {
        customer: (*proofs.get(customer, (0, EMPTY_DIGEST)), quantities.get(customer, Decimal(0)))
        for customer in customers
    }


def _chunks(lines: QuerySet[InvoiceLine], size: int = 2000) -> Iterator[list[InvoiceLine]]:
    last = 0
    while True:
        chunk = list(lines.filter(pk__gt=last).order_by("pk")[:size])
        if not chunk:
            return
        yield chunk
        last = chunk[-1].pk


def verify(since: datetime | None = None) -> VerificationResult:
    """Recompute every final usage line (issued since `since`) from the raw events: its count
    of events, its digest and its consumed units. One query pair per meter and window of each
    chunk of lines; read-only."""
    result = VerificationResult(mismatches=[])
    assert result.mismatches is not None
    lines = final_usage_lines(since)
    horizon = archived_before()
    if horizon is not None:
        result.archived_lines = lines.filter(invoice__period_start__lt=horizon).count()
        lines = lines.filter(invoice__period_start__gte=horizon)
    for chunk in _chunks(lines):
        groups: dict[tuple[str, datetime, datetime], list[InvoiceLine]] = {}
        for line in chunk:
            key = (line.meter_id or "", line.invoice.period_start, line.invoice.period_end)
            groups.setdefault(key, []).append(line)
        for (_, start, end), group in groups.items():
            meter = group[0].meter
            assert meter is not None
            recomputed = _recompute(meter, start, end, {line.invoice.customer_id for line in group})
            for line in group:
                count, digest, quantity = recomputed[line.invoice.customer_id]
                result.lines_verified += 1
                result.events_verified += count
                checks: list[tuple[str, object, object]] = [
                    ("consumed_units", line.consumed_units, quantity)
                ]
                if line.events_digest is None:
                    result.unproven_lines += 1
                else:
                    checks += [
                        ("events_counted", line.events_counted, count),
                        ("events_digest", line.events_digest, digest),
                    ]
                for field, stored, fresh in checks:
                    if stored is None or _differs(stored, fresh):
                        result.mismatch_count += 1
                        if len(result.mismatches) < MAX_REPORTED:
                            result.mismatches.append(
                                Mismatch(
                                    line.invoice_id,
                                    line.invoice.number,
                                    line.position,
                                    meter.id,
                                    field,
                                    None if stored is None else str(stored),
                                    str(fresh),
                                )
                            )
    return result


def _differs(stored: object, fresh: object) -> bool:
    if isinstance(stored, Decimal) or isinstance(fresh, Decimal):
        return Decimal(str(stored)) != Decimal(str(fresh))
    return stored != fresh


def record_verification(*, since: datetime | None, now: datetime) -> InvoiceVerification:
    """Run `verify` and keep its result, for the staff home and the beat task's history."""
    result = verify(since)
    return InvoiceVerification.objects.create(
        started_at=now,
        finished_at=timezone.now(),
        since=since,
        lines_verified=result.lines_verified,
        events_verified=result.events_verified,
        mismatch_count=result.mismatch_count,
        mismatches=[m.wire() for m in result.mismatches or []],
    )

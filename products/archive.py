"""Archiving old events: `manage.py archive_events --before YYYY-MM` detaches whole months of
events once nothing can change their billing any more.

A month may go when every subscription period overlapping it is invoiced and final (no open
period, no draft invoice in its grace period), when no late event can still arrive for it, and
when rollups hold all of its events (no pending batch, no meter being rebuilt). Rollups and
invoices stay; what then still works is listed in docs/operations.md ("Archiving events").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from billing_site.errors import Conflict
from events.models import ArchivedMonth
from events.partitions import Month, create_month_partition, default_partition_months, detach_month
from events.partitions import month_partitions as attached_months
from meters.models import Meter
from products.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus

MAX_NAMED = 5


class ArchiveRefused(Conflict):
    code = "ARCHIVE_REFUSED"


@dataclass(frozen=True)
class ArchivedPartition:
    month: Month
    rows: int
    dump: Path | None


def _reasons_to_refuse(cutoff: datetime, now: datetime) -> list[str]:
    """Why the events before `cutoff` cannot be archived yet (empty: they can)."""
    reasons = []
    late_limit = now - timedelta(days=settings.EVENT_LATE_WINDOW_DAYS)
    if cutoff > late_limit:
        reasons.append(
            f"events stamped before {cutoff:%Y-%m-%d} may still arrive until "
            f"{cutoff + timedelta(days=settings.EVENT_LATE_WINDOW_DAYS):%Y-%m-%d} "
            f"(EVENT_LATE_WINDOW_DAYS={settings.EVENT_LATE_WINDOW_DAYS})"
        )
    open_periods = Subscription.objects.filter(
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.ON_HOLD],
        current_period_start__lt=cutoff,
    ).order_by("current_period_start", "subscription_id")
    for subscription in open_periods[:MAX_NAMED]:
        reasons.append(
            f"subscription {subscription.subscription_id} has its period "
            f"{subscription.current_period_start.isoformat()} to "
            f"{subscription.current_period_end.isoformat()} still open (not invoiced)"
        )
    drafts = Invoice.objects.filter(status=InvoiceStatus.DRAFT, period_start__lt=cutoff).order_by(
        "period_start", "invoice_id"
    )
    for invoice in drafts[:MAX_NAMED]:
        final_at = invoice.finalize_at.isoformat() if invoice.finalize_at else "not scheduled"
        reasons.append(
            f"invoice {invoice.invoice_id} of subscription {invoice.subscription_id} for "
            f"{invoice.period_start.isoformat()} to {invoice.period_end.isoformat()} is a draft "
            f"in its grace period (final at: {final_at})"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM events_ingestbatch "
            "WHERE first_timestamp IS NULL OR first_timestamp < %s",
            [cutoff],
        )
        pending = cursor.fetchone()[0]
    if pending:
        reasons.append(f"{pending} ingest batches with such events are not rolled up yet")
    rebuilding = [m.id for m in Meter.objects.all() if not m.rollups_ready][:MAX_NAMED]
    for meter_id in rebuilding:
        reasons.append(f"meter {meter_id} is being backfilled from the raw events")
    return reasons


def archive_events(
    *, before: Month, now: datetime, dump_dir: Path | None = None
) -> list[ArchivedPartition]:
    """Detach every month partition before `before` (dumping each to `dump_dir` when given), or
    raise ArchiveRefused naming each open period or other reason; all in one transaction.

    Months with rows still in the default partition get their own partition first (the rows
    move), so every archived event leaves with its month.
    """
    cutoff = before.start
    with transaction.atomic(), connection.cursor() as cursor:
        # Serialized with partition creation (events/partitions.py uses the same lock).
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('events_event partitions'))")
        # Periods close and drafts finalize concurrently only towards "archivable": a reason
        # found here may be gone a moment later, never the other way round.
        reasons = _reasons_to_refuse(cutoff, now)
        if reasons:
            raise ArchiveRefused(
                f"The events before {before} cannot be archived: " + "; ".join(reasons) + "."
            )
        for month in default_partition_months(cursor):
            if month < before:
                create_month_partition(cursor, month)
        archived = []
        for month in attached_months(cursor):
            if month >= before:
                continue
            rows, dump = detach_month(cursor, month, dump_dir=dump_dir)
            ArchivedMonth.objects.create(
                month=month.start.date(),
                rows=rows,
                dump_path=str(dump) if dump else None,
                archived_at=now,
            )
            archived.append(ArchivedPartition(month, rows, dump))
        return archived

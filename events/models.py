"""Usage events as applications sent them, and the log of ingested batches that rollups consume."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.utils import timezone

from billing_site.jsonutil import ExactJSONDecoder, ExactJSONEncoder

WRITTEN_BY_INGEST = (
    "Events are stored only by events/ingest.py, which writes each event_id's key "
    "(events_eventkey) in the same statement, so dedupe holds across months and archives. "
    "Store them through products.billing.ingest_events (tests: tests.factories.ingest_events)."
)


class EventQuerySet(models.QuerySet):
    def bulk_create(self, *args, **kwargs):
        """Refused: rows written here would have no key, and a repeat of their id would be
        stored again."""
        raise TypeError(WRITTEN_BY_INGEST)


class Event(models.Model):
    """One stored event. The table is range-partitioned by month of `timestamp` (migration 0005,
    events/partitions.py): the database's primary key is (id, timestamp), and `event_id` is kept
    unique by `EventKey`, written in the same statement (events/ingest.py). Inserting through
    the ORM (`save`, `objects.create`, `bulk_create`) is refused for that reason."""

    # The surrogate key records ingestion order, which breaks ties for the `last` aggregation.
    # Unique by its sequence; the database's key adds `timestamp`, as partitioning requires.
    id = models.BigAutoField(primary_key=True)
    event_id = models.CharField(max_length=255, help_text="Client-chosen idempotency key.")
    customer_id = models.CharField(max_length=255)
    event_name = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    ingested_at = models.DateTimeField(default=timezone.now)

    objects = EventQuerySet.as_manager()

    class Meta:
        indexes = [
            # Not unique: a partitioned table's unique index must include `timestamp`. Lookups by
            # event_id (GET /events/{id}, explain, the admin search) probe each month's index.
            models.Index(fields=["event_id"], name="event_event_id"),
            models.Index(
                fields=["customer_id", "event_name", "timestamp"], name="event_customer_name_ts"
            ),
            models.Index(fields=["event_name", "timestamp"], name="event_name_ts"),
            # Rows arrive in ingestion order, so a BRIN index (a few pages for millions of rows,
            # next to nothing per insert) finds recent ingestion for the staff home page.
            BrinIndex(fields=["ingested_at"], name="event_ingested_at_brin"),
        ]

    def __str__(self) -> str:
        return self.event_id

    def save(self, *args, **kwargs) -> None:
        if self._state.adding:
            raise TypeError(WRITTEN_BY_INGEST)
        super().save(*args, **kwargs)


class EventKey(models.Model):
    """Every `event_id` ever stored: the exact, cross-partition dedupe of ingestion.

    Written by the ingest statement before the events (ON CONFLICT DO NOTHING RETURNING), so an
    event is stored only when its key is new, atomically with the write. Keys of archived months
    are kept: a repeat of an archived event_id is still ignored. Created by migration 0005 with
    its primary key alone (Django would add a LIKE index to a CharField key).
    """

    event_id = models.CharField(max_length=255, primary_key=True)

    def __str__(self) -> str:
        return self.event_id


class ArchivedMonth(models.Model):
    """A month whose events partition was detached by `manage.py archive_events`."""

    month = models.DateField(primary_key=True, help_text="First day of the month (UTC).")
    rows = models.BigIntegerField()
    dump_path = models.CharField(max_length=500, null=True, blank=True)
    archived_at = models.DateTimeField()

    class Meta:
        ordering = ["month"]

    def __str__(self) -> str:
        return self.month.strftime("%Y-%m")


class IngestBatch(models.Model):
    """One row per accepted request that stored new events, written in the same statement.

    Rollups claim these rows (SKIP LOCKED) to find exactly the events they have not yet counted,
    whatever order the batches committed in.
    """

    id = models.BigAutoField(primary_key=True)
    event_ids = ArrayField(models.BigIntegerField())
    # The range of the batch's event timestamps: a rollup's read of the claimed ids then prunes
    # to the partitions of those months instead of probing every month's primary key.
    # Null on batches logged before migration 0005.
    first_timestamp = models.DateTimeField(null=True)
    last_timestamp = models.DateTimeField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ingest batches"

    def __str__(self) -> str:
        return f"batch {self.pk}"


class RefusedEvent(models.Model):
    """One event of a refused ingest request, kept `REJECTED_EVENTS_RETENTION_DAYS` so that
    "why was this event not billed?" has an answer when it was never stored.

    Written with one insert per refused request (events/ingest.py `record_refusals`), at most
    one row per event of the request; pruned by the `events.prune_refused` beat task. UNLOGGED
    (migration 0004): diagnostics, not billing data, so no WAL is written for them; a database
    crash empties the table. An event
    that was valid in a refused request gets `BATCH_REFUSED` naming the first problem of the batch.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.CharField(max_length=255)
    code = models.CharField(max_length=64)
    field = models.CharField(max_length=300)
    message = models.CharField(max_length=500)
    # What the request said of the event, when it said it as a string (it may be the problem).
    customer_id = models.CharField(max_length=255, null=True)
    event_name = models.CharField(max_length=255, null=True)
    timestamp = models.CharField(max_length=64, null=True)
    refused_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["event_id"], name="refused_event_event_id"),
            # Rows arrive in time order: a BRIN index finds the expired ones for a few pages.
            BrinIndex(fields=["refused_at"], name="refused_event_at_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.code}"

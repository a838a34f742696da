"""Usage events as applications sent them, and the log of ingested batches that rollups consume."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.utils import timezone

from billing_site.jsonutil import ExactJSONDecoder, ExactJSONEncoder


class Event(models.Model):
    # The surrogate key records ingestion order, which breaks ties for the `last` aggregation.
    id = models.BigAutoField(primary_key=True)
    event_id = models.CharField(max_length=255, help_text="Client-chosen idempotency key.")
    customer_id = models.CharField(max_length=255)
    event_name = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    ingested_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # A constraint rather than unique=True: Django would add a second (LIKE) index to a
            # unique CharField, which every ingest would pay for.
            models.UniqueConstraint(fields=["event_id"], name="event_event_id_unique"),
        ]
        indexes = [
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


class IngestBatch(models.Model):
    """One row per accepted request that stored new events, written in the same statement.

    Rollups claim these rows (SKIP LOCKED) to find exactly the events they have not yet counted,
    whatever order the batches committed in.
    """

    id = models.BigAutoField(primary_key=True)
    event_ids = ArrayField(models.BigIntegerField())
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
